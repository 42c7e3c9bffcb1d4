"""The files of a run folder, named once: what training, evaluation, the CLI and the model card read and write.

This module is private, one of breastus's shared foundations (it imports nothing
else of breastus but its errors). A run folder (``breastus train --out RUN_DIR``)
holds the checkpoints, the history, the split and the test results; a
cross-validation folder (``breastus cv --out DIR``) holds :data:`CV_FILE`,
:data:`OOF_FILE` and one run folder ``fold-<k>`` per fold, each with its :data:`FOLD_FILE`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from breastus._errors import DataError

BEST_CHECKPOINT = "best.pt"
"""Checkpoint of the epoch with the best validation macro-F1."""
LAST_CHECKPOINT = "last.pt"
"""Checkpoint of the last finished epoch (what ``resume`` continues from)."""
HISTORY_FILE = "history.jsonl"
"""One JSON line per epoch (:class:`~breastus.EpochRecord`)."""
SPLIT_FILE = "split.json"
"""The split: ``train``, ``val``, ``test`` index lists and the ``paths`` they index."""
CALIBRATION_FILE = "calibration.json"
"""Temperature scaling: the fitted temperature and the calibration before and after."""
TEST_METRICS_FILE = "test_metrics.json"
"""Metrics of the best checkpoint on the held-out test part."""
TEST_PREDICTIONS_FILE = "test_predictions.csv"
"""One row per test image: path, label and the probability of each class."""
MODEL_CARD_FILE = "model_card.md"
"""The Markdown model card (``breastus report``)."""
CV_FILE = "cv.json"
"""Cross-validation summary: folds, mean, std, pooled figures, intervals, groups."""
OOF_FILE = "oof_predictions.csv"
"""Cross-validation: the out-of-fold prediction of every image."""
FOLD_FILE = "fold.json"
"""Cross-validation: a finished fold's summary row and predictions (what ``resume`` reuses)."""


def read_split(path: str | Path) -> dict[str, Any]:
    """The contents of a :data:`SPLIT_FILE`: ``train``, ``val`` and ``test`` index lists, and ``paths`` when recorded.

    Parameters
    ----------
    path : str or pathlib.Path
        The split file.

    Returns
    -------
    dict
        ``train``, ``val`` and ``test`` as lists of int; ``paths`` (list of str) only
        when the file records them.

    Raises
    ------
    DataError
        If the file is missing, is not JSON, or lacks an index list.

    """
    file = Path(path)
    if not file.is_file():
        raise DataError(
            f"Split file {str(file)!r} does not exist; pass RUN_DIR/{SPLIT_FILE} written by breastus train."
        )
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
        split: dict[str, Any] = {part: [int(i) for i in saved[part]] for part in ("train", "val", "test")}
        if "paths" in saved:
            split["paths"] = [str(p) for p in saved["paths"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"Split file {str(file)!r} is unreadable or damaged ({exc}); it must hold the train, val and test "
            "index lists written by breastus train. Regenerate it by training again in a new run folder."
        ) from exc
    return split
