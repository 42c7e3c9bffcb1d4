"""Classify every image in a folder with a trained checkpoint and write a CSV.

Predictions are streamed: images are read a batch at a time and each row is
written (and flushed) as soon as it is known, so memory stays flat for any
number of images and an interrupted run keeps what it finished. Lesion masks
(``*_mask*.png``) are skipped.

Usage::

    python examples/predict_folder.py runs/example-busi/best.pt path/to/images --out predictions.csv
    python examples/predict_folder.py --smoke   # tiny checkpoint (trained if missing) on 30 BUSI images

The ``--smoke`` run reuses ``runs/example-smoke/best.pt`` (written by
``examples/train_busi.py --smoke``) or trains that tiny model first.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
from collections import Counter
from pathlib import Path

import numpy as np

from breastus import Predictor, TrainConfig, UltrasoundDataset, train_and_evaluate

REPO = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    return Path(os.environ.get("BREASTUS_DATA", REPO.parent / "shared" / "datasets" / "busi"))


def tiny_checkpoint(data: Path) -> Path:
    """``runs/example-smoke/best.pt``, trained on 36 BUSI images at 32 px if it does not exist yet."""
    run_dir = REPO / "runs" / "example-smoke"
    if not (run_dir / "best.pt").is_file():
        dataset = UltrasoundDataset.from_folder(data)
        keep = np.concatenate([np.flatnonzero(dataset.labels == c)[:12] for c in range(len(dataset.class_names))])
        config = TrainConfig(pretrained="none", image_size=32, epochs=1, batch_size=16, progress=False)
        train_and_evaluate(dataset.subset(keep), run_dir, config)
    return run_dir / "best.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="best.pt of a run (or the run folder)")
    parser.add_argument("folder", nargs="?", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("predictions.csv"), help="CSV file to write")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many images")
    parser.add_argument("--tta", action="store_true", help="average with the mirrored image")
    parser.add_argument("--smoke", action="store_true", help="tiny checkpoint, 30 BUSI images")
    args = parser.parse_args()

    if args.smoke:
        checkpoint = tiny_checkpoint(default_data())
        folder = args.folder or default_data()
        limit = args.limit or 30
        out = REPO / "runs" / "example-smoke" / "predictions.csv"
    elif args.checkpoint is None or args.folder is None:
        parser.error("give CHECKPOINT and FOLDER (or --smoke)")
    else:
        checkpoint, folder, limit, out = args.checkpoint, args.folder, args.limit, args.out

    predictor = Predictor.from_checkpoint(checkpoint, tta=args.tta)
    names = predictor.class_names
    counts: Counter[str] = Counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "confidence", *[f"p_{c}" for c in names]])
        # on_error="skip": unreadable files are logged and left out instead of stopping the run
        for prediction in itertools.islice(predictor.predict_folder(folder, on_error="skip"), limit):
            probabilities = [f"{prediction.probabilities[c]:.6f}" for c in names]
            writer.writerow([prediction.path, prediction.label, f"{prediction.confidence:.6f}", *probabilities])
            handle.flush()
            counts[prediction.label] += 1
    print(f"Classified {sum(counts.values())} image(s) from {folder} with {checkpoint}:")
    for name in names:
        print(f"  {name:<10} {counts[name]}")
    print(f"Predictions written to {out}")


if __name__ == "__main__":
    main()
