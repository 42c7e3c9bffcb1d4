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
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image

from breastus._errors import DataError
from breastus.data._io import to_grayscale

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = frozenset({".dcm"})
"""File suffixes (lower case) always read as DICOM; other files are DICOM when their content says so."""

INSTALL_HINT = 'pip install "breastus[dicom]"'
"""What to run to read DICOM files, compressed ones included (pydicom, pylibjpeg, pylibjpeg-libjpeg)."""

PHOTOMETRIC_INTERPRETATIONS = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")
"""The photometric interpretations breastus decodes."""

TISSUE_REGION = 1
"""``RegionDataType`` of a tissue (B-mode) ultrasound region."""

CENTIMETRE = 3
"""``PhysicalUnitsXDirection`` / ``YDirection`` code for centimetres."""

_PREFERRED_PLUGINS = {"1.2.840.10008.1.2.4.50": "pillow"}
"""Decoding plugin preferred per transfer syntax (JPEG Baseline 8-bit: Pillow, the fastest here)."""

_IDENTIFYING = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "IssuerOfPatientID",
    "AccessionNumber",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "PhysiciansOfRecord",
    "StationName",
    "DeviceSerialNumber",
)
"""Attributes whose values must never reach logs, errors or outputs."""


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


@dataclass(frozen=True)
class _Header:
    """What the header says about the pixels, read once per file."""

    dataset: Dataset
    n_frames: int
    region: tuple[int, int, int, int] | None
    pixel_spacing_mm: tuple[float, float] | None


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


def _pydicom(path: str) -> ModuleType:
    """Import pydicom (and its pixel package), or say how to install it."""
    try:
        import pydicom
        import pydicom.pixels
    except ImportError as exc:
        raise DataError(
            f"File {path!r} is DICOM, and reading DICOM needs pydicom, which is not installed: run {INSTALL_HINT}."
        ) from exc
    return pydicom


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence pydicom's warnings, which can quote element values (patient names among them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _scrub(message: str, dataset: Dataset | None) -> str:
    """``message`` with the values of identifying attributes of ``dataset`` replaced by ``<removed>``."""
    if dataset is None:
        return message
    from pydicom.multival import MultiValue

    for keyword in _IDENTIFYING:
        value = dataset.get(keyword)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
        for item in values:
            text = str(item)
            if len(text) >= 2:
                message = message.replace(text, "<removed>")
    return message


def _source(path: str, data: bytes | None) -> str | BinaryIO:
    return io.BytesIO(data) if data is not None else path


def _read_header(path: str, data: bytes | None) -> _Header:
    """Read and check everything but the pixel data; raise DataError naming ``path`` if it cannot be decoded."""
    pydicom = _pydicom(path)
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels.utils import get_expected_length

    if data is None and not Path(path).is_file():
        raise DataError(f"Image file {path!r} does not exist or is not a file.")
    dataset: Dataset | None = None
    try:
        with _quiet(), io.BytesIO(data) if data is not None else open(path, "rb") as handle:
            size = handle.seek(0, io.SEEK_END)
            handle.seek(0)
            dataset = pydicom.dcmread(handle, stop_before_pixels=True)
            remaining = size - handle.tell()
    except InvalidDicomError as exc:
        raise DataError(
            f"File {path!r} is not a DICOM file (no 'DICM' marker after the 128-byte preamble, or no file meta "
            "information); re-save it in the DICOM file format or remove it."
        ) from exc
    except Exception as exc:  # pydicom raises many types on damaged input
        raise DataError(
            f"DICOM file {path!r} is corrupt or truncated ({type(exc).__name__} while reading the header); "
            "re-export it from the archive or remove it."
        ) from exc
    assert dataset is not None
    meta = getattr(dataset, "file_meta", None) or {}
    syntax = meta.get("TransferSyntaxUID")
    sop = dataset.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
    if syntax is None or sop is None:
        raise DataError(
            f"DICOM file {path!r} is truncated or incomplete: its header lacks the "
            f"{'transfer syntax' if syntax is None else 'SOP class'}. Re-export it from the archive or remove it."
        )
    sop_name = sop.name
    if sop_name != str(sop) and "Image" not in sop_name:
        raise DataError(
            f"DICOM file {path!r} is a {sop_name!r} object (SOP class {sop}), not an image; "
            "remove it from the image folder or manifest."
        )
    if remaining <= 0:
        raise DataError(
            f"DICOM file {path!r} has no pixel data (SOP class {sop_name!r}); "
            "it holds no image: remove it or re-export the image with its pixels."
        )
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation") if k not in dataset]
    if missing:
        raise DataError(
            f"DICOM file {path!r} lacks the image attributes {', '.join(missing)}; it is damaged or not an image: "
            "re-export it or remove it."
        )
    photometric = str(dataset.PhotometricInterpretation).strip()
    if photometric not in PHOTOMETRIC_INTERPRETATIONS:
        raise DataError(
            f"DICOM file {path!r} has photometric interpretation {photometric!r}; breastus reads "
            f"{', '.join(PHOTOMETRIC_INTERPRETATIONS)}. Convert it with a DICOM tool or remove it."
        )
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if rows * columns > (Image.MAX_IMAGE_PIXELS or float("inf")):
        raise DataError(
            f"DICOM file {path!r} has {columns}x{rows}-pixel frames, more than PIL's decompression-bomb limit "
            f"({Image.MAX_IMAGE_PIXELS} pixels). If you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS."
        )
    if syntax.is_compressed:
        _check_decoder(path, syntax)
    else:
        expected = int(get_expected_length(dataset, "bytes"))
        remaining -= 8 if syntax.is_implicit_VR else 12  # the Pixel Data element's tag, VR and length
        if remaining < expected:
            raise DataError(
                f"DICOM file {path!r} is truncated: its pixel data needs {expected} bytes but only {remaining} "
                "follow the header. Re-export it from the archive or remove it."
            )
    n_frames = int(dataset.get("NumberOfFrames") or 1)
    region, spacing = _tissue_region(dataset, path)
    return _Header(dataset, max(n_frames, 1), region, spacing)


