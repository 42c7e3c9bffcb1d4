"""The data pipeline: the decode-once image cache (memory and disk) and batch augmentation."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from breastus import ConfigError, DataError, Predictor, TrainConfig, Trainer, UltrasoundDataset
from breastus.data import ImageCache, load_image
from breastus.models import Checkpoint, build_model
from breastus.transforms import BatchAugment, eval_transform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_png(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8), mode="L").save(path)
    return path


def reference(path: Path, size: int) -> torch.Tensor:
    resized: torch.Tensor = TF.resize(TF.pil_to_tensor(load_image(path)), [size, size], antialias=True)
    return resized


def rewrite(path: Path, seed: int, size: tuple[int, int]) -> None:
    """Replace the file's content and move its modification time on, as an editor saving it would."""
    before = path.stat().st_mtime_ns
    write_png(path, seed, size)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_memory_cache_decodes_once_and_rereads_a_changed_file(tmp_path: Path) -> None:
    image = write_png(tmp_path / "a.png", seed=1)
    cache = ImageCache(16)
    first = cache.get(image)
    assert first.shape == (1, 16, 16) and first.dtype == torch.uint8
    assert cache.get(image) is first and cache.decoded == 1

    rewrite(image, seed=2, size=(40, 30))
    second = cache.get(image)
    assert cache.decoded == 2
    assert not torch.equal(first, second)
    assert torch.equal(second, reference(image, 16))
    assert len(cache) == 1  # the stale entry of the old content is dropped


def test_disk_cache_is_shared_keyed_by_content_and_rereads_a_changed_file(tmp_path: Path) -> None:
    image = write_png(tmp_path / "a.png", seed=1)
    store = tmp_path / "store"
    writer = ImageCache(16, directory=store)
    stored = writer.get(image)
    entries = sorted(store.glob("*.safetensors"))
    assert len(entries) == 1 and writer.decoded == 1

    reader = ImageCache(16, directory=store)  # another run or process
    assert torch.equal(reader.get(image), stored)
    assert (reader.decoded, reader.disk_hits) == (0, 1)

    renamed = image.rename(tmp_path / "renamed.png")  # same bytes, other name: still a hit
    assert torch.equal(ImageCache(16, directory=store).get(renamed), stored)

    rewrite(renamed, seed=2, size=(40, 30))
    fresh = ImageCache(16, directory=store)
    changed = fresh.get(renamed)
    assert (fresh.decoded, fresh.disk_hits) == (1, 0)
    assert torch.equal(changed, reference(renamed, 16)) and not torch.equal(changed, stored)
    assert len(list(store.glob("*.safetensors"))) == 2

    other_size = ImageCache(24, directory=store).get(renamed)
    assert other_size.shape == (1, 24, 24)
    assert len(list(store.glob("*.safetensors"))) == 3


def test_damaged_disk_entry_is_decoded_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    image = write_png(tmp_path / "a.png", seed=3)
    store = tmp_path / "store"
    expected = ImageCache(16, directory=store).get(image)
    (entry,) = store.glob("*.safetensors")
    entry.write_bytes(b"not a safetensors file")
    cache = ImageCache(16, directory=store)
    with caplog.at_level(logging.WARNING):
        assert torch.equal(cache.get(image), expected)
    assert cache.decoded == 1 and "Ignoring unreadable image cache entry" in caplog.text
    assert torch.equal(ImageCache(16, directory=store).get(image), expected)  # rewritten


