"""Find the labelled images: class folders, CSV manifests and image folders.

This module is private; use :func:`breastus.data.discover_folder`,
:func:`breastus.data.read_manifest` and :class:`breastus.data.Sample`.
:class:`~breastus.data.UltrasoundDataset` (in :mod:`breastus.data._dataset`)
loads what these functions find.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from breastus._errors import DataError
from breastus.data._io import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

DEFAULT_CLASS_NAMES: tuple[str, ...] = ("benign", "malignant", "normal")
"""Class order used when none is given: BUSI's folder names, sorted."""

_MASK_STEM = re.compile(r"^(?P<image>.+)_mask(?:_\d+)?$")
_NUMBER = re.compile(r"(\d+)")


@dataclass(frozen=True)
class Sample:
    """One image of a dataset.

    Attributes
    ----------
    path : pathlib.Path
        The image file.
    label : int
        Index into the dataset's ``class_names``.
    mask_paths : tuple of pathlib.Path
        Lesion masks of this image (empty when there are none).
    group : str or None
        Samples with the same group (the same patient, lesion or duplicate
        picture) are never split across train and test. ``None``: its own group.

    """

    path: Path
    label: int
    mask_paths: tuple[Path, ...] = ()
    group: str | None = None


def is_mask_file(path: Path) -> bool:
    """Whether ``path`` is named like a lesion mask (``<image>_mask.png``, ``<image>_mask_1.png``)."""
    return _MASK_STEM.match(path.stem) is not None


def natural_key(path: Path) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``benign (2).png`` before ``benign (10).png``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower()) for part in _NUMBER.split(path.as_posix()))


@dataclass(frozen=True)
class FolderScan:
    """The files of one class folder, sorted into images with their masks, orphan masks and other files.

    Attributes
    ----------
    images : list of (pathlib.Path, tuple of pathlib.Path)
        Every image (``x.png`` and ``x.jpg`` are two) in natural file-name order, with
        its lesion masks (``x_mask.png``, ``x_mask_1.png``, ...) beside it.
    orphan_masks : dict of pathlib.Path to list of pathlib.Path
        Masks whose image is missing, by the missing image's path without suffix.
    ignored : list of pathlib.Path
        Files that are not images (``.txt``, ``.csv``, ...).

    """

    images: list[tuple[Path, tuple[Path, ...]]]
    orphan_masks: dict[Path, list[Path]]
    ignored: list[Path]


def scan_class_folder(folder: Path, recursive: bool = False) -> FolderScan:
    """Sort the files of one class folder (hidden files and folders skipped) into a :class:`FolderScan`.

    The one place that decides what is an image and what is a mask: used by
    :func:`discover_folder` (top level only) and :func:`~breastus.data.audit`
    (``recursive=True``, sub-folders too).
    """
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(
        (p for p in candidates if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts)),
        key=natural_key,
    )
    images: list[Path] = []
    masks: dict[Path, list[Path]] = {}
    ignored: list[Path] = []
    for file in files:
        match = _MASK_STEM.match(file.stem)
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            ignored.append(file)
        elif match:
            masks.setdefault(file.parent / match.group("image"), []).append(file)
        else:
            images.append(file)
    stems = {p.parent / p.stem for p in images}
    orphans = {stem: group for stem, group in masks.items() if stem not in stems}
    return FolderScan([(p, tuple(masks.get(p.parent / p.stem, ()))) for p in images], orphans, ignored)


def _validate_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(class_names)
    if len(names) < 2:
        raise DataError(f"class_names must hold at least 2 classes. Got {names!r} instead.")
    if len(set(names)) != len(names):
        raise DataError(f"class_names must be unique. Got {names!r} instead.")
    return names


