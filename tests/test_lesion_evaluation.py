"""Evaluation of multi-task models: called-normal shares, Dice in evaluate, cv and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_multitask_training import make_lesion_folder

from breastus import Predictor, TrainConfig, Trainer, UltrasoundDataset, compute_metrics, evaluate
from breastus.cli import main
from breastus.evaluation import called_normal_shares, cross_validate
from breastus.evaluation._cv import fast_headline, headline


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here on one thread (the ``one_torch_thread`` fixture)."""


@pytest.fixture(scope="module")
def lesion_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lesion_folder(tmp_path_factory.mktemp("lesion") / "data", {"benign": 8, "malignant": 8, "normal": 8})


@pytest.fixture(scope="module")
def multitask_run(lesion_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    data = UltrasoundDataset.from_folder(lesion_data)
    config = TrainConfig(
        model="unet/test_resnet", pretrained="none", image_size=32, epochs=2, batch_size=8, progress=False, lr=3e-3
    )
    run = tmp_path_factory.mktemp("run")
    Trainer(config, run).fit(data, data)
    return run


def test_called_normal_shares() -> None:
    names = ("benign", "malignant", "normal")
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    predicted = np.array([2, 0, 2, 1, 1, 2, 0])
    lesion, malignant = called_normal_shares(labels, predicted, names)
    assert lesion == pytest.approx(2 / 5) and malignant == pytest.approx(1 / 3)
    assert called_normal_shares(labels, predicted, ("a", "b", "c")) == (None, None)
    probabilities = np.eye(3)[predicted] * 0.8 + 0.2 / 3
    metrics = compute_metrics(labels, probabilities, names)
    assert metrics.lesion_called_normal == pytest.approx(2 / 5)
    assert "called normal: lesion images 0.400" in metrics.summary()
    # another decision rule overrides the argmax for the confusion-based figures only
    overridden = compute_metrics(labels, probabilities, names, predicted=np.array(labels))
    assert overridden.accuracy == 1.0 and overridden.lesion_called_normal == 0.0
    assert overridden.macro_auc == metrics.macro_auc
    fast = fast_headline(labels, probabilities, names)
    slow = headline(metrics, probabilities, labels)
    assert fast["lesion_called_normal"] == pytest.approx(slow["lesion_called_normal"])
    assert fast["malignant_called_normal"] == pytest.approx(slow["malignant_called_normal"])


def test_evaluate_scores_masks(multitask_run: Path, lesion_data: Path) -> None:
    predictor = Predictor.from_checkpoint(multitask_run / "best.pt", device="cpu")
    data = UltrasoundDataset.from_folder(lesion_data)
    result = evaluate(predictor, data)
    assert result.segmentation is not None
    assert result.segmentation.n == len(data) - 1  # benign (1) has no mask file
    assert result.segmentation.n_lesion == 15
    assert result.segmentation.dice is not None and 0 <= result.segmentation.dice <= 1
    assert result.lesion_probabilities is not None and result.lesion_probabilities.shape == (len(data),)
    assert result.predicted is not None
    assert result.metrics.lesion_called_normal is not None
    normal = data.class_names.index("normal")
    expected = float(np.mean(result.predicted[data.labels != normal] == normal))
    assert result.metrics.lesion_called_normal == pytest.approx(expected)


def test_evaluate_cli_prints_dice(
    multitask_run: Path, lesion_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(multitask_run), str(lesion_data), "--device", "cpu", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lesion masks (23 images, 15 with a lesion): Dice" in text and "called normal" in text
    payload = json.loads(out.read_text())
    assert payload["segmentation"]["n_lesion"] == 15 and "lesion_called_normal" in payload
    assert main(["evaluate", str(multitask_run), str(lesion_data), "--device", "cpu", "--decision", "argmax"]) == 0


def test_train_cli_multitask(lesion_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "train", str(lesion_data), "--out", str(tmp_path / "run"), "--model", "unet/test_resnet",
        "--pretrained", "none", "--epochs", "1", "--image-size", "32", "--batch-size", "8", "--no-progress",
        "--device", "cpu", "--seg-loss-weight", "0.5", "--val-size", "0.3", "--test-size", "0.3",
        "--json", str(tmp_path / "test.json"),
    ]  # fmt: skip
    assert main(argv) == 0
    assert "lesion masks: Dice" in capsys.readouterr().out
    assert "segmentation" in json.loads((tmp_path / "test.json").read_text())
    from breastus import load_checkpoint

    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.train_config["seg_loss_weight"] == 0.5
    from breastus.reporting import build_model_card

    card = build_model_card(tmp_path / "run", n_bootstrap=20)
    assert "lesion-segmenting classifier" in card and "- Lesion threshold: " in card
    assert "| lesion images called normal |" in card and "| lesion Dice (per lesion image) |" in card


def test_cross_validate_multitask(lesion_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        model="unet/test_resnet", pretrained="none", image_size=32, epochs=1, batch_size=8, progress=False,
        val_size=0.25, device="cpu",
    )  # fmt: skip
    result = cross_validate(lesion_data, tmp_path / "cv", config, folds=2, groups="none", bootstrap=0, plots=False)
    assert all("dice" in row and "lesion_called_normal" in row for row in result.folds)
    assert result.pooled.lesion_called_normal is not None
    assert "called normal: lesion images" in result.summary()
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert "dice" in saved["mean"]
    # resume reuses the folds with their stored decisions: the same pooled figures
    again = cross_validate(
        lesion_data, tmp_path / "cv", config, folds=2, groups="none", bootstrap=0, plots=False, resume=True
    )
    assert again.pooled.lesion_called_normal == result.pooled.lesion_called_normal
    assert again.pooled.accuracy == result.pooled.accuracy


def test_confusion_plot_uses_the_given_decision(tmp_path: Path) -> None:
    from breastus.evaluation import plot_confusion_matrix

    names = ("benign", "malignant", "normal")
    probabilities = np.eye(3)[[0, 1, 2]]
    path = plot_confusion_matrix([0, 1, 2], probabilities, names, tmp_path / "cm.png", predicted=[2, 2, 2])
    assert path.is_file() and path.stat().st_size > 1000
