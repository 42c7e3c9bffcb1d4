"""Checkpoint files: roundtrip, atomic writes, and refusing anything that could run code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from breastus import Checkpoint, CheckpointError, ModelInfo, load_checkpoint
from breastus.models import build_model, save_checkpoint
from breastus.models._checkpoint import FORMAT_VERSION, atomic_write


class _RunsCode:
    """Unpickling this object runs a shell command (the classic malicious pickle)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture(scope="module")
def small_model() -> tuple[torch.nn.Module, ModelInfo]:
    torch.manual_seed(0)
    return build_model("timm/test_resnet", 3)


def _checkpoint(small_model: tuple[torch.nn.Module, ModelInfo], **changes: object) -> Checkpoint:
    model, info = small_model
    values: dict[str, object] = {
        "model_info": info,
        "class_names": ("benign", "malignant", "normal"),
        "image_size": 64,
        "model_state": model.state_dict(),
        "temperature": 1.5,
        "epoch": 4,
        "train_config": {"lr": 0.001, "model": "timm/test_resnet"},
        "training_state": {"history": {"records": []}, "patience_used": 1},
    }
    values.update(changes)
    return Checkpoint(**values)  # type: ignore[arg-type]


def test_roundtrip(tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]) -> None:
    original = _checkpoint(small_model)
    path = save_checkpoint(original, tmp_path / "run" / "best.pt")  # creates the folder
    loaded = load_checkpoint(path)
    assert loaded.model_info == original.model_info
    assert loaded.class_names == original.class_names
    assert (loaded.image_size, loaded.temperature, loaded.epoch) == (64, 1.5, 4)
    assert loaded.train_config == original.train_config
    assert loaded.training_state == original.training_state
    assert loaded.breastus_version == original.breastus_version
    assert loaded.model_state.keys() == original.model_state.keys()
    assert all(torch.equal(loaded.model_state[k], v) for k, v in original.model_state.items())
    x = torch.randn(2, 3, 32, 32)
    model = small_model[0].eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.build_model()(x), model(x))
    assert load_checkpoint(tmp_path / "run").epoch == 4  # a run folder means its best.pt


def test_atomic_write_leaves_only_the_target(tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]) -> None:
    save_checkpoint(_checkpoint(small_model), tmp_path / "last.pt")
    save_checkpoint(_checkpoint(small_model, epoch=5), tmp_path / "last.pt")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert load_checkpoint(tmp_path / "last.pt").epoch == 5


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"old contents")

    def crash(handle: object) -> None:
        handle.write(b"half a new fi")  # type: ignore[attr-defined]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, crash)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("wrap", ["torch_zip", "raw_pickle"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_run(tmp_path: Path, wrap: str) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    payload = {"format": "breastus-checkpoint", "format_version": 1, "model_state": _RunsCode(marker)}
    if wrap == "torch_zip":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match=r"evil\.pt.*arbitrary code"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        build_model("timm/test_resnet", 3, pretrained=evil)
    assert not marker.exists()


def test_a_plain_state_dict_is_not_a_checkpoint(tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]) -> None:
    path = tmp_path / "weights.pth"
    torch.save(small_model[0].state_dict(), path)
    with pytest.raises(CheckpointError, match=r"weights\.pth.*not a breastus checkpoint.*pretrained=path"):
        load_checkpoint(path)


def test_wrong_format_version(tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]) -> None:
    path = tmp_path / "future.pt"
    payload = _checkpoint(small_model).to_dict()
    payload.update(format_version=FORMAT_VERSION + 1, breastus_version="99.0")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"future\.pt.*format version {FORMAT_VERSION + 1}.*99\.0.*reads formats 1, 2"):
        load_checkpoint(path)


def test_missing_truncated_and_incomplete_files(tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]) -> None:
    with pytest.raises(CheckpointError, match=r"absent\.pt.*does not exist"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path)  # a folder without best.pt or last.pt
    good = save_checkpoint(_checkpoint(small_model), tmp_path / "good.pt")
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    for length in (10, 100, 2000, len(data) // 2, len(data) - 30):
        cut.write_bytes(data[:length])
        with pytest.raises(CheckpointError, match=r"cut\.pt"):
            load_checkpoint(cut)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"text\.pt"):
        load_checkpoint(text)
    incomplete = _checkpoint(small_model).to_dict()
    del incomplete["model_info"]
    torch.save(incomplete, tmp_path / "incomplete.pt")
    with pytest.raises(CheckpointError, match=r"incomplete\.pt.*incomplete or damaged"):
        load_checkpoint(tmp_path / "incomplete.pt")


def test_weights_that_do_not_fit_the_recorded_model(
    tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]
) -> None:
    state = dict(small_model[0].state_dict())
    state.pop(next(iter(state)))
    path = save_checkpoint(_checkpoint(small_model, model_state=state), tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="do not fit timm/test_resnet"):
        load_checkpoint(path).build_model()
