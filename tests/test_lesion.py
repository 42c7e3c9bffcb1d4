"""Lesion boxes: lesion_box from masks and crop_to_lesion on images and arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from breastus import ConfigError, UltrasoundDataset
from breastus.transforms import crop_to_lesion, lesion_box


def test_lesion_box_is_half_open_and_none_for_an_empty_mask() -> None:
    mask = np.zeros((50, 80), dtype=np.uint8)
    assert lesion_box(mask) is None
    mask[10:20, 30:35] = 255
    mask[25, 40] = 1  # a second, one-pixel lesion widens the box
    assert lesion_box(mask) == (10, 26, 30, 41)
    with pytest.raises(ConfigError, match=r"\(H, W\) mask"):
        lesion_box(np.zeros((2, 5, 5)))


def test_crop_to_lesion_widens_by_the_margin_and_clips_to_the_frame() -> None:
    frame = np.arange(100 * 200, dtype=np.int64).reshape(100, 200)
    crop = crop_to_lesion(frame, (40, 60, 60, 100))  # 20 x 40 box, 10 px margin
    assert crop.shape == (40, 60)
    assert crop[0, 0] == frame[30, 50] and crop[-1, -1] == frame[69, 109]
    edge = crop_to_lesion(frame, (0, 40, 180, 200), margin=0.5)  # clipped at the top and right
    assert edge.shape == (60, 40) and edge[0, 0] == frame[0, 160]
    assert crop_to_lesion(frame, (40, 60, 60, 100), margin=0.0).shape == (20, 40)


def test_crop_to_lesion_gives_the_same_pixels_for_images_and_arrays() -> None:
    array = np.random.default_rng(0).integers(0, 256, (90, 120), dtype=np.uint8)
    from_image = crop_to_lesion(Image.fromarray(array), (30, 50, 20, 70))
    assert isinstance(from_image, Image.Image)
    assert np.array_equal(np.asarray(from_image), crop_to_lesion(array, (30, 50, 20, 70)))


@pytest.mark.parametrize(
    ("box", "margin", "match"),
    [
        ((10, 10, 0, 5), 0.25, "empty or outside"),
        ((0, 5, 30, 20), 0.25, "empty or outside"),
        ((0, 50, 0, 5), 0.25, "empty or outside the 40x30 image"),
        ((0, 5, 0, 5), -0.1, "margin must be >= 0"),
    ],
)
def test_crop_to_lesion_rejects_bad_boxes(box: tuple[int, int, int, int], margin: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        crop_to_lesion(np.zeros((30, 40), np.uint8), box, margin)


@given(
    height=st.integers(1, 64),
    width=st.integers(1, 64),
    data=st.data(),
    margin=st.floats(0, 2, allow_nan=False),
)
def test_the_crop_always_contains_the_box(height: int, width: int, data: st.DataObject, margin: float) -> None:
    top = data.draw(st.integers(0, height - 1))
    bottom = data.draw(st.integers(top + 1, height))
    left = data.draw(st.integers(0, width - 1))
    right = data.draw(st.integers(left + 1, width))
    frame = np.zeros((height, width), dtype=np.int8)
    frame[top:bottom, left:right] = 1
    crop = crop_to_lesion(frame, (top, bottom, left, right), margin)
    assert crop.sum() == (bottom - top) * (right - left)  # every box pixel is in the crop
    assert crop.shape[0] <= height and crop.shape[1] <= width


@pytest.mark.busi
def test_busi_lesions_stay_whole_in_their_crops(busi_dataset: UltrasoundDataset) -> None:
    checked = 0
    for index in range(0, len(busi_dataset), 37):
        mask = busi_dataset.load_mask(index)
        box = None if mask is None else lesion_box(mask)
        if box is None:
            continue
        assert mask is not None
        cropped = crop_to_lesion(mask, box)
        assert cropped.sum() == mask.sum()
        image = crop_to_lesion(busi_dataset.load_image(index), box)
        assert image.size == (cropped.shape[1], cropped.shape[0])
        checked += 1
    assert checked >= 15
