"""The faster mask post-processing gives exactly the masks of the SciPy computation it replaced."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from breastus._errors import ConfigError
from breastus.prediction._lesion import fill_holes, postprocess_mask


def reference(probabilities: np.ndarray, cut: float = 0.5, min_component_fraction: float = 0.1) -> np.ndarray:
    """The previous implementation: ``binary_fill_holes`` on the whole map, then ``np.isin`` of the kept labels."""
    mask = ndimage.binary_fill_holes(np.asarray(probabilities) >= cut)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count > 1 and min_component_fraction > 0:
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= min_component_fraction * sizes.max()) + 1
        mask = np.isin(labels, keep)
    return np.asarray(mask, dtype=bool)


def blobs(seed: int, height: int, width: int, count: int, noise: float) -> np.ndarray:
    """A probability map with ``count`` soft discs (some hollow, some touching the border) and speckle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    prob = noise * rng.random((height, width))
    for _ in range(count):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        radius = rng.uniform(1, max(2.0, min(height, width) / 3))
        distance = np.hypot(yy - cy, xx - cx)
        prob = np.maximum(prob, 1 / (1 + np.exp(distance - radius)))
        if rng.random() < 0.5:  # a hole (a ring), sometimes open to the outside
            prob[distance < radius / 2] = 0.1
    return np.clip(prob, 0, 1)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(1, 60),
    width=st.integers(1, 60),
    count=st.integers(0, 6),
    noise=st.sampled_from([0.0, 0.55, 0.8]),
    cut=st.sampled_from([0.3, 0.5, 0.9, 1.0]),
    fraction=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
)
def test_postprocess_equals_the_old_computation(
    seed: int, height: int, width: int, count: int, noise: float, cut: float, fraction: float
) -> None:
    prob = blobs(seed, height, width, count, noise)
    got = postprocess_mask(prob, cut, fraction)
    assert got.dtype == bool and got.shape == prob.shape
    assert np.array_equal(got, reference(prob, cut, fraction))


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    density=st.floats(0.0, 1.0),
)
def test_fill_holes_equals_scipy_on_random_masks(seed: int, height: int, width: int, density: float) -> None:
    mask = np.random.default_rng(seed).random((height, width)) < density
    assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_known_cases_on_a_busi_sized_map() -> None:
    prob = np.zeros((560, 760))
    prob[100:300, 200:400] = 0.9
    prob[150:200, 250:300] = 0.0  # a closed hole: filled
    prob[0:40, 0:40] = 0.9
    prob[10:20, 0:10] = 0.0  # a notch open to the border: not a hole
    prob[500, 700] = 0.9  # a speck: dropped
    got = postprocess_mask(prob, 0.5, 0.01)
    assert np.array_equal(got, reference(prob, 0.5, 0.01))
    assert got[175, 275] and not got[15, 5] and not got[500, 700]
    assert int(got.sum()) == 200 * 200 + 40 * 40 - 100
    assert not postprocess_mask(np.zeros((7, 9))).any()
    with pytest.raises(ConfigError, match="2-D"):
        fill_holes(np.zeros((2, 3, 4), dtype=bool))
