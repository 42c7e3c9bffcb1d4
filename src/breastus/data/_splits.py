"""Seeded, stratified and group-respecting data splits (built on scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from breastus._errors import ConfigError, DataError


@dataclass(frozen=True)
class Split:
    """Index arrays of a train/validation/test split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def to_dict(self) -> dict[str, list[int]]:
        """The split as plain lists, for JSON."""
        return {"train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist()}


def _group_ids(n: int, groups: Sequence[object] | np.ndarray | None) -> np.ndarray:
    """Integer group id per sample; ``None`` entries (or no groups) are singletons."""
    if groups is None:
        return np.arange(n)
    if len(groups) != n:
        raise DataError(f"groups must have one entry per sample ({n}). Got {len(groups)} instead.")
    ids: dict[object, int] = {}
    out = np.empty(n, dtype=np.int64)
    for i, group in enumerate(groups):
        key: object = ("__single__", i) if group is None else group
        out[i] = ids.setdefault(key, len(ids))
    return out


def kfold_indices(
    labels: Sequence[int] | np.ndarray,
    n_splits: int = 5,
    groups: Sequence[object] | np.ndarray | None = None,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold split that never puts one group in two folds.

    Parameters
    ----------
    labels : sequence of int
        Class of each sample.
    n_splits : int, default=5
        Number of folds, at least 2.
    groups : sequence, optional
        Group of each sample (``None`` entries are groups of one). Without groups
        every sample is its own group.
    seed : int, default=0
        Shuffling seed; the same seed and inputs give the same folds.

    Returns
    -------
    list of (train_indices, test_indices)
        One pair of sorted ``int64`` arrays per fold; the test parts are disjoint
        and cover every sample.

    Raises
    ------
    ConfigError
        If ``n_splits`` < 2, there are fewer groups than folds, or no class has
        ``n_splits`` samples.

    """
    y = np.asarray(labels, dtype=np.int64)
    if n_splits < 2:
        raise ConfigError(f"n_splits must be an int >= 2. Got {n_splits!r} instead.")
    group_ids = _group_ids(len(y), groups)
    n_groups = len(np.unique(group_ids))
    if n_groups < n_splits:
        raise ConfigError(
            f"Cannot make {n_splits} folds from {n_groups} group(s) of {len(y)} samples; use fewer folds."
        )
    largest = int(np.unique(y, return_counts=True)[1].max())
    if largest < n_splits:  # scikit-learn would raise a bare ValueError
        raise ConfigError(
            f"Cannot make {n_splits} stratified folds from {len(y)} samples: no class has {n_splits} samples "
            f"(the largest has {largest}); use fewer folds."
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(np.sort(train), np.sort(test)) for train, test in splitter.split(np.zeros(len(y)), y, group_ids)]


def train_val_test_split(
    labels: Sequence[int] | np.ndarray,
    val_size: float = 0.1,
    test_size: float = 0.2,
    groups: Sequence[object] | None = None,
    seed: int = 0,
) -> Split:
    """Seeded stratified train/validation/test split that keeps each group whole.

    The test part is one fold of a ``round(1 / test_size)``-fold stratified group
    split; the validation part is taken the same way from the rest, so the
    fractions are met as closely as whole groups allow.

    Parameters
    ----------
    labels : sequence of int
        Class of each sample.
    val_size, test_size : float, default=0.1, 0.2
        Fractions of all samples, each in (0, 0.5]. ``val_size=0`` gives an empty
        validation part.
    groups : sequence, optional
        Group of each sample; one group never lands in two parts.
    seed : int, default=0

    Returns
    -------
    Split

    Raises
    ------
    ConfigError
        If a fraction is out of range, or the data is too small (too few groups or
        samples per class) for the requested parts; the message says which.

    """
    y = np.asarray(labels, dtype=np.int64)
    for name, value in (("test_size", test_size), ("val_size", val_size)):
        if not 0 <= value <= 0.5 or (name == "test_size" and value == 0):
            allowed = "(0, 0.5]" if name == "test_size" else "[0, 0.5]"
            raise ConfigError(f"{name} must be a float in the range {allowed}. Got {value!r} instead.")
    group_ids = _group_ids(len(y), groups)
    try:
        rest, test = kfold_indices(y, max(2, round(1 / test_size)), group_ids, seed)[0]
    except ConfigError as exc:
        raise ConfigError(
            f"Cannot hold out test_size={test_size} of {len(y)} samples: {exc} "
            "Use a larger test_size or more data."
        ) from exc
    if val_size == 0:
        return Split(train=rest, val=np.array([], dtype=np.int64), test=test)
    val_folds = max(2, round((1 - test_size) / val_size))
    try:
        train_local, val_local = kfold_indices(y[rest], val_folds, group_ids[rest], seed + 1)[0]
    except ConfigError as exc:
        raise ConfigError(
            f"Cannot take val_size={val_size} from the {len(rest)} samples left after the test part: {exc} "
            "Use a larger val_size or more data."
        ) from exc
    return Split(train=rest[train_local], val=rest[val_local], test=test)
