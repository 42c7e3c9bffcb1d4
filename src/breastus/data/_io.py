"""Decode ultrasound images and lesion masks from disk, whatever their PIL mode.

Every image becomes an 8-bit single-channel (``"L"``) PIL image: B-mode
ultrasound is grayscale, and the few images stored as RGB (colour Doppler or
annotation overlays) are converted with the ITU-R 601-2 luma transform. EXIF
orientation is applied. DICOM files (``.dcm``, or ``DICM`` at byte 128) are
decoded to the same contract (see :func:`breastus.data.iter_dicom_frames`).
Failures raise :class:`~breastus.DataError` naming the file and what to do about it.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from breastus._errors import DataError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm"})
"""File suffixes (lower case) that are read as images."""


def to_grayscale(image: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to 8-bit grayscale (mode ``"L"``).

    16-bit and 32-bit integer images are scaled from their type's full range
    (``I;16``: 0–65535) and float images are clipped to 0–255. Alpha channels are
    composited onto black, the background of an ultrasound frame.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode PIL can open: ``1``, ``L``, ``LA``, ``P``, ``RGB``, ``RGBA``,
        ``CMYK``, ``YCbCr``, ``I;16``, ``I``, ``F``.

    Returns
    -------
    PIL.Image.Image
        A mode ``"L"`` image of the same size.

    """
    mode = image.mode
    if mode == "L":
        return image
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(image).astype(np.float64)
        peak = float(array.max(initial=0))
        if mode.startswith("I;16") or 255 < peak <= 65535:
            array = array / 257.0
        elif peak > 65535:
            array = array * (255.0 / peak)
        return Image.fromarray(np.clip(array, 0, 255).round().astype(np.uint8), mode="L")
    if mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float32))
        return Image.fromarray(np.clip(array, 0, 255).round().astype(np.uint8), mode="L")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    if mode != "RGB":
        image = image.convert("RGB")
    return image.convert("L")


def load_image(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Read an image file as an 8-bit grayscale PIL image with EXIF orientation applied.

    Parameters
    ----------
    path : str or pathlib.Path
        A PNG, JPEG, BMP, TIFF or DICOM file. A DICOM file (``.dcm`` suffix or
        ``DICM`` at byte 128) gives its first frame, cropped to its tissue region,
        with ``info["pixel_spacing_mm"]`` when known (see
        :func:`breastus.data.iter_dicom_frames` for the rules and other frames).
    data : bytes, optional
        The file's contents, already read: they are decoded instead of reading
        ``path`` again (which then only names the file in error messages).

    Returns
    -------
    PIL.Image.Image
        Mode ``"L"``, fully decoded (the file is closed).

    Raises
    ------
    DataError
        If the file is missing, empty, truncated, not an image, or larger than PIL's
        decompression-bomb limit. The message names the file and the fix.

    """
    path = Path(path)
    if data is None and not path.is_file():
        raise DataError(f"Image file {str(path)!r} does not exist or is not a file.")
    if (len(data) if data is not None else path.stat().st_size) == 0:
        raise DataError(f"Image file {str(path)!r} is empty (0 bytes); delete it or replace it with the image.")
    from breastus.data._dicom import DICOM_SUFFIXES, is_dicom, read_dicom

    if path.suffix.lower() in DICOM_SUFFIXES:
        return read_dicom(path, data=data).image
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path if data is None else io.BytesIO(data)) as raw:
                raw.load()
                oriented = ImageOps.exif_transpose(raw)
                return to_grayscale(oriented).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"Image file {str(path)!r} is larger than PIL's decompression-bomb limit "
            f"({Image.MAX_IMAGE_PIXELS} pixels): {str(exc).rstrip('.')}. If you trust the file, downscale it first "
            "or raise PIL.Image.MAX_IMAGE_PIXELS."
        ) from exc
    except UnidentifiedImageError as exc:
        if is_dicom(path, data):  # DICOM by content (b"DICM" at byte 128), whatever the file is called
            return read_dicom(path, data=data).image
        raise DataError(
            f"File {str(path)!r} is not an image PIL can read (PNG, JPEG, BMP, TIFF); "
            "remove it from the data folder or convert it."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"Image file {str(path)!r} is corrupt or truncated ({exc}); re-export or remove it.") from exc


def load_mask(paths: Sequence[str | Path], size: tuple[int, int]) -> np.ndarray:
    """Read and merge the lesion masks of one image into one boolean array.

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
        Mask files of one image (``X_mask.png``, ``X_mask_1.png``, ...). Non-zero
        pixels are lesion. An empty sequence gives an all-false mask.
    size : tuple of int
        ``(width, height)`` of the image the masks belong to. A mask of another
        size but the same aspect ratio (a rescaled export) is resized to it with
        nearest-neighbour interpolation, with a logged warning.

    Returns
    -------
    numpy.ndarray
        Boolean array of shape ``(height, width)``, the union of the masks.

    Raises
    ------
    DataError
        If a mask file cannot be read, or its aspect ratio differs from the
        image's by more than 2 % (it belongs to another image or was cropped).

    """
    width, height = size
    merged = np.zeros((height, width), dtype=bool)
    for mask_path in paths:
        mask = load_image(mask_path)
        if mask.size != (width, height):
            mask_width, mask_height = mask.size
            if abs(mask_width * height - mask_height * width) > 0.02 * mask_height * width:
                raise DataError(
                    f"Mask file {str(mask_path)!r} is {mask_width}x{mask_height} pixels but its image is "
                    f"{width}x{height}, another aspect ratio: it belongs to another image or was cropped. "
                    "Re-export the mask at the image's size or remove it."
                )
            logger.warning(
                "Mask %s is %dx%d pixels, its image %dx%d; resizing it (nearest neighbour).",
                mask_path,
                mask_width,
                mask_height,
                width,
                height,
            )
            mask = mask.resize((width, height), Image.Resampling.NEAREST)
        merged |= np.asarray(mask) > 0
    return merged
