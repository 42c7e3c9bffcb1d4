"""The text of each model-card section but the last ("how to reproduce", in ``_reproduce.py``).

This module is private (see :mod:`breastus.reporting._model_card`). Every section
is a function of the run read by :func:`~breastus.reporting._run.read_run` that
returns Markdown lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from breastus.evaluation._bootstrap import bootstrap_ci
from breastus.evaluation._calibration import expected_calibration_error
from breastus.evaluation._metrics import compute_metrics
from breastus.reporting._run import Run, class_of, data_root, is_busi
from breastus.reporting._stats import CI_KEYS, Interval, flatten, intervals_from, stored_intervals


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}f}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return lines


def intended_use(run: Run) -> list[str]:
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


def _lesion_lines(run: Run) -> list[str]:
    """The task and lesion threshold of a multi-task model (none for a classifier)."""
    ck = run.checkpoint
    if ck.model_info.task == "classification":
        return []
    threshold = ck.lesion_threshold
    recall = run.config.get("lesion_min_normal_recall", 0.85)
    return [
        "- Task: lesion segmentation + classification (a U-Net decoder gives a per-pixel lesion probability; "
        "the image is called normal only when no lesion is found)",
        "- Lesion threshold: "
        + (
            "none calibrated (argmax decision)"
            if threshold is None
            else f"{threshold:.4g}, calibrated on the validation split to keep {recall:.0%} of its normal images normal"
        ),
    ]


def model_section(run: Run) -> list[str]:
    ck, info = run.checkpoint, run.checkpoint.model_info
    contract = ck.input_contract
    return [
        "## Model",
        "",
        f"- Architecture: `{info.name}` ({info.num_classes}-way classification head)",
        *_lesion_lines(run),
        f"- Initial weights: `{info.weights}`",
        f"- Input: grayscale image resized to {contract.image_size}×{contract.image_size} px, normalised with "
        f"mean {list(contract.mean)} and std {list(contract.std)}",
        f"- Output classes (in order): {', '.join(f'`{c}`' for c in ck.class_names)}",
        f"- Softmax temperature: {ck.temperature:g}" + (" (uncalibrated)" if ck.temperature == 1.0 else ""),
        f"- Checkpoint: `{run.checkpoint_path.name}` (epoch {ck.epoch}), written by breastus {ck.breastus_version}",
    ]


def data_section(run: Run) -> list[str]:
    lines = ["## Data", ""]
    root = data_root(run)
    names = run.checkpoint.class_names
    if run.split is not None:
        paths = [str(p) for p in run.split.get("paths", [])]
        lines.append(f"- Source: `{root}` ({len(paths)} images)" if root else f"- {len(paths)} images")
        known = any(class_of(p, names) is not None for p in paths)
        rows = []
        for part in ("train", "val", "test"):
            indices = [int(i) for i in run.split.get(part, [])]
            counts = [sum(1 for i in indices if i < len(paths) and class_of(paths[i], names) == c) for c in names]
            rows.append([part, len(indices), *(counts if known else [])])
        lines += ["", *table(["part", "images", *(names if known else [])], rows)]
    elif run.cv is not None and isinstance(run.cv[1], Mapping) and run.cv[1].get("data"):
        lines.append(f"- Source: `{run.cv[1]['data']}`, split into cross-validation folds (see below).")
    else:
        lines.append("- No `split.json` in the run folder; the data and split are unknown.")
    lines.append("")
    if is_busi(run):
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


def protocol_section(run: Run) -> list[str]:
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
    lines += table(["setting", "value"], [[label, cfg.get(key)] for key, label in keys if key in cfg])
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
            f"{fmt(best.get('val_macro_f1'))} at epoch {best.get('epoch')}."
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
    if metrics.get("lesion_called_normal") is not None:
        rows += [
            ("lesion_called_normal", "lesion images called normal", metrics.get("lesion_called_normal")),
            ("malignant_called_normal", "malignant images called normal", metrics.get("malignant_called_normal")),
        ]
    segmentation = metrics.get("segmentation")
    if isinstance(segmentation, Mapping):
        rows += [
            ("segmentation/dice", "lesion Dice (per lesion image)", segmentation.get("dice")),
            ("segmentation/iou", "lesion IoU (per lesion image)", segmentation.get("iou")),
            ("segmentation/pooled_dice", "lesion Dice (pooled pixels, normals included)", segmentation.get("pooled_dice")),
        ]
    for group in ("auc", "sensitivity", "specificity"):
        values = metrics.get(group) or {}
        rows += [(f"{group}/{c}", f"{group} {c}", values.get(c)) for c in names if isinstance(values, Mapping)]
    return rows


def metrics_section(run: Run, n_bootstrap: int, seed: int) -> list[str]:
    names = run.checkpoint.class_names
    lines = ["## Metrics on the held-out test part", ""]
    metrics = run.metrics
    if metrics is None and run.predictions is not None:
        metrics = compute_metrics(*run.predictions, names).to_dict()
    if metrics is None:
        if run.cv is not None:
            return [*lines, "This is a cross-validation folder: see *Cross-validation* below.", ""]
        return [*lines, "No `test_metrics.json` or `test_predictions.csv` in the run folder.", ""]
    intervals = stored_intervals(run)
    if not intervals and run.predictions is not None and n_bootstrap > 0:
        labels, probabilities = run.predictions
        computed = bootstrap_ci(labels, probabilities, names, n_resamples=n_bootstrap, seed=seed)
        method = f"percentile bootstrap over test images ({n_bootstrap} resamples, seed {seed})"
        intervals = intervals_from(computed, method)
    rows = []
    for key, label, value in _metric_rows(metrics, names):
        ci = intervals.get(key)
        rows.append([label, value, "n/a" if ci is None else f"{ci.low:.3f} – {ci.high:.3f}"])
    lines.append(f"{metrics.get('n', 'n/a')} test images.")
    lines += ["", *table(["metric", "value", "95% CI"], rows), ""]
    methods = sorted({ci.method for ci in intervals.values()})
    if methods:
        lines.append(f"Confidence intervals: {'; '.join(methods)}.")
        lines.append("They reflect the sampling of test images only, not the variation between training runs or sites.")
    else:
        lines.append("No confidence intervals: neither stored intervals nor per-image predictions were found.")
    shown = {"n", "accuracy", "macro_f1", "macro_auc", "lesion_called_normal", "malignant_called_normal"}
    extra = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    extra = {k: v for k, v in extra.items() if k not in shown}
    if extra:
        lines += ["", *table(["other metric", "value"], [[k, v] for k, v in extra.items()])]
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, list) and len(matrix) == len(names):
        lines += ["", "Confusion matrix (rows: true class, columns: predicted class):", ""]
        lines += table(["true \\ predicted", *names], [[c, *row] for c, row in zip(names, matrix, strict=True)])
    lines.append("")
    return lines


def cv_section(run: Run) -> list[str]:
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
        intervals: dict[str, Interval] = {}
        for key in CI_KEYS:
            if key in data:
                intervals = intervals_from(data[key], method)
                if intervals:
                    break
        rows = []
        flat_std = flatten(std) if isinstance(std, Mapping) else {}
        for key, value in flatten(mean).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                spread = flat_std.get(key)
                ci = intervals.get(key)
                rows.append([key, value, spread, "n/a" if ci is None else f"{ci.low:.3f} – {ci.high:.3f}"])
        lines += table(["metric", "mean over folds", "std over folds", "95% CI (pooled)"], rows)
        if intervals:
            lines += ["", f"Confidence intervals: {method}."]
        lines.append("")
    return lines


def calibration_section(run: Run) -> list[str]:
    lines = ["## Calibration", ""]
    temperature = run.checkpoint.temperature
    lines.append(
        f"Softmax temperature in the checkpoint: {temperature:g}"
        + (" (no temperature scaling applied)." if temperature == 1.0 else " (fitted by temperature scaling).")
    )
    if run.calibration is not None:
        rows = [
            [k, int(v) if k.rsplit("/", 1)[-1] in ("n", "n_bins") and isinstance(v, float) else v]
            for k, v in flatten(run.calibration).items()
            if isinstance(v, (int, float, str, type(None)))
        ]
        lines += ["", "From `calibration.json` (ECE: expected calibration error, NLL: negative log-likelihood):", ""]
        lines += table(["quantity", "value"], rows)
    elif run.predictions is not None:
        labels, probabilities = run.predictions
        ece = expected_calibration_error(probabilities, labels)
        lines.append(
            f"Expected calibration error of the top label on the test part (15 equal-width bins): {ece:.3f}. "
            "No `calibration.json` was found; probabilities may be over- or under-confident."
        )
    lines.append("")
    return lines


def failure_section(run: Run) -> list[str]:
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
