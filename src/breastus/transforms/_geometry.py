"""Where an input image lies in the model's square input, after the recorded preprocessing.

Prediction (bringing a multi-task model's lesion map back to the input image) and
explanations (bringing a heatmap back) both invert the same geometry, so it lives
here, below both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from breastus.transforms._preprocess import Preprocessing

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class InputGeometry:
    """Where an input image lies in the model's square input.

    Attributes
    ----------
    height, width : int
        The input image's size.
    crop : tuple of int
        ``(top, bottom, left, right)`` of the field-of-view crop in the input
        (the whole image without a crop).
    content : tuple of int
        ``(x0, y0, x1, y1)``, half-open, of the (cropped) image inside the
        ``model_size`` square (the whole square when stretched; the unpadded part
        when letterboxed).
    model_size : int

    """

    height: int
    width: int
    crop: Box
    content: Box
    model_size: int


def input_geometry(height: int, width: int, crop: Box, preprocessing: Preprocessing, size: int) -> InputGeometry:
    """The :class:`InputGeometry` of an image of ``height`` x ``width`` cropped to ``crop``.

    The content box is where a blank image of the crop's size lands when passed
    through the very resize transform the model input is made with
    (:meth:`Preprocessing.resize_transform`), so it follows that transform's
    rounding exactly (torchvision moves boxes and pads images with different
    rounding, so a box cannot be passed through instead).
    """
    top, bottom, left, right = crop
    content = _content_box(bottom - top, right - left, preprocessing.resize, size)
    return InputGeometry(int(height), int(width), (top, bottom, left, right), content, int(size))


@functools.lru_cache(maxsize=256)
def _content_box(height: int, width: int, resize: str, size: int) -> Box:
    if resize == "stretch":
        return 0, 0, size, size
    blank = torch.full((1, height, width), 255, dtype=torch.uint8)
    placed = Preprocessing(resize="letterbox").resize_transform(size)(blank)[0] > 0
    rows = np.flatnonzero(placed.any(dim=1).numpy())
    cols = np.flatnonzero(placed.any(dim=0).numpy())
    if rows.size == 0 or cols.size == 0:
        return 0, 0, size, size
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
