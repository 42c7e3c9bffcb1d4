"""Metrics against small hand-computed examples, and undefined values reported as None."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from breastus import ClassificationMetrics, DataError, compute_metrics

NAMES = ["benign", "malignant", "normal"]

# Six images, two per class. Predicted (argmax): 0, 1 | 1, 1 | 2, 0
LABELS = [0, 0, 1, 1, 2, 2]
PROBABILITIES = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.1, 0.8],
        [0.5, 0.1, 0.4],
    ]
)


@pytest.fixture(scope="module")
def metrics() -> ClassificationMetrics:
    return compute_metrics(LABELS, PROBABILITIES, NAMES)


def test_confusion_matrix_and_accuracy(metrics: ClassificationMetrics) -> None:
    assert metrics.n == 6
    assert metrics.confusion_matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics.accuracy == pytest.approx(4 / 6)


def test_macro_f1(metrics: ClassificationMetrics) -> None:
    # benign: P 1/2 R 1/2 -> F1 1/2; malignant: P 2/3 R 1 -> 4/5; normal: P 1 R 1/2 -> 2/3
    assert metrics.macro_f1 == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)


def test_sensitivity_and_specificity(metrics: ClassificationMetrics) -> None:
    assert metrics.sensitivity == pytest.approx({"benign": 1 / 2, "malignant": 1.0, "normal": 1 / 2})
    # benign: TN 3, FP 1; malignant: TN 3, FP 1; normal: TN 4, FP 0
    assert metrics.specificity == pytest.approx({"benign": 3 / 4, "malignant": 3 / 4, "normal": 1.0})


def test_one_vs_rest_auc(metrics: ClassificationMetrics) -> None:
    # benign scores: positives {0.7, 0.3}, negatives {0.1, 0.2, 0.1, 0.5}: 4 + 3 of 8 pairs ranked right
    # malignant: positives {0.8, 0.5}, negatives {0.2, 0.6, 0.1, 0.1}: 4 + 3 of 8
    # normal: positives {0.8, 0.4}, negatives {0.1, 0.1, 0.1, 0.3}: 8 of 8
    assert metrics.auc == pytest.approx({"benign": 7 / 8, "malignant": 7 / 8, "normal": 1.0})
    assert metrics.macro_auc == pytest.approx((7 / 8 + 7 / 8 + 1.0) / 3)


def test_log_loss(metrics: ClassificationMetrics) -> None:
    expected = -np.mean(np.log([0.7, 0.3, 0.8, 0.5, 0.8, 0.4]))  # probability given to the true class
    assert metrics.log_loss == pytest.approx(expected)


def test_perfect_predictions() -> None:
    perfect = compute_metrics([0, 1, 2], np.eye(3), NAMES)
    assert perfect.accuracy == perfect.macro_f1 == perfect.macro_auc == 1.0
    assert perfect.confusion_matrix == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert all(v == 1.0 for v in perfect.sensitivity.values())
    assert perfect.log_loss == pytest.approx(0.0, abs=1e-6)


def test_two_of_three_classes_give_none_where_undefined() -> None:
    # an external test set with benign and malignant only; one benign image predicted 'normal'
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.3, 0.6, 0.1], [0.1, 0.9, 0.0]])
    m = compute_metrics([0, 0, 1, 1], probabilities, NAMES)
    assert m.auc["normal"] is None
    assert m.sensitivity["normal"] is None
    assert m.specificity["normal"] == pytest.approx(3 / 4)  # one of the four non-normal images called normal
    # benign: positives {0.8, 0.2} vs negatives {0.3, 0.1}: 3 of 4 pairs; malignant {0.6, 0.9} vs {0.1, 0.2}: 4 of 4
    assert m.auc["benign"] == pytest.approx(3 / 4) and m.auc["malignant"] == pytest.approx(1.0)
    assert m.macro_auc == pytest.approx((3 / 4 + 1.0) / 2)  # mean over the classes where AUC is defined
    assert m.sensitivity["benign"] == pytest.approx(1 / 2)
    # macro-F1 over the two classes present: benign P 1 R 1/2 -> 2/3, malignant P 1 R 1 -> 1
    assert m.macro_f1 == pytest.approx((2 / 3 + 1) / 2)
    assert m.confusion_matrix == [[1, 0, 1], [0, 2, 0], [0, 0, 0]]
    assert "n/a" in m.summary()


def test_a_single_class_has_no_auc_at_all() -> None:
    m = compute_metrics([1, 1], np.array([[0.1, 0.8, 0.1], [0.5, 0.4, 0.1]]), NAMES)
    assert m.macro_auc is None
    assert all(v is None for v in m.auc.values())
    assert m.accuracy == pytest.approx(0.5)


def test_to_dict_is_json_ready(metrics: ClassificationMetrics) -> None:
    data = json.loads(json.dumps(metrics.to_dict()))
    assert data["class_names"] == NAMES
    assert data["confusion_matrix"] == metrics.confusion_matrix
    assert math.isclose(data["macro_f1"], metrics.macro_f1)
    summary = metrics.summary()
    assert "accuracy=0.667" in summary and "malignant" in summary


@pytest.mark.parametrize(
    ("labels", "probabilities"),
    [([0, 1], np.ones((3, 3)) / 3), ([0, 1], np.ones((2, 2)) / 2), ([], np.zeros((0, 3)))],
)
def test_shape_errors(labels: list[int], probabilities: np.ndarray) -> None:
    with pytest.raises(DataError):
        compute_metrics(labels, probabilities, NAMES)
