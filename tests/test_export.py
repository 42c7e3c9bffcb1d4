"""ONNX and TorchScript export: parity with eager PyTorch on real BUSI images, metadata, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from breastus import CheckpointError, ConfigError, Predictor, UltrasoundDataset
from breastus.cli import main
from breastus.export import ExportMetadata, export_model, load_exported
from breastus.models import Checkpoint, build_model, save_checkpoint

SIZE = 64
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet-18 checkpoint whose head is scaled up so its probabilities are far from uniform."""
    torch.manual_seed(0)
    model, info = build_model("resnet18", 3, None)
    with torch.no_grad():
        model.fc.weight.mul_(40)
    checkpoint = Checkpoint(info, ("benign", "malignant", "normal"), SIZE, model.state_dict(), temperature=1.5, epoch=3)
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("export") / "best.pt")


@pytest.fixture(scope="module")
def busi_paths(busi_root: Path) -> list[Path]:
    data = UltrasoundDataset.from_folder(busi_root)
    return data.paths[:: len(data) // 12][:12]  # benign, malignant and normal images


@pytest.fixture(scope="module")
def eager(checkpoint_path: Path, busi_paths: list[Path]) -> np.ndarray:
    probabilities = Predictor.from_checkpoint(checkpoint_path, device="cpu").predict_proba(busi_paths)
    assert probabilities.max() > 0.6, "the parity check needs confident, non-uniform probabilities"
    return probabilities


@pytest.mark.busi
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_exported_file_matches_eager_pytorch_on_busi(
    format: str, checkpoint_path: Path, busi_paths: list[Path], eager: np.ndarray, tmp_path: Path
) -> None:
    out = export_model(checkpoint_path, tmp_path / f"model.{format}", format=format)  # type: ignore[arg-type]
    predictor = Predictor.from_exported(out, device="cpu", batch_size=5)  # batches of 5, 5 and 2
    got = predictor.predict_proba(busi_paths)
    assert got.shape == eager.shape
    assert np.abs(got - eager).max() <= TOLERANCE
    assert (got.argmax(axis=1) == eager.argmax(axis=1)).all()
    assert predictor.class_names == ("benign", "malignant", "normal")
    assert (predictor.image_size, predictor.temperature) == (SIZE, 1.5)
    module, _ = load_exported(out, torch.device("cpu"))
    for batch in (1, 7):  # dynamic batch size
        assert tuple(module(torch.zeros(batch, 3, SIZE, SIZE)).shape) == (batch, 3)


@pytest.mark.busi
@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
def test_predictor_backends_match_eager_pytorch(
    backend: str, checkpoint_path: Path, busi_paths: list[Path], eager: np.ndarray
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint_path, device="cpu", backend=backend)
    assert np.abs(predictor.predict_proba(busi_paths) - eager).max() <= TOLERANCE
    first = busi_paths[:3]
    labels = [p.label for p in predictor.predict([str(p) for p in first])]
    assert labels == [predictor.class_names[i] for i in eager[:3].argmax(axis=1)]
    eager_tta = Predictor.from_checkpoint(checkpoint_path, device="cpu", tta=True)
    predictor.tta = True
    assert np.abs(predictor.predict_proba(first) - eager_tta.predict_proba(first)).max() <= TOLERANCE


@pytest.mark.busi
def test_onnxruntime_predictor_prepares_inputs_on_one_torch_thread(
    checkpoint_path: Path, busi_paths: list[Path], eager: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint_path, device="cpu", backend="onnxruntime")
    assert predictor.model.host_batches is True
    seen: list[int] = []
    preprocess = predictor.preprocess
    monkeypatch.setattr(
        predictor, "preprocess", lambda image: (seen.append(torch.get_num_threads()), preprocess(image))[1]
    )
    before = torch.get_num_threads()
    streamed = [list(p.probabilities.values()) for p in predictor.predict_paths(busi_paths[:4])]
    assert seen == [1, 1, 1, 1]
    assert torch.get_num_threads() == before  # restored
    assert np.abs(np.array(streamed) - eager[:4]).max() <= TOLERANCE
    eager_predictor = Predictor.from_checkpoint(checkpoint_path, device="cpu")
    assert eager_predictor.model_info.architecture and not getattr(eager_predictor.model, "host_batches", False)


def test_onnx_metadata_describes_the_model(checkpoint_path: Path, tmp_path: Path) -> None:
    out = export_model(checkpoint_path, tmp_path / "model.onnx")
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == ["benign", "malignant", "normal"]
    assert int(meta["image_size"]) == SIZE and float(meta["temperature"]) == 1.5
    assert json.loads(meta["mean"]) == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(meta["std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert meta["model"] == "torchvision/resnet18"
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert proto.graph.input[0].name == "image" and batch_dim.dim_param == "batch"
    parsed = ExportMetadata.from_strings(meta, str(out))
    assert parsed.class_names == ("benign", "malignant", "normal") and parsed.model_info.num_classes == 3


def test_cli_export_checks_parity_and_reports_errors(
    checkpoint_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.ts"
    assert main(["export", str(checkpoint_path), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Wrote" in printed and "max |Δ probability|" in printed
    _, meta = load_exported(out)
    assert meta.image_size == SIZE
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(checkpoint_path), "--format", "tflite", "--out", str(tmp_path / "x")])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_files_without_breastus_metadata_are_refused(tmp_path: Path, checkpoint_path: Path) -> None:
    plain = tmp_path / "plain.onnx"
    model = torch.nn.Linear(4, 3)
    torch.onnx.export(model, (torch.zeros(1, 4),), str(plain), dynamo=False)
    with pytest.raises(CheckpointError, match="carries no breastus metadata"):
        Predictor.from_exported(plain)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not a model")
    with pytest.raises(CheckpointError, match="ONNX Runtime cannot load"):
        load_exported(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_exported(tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="backend must be one of"):
        Predictor.from_checkpoint(checkpoint_path, backend="tensorrt")
    with pytest.raises(ConfigError, match="format must be 'onnx' or 'torchscript'"):
        export_model(checkpoint_path, tmp_path / "x", format="tflite")  # type: ignore[arg-type]
