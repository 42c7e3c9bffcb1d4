"""Pictures the service sends back: a heatmap blended over the image (PNG) and a lesion outline (points).

This module is private; use the names re-exported by :mod:`breastus.service`.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from breastus._errors import DataError

MAX_OVERLAY_SIDE = 768
"""Longest side of a returned overlay PNG (larger images are downscaled; the aspect ratio is kept)."""


def heatmap_overlay_png(
    image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = "jet", max_side: int = MAX_OVERLAY_SIDE
) -> bytes:
    """The heatmap coloured with ``cmap`` and blended over the grayscale image, pixel-aligned, as PNG bytes.

    Unlike :func:`breastus.explain.overlay_figure` (a figure with a title and a
    colour bar) this image has the ultrasound's own geometry, so a page can lay
    it over the image or a lesion outline over it.

    Parameters
    ----------
    image : PIL.Image.Image
        The grayscale (mode ``"L"``) image.
    heatmap : numpy.ndarray
        ``(H, W)`` map in [0, 1] with the image's height and width.
    alpha : float, default=0.45
        Opacity of the heatmap.
    cmap : str, default="jet"
        Matplotlib colour map.
    max_side : int, default=768
        Longest side of the PNG.

    Returns
    -------
    bytes
        An RGB PNG.

    Raises
    ------
    DataError
        If the heatmap's shape is not the image's ``(height, width)``.

    """
    from matplotlib import colormaps

    gray = np.asarray(image.convert("L"), dtype=np.float32)
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.shape != gray.shape:
        raise DataError(f"The heatmap has shape {heat.shape} but the image is {gray.shape} (height, width).")
    coloured = colormaps[cmap](heat)[..., :3] * 255.0
    blended = (1.0 - alpha) * gray[..., None] + alpha * coloured
    picture = Image.fromarray(np.clip(blended, 0, 255).round().astype(np.uint8), mode="RGB")
    if max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def png_data_url(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes (what an ``<img src>`` takes)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def mask_outline(mask: np.ndarray, size: tuple[int, int]) -> list[list[list[float]]]:
    """The lesion contour(s) of a mask as polylines in the image's pixel coordinates.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(h, w)`` lesion mask or probability map (the 0.5 level is traced).
    size : tuple of int
        ``(width, height)`` of the image; a mask of another size is scaled to it.

    Returns
    -------
    list of polylines
        Each a list of ``[x, y]`` points (pixel centres), closed contours repeating
        their first point; an empty list when the mask holds no lesion.

    """
    import contourpy

    values = np.asarray(mask, dtype=np.float64)
    if values.ndim != 2 or values.size == 0 or not np.any(values > 0.5):
        return []
    # pad so lesions touching the border still give closed contours
    padded = np.pad(values, 1, constant_values=0.0)
    lines = contourpy.contour_generator(z=padded).lines(0.5)
    width, height = size
    scale_x, scale_y = width / values.shape[1], height / values.shape[0]
    outline: list[list[list[float]]] = []
    for line in lines:
        points = np.asarray(line, dtype=np.float64) - 1.0  # undo the padding
        xs = np.clip((points[:, 0] + 0.5) * scale_x - 0.5, 0, width - 1)
        ys = np.clip((points[:, 1] + 0.5) * scale_y - 0.5, 0, height - 1)
        outline.append([[round(float(x), 1), round(float(y), 1)] for x, y in zip(xs, ys, strict=True)])
    return outline
