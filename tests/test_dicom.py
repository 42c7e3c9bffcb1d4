"""DICOM input: every photometric, 8/16 bit, cine streaming, ultrasound regions, compression, bad files, no PHI leaks.

Every file is built here with pydicom (no downloads); expected pixels come from pydicom's own decoding.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.pixels import apply_color_lut, pixel_array  # noqa: E402
from pydicom.pixels.decoders.base import get_decoder  # noqa: E402
from pydicom.uid import (  # noqa: E402
    BasicTextSRStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from breastus import DataError, UltrasoundDataset  # noqa: E402
from breastus.cli import main  # noqa: E402
from breastus.data import audit, is_dicom, iter_dicom_frames, load_image, read_dicom  # noqa: E402
from breastus.data._io import to_grayscale  # noqa: E402
from breastus.prediction import Predictor, predict_frames  # noqa: E402

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "SECRET-4711"
RNG = np.random.default_rng(0)


def _dataset(sop: str, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.InstitutionName = "Hospital of Nowhere"
    return ds


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    regions: Sequence[dict[str, Any]] = (),
    sop: str | None = None,
    **attributes: Any,
) -> Path:
    """Save ``pixels`` ((rows, cols[, 3]) or (frames, rows, cols[, 3])) as a DICOM file in the file format."""
    multi = pixels is not None and pixels.ndim == (4 if photometric.startswith(("RGB", "YBR")) else 3)
    ds = _dataset(sop or (UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage))
    if pixels is not None:
        ds.set_pixel_data(pixels, photometric, bits_stored or 8 * pixels.dtype.itemsize)
    items = []
    for values in regions:
        item = Dataset()
        for key, value in values.items():
            setattr(item, key, value)
        items.append(item)
    if items:
        ds.SequenceOfUltrasoundRegions = items
    for key, value in attributes.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def region(x0: int, y0: int, x1: int, y1: int, kind: int = 1, delta_cm: float = 0.01, units: int = 3) -> dict[str, Any]:
    return {
        "RegionSpatialFormat": 1,
        "RegionDataType": kind,
        "RegionFlags": 0,
        "RegionLocationMinX0": x0,
        "RegionLocationMinY0": y0,
        "RegionLocationMaxX1": x1,
        "RegionLocationMaxY1": y1,
        "PhysicalUnitsXDirection": units,
        "PhysicalUnitsYDirection": units,
        "PhysicalDeltaX": delta_cm,
        "PhysicalDeltaY": delta_cm * 1.5,
    }


def luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").convert("L"))


def add_palette(path: Path) -> Path:
    """Turn a MONOCHROME-like 8-bit file into PALETTE COLOR with 16-bit LUT entries."""
    ds = pydicom.dcmread(path)
    ramp = np.arange(256, dtype=np.uint16)
    for colour, lut in (("Red", ramp * 257), ("Green", (255 - ramp) * 257), ("Blue", np.full(256, 40 * 257))):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        ds[f"{colour}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut.astype("<u2").tobytes())
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(path, enforce_file_format=True)
    return path


# --- photometric interpretations and bit depths -------------------------------------------------------------


def _case(tmp_path: Path, kind: str) -> tuple[Path, np.ndarray]:
    """A file of one kind and the grayscale pydicom's decoding implies under the documented rules."""
    path = tmp_path / f"{kind}.dcm"
    gray8 = RNG.integers(0, 256, (24, 32), dtype=np.uint8)
    colour8 = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    if kind == "MONOCHROME2-8":
        write_dicom(path, gray8)
        return path, pixel_array(path)
    if kind == "MONOCHROME1-8":
        write_dicom(path, gray8, "MONOCHROME1")
        return path, 255 - pixel_array(path)
    if kind == "MONOCHROME2-16":  # the 16-bit PNG rule: divide by 257
        write_dicom(path, RNG.integers(0, 65536, (24, 32), dtype=np.uint16))
        return path, np.asarray(to_grayscale(Image.fromarray(pixel_array(path))))
    if kind == "MONOCHROME2-12":  # 12 stored bits: full range is 0..4095
        write_dicom(path, RNG.integers(0, 4096, (24, 32), dtype=np.uint16), bits_stored=12)
        return path, np.round(pixel_array(path) * (255 / 4095)).astype(np.uint8)
    if kind == "MONOCHROME2-s16":  # signed: the full signed range
        write_dicom(path, RNG.integers(-32768, 32768, (24, 32), dtype=np.int16))
        decoded = pixel_array(path)
        assert decoded.dtype == np.int16
        return path, np.round((decoded.astype(np.float64) + 32768) * (255 / 65535)).astype(np.uint8)
    if kind == "MONOCHROME1-16":
        write_dicom(path, RNG.integers(0, 65536, (24, 32), dtype=np.uint16), "MONOCHROME1")
        return path, 255 - np.round(pixel_array(path) / 257).astype(np.uint8)
    if kind in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        write_dicom(path, colour8, kind)
        decoded = pixel_array(path)  # pydicom converts YBR to RGB
        assert decoded.shape == (24, 32, 3)
        return path, luma(decoded)
    if kind == "RGB-16":
        write_dicom(path, RNG.integers(0, 65536, (24, 32, 3), dtype=np.uint16), "RGB")
        return path, luma(np.round(pixel_array(path) / 257).astype(np.uint8))
    if kind == "PALETTE COLOR":
        add_palette(write_dicom(path, gray8))
        ds = pydicom.dcmread(path)
        return path, luma(np.round(apply_color_lut(pixel_array(ds), ds) / 257).astype(np.uint8))
    raise AssertionError(kind)


