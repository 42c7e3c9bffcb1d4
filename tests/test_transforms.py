"""Train and eval presets: shapes, determinism, normalisation, grayscale handling, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from breastus import ConfigError, eval_transform, train_transform

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _gray(width: int, height: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(1, height, width), dtype=np.uint8))


@pytest.mark.parametrize("make", [eval_transform, train_transform])
@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize(("width", "height"), [(17, 23), (64, 64), (500, 380)])
def test_output_shape_and_dtype(make, image_size: int, width: int, height: int) -> None:  # type: ignore[no-untyped-def]
    transform = make(image_size, MEAN, STD)
    out = transform(_gray(width, height))
    assert out.shape == (3, image_size, image_size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("make", [eval_transform, train_transform])
def test_pil_input_of_any_mode(make) -> None:  # type: ignore[no-untyped-def]
    transform = make(32, MEAN, STD)
    for image in (Image.new("L", (40, 30), 90), Image.new("RGB", (40, 30), (90, 90, 90))):
        out = transform(image)
        assert out.shape == (3, 32, 32)


def test_eval_is_deterministic() -> None:
    transform = eval_transform(48, MEAN, STD)
    image = _gray(100, 80)
    torch.manual_seed(0)
    first = transform(image)
    torch.manual_seed(123)
    assert torch.equal(first, transform(image))


def test_train_is_random_but_seedable() -> None:
    transform = train_transform(48, MEAN, STD)
    image = _gray(100, 80)
    torch.manual_seed(5)
    a = transform(image)
    b = transform(image)
    torch.manual_seed(5)
    c = transform(image)
    assert not torch.equal(a, b)
    assert torch.equal(a, c)


def test_normalisation_uses_the_given_mean_and_std() -> None:
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    out = eval_transform(16, mean, std)(torch.full((1, 40, 30), 153, dtype=torch.uint8))
    for c in range(3):
        expected = (153 / 255 - mean[c]) / std[c]
        torch.testing.assert_close(out[c], torch.full((16, 16), expected), atol=1e-5, rtol=0)


def test_grayscale_becomes_three_equal_channels() -> None:
    out = eval_transform(32, MEAN, STD)(_gray(50, 40))
    restored = out * torch.tensor(STD)[:, None, None] + torch.tensor(MEAN)[:, None, None]
    torch.testing.assert_close(restored[0], restored[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(restored[0], restored[2], atol=1e-5, rtol=0)


def test_eval_matches_a_plain_resize() -> None:
    image = _gray(90, 70)
    out = eval_transform(24, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(image)
    resized = TF.resize(image, [24, 24], antialias=True).float() / 255
    torch.testing.assert_close(out[0], resized[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("make", [eval_transform, train_transform])
def test_transforms_pickle(make) -> None:  # type: ignore[no-untyped-def]
    transform = make(32, MEAN, STD)
    clone = pickle.loads(pickle.dumps(transform))
    image = _gray(60, 50)
    torch.manual_seed(1)
    expected = transform(image)
    torch.manual_seed(1)
    assert torch.equal(clone(image), expected)


@pytest.mark.parametrize("make", [eval_transform, train_transform])
@pytest.mark.parametrize("bad", [4, 0, 32.5])
def test_bad_image_size(make, bad: object) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="image_size"):
        make(bad, MEAN, STD)
