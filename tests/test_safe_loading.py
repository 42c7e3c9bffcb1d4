"""Safe loading: model files never run code, and incompatible checkpoints say why (issue 5, item 3)."""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from breastus import CheckpointError, Predictor, create_model, load_checkpoint
from breastus.cli import main
from breastus.models import Checkpoint, ModelInfo, build_model, read_state_dict, save_checkpoint

CLASSES = ("benign", "malignant", "normal")


class RunsACommand:
    """Unpickling this runs ``touch <marker>``: what a malicious "model" file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch '{self.marker}'",))


def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    evil = RunsACommand(marker)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        # a breastus-looking checkpoint with the payload among the weights
        "checkpoint": folder / "best.pt",
        # a plain state dict, the usual "pretrained weights" download
        "state_dict": folder / "weights.pth",
        # torch's legacy (non-zip) format
        "legacy": folder / "legacy.pt",
        # a bare pickle renamed .pt
        "raw_pickle": folder / "raw.pt",
    }
    weights = {"conv1.weight": torch.zeros(1), "payload": evil}
    torch.save({"format": "breastus-checkpoint", "format_version": 1, "model_state": weights}, files["checkpoint"])
    torch.save(weights, files["state_dict"])
    torch.save(weights, files["legacy"], _use_new_zipfile_serialization=False)
    with files["raw_pickle"].open("wb") as handle:
        pickle.dump(weights, handle)
    return files


@pytest.fixture()
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Path], Path]:
    marker = tmp_path / "MARKER_code_ran"
    files = _evil_files(tmp_path / "downloads", marker)
    # the escape hatch torch offers must not re-enable unpickling for breastus
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return files, marker


def test_the_payload_is_real(tmp_path: Path) -> None:
    """Control: an unrestricted load of the same file does run the command."""
    marker = tmp_path / "control_marker"
    path = _evil_files(tmp_path / "control", marker)["state_dict"]
    torch.load(path, weights_only=False)
    assert marker.exists()


LOADERS: dict[str, Callable[[Path], object]] = {
    "load_checkpoint": load_checkpoint,
    "Predictor.from_checkpoint": lambda p: Predictor.from_checkpoint(p, device="cpu"),
    "create_model(pretrained=path)": lambda p: create_model("resnet18", pretrained=p),
    "read_state_dict": read_state_dict,
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # the bare pickle
@pytest.mark.parametrize("loader", list(LOADERS))
def test_malicious_pickles_are_refused_and_never_run(evil: tuple[dict[str, Path], Path], loader: str) -> None:
    files, marker = evil
    for kind, path in files.items():
        with pytest.raises(CheckpointError) as info:
            LOADERS[loader](path)
        message = str(info.value)
        assert path.name in message, (kind, message)
        assert "Refused to load" in message and "arbitrary code" in message, (kind, message)
        assert not marker.exists(), f"{loader} ran the code in {kind}"


def test_malicious_pickles_through_the_cli(
    evil: tuple[dict[str, Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, marker = evil
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "data", {"benign": 10, "malignant": 10, "normal": 10}, size=(32, 32))
    commands = [
        ["predict", str(files["checkpoint"]), str(data), "--device", "cpu"],
        ["evaluate", str(files["legacy"]), str(data), "--device", "cpu"],
        [
            "train",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--pretrained",
            str(files["state_dict"]),
            "--device",
            "cpu",
        ],
    ]
    for argv in commands:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "Refused to load" in err
        assert not marker.exists()
    assert not (tmp_path / "run" / "last.pt").exists()


# ------------------------------------------------------------------ incompatible checkpoints


@pytest.fixture(scope="module")
def small() -> tuple[torch.nn.Module, ModelInfo]:
    torch.manual_seed(0)
    return build_model("timm/test_resnet", 3, pretrained=None)


def _save(small: tuple[torch.nn.Module, ModelInfo], path: Path, **changes: object) -> Path:
    model, info = small
    checkpoint = Checkpoint(info, CLASSES, 32, dict(model.state_dict()))
    return save_checkpoint(dataclasses.replace(checkpoint, **changes), path)  # type: ignore[arg-type]


def _refused(path: Path, *patterns: str) -> str:
    with pytest.raises(CheckpointError) as info:
        Predictor.from_checkpoint(path, device="cpu")
    message = str(info.value)
    assert path.name in message, message
    for pattern in patterns:
        assert pattern in message, message
    return message


def test_another_format_version(tmp_path: Path, small: tuple[torch.nn.Module, ModelInfo]) -> None:
    path = _save(small, tmp_path / "future.pt")
    payload = torch.load(path, weights_only=True)
    payload.update(format_version=7, breastus_version="9.0.0")
    torch.save(payload, path)
    _refused(path, "format version 7", "'9.0.0'", "Install the breastus version that wrote it, or retrain")


def test_weights_of_another_architecture(tmp_path: Path, small: tuple[torch.nn.Module, ModelInfo]) -> None:
    other_info = build_model("timm/test_efficientnet", 3)[1]
    path = _save(small, tmp_path / "relabelled.pt", model_info=other_info)  # test_resnet weights, other name
    _refused(path, "do not fit timm/test_efficientnet", "missing", "unexpected", "damaged or was edited")
    with pytest.raises(CheckpointError, match=r"relabelled\.pt.*do not fit"):
        create_model("timm/test_efficientnet", pretrained=path)


def test_an_architecture_this_install_cannot_build(tmp_path: Path, small: tuple[torch.nn.Module, ModelInfo]) -> None:
    info = dataclasses.replace(small[1], name="timm/resnet_from_the_future", architecture="resnet_from_the_future")
    path = _save(small, tmp_path / "future_arch.pt", model_info=info)
    _refused(path, "timm/resnet_from_the_future", "cannot build", "install the breastus/timm versions")


def test_an_edited_state_dict(tmp_path: Path, small: tuple[torch.nn.Module, ModelInfo]) -> None:
    state = dict(small[0].state_dict())
    head = next(k for k in state if k.endswith("fc.weight"))
    state[head] = torch.zeros(5, state[head].shape[1])
    path = _save(small, tmp_path / "edited.pt", model_state=state)
    _refused(path, "shape mismatches", f"{head}: file (5, ", "damaged or was edited")
    state = dict(small[0].state_dict())
    del state[head]
    _refused(_save(small, tmp_path / "cut.pt", model_state=state), "missing", head)


def test_class_names_that_do_not_fit_the_head(tmp_path: Path, small: tuple[torch.nn.Module, ModelInfo]) -> None:
    for name, classes in (("two.pt", ("benign", "malignant")), ("twice.pt", ("benign", "benign", "normal"))):
        path = _save(small, tmp_path / name, class_names=classes)
        with pytest.raises(CheckpointError, match=rf"{name.replace('.', '[.]')}.*3 outputs.*class names"):
            load_checkpoint(path)


def test_damaged_files(
    tmp_path: Path, small: tuple[torch.nn.Module, ModelInfo], capsys: pytest.CaptureFixture[str]
) -> None:
    good = _save(small, tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.pt").write_text("hello, not a model")
    (tmp_path / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    for name in ("truncated.pt", "empty.pt", "notes.pt"):
        with pytest.raises(CheckpointError, match=rf"{name.replace('.', '[.]')}.*(truncated|corrupt)"):
            load_checkpoint(tmp_path / name)
        assert main(["predict", str(tmp_path / name), str(tmp_path), "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert name in err and "Traceback" not in err
    with pytest.raises(CheckpointError, match=r"weights\.safetensors.*not a valid safetensors"):
        create_model("resnet18", pretrained=tmp_path / "weights.safetensors")
