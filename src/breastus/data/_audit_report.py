"""What an audit found: :class:`AuditImage` per readable image and the :class:`AuditReport`.

This module is private; the names are re-exported by :mod:`breastus.data`. The
audit itself is in ``_audit.py``, the HTML page in ``_audit_html.py``.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from breastus._files import relative_posix
from breastus.data._audit_html import render_html


@dataclass(frozen=True)
class AuditImage:
    """One readable image of an audited dataset.

    Attributes
    ----------
    path : str
        Path relative to the audited folder (POSIX separators).
    label : str
        Class (its folder name, or the manifest's ``label``).
    width, height : int
        Size in pixels.
    mode : str
        PIL mode of the file as stored (``"L"``, ``"RGB"``, ``"RGBA"``, ...); for DICOM its
        photometric interpretation (``"MONOCHROME2"``, ...).
    format : str
        File format (``"PNG"``, ``"JPEG"``, ...).
    n_masks : int
        Number of lesion mask files paired with the image.
    phash : str
        64-bit perceptual hash, 16 hexadecimal digits.
    pixel_sha256 : str
        SHA-256 of the decoded grayscale pixels (equal for exact duplicates).
    group : int
        Duplicate component id; images sharing it are (chains of) duplicates.

    """

    path: str
    label: str
    width: int
    height: int
    mode: str
    format: str
    n_masks: int
    phash: str
    pixel_sha256: str
    group: int


@dataclass(frozen=True)
class AuditReport:
    """What :func:`audit` found in a dataset.

    Every path is relative to :attr:`root` (POSIX separators), so reports from
    two machines compare equal.

    Attributes
    ----------
    root : pathlib.Path
        The audited folder (or the folder of the audited manifest).
    threshold : int
        Largest perceptual-hash distance called a near-duplicate (``-1``: exact only).
    images : list of AuditImage
        The readable images, in discovery order.
    groups : list of list of str
        Duplicate groups of two or more images (connected components).
    conflicts : list of dict
        Groups holding more than one class: ``{"paths", "labels", "classes"}``.
    exact_duplicates : list of list of str
        Sets of two or more images with identical decoded pixels.
    near_pairs : list of dict
        Pairs within a group at perceptual-hash distance ``<= threshold``:
        ``{"a", "b", "distance"}`` (0 for exact copies).
    unreadable : list of dict
        Files that could not be decoded: ``{"path", "error"}``.
    images_without_masks : list of str
    masks_without_images : list of str
        Mask files (``X_mask.png``) whose image ``X.png`` is missing.
    mask_size_mismatches : list of dict
        Masks whose size differs from their image's: ``{"mask", "mask_size", "image_size"}``.
    ignored_files : list of str
        Files in class folders that are neither images nor masks.

    """

    root: Path
    threshold: int
    images: list[AuditImage]
    groups: list[list[str]]
    conflicts: list[dict[str, Any]]
    exact_duplicates: list[list[str]]
    near_pairs: list[dict[str, Any]]
    unreadable: list[dict[str, str]]
    images_without_masks: list[str] = field(default_factory=list)
    masks_without_images: list[str] = field(default_factory=list)
    mask_size_mismatches: list[dict[str, Any]] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        """Classes found, in discovery order."""
        return list(dict.fromkeys(image.label for image in self.images))

    @property
    def n_duplicated_images(self) -> int:
        """Number of images that belong to a duplicate group."""
        return sum(len(g) for g in self.groups)

    def statistics(self) -> dict[str, Any]:
        """Counts per class, per PIL mode and per format, and size statistics."""
        widths = [image.width for image in self.images]
        heights = [image.height for image in self.images]

        def spread(values: list[int]) -> dict[str, float] | None:
            if not values:
                return None
            return {"min": min(values), "median": float(statistics.median(values)), "max": max(values)}

        sizes = Counter((image.width, image.height) for image in self.images)
        return {
            "n_images": len(self.images),
            "n_unreadable": len(self.unreadable),
            "class_counts": dict(Counter(image.label for image in self.images)),
            "modes": dict(Counter(image.mode for image in self.images).most_common()),
            "formats": dict(Counter(image.format for image in self.images).most_common()),
            "width": spread(widths),
            "height": spread(heights),
            "distinct_sizes": len(sizes),
            "most_common_sizes": [[w, h, n] for (w, h), n in sizes.most_common(5)],
            "masks_per_image": dict(sorted(Counter(image.n_masks for image in self.images).items())),
        }

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready plain values."""
        return {
            "root": str(self.root),
            "threshold": self.threshold,
            "summary": {
                "n_groups": len(self.groups),
                "n_duplicated_images": self.n_duplicated_images,
                "n_conflicts": len(self.conflicts),
                "n_exact_duplicate_sets": len(self.exact_duplicates),
                "n_near_pairs": len(self.near_pairs),
            },
            "groups": self.groups,
            "conflicts": self.conflicts,
            "exact_duplicates": self.exact_duplicates,
            "near_pairs": self.near_pairs,
            "unreadable": self.unreadable,
            "images_without_masks": self.images_without_masks,
            "masks_without_images": self.masks_without_images,
            "mask_size_mismatches": self.mask_size_mismatches,
            "ignored_files": self.ignored_files,
            "statistics": self.statistics(),
            "images": [asdict(image) for image in self.images],
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path`` (parent folders are created)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return target

    def group_names(self, paths: Sequence[str | Path]) -> list[str | None]:
        """The duplicate group of each of ``paths``, for the splitters.

        Parameters
        ----------
        paths : sequence of str or pathlib.Path
            Image files, absolute or relative to :attr:`root` (for example
            ``UltrasoundDataset.paths``).

        Returns
        -------
        list of str or None
            ``"dup-<k>"`` for an image in a duplicate group (``k`` its index in
            :attr:`groups`), ``None`` for an image without duplicates or one the
            audit did not see.

        Examples
        --------
        >>> report = audit("../shared/datasets/busi")  # doctest: +SKIP
        >>> data = UltrasoundDataset.from_folder("../shared/datasets/busi")  # doctest: +SKIP
        >>> folds = kfold_indices(data.labels, 5, report.group_names(data.paths))  # doctest: +SKIP

        """
        index = {p: f"dup-{k}" for k, group in enumerate(self.groups) for p in group}
        return [index.get(relative_posix(Path(p), self.root)) for p in paths]

    def summary(self) -> str:
        """A short human-readable account."""
        stats = self.statistics()
        lines = [
            f"{stats['n_images']} readable image(s) in {self.root} ({stats['class_counts']}); "
            f"{len(self.unreadable)} unreadable.",
            f"Duplicates (phash distance <= {self.threshold}): {len(self.groups)} group(s) covering "
            f"{self.n_duplicated_images} images; {len(self.exact_duplicates)} set(s) of exact pixel copies.",
            f"Label conflicts (one group, several classes): {len(self.conflicts)}",
        ]
        lines += [
            f"  {' | '.join(f'{p} [{lab}]' for p, lab in zip(c['paths'], c['labels'], strict=True))}"
            for c in self.conflicts
        ]
        lines += [
            f"Images without masks: {len(self.images_without_masks)}; masks without images: "
            f"{len(self.masks_without_images)}; masks of another size than their image: "
            f"{len(self.mask_size_mismatches)}.",
            f"Modes: {stats['modes']}; sizes: width {stats['width']}, height {stats['height']}, "
            f"{stats['distinct_sizes']} distinct.",
        ]
        lines += [f"  unreadable: {u['path']}: {u['error']}" for u in self.unreadable]
        return "\n".join(lines)

    def write_html(self, path: str | Path, thumbnail_size: int = 128) -> Path:
        """Write a self-contained HTML report with the duplicate groups side by side.

        Every label conflict and every duplicate group is one row of thumbnails
        (base64 PNG embedded in the file, the decoded grayscale pixels), captioned
        with the path, class, size and perceptual-hash distance to the first image.

        Parameters
        ----------
        path : str or pathlib.Path
        thumbnail_size : int, default=128
            Longest side of a thumbnail in pixels.

        Returns
        -------
        pathlib.Path

        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_html(self, thumbnail_size), encoding="utf-8")
        return target
