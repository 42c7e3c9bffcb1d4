"""``breastus evaluate``: metrics of a checkpoint on a labelled folder or manifest."""

from __future__ import annotations

import argparse
import json

from breastus.data._dataset import UltrasoundDataset
from breastus.evaluation._evaluate import evaluate
from breastus.prediction._predictor import Predictor

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


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the metrics."""
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, tta=args.tta)
    dataset = UltrasoundDataset.from_path(args.data_dir, predictor.class_names, on_error=args.on_error)
    result = evaluate(predictor, dataset)
    print(result.metrics.summary())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result.metrics.to_dict(), handle, indent=2)
    if args.csv:
        result.write_csv(args.csv)
    return 0