def discover_folder(root: str | Path, class_names: Sequence[str] = DEFAULT_CLASS_NAMES) -> list[Sample]:
    """Find the images and masks of a BUSI-style folder.

    The layout is ``root/<class>/<name>.png`` with lesion masks beside their image
    as ``<name>_mask.png`` (further lesions: ``<name>_mask_1.png``, ...). Masks are
    paired with their image and are never samples. Hidden files and folders and
    files that are not images (``.txt``, ``.csv``, ...) are ignored.

    Parameters
    ----------
    root : str or pathlib.Path
        The data folder.
    class_names : sequence of str, default=("benign", "malignant", "normal")
        Allowed class folder names, in label order. A folder may be missing (an
        external test set with only two classes); a folder not listed is an error.

    Returns
    -------
    list of Sample
        Sorted by class, then by natural file-name order.

    Raises
    ------
    DataError
        If ``root`` is missing, holds no class folder, holds an unknown folder, or a
        class folder holds no image.

    """
    names = _validate_class_names(class_names)
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"Data folder {str(root)!r} does not exist or is not a folder. Point it at a folder "
            f"holding one sub-folder per class ({', '.join(names)}), e.g. ../shared/datasets/busi."
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name not in names]
    if unknown:
        raise DataError(
            f"Folder(s) {unknown!r} in {str(root)!r} are not known classes; expected only "
            f"{list(names)!r}. Rename or move them, or pass class_names to include them."
        )
    if not folders:
        raise DataError(f"Data folder {str(root)!r} holds no class folder; expected sub-folders named {list(names)!r}.")
    samples: list[Sample] = []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            continue
        scan = scan_class_folder(folder)
        if not scan.images:
            raise DataError(
                f"Class folder {str(folder)!r} holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "add images or remove the empty folder."
            )
        for stem, orphan in scan.orphan_masks.items():
            logger.warning("Mask(s) %s have no image %r in %s", [p.name for p in orphan], stem.name, folder)
        samples += [Sample(path=path, label=label, mask_paths=masks) for path, masks in scan.images]
    return samples


def read_manifest(path: str | Path, class_names: Sequence[str] | None = None) -> tuple[list[Sample], tuple[str, ...]]:
    """Read a CSV manifest with columns ``path,label`` and optional ``group`` and ``mask``.

    Relative paths are taken relative to the manifest's folder. ``mask`` may hold
    several mask paths separated by ``;``.

    Parameters
    ----------
    path : str or pathlib.Path
        The CSV file (with a header row).
    class_names : sequence of str, optional
        Class order. Default: :data:`DEFAULT_CLASS_NAMES` when every label is one of
        them, else the sorted set of labels found.

    Returns
    -------
    samples : list of Sample
    class_names : tuple of str

    Raises
    ------
    DataError
        If the file is missing, lacks the ``path`` or ``label`` column, is empty, or
        holds a label not in ``class_names``.

    """
    manifest = Path(path)
    if not manifest.is_file():
        raise DataError(f"Manifest {str(manifest)!r} does not exist; pass a CSV file with columns path,label[,group].")
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DataError(
            f"Manifest {str(manifest)!r} holds no rows; expected a header path,label[,group] and one row per image."
        )
    missing = {"path", "label"} - set(rows[0])
    if missing:
        raise DataError(
            f"Manifest {str(manifest)!r} lacks column(s) {sorted(missing)}; its columns are {list(rows[0])}. "
            "Expected path,label and optionally group and mask."
        )
    for line, row in enumerate(rows, start=2):
        empty = [column for column in ("path", "label") if not (row.get(column) or "").strip()]
        if empty:
            raise DataError(
                f"Manifest {str(manifest)!r} line {line}: column(s) {empty} are empty or missing; "
                "every row needs a path and a label."
            )
    labels_found = sorted({row["label"].strip() for row in rows})
    if class_names is None:
        class_names = DEFAULT_CLASS_NAMES if set(labels_found) <= set(DEFAULT_CLASS_NAMES) else labels_found
    names = _validate_class_names(class_names)
    index = {name: i for i, name in enumerate(names)}
    base = manifest.parent
    samples = []
    for line, row in enumerate(rows, start=2):
        label = row["label"].strip()
        if label not in index:
            raise DataError(f"Manifest {str(manifest)!r} line {line}: label {label!r} is not one of {list(names)!r}.")
        image_path = Path(row["path"].strip())
        masks = tuple(Path(m.strip()) for m in (row.get("mask") or "").split(";") if m.strip())
        group = (row.get("group") or "").strip() or None
        samples.append(
            Sample(
                path=image_path if image_path.is_absolute() else base / image_path,
                label=index[label],
                mask_paths=tuple(m if m.is_absolute() else base / m for m in masks),
                group=group,
            )
        )
    return samples, names


def iter_images(folder: str | Path, recursive: bool = True) -> Iterator[Path]:
    """Image files under ``folder`` in sorted order, lesion masks and hidden files excluded.

    Raises
    ------
    DataError
        If ``folder`` does not exist or is not a folder.

    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"Folder {str(root)!r} does not exist or is not a folder.")
    pattern = "**/*" if recursive else "*"
    for path in sorted(root.glob(pattern), key=lambda p: natural_key(p.relative_to(root))):
        if (
            path.is_file()
            and path.suffix.lower() in IMAGE_SUFFIXES
            and not is_mask_file(path)
            and not any(part.startswith(".") for part in path.relative_to(root).parts)
        ):
            yield path
