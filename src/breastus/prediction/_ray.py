"""Prediction over image archives on Ray Data: one Parquet row per image, resumable.

This module is private; use :func:`breastus.prediction.predict_archive`. Ray and
PyArrow are optional (``pip install "breastus[ray]"``) and imported only when a
run starts.

How a run works
---------------
The driver (the process calling :func:`predict_archive`) lists the images, reads
what an earlier run already wrote, and hands the remaining paths to Ray Data as
small blocks. ``map_batches`` runs them through a pool of actors, each holding one
:class:`~breastus.prediction.Predictor` (loaded once per actor, one PyTorch thread
per reserved CPU). The rows stream back to the driver, which writes them.

Output layout (``OUT``, e.g. ``predictions.parquet``)
---------------------------------------------------
``OUT`` is a directory holding a Parquet dataset, read whole by
``pandas.read_parquet(OUT)`` or ``pyarrow.dataset.dataset(OUT)``::

    predictions.parquet/
        part-20261204T013000-3f9a1c-000000.parquet
        part-20261204T013000-3f9a1c-000001.parquet
        ...

Each part is first written to a hidden ``.part-....parquet.tmp`` file (which
Parquet readers ignore), flushed to disk and renamed into place; a rename is
atomic, so a crash never leaves a half-written part behind, only a hidden temp
file that the next run deletes. A part is written every ``rows_per_part`` rows
and at least once a minute, so an interrupted run loses at most that much work.

Columns: ``path`` (string), ``label`` (predicted class, null on error), one
``p_<class>`` float64 column per class in the model's order (null on error), and
``error`` (null, or why the image could not be read).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from breastus._errors import ConfigError, DataError
from breastus.data._io import IMAGE_SUFFIXES
from breastus.prediction._predictor import Predictor, iter_images

if TYPE_CHECKING:
    import pyarrow as pa

EXPORTED_SUFFIXES = (".onnx", ".ts", ".torchscript")
"""Suffixes of files written by ``breastus export``; anything else is read as a checkpoint."""

logger = logging.getLogger(__name__)

_SCHEMA_KEY = b"breastus"
_BACKEND_WITH_EXPORTED = (
    "backend={backend!r} applies to checkpoints only; {source!r} is an exported model that runs in its own "
    "runtime (ONNX Runtime for .onnx, TorchScript for .ts). Leave backend unset."
)
_FLUSH_SECONDS = 60.0


@dataclass(frozen=True)
class ArchiveResult:
    """What one :func:`predict_archive` run did.

    Attributes
    ----------
    out : pathlib.Path
        The Parquet dataset directory.
    total : int
        Distinct images in the input.
    skipped : int
        Images that already had a successful row in ``out`` (not predicted again).
    predicted : int
        Rows written by this run with a prediction.
    failed : int
        Rows written by this run with ``error`` set (unreadable files).
    seconds : float
        Wall time of the run, Ray start-up included.
    num_workers : int
        Ray actors used (0 when nothing was left to predict).
    startup_seconds : float
        Wall time until the first rows came back: listing the inputs, reading
        ``out``, Ray start-up, actor creation, model loading and the first batch
        (0.0 when nothing was predicted). The rest of ``seconds`` is the steady state.

    """

    out: Path
    total: int
    skipped: int
    predicted: int
    failed: int
    seconds: float
    num_workers: int
    startup_seconds: float

    @property
    def written(self) -> int:
        """Rows written by this run (``predicted + failed``)."""
        return self.predicted + self.failed

    @property
    def images_per_second(self) -> float:
        """Rows written per second of wall time."""
        return self.written / self.seconds if self.seconds > 0 else 0.0


def _import_ray() -> ModuleType:
    """``ray`` (with Ray Data and PyArrow importable), or a ConfigError saying how to install them."""
    try:
        import pyarrow.parquet  # noqa: F401
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigError(
            f"Prediction on Ray needs the 'ray' extra ({exc.name} is missing); "
            'install it with `pip install "breastus[ray]"`.'
        ) from exc
    return ray


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


def _schema(class_names: Sequence[str]) -> pa.Schema:
    import pyarrow as pa

    fields = [pa.field("path", pa.string()), pa.field("label", pa.string())]
    fields += [pa.field(f"p_{name}", pa.float64()) for name in class_names]
    fields.append(pa.field("error", pa.string()))
    return pa.schema(fields, metadata={_SCHEMA_KEY: json.dumps({"class_names": list(class_names)}).encode()})


def predict_rows(predictor: Predictor, paths: Sequence[str]) -> pa.Table:
    """One output row per path (see the module docstring for the columns); unreadable files get ``error``.

    Decoding and preprocessing are the Predictor's own (:meth:`Predictor.preprocess`),
    so the probabilities equal :meth:`Predictor.predict`'s.
    """
    import pyarrow as pa

    names = predictor.class_names
    errors: list[str | None] = [None] * len(paths)
    tensors, readable = [], []
    with predictor._torch_threads():
        for i, path in enumerate(paths):
            try:
                tensors.append(predictor.preprocess(path))
                readable.append(i)
            except DataError as exc:
                errors[i] = str(exc)
    probabilities = np.full((len(paths), len(names)), np.nan)
    for start in range(0, len(tensors), predictor.batch_size):
        rows = readable[start : start + predictor.batch_size]
        probabilities[rows] = predictor._proba_batch(tensors[start : start + predictor.batch_size])
    ok = np.array([e is None for e in errors], dtype=bool)
    labels = [names[int(np.argmax(p))] if good else None for p, good in zip(probabilities, ok, strict=True)]
    columns: list[Any] = [pa.array(list(paths), pa.string()), pa.array(labels, pa.string())]
    columns += [pa.array(probabilities[:, k], pa.float64(), mask=~ok) for k in range(len(names))]
    columns.append(pa.array(errors, pa.string()))
    return pa.Table.from_arrays(columns, schema=_schema(names))


class _ArchiveWorker:
    """The ``map_batches`` callable: one Predictor per Ray actor, built once."""

    def __init__(self, source: str, backend: str | None, batch_size: int, device: str, tta: bool, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.predictor = load_predictor(source, backend=backend, batch_size=batch_size, device=device, tta=tta)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return predict_rows(self.predictor, batch.column("path").to_pylist())


class _PartWriter:
    """Write tables as atomically renamed part files (see the module docstring)."""

    def __init__(self, out: Path, rows_per_part: int) -> None:
        self.out, self.rows_per_part = out, rows_per_part
        self.run = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        self.pending: list[pa.Table] = []
        self.rows = self.parts = self.predicted = self.failed = 0
        self.last_flush = time.monotonic()
        self.first_rows_at: float | None = None

    def add(self, table: pa.Table) -> None:
        if self.first_rows_at is None:
            self.first_rows_at = time.perf_counter()
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= self.rows_per_part or time.monotonic() - self.last_flush > _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        import pyarrow as pa

        table = pa.concat_tables(self.pending)
        name = f"part-{self.run}-{self.parts:06d}.parquet"
        _write_atomically(table, self.out / name)
        failed = table.num_rows - table.column("error").null_count
        self.failed += failed
        self.predicted += table.num_rows - failed
        self.parts += 1
        self.pending, self.rows = [], 0


def _write_atomically(table: pa.Table, target: Path) -> None:
    import pyarrow.parquet as pq

    temporary = target.with_name(f".{target.name}.tmp")
    pq.write_table(table, temporary)
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))  # names sort by run start time, then sequence


def _read_existing(out: Path, class_names: Sequence[str], resume: bool) -> dict[str, list[tuple[Path, bool]]]:
    """Rows already in ``out``: for each path, ``(part, succeeded)`` oldest part first.

    Creates ``out`` if needed and deletes hidden temp files of interrupted writes.
    """
    if out.exists() and not out.is_dir():
        raise DataError(
            f"Output {str(out)!r} is a file; predict_archive writes a Parquet dataset directory. "
            "Pass a new path (e.g. predictions.parquet) or move the file away."
        )
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(".part-*.parquet.tmp"):
        leftover.unlink()
    parts = _parts(out)
    if parts and not resume:
        raise DataError(
            f"Output {str(out)!r} already holds {len(parts)} part file(s) and resume=False. "
            "Pass resume=True to predict only the images missing from it, or choose a new output path."
        )
    import pyarrow.parquet as pq

    expected = _schema(class_names).names
    rows: dict[str, list[tuple[Path, bool]]] = {}
    for part in parts:
        names = pq.read_schema(part).names
        if names != expected:
            raise ConfigError(
                f"Output {str(out)!r} holds rows with columns {names} (in {part.name}), but this model writes "
                f"{expected}: it was written by a model with other classes. Use a new output path."
            )
        table = pq.read_table(part, columns=["path", "error"])
        for path, error in zip(table.column("path").to_pylist(), table.column("error").to_pylist(), strict=True):
            rows.setdefault(path, []).append((part, error is None))
    return rows


def _superseded(rows: dict[str, list[tuple[Path, bool]]]) -> dict[Path, set[str]]:
    """The rows to drop so that each path keeps only its newest row, as ``part -> paths``."""
    drop: dict[Path, set[str]] = {}
    for path, entries in rows.items():
        for part, _ in entries[:-1]:
            drop.setdefault(part, set()).add(path)
    return drop


def _drop_rows(drop: dict[Path, set[str]]) -> None:
    """Rewrite each part without the given paths (atomically; an emptied part is deleted)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for part, paths in drop.items():
        table = pq.read_table(part)
        kept = table.filter(pc.invert(pc.is_in(table.column("path"), value_set=pa.array(sorted(paths)))))
        if kept.num_rows:
            _write_atomically(kept, part)
        else:
            part.unlink()


