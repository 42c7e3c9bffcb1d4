"""A labelled collection of ultrasound images: loading images, labels and masks.

Finding them (class folders, manifests) is :mod:`breastus.data._discovery`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from breastus._errors import DataError
from breastus.data._cache import ImageCache
from breastus.data._discovery import DEFAULT_CLASS_NAMES, Sample, _validate_class_names, discover_folder, read_manifest
from breastus.data._io import load_image, load_mask

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]

NORMAL_CLASS = "normal"
"""The class whose images show no lesion: without a mask file they get an empty mask."""

MASK_UNKNOWN = 255
"""Value filling the whole mask of a lesion image that has no mask file (excluded from mask losses)."""

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


