"""A labelled collection of ultrasound images: discovery, manifests and loading."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from breastus._errors import DataError
from breastus.data._cache import ImageCache
from breastus.data._io import IMAGE_SUFFIXES, load_image, load_mask

logger = logging.getLogger(__name__)

DEFAULT_CLASS_NAMES: tuple[str, ...] = ("benign", "malignant", "normal")
"""Class order used when none is given: BUSI's folder names, sorted."""

OnError = Literal["raise", "skip"]

NORMAL_CLASS = "normal"
"""The class whose images show no lesion: without a mask file they get an empty mask."""

MASK_UNKNOWN = 255
"""Value filling the whole mask of a lesion image that has no mask file (excluded from mask losses)."""

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


Transform = Callable[[torch.Tensor], torch.Tensor]


class UltrasoundDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """Labelled ultrasound images, as a PyTorch map-style dataset.

    Build one with :meth:`from_folder` (BUSI layout) or :meth:`from_manifest` (CSV).
    Item ``i`` is ``(transform(image), label)`` where ``image`` is a ``uint8``
    tensor of shape ``(1, H, W)``; without a transform it is that tensor itself.

    Parameters
    ----------
    samples : sequence of Sample
        The images, labels, masks and groups.
    class_names : sequence of str
        Class order; ``Sample.label`` indexes it.
    transform : callable, optional
        Applied to each decoded ``uint8`` image tensor.
    cache : ImageCache, optional
        Serve images decoded and resized once from this cache (used by the
        :class:`~breastus.Trainer`); items are then ``cache.size`` square.
    on_error : {"raise", "skip"}, default="raise"
        What to do with an image that cannot be read. ``"skip"`` checks every file
        once at construction, logs each unreadable one and drops it; the count is in
        :attr:`skipped`.
    with_masks : bool, default=False
        Items become ``(image, label, mask)``: ``mask`` is the merged lesion mask
        (:meth:`mask_tensor`), a ``uint8`` :class:`torchvision.tv_tensors.Mask` of
        shape ``(1, H, W)`` holding 0 (background) and 1 (lesion). A ``"normal"``
        image without a mask file gets an empty mask; a lesion image without one
        gets a mask full of :data:`MASK_UNKNOWN` (255), which the
        :class:`~breastus.Trainer` leaves out of the mask loss and the Dice score
        (it still trains the classification head). The transform is then called as
        ``transform(image, mask)`` and must return both, so a torchvision v2
        transform moves the mask with the image (:func:`~breastus.train_transform`
        does).

    Examples
    --------
    >>> ds = UltrasoundDataset.from_folder("../shared/datasets/busi")  # doctest: +SKIP
    >>> len(ds), ds.class_names  # doctest: +SKIP
    (780, ('benign', 'malignant', 'normal'))

    """

    def __init__(
        self,
        samples: Sequence[Sample],
        class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
        transform: Transform | None = None,
        on_error: OnError = "raise",
        cache: ImageCache | None = None,
        with_masks: bool = False,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise DataError(f"on_error must be 'raise' or 'skip'. Got {on_error!r} instead.")
        self.class_names = _validate_class_names(class_names)
        for sample in samples:
            if not 0 <= sample.label < len(self.class_names):
                raise DataError(
                    f"Sample {str(sample.path)!r} has label {sample.label}, outside 0..{len(self.class_names) - 1}."
                )
        kept = list(samples)
        self.skipped: list[tuple[Path, str]] = []
        if on_error == "skip":
            kept = []
            for sample in samples:
                try:
                    load_image(sample.path)
                except DataError as exc:
                    logger.warning("Skipping unreadable image: %s", exc)
                    self.skipped.append((sample.path, str(exc)))
                else:
                    kept.append(sample)
            if self.skipped:
                logger.warning("Skipped %d unreadable image(s) of %d.", len(self.skipped), len(samples))
        self.samples: tuple[Sample, ...] = tuple(kept)
        self.transform = transform
        self.on_error: OnError = on_error
        self.cache = cache
        self.with_masks = bool(with_masks)

    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
        transform: Transform | None = None,
        on_error: OnError = "raise",
    ) -> UltrasoundDataset:
        """Build a dataset from a BUSI-style folder; see :func:`discover_folder`."""
        return cls(discover_folder(root, class_names), class_names, transform, on_error)

    @classmethod
    def from_manifest(
        cls,
        path: str | Path,
        class_names: Sequence[str] | None = None,
        transform: Transform | None = None,
        on_error: OnError = "raise",
    ) -> UltrasoundDataset:
        """Build a dataset from a CSV manifest; see :func:`read_manifest`."""
        samples, names = read_manifest(path, class_names)
        return cls(samples, names, transform, on_error)

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        class_names: Sequence[str] | None = None,
        transform: Transform | None = None,
        on_error: OnError = "raise",
    ) -> UltrasoundDataset:
        """Build a dataset from a folder or, when ``path`` ends in ``.csv``, a manifest."""
        if Path(path).suffix.lower() == ".csv":
            return cls.from_manifest(path, class_names, transform, on_error)
        return cls.from_folder(path, class_names or DEFAULT_CLASS_NAMES, transform, on_error)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        if self.with_masks:
            return self._masked_item(index)  # type: ignore[return-value]
        if self.cache is not None:
            image = self.cache.get(sample.path)
        else:
            image = TF.pil_to_tensor(load_image(sample.path))
        if self.transform is not None:
            image = self.transform(image)
        return image, sample.label

    def _masked_item(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        sample = self.samples[index]
        known = self.has_mask(index)
        if self.cache is not None:
            image, mask = self.cache.get_with_mask(sample.path, sample.mask_paths)
        else:
            image = TF.pil_to_tensor(load_image(sample.path))
            mask = tv_tensors.Mask(self._mask_array(index, (image.shape[-1], image.shape[-2])))
        if self.transform is not None:
            joint: Any = self.transform
            image, mask = joint(image, tv_tensors.Mask(mask))
        mask = mask.as_subclass(torch.Tensor)
        if not known:
            mask = torch.full_like(mask, MASK_UNKNOWN)
        return image, sample.label, mask

    def _mask_array(self, index: int, size: tuple[int, int]) -> torch.Tensor:
        paths = self.samples[index].mask_paths
        merged = load_mask(paths, size) if paths else np.zeros((size[1], size[0]), dtype=bool)
        return torch.from_numpy(merged.astype(np.uint8))[None]

    def has_mask(self, index: int) -> bool:
        """Whether sample ``index`` has a known lesion mask (a mask file, or a ``"normal"`` image)."""
        sample = self.samples[index]
        return bool(sample.mask_paths) or self.class_names[sample.label] == NORMAL_CLASS

    def mask_tensor(self, index: int) -> torch.Tensor:
        """The merged lesion mask of sample ``index`` as a ``uint8`` ``(1, H, W)`` tensor of 0 and 1.

        A ``"normal"`` image without a mask file gives zeros; a lesion image without
        one gives :data:`MASK_UNKNOWN` everywhere.
        """
        width, height = load_image(self.samples[index].path).size
        mask = self._mask_array(index, (width, height))
        return mask if self.has_mask(index) else torch.full_like(mask, MASK_UNKNOWN)

    def masked(self, with_masks: bool = True) -> UltrasoundDataset:
        """The same samples, yielding ``(image, label, mask)`` items (see ``with_masks``)."""
        return UltrasoundDataset(self.samples, self.class_names, self.transform, cache=self.cache, with_masks=with_masks)

    def missing_masks(self) -> list[int]:
        """Indices of the lesion images that have no mask file (see ``with_masks``)."""
        return [i for i in range(len(self)) if not self.has_mask(i)]

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={n}" for name, n in zip(self.class_names, self.class_counts(), strict=True))
        return f"UltrasoundDataset({len(self)} images: {counts})"

    @property
    def paths(self) -> list[Path]:
        """Image file of each sample."""
        return [s.path for s in self.samples]

    @property
    def labels(self) -> np.ndarray:
        """Label index of each sample, as an ``int64`` array."""
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def groups(self) -> list[str | None]:
        """Group of each sample (``None``: ungrouped)."""
        return [s.group for s in self.samples]

    @property
    def mask_paths(self) -> list[tuple[Path, ...]]:
        """Lesion mask files of each sample."""
        return [s.mask_paths for s in self.samples]

    def class_counts(self) -> list[int]:
        """Number of samples of each class, in ``class_names`` order."""
        return [int(c) for c in np.bincount(self.labels, minlength=len(self.class_names))]

    def load_image(self, index: int) -> Image.Image:
        """Decode sample ``index`` as an 8-bit grayscale PIL image (no transform)."""
        return load_image(self.samples[index].path)

    def load_mask(self, index: int) -> np.ndarray | None:
        """The merged lesion mask of sample ``index`` (``None`` when it has no mask file)."""
        sample = self.samples[index]
        if not sample.mask_paths:
            return None
        return load_mask(sample.mask_paths, self.load_image(index).size)

    def subset(self, indices: Sequence[int] | np.ndarray) -> UltrasoundDataset:
        """A dataset of the samples at ``indices``, sharing class names and transform."""
        chosen = [self.samples[int(i)] for i in indices]
        return UltrasoundDataset(chosen, self.class_names, self.transform, cache=self.cache, with_masks=self.with_masks)

    def with_transform(self, transform: Transform | None) -> UltrasoundDataset:
        """The same samples with another transform."""
        return UltrasoundDataset(self.samples, self.class_names, transform, cache=self.cache, with_masks=self.with_masks)

    def with_cache(self, cache: ImageCache | None) -> UltrasoundDataset:
        """The same samples served through ``cache`` (``None``: decode every time)."""
        return UltrasoundDataset(self.samples, self.class_names, self.transform, cache=cache, with_masks=self.with_masks)

    def with_groups(self, groups: Sequence[str | None]) -> UltrasoundDataset:
        """The same samples with ``groups`` (one per sample) as their groups."""
        if len(groups) != len(self.samples):
            raise DataError(f"groups must have one entry per sample ({len(self.samples)}). Got {len(groups)} instead.")
        samples = [Sample(s.path, s.label, s.mask_paths, g) for s, g in zip(self.samples, groups, strict=True)]
        return UltrasoundDataset(samples, self.class_names, self.transform, cache=self.cache, with_masks=self.with_masks)


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