def _connect(ray: ModuleType, address: str | None) -> bool:
    """Join or start Ray; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        if address is not None:
            raise ConfigError(
                f"Ray is already initialised in this process, so ray_address={address!r} cannot be used; "
                "call ray.shutdown() first or leave ray_address unset to use the running Ray."
            )
        return False
    if address is None and not os.environ.get("RAY_ADDRESS"):
        ray.init(include_dashboard=False)
    else:
        ray.init(address=address)
    return True


def predict_archive(
    checkpoint_or_exported: str | os.PathLike[str],
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    num_workers: int | None = None,
    batch_size: int = 32,
    backend: str | None = None,
    device: str = "cpu",
    tta: bool = False,
    threads_per_worker: int = 1,
    ray_address: str | None = None,
    resume: bool = True,
    rows_per_part: int = 1000,
) -> ArchiveResult:
    """Classify every image of an archive on Ray Data, writing one Parquet row per image.

    Images are split into blocks of ``batch_size`` and sent through
    ``map_batches`` to ``num_workers`` Ray actors, each holding one
    :class:`~breastus.prediction.Predictor` (same decoding, preprocessing and
    probabilities as the single-process Predictor). Ray restarts an actor that
    dies and retries its batch, so every image still gets exactly one row. The
    driver writes the rows to ``out`` in atomically renamed part files.

    Parameters
    ----------
    checkpoint_or_exported : str or path-like
        A breastus checkpoint (``best.pt``, ``last.pt``, a run folder) or a file
        written by ``breastus export`` (``.onnx``, ``.ts``/``.torchscript``). On a
        cluster it must be readable at this path on every node.
    inputs : str, path-like or sequence of them
        Folders, CSV manifests (a ``path`` column) and image files; see
        :func:`~breastus.prediction._ray.archive_paths`. Duplicates are predicted once.
    out : str or path-like
        The output Parquet dataset directory, e.g. ``predictions.parquet``.
    num_workers : int, optional
        Ray actors (one Predictor each). Default: the cluster's CPUs divided by
        ``threads_per_worker`` (GPUs with ``device="cuda"``), at most one per batch.
    batch_size : int, default=32
        Images per block and per forward pass.
    backend : {"torch", "torchscript", "onnxruntime"}, optional
        How a checkpoint's model runs (default ``"torch"``; see
        :meth:`Predictor.from_checkpoint`). Not allowed with an exported file.
    device : str, default="cpu"
        ``"cuda"`` reserves one GPU per actor.
    tta : bool, default=False
        Average with the horizontally mirrored image.
    threads_per_worker : int, default=1
        CPUs reserved by each actor and PyTorch threads it uses.
    ray_address : str, optional
        An existing cluster, e.g. ``"ray://head:10001"`` or ``"auto"``. Default:
        the Ray already initialised in this process, else ``RAY_ADDRESS``, else a
        local Ray started for this run (and shut down after it).
    resume : bool, default=True
        Skip images that already have a successful row in ``out`` (error rows are
        retried, and the newer row replaces the older). ``False`` refuses to write
        into an ``out`` that holds rows.
    rows_per_part : int, default=1000
        Rows per part file (a part is also written at least once a minute).

    Returns
    -------
    ArchiveResult

    Raises
    ------
    ConfigError
        Invalid parameter, Ray or PyArrow missing, or ``out`` written by a model
        with other classes.
    CheckpointError
        If the model file cannot be read.
    DataError
        If no image is named, a manifest is malformed, or ``out`` is a file or
        already holds rows with ``resume=False``.

    Examples
    --------
    >>> from breastus.prediction import predict_archive  # doctest: +SKIP
    >>> result = predict_archive("runs/busi/best.pt", "archive/", "predictions.parquet")  # doctest: +SKIP
    >>> result.predicted, result.failed  # doctest: +SKIP
    (1000000, 12)
    >>> import pandas as pd  # doctest: +SKIP
    >>> pd.read_parquet("predictions.parquet").columns.tolist()  # doctest: +SKIP
    ['path', 'label', 'p_benign', 'p_malignant', 'p_normal', 'error']

    """
    return _predict_archive(
        checkpoint_or_exported,
        inputs,
        out,
        num_workers=num_workers,
        batch_size=batch_size,
        backend=backend,
        device=device,
        tta=tta,
        threads_per_worker=threads_per_worker,
        ray_address=ray_address,
        resume=resume,
        rows_per_part=rows_per_part,
        worker=_ArchiveWorker,
    )


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1. Got {value!r} instead.")


def _class_names(source: str | os.PathLike[str]) -> tuple[str, ...]:
    """The model's classes, read on the driver (so a bad file fails before Ray starts)."""
    if _is_exported(source):
        from breastus.export._api import load_exported

        return tuple(load_exported(Path(source))[1].class_names)
    from breastus.models._checkpoint import load_checkpoint

    return tuple(load_checkpoint(Path(source)).class_names)


