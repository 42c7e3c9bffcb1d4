"""Exact and near-duplicate detection (pixel SHA-256 and perceptual hashes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from breastus.data import duplicate_groups
from breastus.data._duplicates import ImageFingerprint, duplicate_components, fingerprint, hamming_matrix


def _scan(seed: int, size: tuple[int, int] = (120, 96)) -> np.ndarray:
    """A smooth random 'scan': low-frequency structure, so perceptual hashes are stable."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, size=(6, 8), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC))


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    base = _scan(1)
    Image.fromarray(base).save(paths.setdefault("a", tmp_path / "a.png"))
    Image.fromarray(base).save(paths.setdefault("a_bmp", tmp_path / "a_copy.bmp"))  # same pixels, other bytes
    Image.fromarray(base).save(paths.setdefault("a_jpg", tmp_path / "a_resaved.jpg"), quality=80)  # near copy
    Image.fromarray(_scan(2)).save(paths.setdefault("b", tmp_path / "b.png"))
    Image.fromarray(_scan(3)).save(paths.setdefault("c", tmp_path / "c.png"))
    return paths


def test_fingerprint_exact_copy_in_another_format(images: dict[str, Path]) -> None:
    a, copy = fingerprint(images["a"]), fingerprint(images["a_bmp"])
    assert images["a"].read_bytes() != images["a_bmp"].read_bytes()
    assert a.pixel_sha256 == copy.pixel_sha256
    assert a.phash == copy.phash
    assert a.size == (120, 96)


def test_groups_join_exact_and_near_copies_only(images: dict[str, Path]) -> None:
    order = ["a", "b", "a_bmp", "c", "a_jpg"]
    groups = duplicate_groups([images[k] for k in order])
    assert groups[0] == groups[2] == groups[4]
    assert len({groups[0], groups[1], groups[3]}) == 3
    assert groups == ["dup-0", "dup-1", "dup-0", "dup-2", "dup-0"]  # numbered in order of first appearance


def test_threshold_minus_one_joins_exact_copies_only(images: dict[str, Path]) -> None:
    fps = [fingerprint(images[k]) for k in ("a", "a_bmp", "a_jpg")]
    assert fps[0].pixel_sha256 != fps[2].pixel_sha256  # the JPEG changed the pixels a little
    assert duplicate_components(fps, threshold=-1).tolist() == [0, 0, 1]
    assert duplicate_components(fps).tolist() == [0, 0, 0]


def test_near_duplicate_chains_are_one_group() -> None:
    def fp(h: int) -> ImageFingerprint:
        return ImageFingerprint(pixel_sha256=str(h), phash=h, size=(1, 1))

    # 0 -> 0b111 (3 bits) -> 0b111111 (3 more bits): a chain; 0b111111 is 6 bits from 0
    chain = [fp(0), fp(0b111), fp(0b111111), fp(2**64 - 1)]
    assert duplicate_components(chain, threshold=3).tolist() == [0, 0, 0, 1]
    assert duplicate_components(chain, threshold=2).tolist() == [0, 1, 2, 3]
    assert duplicate_components([]).tolist() == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=12))
def test_hamming_matrix_matches_popcount(hashes: list[int]) -> None:
    distances = hamming_matrix(hashes)
    expected = np.array([[bin(a ^ b).count("1") for b in hashes] for a in hashes])
    np.testing.assert_array_equal(distances, expected)


@pytest.mark.busi
def test_busi_known_duplicates(busi_root: Path) -> None:
    files = [
        busi_root / "benign" / "benign (433).png",
        busi_root / "malignant" / "malignant (145).png",
        busi_root / "benign" / "benign (1).png",
        busi_root / "benign" / "benign (318).png",
        busi_root / "benign" / "benign (2).png",
    ]
    fps = [fingerprint(f) for f in files]
    assert fps[0].pixel_sha256 == fps[1].pixel_sha256  # the same picture under two classes
    distances = hamming_matrix([f.phash for f in fps])
    assert distances[2, 3] <= 6  # re-saved copy of benign (1)
    assert distances[2, 4] > 6  # a different image
    assert duplicate_groups(files) == ["dup-0", "dup-0", "dup-1", "dup-1", "dup-2"]
