"""The lesion decision rule: "normal" means "no lesion found".

A multi-task model (``unet/<encoder>``, see :func:`breastus.models.create_model`)
gives a per-pixel lesion probability map and class probabilities. The rule used by
:class:`~breastus.prediction.Predictor` with ``decision="lesion"`` is:

1. :func:`lesion_score` turns the map into one number, the probability that a lesion
   is present: the highest mean probability over any small square window (area-aware
   max pooling, so one bright pixel does not make a lesion).
2. If that score is below the calibrated ``threshold`` the image is ``"normal"``.
3. Otherwise it is the more probable of the remaining classes (benign vs malignant),
   by the class head's probabilities renormalised over those classes.

The threshold comes from validation data (:func:`calibrate_lesion_threshold`): the
lowest threshold that still keeps ``min_normal_recall`` of the normal validation
images normal, so as few lesions as possible are called normal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from breastus._errors import ConfigError, DataError

NORMAL_CLASS = "normal"
"""The class name the lesion rule assigns when no lesion is found."""

DECISIONS = ("argmax", "lesion")
"""Allowed values of ``decision`` in :class:`~breastus.prediction.Predictor`."""

DEFAULT_WINDOW_FRACTION = 1 / 32
"""Side of :func:`lesion_score`'s window as a fraction of the map's shorter side."""


def _window_side(height: int, width: int, window: int | None) -> int:
    if window is None:
        return max(1, round(min(height, width) * DEFAULT_WINDOW_FRACTION))
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ConfigError(f"window must be an int >= 1 (pixels) or None. Got {window!r} instead.")
    return min(window, height, width)


def lesion_scores(mask_probs: np.ndarray, window: int | None = None) -> np.ndarray:
    """:func:`lesion_score` of each map in a batch.

    Parameters
    ----------
    mask_probs : numpy.ndarray
        ``(N, H, W)`` or ``(N, 1, H, W)`` per-pixel lesion probabilities in [0, 1]
        (the sigmoid of a multi-task model's ``mask_logits``, at the model's resolution).
    window : int or None, default=None
        Side of the square window in pixels; ``None``: 1/32 of the shorter side
        (5 px at 160 px, 7 px at 224 px), at least 1.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 scores in [0, 1].

    Raises
    ------
    DataError
        If the array has another shape or holds values outside [0, 1] (or NaN).
    ConfigError
        If ``window`` is not a positive int.

    """
    probs = np.asarray(mask_probs, dtype=np.float64)
    if probs.ndim == 4 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim != 3 or probs.shape[1] == 0 or probs.shape[2] == 0:
        raise DataError(
            "lesion_scores needs (N, H, W) or (N, 1, H, W) lesion probabilities. "
            f"Got shape {np.shape(mask_probs)} instead."
        )
    if probs.size and not (np.all(probs >= 0.0) and np.all(probs <= 1.0)):
        raise DataError(
            "Lesion probabilities must lie in [0, 1] (apply a sigmoid to mask logits first). "
            f"Got {int(np.sum(~((probs >= 0.0) & (probs <= 1.0))))} value(s) outside it or NaN."
        )
    n, height, width = probs.shape
    k = _window_side(height, width, window)
    # summed-area table: mean of every k x k window (valid positions only), then the max
    table = np.zeros((n, height + 1, width + 1), dtype=np.float64)
    table[:, 1:, 1:] = probs.cumsum(axis=1).cumsum(axis=2)
    sums = table[:, k:, k:] - table[:, :-k, k:] - table[:, k:, :-k] + table[:, :-k, :-k]
    means = sums.reshape(n, -1).max(axis=1) / (k * k) if n else np.zeros(0)
    return np.clip(means, 0.0, 1.0)


def lesion_score(mask_prob: np.ndarray, window: int | None = None) -> float:
    """Probability that a lesion is present, from a per-pixel lesion probability map.

    The highest mean probability over any ``window`` x ``window`` square: an
    area-aware max pooling. It is 0 for an all-zero map, 1 for an all-one map, and
    never decreases when any pixel's probability grows.

    Parameters
    ----------
    mask_prob : numpy.ndarray
        ``(H, W)`` or ``(1, H, W)`` probabilities in [0, 1] at the model's resolution.
    window : int or None, default=None
        See :func:`lesion_scores`.

    Returns
    -------
    float

    Raises
    ------
    DataError
        If the map has another shape or values outside [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> prob = np.zeros((64, 64))
    >>> lesion_score(prob)
    0.0
    >>> prob[10:20, 10:20] = 0.9
    >>> round(lesion_score(prob), 6)
    0.9

    """
    prob = np.asarray(mask_prob)
    if prob.ndim == 3 and prob.shape[0] == 1:
        prob = prob[0]
    if prob.ndim != 2:
        raise DataError(f"lesion_score needs an (H, W) or (1, H, W) map. Got shape {np.shape(mask_prob)} instead.")
    return float(lesion_scores(prob[None], window)[0])


def calibrate_lesion_threshold(
    scores: Sequence[float] | np.ndarray,
    is_lesion: Sequence[bool] | np.ndarray,
    min_normal_recall: float = 0.85,
) -> float:
    """The lesion threshold that keeps ``min_normal_recall`` of normal images normal.

    Among all thresholds under which at least ``min_normal_recall`` of the normal
    images (``is_lesion`` false) score below the threshold, the rule wants the
    lowest (the most lesions found). Every threshold between the deciding normal
    score and the next higher score gives the same result on these data; the midpoint
    is returned, which leaves a margin on both sides.

    Parameters
    ----------
    scores : sequence of float
        :func:`lesion_score` of each validation image, in [0, 1].
    is_lesion : sequence of bool
        Whether each image has a lesion (benign or malignant).
    min_normal_recall : float, default=0.85
        Share of normal images that must stay below the threshold, in (0, 1].

    Returns
    -------
    float
        A threshold above 0 (just above 1 if a deciding normal image scores 1); an
        image is "normal" when its score is below it.

    Raises
    ------
    DataError
        If the inputs differ in length, hold values outside [0, 1], or no image is normal.
    ConfigError
        If ``min_normal_recall`` is outside (0, 1].

    Examples
    --------
    >>> calibrate_lesion_threshold([0.1, 0.2, 0.3, 0.9, 0.8], [False, False, False, True, True], 2 / 3)
    0.25

    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    lesion = np.asarray(is_lesion, dtype=bool).ravel()
    if values.shape != lesion.shape:
        raise DataError(f"scores and is_lesion must have the same length. Got {values.size} and {lesion.size}.")
    if not (np.all(values >= 0.0) and np.all(values <= 1.0)):
        raise DataError("Lesion scores must lie in [0, 1] (use lesion_score). Got values outside it or NaN.")
    if not (isinstance(min_normal_recall, (int, float)) and 0.0 < min_normal_recall <= 1.0):
        raise ConfigError(f"min_normal_recall must be a float in (0, 1]. Got {min_normal_recall!r} instead.")
    normal = np.sort(values[~lesion])
    if normal.size == 0:
        raise DataError(
            "Cannot calibrate a lesion threshold without normal images: the validation data "
            "hold only lesion images. Add normal images to the validation split."
        )
    needed = min(normal.size, math.ceil(min_normal_recall * normal.size - 1e-9))
    deciding = float(normal[needed - 1])
    above = values[values > deciding]
    if above.size:
        # the midpoint, or the next float above the deciding score where the midpoint rounds down to it
        threshold = max((deciding + float(above.min())) / 2, float(np.nextafter(deciding, np.inf)))
    else:
        threshold = float(np.nextafter(deciding, np.inf))
    return float(threshold)


def _normal_index(class_names: Sequence[str]) -> int:
    if NORMAL_CLASS not in class_names:
        raise ConfigError(
            f"The lesion decision rule needs a {NORMAL_CLASS!r} class. Got classes {list(class_names)}; "
            "use decision='argmax' for this model."
        )
    return list(class_names).index(NORMAL_CLASS)


def decide_indices(
    class_probs: np.ndarray,
    lesion_probabilities: np.ndarray | None,
    threshold: float | None,
    class_names: Sequence[str],
) -> np.ndarray:
    """The decision rule for a batch, as class indices.

    Parameters
    ----------
    class_probs : numpy.ndarray
        ``(N, C)`` class probabilities in ``class_names`` order.
    lesion_probabilities : numpy.ndarray or None
        ``(N,)`` :func:`lesion_score` values; ``None``: plain argmax.
    threshold : float or None
        Calibrated threshold; ``None``: plain argmax.
    class_names : sequence of str
        Must contain ``"normal"`` when the lesion rule applies.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int64 indices into ``class_names``.

    Raises
    ------
    DataError
        If the shapes do not match.
    ConfigError
        If the lesion rule applies and there is no ``"normal"`` class.

    """
    probs = np.asarray(class_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(class_names):
        raise DataError(
            f"class_probs must have shape (N, {len(class_names)}) for classes {list(class_names)}. "
            f"Got {probs.shape} instead."
        )
    argmax: np.ndarray = probs.argmax(axis=1).astype(np.int64)
    if lesion_probabilities is None or threshold is None:
        return argmax
    lesion = np.asarray(lesion_probabilities, dtype=np.float64).ravel()
    if lesion.shape != (probs.shape[0],):
        raise DataError(
            f"lesion_probabilities must have one value per image ({probs.shape[0]}). Got shape {lesion.shape}."
        )
    normal = _normal_index(class_names)
    others = probs.copy()
    others[:, normal] = -np.inf  # renormalising over the lesion classes keeps their order
    lesion_label = others.argmax(axis=1).astype(np.int64)
    decided: np.ndarray = np.where(lesion < threshold, normal, lesion_label)
    return decided


def decide(
    class_probs: Sequence[float] | np.ndarray,
    lesion_probability: float | None,
    threshold: float | None,
    class_names: Sequence[str],
) -> str:
    """The label of one image under the lesion decision rule.

    ``"normal"`` exactly when ``lesion_probability < threshold``; otherwise the
    most probable of the other classes. With ``threshold`` or
    ``lesion_probability`` ``None`` it is the plain argmax of ``class_probs``.

    Parameters
    ----------
    class_probs : sequence of float
        ``(C,)`` class probabilities in ``class_names`` order.
    lesion_probability : float or None
    threshold : float or None
    class_names : sequence of str

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        If the lesion rule applies and there is no ``"normal"`` class.

    Examples
    --------
    >>> names = ("benign", "malignant", "normal")
    >>> decide([0.2, 0.1, 0.7], 0.9, 0.5, names)  # a lesion was found: not normal
    'benign'
    >>> decide([0.5, 0.4, 0.1], 0.2, 0.5, names)  # no lesion: normal
    'normal'

    """
    row = np.asarray(class_probs, dtype=np.float64).reshape(1, -1)
    lesion = None if lesion_probability is None else np.asarray([lesion_probability], dtype=np.float64)
    return class_names[int(decide_indices(row, lesion, threshold, class_names)[0])]


def check_decision(decision: str) -> str:
    """Validate a ``decision`` argument (``"argmax"`` or ``"lesion"``).

    Raises
    ------
    ConfigError
        For any other value.

    """
    if decision not in DECISIONS:
        raise ConfigError(f"decision must be one of {DECISIONS}. Got {decision!r} instead.")
    return decision
