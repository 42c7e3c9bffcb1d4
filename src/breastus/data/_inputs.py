"""Image inputs of the prediction API: a path, a PIL image or a numpy array, coerced to grayscale.

This module is private. It sits beside the file decoding of :mod:`breastus.data._io`
so that every layer that takes an image from the user (prediction, explanations,
overlays) coerces it the same way without importing each other.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from breastus._errors import DataError
from breastus.data._io import load_image, to_grayscale

ImageInput = str | os.PathLike[str] | Image.Image | np.ndarray
"""What :meth:`Predictor.predict` accepts as one image."""


def as_grayscale(image: ImageInput) -> tuple[Image.Image, str | None]:
    """Turn one input into an 8-bit grayscale PIL image (and its path, if any).

    Parameters
    ----------
    image : str, os.PathLike, PIL.Image.Image or numpy.ndarray
        A file path (decoded with :func:`~breastus.data.load_image`), a PIL image of
        any mode, or an array of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
        ``(H, W, 4)``: ``uint8`` as is, ``uint16`` scaled from 0–65535, floats in
        [0, 1] or [0, 255], other integers and booleans clipped to 0–255.

    Returns
    -------
    tuple of (PIL.Image.Image, str or None)
        The mode ``"L"`` image and the path it was read from (``None`` for in-memory inputs).

    Raises
    ------
    DataError
        If a file cannot be read, an array has an unsupported shape or dtype, or the
        object is none of the accepted types.

    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(os.fspath(image)), os.fspath(image)
    if isinstance(image, Image.Image):
        return to_grayscale(image), None
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise DataError(
                f"A numpy image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Got {array.shape} instead."
            )
        if array.size == 0:
            raise DataError(f"A numpy image must not be empty. Got shape {array.shape}.")
        if array.dtype == np.uint8:
            pass
        elif array.dtype == np.uint16:
            array = (array / 257.0).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.floating):
            values = array.astype(np.float64)
            # the [0, 1] or [0, 255] range is judged on finite values: one inf must not blacken the image
            scale = 255.0 if values[np.isfinite(values)].max(initial=0.0) <= 1.0 else 1.0
            finite = np.nan_to_num(values, nan=0.0, posinf=255.0 / scale, neginf=0.0)
            array = np.clip(finite * scale, 0, 255).round().astype(np.uint8)
        elif np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
            array = np.clip(array.astype(np.int64) * (255 if array.dtype == np.bool_ else 1), 0, 255).astype(np.uint8)
        else:
            raise DataError(f"Unsupported numpy image dtype {array.dtype}; use uint8, uint16, bool or float.")
        return to_grayscale(Image.fromarray(np.ascontiguousarray(array))), None
    raise DataError(
        f"Cannot classify an object of type {type(image).__name__}; pass a file path, a PIL image, "
        "a numpy array, or a list of them."
    )
