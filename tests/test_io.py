"""Image and mask decoding: every PIL mode becomes 8-bit grayscale, bad files raise DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from breastus import DataError
from breastus.data import load_image, load_mask
from breastus.data._io import to_grayscale

W, H = 30, 20


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def _pixels(path: Path) -> np.ndarray:
    image = load_image(path)
    assert image.mode == "L"
    assert image.size == (W, H)
    return np.asarray(image)


# ------------------------------------------------------------------ modes


def test_mode_l_is_unchanged(tmp_path: Path) -> None:
    array = np.arange(W * H, dtype=np.uint8).reshape(H, W)
    path = _save(Image.fromarray(array, mode="L"), tmp_path / "l.png")
    np.testing.assert_array_equal(_pixels(path), array)


def test_mode_rgb_uses_luma(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (W, H), (255, 0, 0)), tmp_path / "red.png")
    # ITU-R 601-2: L = 0.299 R + 0.587 G + 0.114 B
    assert np.all(_pixels(path) == 76)


def test_mode_rgba_is_composited_on_black(tmp_path: Path) -> None:
    path = _save(Image.new("RGBA", (W, H), (255, 255, 255, 128)), tmp_path / "rgba.png")
    assert np.all(np.abs(_pixels(path).astype(int) - 128) <= 1)


def test_mode_la_opaque_and_transparent(tmp_path: Path) -> None:
    opaque = _save(Image.new("LA", (W, H), (200, 255)), tmp_path / "opaque.png")
    clear = _save(Image.new("LA", (W, H), (200, 0)), tmp_path / "clear.png")
    assert Image.open(opaque).mode == "LA"
    assert np.all(_pixels(opaque) == 200)
    assert np.all(_pixels(clear) == 0)


def test_mode_p_uses_the_palette(tmp_path: Path) -> None:
    image = Image.new("P", (W, H))
    image.putpalette([0, 0, 0] + [90, 90, 90] * 255)
    image.paste(1, (0, 0, W // 2, H))
    path = _save(image, tmp_path / "p.png")
    assert Image.open(path).mode == "P"
    pixels = _pixels(path)
    assert np.all(pixels[:, : W // 2] == 90)
    assert np.all(pixels[:, W // 2 :] == 0)


def test_mode_i16_is_scaled_from_the_16_bit_range(tmp_path: Path) -> None:
    array = np.zeros((H, W), dtype=np.uint16)
    array[:, 10:20] = 257 * 128
    array[:, 20:] = 65535
    path = _save(Image.fromarray(array), tmp_path / "i16.png")
    assert Image.open(path).mode == "I;16"
    pixels = _pixels(path)
    assert np.all(pixels[:, :10] == 0)
    assert np.all(pixels[:, 10:20] == 128)
    assert np.all(pixels[:, 20:] == 255)


def test_mode_1_bit(tmp_path: Path) -> None:
    image = Image.new("1", (W, H), 0)
    image.paste(1, (0, 0, 5, H))
    path = _save(image, tmp_path / "one.png")
    assert Image.open(path).mode == "1"
    pixels = _pixels(path)
    assert np.all(pixels[:, :5] == 255)
    assert np.all(pixels[:, 5:] == 0)


@pytest.mark.parametrize(("cmyk", "gray"), [((0, 0, 0, 0), 255), ((0, 0, 0, 255), 0)])
def test_mode_cmyk_jpeg(tmp_path: Path, cmyk: tuple[int, int, int, int], gray: int) -> None:
    path = _save(Image.new("CMYK", (W, H), cmyk), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    assert np.all(np.abs(_pixels(path).astype(int) - gray) <= 2)


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".jpeg"])
def test_other_formats(tmp_path: Path, suffix: str) -> None:
    array = np.full((H, W), 140, dtype=np.uint8)
    path = _save(Image.fromarray(array), tmp_path / f"x{suffix}")
    assert np.all(np.abs(_pixels(path).astype(int) - 140) <= 2)


def test_mode_i_and_f_via_to_grayscale() -> None:
    small = Image.fromarray(np.full((H, W), 100, dtype=np.int32), mode="I")
    assert np.all(np.asarray(to_grayscale(small)) == 100)  # values already in 0..255 are kept
    wide = Image.fromarray(np.full((H, W), 65535, dtype=np.int32), mode="I")
    assert np.all(np.asarray(to_grayscale(wide)) == 255)
    floats = Image.fromarray(np.full((H, W), 300.0, dtype=np.float32), mode="F")
    assert np.all(np.asarray(to_grayscale(floats)) == 255)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_equal_rgb_channels_and_16_bit_copies_give_the_same_gray(gray: np.ndarray) -> None:
    rgb = Image.fromarray(np.repeat(gray[..., None], 3, axis=2), mode="RGB")
    np.testing.assert_array_equal(np.asarray(to_grayscale(rgb)), gray)
    i16 = Image.fromarray(gray.astype(np.uint16) * 257)
    np.testing.assert_array_equal(np.asarray(to_grayscale(i16)), gray)


# ------------------------------------------------------------------ EXIF orientation


@pytest.mark.parametrize(
    ("orientation", "size", "marker"),
    [
        (1, (40, 20), (0, 0)),  # (row, column) where the top-left marker ends up
        (3, (40, 20), (19, 39)),  # rotated 180°
        (6, (20, 40), (0, 19)),  # rotated 90° clockwise for display
        (8, (20, 40), (39, 0)),  # rotated 90° counter-clockwise
    ],
)
def test_exif_orientation_is_applied(
    tmp_path: Path, orientation: int, size: tuple[int, int], marker: tuple[int, int]
) -> None:
    array = np.zeros((20, 40), dtype=np.uint8)
    array[:4, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=100)
    image = load_image(path)
    assert image.size == size
    pixels = np.asarray(image)
    row, col = marker
    assert pixels[row, col] > 200
    assert int((pixels > 128).sum()) == pytest.approx(16, abs=4)


# ------------------------------------------------------------------ broken files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.png"):
        load_image(tmp_path / "nothere.png")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(DataError, match=r"empty\.png.*0 bytes"):
        load_image(path)


def test_text_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n" * 10)
    with pytest.raises(DataError, match=r"notes\.png.*not an image"):
        load_image(path)


def test_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png"):
        load_image(path)


def test_corrupt_jpeg_body(tmp_path: Path) -> None:
    path = tmp_path / "bad.jpg"
    Image.new("L", (64, 64), 100).save(path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[:200]))
    with pytest.raises(DataError, match=r"bad\.jpg"):
        load_image(path)


def test_data_error_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_image(tmp_path / "missing.png")


# ------------------------------------------------------------------ masks


def test_load_mask_merges_and_resizes(tmp_path: Path) -> None:
    first = np.zeros((H, W), dtype=np.uint8)
    first[2:6, 2:6] = 255
    second = np.zeros((H * 2, W * 2), dtype=np.uint8)  # stored at twice the size
    second[20:30, 40:50] = 1  # any non-zero value is lesion
    Image.fromarray(first).save(tmp_path / "a_mask.png")
    Image.fromarray(second).save(tmp_path / "a_mask_1.png")
    merged = load_mask([tmp_path / "a_mask.png", tmp_path / "a_mask_1.png"], (W, H))
    assert merged.dtype == np.bool_
    assert merged.shape == (H, W)
    expected = np.zeros((H, W), dtype=bool)
    expected[2:6, 2:6] = True
    expected[10:15, 20:25] = True
    np.testing.assert_array_equal(merged, expected)


def test_load_mask_without_files_is_empty() -> None:
    mask = load_mask([], (W, H))
    assert mask.shape == (H, W)
    assert not mask.any()


def test_load_mask_names_a_bad_mask_file(tmp_path: Path) -> None:
    (tmp_path / "x_mask.png").write_text("nope")
    with pytest.raises(DataError, match=r"x_mask\.png"):
        load_mask([tmp_path / "x_mask.png"], (W, H))


@pytest.mark.busi
def test_busi_multi_mask_images_are_the_union_of_their_masks(busi_dataset) -> None:  # type: ignore[no-untyped-def]
    multi = [i for i, masks in enumerate(busi_dataset.mask_paths) if len(masks) > 1]
    assert len(multi) == 17
    nested = []
    for index in multi:
        size = busi_dataset.load_image(index).size
        masks = busi_dataset.mask_paths[index]
        singles = [load_mask([m], size) for m in masks]
        merged = busi_dataset.load_mask(index)
        assert merged is not None
        assert merged.shape == (size[1], size[0])
        np.testing.assert_array_equal(merged, np.logical_or.reduce(singles))
        largest, total = max(int(s.sum()) for s in singles), sum(int(s.sum()) for s in singles)
        assert largest <= merged.sum() <= total
        if merged.sum() == largest:
            nested.append(busi_dataset.paths[index].name)
    # in every multi-lesion image but one the second mask adds pixels; in benign (58) it lies inside the first
    assert nested == ["benign (58).png"]
