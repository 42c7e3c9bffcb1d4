"""Lesion segmentation metrics (Dice, IoU) and the "called normal" shares of a classifier.

Dice and IoU are reported two ways, because they answer different questions:

- **per image** (``dice``, ``iou``): the mean over the images whose true mask holds
  a lesion, of ``2|P∩T| / (|P| + |T|)`` and ``|P∩T| / |P∪T|``: how well an average
  lesion is outlined (the figure segmentation papers report);
- **pooled** (``pooled_dice``, ``pooled_iou``): the pixel counts of every image with a
  known mask (normal images included) summed first: false lesions on normal images
  count against it.

Images whose mask is unknown (a lesion image without a mask file) are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from breastus._errors import DataError
from breastus._metrics import called_normal_shares as called_normal_shares  # re-exported: evaluation's public name


@dataclass(frozen=True)
class SegmentationMetrics:
    """Lesion mask overlap of predicted against true masks.

    Attributes
    ----------
    n : int
        Images with a known true mask.
    n_lesion : int
        Of those, images whose true mask is not empty.
    dice, iou : float or None
        Per-image mean over the ``n_lesion`` lesion images (``None`` when there is none).
    pooled_dice, pooled_iou : float or None
        From pixel counts summed over all ``n`` images (``None`` when no pixel is
        lesion in either mask).
    empty_correct : float or None
        Share of the images with an empty true mask whose predicted mask is empty too.

    """

    n: int
    n_lesion: int
    dice: float | None
    iou: float | None
    pooled_dice: float | None
    pooled_iou: float | None
    empty_correct: float | None

    def to_dict(self) -> dict[str, Any]:
        """The metrics as plain values."""
        return asdict(self)


def overlap_counts(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per image ``[intersection, predicted pixels, true pixels]`` of two boolean mask stacks.

    Parameters
    ----------
    predicted, target : numpy.ndarray
        ``(N, H, W)`` (or ``(N, 1, H, W)``) masks; non-zero is lesion.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` ``int64``.

    Raises
    ------
    DataError
        If the shapes differ.

    """
    p = np.asarray(predicted).astype(bool)
    t = np.asarray(target).astype(bool)
    if p.shape != t.shape or p.ndim < 2:
        raise DataError(f"Predicted and true masks must have the same (N, H, W) shape. Got {p.shape} and {t.shape}.")
    p = p.reshape(p.shape[0], -1)
    t = t.reshape(t.shape[0], -1)
    return np.stack([(p & t).sum(1), p.sum(1), t.sum(1)], axis=1).astype(np.int64)


def segmentation_metrics(counts: np.ndarray) -> SegmentationMetrics:
    """Dice and IoU from :func:`overlap_counts` rows (one per image with a known mask).

    Examples
    --------
    >>> import numpy as np
    >>> m = segmentation_metrics(np.array([[2, 2, 4], [0, 0, 0]]))
    >>> round(m.dice, 4), round(m.iou, 4), m.empty_correct
    (0.6667, 0.5, 1.0)

    """
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, 3)
    inter, pred, true = counts[:, 0].astype(np.float64), counts[:, 1].astype(np.float64), counts[:, 2]
    lesion = true > 0
    union = pred + true - inter
    dice = 2 * inter[lesion] / (pred[lesion] + true[lesion])
    iou = inter[lesion] / union[lesion]
    total = pred.sum() + true.sum()
    empty = ~lesion
    return SegmentationMetrics(
        n=len(counts),
        n_lesion=int(lesion.sum()),
        dice=float(dice.mean()) if lesion.any() else None,
        iou=float(iou.mean()) if lesion.any() else None,
        pooled_dice=float(2 * inter.sum() / total) if total > 0 else None,
        pooled_iou=float(inter.sum() / union.sum()) if union.sum() > 0 else None,
        empty_correct=float((pred[empty] == 0).mean()) if empty.any() else None,
    )


def compute_segmentation_metrics(predicted: np.ndarray, target: np.ndarray) -> SegmentationMetrics:
    """Dice and IoU of predicted against true masks (see the module docs).

    Parameters
    ----------
    predicted, target : numpy.ndarray
        ``(N, H, W)`` boolean (or 0/1) masks of the same images.

    Returns
    -------
    SegmentationMetrics

    """
    return segmentation_metrics(overlap_counts(predicted, target))
