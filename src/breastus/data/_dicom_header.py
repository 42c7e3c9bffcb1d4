"""Read and check the header of a DICOM file: pixel attributes, tissue region, spacing, privacy.

This module is private; use :func:`breastus.data.read_dicom` and
:func:`breastus.data.iter_dicom_frames`. The rules (which region, which spacing)
are listed in :mod:`breastus.data._dicom`, which decodes the pixels.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from PIL import Image

from breastus._errors import DataError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "breastus[dicom]"'
"""What to run to read DICOM files, compressed ones included (pydicom, pylibjpeg, pylibjpeg-libjpeg)."""

PHOTOMETRIC_INTERPRETATIONS = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR")
"""The photometric interpretations breastus decodes."""

TISSUE_REGION = 1
"""``RegionDataType`` of a tissue (B-mode) ultrasound region."""

CENTIMETRE = 3
"""``PhysicalUnitsXDirection`` / ``YDirection`` code for centimetres."""

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
class _Header:
    """What the header says about the pixels, read once per file."""

    dataset: Dataset
    n_frames: int
    region: tuple[int, int, int, int] | None
    pixel_spacing_mm: tuple[float, float] | None


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
