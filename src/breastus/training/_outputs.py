"""A model's outputs over a data loader: the one loop behind validation, calibration and evaluation logits.

:func:`collect_outputs` runs a forward function over every batch of a loader (under
``torch.inference_mode``) and returns the class logits and labels of every image, plus what a
``per_masks`` reducer makes of each batch's lesion probability maps (multi-task models), so the
maps themselves need not be kept. The :class:`~breastus.Trainer` validates with it (the
training precision), :func:`breastus.evaluation.checkpoint_logits` computes calibration logits
with it (the :class:`~breastus.Predictor`'s precision); :func:`breastus.evaluate` goes through
the Predictor itself, whose decision rule, test-time mirroring and lesion masks it scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch

Forward = Callable[[torch.Tensor], tuple[torch.Tensor | None, torch.Tensor]]
"""Images ``(B, C, H, W)`` to lesion logits (``None`` for a classifier) and class logits ``(B, K)``."""

MaskReducer = Callable[[np.ndarray, Sequence[torch.Tensor]], tuple[np.ndarray, ...]]
"""Lesion probability maps ``(B, 1, H, W)`` and the batch to per-image arrays (one row per image)."""


def collect_outputs(
    forward: Forward,
    loader: Iterable[Sequence[torch.Tensor]],
    n_classes: int,
    per_masks: MaskReducer | None = None,
) -> tuple[np.ndarray, ...]:
    """Class logits and labels of every image of ``loader``; with ``per_masks`` also its arrays.

    Parameters
    ----------
    forward : callable
        Runs the model on a batch of images (on its device, in its precision) and returns
        ``(mask_logits or None, class_logits)``; the class logits keep their dtype.
    loader : iterable of batches
        Batches ``(images, labels, ...)`` such as a :class:`torch.utils.data.DataLoader` of an
        :class:`~breastus.UltrasoundDataset` yields.
    n_classes : int
        Columns of the logits returned for an empty loader.
    per_masks : callable, optional
        Called with ``sigmoid(mask_logits)`` (float32, on the CPU) and the batch when the model
        gives lesion logits; its arrays are concatenated over the batches.

    Returns
    -------
    tuple of numpy.ndarray
        ``(logits, labels, *arrays of per_masks)``; an empty loader gives ``(0, n_classes)``
        float32 logits and ``(0,)`` int64 labels only.

    """
    logits: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    extras: list[tuple[np.ndarray, ...]] = []
    with torch.inference_mode():
        for batch in loader:
            mask_logits, class_logits = forward(batch[0])
            logits.append(class_logits.cpu())
            labels.append(batch[1])
            if mask_logits is not None and per_masks is not None:
                extras.append(per_masks(torch.sigmoid(mask_logits.float()).cpu().numpy(), batch))
    if not logits:
        return np.zeros((0, n_classes), dtype=np.float32), np.zeros(0, dtype=np.int64)
    result: tuple[np.ndarray, ...] = (torch.cat(logits).numpy(), torch.cat(labels).numpy())
    if extras:
        result += tuple(np.concatenate(column) for column in zip(*extras, strict=True))
    return result
