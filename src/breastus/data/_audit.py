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

import base64
import html
import io
import json
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from breastus._errors import ConfigError, DataError
from breastus.data._dataset import is_mask_file, natural_key, read_manifest
from breastus.data._dicom import dicom_photometric, is_dicom
from breastus.data._duplicates import (
    DEFAULT_HASH_THRESHOLD,
    ImageFingerprint,
    duplicate_components,
    fingerprint,
    hamming_matrix,
)
from breastus.data._io import IMAGE_SUFFIXES, load_image

_MASK_SUFFIX = re.compile(r"_mask(?:_\d+)?$")


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
        return [index.get(self._relative(Path(p))) for p in paths]

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

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
        target.write_text(_render_html(self, thumbnail_size), encoding="utf-8")
        return target


def _discover(root: Path) -> tuple[list[tuple[Path, str, tuple[Path, ...]]], list[Path], list[Path]]:
    """Images (with label and masks), orphan masks and ignored files of a class-folder tree."""
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)
    if not folders:
        raise DataError(f"Data folder {str(root)!r} holds no class folder; expected one sub-folder per class.")
    found: list[tuple[Path, str, tuple[Path, ...]]] = []
    orphans: list[Path] = []
    ignored: list[Path] = []
    for folder in folders:
        files = sorted(
            (
                p
                for p in folder.rglob("*")
                if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
            ),
            key=natural_key,
        )
        images: dict[Path, Path] = {}
        masks: dict[Path, list[Path]] = {}
        for file in files:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                ignored.append(file)
            elif is_mask_file(file):
                masks.setdefault(file.parent / _MASK_SUFFIX.sub("", file.stem), []).append(file)
            else:
                images[file.parent / file.stem] = file
        for stem, mask_files in masks.items():
            if stem not in images:
                orphans += mask_files
        found += [(image, folder.name, tuple(masks.get(stem, []))) for stem, image in images.items()]
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

    def rel(path: Path) -> str:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    readable: list[tuple[Path, str, tuple[Path, ...], ImageFingerprint, str, str]] = []
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
            unreadable.append({"path": rel(path), "error": str(exc)})
            continue
        readable.append((path, label, masks, fp, mode, fmt))

    components = duplicate_components([r[3] for r in readable], threshold)
    images = [
        AuditImage(
            path=rel(path),
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

    members: dict[int, list[int]] = {}
    for i, image in enumerate(images):
        members.setdefault(image.group, []).append(i)
    groups_idx = [idx for idx in members.values() if len(idx) > 1]
    groups = [[images[i].path for i in idx] for idx in groups_idx]
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

    mismatches: list[dict[str, Any]] = []
    for _, _, masks, fp, _, _ in readable:
        for mask in masks:
            try:
                with Image.open(mask) as raw:
                    size = raw.size
            except OSError as exc:
                unreadable.append({"path": rel(mask), "error": f"mask cannot be read: {exc}"})
                continue
            if size != fp.size:
                mismatches.append({"mask": rel(mask), "mask_size": list(size), "image_size": list(fp.size)})

    return AuditReport(
        root=root,
        threshold=threshold,
        images=images,
        groups=groups,
        conflicts=conflicts,
        exact_duplicates=exact,
        near_pairs=near_pairs,
        unreadable=unreadable,
        images_without_masks=[rel(path) for path, _, masks, *_ in readable if not masks],
        masks_without_images=[rel(p) for p in orphans],
        mask_size_mismatches=mismatches,
        ignored_files=[rel(p) for p in ignored],
    )


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
.group{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;margin:8px 0 14px;padding:8px;
border:1px solid #ddd;border-radius:6px}
.conflict{border-color:#c0392b;background:#fdf2f1}
figure{margin:0;text-align:center;font-size:11px;max-width:180px}
figure img{display:block;margin:0 auto 3px;background:#000}
.label{font-weight:bold}.exact{color:#c0392b}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
"""


def _thumbnail(root: Path, relative: str, size: int) -> str:
    path = Path(relative) if Path(relative).is_absolute() else root / relative
    try:
        image = load_image(path)
    except DataError:
        return ""
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plain(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _render_html(report: AuditReport, thumbnail_size: int) -> str:
    e = html.escape
    by_path = {image.path: image for image in report.images}
    conflict_sets = {tuple(c["paths"]) for c in report.conflicts}

    def row(paths: list[str], conflict: bool) -> str:
        first = int(by_path[paths[0]].phash, 16)
        figures = []
        for p in paths:
            image = by_path[p]
            same = image.pixel_sha256 == by_path[paths[0]].pixel_sha256
            if p == paths[0]:
                distance = "reference"
            elif same:
                distance = "exact copy"
            else:
                distance = f"d={bin(int(image.phash, 16) ^ first).count('1')}"
            data = _thumbnail(report.root, p, thumbnail_size)
            figures.append(
                f'<figure><img alt="{e(p)}" src="data:image/png;base64,{data}">'
                f'<span class="label">{e(image.label)}</span><br>{e(p)}<br>{image.width}×{image.height} '
                f'{e(image.mode)} · <span class="{"exact" if same and p != paths[0] else ""}">{distance}</span></figure>'
            )
        return f'<div class="group{" conflict" if conflict else ""}">{"".join(figures)}</div>'

    stats = report.statistics()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>breastus audit</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>breastus audit of {e(str(report.root))}</h1>",
        "<table>",
        *(
            f"<tr><th>{e(k)}</th><td>{e(_plain(v))}</td></tr>"
            for k, v in [
                ("readable images", stats["n_images"]),
                ("classes", stats["class_counts"]),
                ("near-duplicate threshold (phash bits)", report.threshold),
                ("duplicate groups (2+ images)", len(report.groups)),
                ("images in duplicate groups", report.n_duplicated_images),
                ("label conflicts", len(report.conflicts)),
                ("exact pixel-copy sets", len(report.exact_duplicates)),
                ("unreadable files", len(report.unreadable)),
                ("images without masks", len(report.images_without_masks)),
                ("masks without images", len(report.masks_without_images)),
                ("masks of another size", len(report.mask_size_mismatches)),
                ("modes", stats["modes"]),
                ("width (min/median/max)", stats["width"]),
                ("height (min/median/max)", stats["height"]),
            ]
        ),
        "</table>",
        f"<h2>Label conflicts ({len(report.conflicts)})</h2>",
        "<p>Each row is one group of duplicates filed under more than one class.</p>",
        *(row(c["paths"], True) for c in report.conflicts),
        f"<h2>Other duplicate groups ({len(report.groups) - len(report.conflicts)})</h2>",
        "<p><i>d</i>: perceptual-hash distance to the first image of the row.</p>",
        *(row(g, False) for g in report.groups if tuple(g) not in conflict_sets),
    ]
    for title, items in (
        ("Unreadable files", [f"{u['path']}: {u['error']}" for u in report.unreadable]),
        ("Masks without images", report.masks_without_images),
        ("Masks of another size than their image", [str(m) for m in report.mask_size_mismatches]),
        ("Images without masks", report.images_without_masks),
    ):
        parts.append(f"<h2>{e(title)} ({len(items)})</h2>")
        if items:
            parts.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in items) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