def test_cache_errors_and_pickling(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'size' parameter of ImageCache"):
        ImageCache(0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create its directory"):
        ImageCache(8, directory=blocker / "sub")
    with pytest.raises(DataError, match="does not exist"):
        ImageCache(8).get(tmp_path / "missing.png")
    cache = ImageCache(8)
    image = write_png(tmp_path / "a.png", seed=4)
    cache.get(image)
    copy = pickle.loads(pickle.dumps(cache))  # DataLoader workers started with "spawn" pickle the dataset
    assert len(copy) == 1 and torch.equal(copy.get(image), cache.get(image)) and copy.decoded == 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(1, 70),
    height=st.integers(1, 70),
    size=st.integers(8, 40),
    seed=st.integers(0, 2**16),
)
def test_cached_pixels_equal_a_fresh_decode(tmp_path: Path, width: int, height: int, size: int, seed: int) -> None:
    image = write_png(tmp_path / f"img-{seed}-{width}x{height}.png", seed, (width, height))
    expected = reference(image, size)
    assert torch.equal(ImageCache(size).get(image), expected)
    assert torch.equal(ImageCache(size, directory=tmp_path / "store").get(image), expected)


@pytest.mark.busi
def test_cached_and_uncached_evaluation_give_identical_tensors(busi_root: Path, tmp_path: Path) -> None:
    data = UltrasoundDataset.from_folder(busi_root)
    subset = data.subset(list(range(0, len(data), 130)))  # all three classes
    transform = eval_transform(64, MEAN, STD)
    plain = subset.with_transform(transform)
    in_memory = plain.with_cache(ImageCache(64))
    on_disk = plain.with_cache(ImageCache(64, directory=tmp_path / "store"))
    model, info = build_model("resnet18", 3, None)
    checkpoint = Checkpoint(info, data.class_names, 64, model.state_dict())
    predictor = Predictor.from_loaded(checkpoint, device="cpu")
    for i in range(len(subset)):
        expected, label = plain[i]
        assert expected.shape == (3, 64, 64) and expected.dtype == torch.float32
        assert torch.equal(in_memory[i][0], expected) and in_memory[i][1] == label
        assert torch.equal(on_disk[i][0], expected)
        assert torch.equal(predictor.preprocess(subset.paths[i]), expected)


def test_batch_augment_shapes_determinism_and_statistics() -> None:
    augment = BatchAugment(32, MEAN, STD)
    images = torch.full((6, 1, 40, 40), 128, dtype=torch.uint8)
    first = augment(images, torch.Generator().manual_seed(0))
    again = augment(images, torch.Generator().manual_seed(0))
    other = augment(images, torch.Generator().manual_seed(1))
    assert first.shape == (6, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    # Each image gets its own parameters, and pixels stay inside the normalised [0, 1] range.
    assert len({round(float(first[i].mean()), 5) for i in range(6)}) > 1
    low = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    high = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    per_channel = first.permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.all(per_channel.min(dim=1).values >= low - 1e-5)
    assert torch.all(per_channel.max(dim=1).values <= high + 1e-5)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        augment(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_batch_augment_without_change_is_the_identity() -> None:
    """With the crop, flip, warp and jitter at their neutral values the sampling grid reproduces the image."""
    augment = BatchAugment(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    augment.affine_matrices = lambda n, generator=None: theta.expand(n, 2, 3)  # type: ignore[method-assign]
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    out = augment(images, generator)
    colour = torch.rand(2, 2, generator=torch.Generator().manual_seed(0))
    brightness = (0.8 + 0.4 * colour[:, 0]).view(2, 1, 1, 1)
    contrast = (0.8 + 0.4 * colour[:, 1]).view(2, 1, 1, 1)
    pixels = (images.float() / 255 * brightness).clamp(0, 1)
    mean = pixels.mean(dim=(2, 3), keepdim=True)
    expected = ((pixels - mean) * contrast + mean).clamp(0, 1).expand(2, 3, 16, 16)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_trainer_with_batch_augment_and_disk_cache_is_deterministic(tiny_folder: Path, tmp_path: Path) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    train, val = data.subset(range(0, 30, 2)), data.subset(range(1, 30, 2))
    config = TrainConfig(
        pretrained="none",
        image_size=32,
        epochs=1,
        batch_size=4,
        device="cpu",
        progress=False,
        batch_augment=True,
        cache_dir=str(tmp_path / "store"),
    )
    first = Trainer(config, tmp_path / "a").fit(train, val).records[0]
    second = Trainer(config, tmp_path / "b").fit(train, val).records[0]
    assert first.train_loss == second.train_loss and first.val_loss == second.val_loss
    assert len(list((tmp_path / "store").glob("*.safetensors"))) == len(data)
    with pytest.raises(ConfigError, match="batch_augment=True needs cache_images=True"):
        TrainConfig(batch_augment=True, cache_images=False)
