"""Classification metrics (scikit-learn), defined only where the data define them.

This module is private; the names are public as :func:`breastus.compute_metrics` and
:class:`breastus.ClassificationMetrics`. It sits below both training (validation
metrics of each epoch) and evaluation, and imports nothing else of breastus but its errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from breastus._errors import DataError


@dataclass(frozen=True)
class ClassificationMetrics:
    """Metrics of predicted probabilities against true labels.

    Values that a dataset does not define (the AUC of a class with no positive
    or no negative sample, the sensitivity of an absent class) are ``None``.

    Attributes
    ----------
    n : int
        Number of samples.
    class_names : list of str
    accuracy : float
    macro_f1 : float
        Unweighted mean F1 over the classes present in the true labels.
    macro_auc : float or None
        Mean one-vs-rest ROC-AUC over the classes where it is defined.
    log_loss : float
        Mean cross-entropy of the probabilities.
    auc : dict of str to float or None
        One-vs-rest ROC-AUC per class.
    sensitivity, specificity : dict of str to float or None
        Per class, one-vs-rest: recall of the class and of its complement.
    confusion_matrix : list of list of int
        Rows: true class, columns: predicted class, in ``class_names`` order.
    lesion_called_normal : float or None
        Share of the lesion images (every class but ``"normal"``) predicted
        ``"normal"`` (see :func:`~breastus.evaluation.called_normal_shares`);
        ``None`` without a ``"normal"`` class or lesion image.
    malignant_called_normal : float or None
        Share of the malignant images predicted ``"normal"``.

    """

    n: int
    class_names: list[str]
    accuracy: float
    macro_f1: float
    macro_auc: float | None
    log_loss: float
    auc: dict[str, float | None]
    sensitivity: dict[str, float | None]
    specificity: dict[str, float | None]
    confusion_matrix: list[list[int]]
    lesion_called_normal: float | None = None
    malignant_called_normal: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON-ready plain values."""
        return asdict(self)

    def summary(self) -> str:
        """A short human-readable table."""

        def fmt(value: float | None) -> str:
            return "  n/a" if value is None else f"{value:.3f}"

        lines = [
            f"n={self.n}  accuracy={self.accuracy:.3f}  macro-F1={self.macro_f1:.3f}  "
            f"macro-AUC={fmt(self.macro_auc)}  log-loss={self.log_loss:.3f}",
            f"{'class':<12}{'AUC':>7}{'sens':>7}{'spec':>7}",
        ]
        for name in self.class_names:
            lines.append(
                f"{name:<12}{fmt(self.auc[name]):>7}{fmt(self.sensitivity[name]):>7}{fmt(self.specificity[name]):>7}"
            )
        if self.lesion_called_normal is not None:
            lines.append(
                f"called normal: lesion images {fmt(self.lesion_called_normal)}  "
                f"malignant images {fmt(self.malignant_called_normal)}"
            )
        lines.append("confusion (rows true, columns predicted): " + str(self.confusion_matrix))
        return "\n".join(lines)


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


NORMAL = "normal"
"""The class that means "no lesion"."""
MALIGNANT = "malignant"


def called_normal_shares(
    labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray, class_names: Sequence[str]
) -> tuple[float | None, float | None]:
    """Shares of lesion images and of malignant images that were predicted ``"normal"``.

    A lesion filed as "normal" is the worst error a breast ultrasound classifier
    can make; both shares are headline metrics of :func:`~breastus.evaluate` and
    :func:`~breastus.cross_validate`.

    Returns
    -------
    lesion_called_normal, malignant_called_normal : float or None
        ``None`` when the class names lack ``"normal"`` (or ``"malignant"``), or the
        labels hold no such image.

    """
    names = list(class_names)
    if NORMAL not in names:
        return None, None
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    normal = names.index(NORMAL)
    lesion = y != normal
    lesion_share = float((p[lesion] == normal).mean()) if lesion.any() else None
    malignant_share: float | None = None
    if MALIGNANT in names:
        malignant = y == names.index(MALIGNANT)
        malignant_share = float((p[malignant] == normal).mean()) if malignant.any() else None
    return lesion_share, malignant_share


