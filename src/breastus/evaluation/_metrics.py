"""Classification metrics (scikit-learn), defined only where the data define them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score

from breastus._errors import DataError
from breastus.evaluation._segmentation import called_normal_shares


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
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    names = list(class_names)
    k = len(names)
    if p.ndim != 2 or p.shape != (len(y), k):
        raise DataError(
            f"probabilities must have shape (n_samples, n_classes) = ({len(y)}, {k}). Got {p.shape} instead."
        )
    if len(y) == 0:
        raise DataError("Cannot compute metrics on zero samples.")
    if predicted is None:
        predicted = p.argmax(axis=1)
    else:
        predicted = np.asarray(predicted, dtype=np.int64)
        if predicted.shape != y.shape:
            raise DataError(f"predicted must hold one class per sample ({len(y)}). Got shape {predicted.shape}.")
    present = sorted(set(y.tolist()))
    cm = confusion_matrix(y, predicted, labels=list(range(k)))
    auc: dict[str, float | None] = {}
    sensitivity: dict[str, float | None] = {}
    specificity: dict[str, float | None] = {}
    total = int(cm.sum())
    for i, name in enumerate(names):
        positives = y == i
        auc[name] = float(roc_auc_score(positives, p[:, i])) if 0 < positives.sum() < len(y) else None
        tp = int(cm[i, i])
        fn = int(cm[i].sum()) - tp
        fp = int(cm[:, i].sum()) - tp
        tn = total - tp - fn - fp
        sensitivity[name] = _ratio(tp, tp + fn)
        specificity[name] = _ratio(tn, tn + fp)
    defined = [v for v in auc.values() if v is not None]
    lesion_share, malignant_share = called_normal_shares(y, predicted, names)
    clipped = np.clip(p, 1e-12, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return ClassificationMetrics(
        n=len(y),
        class_names=names,
        accuracy=float(accuracy_score(y, predicted)),
        macro_f1=float(f1_score(y, predicted, labels=present, average="macro", zero_division=0)),
        macro_auc=float(np.mean(defined)) if defined else None,
        log_loss=float(log_loss(y, clipped, labels=list(range(k)))),
        auc=auc,
        sensitivity=sensitivity,
        specificity=specificity,
        confusion_matrix=cm.astype(int).tolist(),
        lesion_called_normal=lesion_share,
        malignant_called_normal=malignant_share,
    )
