"""What an archive run reads: the model file and the image paths (see :mod:`breastus.prediction._ray`).

This module is private; use :func:`breastus.prediction.predict_archive`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from breastus._errors import ConfigError, DataError
from breastus.data._io import IMAGE_SUFFIXES
from breastus.prediction._predictor import Predictor, iter_images

EXPORTED_SUFFIXES = (".onnx", ".ts", ".torchscript")
"""Suffixes of files written by ``breastus export``; anything else is read as a checkpoint."""

_BACKEND_WITH_EXPORTED = (
    "backend={backend!r} applies to checkpoints only; {source!r} is an exported model that runs in its own "
    "runtime (ONNX Runtime for .onnx, TorchScript for .ts). Leave backend unset."
)


def _is_exported(source: str | os.PathLike[str]) -> bool:
    return Path(source).suffix.lower() in EXPORTED_SUFFIXES


def load_predictor(
    source: str | os.PathLike[str],
    *,
    backend: str | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    tta: bool = False,
) -> Predictor:
    """A Predictor for a checkpoint (``.pt`` or run folder) or an exported file (``.onnx``, ``.ts``).

    ``backend`` (``"torch"``, ``"torchscript"``, ``"onnxruntime"``; default
    ``"torch"``) applies to checkpoints; an exported file runs in its own runtime.

    Raises
    ------
    CheckpointError
        If the file cannot be read.
    ConfigError
        If ``backend`` is given with an exported file, or is unknown.

    """
    if _is_exported(source):
        if backend is not None:
            raise ConfigError(_BACKEND_WITH_EXPORTED.format(backend=backend, source=os.fspath(source)))
        return Predictor.from_exported(Path(source), device=device, tta=tta, batch_size=batch_size)
    return Predictor.from_checkpoint(
        Path(source), device=device, tta=tta, batch_size=batch_size, backend=backend or "torch"
    )


def _read_path_column(manifest: Path) -> list[str]:
    """The ``path`` column of a CSV manifest, relative paths taken from the manifest's folder."""
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise DataError(
                f"Manifest {str(manifest)!r} has no 'path' column (its columns: {reader.fieldnames or []}); "
                "an archive manifest is a CSV with a header row and one image path per row in a 'path' column."
            )
        paths = []
        for line, row in enumerate(reader, start=2):
            value = (row.get("path") or "").strip()
            if not value:
                raise DataError(f"Manifest {str(manifest)!r} line {line}: the 'path' column is empty.")
            path = Path(value)
            paths.append(os.fspath(path if path.is_absolute() else manifest.parent / path))
    return paths


def archive_paths(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The distinct image paths named by ``inputs``, in input order.

    Each input is a folder (its images, sorted, masks and hidden files left out:
    see :func:`~breastus.prediction.iter_images`), a ``.csv`` manifest (its
    ``path`` column; relative paths are relative to the manifest's folder), or an
    image file (kept even if it does not exist: it becomes an error row).

    Raises
    ------
    DataError
        If a manifest is missing, has no ``path`` column or an empty path; if an
        input that does not exist has no image suffix (a mistyped folder); or if
        nothing is named.

    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    paths: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths.extend(os.fspath(p) for p in iter_images(path))
        elif path.suffix.lower() == ".csv":
            if not path.is_file():
                raise DataError(f"Manifest {str(path)!r} does not exist; pass a CSV file with a 'path' column.")
            paths.extend(_read_path_column(path))
        elif path.exists() or path.suffix.lower() in IMAGE_SUFFIXES:
            paths.append(os.fspath(item))
        else:  # most likely a mistyped folder: one error row would hide it
            raise DataError(
                f"Input {str(path)!r} does not exist and is neither a folder, a CSV manifest nor an image file "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); check the path."
            )
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise DataError(
            f"No image to predict: {[os.fspath(i) for i in items]} name no image file "
            "(pass folders, CSV manifests with a 'path' column, or image files)."
        )
    return unique


def _class_names(source: str | os.PathLike[str]) -> tuple[str, ...]:
    """The model's classes, read on the driver (so a bad file fails before Ray starts)."""
    if _is_exported(source):
        from breastus.export._api import load_exported

        return tuple(load_exported(Path(source))[1].class_names)
    from breastus.models._checkpoint import load_checkpoint

    return tuple(load_checkpoint(Path(source)).class_names)
