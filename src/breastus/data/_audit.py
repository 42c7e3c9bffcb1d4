"""Audit a data folder: duplicates, label conflicts, unreadable files, masks and image statistics.

The audit reuses the fingerprints of :mod:`breastus.data._duplicates`: two images
are *exact* duplicates when their decoded grayscale pixels are identical (file
bytes may differ) and *near* duplicates when their 64-bit perceptual hashes are
at most ``threshold`` bits apart. Duplicate pairs are joined into groups
(connected components); a group holding more than one class is a *label
conflict*. :func:`~breastus.evaluation.cross_validate` keeps each group in one
fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from breastus._errors import ConfigError, DataError
from breastus._files import relative_posix
from breastus.data._audit_report import AuditImage, AuditReport
from breastus.data._dicom import dicom_photometric, is_dicom
from breastus.data._discovery import natural_key, read_manifest, scan_class_folder
from breastus.data._duplicates import (
    DEFAULT_HASH_THRESHOLD,
    ImageFingerprint,
    duplicate_components,
    fingerprint,
    hamming_matrix,
)


def _discover(root: Path) -> tuple[list[tuple[Path, str, tuple[Path, ...]]], list[Path], list[Path]]:
    """Images (with label and masks), orphan masks and ignored files of a class-folder tree (any folder names)."""
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)
    if not folders:
        raise DataError(f"Data folder {str(root)!r} holds no class folder; expected one sub-folder per class.")
    found: list[tuple[Path, str, tuple[Path, ...]]] = []
    orphans: list[Path] = []
    ignored: list[Path] = []
    for folder in folders:
        scan = scan_class_folder(folder, recursive=True)
        found += [(image, folder.name, masks) for image, masks in scan.images]
        orphans += [mask for group in scan.orphan_masks.values() for mask in group]
        ignored += scan.ignored
    return found, orphans, ignored


def audit(
    data: str | Path,
    threshold: int = DEFAULT_HASH_THRESHOLD,
    class_names: Sequence[str] | None = None,
) -> AuditReport:
    """Audit a BUSI-style folder (or CSV manifest) for problems that bias evaluation.

    Finds exact duplicates (identical decoded pixels), near-duplicates (64-bit
    perceptual hashes at most ``threshold`` bits apart), their groups (connected
    components, so chains ``a~b~c`` form one group), label conflicts (a group with
    more than one class), unreadable files, images without masks, masks without
    images, masks whose size differs from their image's, and size and mode
    statistics. Nothing is changed on disk.

    Parameters
    ----------
    data : str or pathlib.Path
        A folder with one sub-folder per class (any folder names; masks
        ``<image>_mask.png`` / ``<image>_mask_1.png`` beside their image), or a
        CSV manifest with columns ``path,label[,group][,mask]``.
    threshold : int, default=6
        Largest Hamming distance (of 64 bits) between perceptual hashes still
        called a near-duplicate. ``-1`` reports exact pixel duplicates only. On
        BUSI, 6 joins re-saved and slightly re-cropped copies of a frame while
        distinct lesions stay apart; raise it to catch more heavily edited copies
        (at the risk of joining different images), lower it to be stricter.
    class_names : sequence of str, optional
        Only for a manifest: the class order (see :func:`read_manifest`).

    Returns
    -------
    AuditReport

    Raises
    ------
    DataError
        If ``data`` is neither a folder with class sub-folders nor a readable manifest.
    ConfigError
        If ``threshold`` is not an int in [-1, 64].

    Examples
    --------
    >>> report = audit("../shared/datasets/busi", threshold=6)  # doctest: +SKIP
    >>> len(report.groups), len(report.conflicts)  # doctest: +SKIP
    (142, 8)

    """
    if not isinstance(threshold, int) or isinstance(threshold, bool) or not -1 <= threshold <= 64:
        raise ConfigError(f"threshold must be an int in the range [-1, 64]. Got {threshold!r} instead.")
    source = Path(data)
    orphans: list[Path] = []
    ignored: list[Path] = []
    if source.is_file() and source.suffix.lower() == ".csv":
        samples, names = read_manifest(source, class_names)
        root = source.parent
        found = [(s.path, names[s.label], s.mask_paths) for s in samples]
    elif source.is_dir():
        root = source
        found, orphans, ignored = _discover(root)
    else:
        raise DataError(
            f"Cannot audit {str(source)!r}: it is neither a folder with one sub-folder per class nor a CSV "
            "manifest (.csv with columns path,label)."
        )

    readable, unreadable = _read_images(found, root)
    components = duplicate_components([r[3] for r in readable], threshold)
    images = [
        AuditImage(
            path=relative_posix(path, root),
            label=label,
            width=fp.size[0],
            height=fp.size[1],
            mode=mode,
            format=fmt,
            n_masks=len(masks),
            phash=f"{fp.phash:016x}",
            pixel_sha256=fp.pixel_sha256,
            group=int(component),
        )
        for (path, label, masks, fp, mode, fmt), component in zip(readable, components, strict=True)
    ]
    groups_idx, conflicts, exact, near_pairs = _duplicate_findings(images, threshold)
    mismatches = _mask_mismatches(readable, root, unreadable)
    return AuditReport(
        root=root,
        threshold=threshold,
        images=images,
        groups=[[images[i].path for i in idx] for idx in groups_idx],
        conflicts=conflicts,
        exact_duplicates=exact,
        near_pairs=near_pairs,
        unreadable=unreadable,
        images_without_masks=[relative_posix(path, root) for path, _, masks, *_ in readable if not masks],
        masks_without_images=[relative_posix(p, root) for p in orphans],
        mask_size_mismatches=mismatches,
        ignored_files=[relative_posix(p, root) for p in ignored],
    )


_Readable = tuple[Path, str, tuple[Path, ...], ImageFingerprint, str, str]
"""An image the audit could decode: path, label, masks, fingerprint, PIL mode, file format."""


def _read_images(
    found: list[tuple[Path, str, tuple[Path, ...]]], root: Path
) -> tuple[list[_Readable], list[dict[str, str]]]:
    """Fingerprint every image; the readable ones, and ``{"path", "error"}`` for the others."""
    readable: list[_Readable] = []
    unreadable: list[dict[str, str]] = []
    for path, label, masks in found:
        try:
            fp = fingerprint(path)
            if is_dicom(path):
                mode, fmt = dicom_photometric(path), "DICOM"
            else:
                with Image.open(path) as raw:
                    mode, fmt = raw.mode, raw.format or path.suffix.lstrip(".").upper()
        except (DataError, OSError) as exc:
            unreadable.append({"path": relative_posix(path, root), "error": str(exc)})
            continue
        readable.append((path, label, masks, fp, mode, fmt))
    return readable, unreadable


def _duplicate_findings(
    images: list[AuditImage], threshold: int
) -> tuple[list[list[int]], list[dict[str, Any]], list[list[str]], list[dict[str, Any]]]:
    """Duplicate groups (as image indices), label conflicts, exact pixel-copy sets and near pairs."""
    members: dict[int, list[int]] = {}
    for i, image in enumerate(images):
        members.setdefault(image.group, []).append(i)
    groups_idx = [idx for idx in members.values() if len(idx) > 1]
    conflicts = [
        {
            "paths": [images[i].path for i in idx],
            "labels": [images[i].label for i in idx],
            "classes": sorted({images[i].label for i in idx}),
        }
        for idx in groups_idx
        if len({images[i].label for i in idx}) > 1
    ]
    by_pixels: dict[str, list[str]] = {}
    for image in images:
        by_pixels.setdefault(image.pixel_sha256, []).append(image.path)
    exact = [paths for paths in by_pixels.values() if len(paths) > 1]
    near_pairs: list[dict[str, Any]] = []
    for idx in groups_idx:
        distance = hamming_matrix([int(images[i].phash, 16) for i in idx])
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                same = images[idx[a]].pixel_sha256 == images[idx[b]].pixel_sha256
                if same or distance[a, b] <= threshold:
                    near_pairs.append(
                        {
                            "a": images[idx[a]].path,
                            "b": images[idx[b]].path,
                            "distance": 0 if same else int(distance[a, b]),
                        }
                    )
    return groups_idx, conflicts, exact, near_pairs


def _mask_mismatches(readable: list[_Readable], root: Path, unreadable: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Masks whose size differs from their image's; unreadable masks are added to ``unreadable``."""
    mismatches: list[dict[str, Any]] = []
    for _, _, masks, fp, _, _ in readable:
        for mask in masks:
            try:
                with Image.open(mask) as raw:
                    size = raw.size
            except OSError as exc:
                unreadable.append({"path": relative_posix(mask, root), "error": f"mask cannot be read: {exc}"})
                continue
            if size != fp.size:
                mismatches.append(
                    {"mask": relative_posix(mask, root), "mask_size": list(size), "image_size": list(fp.size)}
                )
    return mismatches
