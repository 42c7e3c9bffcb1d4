"""The groups a cross-validation keeps whole: duplicate groups of the audit, a manifest's, or none.

This module is private; the public names are re-exported by :mod:`breastus.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from breastus._errors import ConfigError, DataError
from breastus.data._dataset import UltrasoundDataset
from breastus.data._duplicates import (
    DEFAULT_HASH_THRESHOLD,
    connected_ids,
    duplicate_components,
    fingerprint,
    same_key_edges,
)

GroupsOption = Literal["audit", "none"]


def _merge_partitions(first: Sequence[object], second: Sequence[object]) -> np.ndarray:
    """Component id per sample when samples sharing a label in either partition are joined."""
    return connected_ids(len(first), [same_key_edges(first), same_key_edges(second)])


def resolve_groups(
    dataset: UltrasoundDataset,
    groups: GroupsOption | Sequence[str | None] = "audit",
    threshold: int = DEFAULT_HASH_THRESHOLD,
) -> tuple[list[str], str]:
    """The group of every sample for a group-aware split, and where the groups came from.

    Parameters
    ----------
    dataset : UltrasoundDataset
    groups : {"audit", "none"} or sequence of str or None, default="audit"
        ``"audit"``: duplicate groups (exact pixel copies and perceptual-hash
        near-duplicates at distance ``<= threshold``, as :func:`~breastus.data.audit`
        finds them), joined with the dataset's own groups (a manifest's ``group``
        column) when it has any. ``"none"``: every image is its own group (the
        naive image-level split). A sequence: one group per sample (``None``: its
        own group).
    threshold : int, default=6
        Perceptual-hash distance for ``"audit"``.

    Returns
    -------
    groups : list of str
        One group name per sample.
    source : str
        ``"audit"``, ``"audit+dataset"``, ``"none"`` or ``"given"``.

    Raises
    ------
    ConfigError
        If ``groups`` is an unknown string.
    DataError
        If a sequence has the wrong length or an image cannot be read.

    """
    n = len(dataset)
    if isinstance(groups, str):
        if groups == "none":
            return [f"image-{i}" for i in range(n)], "none"
        if groups != "audit":
            raise ConfigError(f"groups must be 'audit', 'none' or one group per image. Got {groups!r} instead.")
        components = duplicate_components([fingerprint(p) for p in dataset.paths], threshold)
        if any(g is not None for g in dataset.groups):
            merged = _merge_partitions(components.tolist(), dataset.groups)
            return [f"group-{k}" for k in merged], "audit+dataset"
        return [f"group-{k}" for k in components], "audit"
    if len(groups) != n:
        raise DataError(f"groups must have one entry per image ({n}). Got {len(groups)} instead.")
    return [f"image-{i}" if g is None else str(g) for i, g in enumerate(groups)], "given"


def check_groups_within_folds(groups: Sequence[str], fold_of: Sequence[int] | np.ndarray) -> None:
    """Raise if one group has images in two different folds.

    Parameters
    ----------
    groups : sequence of str
        Group of each sample.
    fold_of : sequence of int
        Test fold of each sample.

    Raises
    ------
    DataError
        Naming the first group found in two folds.

    """
    seen: dict[str, int] = {}
    for group, fold in zip(groups, fold_of, strict=True):
        first = seen.setdefault(group, int(fold))
        if first != int(fold):
            raise DataError(f"Group {group!r} has images in folds {first} and {int(fold)}; the folds leak.")


def check_disjoint(groups: Sequence[str], parts: dict[str, np.ndarray]) -> None:
    owner: dict[str, str] = {}
    for name, indices in parts.items():
        for i in indices:
            first = owner.setdefault(groups[int(i)], name)
            if first != name:
                raise DataError(f"Group {groups[int(i)]!r} is in both the {first} and the {name} part of a fold.")
