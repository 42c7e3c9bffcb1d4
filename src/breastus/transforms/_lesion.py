"""Lesion boxes: classify the region around a marked lesion instead of the whole frame.

In the clinic a sonographer usually marks the lesion (calipers, a box) before anyone
classifies it. A model trained on lesion crops and shown the crop around that mark sees
less of what differs between hospitals (borders, text, field of view, depth), and on
BrEaST-Lesions-USG it scored 3–5 AUC points more than whole-frame models (see the
generalisation guide). :func:`lesion_box` turns a lesion mask into a box and
:func:`crop_to_lesion` cuts the region with the same margin in training and prediction.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from PIL import Image

from breastus._errors import ConfigError

Box = tuple[int, int, int, int]
ImageT = TypeVar("ImageT", Image.Image, np.ndarray)


def lesion_box(mask: np.ndarray) -> Box | None:
    """Bounding box of a lesion mask.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` array; non-zero (or ``True``) pixels are lesion, as returned by
        :func:`breastus.data.load_mask` or :meth:`breastus.UltrasoundDataset.load_mask`.

    Returns
    -------
    tuple of int or None
        ``(top, bottom, left, right)``, half-open like
        :func:`~breastus.transforms.field_of_view_box`; ``None`` when the mask is empty.

    Raises
    ------
    ConfigError
        If ``mask`` is not 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((100, 200), dtype=bool)
    >>> mask[40:60, 60:100] = True
    >>> lesion_box(mask)
    (40, 60, 60, 100)

    """
    if mask.ndim != 2:
        raise ConfigError(f"lesion_box needs an (H, W) mask. Got shape {mask.shape} instead.")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_to_lesion(image: ImageT, box: Box, margin: float = 0.25) -> ImageT:
    """Cut the region around a lesion box out of an image.

    The box is widened by ``margin`` times its longer side on every side (context
    around the lesion: its margin and the tissue next to it) and clipped to the image.
    ``benchmarks/lesion_crop.py`` made the training data of the lesion-crop models in
    the generalisation guide with this function and the default margin; crop images
    for those models the same way.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        The frame (an array is ``(H, W)`` or ``(H, W, C)``).
    box : tuple of int
        ``(top, bottom, left, right)``, half-open, in pixels of ``image`` — from
        :func:`lesion_box`, a detector or a sonographer's mark.
    margin : float, default=0.25
        Context on each side, as a fraction of the box's longer side.

    Returns
    -------
    PIL.Image.Image or numpy.ndarray
        The crop, of the same type as ``image``.

    Raises
    ------
    ConfigError
        If the box is empty, lies outside the image, or ``margin`` is negative.

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.zeros((100, 200), dtype=np.uint8)
    >>> crop_to_lesion(frame, (40, 60, 60, 100)).shape  # 40 px box: 10 px on each side
    (40, 60)

    """
    if isinstance(image, Image.Image):
        width, height = image.size
    else:
        height, width = image.shape[:2]
    top, bottom, left, right = box
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise ConfigError(
            f"Lesion box (top, bottom, left, right) = {tuple(box)} is empty or outside the "
            f"{width}x{height} image. Give half-open pixel coordinates inside the image."
        )
    if not margin >= 0:
        raise ConfigError(f"margin must be >= 0. Got {margin!r} instead.")
    pad = margin * max(bottom - top, right - left)
    top, left = max(0, int(top - pad)), max(0, int(left - pad))
    bottom, right = min(height, int(bottom + pad)), min(width, int(right + pad))
    if isinstance(image, Image.Image):
        return image.crop((left, top, right, bottom))
    return image[top:bottom, left:right]
