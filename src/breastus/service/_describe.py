"""What ``GET /v1/model`` says: the model, its version, its training data and metrics, and the notice.

This module is private; use the names re-exported by :mod:`breastus.service`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from breastus._version import __version__
from breastus.models._checkpoint import Checkpoint
from breastus.prediction._predictor import Predictor

NOTICE = (
    "breastus is a research tool. It is not a medical device and must not be used for diagnosis; "
    "its outputs are class probabilities from a model trained on public research data."
)
"""The not-a-medical-device notice every model description and the web page carry."""

_CONFIG_FIELDS = (
    "model",
    "pretrained",
    "image_size",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "scheduler",
    "label_smoothing",
    "augmentation",
    "seed",
    "val_size",
    "test_size",
    "group_duplicates",
)


def file_version(path: str | Path) -> str:
    """The model version: the first 12 hex digits of the SHA-256 of the model file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _training_data(run: Path, class_names: tuple[str, ...]) -> dict[str, Any] | None:
    """Image counts per split part and class from ``split.json``, and the data folder's name (not its path)."""
    split = _read_json(run / "split.json")
    if not isinstance(split, dict) or not isinstance(split.get("paths"), list):
        return None
    paths = [Path(str(p)) for p in split["paths"]]
    parts: dict[str, Any] = {}
    for part in ("train", "val", "test"):
        indices = [int(i) for i in split.get(part, []) if 0 <= int(i) < len(paths)]
        counts = {name: 0 for name in class_names}
        for i in indices:
            if paths[i].parent.name in counts:
                counts[paths[i].parent.name] += 1
        parts[part] = {"images": len(indices), "per_class": counts}
    folders = {p.parent.parent.name if p.parent.name in class_names else p.parent.name for p in paths}
    return {"dataset": sorted(folders)[0] if len(folders) == 1 else None, "images": len(paths), "split": parts}


def describe_model(
    predictor: Predictor,
    source: str | Path | None = None,
    checkpoint: Checkpoint | None = None,
    backend: str = "torch",
) -> dict[str, Any]:
    """The description ``GET /v1/model`` answers with.

    Parameters
    ----------
    predictor : Predictor
        The served predictor (classes, architecture, input size, temperature).
    source : str or pathlib.Path, optional
        The checkpoint or exported file it came from: gives the version (content
        hash) and, next to a checkpoint, the run's ``split.json`` (training data)
        and ``test_metrics.json`` (held-out metrics).
    checkpoint : Checkpoint, optional
        The loaded checkpoint: adds the training recipe and best validation score.
    backend : str, default="torch"
        How the model runs (``"torch"`` or ``"onnxruntime"``).

    Returns
    -------
    dict
        JSON-ready; only folder *names* of the training data appear, never paths.

    """
    info = predictor.model_info
    described: dict[str, Any] = {
        "name": info.name,
        "architecture": info.architecture,
        "version": file_version(source) if source is not None and Path(source).is_file() else None,
        "classes": list(predictor.class_names),
        "image_size": predictor.image_size,
        "temperature": predictor.temperature,
        "calibrated": predictor.temperature != 1.0,
        "initial_weights": info.weights if not info.weights.startswith("file:") else "file",
        "backend": backend,
        "breastus_version": __version__,
        "training": None,
        "metrics": None,
        "notice": NOTICE,
    }
    if checkpoint is not None:
        history = checkpoint.training_state.get("history", {}) if checkpoint.training_state else {}
        best = history.get("best_score") if isinstance(history, dict) else None
        described["training"] = {
            "recipe": {k: checkpoint.train_config[k] for k in _CONFIG_FIELDS if k in checkpoint.train_config},
            "epochs_completed": checkpoint.epoch,
            "best_val_macro_f1": best if isinstance(best, (int, float)) and best >= 0 else None,
            "written_by": f"breastus {checkpoint.breastus_version}",
            "data": None,
        }
    if source is not None:
        run = Path(source) if Path(source).is_dir() else Path(source).parent
        if described["training"] is not None:
            described["training"]["data"] = _training_data(run, predictor.class_names)
        metrics = _read_json(run / "test_metrics.json")
        described["metrics"] = metrics if isinstance(metrics, dict) else None
    return described