def _predict_archive(
    source: str | os.PathLike[str],
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    num_workers: int | None,
    batch_size: int,
    backend: str | None,
    device: str,
    tta: bool,
    threads_per_worker: int,
    ray_address: str | None,
    resume: bool,
    rows_per_part: int,
    worker: type[_ArchiveWorker],
) -> ArchiveResult:
    started = time.perf_counter()
    for name, value in (("batch_size", batch_size), ("threads_per_worker", threads_per_worker)):
        _positive_int(name, value)
    _positive_int("rows_per_part", rows_per_part)
    if num_workers is not None:
        _positive_int("num_workers", num_workers)
    if backend is not None and _is_exported(source):
        raise ConfigError(_BACKEND_WITH_EXPORTED.format(backend=backend, source=os.fspath(source)))
    ray = _import_ray()
    class_names = _class_names(source)
    paths = archive_paths(inputs)
    directory = Path(out)
    seen = _read_existing(directory, class_names, resume)
    stale = _superseded(seen)
    if stale:  # an earlier run was interrupted after retrying failed images: keep each path's newest row
        _drop_rows(stale)
    done = {path for path, entries in seen.items() if entries[-1][1]}
    todo = [path for path in paths if path not in done]
    writer = _PartWriter(directory, rows_per_part)
    workers = 0
    if todo:
        started_ray = _connect(ray, ray_address)
        try:
            workers = _run(ray, todo, writer, worker, source, backend, batch_size, device, tta,
                           threads_per_worker, num_workers, local=started_ray)  # fmt: skip
        finally:
            writer.flush()
            if started_ray:
                ray.shutdown()
        retried = {path for path in todo if path in seen}
        if retried:
            _drop_rows(_superseded(_read_existing(directory, class_names, True)))
    return ArchiveResult(
        out=directory,
        total=len(paths),
        skipped=len(paths) - len(todo),
        predicted=writer.predicted,
        failed=writer.failed,
        seconds=time.perf_counter() - started,
        num_workers=workers,
        startup_seconds=0.0 if writer.first_rows_at is None else writer.first_rows_at - started,
    )