def check_probabilities(
    labels: Sequence[int] | np.ndarray, probabilities: np.ndarray, n_classes: int | None, task: str = "compute metrics"
) -> tuple[np.ndarray, np.ndarray]:
    """Labels as ``int64`` and probabilities as ``float64``, checked to be one row per label (and ``n_classes`` columns).

    Parameters
    ----------
    labels : sequence of int
    probabilities : numpy.ndarray
    n_classes : int or None
        Required number of columns; ``None`` accepts any.
    task : str, default="compute metrics"
        What needs them, for the message on zero samples.

    Returns
    -------
    labels, probabilities : numpy.ndarray

    Raises
    ------
    DataError
        If the shapes disagree or there are no samples.

    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if n_classes is not None and (p.ndim != 2 or p.shape != (len(y), n_classes)):
        raise DataError(
            f"probabilities must have shape (n_samples, n_classes) = ({len(y)}, {n_classes}). Got {p.shape} instead."
        )
    if p.ndim != 2 or p.shape[0] != len(y):
        raise DataError(
            f"probabilities must have shape (n_samples, n_classes) with n_samples = {len(y)}. Got {p.shape} instead."
        )
    if len(y) == 0:
        raise DataError(f"Cannot {task} on zero samples.")
    return y, p


def roc_auc(positives: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC as the Mann-Whitney statistic with mid-ranks (equal to scikit-learn's ``roc_auc_score``).

    Parameters
    ----------
    positives : numpy.ndarray
        Boolean truth per sample.
    scores : numpy.ndarray
        Higher means more likely positive.

    Returns
    -------
    float or None
        ``None`` when there is no positive or no negative sample.

    """
    truth = np.asarray(positives, dtype=bool)
    n_pos = int(truth.sum())
    n_neg = len(truth) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def compute_metrics(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    predicted: Sequence[int] | np.ndarray | None = None,
) -> ClassificationMetrics:
    """Accuracy, macro-F1, one-vs-rest AUC, sensitivity, specificity, confusion matrix.

    Parameters
    ----------
    labels : sequence of int
        True class index of each sample.
    probabilities : numpy.ndarray
        ``(n_samples, n_classes)`` predicted probabilities; rows sum to 1.
    class_names : sequence of str
        Names of the ``n_classes`` columns.
    predicted : sequence of int, optional
        The predicted class of each sample, when a decision rule other than the
        argmax of ``probabilities`` made it (the lesion rule of a multi-task model);
        accuracy, F1, confusion, sensitivity, specificity and the "called normal"
        shares use it, the AUCs and log-loss use ``probabilities``.

    Returns
    -------
    ClassificationMetrics

    Raises
    ------
    DataError
        If shapes disagree or there are no samples.

    """
    names = list(class_names)
    k = len(names)
    y, p = check_probabilities(labels, probabilities, k)
    if y.min() < 0 or y.max() >= k:
        raise DataError(
            f"labels must be class indices 0..{k - 1} (one per column of probabilities). "
            f"Got {int(y.min())}..{int(y.max())} instead."
        )
    # NumPy throughout (no scikit-learn input checks): the cross-validation bootstrap calls this thousands of times.
    if predicted is None:
        chosen = p.argmax(axis=1)
    else:
        chosen = np.asarray(predicted, dtype=np.int64)
        if chosen.shape != y.shape:
            raise DataError(f"predicted must hold one class per sample ({len(y)}). Got shape {chosen.shape}.")
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= k):
            raise DataError(f"predicted must be class indices 0..{k - 1}. Got {int(chosen.min())}..{int(chosen.max())}.")
    cm = np.bincount(y * k + chosen, minlength=k * k).reshape(k, k)
    total = int(cm.sum())
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = total - tp - fn - fp
    present = (tp + fn) > 0
    f1 = 2 * tp[present] / np.maximum(2 * tp[present] + fp[present] + fn[present], 1)
    auc: dict[str, float | None] = {name: roc_auc(y == i, p[:, i]) for i, name in enumerate(names)}
    sensitivity = {name: _ratio(int(tp[i]), int(tp[i] + fn[i])) for i, name in enumerate(names)}
    specificity = {name: _ratio(int(tn[i]), int(tn[i] + fp[i])) for i, name in enumerate(names)}
    defined = [v for v in auc.values() if v is not None]
    lesion_share, malignant_share = called_normal_shares(y, chosen, names)
    clipped = np.clip(p, 1e-12, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return ClassificationMetrics(
        n=len(y),
        class_names=names,
        accuracy=float((chosen == y).mean()),
        macro_f1=float(f1.mean()),
        macro_auc=float(np.mean(defined)) if defined else None,
        log_loss=float(-np.log(clipped[np.arange(len(y)), y]).mean()),
        auc=auc,
        sensitivity=sensitivity,
        specificity=specificity,
        confusion_matrix=cm.astype(int).tolist(),
        lesion_called_normal=lesion_share,
        malignant_called_normal=malignant_share,
    )
