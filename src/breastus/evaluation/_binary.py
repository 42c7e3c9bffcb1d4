"""Malignant-versus-rest metrics: the figures that external test sets define.

An external test set often holds only benign and malignant lesions (or a
handful of normal images, like BrEaST-Lesions-USG), so three-class figures are
undefined or meaningless there. What matters clinically is how well the model
separates malignant from everything else: the ROC-AUC of the malignant
probability, and the sensitivity it reaches at a fixed specificity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from breastus._errors import ConfigError
from breastus._metrics import check_probabilities, roc_auc


@dataclass(frozen=True)
class BinaryMetrics:
    """One class (``positive``) against the rest.

    Values the data do not define (no positive or no negative image) are ``None``.

    Attributes
    ----------
    positive : str
        The positive class, e.g. ``"malignant"``.
    n, n_positive, n_negative : int
    auc : float or None
        ROC-AUC of the positive class's probability, positive against all other images.
    target_specificity : float
        The specificity at which sensitivity is read off (e.g. 0.9).
    sensitivity_at_specificity : float or None
        Highest sensitivity among thresholds whose specificity is at least
        ``target_specificity``.
    threshold : float or None
        The probability threshold that gives it (predict positive when ``p >= threshold``).
    specificity_at_threshold : float or None
        The specificity actually reached at ``threshold`` (>= the target).
    negative : str or None
        The class of the two-class accuracy (e.g. ``"benign"``).
    two_class_accuracy : float or None
        Accuracy on the images labelled ``positive`` or ``negative`` only, each
        predicted as whichever of the two has the higher probability (the
        benign-vs-malignant accuracy; defined when both classes are present).
    n_two_class : int
        Number of images that accuracy is computed on.

    """

    positive: str
    n: int
    n_positive: int
    n_negative: int
    auc: float | None
    target_specificity: float
    sensitivity_at_specificity: float | None
    threshold: float | None
    specificity_at_threshold: float | None
    negative: str | None
    two_class_accuracy: float | None
    n_two_class: int

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self)

    def summary(self) -> str:
        """Two short lines."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        lines = [
            f"{self.positive} vs rest (n={self.n}, {self.n_positive} positive): AUC={fmt(self.auc)}  "
            f"sensitivity at {self.target_specificity:.0%} specificity={fmt(self.sensitivity_at_specificity)} "
            f"(threshold {fmt(self.threshold)}, specificity reached {fmt(self.specificity_at_threshold)})"
        ]
        if self.negative is not None:
            lines.append(
                f"{self.negative} vs {self.positive} accuracy (n={self.n_two_class}): {fmt(self.two_class_accuracy)}"
            )
        return "\n".join(lines)


def sensitivity_at_specificity(
    positives: np.ndarray, scores: np.ndarray, specificity: float = 0.9
) -> tuple[float | None, float | None, float | None]:
    """Highest sensitivity whose specificity is at least ``specificity``.

    Parameters
    ----------
    positives : numpy.ndarray
        Boolean truth per sample.
    scores : numpy.ndarray
        Higher means more likely positive.
    specificity : float, default=0.9

    Returns
    -------
    sensitivity, threshold, reached_specificity : float or None
        ``None`` each when there is no positive or no negative sample; the
        threshold alone is ``None`` when only predicting nothing positive
        reaches the specificity (the sensitivity is then 0).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    >>> scores = np.array([.1, .1, .2, .2, .3, .3, .4, .4, .5, .9, .6, .7, .8, .3])
    >>> sensitivity_at_specificity(truth, scores, 0.9)
    (0.75, 0.6, 0.9)

    """
    y = np.asarray(positives, dtype=bool)
    if y.all() or not y.any():
        return None, None, None
    # The ROC curve of every distinct threshold (scikit-learn's roc_curve with drop_intermediate=False),
    # in NumPy: the cross-validation bootstrap calls this thousands of times.
    values = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-values, kind="mergesort")
    ranked, truth = values[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last sample of each distinct score
    tps = np.r_[0, np.cumsum(truth)[last]]
    fps = np.r_[0, last + 1 - tps[1:]]
    thresholds = np.r_[np.inf, ranked[last]]
    tpr, fpr = tps / tps[-1], fps / fps[-1]
    allowed = np.flatnonzero(fpr <= 1.0 - specificity + 1e-12)
    best = allowed[np.argmax(tpr[allowed])]
    threshold = float(thresholds[best]) if np.isfinite(thresholds[best]) else None
    return float(tpr[best]), threshold, float(1.0 - fpr[best])


def compute_binary_metrics(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    positive: str = "malignant",
    negative: str | None = "benign",
    specificity: float = 0.9,
) -> BinaryMetrics:
    """Malignant-vs-rest AUC, sensitivity at a fixed specificity and benign-vs-malignant accuracy.

    Parameters
    ----------
    labels : sequence of int
        True class index of each image, in ``class_names`` order.
    probabilities : numpy.ndarray
        ``(n_images, n_classes)`` predicted probabilities.
    class_names : sequence of str
        The model's classes (columns of ``probabilities``).
    positive : str, default="malignant"
    negative : str or None, default="benign"
        Class of the two-class accuracy; ``None`` (or a class not in
        ``class_names``) skips it.
    specificity : float, default=0.9
        In (0, 1).

    Returns
    -------
    BinaryMetrics

    Raises
    ------
    ConfigError
        If ``positive`` is not a class or ``specificity`` is outside (0, 1).
    DataError
        If shapes disagree or there are no images.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.array([[0.8, 0.2, 0.0], [0.3, 0.6, 0.1], [0.6, 0.4, 0.0], [0.1, 0.2, 0.7]])
    >>> m = compute_binary_metrics([0, 1, 1, 2], p, ["benign", "malignant", "normal"])
    >>> m.auc, m.two_class_accuracy
    (1.0, 0.6666666666666666)

    """
    names = list(class_names)
    if positive not in names:
        raise ConfigError(f"positive must be one of the model's classes {names}. Got {positive!r} instead.")
    if not 0 < specificity < 1:
        raise ConfigError(f"specificity must be a float in the range (0, 1). Got {specificity!r} instead.")
    y, p = check_probabilities(labels, probabilities, len(names))
    pos = names.index(positive)
    truth = y == pos
    scores = p[:, pos]
    defined = bool(truth.any() and not truth.all())
    sensitivity, threshold, reached = sensitivity_at_specificity(truth, scores, specificity)
    accuracy: float | None = None
    n_two = 0
    neg_name = negative if negative in names and negative != positive else None
    if neg_name is not None:
        neg = names.index(neg_name)
        chosen = (y == pos) | (y == neg)
        n_two = int(chosen.sum())
        if (y == pos).any() and (y == neg).any():
            predicted = np.where(p[chosen, pos] > p[chosen, neg], pos, neg)
            accuracy = float((predicted == y[chosen]).mean())
    return BinaryMetrics(
        positive=positive,
        n=len(y),
        n_positive=int(truth.sum()),
        n_negative=int((~truth).sum()),
        auc=roc_auc(truth, scores) if defined else None,
        target_specificity=float(specificity),
        sensitivity_at_specificity=sensitivity,
        threshold=threshold,
        specificity_at_threshold=reached,
        negative=neg_name,
        two_class_accuracy=accuracy,
        n_two_class=n_two,
    )