KINDS = [
    "MONOCHROME2-8",
    "MONOCHROME1-8",
    "MONOCHROME2-16",
    "MONOCHROME2-12",
    "MONOCHROME2-s16",
    "MONOCHROME1-16",
    "RGB",
    "RGB-16",
    "YBR_FULL",
    "YBR_FULL_422",
    "PALETTE COLOR",
]


@pytest.mark.parametrize("kind", KINDS)
def test_each_photometric_equals_pydicoms_decoding(tmp_path: Path, kind: str) -> None:
    path, expected = _case(tmp_path, kind)
    image = load_image(path)
    assert image.mode == "L"
    assert image.size == (32, 24)
    np.testing.assert_array_equal(np.asarray(image), expected)
    assert read_dicom(path).photometric == kind.split("-")[0]
    assert PATIENT_NAME not in repr(image.info)


def test_palette_colour_is_not_the_index_image(tmp_path: Path) -> None:
    path, expected = _case(tmp_path, "PALETTE COLOR")
    indices = pixel_array(path)
    assert not np.array_equal(expected, indices)  # the LUT really was applied


def test_window_centre_and_width_are_applied(tmp_path: Path) -> None:
    values = np.array([[0, 900, 999, 1000, 1100, 65535]], dtype=np.uint16)
    path = write_dicom(tmp_path / "window.dcm", values, WindowCenter=1000, WindowWidth=200)
    gray = np.asarray(load_image(path))[0]
    assert gray[0] == 0 and gray[1] == 0  # below the window
    assert gray[4] == 255 and gray[5] == 255  # above it
    assert 120 <= gray[2] <= gray[3] <= 135  # mid-window is mid-gray
    no_window = np.asarray(load_image(write_dicom(tmp_path / "plain.dcm", values)))[0]
    assert no_window[3] == round(1000 / 257)  # without a window: full 16-bit range


def test_dicom_is_detected_by_content_without_a_suffix(tmp_path: Path) -> None:
    path, expected = _case(tmp_path, "MONOCHROME2-8")
    renamed = path.rename(tmp_path / "IM0001")
    assert is_dicom(renamed) and not is_dicom(tmp_path / "absent.png")
    np.testing.assert_array_equal(np.asarray(load_image(renamed)), expected)
    # already-read bytes (the ImageCache path) decode the same, the path only names the file
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "x.png", renamed.read_bytes())), expected)


# --- multi-frame (cine) ------------------------------------------------------------------------------------


@pytest.fixture()
def cine(tmp_path: Path) -> Path:
    frames = np.stack(
        [np.full((20, 28), 10 * i, dtype=np.uint8) + RNG.integers(0, 5, (20, 28), dtype=np.uint8) for i in range(5)]
    )
    return write_dicom(tmp_path / "cine.dcm", frames, regions=[region(2, 3, 25, 17)])


def test_every_frame_and_chosen_frames(cine: Path) -> None:
    frames = list(iter_dicom_frames(cine))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.n_frames == 5 for f in frames)
    for f in frames:
        np.testing.assert_array_equal(np.asarray(f.image), pixel_array(cine, index=f.index)[3:18, 2:26])
        assert f.image.info["dicom_frame"] == f.index
    assert [f.index for f in iter_dicom_frames(cine, [3, 1])] == [3, 1]
    assert [f.index for f in iter_dicom_frames(cine, 4)] == [4]
    np.testing.assert_array_equal(np.asarray(load_image(cine)), np.asarray(frames[0].image))  # first by default


