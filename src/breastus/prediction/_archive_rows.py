"""What an archive run writes: Parquet rows and their part files (see :mod:`breastus.prediction._ray`).

This module is private; use :func:`breastus.prediction.predict_archive`. The output
layout (atomically renamed part files, columns) is described in
:mod:`breastus.prediction._ray`.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from breastus._errors import ConfigError, DataError
from breastus.prediction._predictor import Predictor

if TYPE_CHECKING:
    import pyarrow as pa

_SCHEMA_KEY = b"breastus"
_FLUSH_SECONDS = 60.0


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
