"""Property-based tests (hypothesis) of the Predictor, the transforms and the splits (issue 5, item 4).

Image sides range over 1…4000 pixels, extreme aspect ratios included (1 × 4000),
with the total pixel count kept small so that the examples stay fast.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from breastus import ConfigError, Predictor, kfold_indices, train_val_test_split
from breastus.models import build_model
from breastus.transforms import Preprocessing, eval_transform, train_transform

CLASSES = ("benign", "malignant", "normal")
MAX_PIXELS = 24_000  # per generated image: big enough for 1 x 4000 and 150 x 150, small enough to be fast


def fast(max_examples: int) -> settings:
    """Bounded example counts keep the whole file at a few seconds."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


PIL_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F")


@st.composite
def sizes(draw: st.DrawFn) -> tuple[int, int]:
    """(height, width), each 1…4000, with height × width ≤ MAX_PIXELS."""
    long_side = draw(st.integers(1, 4000))
    short_side = draw(st.integers(1, max(1, min(4000, MAX_PIXELS // long_side))))
    return (long_side, short_side) if draw(st.booleans()) else (short_side, long_side)


EXTREMES = [(1, 1), (1, 4000), (4000, 1), (2, 4000), (4000, 5), (150, 150)]


def _gray(size: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)


def _pil(gray: np.ndarray, mode: str) -> Image.Image:
    image = Image.fromarray(gray)
    if mode == "I;16":
        return Image.fromarray(gray.astype(np.uint16) * 257)
    if mode in ("I", "F"):
        return image.convert(mode)
    if mode in ("LA", "RGBA"):
        return Image.merge(mode, [*([image] * (len(mode) - 1)), Image.fromarray(255 - gray)])
    return image.convert(mode)


def _numpy(gray: np.ndarray, dtype: str, channels: int, special: bool) -> np.ndarray:
    array = gray if channels == 0 else np.repeat(gray[..., None], channels, axis=2)
    if dtype == "uint8":
        return array
    if dtype == "uint16":
        return array.astype(np.uint16) * 257
    if dtype == "bool":
        return array > 127
    if dtype == "int32":
        return array.astype(np.int32) * 3 - 100  # out-of-range values are clipped
    values = array.astype(dtype) / 255.0
    if special:  # NaN and infinities must still give finite probabilities
        flat = values.reshape(-1)
        flat[:: max(1, flat.size // 3)] = np.nan
        flat[1 :: max(2, flat.size // 2)] = np.inf
    return values


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    model, info = build_model("timm/test_resnet", len(CLASSES), pretrained=None)
    return Predictor(model, info, CLASSES, image_size=32, device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="breastus-properties-") as folder:
        yield Path(folder)


def _assert_probabilities(row: dict[str, float]) -> None:
    values = np.array(list(row.values()))
    assert list(row) == list(CLASSES)
    assert np.isfinite(values).all(), row
    assert (values >= 0).all() and (values <= 1).all(), row
    assert abs(values.sum() - 1) < 1e-6, row


# ------------------------------------------------------------------ the Predictor


@fast(40)
@given(size=sizes(), mode=st.sampled_from(PIL_MODES), seed=st.integers(0, 2**16))
@example(size=(1, 4000), mode="L", seed=0)
@example(size=(4000, 1), mode="I;16", seed=1)
@example(size=(1, 1), mode="RGBA", seed=2)
@example(size=(2, 4000), mode="CMYK", seed=3)
def test_predictor_pil_images_of_any_size_and_mode(
    predictor: Predictor, size: tuple[int, int], mode: str, seed: int
) -> None:
    prediction = predictor.predict(_pil(_gray(size, seed), mode))
    _assert_probabilities(prediction.probabilities)
    assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.__getitem__)


@fast(40)
@given(
    size=sizes(),
    dtype=st.sampled_from(["uint8", "uint16", "float32", "float64", "bool", "int32"]),
    channels=st.sampled_from([0, 1, 3, 4]),
    special=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example(size=(1, 4000), dtype="float64", channels=0, special=True, seed=0)
@example(size=(4000, 1), dtype="uint16", channels=4, special=False, seed=0)
def test_predictor_numpy_arrays_of_any_size_and_dtype(
    predictor: Predictor, size: tuple[int, int], dtype: str, channels: int, special: bool, seed: int
) -> None:
    prediction = predictor.predict(_numpy(_gray(size, seed), dtype, channels, special))
    _assert_probabilities(prediction.probabilities)


FILE_MODES = {
    ".png": ["L", "LA", "P", "RGB", "RGBA", "I;16", "1"],
    ".jpg": ["L", "RGB", "CMYK"],
    ".tif": ["L", "F", "I"],
}


@fast(20)
@given(size=sizes(), suffix=st.sampled_from(sorted(FILE_MODES)), pick=st.integers(0, 100), seed=st.integers(0, 2**16))
@example(size=(1, 4000), suffix=".png", pick=5, seed=0)
def test_predictor_files_of_any_size_and_mode(
    predictor: Predictor, scratch: Path, size: tuple[int, int], suffix: str, pick: int, seed: int
) -> None:
    mode = FILE_MODES[suffix][pick % len(FILE_MODES[suffix])]
    path = scratch / f"scan{suffix}"
    _pil(_gray(size, seed), mode).save(path)
    predictions = predictor.predict([path, path])  # a list: one batch
    for p in predictions:
        _assert_probabilities(p.probabilities)
        assert p.path == str(path)


@fast(15)
@given(st.lists(sizes(), min_size=1, max_size=6), st.integers(0, 2**16))
def test_predictor_batches_of_mixed_sizes(predictor: Predictor, batch: list[tuple[int, int]], seed: int) -> None:
    images = [_gray(size, seed + i) for i, size in enumerate(batch)]
    together = predictor.predict_proba(images)
    assert together.shape == (len(images), len(CLASSES))
    assert np.isfinite(together).all() and np.allclose(together.sum(axis=1), 1, atol=1e-6)
    one = predictor.predict(images[0]).probabilities
    np.testing.assert_allclose(together[0], list(one.values()), atol=1e-5)  # batching changes nothing


# ------------------------------------------------------------------ transforms


PREPROCESSINGS = [
    Preprocessing(),
    Preprocessing(resize="letterbox"),
    Preprocessing(crop=True, intensity="percentile"),
    Preprocessing(crop=True, resize="letterbox", intensity="clahe"),
]


@fast(40)
@given(
    size=sizes(),
    image_size=st.integers(8, 64),
    prep=st.sampled_from(PREPROCESSINGS),
    augmentation=st.sampled_from(["default", "scanner"]),
    seed=st.integers(0, 2**16),
)
@example(size=(1, 4000), image_size=8, prep=PREPROCESSINGS[3], augmentation="scanner", seed=0)
@example(size=(4000, 1), image_size=64, prep=PREPROCESSINGS[1], augmentation="default", seed=0)
@example(size=(1, 1), image_size=32, prep=PREPROCESSINGS[2], augmentation="scanner", seed=0)
def test_transforms_keep_their_contract(
    size: tuple[int, int], image_size: int, prep: Preprocessing, augmentation: str, seed: int
) -> None:
    """uint8 (1, H, W) in, finite float32 (3, S, S) out; eval is deterministic; the input is untouched."""
    image = torch.from_numpy(_gray(size, seed))[None]
    before = image.clone()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    evaluate = eval_transform(image_size, mean, std, prep)
    train = train_transform(image_size, mean, std, prep, augmentation)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    outputs = [evaluate(image), evaluate(image), train(image), evaluate(Image.fromarray(image[0].numpy()))]
    for out in outputs:
        assert out.shape == (3, image_size, image_size)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
    assert torch.equal(outputs[0], outputs[1])
    torch.testing.assert_close(outputs[0], outputs[3])  # a PIL image and its tensor give the same input
    assert torch.equal(image, before)


# ------------------------------------------------------------------ splits


@st.composite
def grouped_labels(draw: st.DrawFn) -> tuple[np.ndarray, list[object]]:
    """Labels of 1-5 classes, very unbalanced ones included, in groups of 1-5 samples."""
    n_classes = draw(st.integers(1, 5))
    weights = draw(st.lists(st.integers(1, 20), min_size=n_classes, max_size=n_classes))
    n_groups = draw(st.integers(2, 40))
    group_labels = draw(
        st.lists(
            st.sampled_from([k for k, w in enumerate(weights) for _ in range(w)]), min_size=n_groups, max_size=n_groups
        )
    )
    group_sizes = draw(st.lists(st.integers(1, 5), min_size=n_groups, max_size=n_groups))
    labels: list[int] = []
    groups: list[object] = []
    for g, (label, size) in enumerate(zip(group_labels, group_sizes, strict=True)):
        labels += [label] * size
        groups += [None if size == 1 and g % 2 else f"patient-{g}"] * size
    order = draw(st.permutations(range(len(labels))))
    return np.array([labels[i] for i in order]), [groups[i] for i in order]


def _n_groups(groups: list[object]) -> int:
    return len({g if g is not None else ("single", i) for i, g in enumerate(groups)})


def _assert_whole(owner: np.ndarray, groups: list[object]) -> None:
    parts: dict[object, set[int]] = defaultdict(set)
    for group, part in zip(groups, owner, strict=True):
        if group is not None:
            parts[group].add(int(part))
    assert all(len(p) == 1 for p in parts.values()), {g: p for g, p in parts.items() if len(p) > 1}


@fast(60)
@given(grouped_labels(), st.integers(2, 8), st.integers(0, 2**31 - 1))
def test_kfold_is_a_partition_keeping_groups_whole(
    data: tuple[np.ndarray, list[object]], n_splits: int, seed: int
) -> None:
    labels, groups = data
    largest = int(np.bincount(labels).max())
    allowed = _n_groups(groups) >= n_splits and largest >= n_splits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn: a class with fewer members than folds
        if not allowed:
            with pytest.raises(ConfigError, match="Cannot make"):
                kfold_indices(labels, n_splits, groups, seed)
            return
        folds = kfold_indices(labels, n_splits, groups, seed)
    assert len(folds) == n_splits
    owner = np.full(len(labels), -1)
    for k, (train, test) in enumerate(folds):
        assert len(test) > 0, f"fold {k} has no test sample"
        assert np.all(owner[test] == -1), "a sample is in two test folds"
        owner[test] = k
        assert not set(train.tolist()) & set(test.tolist())
        assert sorted([*train.tolist(), *test.tolist()]) == list(range(len(labels)))
    assert np.all(owner >= 0), "a sample is in no test fold"
    _assert_whole(owner, groups)


@fast(60)
@given(
    grouped_labels(),
    st.sampled_from([0.0, 0.1, 0.15, 0.2, 0.25, 0.5]),
    st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5]),
    st.integers(0, 2**31 - 1),
)
def test_train_val_test_split_is_a_partition_keeping_groups_whole(
    data: tuple[np.ndarray, list[object]], val_size: float, test_size: float, seed: int
) -> None:
    labels, groups = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            split = train_val_test_split(labels, val_size, test_size, groups, seed)
        except ConfigError as exc:  # only when the data cannot make the requested folds, and it says which
            message = str(exc)
            test_folds = max(2, round(1 / test_size))
            test_possible = _n_groups(groups) >= test_folds and int(np.bincount(labels).max()) >= test_folds
            if message.startswith("Cannot hold out test_size"):
                assert not test_possible, message
                return
            assert message.startswith("Cannot take val_size") and val_size > 0 and test_possible, message
            rest = kfold_indices(labels, test_folds, groups, seed)[0][0]
            val_folds = max(2, round((1 - test_size) / val_size))
            rest_groups = [groups[i] if groups[i] is not None else ("single", i) for i in rest]
            assert _n_groups(rest_groups) < val_folds or int(np.bincount(labels[rest]).max()) < val_folds, message
            return
    owner = np.full(len(labels), -1)
    for k, part in enumerate((split.train, split.val, split.test)):
        assert part.dtype == np.int64
        assert np.all(owner[part] == -1), "a sample is in two parts"
        owner[part] = k
    assert np.all(owner >= 0), "a sample is in no part"
    _assert_whole(owner, groups)
    assert len(split.train) > 0 and len(split.test) > 0
    assert (len(split.val) > 0) == (val_size > 0)