def test_frame_out_of_range_names_the_file(cine: Path) -> None:
    with pytest.raises(DataError, match=r"cine\.dcm.*5 frame\(s\), numbered 0 to 4; frame 7"):
        list(iter_dicom_frames(cine, [0, 7]))
    with pytest.raises(DataError, match="frames must be"):
        iter_dicom_frames(cine, [True])


def test_cine_is_streamed_one_frame_at_a_time(cine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.pixels.utils as utils

    original = utils.iter_pixels
    decoded: list[int] = []
    sources: list[object] = []

    def spy(src: Any, **kwargs: Any) -> Iterator[np.ndarray]:
        sources.append(src)
        for array in original(src, **kwargs):
            decoded.append(1)
            yield array

    monkeypatch.setattr(utils, "iter_pixels", spy)
    frames = iter_dicom_frames(cine)
    assert decoded == []  # nothing decoded before asked
    next(frames)
    assert len(decoded) == 1  # one frame decoded for one frame asked
    next(frames)
    assert len(decoded) == 2
    assert isinstance(sources[0], str)  # pydicom reads the file itself, frame by frame, not a loaded dataset


# --- ultrasound regions and spacing ------------------------------------------------------------------------


def test_largest_tissue_region_is_cropped_and_spacing_in_mm(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pixels = RNG.integers(0, 256, (60, 80), dtype=np.uint8)
    regions = [
        region(0, 0, 79, 59, kind=3),  # spectral Doppler, the biggest: dropped
        region(5, 5, 20, 20),  # small tissue region
        region(10, 8, 69, 49, delta_cm=0.02),  # the largest tissue region
        region(0, 0, 200, 10),  # tissue but outside the frame: ignored with a warning
    ]
    path = write_dicom(tmp_path / "regions.dcm", pixels, regions=regions)
    with caplog.at_level(logging.WARNING):
        frame = read_dicom(path)
    assert frame.region == (10, 8, 70, 50)
    np.testing.assert_array_equal(np.asarray(frame.image), pixels[8:50, 10:70])
    assert frame.image.size == (60, 42)
    assert frame.pixel_spacing_mm == pytest.approx((0.2, 0.3))
    assert frame.image.info["pixel_spacing_mm"] == pytest.approx((0.2, 0.3))
    assert load_image(path).info["pixel_spacing_mm"] == pytest.approx((0.2, 0.3))
    assert "region 3" in caplog.text and "outside" in caplog.text


def test_regions_without_tissue_or_centimetres(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    doppler_only = read_dicom(write_dicom(tmp_path / "d.dcm", pixels, regions=[region(0, 0, 19, 19, kind=2)]))
    assert doppler_only.region is None and doppler_only.pixel_spacing_mm is None
    assert doppler_only.image.size == (40, 30)
    seconds = read_dicom(write_dicom(tmp_path / "s.dcm", pixels, regions=[region(1, 1, 10, 10, units=4)]))
    assert seconds.region == (1, 1, 11, 11) and seconds.pixel_spacing_mm is None
    assert "pixel_spacing_mm" not in seconds.image.info
    spaced = read_dicom(write_dicom(tmp_path / "p.dcm", pixels, PixelSpacing=[0.3, 0.2]))  # row, column
    assert spaced.region is None and spaced.pixel_spacing_mm == pytest.approx((0.2, 0.3))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 47).flatmap(lambda x0: st.tuples(st.just(x0), st.integers(x0, 47))),
    st.integers(0, 35).flatmap(lambda y0: st.tuples(st.just(y0), st.integers(y0, 35))),
    st.floats(0.001, 0.1),
)
def test_region_crop_equals_the_region_bounds(xs: tuple[int, int], ys: tuple[int, int], delta: float) -> None:
    (x0, x1), (y0, y1) = xs, ys
    pixels = np.arange(36 * 48, dtype=np.uint16).reshape(36, 48) % 251
    with tempfile.TemporaryDirectory() as folder:
        path = write_dicom(
            Path(folder) / "r.dcm", pixels.astype(np.uint8), regions=[region(x0, y0, x1, y1, delta_cm=delta)]
        )
        frame = read_dicom(path)
    assert np.asarray(frame.image).shape == (y1 - y0 + 1, x1 - x0 + 1)
    np.testing.assert_array_equal(np.asarray(frame.image), pixels[y0 : y1 + 1, x0 : x1 + 1])
    assert frame.pixel_spacing_mm == pytest.approx((delta * 10, delta * 15))


# --- compressed files --------------------------------------------------------------------------------------


def write_jpeg_dicom(path: Path, frames: Sequence[np.ndarray]) -> Path:
    """Encapsulate Pillow-made baseline JPEGs (pydicom has no JPEG baseline encoder)."""
    colour = frames[0].ndim == 3
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=90, subsampling=1)  # 4:2:2 for colour
        encoded.append(buffer.getvalue())
    ds = _dataset(UltrasoundMultiFrameImageStorage, JPEGBaseline8Bit)
    ds.Rows, ds.Columns = frames[0].shape[:2]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "YBR_FULL_422" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture()
