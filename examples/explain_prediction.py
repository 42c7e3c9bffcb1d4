"""Explain one prediction: a Grad-CAM heatmap over the ultrasound image, scored against its lesion mask.

Usage::

    python examples/explain_prediction.py --checkpoint runs/busi/best.pt --image "benign (4).png"
    python examples/explain_prediction.py --smoke     # trains a tiny model first (< 60 s)

Without ``--checkpoint`` a small model is trained on a few BUSI images (read from
``$BREASTUS_DATA``, default ``../shared/datasets/busi``): with ``--smoke`` a
random-init ResNet-18 for one epoch at 64 px, which only shows the mechanics;
otherwise ImageNet-initialised EfficientNet-Lite0 for 3 epochs at 160 px.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
from pathlib import Path

import numpy as np

from breastus import DataError, Predictor, TrainConfig, Trainer, UltrasoundDataset
from breastus.data import load_image, load_mask
from breastus.explain import evaluate_localisation, save_overlay

DATA = Path(os.environ.get("BREASTUS_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets" / "busi"))


def train_small_model(out: Path, smoke: bool) -> Path:
    """Train on every 8th BUSI image (every 3rd without --smoke); return best.pt."""
    data = UltrasoundDataset.from_folder(DATA)
    step = 8 if smoke else 3
    train, val = data.subset(range(0, len(data), step)), data.subset(range(1, len(data), step * 4))
    if smoke:
        config = TrainConfig(model="resnet18", pretrained="none", image_size=64, epochs=1, batch_size=16)
    else:
        config = TrainConfig(model="tf_efficientnet_lite0", image_size=160, epochs=3, lr=5e-4, scheduler="cosine")
    trainer = Trainer(config.replace(progress=False), out / "run")
    trainer.fit(train, val)
    return trainer.best_checkpoint_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a breastus checkpoint; default: train a small model")
    parser.add_argument("--image", type=Path, help="image to explain; default a malignant BUSI image")
    parser.add_argument("--method", default="gradcam", help="gradcam, gradcam++, layercam or scorecam")
    parser.add_argument("--out", type=Path, help="output folder; default a new temporary folder")
    parser.add_argument("--smoke", action="store_true", help="tiny and fast (for CI)")
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="breastus-explain-"))
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or train_small_model(out, args.smoke)
    predictor = Predictor.from_checkpoint(checkpoint)

    image = args.image or DATA / "malignant" / "malignant (5).png"
    prediction = predictor.predict(image)
    heatmap = predictor.explain(image, method=args.method)  # the predicted class, at the image's size
    row, col = (int(i) for i in np.unravel_index(int(np.argmax(heatmap)), heatmap.shape))
    print(f"{image}: {prediction.label} ({prediction.confidence:.2f}); heatmap {heatmap.shape}, peak at ({row}, {col})")

    masks = sorted(image.parent.glob(f"{glob.escape(image.stem)}_mask*.png"))  # BUSI: <name>_mask.png
    mask = load_mask(masks, load_image(image).size) if masks else None
    if mask is not None and mask.any():
        report = evaluate_localisation([heatmap], [mask], method=args.method)
        print(report.summary())
    elif mask is not None:
        print("The image has an empty lesion mask (normal); nothing to score.")

    png = save_overlay(
        out / f"{image.stem}_{args.method}.png",
        image,
        heatmap,
        label=prediction.label,
        probability=prediction.confidence,
        truth=image.parent.name if masks else None,
        mask=mask,
    )
    print(f"Overlay written to {png}")


if __name__ == "__main__":
    try:
        main()
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
