"""int8 ONNX export: parity with float32 on real BUSI images, metadata, calibration sample, CLI, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from breastus import ConfigError, DataError, Predictor, UltrasoundDataset
from breastus.cli import main
from breastus.export import ExportMetadata, calibration_images, export_model, load_exported
from breastus.export._quantize import int8_settings
from breastus.models import Checkpoint, build_model, save_checkpoint

pytest.importorskip("onnxruntime")

SIZE = 64
CALIBRATION = 16


def weight_dtypes(proto: onnx.ModelProto) -> set[str]:
    """The types of the quantized convolution weights (the 4-D 8-bit initializers)."""
    names = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
    return {names[t.data_type] for t in proto.graph.initializer if len(t.dims) == 4 and t.data_type in names}


@pytest.fixture(scope="module")
def busi_paths(busi_root: Path) -> list[Path]:
    data = UltrasoundDataset.from_folder(busi_root)
    return data.paths[1::39][:20]  # 20 images of all three classes


@pytest.fixture(scope="module")
def centred_checkpoint(tmp_path_factory: pytest.TempPathFactory, busi_paths: list[Path]) -> Path:
    """A fixed-seed untrained ResNet-18 whose head is centred and scaled on BUSI images.

    A plain untrained network gives every image the same label (agreement would be
    trivial); centring its logits spreads the labels over all classes with margins
    as small as a real model's, so int8 rounding can flip them.
    """
    torch.manual_seed(0)
    model, info = build_model("resnet18", 3, None)
    names = ("benign", "malignant", "normal")
    prepare = Predictor.from_loaded(Checkpoint(info, names, SIZE, model.state_dict()), device="cpu", precision="fp32")
    images = torch.stack([prepare.preprocess(p) for p in busi_paths])
    with torch.no_grad():
        logits = model.eval()(images)
        model.fc.bias -= logits.mean(dim=0)
        scale = 2.0 / float((logits - logits.mean(dim=0)).std())
        model.fc.weight.mul_(scale)
        model.fc.bias.mul_(scale)
    path = tmp_path_factory.mktemp("int8") / "best.pt"
    return save_checkpoint(Checkpoint(info, names, SIZE, model.state_dict(), temperature=1.2), path)


@pytest.fixture(scope="module")
def int8_file(centred_checkpoint: Path, busi_root: Path) -> Path:
    out = centred_checkpoint.with_name("model.int8.onnx")
    return export_model(centred_checkpoint, out, quantize="int8", calibration=busi_root, calibration_size=CALIBRATION)


@pytest.mark.busi
def test_int8_agrees_with_float32_on_busi_images(
    centred_checkpoint: Path, int8_file: Path, busi_paths: list[Path]
) -> None:
    reference = Predictor.from_checkpoint(centred_checkpoint, device="cpu", precision="fp32").predict_proba(busi_paths)
    assert len(set(reference.argmax(axis=1))) == 3, "the check needs images of every predicted class"
    int8 = Predictor.from_exported(int8_file, device="cpu").predict_proba(busi_paths)
    agreement = float((reference.argmax(axis=1) == int8.argmax(axis=1)).mean())
    assert agreement >= 0.9
    difference = float(np.abs(reference - int8).max())
    assert 0 < difference < 0.25  # int8 really ran (not float32) and stays close
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.busi
def test_int8_metadata_and_graph(int8_file: Path, centred_checkpoint: Path, tmp_path: Path) -> None:
    proto = onnx.load(str(int8_file))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    _, meta = load_exported(int8_file)
    assert meta.calibration["weight_type"] == "int8"  # the default (U8S8), recorded
    assert weight_dtypes(proto) == {meta.calibration["weight_type"]}
    assert sum(t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for t in proto.graph.initializer) >= 20
    per_channel = [t for t in proto.graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1]
    assert per_channel, "weights are quantized per channel"
    assert meta.quantized == "int8"
    assert meta.calibration["folder"] == "busi" and meta.calibration["images"] == CALIBRATION
    assert "/" not in json.dumps(meta.calibration)  # no absolute path in the file
    assert meta.class_names == ("benign", "malignant", "normal") and meta.temperature == 1.2
    assert ExportMetadata.from_strings(meta.to_strings(), "x") == meta
    fp32 = export_model(centred_checkpoint, tmp_path / "fp32.onnx")
    _, meta32 = load_exported(fp32)
    assert meta32.quantized is None and meta32.calibration == {}
    assert int8_file.stat().st_size < fp32.stat().st_size / 3


def test_calibration_sample_is_seeded_sorted_and_capped(tiny_folder: Path) -> None:
    all_images = calibration_images(tiny_folder, 1000)
    assert len(all_images) == 30 and not any("_mask" in p.name for p in all_images)
    sample = calibration_images(tiny_folder, 8, seed=3)
    assert len(sample) == 8 and sample == calibration_images(tiny_folder, 8, seed=3)
    assert sample != calibration_images(tiny_folder, 8, seed=4)
    assert sample == [p for p in all_images if p in set(sample)]  # in folder order
    with pytest.raises(ConfigError, match="calibration_size"):
        calibration_images(tiny_folder, 0)


def test_cli_int8_export_and_errors(
    tiny_checkpoint: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny.int8.onnx"
    args = ["export", str(tiny_checkpoint), "--format", "onnx", "--out", str(out), "--quantize", "int8"]
    assert main([*args, "--calibration", str(tiny_folder), "--calibration-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "onnx, int8" in printed and "int8 labels agree with float32" in printed
    predictor = Predictor.from_exported(out, device="cpu")
    assert predictor.predict(str(next(tiny_folder.glob("benign/*).png")))).label in predictor.class_names
    assert load_exported(out)[1].calibration["images"] == 8

    assert main(args) == 2  # no --calibration
    assert "needs calibration images" in capsys.readouterr().err
    ts = ["export", str(tiny_checkpoint), "--format", "torchscript", "--out", str(tmp_path / "m.ts")]
    assert main([*ts, "--quantize", "int8", "--calibration", str(tiny_folder)]) == 2
    assert "needs format='onnx'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no image file"):
        export_model(tiny_checkpoint, tmp_path / "x.onnx", quantize="int8", calibration=empty)
    with pytest.raises(ConfigError, match="quantize must be None or one of"):
        export_model(tiny_checkpoint, tmp_path / "x.onnx", quantize="int4", calibration=tiny_folder)


def test_weight_type_must_be_int8_or_uint8() -> None:
    assert int8_settings()["weight_type"] == "int8"
    assert int8_settings(weight_type="uint8")["weights"] == "uint8 per channel"
    with pytest.raises(ConfigError, match=r"weight_type must be one of \['int8', 'uint8'\]. Got 'int4'"):
        int8_settings(weight_type="int4")


@pytest.mark.parametrize("weight_type", ["int8", "uint8"])
def test_cli_int8_settings_reach_the_graph_and_metadata(
    weight_type: str, tiny_checkpoint: Path, tiny_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / f"tiny.{weight_type}.onnx"
    args = ["export", str(tiny_checkpoint), "--out", str(out), "--quantize", "int8", "--calibration", str(tiny_folder)]
    settings = ["--calibration-size", "8", "--weight-type", weight_type, "--calibration-method", "minmax"]
    assert main([*args, *settings, "--keep-float", "first,last", "--no-check"]) == 0
    proto = onnx.load(str(out))
    assert weight_dtypes(proto) == {weight_type}
    calibration = load_exported(out)[1].calibration
    assert calibration["weight_type"] == weight_type and calibration["method"] == "minmax"
    assert calibration["keep_float"] == ["first", "last"] and calibration["reduce_range"] is False
    # the first and last weighted layers stay float32: a float Conv feeds from the input, the head is float
    first = next(node for node in proto.graph.node if node.op_type == "Conv")
    assert not any(i.endswith("DequantizeLinear_Output") or "_dequantized" in i for i in first.input[1:])


def test_bad_int8_settings_are_refused_before_anything_is_written(
    tiny_checkpoint: Path, tiny_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.onnx"
    for bad, match in (
        ({"calibration_method": "median"}, "calibration_method must be one of"),
        ({"weight_type": "int4"}, "weight_type must be one of"),
        ({"keep_float": ["middle"]}, "keep_float entries must be among"),
        ({"reduce_range": "yes"}, "reduce_range must be True or False"),
    ):
        with pytest.raises(ConfigError, match=match):
            export_model(tiny_checkpoint, out, quantize="int8", calibration=tiny_folder, **bad)  # type: ignore[arg-type]
    assert not out.exists()
