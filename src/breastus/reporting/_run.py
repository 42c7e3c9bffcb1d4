"""Reading a run folder for the model card: checkpoint, split, history, test results, cross-validation.

This module is private (see :mod:`breastus.reporting._model_card`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastus._errors import CheckpointError, DataError
from breastus._run_files import (
    BEST_CHECKPOINT,
    CALIBRATION_FILE,
    CV_FILE,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    SPLIT_FILE,
    TEST_METRICS_FILE,
    TEST_PREDICTIONS_FILE,
    read_split,
)
from breastus.data._discovery import DEFAULT_CLASS_NAMES
from breastus.models._checkpoint import Checkpoint, load_checkpoint

_BOOTSTRAP_FILES = ("bootstrap.json", "test_bootstrap.json", "test_metrics_ci.json")


@dataclass
class Run:
    root: Path
    checkpoint_path: Path
    checkpoint: Checkpoint
    config: dict[str, Any]
    split: dict[str, Any] | None
    history: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    predictions: tuple[np.ndarray, np.ndarray] | None
    cv: tuple[Path, dict[str, Any]] | None
    calibration: dict[str, Any] | None
    bootstrap_file: tuple[Path, Any] | None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read {str(path)!r} as JSON ({exc}); remove or regenerate the file.") from exc


def _find_checkpoint(root: Path) -> Path:
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
        if (root / name).is_file():
            return root / name
    folds = sorted(root.glob(f"*/{BEST_CHECKPOINT}"))
    if folds:
        return folds[0]
    raise CheckpointError(
        f"No checkpoint in run folder {str(root)!r}: expected best.pt or last.pt (written by breastus train), "
        "or fold folders holding best.pt (written by breastus cv)."
    )


def _read_predictions(path: Path, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = [f"p_{c}" for c in class_names]
    if not rows or "label" not in rows[0] or any(c not in rows[0] for c in columns):
        raise DataError(
            f"{str(path)!r} must have a header with columns label,{','.join(columns)} and one row per test image "
            "(as written by breastus train); regenerate it with breastus evaluate --csv."
        )
    index = {c: i for i, c in enumerate(class_names)}
    try:
        labels = np.array([index[row["label"]] for row in rows], dtype=np.int64)
        probabilities = np.array([[float(row[c]) for c in columns] for row in rows], dtype=np.float64)
    except (KeyError, ValueError) as exc:
        raise DataError(f"{str(path)!r} holds an unknown label or a non-numeric probability ({exc}).") from exc
    return labels, probabilities


def read_run(run_dir: str | Path) -> Run:
    root = Path(run_dir)
    if not root.is_dir():
        raise DataError(f"Run folder {str(root)!r} does not exist; pass the --out folder of breastus train.")
    checkpoint_path = _find_checkpoint(root)
    checkpoint = load_checkpoint(checkpoint_path)
    split_file = root / SPLIT_FILE
    history_file = root / HISTORY_FILE
    history: list[dict[str, Any]] = []
    if history_file.is_file():
        lines = history_file.read_text(encoding="utf-8").splitlines()
        history = [json.loads(line) for line in lines if line.strip()]
    metrics_file, predictions_file = root / TEST_METRICS_FILE, root / TEST_PREDICTIONS_FILE
    cv = next(((f, read_json(f)) for f in (root / CV_FILE, root.parent / CV_FILE) if f.is_file()), None)
    calibration = next(
        (read_json(f) for f in (root / CALIBRATION_FILE, root.parent / CALIBRATION_FILE) if f.is_file()), None
    )
    bootstrap = next(((root / n, read_json(root / n)) for n in _BOOTSTRAP_FILES if (root / n).is_file()), None)
    return Run(
        root=root,
        checkpoint_path=checkpoint_path,
        checkpoint=checkpoint,
        config=dict(checkpoint.train_config),
        split=read_split(split_file) if split_file.is_file() else None,
        history=history,
        metrics=read_json(metrics_file) if metrics_file.is_file() else None,
        predictions=_read_predictions(predictions_file, checkpoint.class_names) if predictions_file.is_file() else None,
        cv=cv,
        calibration=calibration if isinstance(calibration, dict) else None,
        bootstrap_file=bootstrap,
    )


def cv_data(run: Run) -> Mapping[str, Any] | None:
    return run.cv[1] if run.cv is not None and isinstance(run.cv[1], Mapping) else None


def data_root(run: Run) -> str | None:
    paths = [str(p) for p in (run.split or {}).get("paths", [])]
    if not paths:
        cv = cv_data(run)
        return str(cv["data"]) if cv is not None and cv.get("data") else None
    try:
        common = Path(os.path.commonpath(paths))
    except ValueError:
        return None
    return str(common.parent if common.name in run.checkpoint.class_names else common)


def class_of(path: str, class_names: Sequence[str]) -> str | None:
    parent = Path(path).parent.name
    return parent if parent in class_names else None


def is_busi(run: Run) -> bool:
    paths = [str(p) for p in (run.split or {}).get("paths", [])]
    cv_groups = run.cv[1].get("groups") if run.cv is not None and isinstance(run.cv[1], Mapping) else None
    if isinstance(cv_groups, Mapping):
        paths += [str(p) for group in cv_groups.get("multi_image_groups") or [] for p in group]
    names = tuple(run.checkpoint.class_names)
    return names == DEFAULT_CLASS_NAMES and any(Path(p).name.startswith(("benign (", "malignant (")) for p in paths)
