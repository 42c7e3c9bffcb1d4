"""The ultrasound field of view of a frame: the box that :class:`~breastus.transforms.Preprocessing` crops to.

Its own module because finding the box (morphology on a downscaled copy, then
trimming text and rulers merged with it) is a job apart from applying the
preprocessing (:mod:`breastus.transforms._preprocess`).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from breastus._errors import ConfigError

_WORK_SIDE = 256
"""Longer side of the downscaled copy that :func:`field_of_view_box` analyses."""


def field_of_view_box(
    image: np.ndarray,
    threshold: float = 1.0,
    min_fraction: float = 0.1,
) -> tuple[int, int, int, int]:
    """Bounding box of the ultrasound field of view in a grayscale frame.

    The frame is analysed at a longer side of 256 pixels: it is smoothed (3 × 3
    mean), thresholded at ``threshold``, closed (5 × 5) so that speckle and dark
    cysts inside the image stay connected, and opened (9 × 9, about 3.5 % of the
    longer side) so that thin structures — text, calipers, ruler ticks,
    lines — vanish. The largest remaining 8-connected region is the field of
    view. Structures that touch it (text drawn inside the image) are kept.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` ``uint8`` grayscale frame.
    threshold : float, default=1.0
        Grey level from which a (smoothed) pixel counts as signal. It is low on
        purpose: deep tissue and acoustic shadows are dark (mean grey levels of
        2–7 in BUSI) and must stay in view, while the borders of screen captures
        are black (0). A frame on a grey background is therefore not cropped.
    min_fraction : float, default=0.1
        When the largest region covers less than this fraction of the frame
        (a nearly black or unusual image), the whole frame is returned.

    Returns
    -------
    tuple of int
        ``(top, bottom, left, right)``, half-open: the field of view is
        ``image[top:bottom, left:right]``.

    Raises
    ------
    ConfigError
        If ``image`` is not a non-empty 2-D array.

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.zeros((100, 200), dtype=np.uint8)
    >>> frame[20:90, 50:170] = 120
    >>> field_of_view_box(frame)
    (20, 90, 50, 170)

    """
    from scipy import ndimage  # imported here: only the field-of-view crop needs it

    if image.ndim != 2 or image.size == 0:
        raise ConfigError(f"field_of_view_box needs a non-empty (H, W) array. Got shape {image.shape} instead.")
    height, width = image.shape
    scale = min(1.0, _WORK_SIDE / max(height, width))
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    tensor = torch.from_numpy(np.require(image, np.uint8, ["C", "W"]))[None]
    small = tensor if scale == 1.0 else TF.resize(tensor, [small_h, small_w], antialias=True)
    work = ndimage.uniform_filter(small[0].numpy().astype(np.float32), size=3)
    signal = work >= threshold
    # Morphology on an edge-padded copy, so that a field of view reaching the frame's edge is not eroded there.
    pad = 9
    padded = np.pad(signal, pad, mode="edge")
    padded = ndimage.binary_closing(padded, structure=np.ones((5, 5), bool))
    padded = ndimage.binary_opening(padded, structure=np.ones((9, 9), bool))
    signal = padded[pad:-pad, pad:-pad]
    labels, count = ndimage.label(signal, structure=np.ones((3, 3), bool))
    whole = (0, height, 0, width)
    if count == 0:
        return whole
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < min_fraction * small_h * small_w:
        return whole
    # Smoothing and closing widen the region by a pixel or two: bound it by the raw signal inside it.
    region = (labels == largest) & (small[0].numpy() >= threshold)
    if not region.any():
        region = labels == largest
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    # Text or a ruler close to the field of view can be merged with it by the closing; a (nearly)
    # empty row or column in the outer quarter of the box separates them: cut there.
    inside = work[r0:r1, c0:c1] >= threshold
    dr0, dr1 = _trim_gaps(inside.mean(axis=1))
    dc0, dc1 = _trim_gaps(inside.mean(axis=0))
    r0, r1, c0, c1 = r0 + dr0, r0 + dr1, c0 + dc0, c0 + dc1
    top = max(0, int(np.floor(r0 / scale)))
    bottom = min(height, int(np.ceil(r1 / scale)))
    left = max(0, int(np.floor(c0 / scale)))
    right = min(width, int(np.ceil(c1 / scale)))
    return top, bottom, left, right


def _trim_gaps(occupancy: np.ndarray, empty: float = 0.02) -> tuple[int, int]:
    """Start and end of the profile after cutting at its outermost near-empty entries (outer quarters only)."""
    n = len(occupancy)
    quarter = n // 4
    start, end = 0, n
    low = np.flatnonzero(occupancy[:quarter] < empty)
    if low.size:
        start = int(low[-1]) + 1
    high = np.flatnonzero(occupancy[n - quarter :] < empty)
    if high.size:
        end = n - quarter + int(high[0])
    return start, end
