"""``breastus predict``: classify image files or folders."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from breastus._errors import DataError
from breastus.data._io import IMAGE_SUFFIXES
from breastus.prediction._predictor import Prediction, Predictor, iter_images

NAME = "predict"
HELP = "Classify images (files or folders) with a trained checkpoint."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``predict`` options."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt / last.pt, or a run folder")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="image files or folders (searched recursively)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object per image")
    output.add_argument("--csv", metavar="FILE", help="write path,label,probabilities to FILE (row by row)")
    parser.add_argument("--tta", action="store_true", help="average with the horizontally mirrored image")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="CPU arithmetic (auto: bf16 where the CPU computes it natively, AVX-512 BF16/AMX; else fp32)",
    )
    parser.add_argument(
        "--on-error", choices=["raise", "skip"], default="raise", help="what to do with unreadable images"
    )


def expand_paths(paths: Sequence[str]) -> Iterator[Path]:
    """The files named on the command line, each folder replaced by its images (sorted, masks left out)."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from iter_images(path)
        else:
            yield path


def run(args: argparse.Namespace) -> int:
    """Predict and print (or write) the results as they come."""
    predictor = Predictor.from_checkpoint(
        args.checkpoint, device=args.device, tta=args.tta, batch_size=args.batch_size, precision=args.precision
    )
    predictions = predictor.predict_paths(expand_paths(args.paths), on_error=args.on_error)
    names = predictor.class_names
    count = 0
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", *[f"p_{c}" for c in names]])
            for p in predictions:  # one flushed row per image: an interrupted run keeps what it finished
                writer.writerow([p.path, p.label, *[f"{p.probabilities[c]:.6f}" for c in names]])
                handle.flush()
                count += 1
    else:
        for p in predictions:
            print(json.dumps(p.to_dict()) if args.json else _line(p), flush=True)
            count += 1
    if count == 0:
        raise DataError(
            f"No image was classified: {args.paths} hold no readable image file "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}; lesion masks and hidden files are skipped)."
        )
    return 0


def _line(p: Prediction) -> str:
    probs = "  ".join(f"{c}={v:.3f}" for c, v in p.probabilities.items())
    return f"{p.path}\t{p.label}\t{probs}"
