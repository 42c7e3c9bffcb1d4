"""Model cards (`breastus report`) of a tiny trained run."""

from __future__ import annotations

import ast
import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder

from breastus import TrainConfig, train_and_evaluate, write_model_card
from breastus.cli import main
from breastus.evaluation import expected_calibration_error
from breastus.reporting import build_model_card


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_image_folder(tmp_path_factory.mktemp("data"), {"benign": 14, "malignant": 12, "normal": 12})
    run = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(pretrained="none", epochs=1, image_size=32, batch_size=8, progress=False, seed=3)
    train_and_evaluate(data, run, config)
    return run


def test_card_has_every_section_and_the_real_numbers(run_dir: Path) -> None:
    card = build_model_card(run_dir, n_bootstrap=200)
    for heading in (
        "## Intended use",
        "## Model",
        "## Data",
        "## Training protocol",
        "## Metrics on the held-out test part",
        "## Calibration",
        "## Known failure modes",
        "## How to reproduce",
    ):
        assert heading in card
    assert "**This model is not a medical device.**" in card
    assert "Label conflicts" in card and "No patient IDs" in card and "Burned-in annotations" in card
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert f"| accuracy | {metrics['accuracy']:.3f} |" in card
    assert f"{metrics['n']} test images." in card
    temperature = torch.load(run_dir / "best.pt", weights_only=True)["temperature"]
    assert f"Softmax temperature in the checkpoint: {temperature:g}" in card
    assert "percentile bootstrap over test images (200 resamples, seed 0)" in card
    # the bootstrap interval of the accuracy is printed and brackets the point estimate
    low, high = map(float, re.search(r"\| accuracy \| [0-9.]+ \| ([0-9.]+) – ([0-9.]+) \|", card).groups())  # type: ignore[union-attr]
    assert low <= metrics["accuracy"] <= high
    split = json.loads((run_dir / "split.json").read_text())
    assert f"| test | {len(split['test'])} |" in card


def test_reproduce_section_round_trips_the_config(run_dir: Path) -> None:
    card = build_model_card(run_dir, n_bootstrap=10)
    command = re.search(r"```bash\n(breastus train .*)\n```", card).group(1)  # type: ignore[union-attr]
    assert "--image-size 32" in command and "--epochs 1" in command and "--pretrained none" in command
    assert "--seed 3" in command and f"--out {run_dir}" in command
    literal = re.search(r"TrainConfig\.from_dict\(\n(\{.*?\})\n\)", card, re.S).group(1)  # type: ignore[union-attr]
    config = TrainConfig.from_dict(ast.literal_eval(literal))
    assert config == TrainConfig.from_dict(torch.load(run_dir / "best.pt", weights_only=True)["train_config"])
    assert config.seed == 3


def test_cli_writes_file_and_stdout(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "card.md"
    assert main(["report", str(run_dir), "--out", str(out), "--bootstrap", "50"]) == 0
    assert out.read_text(encoding="utf-8").startswith("# Model card: resnet18")
    assert main(["report", str(run_dir), "--out", "-", "--bootstrap", "50"]) == 0
    assert "## How to reproduce" in capsys.readouterr().out


def test_default_output_goes_into_the_run_folder(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    copy.mkdir()
    for file in run_dir.iterdir():
        os.symlink(file, copy / file.name)
    (copy / "calibration.json").unlink(missing_ok=True)
    assert write_model_card(copy, n_bootstrap=20) == copy / "model_card.md"
    card = (copy / "model_card.md").read_text(encoding="utf-8")
    rows = list(csv.DictReader((run_dir / "test_predictions.csv").open()))
    names = ["benign", "malignant", "normal"]
    probabilities = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])
    labels = np.array([names.index(r["label"]) for r in rows])
    ece = expected_calibration_error(probabilities, labels)
    assert f"test part (15 equal-width bins): {ece:.3f}. No `calibration.json` was found" in card


def test_stored_cv_and_calibration_results_are_used(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    copy.mkdir()
    for file in run_dir.iterdir():
        os.symlink(file, copy / file.name)
    cv = {
        "n_folds": 2,
        "folds": [{"accuracy": 0.7}, {"accuracy": 0.9}],
        "mean": {"accuracy": 0.8, "auc": {"benign": 0.9}},
        "std": {"accuracy": 0.1, "auc": {"benign": 0.05}},
        "ci95": {"accuracy": [0.71, 0.88], "auc": {"benign": [0.6, 0.95], "normal": None}},
        "bootstrap": {"resamples": 1000, "seed": 0, "level": 0.95, "unit": "group"},
        "groups": {"source": "audit", "n_images": 38, "n_groups": 30},
    }
    (tmp_path / "cv.json").write_text(json.dumps(cv))  # one folder up, as breastus cv lays out its folds
    calibration = {"temperature": 1.7, "val": {"n": 4.0, "ece_before": 0.12, "ece_after": 0.04}, "test": None}
    (copy / "calibration.json").unlink(missing_ok=True)
    (copy / "calibration.json").write_text(json.dumps(calibration))
    (copy / "bootstrap.json").write_text(json.dumps({"accuracy": {"ci": [0.111, 0.999]}}))
    card = build_model_card(copy)
    assert "## Cross-validation" in card and "2 folds over 38 images; groups from audit" in card
    assert "| accuracy | 0.800 | 0.100 | 0.710 – 0.880 |" in card
    assert "| auc/benign | 0.900 | 0.050 | 0.600 – 0.950 |" in card
    assert "over groups of the pooled out-of-fold predictions (1000 resamples)" in card
    assert "| val/ece_after | 0.040 |" in card
    assert "0.111 – 0.999" in card and "from bootstrap.json" in card


def test_cross_validation_folder_reproduces_with_breastus_cv(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "fold-1").mkdir()
    os.symlink(run_dir / "best.pt", tmp_path / "fold-1" / "best.pt")
    config = TrainConfig(pretrained="none", epochs=1, image_size=32, seed=5).to_dict()
    cv = {"n_folds": 2, "folds": [{}, {}], "mean": {"accuracy": 0.5}, "data": "/data/busi", "config": config}
    (tmp_path / "cv.json").write_text(json.dumps(cv))
    card = build_model_card(tmp_path)
    assert "This is a cross-validation folder" in card and "- Source: `/data/busi`" in card
    command = re.search(r"```bash\n(.*)\n```", card).group(1)  # type: ignore[union-attr]
    assert command.startswith(f"breastus cv /data/busi --out {tmp_path} --folds 2") and "--seed 5" in command
    assert f"cross_validate('/data/busi', '{tmp_path}', config, folds=2, calibrate=True)" in card


def test_missing_run_folder_is_a_clear_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "expected best.pt or last.pt" in capsys.readouterr().err
