"""Intensity standardisation of a grayscale frame: percentile window and CLAHE.

Used by :class:`~breastus.transforms.Preprocessing` (``intensity="percentile"`` or
``"clahe"``) after the field-of-view crop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from breastus._errors import ConfigError


def percentile_window(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Stretch grey levels linearly so that percentile ``low`` → 0 and ``high`` → 255.

    Values outside are clipped. An image whose two percentiles are closer than one
    grey level (a flat image) is returned unchanged.

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` grayscale image.
    low, high : float, default=1.0, 99.0
        Percentiles in [0, 100], ``low < high``.

    Returns
    -------
    numpy.ndarray
        ``uint8``, same shape.

    Examples
    --------
    >>> import numpy as np
    >>> percentile_window(np.array([[50, 100, 150]], dtype=np.uint8), 0, 100).tolist()
    [[0, 128, 255]]

    """
    lo, hi = np.percentile(image, [low, high])
    if hi - lo < 1:
        return image
    scaled = (image.astype(np.float32) - float(lo)) * (255.0 / float(hi - lo))
    result: np.ndarray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return result


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ConfigError(
            "Preprocessing(intensity='clahe') needs OpenCV, which is not installed. "
            "Install it with pip install 'breastus[preprocess]' (opencv-python-headless), "
            "or use intensity='percentile'."
        ) from exc
    return cv2


def clahe(image: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV ``createCLAHE``).

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` grayscale image.
    clip_limit : float, default=2.0
        OpenCV's clip limit (contrast amplification cap per tile).
    tiles : int, default=8
        The image is divided into ``tiles`` × ``tiles`` regions.

    Returns
    -------
    numpy.ndarray
        ``uint8``, same shape.

    Raises
    ------
    ConfigError
        If OpenCV is not installed.

    """
    cv2 = _import_cv2()
    equaliser = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(tiles, tiles))
    result: np.ndarray = equaliser.apply(np.ascontiguousarray(image, dtype=np.uint8))
    return result
