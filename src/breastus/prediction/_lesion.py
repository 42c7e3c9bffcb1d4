"""The predicted lesion at the input image's resolution: geometry, mask post-processing, box and area.

A multi-task model sees the image after the :class:`~breastus.transforms.Preprocessing`
the checkpoint records: optionally cropped to the field of view, then stretched or
letterboxed to the square model input. :class:`InputGeometry` remembers where the
input image went, and :func:`mask_to_input` undoes it for the predicted lesion
probability map (the letterbox padding is cut off, the map is resized back to the
prepared image and pasted at the field-of-view crop's place). :func:`postprocess_mask`
then makes the boolean mask and :func:`lesion_measurements` its box and area.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from breastus._errors import ConfigError
from breastus.transforms._geometry import Box, InputGeometry, input_geometry

__all__ = ["InputGeometry", "input_geometry"]  # re-exported: the geometry lives in transforms


def mask_to_input(probabilities: np.ndarray | torch.Tensor, geometry: InputGeometry) -> np.ndarray:
    """A ``(S, S)`` model-resolution probability map brought back to the input image.

    Parameters
    ----------
    probabilities : numpy.ndarray or torch.Tensor
        ``(S, S)`` (or ``(1, S, S)``) lesion probabilities.
    geometry : InputGeometry

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(height, width)``; 0 outside the field-of-view crop.

    """
    prob = torch.as_tensor(probabilities, dtype=torch.float32).reshape(geometry.model_size, geometry.model_size)
    x0, y0, x1, y1 = geometry.content
    top, bottom, left, right = geometry.crop
    region = prob[y0:y1, x0:x1][None, None]
    resized = F.interpolate(region, size=(bottom - top, right - left), mode="bilinear", align_corners=False)
    full = np.zeros((geometry.height, geometry.width), dtype=np.float32)
    full[top:bottom, left:right] = resized[0, 0].clamp(0, 1).numpy()
    return full


def postprocess_mask(probabilities: np.ndarray, cut: float = 0.5, min_component_fraction: float = 0.1) -> np.ndarray:
    """The boolean lesion mask of a probability map.

    Pixels with probability ``>= cut`` are lesion; holes inside a lesion are
    filled, and connected parts smaller than ``min_component_fraction`` of the
    largest part are dropped (speckle far from the lesion). Several lesions of
    similar size are all kept.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(H, W)`` values in [0, 1].
    cut : float, default=0.5
    min_component_fraction : float, default=0.1
        In [0, 1]; 0 keeps every part.

    Returns
    -------
    numpy.ndarray
        ``bool`` ``(H, W)``.

    Raises
    ------
    ConfigError
        If ``cut`` or ``min_component_fraction`` is outside its range.

    Examples
    --------
    >>> import numpy as np
    >>> prob = np.zeros((20, 20))
    >>> prob[2:12, 2:12] = 0.9  # the lesion ...
    >>> prob[6, 6] = 0.1  # ... with a hole
    >>> prob[18, 18] = 0.9  # and a speck
    >>> mask = postprocess_mask(prob)
    >>> int(mask.sum()), bool(mask[6, 6]), bool(mask[18, 18])
    (100, True, False)

    """
    if not 0.0 < cut <= 1.0:
        raise ConfigError(f"The mask cut must be a probability in (0, 1]. Got {cut!r} instead.")
    if not 0.0 <= min_component_fraction <= 1.0:
        raise ConfigError(f"min_component_fraction must be in [0, 1]. Got {min_component_fraction!r} instead.")
    above = np.asarray(probabilities) >= cut
    result = np.zeros(above.shape, dtype=bool)
    found = _bounds(above)
    if found is None:
        return result
    top, bottom, left, right = found  # everything outside this box is background joined to the border
    mask = fill_holes(above[top:bottom, left:right])
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count > 1 and min_component_fraction > 0:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        kept = sizes >= min_component_fraction * sizes.max()
        kept[0] = False
        mask = kept[labels]  # a lookup table: one pass over the pixels, unlike np.isin
    result[top:bottom, left:right] = mask
    return result


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)``, half-open, of a 2-D mask's true pixels; ``None`` if there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` of a 2-D boolean mask, computed by labelling.

    A background pixel stays background when a 4-connected path of background
    pixels joins it to the image border; every other pixel is filled. SciPy finds
    these by repeated dilation from the border (tens of milliseconds on a BUSI-sized
    image); labelling the background once and keeping the parts that touch the
    border gives the same mask in a few. :func:`postprocess_mask` calls it on the
    mask's bounding box only (the background around the box reaches the border).

    Parameters
    ----------
    mask : numpy.ndarray
        ``bool`` ``(H, W)``.

    Returns
    -------
    numpy.ndarray
        ``bool`` ``(H, W)``, equal to ``ndimage.binary_fill_holes(mask)``.

    Examples
    --------
    >>> import numpy as np
    >>> ring = np.zeros((5, 5), dtype=bool)
    >>> ring[1:4, 1:4] = True
    >>> ring[2, 2] = False
    >>> int(fill_holes(ring).sum())
    9

    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ConfigError(f"fill_holes needs a 2-D mask. Got shape {mask.shape} instead.")
    if mask.size == 0:
        return mask.copy()
    background, count = ndimage.label(~mask)  # the default structure is 4-connected, as binary_fill_holes's
    border = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    outside = np.zeros(count + 1, dtype=bool)
    outside[border] = True
    outside[0] = False  # label 0: the mask's own pixels
    filled: np.ndarray = ~outside[background]
    return filled


def lesion_measurements(
    mask: np.ndarray, pixel_spacing_mm: tuple[float, float] | None = None
) -> tuple[Box | None, int, float | None]:
    """Box ``(x0, y0, x1, y1)`` (half-open, ``None`` if empty), area in pixels and in mm² of a mask.

    Parameters
    ----------
    mask : numpy.ndarray
        ``bool`` ``(H, W)``.
    pixel_spacing_mm : tuple of float, optional
        ``(dx, dy)``: a pixel's width and height in millimetres.

    Returns
    -------
    box : tuple of int or None
    area_px : int
    area_mm2 : float or None
        ``area_px * dx * dy``; ``None`` without a spacing.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((10, 20), dtype=bool)
    >>> mask[2:5, 3:7] = True
    >>> lesion_measurements(mask, (0.1, 0.2))
    ((3, 2, 7, 5), 12, 0.24)

    """
    from breastus.transforms._lesion import lesion_box

    area = int(np.count_nonzero(mask))
    found = lesion_box(mask)
    box = None if found is None else (found[2], found[0], found[3], found[1])
    area_mm2 = None
    if pixel_spacing_mm is not None:
        dx, dy = check_spacing(pixel_spacing_mm)
        area_mm2 = round(area * dx * dy, 10)
    return box, area, area_mm2


def check_spacing(pixel_spacing_mm: tuple[float, float] | list[float]) -> tuple[float, float]:
    """Validate a ``(dx, dy)`` pixel spacing in millimetres.

    Raises
    ------
    ConfigError
        Unless it is two finite numbers > 0.

    """
    try:
        dx, dy = (float(v) for v in pixel_spacing_mm)
    except (TypeError, ValueError):
        raise ConfigError(
            f"pixel_spacing_mm must be a pair (dx, dy) of millimetres per pixel. Got {pixel_spacing_mm!r} instead."
        ) from None
    if not (np.isfinite(dx) and np.isfinite(dy) and dx > 0 and dy > 0):
        raise ConfigError(f"pixel_spacing_mm values must be finite and > 0. Got {pixel_spacing_mm!r} instead.")
    return dx, dy


def fuse_crop_probabilities(
    whole: np.ndarray,
    crop: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    crop_class_names: tuple[str, ...] | list[str],
    weight: float = 0.5,
) -> np.ndarray:
    """Fuse whole-frame and lesion-crop class probabilities (segment-then-classify).

    The crop classifier may know fewer classes (``benign``/``malignant``): its
    probabilities are spread over the whole-frame probability mass of those
    classes, then the two are averaged with ``weight`` on the crop:
    ``fused[c] = (1 - weight) * whole[c] + weight * crop[c] * whole[crop classes].sum()``
    for the crop's classes; the other classes keep ``whole[c]``. Rows still sum to 1.

    Parameters
    ----------
    whole : numpy.ndarray
        ``(C,)`` whole-frame probabilities in ``class_names`` order.
    crop : numpy.ndarray
        ``(K,)`` crop probabilities in ``crop_class_names`` order (a subset of ``class_names``).
    class_names, crop_class_names : sequence of str
    weight : float, default=0.5

    Returns
    -------
    numpy.ndarray
        ``(C,)`` fused probabilities.

    Examples
    --------
    >>> import numpy as np
    >>> fused = fuse_crop_probabilities(
    ...     np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.8]), ["benign", "malignant", "normal"], ["benign", "malignant"]
    ... )
    >>> [round(float(p), 3) for p in fused]
    [0.33, 0.47, 0.2]

    """
    index = [list(class_names).index(c) for c in crop_class_names]
    mass = float(np.sum(whole[index]))
    fused = np.array(whole, dtype=np.float64, copy=True)
    fused[index] = (1 - weight) * whole[index] + weight * np.asarray(crop, dtype=np.float64) * mass
    return fused
