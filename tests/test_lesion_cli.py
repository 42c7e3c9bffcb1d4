"""``breastus predict --masks`` and ``breastus explain`` for multi-task models (issue 13, part 3)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from breastus.cli import main
from breastus.models import Checkpoint, build_model, save_checkpoint

NAMES = ("benign", "malignant", "normal")


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model, info = build_model("unet/resnet18", 3, None)
    head: Any = model.classification_head
    with torch.no_grad():
        head[3].weight.mul_(30)
    checkpoint = Checkpoint(info, NAMES, 64, model.state_dict(), lesion_threshold=0.3)
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("unet") / "best.pt")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (40, 56)), ("b.png", (48, 48))):
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(folder / name)
    (folder / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (36, 30), dtype=np.uint8)).save(folder / "sub" / "a.png")  # same stem
    return folder


def test_predict_writes_masks_and_lesion_json(
    unet_run: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "keep.png").write_bytes(b"not ours")
    argv = ["predict", str(unet_run), str(images), "--masks", str(masks), "--json", "--pixel-spacing", "0.1", "0.2"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3
    assert sorted(p.name for p in masks.iterdir()) == ["a-2_mask.png", "a_mask.png", "b_mask.png", "keep.png"]
    assert (masks / "keep.png").read_bytes() == b"not ours"  # files already there are kept
    assert not list(masks.glob(".*"))  # no temporary files left behind
    for row in rows:
        written = np.asarray(Image.open(row["mask"]))
        assert written.shape == np.asarray(Image.open(row["path"])).shape
        assert set(np.unique(written)) <= {0, 255}
        assert int((written > 0).sum()) == row["lesion_area_px"]
        assert row["lesion_area_mm2"] == pytest.approx(row["lesion_area_px"] * 0.02)
        assert 0.0 <= row["lesion_probability"] <= 1.0
        assert (row["label"] == "normal") == (row["lesion_probability"] < 0.3)


def test_predict_csv_has_lesion_columns(unet_run: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    assert main(["predict", str(unet_run), str(images / "b.png"), "--csv", str(out), "--decision", "argmax"]) == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[-8:] == [
        "lesion_probability",
        "x0",
        "y0",
        "x1",
        "y1",
        "lesion_area_px",
        "lesion_area_mm2",
        "mask",
    ]
    assert float(rows[0]["lesion_probability"]) >= 0 and rows[0]["lesion_area_mm2"] == "" and rows[0]["mask"] == ""


def test_predict_masks_needs_a_multitask_model(
    tiny_checkpoint: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(tiny_checkpoint), str(images), "--masks", str(tmp_path / "m")]) == 2
    assert "--masks needs a multi-task model" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_explain_draws_the_predicted_outline(
    unet_run: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pytorch_grad_cam")
    assert main(["explain", str(unet_run), str(images / "b.png"), "--out", str(tmp_path), "--width", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    png = Path(line.split("\t")[-1])
    assert png.is_file() and Image.open(png).size[0] == 200


def test_explain_api_uses_the_encoder_for_a_multitask_model(unet_run: Path) -> None:
    pytest.importorskip("pytorch_grad_cam")
    from breastus import Predictor
    from breastus.explain import find_target_layer
    from breastus.explain._cam import class_model

    predictor = Predictor.from_checkpoint(unet_run, device="cpu")
    model, layer = class_model(predictor, None)
    assert find_target_layer(model, layer)[0] == "model.encoder.layer4"
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    heatmap = predictor.explain(np.full((40, 56), 90, dtype=np.uint8))
    assert heatmap.shape == (40, 56) and heatmap.min() >= 0.0 and heatmap.max() <= 1.0


def test_export_cli_checks_both_outputs(unet_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "unet.onnx"
    assert main(["export", str(unet_run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "outputs 'mask_logits', 'class_logits'" in text
    difference = float(text.split("= ")[-1])
    assert out.is_file() and difference <= 1e-4