def jpeg_only_pylibjpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave pylibjpeg as the only JPEG baseline decoder, so the test proves it decodes."""
    decoder = get_decoder(JPEGBaseline8Bit)
    if "pylibjpeg" not in decoder.available_plugins:
        pytest.skip("pylibjpeg with pylibjpeg-libjpeg is not installed")
    monkeypatch.setattr(decoder, "_available", {"pylibjpeg": decoder._available["pylibjpeg"]})


@pytest.mark.usefixtures("jpeg_only_pylibjpeg")
@pytest.mark.parametrize("colour", [False, True], ids=["MONOCHROME2", "YBR_FULL_422"])
def test_jpeg_compressed_decoded_with_pylibjpeg(tmp_path: Path, colour: bool) -> None:
    shape = (32, 40, 3) if colour else (32, 40)
    frames = [np.clip(RNG.normal(120, 30, shape), 0, 255).astype(np.uint8) for _ in range(3)]
    path = write_jpeg_dicom(tmp_path / "jpeg.dcm", frames)
    decoded = list(iter_dicom_frames(path))
    assert [f.index for f in decoded] == [0, 1, 2]
    for f in decoded:
        reference = pixel_array(path, index=f.index, decoding_plugin="pylibjpeg")
        expected = luma(reference) if colour else reference
        np.testing.assert_array_equal(np.asarray(f.image), expected)
        assert (
            np.abs(np.asarray(f.image).astype(int) - (luma(frames[f.index]) if colour else frames[f.index])).mean() < 6
        )


def test_baseline_jpeg_prefers_pillow_when_available(tmp_path: Path) -> None:
    decoder = get_decoder(JPEGBaseline8Bit)
    if "pillow" not in decoder.available_plugins:
        pytest.skip("pydicom's Pillow plugin is not available")
    frames = [np.clip(RNG.normal(120, 30, (32, 40)), 0, 255).astype(np.uint8) for _ in range(2)]
    path = write_jpeg_dicom(tmp_path / "jpeg.dcm", frames)
    for f in iter_dicom_frames(path):
        np.testing.assert_array_equal(np.asarray(f.image), pixel_array(path, index=f.index, decoding_plugin="pillow"))


def test_compressed_without_a_plugin_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jpeg_dicom(tmp_path / "jpeg.dcm", [RNG.integers(0, 256, (16, 16), dtype=np.uint8)])
    monkeypatch.setattr(get_decoder(JPEGBaseline8Bit), "_available", {})
    with pytest.raises(DataError, match=r"jpeg\.dcm.*compressed \(JPEG Baseline.*pip install \"breastus\[dicom\]\""):
        load_image(path)


def test_without_pydicom_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = _case(tmp_path, "MONOCHROME2-8")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(DataError, match=r"MONOCHROME2-8\.dcm.*needs pydicom.*pip install \"breastus\[dicom\]\""):
        load_image(path)


# --- bad files ---------------------------------------------------------------------------------------------


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Broken DICOM files and the words their error must hold."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_dicom(folder / "good.dcm", RNG.integers(0, 256, (3, 16, 20), dtype=np.uint8))
    data = good.read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) - 300])
    (folder / "header_cut.dcm").write_bytes(data[:200])
    (folder / "garbage.dcm").write_bytes(b"not a dicom file at all" * 20)
    return {
        "no pixel data": (write_dicom(folder / "nopixels.dcm", None), "has no pixel data"),
        "non-image SOP class": (
            write_dicom(folder / "report.dcm", None, sop=BasicTextSRStorage),
            "'Basic Text SR Storage' object .* not an image",
        ),
        "truncated pixel data": (folder / "truncated.dcm", "is truncated: its pixel data needs 960 bytes"),
        "truncated header": (folder / "header_cut.dcm", "truncated or incomplete"),
        "not DICOM": (folder / "garbage.dcm", "not a DICOM file"),
    }


@pytest.mark.parametrize(
    "case", ["no pixel data", "non-image SOP class", "truncated pixel data", "truncated header", "not DICOM"]
)
def test_bad_files_raise_a_data_error_naming_the_file(tmp_path: Path, case: str) -> None:
    path, words = bad_files(tmp_path)[case]
    with pytest.raises(DataError, match=rf"{path.name}.*{words}") as info:
        load_image(path)
    assert PATIENT_NAME not in str(info.value) and PATIENT_ID not in str(info.value)


def test_frames_over_the_decompression_bomb_limit_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_dicom(tmp_path / "big.dcm", RNG.integers(0, 256, (30, 40), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match=r"big\.dcm.*40x30-pixel frames.*decompression-bomb limit"):
        load_image(path)


def test_a_frame_that_fails_to_decode_is_named_and_scrubbed(cine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.pixels.utils as utils

    def broken(src: Any, **kwargs: Any) -> Iterator[np.ndarray]:
        yield np.zeros((20, 28), dtype=np.uint8)
        raise ValueError(f"element value {PATIENT_NAME} / {PATIENT_ID} is broken")

    monkeypatch.setattr(utils, "iter_pixels", broken)
    frames = iter_dicom_frames(cine)
    next(frames)
    with pytest.raises(DataError, match=r"cine\.dcm.*frame 1 cannot be decoded") as info:
        next(frames)
    assert PATIENT_NAME not in str(info.value) and PATIENT_ID not in str(info.value)
    assert "<removed>" in str(info.value)


def test_on_error_skip_leaves_bad_dicom_files_out(
    tmp_path: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    bad = bad_files(root / "benign")
    write_dicom(root / "malignant" / "m.dcm", RNG.integers(0, 256, (16, 20), dtype=np.uint8))
    strict = UltrasoundDataset.from_folder(root, on_error="raise")
    with pytest.raises(DataError, match=r"garbage\.dcm"):
        _ = strict[0]  # the first file (natural order) is the broken one
    with caplog.at_level(logging.DEBUG):
        dataset = UltrasoundDataset.from_folder(root, on_error="skip")
        assert sorted(p.name for p in dataset.paths) == ["good.dcm", "m.dcm"]
        assert {p.name for p, _ in dataset.skipped} == {p.name for p, _ in bad.values()}
        predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
        predictions = list(predictor.predict_folder(root, on_error="skip"))
    assert sorted(Path(p.path or "").name for p in predictions) == ["good.dcm", "m.dcm"]
    with pytest.raises(DataError, match=r"garbage\.dcm|header_cut\.dcm|nopixels\.dcm|report\.dcm|truncated\.dcm"):
        list(predictor.predict_folder(root))
    assert PATIENT_NAME not in caplog.text and PATIENT_ID not in caplog.text


# --- patient data never leaves ------------------------------------------------------------------------------


def test_patient_identifiers_never_reach_logs_errors_or_outputs(
    tmp_path: Path, tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    pixels = RNG.integers(0, 256, (2, 30, 40), dtype=np.uint8)
    good = write_dicom(tmp_path / "scan.dcm", pixels, regions=[region(0, 0, 300, 300), region(2, 2, 30, 20)])
    bad = bad_files(tmp_path / "bad")
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for frame in iter_dicom_frames(good):
            texts.append(repr(frame) + repr(frame.image.info))
        for path, _ in bad.values():
            with pytest.raises(DataError) as info:
                load_image(path)
            texts.append(str(info.value))
        assert (
            main(
                [
                    "predict",
                    str(tiny_checkpoint),
                    str(good),
                    str(tmp_path / "bad"),
                    "--frames",
                    "all",
                    "--json",
                    "--on-error",
                    "skip",
                ]
            )
            == 0
        )
    texts.append(capsys.readouterr().out)
    texts.append(caplog.text)
    assert "region 0" in caplog.text  # the logs did record something about this file
    for text in texts:
        for secret in (PATIENT_NAME, PATIENT_ID, "Doe", "19700101", "Hospital of Nowhere"):
            assert secret not in text


# --- Predictor, CLI, audit ---------------------------------------------------------------------------------


def test_predict_frames_matches_predicting_each_frame(cine: Path, tiny_checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=2)
    results = list(predictor.predict_frames(cine))
    assert [r.frame for r in results] == [0, 1, 2, 3, 4]
    assert all(r.path == str(cine) for r in results)
    for r in results:
        image = read_dicom(cine, r.frame or 0).image
        expected = predictor.predict(image).probabilities
        assert r.probabilities == pytest.approx(expected, abs=1e-6)
        assert r.to_dict()["frame"] == r.frame
    chosen = list(predictor.predict_frames(cine, frames=[4, 2]))
    assert [r.frame for r in chosen] == [4, 2]
    first = predictor.predict(cine)
    assert first.frame is None and "frame" not in first.to_dict()
    assert first.probabilities == pytest.approx(results[0].probabilities, abs=1e-6)
    with pytest.raises(DataError, match="on_error"):
        predict_frames(predictor, [cine], on_error="ignore")


def test_cli_predict_frames(
    cine: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "plain.png"
    Image.fromarray(RNG.integers(0, 256, (20, 20), dtype=np.uint8)).save(png)
    assert main(["predict", str(tiny_checkpoint), str(cine), str(png), "--frames", "all", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(Path(r["path"]).name, r.get("frame")) for r in lines] == [("cine.dcm", i) for i in range(5)] + [
        ("plain.png", None)
    ]
    assert main(["predict", str(tiny_checkpoint), str(cine), "--frames", "1,3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "\tframe 1\t" in out[0] and "\tframe 3\t" in out[1]
    out_csv = tmp_path / "p.csv"
    assert main(["predict", str(tiny_checkpoint), str(cine), "--frames", "2", "--csv", str(out_csv)]) == 0
    rows = list(csv.reader(out_csv.open()))
    assert rows[0][:3] == ["path", "frame", "label"] and rows[1][1] == "2" and len(rows) == 2
    assert main(["predict", str(tiny_checkpoint), str(cine)]) == 0  # no --frames: the first frame, one line
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["predict", str(tiny_checkpoint), str(cine), "--frames", "last"]) == 2
    assert "--frames must be 'all'" in capsys.readouterr().err


def test_audit_reads_dicom(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_dicom(root / "benign" / "a.dcm", RNG.integers(0, 256, (16, 20), dtype=np.uint8))
    write_dicom(root / "malignant" / "b.dcm", RNG.integers(0, 256, (16, 20, 3), dtype=np.uint8), "RGB")
    report = audit(root)
    formats = {(i.path, i.format, i.mode, i.width, i.height) for i in report.images}
    assert formats == {("benign/a.dcm", "DICOM", "MONOCHROME2", 20, 16), ("malignant/b.dcm", "DICOM", "RGB", 20, 16)}


def test_evaluate_explain_and_masks_on_a_dicom_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for label in ("benign", "malignant"):
        for i in range(2):
            pixels = RNG.integers(0, 256, (40, 50), dtype=np.uint8)
            write_dicom(root / label / f"{label} {i}.dcm", pixels, regions=[region(5, 4, 44, 35)])
            mask = np.zeros((32, 40), dtype=np.uint8)  # drawn on the cropped frame, named after the DICOM file
            mask[10:20, 12:25] = 255
            Image.fromarray(mask).save(root / label / f"{label} {i}_mask.png")
    dataset = UltrasoundDataset.from_folder(root)
    assert len(dataset) == 4 and all(p.suffix == ".dcm" for p in dataset.paths)
    assert dataset.load_mask(0).sum() == 10 * 13
    image, _ = dataset[0]
    assert tuple(image.shape) == (1, 32, 40)
    per_image = tmp_path / "predictions.csv"
    assert main(["evaluate", str(tiny_checkpoint), str(root), "--csv", str(per_image)]) == 0
    rows = list(csv.DictReader(per_image.open()))
    assert len(rows) == 4 and all(row["path"].endswith(".dcm") for row in rows)
    out = tmp_path / "explain"
    assert main(["explain", str(tiny_checkpoint), str(root / "benign"), "--out", str(out)]) == 0
    overlays = sorted(p.name for p in out.rglob("*.png"))
    assert len(overlays) == 2 and all(name.startswith("benign ") for name in overlays)
