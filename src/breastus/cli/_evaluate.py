"""``breastus evaluate``: metrics of a checkpoint on a labelled folder or manifest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from breastus._errors import ConfigError
from breastus._run_files import HISTORY_FILE
from breastus.data._dataset import UltrasoundDataset
from breastus.evaluation._binary import compute_binary_metrics
from breastus.evaluation._calibration import expected_calibration_error
from breastus.evaluation._evaluate import evaluate
from breastus.evaluation._plots import write_evaluation_plots
from breastus.prediction._predictor import Predictor
from breastus.training._history import read_history

NAME = "evaluate"
HELP = "Evaluate a trained checkpoint on a labelled folder (class sub-folders may be a subset) or CSV manifest."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt / last.pt, or a run folder")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with class sub-folders, or a CSV manifest")
    parser.add_argument("--json", metavar="FILE", help="write the metrics to FILE as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write per-image predictions to FILE")
    parser.add_argument("--tta", action="store_true", help="average with the horizontally mirrored image")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--on-error", choices=["raise", "skip"], default="raise", help="what to do with unreadable images"
    )
    parser.add_argument(
        "--plots", metavar="DIR", help="write confusion matrix, ROC, reliability and training-curve PNGs to DIR"
    )
    parser.add_argument(
        "--positive",
        metavar="CLASS",
        default=None,
        help="class of the one-vs-rest AUC and sensitivity at fixed specificity (default: malignant, if a class)",
    )
    parser.add_argument("--specificity", type=float, default=0.9, help="specificity at which sensitivity is reported")
    parser.add_argument(
        "--decision",
        choices=["argmax", "lesion"],
        default=None,
        help="multi-task models: 'lesion' calls an image normal only when no lesion is found (the default when "
        "the checkpoint has a calibrated lesion threshold); 'argmax' takes the most probable class",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics."""
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, tta=args.tta, decision=args.decision)
    dataset = UltrasoundDataset.from_path(args.data_dir, predictor.class_names, on_error=args.on_error)
    result = evaluate(predictor, dataset)
    print(result.metrics.summary())
    segmentation = result.segmentation
    if segmentation is not None:
        print(
            f"lesion masks ({segmentation.n} images, {segmentation.n_lesion} with a lesion): Dice "
            f"{_fmt(segmentation.dice)} IoU {_fmt(segmentation.iou)} (per lesion image), pooled Dice "
            f"{_fmt(segmentation.pooled_dice)} IoU {_fmt(segmentation.pooled_iou)}"
        )
    positive = args.positive or ("malignant" if "malignant" in predictor.class_names else None)
    if positive is not None and positive not in predictor.class_names:
        raise ConfigError(f"--positive must be one of {list(predictor.class_names)}. Got {positive!r} instead.")
    binary = None
    if positive is not None:
        binary = compute_binary_metrics(
            result.labels, result.probabilities, predictor.class_names, positive, specificity=args.specificity
        )
        print(binary.summary())
    ece = expected_calibration_error(result.probabilities, result.labels)
    print(f"expected calibration error (15 bins): {ece:.3f} (temperature {predictor.temperature:.3f})")
    if args.json:
        payload = {
            **result.metrics.to_dict(),
            "binary": binary and binary.to_dict(),
            "ece": ece,
            "segmentation": segmentation and segmentation.to_dict(),
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    if args.csv:
        result.write_csv(args.csv)
    if args.plots:
        source = Path(args.checkpoint)
        history = (source if source.is_dir() else source.parent) / HISTORY_FILE
        records = read_history(history) if history.is_file() else None
        written = write_evaluation_plots(
            args.plots, result.labels, result.probabilities, predictor.class_names, records, predicted=result.predicted
        )
        print(f"Plots: {', '.join(str(p) for p in written)}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
