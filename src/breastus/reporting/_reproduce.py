"""The model card's last section: the command line (and the Python call) that reproduces the run.

This module is private (see :mod:`breastus.reporting._model_card`). The options are
defined by ``breastus train`` and ``breastus cv`` (:mod:`breastus.cli`), but the
library must not import its own command line, so the section reads their names
from :data:`COMMAND_OPTIONS`; ``tests/test_architecture.py`` checks that the table
and the CLI's parsers agree. An option starting with ``--no-`` switches off a field
that defaults to ``True``. Fields missing from the table (``momentum``,
``milestones``, ``preprocessing``, ...) have no option and are reproduced in Python only.
"""

from __future__ import annotations

import pprint
import shlex
from collections.abc import Mapping
from pathlib import Path

from breastus._errors import DataError
from breastus.data._discovery import discover_folder
from breastus.reporting._run import Run, cv_data, data_root
from breastus.training._config import TrainConfig

_SHARED_OPTIONS: dict[str, str] = {
    "model": "--model",
    "pretrained": "--pretrained",
    "image_size": "--image-size",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "optimizer": "--optimizer",
    "weight_decay": "--weight-decay",
    "scheduler": "--scheduler",
    "label_smoothing": "--label-smoothing",
    "class_weights": "--class-weights",
    "early_stopping_patience": "--early-stopping",
    "seed": "--seed",
    "device": "--device",
    "amp": "--no-amp",
    "amp_dtype": "--amp-dtype",
    "precision": "--precision",
    "progressive_resize": "--progressive-resize",
    "num_workers": "--workers",
    "batch_augment": "--batch-augment",
    "compile": "--compile",
    "val_size": "--val-size",
    "progress": "--no-progress",
    "augmentation": "--augmentation",
    "seg_loss_weight": "--seg-loss-weight",
    "lesion_min_normal_recall": "--lesion-normal-recall",
}

COMMAND_OPTIONS: dict[str, dict[str, str]] = {
    "train": {**_SHARED_OPTIONS, "test_size": "--test-size", "group_duplicates": "--no-group-duplicates"},
    "cv": {**_SHARED_OPTIONS, "duplicate_threshold": "--duplicate-threshold"},
}
"""``command -> {TrainConfig field: option}`` for ``breastus train`` and ``breastus cv``."""


def reproduce_section(run: Run) -> list[str]:
    cv = cv_data(run) if run.checkpoint_path.parent != run.root else None
    cfg = dict(cv["config"]) if cv is not None and isinstance(cv.get("config"), Mapping) else run.config
    data = data_root(run) or "DATA_DIR"
    lines = ["## How to reproduce", ""]
    if not cfg:
        return [*lines, "The checkpoint holds no training configuration.", ""]
    defaults = TrainConfig().to_dict()
    command = "train" if cv is None else "cv"
    flags = COMMAND_OPTIONS[command]
    parts = ["breastus", command, shlex.quote(data), "--out", shlex.quote(str(run.root))]
    if cv is not None and isinstance(cv.get("folds"), list):
        parts += ["--folds", str(cv.get("n_folds", len(cv["folds"])))]
    python_only = []
    for name, value in cfg.items():
        always = name in ("model", "pretrained", "image_size", "epochs", "seed")
        if name in ("progress", "device", "num_workers") or (value == defaults.get(name) and not always):
            continue
        if name not in flags:
            python_only.append(name)
            continue
        option = flags[name]
        if option.startswith("--no-"):
            if value is False:
                parts.append(option)
        elif isinstance(value, (dict, list, tuple)) or (name == "class_weights" and not isinstance(value, str)):
            python_only.append(name)
        else:
            parts += [option, shlex.quote("none" if value is None else str(value))]
    lines += ["```bash", " ".join(parts), "```", ""]
    n_used = len((run.split or {}).get("paths", []))
    try:
        n_found = len(discover_folder(data, run.checkpoint.class_names)) if Path(data).is_dir() else None
    except DataError:
        n_found = None
    if n_found is not None and n_used and n_found != n_used:
        lines += [
            f"Note: the run used {n_used} of the {n_found} images in `{data}` (a subset or a manifest); the "
            "command above would use all of them. To reproduce exactly, list the images of `split.json` "
            "(its `paths`) in a CSV manifest and pass that instead of the folder.",
            "",
        ]
    if cv is None:
        call = f"train_and_evaluate({data!r}, {str(run.root)!r}, config)"
        imports = "from breastus import TrainConfig, train_and_evaluate"
    else:
        options = {k: cv[k] for k in ("tta",) if k in cv} | {"calibrate": cv.get("calibrated", True)}
        extra = "".join(f", {k}={v!r}" for k, v in options.items())
        n_folds = cv.get("n_folds", len(cv.get("folds") or []) or 5)
        call = f"cross_validate({data!r}, {str(run.root)!r}, config, folds={n_folds}{extra})"
        imports = "from breastus import TrainConfig, cross_validate"
        lines += [
            "`breastus cv` options beyond the training configuration (groups, bootstrap, calibration, "
            "test-time augmentation) are recorded in `cv.json`.",
            "",
        ]
    lines += [
        "Exactly, in Python (the configuration stored in the run):",
        "",
        "```python",
        imports,
        "",
        f"config = TrainConfig.from_dict(\n{pprint.pformat(cfg, indent=4, width=100)}\n)",
        call,
        "```",
        "",
        f"With the same data, seed and breastus version ({run.checkpoint.breastus_version}) on the CPU the "
        "metrics are reproduced; GPU runs can differ slightly. Regenerate this card with "
        f"`breastus report {shlex.quote(str(run.root))}`.",
        "",
    ]
    return lines
