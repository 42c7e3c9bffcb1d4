"""Model cards: a Markdown description of a trained run, written from its files.

:func:`write_model_card` reads what ``breastus train`` (or
:func:`~breastus.train_and_evaluate`) left in a run folder — the checkpoint's
``train_config``, ``split.json``, ``history.jsonl``, ``test_metrics.json``,
``test_predictions.csv`` and, when present, ``cv.json`` (here or one folder up)
and ``calibration.json`` — and writes a card with the intended use, the data
and its caveats, the protocol, the metrics with 95 % confidence intervals,
calibration, known failure modes and the command that reproduces the run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pprint
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastus._errors import CheckpointError, DataError
from breastus._version import __version__
from breastus.data._dataset import DEFAULT_CLASS_NAMES, discover_folder
from breastus.evaluation._calibration import expected_calibration_error
from breastus.evaluation._cv import bootstrap_ci
from breastus.evaluation._metrics import compute_metrics
from breastus.models._checkpoint import Checkpoint, load_checkpoint
from breastus.training._config import TrainConfig

MODEL_CARD_FILE = "model_card.md"
"""Default file name of the card inside the run folder."""

_CI_KEYS = ("confidence_intervals", "ci95", "ci", "bootstrap", "bootstrap_ci")
_BOOTSTRAP_FILES = ("bootstrap.json", "test_bootstrap.json", "test_metrics_ci.json")


@dataclass(frozen=True)
class _Interval:
    """A confidence interval of one metric and how it was obtained."""

    low: float
    high: float
    method: str


# --------------------------------------------------------------------------- reading the run folder


@dataclass
class _Run:
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read {str(path)!r} as JSON ({exc}); remove or regenerate the file.") from exc


def _find_checkpoint(root: Path) -> Path:
    for name in ("best.pt", "last.pt"):
        if (root / name).is_file():
            return root / name
    folds = sorted(root.glob("*/best.pt"))
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


def _read_run(run_dir: str | Path) -> _Run:
    root = Path(run_dir)
    if not root.is_dir():
        raise DataError(f"Run folder {str(root)!r} does not exist; pass the --out folder of breastus train.")
    checkpoint_path = _find_checkpoint(root)
    checkpoint = load_checkpoint(checkpoint_path)
    split_file = root / "split.json"
    history_file = root / "history.jsonl"
    history: list[dict[str, Any]] = []
    if history_file.is_file():
        lines = history_file.read_text(encoding="utf-8").splitlines()
        history = [json.loads(line) for line in lines if line.strip()]
    metrics_file, predictions_file = root / "test_metrics.json", root / "test_predictions.csv"
    cv = next(((f, _read_json(f)) for f in (root / "cv.json", root.parent / "cv.json") if f.is_file()), None)
    calibration = next(
        (_read_json(f) for f in (root / "calibration.json", root.parent / "calibration.json") if f.is_file()), None
    )
    bootstrap = next(((root / n, _read_json(root / n)) for n in _BOOTSTRAP_FILES if (root / n).is_file()), None)
    return _Run(
        root=root,
        checkpoint_path=checkpoint_path,
        checkpoint=checkpoint,
        config=dict(checkpoint.train_config),
        split=_read_json(split_file) if split_file.is_file() else None,
        history=history,
        metrics=_read_json(metrics_file) if metrics_file.is_file() else None,
        predictions=_read_predictions(predictions_file, checkpoint.class_names) if predictions_file.is_file() else None,
        cv=cv,
        calibration=calibration if isinstance(calibration, dict) else None,
        bootstrap_file=bootstrap,
    )


# --------------------------------------------------------------------------- formatting helpers


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _as_interval(value: Any, method: str) -> _Interval | None:
    """Read ``[low, high]``, ``{"low": .., "high": ..}`` (or lower/upper, ci_low/ci_high, ci: [..])."""
    if isinstance(value, Mapping):
        for low_key, high_key in (("low", "high"), ("lower", "upper"), ("ci_low", "ci_high")):
            if low_key in value and high_key in value:
                return _as_interval([value[low_key], value[high_key]], method)
        for key in ("ci", "ci95", "interval"):
            if key in value:
                return _as_interval(value[key], method)
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return _Interval(float(value[0]), float(value[1]), method)
    return None


def _intervals_from(data: Any, method: str, prefix: str = "") -> dict[str, _Interval]:
    """Every ``metric -> interval`` found in a (possibly nested) JSON object."""
    found: dict[str, _Interval] = {}
    if not isinstance(data, Mapping):
        return found
    for key, value in data.items():
        name = f"{prefix}{key}"
        interval = _as_interval(value, method)
        if interval is not None:
            found[name] = interval
        elif isinstance(value, Mapping):
            found.update(_intervals_from(value, method, f"{name}/"))
    return found


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"auc": {"benign": 0.9}}`` -> ``{"auc/benign": 0.9}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _stored_intervals(run: _Run) -> dict[str, _Interval]:
    """Intervals already computed by breastus (cv.json, bootstrap files, test_metrics.json)."""
    if run.bootstrap_file is not None:
        path, data = run.bootstrap_file
        found = _intervals_from(data, f"from {path.name}")
        if found:
            return found
    for key in _CI_KEYS:
        if run.metrics is not None and key in run.metrics:
            found = _intervals_from(run.metrics[key], "from test_metrics.json")
            if found:
                return found
    return {}


def _is_busi(run: _Run) -> bool:
    paths = [str(p) for p in (run.split or {}).get("paths", [])]
    cv_groups = run.cv[1].get("groups") if run.cv is not None and isinstance(run.cv[1], Mapping) else None
    if isinstance(cv_groups, Mapping):
        paths += [str(p) for group in cv_groups.get("multi_image_groups") or [] for p in group]
    names = tuple(run.checkpoint.class_names)
    return names == DEFAULT_CLASS_NAMES and any(Path(p).name.startswith(("benign (", "malignant (")) for p in paths)


def _cv_data(run: _Run) -> Mapping[str, Any] | None:
    return run.cv[1] if run.cv is not None and isinstance(run.cv[1], Mapping) else None


def _data_root(run: _Run) -> str | None:
    paths = [str(p) for p in (run.split or {}).get("paths", [])]
    if not paths:
        cv = _cv_data(run)
        return str(cv["data"]) if cv is not None and cv.get("data") else None
    try:
        common = Path(os.path.commonpath(paths))
    except ValueError:
        return None
    return str(common.parent if common.name in run.checkpoint.class_names else common)


def _class_of(path: str, class_names: Sequence[str]) -> str | None:
    parent = Path(path).parent.name
    return parent if parent in class_names else None


# --------------------------------------------------------------------------- sections


def _intended_use(run: _Run) -> list[str]:
    classes = ", ".join(run.checkpoint.class_names)
    return [
        "## Intended use",
        "",
        f"Research on automatic classification of breast ultrasound (B-mode) images into {classes}: "
        "benchmarking, method development and teaching. Inputs are single 2-D grayscale ultrasound frames "
        "like those of the training data; outputs are class probabilities.",
        "",
        "**This model is not a medical device.** It has not been cleared or approved by any regulator, was not "
        "validated prospectively or on patients, and must not be used for diagnosis, screening, triage or any "
        "other clinical decision. Out of scope: images of other organs or modalities, Doppler or elastography "
        "images, and any population or scanner not represented in the training data.",
    ]


def _model_section(run: _Run) -> list[str]:
    ck, info = run.checkpoint, run.checkpoint.model_info
    return [
        "## Model",
        "",
        f"- Architecture: `{info.name}` ({info.num_classes}-way classification head)",
        f"- Initial weights: `{info.weights}`",
        f"- Input: grayscale image resized to {ck.image_size}×{ck.image_size} px, normalised with "
        f"mean {list(info.mean)} and std {list(info.std)}",
        f"- Output classes (in order): {', '.join(f'`{c}`' for c in ck.class_names)}",
        f"- Softmax temperature: {ck.temperature:g}" + (" (uncalibrated)" if ck.temperature == 1.0 else ""),
        f"- Checkpoint: `{run.checkpoint_path.name}` (epoch {ck.epoch}), written by breastus {ck.breastus_version}",
    ]


def _data_section(run: _Run) -> list[str]:
    lines = ["## Data", ""]
    root = _data_root(run)
    names = run.checkpoint.class_names
    if run.split is not None:
        paths = [str(p) for p in run.split.get("paths", [])]
        lines.append(f"- Source: `{root}` ({len(paths)} images)" if root else f"- {len(paths)} images")
        known = any(_class_of(p, names) is not None for p in paths)
        rows = []
        for part in ("train", "val", "test"):
            indices = [int(i) for i in run.split.get(part, [])]
            counts = [sum(1 for i in indices if i < len(paths) and _class_of(paths[i], names) == c) for c in names]
            rows.append([part, len(indices), *(counts if known else [])])
        lines += ["", *_table(["part", "images", *(names if known else [])], rows)]
    elif run.cv is not None and isinstance(run.cv[1], Mapping) and run.cv[1].get("data"):
        lines.append(f"- Source: `{run.cv[1]['data']}`, split into cross-validation folds (see below).")
    else:
        lines.append("- No `split.json` in the run folder; the data and split are unknown.")
    lines.append("")
    if _is_busi(run):
        lines += [
            "### Dataset: BUSI and its caveats",
            "",
            "BUSI (Al-Dhabyani et al., *Dataset of breast ultrasound images*, Data in Brief 28, 2020, "
            "doi:10.1016/j.dib.2019.104863; CC BY 4.0): 780 images (437 benign, 210 malignant, 133 normal) "
            "collected in 2018 at one hospital (Baheya Hospital, Cairo) from 600 women aged 25–75, on LOGIQ E9 "
            "scanners. Known problems that limit what any metric on it means:",
            "",
            "- **Duplicates.** The same picture is filed more than once, exactly or nearly (re-saved, re-cropped); "
            "Pawłowska et al. (Data in Brief 48, 2023) report 235 duplicated images. Random image-level splits "
            "put copies on both sides and inflate test metrics.",
            "- **Label conflicts.** Some images appear under two classes (e.g. `benign (433).png` and "
            "`malignant (145).png` are the same picture), so a few labels are wrong whichever way.",
            "- **No patient IDs.** Several images come from one woman, and splits cannot keep patients together; "
            "grouping near-duplicates removes the worst leakage but not all of it, so metrics may still be "
            "optimistic.",
            "- **Burned-in annotations.** About 295 images carry calipers, Doppler markers or text, and some are "
            "axilla images; a model can learn such shortcuts instead of the lesion.",
            "- **One site, one scanner family, small classes.** Expect lower performance on other hospitals' "
            "images; the normal class has only 133 images.",
            "",
        ]
    if run.config.get("group_duplicates") is False:
        lines += [
            "**Warning: this run did not keep near-duplicate images together** (`group_duplicates=False`); its "
            "test metrics are inflated by leakage and are for comparison only.",
            "",
        ]
    elif run.config:
        lines += [
            "Exact and near-duplicate images (perceptual-hash distance ≤ "
            f"{run.config.get('duplicate_threshold', 'n/a')}) were kept in one part of the split.",
            "",
        ]
    return lines


def _protocol_section(run: _Run) -> list[str]:
    cfg = run.config
    lines = ["## Training protocol", ""]
    if not cfg:
        return [*lines, "The checkpoint holds no training configuration.", ""]
    keys = [
        ("model", "model"),
        ("pretrained", "initial weights"),
        ("image_size", "image size (px)"),
        ("epochs", "epochs"),
        ("batch_size", "batch size"),
        ("optimizer", "optimizer"),
        ("lr", "learning rate"),
        ("weight_decay", "weight decay"),
        ("scheduler", "schedule"),
        ("label_smoothing", "label smoothing"),
        ("class_weights", "class weights"),
        ("early_stopping_patience", "early stopping patience"),
        ("seed", "seed"),
        ("val_size", "validation fraction"),
        ("test_size", "test fraction"),
        ("group_duplicates", "duplicates grouped"),
        ("precision", "precision setting (CPU)"),
        ("progressive_resize", "progressive resizing (epoch, px)"),
    ]
    lines += _table(["setting", "value"], [[label, cfg.get(key)] for key, label in keys if key in cfg])
    lines.append("")
    lines.append(
        "The split is seeded and stratified by class; the model with the best validation macro-F1 "
        "(`best.pt`) is evaluated once on the held-out test part."
    )
    if run.history:
        best = max(run.history, key=lambda r: r.get("val_macro_f1", -1.0))
        seconds = sum(float(r.get("seconds", 0.0)) for r in run.history)
        lines.append(
            f"Trained {len(run.history)} epoch(s) in {seconds / 60:.1f} min; best validation macro-F1 "
            f"{_fmt(best.get('val_macro_f1'))} at epoch {best.get('epoch')}."
        )
        ran = sorted({str(r.get("precision", "fp32")) for r in run.history})
        lines.append(
            f"Arithmetic that ran: {' and '.join(ran)} (autocast; weights, checkpoints and probabilities "
            "are float32)."
            if ran != ["fp32"]
            else "Arithmetic that ran: fp32."
        )
    lines.append("")
    return lines


def _metric_rows(metrics: Mapping[str, Any], names: Sequence[str]) -> list[tuple[str, str, Any]]:
    rows: list[tuple[str, str, Any]] = [
        ("accuracy", "accuracy", metrics.get("accuracy")),
        ("macro_f1", "macro-F1", metrics.get("macro_f1")),
        ("macro_auc", "macro one-vs-rest AUC", metrics.get("macro_auc")),
    ]
    for group in ("auc", "sensitivity", "specificity"):
        values = metrics.get(group) or {}
        rows += [(f"{group}/{c}", f"{group} {c}", values.get(c)) for c in names if isinstance(values, Mapping)]
    return rows


def _metrics_section(run: _Run, n_bootstrap: int, seed: int) -> list[str]:
    names = run.checkpoint.class_names
    lines = ["## Metrics on the held-out test part", ""]
    metrics = run.metrics
    if metrics is None and run.predictions is not None:
        metrics = compute_metrics(*run.predictions, names).to_dict()
    if metrics is None:
        if run.cv is not None:
            return [*lines, "This is a cross-validation folder: see *Cross-validation* below.", ""]
        return [*lines, "No `test_metrics.json` or `test_predictions.csv` in the run folder.", ""]
    intervals = _stored_intervals(run)
    if not intervals and run.predictions is not None and n_bootstrap > 0:
        labels, probabilities = run.predictions
        computed = bootstrap_ci(labels, probabilities, names, n_resamples=n_bootstrap, seed=seed)
        method = f"percentile bootstrap over test images ({n_bootstrap} resamples, seed {seed})"
        intervals = _intervals_from(computed, method)
    rows = []
    for key, label, value in _metric_rows(metrics, names):
        ci = intervals.get(key)
        rows.append([label, value, "n/a" if ci is None else f"{ci.low:.3f} – {ci.high:.3f}"])
    lines.append(f"{metrics.get('n', 'n/a')} test images.")
    lines += ["", *_table(["metric", "value", "95% CI"], rows), ""]
    methods = sorted({ci.method for ci in intervals.values()})
    if methods:
        lines.append(f"Confidence intervals: {'; '.join(methods)}.")
        lines.append("They reflect the sampling of test images only, not the variation between training runs or sites.")
    else:
        lines.append("No confidence intervals: neither stored intervals nor per-image predictions were found.")
    shown = {"n", "accuracy", "macro_f1", "macro_auc"}
    extra = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    extra = {k: v for k, v in extra.items() if k not in shown}
    if extra:
        lines += ["", *_table(["other metric", "value"], [[k, v] for k, v in extra.items()])]
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and len(matrix) == len(names):
        lines += ["", "Confusion matrix (rows: true class, columns: predicted class):", ""]
        lines += _table(["true \\ predicted", *names], [[c, *row] for c, row in zip(names, matrix, strict=True)])
    lines.append("")
    return lines


def _cv_section(run: _Run) -> list[str]:
    if run.cv is None or not isinstance(run.cv[1], Mapping):
        return []
    path, data = run.cv
    lines = ["## Cross-validation", "", f"From `{path}`."]
    folds, mean, std = data.get("folds"), data.get("mean"), data.get("std")
    groups = data.get("groups")
    if isinstance(folds, list):
        text = f"{len(folds)} folds"
        if isinstance(groups, Mapping) and "n_images" in groups:
            text += f" over {groups['n_images']} images"
            if groups.get("source"):
                text += f"; groups from {groups['source']}, never split across folds"
        lines.append(text + ".")
    lines.append("")
    if isinstance(mean, Mapping):
        meta = data.get("bootstrap")
        method = "bootstrap of the pooled out-of-fold predictions"
        if isinstance(meta, Mapping) and "resamples" in meta:
            method = (
                f"percentile bootstrap over {meta.get('unit', 'image')}s of the pooled out-of-fold predictions "
                f"({meta['resamples']} resamples)"
            )
        intervals: dict[str, _Interval] = {}
        for key in _CI_KEYS:
            if key in data:
                intervals = _intervals_from(data[key], method)
                if intervals:
                    break
        rows = []
        flat_std = _flatten(std) if isinstance(std, Mapping) else {}
        for key, value in _flatten(mean).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                spread = flat_std.get(key)
                ci = intervals.get(key)
                rows.append([key, value, spread, "n/a" if ci is None else f"{ci.low:.3f} – {ci.high:.3f}"])
        lines += _table(["metric", "mean over folds", "std over folds", "95% CI (pooled)"], rows)
        if intervals:
            lines += ["", f"Confidence intervals: {method}."]
        lines.append("")
    return lines


def _calibration_section(run: _Run) -> list[str]:
    lines = ["## Calibration", ""]
    temperature = run.checkpoint.temperature
    lines.append(
        f"Softmax temperature in the checkpoint: {temperature:g}"
        + (" (no temperature scaling applied)." if temperature == 1.0 else " (fitted by temperature scaling).")
    )
    if run.calibration is not None:
        rows = [
            [k, int(v) if k.rsplit("/", 1)[-1] in ("n", "n_bins") and isinstance(v, float) else v]
            for k, v in _flatten(run.calibration).items()
            if isinstance(v, (int, float, str, type(None)))
        ]
        lines += ["", "From `calibration.json` (ECE: expected calibration error, NLL: negative log-likelihood):", ""]
        lines += _table(["quantity", "value"], rows)
    elif run.predictions is not None:
        labels, probabilities = run.predictions
        ece = expected_calibration_error(probabilities, labels)
        lines.append(
            f"Expected calibration error of the top label on the test part (15 equal-width bins): {ece:.3f}. "
            "No `calibration.json` was found; probabilities may be over- or under-confident."
        )
    lines.append("")
    return lines


def _failure_section(run: _Run) -> list[str]:
    names = run.checkpoint.class_names
    lines = ["## Known failure modes", ""]
    metrics = run.metrics
    if metrics is None and run.predictions is not None:
        metrics = compute_metrics(*run.predictions, names).to_dict()
    matrix = (metrics or {}).get("confusion_matrix")
    if isinstance(matrix, list) and len(matrix) == len(names):
        errors = [(matrix[i][j], names[i], names[j]) for i in range(len(names)) for j in range(len(names)) if i != j]
        errors = sorted((e for e in errors if e[0] > 0), reverse=True)
        if errors:
            count, true, pred = errors[0]
            lines.append(f"- Most frequent error on the test part: {true} predicted as {pred} ({count} image(s)).")
        sensitivity = (metrics or {}).get("sensitivity") or {}
        defined = {c: v for c, v in sensitivity.items() if v is not None}
        if defined:
            worst = min(defined, key=lambda c: defined[c])
            lines.append(f"- Lowest sensitivity: {worst} ({defined[worst]:.3f}).")
    lines += [
        "- Every input gets one of the known classes: there is no detection of images outside the training "
        "distribution (other organs, Doppler, screenshots), and the probabilities do not flag them.",
        "- Performance drops on images from other hospitals and scanners (field of view, gain, annotations); "
        "evaluate on your own data with `breastus evaluate` before drawing conclusions.",
        "- Burned-in calipers, markers or text can drive predictions (shortcut learning).",
        "- Small test sets give wide confidence intervals; differences inside them are not evidence.",
        "- Unreadable or unusual input files: see the *Failure modes* page of the breastus documentation.",
        "",
    ]
    return lines


def _cli_flags(command: str) -> dict[str, tuple[str, Any]]:
    """Option string and argparse default of each TrainConfig field that ``breastus <command>`` can set."""
    import argparse

    from breastus.cli._main import COMMANDS

    parser = argparse.ArgumentParser()
    for module in COMMANDS:
        if command == module.NAME:
            module.add_arguments(parser)
    flags: dict[str, tuple[str, Any]] = {}
    special = {"early_stopping_patience": "--early-stopping", "num_workers": "--workers"}
    for action in parser._actions:
        for option in action.option_strings:
            flags[option] = (action.dest, action.default)
    out: dict[str, tuple[str, Any]] = {}
    for name in TrainConfig.__dataclass_fields__:
        option = special.get(name, "--" + name.replace("_", "-"))
        if option in flags:
            out[name] = (option, flags[option][1])
        elif f"--no-{name.replace('_', '-')}" in flags:
            out[name] = (f"--no-{name.replace('_', '-')}", True)
    return out


def _reproduce_section(run: _Run) -> list[str]:
    cv = _cv_data(run) if run.checkpoint_path.parent != run.root else None
    cfg = dict(cv["config"]) if cv is not None and isinstance(cv.get("config"), Mapping) else run.config
    data = _data_root(run) or "DATA_DIR"
    lines = ["## How to reproduce", ""]
    if not cfg:
        return [*lines, "The checkpoint holds no training configuration.", ""]
    defaults = TrainConfig().to_dict()
    command = "train" if cv is None else "cv"
    flags = _cli_flags(command)
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
        option, _ = flags[name]
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


def build_model_card(run_dir: str | Path, n_bootstrap: int = 1000, seed: int = 0) -> str:
    """The Markdown model card of a trained run.

    Parameters
    ----------
    run_dir : str or pathlib.Path
        The ``--out`` folder of ``breastus train`` (or a ``breastus cv`` output
        folder, whose first fold's checkpoint is described).
    n_bootstrap : int, default=1000
        Bootstrap resamples for the confidence intervals, used only when no
        stored intervals (``cv.json``, a bootstrap file, or intervals in
        ``test_metrics.json``) exist.
    seed : int, default=0
        Seed of the bootstrap.

    Returns
    -------
    str
        The card, in Markdown.

    Raises
    ------
    DataError
        If ``run_dir`` is missing or one of its files is unreadable.
    CheckpointError
        If the run folder holds no readable checkpoint.

    """
    run = _read_run(run_dir)
    info = run.checkpoint.model_info
    title = f"# Model card: {info.architecture} breast ultrasound classifier"
    lines = [
        title,
        "",
        f"Generated by breastus {__version__} from the run folder `{run.root}`.",
        "",
        *_intended_use(run),
        "",
        *_model_section(run),
        "",
        *_data_section(run),
        *_protocol_section(run),
        *_metrics_section(run, n_bootstrap, seed),
        *_cv_section(run),
        *_calibration_section(run),
        *_failure_section(run),
        *_reproduce_section(run),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(
    run_dir: str | Path, out: str | Path | None = None, n_bootstrap: int = 1000, seed: int = 0
) -> Path:
    """Write the Markdown model card of a trained run and return its path.

    Parameters
    ----------
    run_dir : str or pathlib.Path
        The run folder; see :func:`build_model_card`.
    out : str or pathlib.Path, optional
        Output file; default ``run_dir/model_card.md``.
    n_bootstrap : int, default=1000
    seed : int, default=0

    Returns
    -------
    pathlib.Path
        The file written.

    Examples
    --------
    >>> from breastus import write_model_card  # doctest: +SKIP
    >>> write_model_card("runs/busi-resnet18")  # doctest: +SKIP
    PosixPath('runs/busi-resnet18/model_card.md')

    """
    text = build_model_card(run_dir, n_bootstrap=n_bootstrap, seed=seed)
    target = Path(out) if out is not None else Path(run_dir) / MODEL_CARD_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
