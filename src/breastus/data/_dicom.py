"""Decode ultrasound DICOM files (single images and cine loops) with pydicom.

Every frame becomes the same 8-bit grayscale PIL image (mode ``"L"``) that
:func:`breastus.data.load_image` gives for a PNG, so the rest of breastus does
not care where an image came from. The rules, in decoding order:

1. **Pixels** come from pydicom 3 (:func:`pydicom.pixels.iter_pixels`), which
   decompresses JPEG and other encapsulated transfer syntaxes with an installed
   plugin (``pip install "breastus[dicom]"`` brings pylibjpeg; baseline JPEG is
   decoded by Pillow when pydicom offers it, 2-3 times faster) and converts
   ``YBR_FULL`` / ``YBR_FULL_422`` to RGB. Cine loops are decoded one frame at a
   time, never all at once.
2. **Region**: of the ``SequenceOfUltrasoundRegions`` items, those with
   ``RegionDataType`` 1 (tissue, B-mode) are kept and the largest is cropped out
   (bounds inclusive, as the standard defines them); Doppler, spectral and other
   regions are dropped. Without a tissue region the whole frame is kept.
3. **Spacing**: the chosen region's ``PhysicalDeltaX`` / ``PhysicalDeltaY`` when
   both ``PhysicalUnits`` are 3 (cm), times 10, in mm per pixel; else
   ``PixelSpacing`` (mm) when there are no regions at all; else unknown. It
   travels as :attr:`DicomFrame.pixel_spacing_mm` and as
   ``image.info["pixel_spacing_mm"] = (dx, dy)``.
4. **Grayscale**: ``MONOCHROME2`` values are windowed by the VOI LUT or the
   window centre/width when the file has one (:func:`pydicom.pixels.apply_voi_lut`,
   after the modality LUT), else scaled linearly from the full range the stored
   bits allow (``BitsStored``, signed or not) to 0-255: 8-bit data is kept as is
   and 16-bit data is divided by 257, the rule :func:`~breastus.data._io.to_grayscale`
   applies to 16-bit PNGs. ``MONOCHROME1`` is then inverted (0 is white).
   ``RGB``, ``YBR_*`` and ``PALETTE COLOR`` (expanded with
   :func:`pydicom.pixels.apply_color_lut`) are scaled to 8 bits per channel the
   same way and converted with the ITU-R 601-2 luma transform, as RGB PNGs are.

Patient-identifying attributes are never logged nor put into errors or
outputs: messages name the file and the problem only, library messages are
scrubbed of identifying values, and pydicom's own warnings (which can quote
element values) are silenced while reading.

pydicom is imported only when a DICOM file is read, so breastus works without it.
The header (pixel attributes, region, spacing, the identifying attributes) is read
and checked in :mod:`breastus.data._dicom_header`; this module decodes the pixels.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image

from breastus._errors import DataError
from breastus.data._dicom_header import _Header, _quiet, _read_header, _scrub
from breastus.data._io import to_grayscale

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DICOM_SUFFIXES = frozenset({".dcm"})
"""File suffixes (lower case) always read as DICOM; other files are DICOM when their content says so."""

_PREFERRED_PLUGINS = {"1.2.840.10008.1.2.4.50": "pillow"}
"""Decoding plugin preferred per transfer syntax (JPEG Baseline 8-bit: Pillow, the fastest here)."""


@dataclass(frozen=True)
class DicomFrame:
    """One decoded frame of a DICOM file.

    Attributes
    ----------
    image : PIL.Image.Image
        8-bit grayscale (mode ``"L"``), cropped to the tissue region if the file
        has one. Its ``info`` holds ``"dicom_frame"`` (the index), and
        ``"pixel_spacing_mm"`` and ``"dicom_region"`` when known.
    index : int
        0-based frame number (0 for a single-frame file).
    n_frames : int
        Frames in the file.
    region : tuple of int or None
        The crop as a PIL box ``(left, top, right, bottom)`` (right and bottom
        exclusive) in the stored frame, or ``None`` when the whole frame is used.
    pixel_spacing_mm : tuple of float or None
        ``(dx, dy)``: millimetres per pixel across and down, ``None`` if unknown.
    photometric : str
        The file's photometric interpretation.

    """

    image: Image.Image
    index: int
    n_frames: int
    region: tuple[int, int, int, int] | None
    pixel_spacing_mm: tuple[float, float] | None
    photometric: str


def is_dicom(path: str | os.PathLike[str], data: bytes | None = None) -> bool:
    """Whether a file is DICOM: a ``.dcm`` suffix, or ``b"DICM"`` at byte 128 of its content.

    Parameters
    ----------
    path : str or os.PathLike
    data : bytes, optional
        The file's contents, already read (then ``path`` is not opened).

    Returns
    -------
    bool
        ``False`` also when the file cannot be opened (its reader reports why).

    """
    if Path(path).suffix.lower() in DICOM_SUFFIXES:
        return True
    if data is not None:
        return data[128:132] == b"DICM"
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _source(path: str, data: bytes | None) -> str | BinaryIO:
    return io.BytesIO(data) if data is not None else path


def _stored_range(dataset: Dataset) -> tuple[float, float]:
    """Lowest and highest value the stored bits allow."""
    bits = int(dataset.get("BitsStored") or dataset.BitsAllocated)
    if int(dataset.get("PixelRepresentation") or 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _voi_range(dataset: Dataset) -> tuple[float, float]:
    """Output range of :func:`pydicom.pixels.apply_voi_lut` (as pydicom defines it)."""
    voi = dataset.get("VOILUTSequence")
    if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
        return 0.0, 2.0 ** int(voi[0].LUTDescriptor[2]) - 1
    modality = dataset.get("ModalityLUTSequence")
    if modality:
        return 0.0, 2.0 ** int(modality[0].LUTDescriptor[2]) - 1
    low, high = _stored_range(dataset)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = sorted((low * float(slope) + float(intercept), high * float(slope) + float(intercept)))
    return low, high


def _scale(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` linearly onto 0-255 (uint8), clipping; 8-bit unsigned data is returned as is."""
    if array.dtype == np.uint8 and (low, high) == (0.0, 255.0):
        return array
    scaled = (array.astype(np.float64) - low) * (255.0 / max(high - low, 1e-12))
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def _has_voi(dataset: Dataset) -> bool:
    return bool(dataset.get("VOILUTSequence")) or (
        dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None
    )


