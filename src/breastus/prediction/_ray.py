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

Where the parts live: this module runs Ray (actors, streaming, the run's
bookkeeping); :mod:`~breastus.prediction._archive_inputs` reads the inputs (image
paths, manifests, the model file) and :mod:`~breastus.prediction._archive_rows`
builds the rows and writes, reads and rewrites the part files.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from breastus._errors import ConfigError
from breastus.prediction._archive_inputs import (
    _BACKEND_WITH_EXPORTED,
    _class_names,
    _is_exported,
    archive_paths,
    load_predictor,
)
from breastus.prediction._archive_rows import _drop_rows, _PartWriter, _read_existing, _superseded, predict_rows

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)


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


class _ArchiveWorker:
    """The ``map_batches`` callable: one Predictor per Ray actor, built once."""

    def __init__(self, source: str, backend: str | None, batch_size: int, device: str, tta: bool, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.predictor = load_predictor(source, backend=backend, batch_size=batch_size, device=device, tta=tta)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return predict_rows(self.predictor, batch.column("path").to_pylist())


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
        :func:`~breastus.prediction._archive_inputs.archive_paths`. Duplicates are predicted once.
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
