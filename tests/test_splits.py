"""Seeded, stratified, group-respecting splits: properties on random inputs and checks on BUSI."""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from breastus import ConfigError, DataError, UltrasoundDataset, kfold_indices, train_val_test_split
from breastus.data import Split


def _owner(parts: dict[str, np.ndarray], n: int) -> np.ndarray:
    owner = np.full(n, -1)
    for k, idx in enumerate(parts.values()):
        assert np.all(owner[idx] == -1), "a sample is in two parts"
        owner[idx] = k
    return owner


def _assert_partition(split: Split, n: int) -> np.ndarray:
    parts = {"train": split.train, "val": split.val, "test": split.test}
    for idx in parts.values():
        assert idx.dtype == np.int64
        assert len(np.unique(idx)) == len(idx)
    owner = _owner(parts, n)
    assert np.all(owner >= 0), "a sample is in no part"
    return owner


def _assert_groups_whole(owner: np.ndarray, groups: list[object]) -> None:
    where: dict[object, set[int]] = defaultdict(set)
    for g, part in zip(groups, owner, strict=True):
        if g is not None:
            where[g].add(int(part))
    straddling = {g: parts for g, parts in where.items() if len(parts) > 1}
    assert not straddling, f"groups in several parts: {straddling}"


@st.composite
def labelled_groups(draw: st.DrawFn) -> tuple[list[int], list[object]]:
    n_groups = draw(st.integers(12, 40))
    group_labels = draw(st.lists(st.integers(0, 2), min_size=n_groups, max_size=n_groups))
    sizes = draw(st.lists(st.integers(1, 4), min_size=n_groups, max_size=n_groups))
    labels: list[int] = []
    groups: list[object] = []
    for g, (label, size) in enumerate(zip(group_labels, sizes, strict=True)):
        labels += [label] * size
        groups += [None if size == 1 and g % 3 == 0 else f"g{g}"] * size  # None: a group of one
    order = draw(st.permutations(range(len(labels))))
    return [labels[i] for i in order], [groups[i] for i in order]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labelled_groups(), st.integers(0, 2**31 - 1), st.integers(2, 5))
def test_kfold_properties(data: tuple[list[int], list[object]], seed: int, n_splits: int) -> None:
    labels, groups = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn: "least populated class has only 1 member"
        folds = kfold_indices(labels, n_splits, groups, seed)
        again = kfold_indices(labels, n_splits, groups, seed)
    assert len(folds) == n_splits
    n = len(labels)
    tests = np.concatenate([test for _, test in folds])
    assert sorted(tests.tolist()) == list(range(n)), "test folds must cover every sample exactly once"
    owner = np.empty(n, dtype=np.int64)
    for k, (train, test) in enumerate(folds):
        assert set(train.tolist()).isdisjoint(test.tolist())
        assert len(train) + len(test) == n
        assert np.all(np.diff(test) > 0)
        owner[test] = k
    _assert_groups_whole(owner, groups)
    for (a_train, a_test), (b_train, b_test) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(a_train, b_train)
        np.testing.assert_array_equal(a_test, b_test)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labelled_groups(), st.integers(0, 2**31 - 1))
def test_train_val_test_split_properties(data: tuple[list[int], list[object]], seed: int) -> None:
    labels, groups = data
    assume(len({g if g is not None else i for i, g in enumerate(groups)}) >= 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        split = train_val_test_split(labels, val_size=0.2, test_size=0.25, groups=groups, seed=seed)
        again = train_val_test_split(labels, val_size=0.2, test_size=0.25, groups=groups, seed=seed)
    owner = _assert_partition(split, len(labels))
    _assert_groups_whole(owner, groups)
    assert len(split.train) > 0 and len(split.val) > 0 and len(split.test) > 0
    assert split.to_dict() == again.to_dict()


def test_without_groups_every_sample_is_its_own_group() -> None:
    labels = [0] * 50 + [1] * 30 + [2] * 20
    split = train_val_test_split(labels, seed=3)
    _assert_partition(split, 100)
    assert (len(split.train), len(split.val), len(split.test)) == (70, 10, 20)
    for part, fraction in ((split.test, 0.2), (split.val, 0.1)):
        counts = np.bincount(np.asarray(labels)[part], minlength=3)
        np.testing.assert_allclose(counts, np.array([50, 30, 20]) * fraction, atol=1)


def test_val_size_zero_gives_an_empty_validation_part() -> None:
    split = train_val_test_split([0, 1] * 20, val_size=0, test_size=0.25, seed=0)
    assert len(split.val) == 0
    assert len(split.train) + len(split.test) == 40


def test_seeds_change_the_split() -> None:
    labels = [0, 1, 2] * 30
    a = train_val_test_split(labels, seed=0)
    b = train_val_test_split(labels, seed=1)
    assert a.test.tolist() != b.test.tolist()


def test_too_few_groups() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    with pytest.raises(ConfigError, match=r"5 folds from 3 group"):
        kfold_indices(labels, 5, groups=["a", "a", "b", "b", "c", "c"])
    with pytest.raises(ConfigError, match="group"):
        train_val_test_split(labels * 3, groups=["a", "b", "c", "d"] * 4 + ["a", "b"])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"test_size": 0.0}, "test_size"), ({"test_size": 0.7}, "test_size"), ({"val_size": -0.1}, "val_size")],
)
def test_bad_fractions(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        train_val_test_split([0, 1] * 30, **kwargs)  # type: ignore[arg-type]


def test_bad_n_splits_and_group_length() -> None:
    with pytest.raises(ConfigError, match="n_splits"):
        kfold_indices([0, 1, 0, 1], 1)
    with pytest.raises(DataError, match="one entry per sample"):
        kfold_indices([0, 1, 0, 1], 2, groups=["a", "b"])


# ------------------------------------------------------------------ the real BUSI


def _class_fractions(labels: np.ndarray, part: np.ndarray) -> np.ndarray:
    return np.bincount(labels[part], minlength=3) / np.bincount(labels, minlength=3)


@pytest.mark.busi
@pytest.mark.slow
def test_busi_split_with_duplicate_groups(busi_dataset: UltrasoundDataset, busi_duplicate_groups: list[str]) -> None:
    labels, groups = busi_dataset.labels, busi_duplicate_groups
    names = [p.name for p in busi_dataset.paths]
    # the known cross-class conflict: one picture filed as benign (433) and as malignant (145)
    assert groups[names.index("benign (433).png")] == groups[names.index("malignant (145).png")]
    assert groups[names.index("benign (1).png")] == groups[names.index("benign (318).png")]
    assert 550 < len(set(groups)) < 700

    split = train_val_test_split(labels, groups=groups, seed=0)
    assert split.to_dict() == train_val_test_split(labels, groups=groups, seed=0).to_dict()
    owner = _assert_partition(split, 780)
    _assert_groups_whole(owner, groups)
    assert owner[names.index("benign (433).png")] == owner[names.index("malignant (145).png")]
    np.testing.assert_allclose(len(split.test) / 780, 0.2, atol=0.03)
    np.testing.assert_allclose(len(split.val) / 780, 0.1, atol=0.03)
    np.testing.assert_allclose(_class_fractions(labels, split.test), 0.2, atol=0.05)
    np.testing.assert_allclose(_class_fractions(labels, split.val), 0.1, atol=0.05)

    folds = kfold_indices(labels, 5, groups, seed=0)
    owner = np.empty(780, dtype=np.int64)
    for k, (_, test) in enumerate(folds):
        owner[test] = k
        np.testing.assert_allclose(_class_fractions(labels, test), 0.2, atol=0.05)
    _assert_groups_whole(owner, groups)
