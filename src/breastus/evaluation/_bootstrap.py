"""The figures cross-validation summarises, their mean over folds, and bootstrap intervals.

This module is private; the public names are re-exported by :mod:`breastus.evaluation`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from breastus._errors import ConfigError
from breastus.evaluation._binary import compute_binary_metrics
from breastus.evaluation._calibration import expected_calibration_error
from breastus.evaluation._metrics import ClassificationMetrics, compute_metrics


def headline(
    metrics: ClassificationMetrics, probabilities: np.ndarray, labels: np.ndarray, positive: str = "malignant"
) -> dict[str, Any]:
    """The figures that cross-validation summarises: a flat dict with per-class sub-dicts.

    Keys: ``accuracy``, ``macro_f1``, ``macro_auc``, ``log_loss``, ``ece`` (15
    bins), ``auc``, ``sensitivity`` and ``specificity`` (dicts per class),
    ``lesion_called_normal`` and ``malignant_called_normal`` (shares of the lesion
    and malignant images predicted normal; ``None`` without a normal class) and,
    when ``positive`` is a class, ``binary`` (``auc``,
    ``sensitivity_at_specificity`` at 90 % specificity, ``two_class_accuracy``).
    """
    values: dict[str, Any] = {
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "macro_auc": metrics.macro_auc,
        "log_loss": metrics.log_loss,
        "ece": expected_calibration_error(probabilities, labels),
        "auc": dict(metrics.auc),
        "sensitivity": dict(metrics.sensitivity),
        "specificity": dict(metrics.specificity),
        "lesion_called_normal": metrics.lesion_called_normal,
        "malignant_called_normal": metrics.malignant_called_normal,
    }
    if positive in metrics.class_names:
        binary = compute_binary_metrics(labels, probabilities, metrics.class_names, positive=positive)
        values["binary"] = {
            "positive": positive,
            "auc": binary.auc,
            "sensitivity_at_specificity": binary.sensitivity_at_specificity,
            "two_class_accuracy": binary.two_class_accuracy,
        }
    return values


def fast_headline(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str], positive: str = "malignant"
) -> dict[str, Any]:
    """:func:`headline` of :func:`~breastus.compute_metrics`, the figures each bootstrap resample gets.

    Both metric functions are NumPy throughout, so the thousands of resamples stay fast.
    """
    return headline(compute_metrics(labels, probabilities, class_names), probabilities, labels, positive)


def _numbers(values: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Transpose dicts of floats (nested one level) into dicts of value lists, dropping ``None``."""
    out: dict[str, Any] = {}
    for key, first in values[0].items():
        if isinstance(first, dict):
            out[key] = _numbers([v[key] for v in values])
        elif isinstance(first, (int, float)) or first is None:
            out[key] = [float(v[key]) for v in values if isinstance(v.get(key), (int, float))]
    return out


def _reduce(lists: dict[str, Any], reduce: Callable[[list[float]], Any]) -> dict[str, Any]:
    return {k: _reduce(v, reduce) if isinstance(v, dict) else (reduce(v) if v else None) for k, v in lists.items()}


def mean_std(values: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean and sample standard deviation (``ddof=1``) over folds of :func:`headline` dicts."""
    lists = _numbers(values)
    mean = _reduce(lists, lambda v: float(np.mean(v)))
    std = _reduce(lists, lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
    return mean, std


def bootstrap_ci(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    groups: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap confidence intervals of the :func:`headline` figures.

    Resamples whole groups with replacement (a cluster bootstrap), so duplicates
    of one picture, which are not independent evidence, move together; without
    groups every image is resampled on its own.

    Parameters
    ----------
    labels : sequence of int
    probabilities : numpy.ndarray
        ``(n_images, n_classes)``, e.g. pooled out-of-fold predictions.
    class_names : sequence of str
    groups : sequence of str, optional
        Group of each image.
    n_resamples : int, default=1000
    seed : int, default=0
        The same seed and inputs give the same intervals.
    level : float, default=0.95

    Returns
    -------
    dict
        The :func:`headline` structure with ``[low, high]`` pairs (``None`` where a
        figure is undefined in every resample).

    Raises
    ------
    ConfigError
        If ``n_resamples`` < 1 or ``level`` is outside (0, 1).

    """
    if not isinstance(n_resamples, int) or n_resamples < 1:
        raise ConfigError(f"n_resamples must be an int >= 1. Got {n_resamples!r} instead.")
    if not 0 < level < 1:
        raise ConfigError(f"level must be a float in the range (0, 1). Got {level!r} instead.")
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    names = list(class_names)
    keys = list(range(len(y))) if groups is None else list(groups)
    members: dict[object, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    clusters = [np.array(m, dtype=np.int64) for m in members.values()]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_resamples):
        chosen = rng.integers(0, len(clusters), len(clusters))
        index = np.concatenate([clusters[c] for c in chosen])
        samples.append(fast_headline(y[index], p[index], names))
    alpha = (1 - level) / 2
    return _reduce(_numbers(samples), lambda v: [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))])
