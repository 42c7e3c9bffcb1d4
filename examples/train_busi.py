"""Train a breast ultrasound classifier on BUSI and print its test metrics.

The data are split (seeded, stratified, near-duplicate images kept together),
the model is trained with validation after every epoch, and the best checkpoint
is evaluated once on the held-out test part. The run folder then holds
``best.pt``, ``history.jsonl``, ``split.json``, ``test_metrics.json``,
``test_predictions.csv`` and a Markdown model card.

Usage::

    python examples/train_busi.py                      # ResNet-18, 224 px, 20 epochs (hours on a CPU)
    python examples/train_busi.py --model tf_efficientnet_lite0 --pretrained imagenet --epochs 12
    python examples/train_busi.py --smoke              # 60 images, 32 px, 1 epoch: under a minute

BUSI is read from ``$BREASTUS_DATA``, else ``../shared/datasets/busi`` beside the
repository, else the folder given as the first argument.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from breastus import TrainConfig, UltrasoundDataset, train_and_evaluate, write_model_card

REPO = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    return Path(os.environ.get("BREASTUS_DATA", REPO.parent / "shared" / "datasets" / "busi"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=None, help="BUSI folder (default: $BREASTUS_DATA)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/example-busi)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--pretrained", default="none", help="none, imagenet or a weights file")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--smoke", action="store_true", help="tiny run: 20 images per class, 32 px, 1 epoch")
    args = parser.parse_args()

    data = args.data or default_data()
    dataset = UltrasoundDataset.from_folder(data)
    if args.smoke:
        # the first 20 images of each class: enough to exercise every step quickly
        keep = np.concatenate([np.flatnonzero(dataset.labels == c)[:20] for c in range(len(dataset.class_names))])
        dataset = dataset.subset(keep)
        config = TrainConfig(
            model="resnet18", pretrained="none", image_size=32, epochs=1, batch_size=16, progress=False
        )
        run_dir = args.out or REPO / "runs" / "example-smoke"
    else:
        config = TrainConfig(
            model=args.model, pretrained=args.pretrained, image_size=args.image_size, epochs=args.epochs
        )
        run_dir = args.out or REPO / "runs" / "example-busi"

    print(f"Training {config.model} on {dataset} for {config.epochs} epoch(s) at {config.image_size} px...")
    result = train_and_evaluate(dataset, run_dir, config)

    history = result.history
    print(f"Best validation macro-F1 {history.best_score:.3f} at epoch {history.best_epoch}.")
    print(f"Test metrics ({len(result.split.test)} held-out images, duplicates kept together):")
    print(result.test.metrics.summary())
    card = write_model_card(run_dir, n_bootstrap=200 if args.smoke else 1000)
    print(f"Checkpoints, history and predictions: {run_dir}")
    print(f"Model card: {card}")


if __name__ == "__main__":
    main()
