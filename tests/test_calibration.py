"""Temperature scaling, expected calibration error, and calibration inside train_and_evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

from breastus import Predictor, TrainConfig, expected_calibration_error, fit_temperature, load_checkpoint
from breastus._pipeline import train_and_evaluate
from breastus.evaluation import calibrate_checkpoint, checkpoint_logits, reliability_bins
from breastus.evaluation._calibration import negative_log_likelihood


def toy_logits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated three-class logits (the Bayes log-odds of Gaussian classes) and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return 1.5 * (rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[labels]), labels


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    logits, labels = toy_logits(3000, seed=0)
    overconfident = 4.0 * logits  # a model four times too sure of itself
    fit_part, test_part = slice(0, 1500), slice(1500, None)
    temperature = fit_temperature(overconfident[fit_part], labels[fit_part])
    assert 3.4 < temperature < 4.6
    before = expected_calibration_error(softmax(overconfident[test_part], axis=1), labels[test_part])
    after = expected_calibration_error(softmax(overconfident[test_part] / temperature, axis=1), labels[test_part])
    assert before > 0.1 and after < 0.04 and after < before / 3
    # Predictions are unchanged: temperature scaling keeps the arg-max.
    np.testing.assert_array_equal(overconfident.argmax(1), (overconfident / temperature).argmax(1))
    nll_before = negative_log_likelihood(overconfident[test_part], labels[test_part])
    assert negative_log_likelihood(overconfident[test_part], labels[test_part], temperature) < nll_before


def test_an_underconfident_model_gets_a_temperature_below_one() -> None:
    logits, labels = toy_logits(2000, seed=1)
    assert fit_temperature(logits / 3, labels) == pytest.approx(1 / 3, rel=0.15)


def test_ece_worked_example() -> None:
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    # Confidence 0.9 twice (one right), 0.6 once (wrong), 0.7 once (right): three bins of width 1/15.
    bins = reliability_bins(p, [0, 1, 1, 1], n_bins=15)
    assert int(bins.counts.sum()) == 4
    expected = (2 * abs(0.5 - 0.9) + 1 * abs(0.0 - 0.6) + 1 * abs(1.0 - 0.7)) / 4
    assert expected_calibration_error(p, [0, 1, 1, 1]) == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(0, 10_000), st.floats(0.1, 10))
def test_ece_is_between_zero_and_one(n: int, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    p = softmax(scale * rng.normal(size=(n, 3)), axis=1)
    labels = rng.integers(0, 3, n)
    ece = expected_calibration_error(p, labels)
    assert 0.0 <= ece <= 1.0
    # One bin: ECE is |accuracy - mean confidence|.
    one = expected_calibration_error(p, labels, n_bins=1)
    assert one == pytest.approx(abs((p.argmax(1) == labels).mean() - p.max(1).mean()))


@pytest.mark.slow
def test_train_and_evaluate_stores_the_temperature_in_best_pt(tiny_folder: Path, tmp_path: Path) -> None:
    config = TrainConfig(pretrained="none", epochs=2, image_size=32, batch_size=8, progress=False, device="cpu")
    result = train_and_evaluate(tiny_folder, tmp_path / "run", config)
    report = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert result.calibration is not None
    assert report["temperature"] == pytest.approx(result.calibration.temperature)
    assert report["val"]["nll_after"] <= report["val"]["nll_before"] + 1e-9
    assert {"ece_before", "ece_after"} <= set(report["test"])
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    assert checkpoint.temperature == pytest.approx(report["temperature"])
    assert checkpoint.temperature != 1.0
    # The Predictor applies it: its probabilities are softmax(logits / T).
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", device="cpu")
    assert predictor.temperature == pytest.approx(checkpoint.temperature)
    test = result.test
    logits, labels = checkpoint_logits(checkpoint, _subset(tiny_folder, result.split.test), device="cpu")
    np.testing.assert_allclose(test.probabilities, softmax(logits / checkpoint.temperature, axis=1), atol=1e-5)
    np.testing.assert_array_equal(labels, test.labels)


def _subset(folder: Path, indices: np.ndarray):  # type: ignore[no-untyped-def]
    from breastus import UltrasoundDataset

    return UltrasoundDataset.from_folder(folder).subset(indices)


def test_calibrate_checkpoint_rewrites_the_file(tiny_checkpoint: Path, tiny_folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "best.pt"
    target.write_bytes(tiny_checkpoint.read_bytes())
    data = _subset(tiny_folder, np.arange(0, 30, 3))
    result = calibrate_checkpoint(tmp_path, data, device="cpu", output=tmp_path / "calibration.json")
    assert result.test is None and result.val["n"] == 10
    assert load_checkpoint(target).temperature == pytest.approx(result.temperature)
    assert json.loads((tmp_path / "calibration.json").read_text())["temperature"] == pytest.approx(result.temperature)
    assert "temperature" in result.summary()
