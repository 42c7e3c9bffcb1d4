"""The files of a cross-validation run: each fold's saved predictions and the pooled out-of-fold table.

``fold.json`` in a fold folder lets ``cross_validate(resume=True)`` reuse a finished
fold when it holds the same test images; ``oof_predictions.csv`` is the pooled table.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from breastus._run_files import FOLD_FILE

logger = logging.getLogger(__name__)


def save_fold(
    fold_dir: Path, row: dict[str, Any], paths: list[str], probabilities: np.ndarray, predicted: np.ndarray
) -> None:
    """Write ``fold.json``: the fold's summary row, its test images and their predictions."""
    payload = {
        "row": row,
        "paths": paths,
        "probabilities": probabilities.tolist(),
        "predicted": [int(v) for v in predicted],
    }
    (fold_dir / FOLD_FILE).write_text(json.dumps(payload), encoding="utf-8")


def load_fold(
    fold_dir: Path, relative: list[str], test: np.ndarray
) -> tuple[dict[str, Any], np.ndarray, np.ndarray] | None:
    """A finished fold's summary row, probabilities and predicted classes, or None to train it (again)."""
    file = fold_dir / FOLD_FILE
    if not file.is_file():
        return None
    saved = json.loads(file.read_text(encoding="utf-8"))
    if saved.get("paths") != [relative[int(i)] for i in test]:
        logger.warning("Not reusing %s: it holds other test images; the fold is trained again.", file)
        return None
    probabilities = np.asarray(saved["probabilities"], dtype=np.float64)
    # fold files written before the decision was stored: the argmax
    predicted = np.asarray(saved.get("predicted", probabilities.argmax(axis=1)), dtype=np.int64)
    return dict(saved["row"]), probabilities, predicted


def write_oof(
    path: Path,
    relative: list[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    fold_of: np.ndarray,
    groups: list[str],
    names: Sequence[str],
) -> None:
    """Write ``oof_predictions.csv``: one row per image with its fold, group and probabilities."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "predicted", "fold", "group", *[f"p_{c}" for c in names]])
        for i, file in enumerate(relative):
            row = probabilities[i]
            writer.writerow(
                [
                    file,
                    names[int(labels[i])],
                    names[int(row.argmax())],
                    int(fold_of[i]),
                    groups[i],
                    *[f"{p:.6f}" for p in row],
                ]
            )
