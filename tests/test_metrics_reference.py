"""The NumPy metrics equal scikit-learn's on random predictions (they replaced it for speed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score, roc_curve

from breastus import compute_binary_metrics, compute_metrics
from breastus.evaluation import sensitivity_at_specificity

NAMES = ["benign", "malignant", "normal"]


@st.composite
def predictions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 40))
    labels = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    # coarse values make ties, where ranking and threshold algorithms differ most
    raw = np.array(draw(st.lists(st.integers(1, 6), min_size=3 * n, max_size=3 * n)), dtype=np.float64)
    p = raw.reshape(n, 3)
    return labels, p / p.sum(axis=1, keepdims=True)


def _sklearn_sensitivity(
    truth: np.ndarray, scores: np.ndarray, specificity: float
) -> tuple[float, float | None, float]:
    fpr, tpr, thresholds = roc_curve(truth, scores, drop_intermediate=False)
    allowed = np.flatnonzero(fpr <= 1.0 - specificity + 1e-12)
    best = allowed[np.argmax(tpr[allowed])]
    return float(tpr[best]), float(thresholds[best]) if np.isfinite(thresholds[best]) else None, 1.0 - fpr[best]


@settings(max_examples=60, deadline=None)
@given(predictions())
def test_compute_metrics_equals_scikit_learn(data: tuple[np.ndarray, np.ndarray]) -> None:
    labels, p = data
    m = compute_metrics(labels, p, NAMES)
    predicted = p.argmax(axis=1)
    assert m.accuracy == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    present = sorted(set(labels.tolist()))
    assert m.macro_f1 == pytest.approx(f1_score(labels, predicted, labels=present, average="macro"), abs=1e-12)
    assert m.log_loss == pytest.approx(log_loss(labels, p, labels=[0, 1, 2]), abs=1e-9)
    for i, name in enumerate(NAMES):
        truth = labels == i
        expected = roc_auc_score(truth, p[:, i]) if 0 < truth.sum() < len(truth) else None
        assert m.auc[name] == (None if expected is None else pytest.approx(expected, abs=1e-12))


@settings(max_examples=60, deadline=None)
@given(predictions(), st.sampled_from([0.5, 0.8, 0.9, 0.95]))
def test_sensitivity_at_specificity_equals_the_roc_curve(data: tuple[np.ndarray, np.ndarray], spec: float) -> None:
    labels, p = data
    truth = labels == 1
    got = sensitivity_at_specificity(truth, p[:, 1], spec)
    if truth.all() or not truth.any():
        assert got == (None, None, None)
        return
    assert got == pytest.approx(_sklearn_sensitivity(truth, p[:, 1], spec), abs=1e-12)
    binary = compute_binary_metrics(labels, p, NAMES, specificity=spec)
    assert binary.auc == pytest.approx(roc_auc_score(truth, p[:, 1]), abs=1e-12)
