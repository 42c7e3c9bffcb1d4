"""Find exact and near-duplicate images so that they can be kept in one split.

Two images are *exact* duplicates when their decoded grayscale pixels are
identical (file bytes may differ), and *near* duplicates when the Hamming
distance between their 64-bit perceptual hashes (:func:`imagehash.phash`, DCT of
a 32×32 thumbnail) is at most ``threshold``. Duplicate pairs are joined into
groups (connected components), which :func:`kfold_indices` and
:func:`train_val_test_split` keep whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from breastus.data._io import load_image

DEFAULT_HASH_THRESHOLD = 6
"""Default largest phash Hamming distance (of 64 bits) still called a near-duplicate.

On BUSI, distances up to 6 join re-saved and slightly re-cropped copies of the
same frame (e.g. ``benign (433)`` / ``malignant (145)``): 142 groups covering 316
images, 8 of them holding two classes. Measured there, every image's nearest image
outside its group is at least 8 bits away (median 16), so 6 leaves a margin.
"""


@dataclass(frozen=True)
class ImageFingerprint:
    """Content hashes of one decoded image."""

    pixel_sha256: str
    phash: int
    size: tuple[int, int]


def fingerprint(path: str | Path) -> ImageFingerprint:
    """Hash the decoded grayscale pixels and the perceptual content of an image file."""
    image = load_image(path)
    digest = hashlib.sha256(np.asarray(image).tobytes() + repr(image.size).encode()).hexdigest()
    phash = int(str(imagehash.phash(image)), 16)
    return ImageFingerprint(pixel_sha256=digest, phash=phash, size=image.size)


def hamming_matrix(hashes: Sequence[int]) -> np.ndarray:
    """Pairwise Hamming distances of 64-bit hashes, as an ``(n, n)`` ``uint8`` array."""
    bits = np.unpackbits(np.array(hashes, dtype=np.uint64).view(np.uint8).reshape(-1, 8), axis=1)
    bits = bits.astype(np.int32)
    ones = bits.sum(axis=1)
    shared = bits @ bits.T
    distances: np.ndarray = (ones[:, None] + ones[None, :] - 2 * shared).astype(np.uint8)
    return distances


def duplicate_components(
    fingerprints: Sequence[ImageFingerprint], threshold: int = DEFAULT_HASH_THRESHOLD
) -> np.ndarray:
    """Component id of each image: equal ids are (chains of) duplicates.

    Parameters
    ----------
    fingerprints : sequence of ImageFingerprint
    threshold : int, default=DEFAULT_HASH_THRESHOLD
        Largest phash distance joined; ``-1`` joins exact pixel duplicates only.

    Returns
    -------
    numpy.ndarray
        ``int64`` component id per image, numbered from 0 in order of first appearance.

    """
    edges = [same_key_edges([f.pixel_sha256 for f in fingerprints])]
    if threshold >= 0 and fingerprints:
        distances = hamming_matrix([f.phash for f in fingerprints])
        rows, cols = np.nonzero(np.triu(distances <= threshold, k=1))
        edges.append((rows.astype(np.int64), cols.astype(np.int64)))
    return connected_ids(len(fingerprints), edges)


def same_key_edges(keys: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(rows, cols)`` joining every sample to the first one sharing its key (``None``: no key).

    Parameters
    ----------
    keys : sequence
        One hashable key per sample, or ``None``.

    Returns
    -------
    tuple of numpy.ndarray
        ``int64`` row and column indices of the edges.

    """
    first: dict[object, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, key in enumerate(keys):
        if key is None:
            continue
        j = first.setdefault(key, i)
        if j != i:
            rows.append(j)
            cols.append(i)
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


def connected_ids(n: int, edges: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Connected-component id of each of ``n`` samples joined by ``edges``, numbered in order of first appearance.

    Parameters
    ----------
    n : int
        Number of samples.
    edges : sequence of (rows, cols)
        Index arrays of undirected edges (several sets are joined together).

    Returns
    -------
    numpy.ndarray
        ``int64`` id per sample: 0 for the first sample, 1 for the first sample of
        another component, and so on.

    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.concatenate([np.asarray(r, dtype=np.int64) for r, _ in edges]) if edges else np.zeros(0, np.int64)
    cols = np.concatenate([np.asarray(c, dtype=np.int64) for _, c in edges]) if edges else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(x), len(order)) for x in labels], dtype=np.int64)


def duplicate_groups(paths: Sequence[str | Path], threshold: int = DEFAULT_HASH_THRESHOLD) -> list[str]:
    """A group name per image such that duplicates share a name.

    Parameters
    ----------
    paths : sequence of str or pathlib.Path
        Image files.
    threshold : int, default=DEFAULT_HASH_THRESHOLD
        See :func:`duplicate_components`.

    Returns
    -------
    list of str
        ``"dup-<k>"`` for each image, ``k`` its component id.

    """
    components = duplicate_components([fingerprint(p) for p in paths], threshold)
    return [f"dup-{k}" for k in components]