def _check_decoder(path: str, syntax: Any) -> None:
    """Raise DataError if no installed plugin decodes the transfer syntax ``syntax``."""
    from pydicom.pixels.decoders.base import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise DataError(
            f"DICOM file {path!r} uses the transfer syntax {syntax.name!r}, which pydicom cannot decode; "
            "convert it to an uncompressed or JPEG transfer syntax with a DICOM tool."
        ) from exc
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise DataError(
            f"DICOM file {path!r} is compressed ({syntax.name}) and no installed plugin decodes it "
            f"(options: {needs}). Install one: {INSTALL_HINT} (pylibjpeg and pylibjpeg-libjpeg)."
        )


def _tissue_region(dataset: Dataset, path: str) -> tuple[tuple[int, int, int, int] | None, tuple[float, float] | None]:
    """The largest tissue region's PIL box and its spacing in mm (see the module notes)."""
    width, height = int(dataset.Columns), int(dataset.Rows)
    regions = dataset.get("SequenceOfUltrasoundRegions")
    if not regions:
        spacing = dataset.get("PixelSpacing")
        if spacing is not None and len(spacing) == 2 and all(float(v) > 0 for v in spacing):
            return None, (float(spacing[1]), float(spacing[0]))
        return None, None
    best: tuple[int, tuple[int, int, int, int], Any] | None = None
    for number, item in enumerate(regions):
        if item.get("RegionDataType") != TISSUE_REGION:
            continue
        bounds = [
            item.get(k)
            for k in ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1", "RegionLocationMaxY1")
        ]
        if any(b is None for b in bounds):
            logger.warning("DICOM file %s: ultrasound region %d has no location; ignored.", path, number)
            continue
        x0, y0, x1, y1 = (int(b) for b in bounds)
        if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
            logger.warning(
                "DICOM file %s: ultrasound region %d (%d,%d)-(%d,%d) lies outside the %dx%d frame; ignored.",
                path, number, x0, y0, x1, y1, width, height,
            )  # fmt: skip
            continue
        area = (x1 - x0 + 1) * (y1 - y0 + 1)
        if best is None or area > best[0]:
            best = (area, (x0, y0, x1 + 1, y1 + 1), item)
    if best is None:
        return None, None
    _, box, item = best
    spacing_mm: tuple[float, float] | None = None
    units = (item.get("PhysicalUnitsXDirection"), item.get("PhysicalUnitsYDirection"))
    deltas = (item.get("PhysicalDeltaX"), item.get("PhysicalDeltaY"))
    if units == (CENTIMETRE, CENTIMETRE) and None not in deltas:
        dx, dy = (abs(float(d)) * 10.0 for d in deltas)
        if dx > 0 and dy > 0:
            spacing_mm = (dx, dy)
    return box, spacing_mm


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