def frame_to_grayscale(array: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Convert one decoded frame (as pydicom gives it) to 8-bit grayscale, by the module's rules.

    Parameters
    ----------
    array : numpy.ndarray
        ``(rows, columns)`` or ``(rows, columns, 3)``, from :func:`pydicom.pixels.pixel_array`
        or :func:`~pydicom.pixels.iter_pixels` (colour already converted to RGB).
    dataset : pydicom.dataset.Dataset
        The file's header (pixel attributes, LUTs, windows).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(rows, columns)``.

    """
    from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(dataset.PhotometricInterpretation).strip()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(array, dataset)
        bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
        return _luma(_scale(rgb, 0.0, 2.0**bits - 1))
    if array.ndim == 3:
        return _luma(_scale(array, *_stored_range(dataset)))
    if _has_voi(dataset):
        gray = _scale(apply_voi_lut(apply_modality_lut(array, dataset), dataset), *_voi_range(dataset))
    else:
        gray = _scale(array, *_stored_range(dataset))
    return 255 - gray if photometric == "MONOCHROME1" else gray


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(to_grayscale(Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")))


def _frame_indices(frames: int | Sequence[int] | None, n_frames: int, path: str) -> list[int]:
    if frames is None:
        return list(range(n_frames))
    wanted = [frames] if isinstance(frames, (int, np.integer)) else list(frames)
    for index in wanted:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise DataError(f"frames must be None, an int or a sequence of ints. Got {index!r} in {frames!r} instead.")
        if not 0 <= index < n_frames:
            raise DataError(
                f"DICOM file {path!r} has {n_frames} frame(s), numbered 0 to {n_frames - 1}; frame {index} was asked "
                "for. Choose a frame in that range."
            )
    return [int(i) for i in wanted]


def iter_dicom_frames(
    path: str | os.PathLike[str], frames: int | Sequence[int] | None = None, *, data: bytes | None = None
) -> Iterator[DicomFrame]:
    """Decode the frames of a DICOM file one at a time (cine loops are streamed).

    Parameters
    ----------
    path : str or os.PathLike
        The DICOM file (it names the file in errors when ``data`` is given).
    frames : int, sequence of int or None, default=None
        0-based frame numbers to decode, in the order given; ``None``: every frame.
    data : bytes, optional
        The file's contents, already read.

    Returns
    -------
    iterator of DicomFrame
        Each frame is decoded when the iterator reaches it; only one frame is in
        memory at a time.

    Raises
    ------
    DataError
        Right away if the file is not a readable DICOM image (no pixel data, a
        non-image SOP class, compressed without a decoding plugin, truncated,
        pydicom missing) or a frame number is out of range; while iterating if a
        frame cannot be decoded. Messages name the file, never the patient.

    Examples
    --------
    >>> for frame in iter_dicom_frames("cine.dcm", frames=[0, 10]):  # doctest: +SKIP
    ...     print(frame.index, frame.image.size, frame.pixel_spacing_mm)
    0 (640, 480) (0.1, 0.1)
    10 (640, 480) (0.1, 0.1)

    """
    name = os.fspath(path)
    header = _read_header(name, data)
    indices = _frame_indices(frames, header.n_frames, name)
    return _decode_frames(name, data, header, indices)


def _plugin(dataset: Dataset) -> str:
    """The decoding plugin to ask pydicom for: Pillow for baseline JPEG when it is there, else pydicom's choice.

    Pillow decodes 8-bit baseline JPEG 2-3 times faster than pylibjpeg
    (``benchmarks/dicom_io.py``), to within 1 grey level.
    """
    syntax = dataset.file_meta.TransferSyntaxUID
    if syntax.is_compressed and str(syntax) in _PREFERRED_PLUGINS:
        from pydicom.pixels.decoders.base import get_decoder

        plugin = _PREFERRED_PLUGINS[str(syntax)]
        if plugin in get_decoder(syntax).available_plugins:
            return plugin
    return ""


def _decode_frames(path: str, data: bytes | None, header: _Header, indices: list[int]) -> Iterator[DicomFrame]:
    from pydicom.pixels.utils import iter_pixels

    dataset = header.dataset
    photometric = str(dataset.PhotometricInterpretation).strip()
    with _quiet():
        pixels: Iterable[np.ndarray] = iter_pixels(
            _source(path, data), indices=indices, decoding_plugin=_plugin(dataset)
        )
        iterator = iter(pixels)
    for index in indices:
        try:
            with _quiet():
                array = next(iterator)
                if header.region is not None:
                    left, top, right, bottom = header.region
                    array = array[top:bottom, left:right]
                gray = frame_to_grayscale(array, dataset)
        except StopIteration:
            raise DataError(
                f"DICOM file {path!r} ended before frame {index}: it is truncated. Re-export it or remove it."
            ) from None
        except Exception as exc:  # pydicom and its plugins raise many types on damaged data
            problem = _scrub(f"{type(exc).__name__}: {exc}", dataset)
            raise DataError(
                f"DICOM file {path!r}: frame {index} cannot be decoded, the file is corrupt or truncated ({problem}). "
                "Re-export it from the archive or remove it."
            ) from exc
        image = Image.fromarray(np.ascontiguousarray(gray), mode="L")
        image.info["dicom_frame"] = index
        if header.pixel_spacing_mm is not None:
            image.info["pixel_spacing_mm"] = header.pixel_spacing_mm
        if header.region is not None:
            image.info["dicom_region"] = header.region
        yield DicomFrame(image, index, header.n_frames, header.region, header.pixel_spacing_mm, photometric)


def read_dicom(path: str | os.PathLike[str], frame: int = 0, *, data: bytes | None = None) -> DicomFrame:
    """Decode one frame of a DICOM file (the first by default); see :func:`iter_dicom_frames`.

    Raises
    ------
    DataError
        If the file or the frame cannot be decoded; the message names the file.

    """
    return next(iter_dicom_frames(path, [frame], data=data))


def dicom_photometric(path: str | os.PathLike[str]) -> str:
    """The photometric interpretation of a DICOM file, from its header (for audits).

    Raises
    ------
    DataError
        If the header cannot be read or the file is no DICOM image.

    """
    return str(_read_header(os.fspath(path), None).dataset.PhotometricInterpretation).strip()