def _run(
    ray: ModuleType,
    todo: list[str],
    writer: _PartWriter,
    worker: type[_ArchiveWorker],
    source: str | os.PathLike[str],
    backend: str | None,
    batch_size: int,
    device: str,
    tta: bool,
    threads: int,
    num_workers: int | None,
    local: bool,
) -> int:
    """Stream ``todo`` through the actor pool into ``writer``; returns the pool size."""
    import pyarrow as pa

    gpu = device.startswith("cuda")
    resources = ray.cluster_resources()
    unit = "GPU" if gpu else "CPU"
    capacity = int(resources.get(unit, 0)) // (1 if gpu else threads)
    if num_workers is None:
        num_workers = max(1, capacity)
    elif num_workers > capacity:
        message = (
            f"num_workers={num_workers} actors need {num_workers * (1 if gpu else threads)} {unit}(s) but the Ray "
            f"cluster has {resources.get(unit, 0):g}"
        )
        if local:  # a Ray started for this run never grows: the extra actors would wait forever
            raise ConfigError(f"{message}. Pass num_workers <= {max(capacity, 1)} or leave it unset.")
        logger.warning("%s; the extra actors wait until an autoscaler adds nodes.", message)
    blocks = [pa.table({"path": todo[i : i + batch_size]}) for i in range(0, len(todo), batch_size)]
    num_workers = min(num_workers, len(blocks))
    dataset = ray.data.from_arrow(blocks).map_batches(
        worker,
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        fn_constructor_kwargs={
            "source": os.fspath(source),
            "backend": backend,
            "batch_size": batch_size,
            "device": device,
            "tta": tta,
            "threads": threads,
        },
        num_cpus=threads,
        num_gpus=1 if gpu else None,
    )
    batches: Iterable[pa.Table] = dataset.iter_batches(batch_size=None, batch_format="pyarrow")
    for table in batches:
        writer.add(table)
    return num_workers
