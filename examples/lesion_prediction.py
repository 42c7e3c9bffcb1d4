"""Lesion-aware prediction: find the lesion, call "normal" only when there is none, measure it.

A multi-task checkpoint (``breastus train --model unet/resnet18 ...``) segments the lesion
and classifies the image. For each image this example prints the label, the probability
that a lesion is present, its box and area (in mm² with ``--pixel-spacing``), writes the
predicted mask as ``<stem>_mask.png``, and scores the masks against BUSI's own (Dice).
With ``--crop-classifier`` it also runs segment-then-classify: the crop around each
predicted lesion is classified by a lesion-crop classifier and fused with the whole frame.

Usage::

    python examples/lesion_prediction.py runs/unet/best.pt path/to/images --masks masks/ --pixel-spacing 0.1 0.1
    python examples/lesion_prediction.py runs/unet/best.pt images/ --crop-classifier runs/crop/best.pt
    python examples/lesion_prediction.py --smoke   # tiny U-Net (trained if missing) on 12 BUSI images

The ``--smoke`` run trains ``runs/example-lesion-smoke/best.pt`` (U-Net, ResNet-18
encoder, 64 px, 1 epoch on 36 BUSI images) and a tiny whole-frame classifier standing in
for the crop classifier, if they are missing; it shows the calls, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from breastus import Predictor, TrainConfig, UltrasoundDataset, train_and_evaluate

REPO = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    return Path(os.environ.get("BREASTUS_DATA", REPO.parent / "shared" / "datasets" / "busi"))


def tiny_multitask_checkpoint(data: Path) -> Path:
    """``runs/example-lesion-smoke/best.pt``: a U-Net trained on 36 BUSI images at 64 px, if missing."""
    run_dir = REPO / "runs" / "example-lesion-smoke"
    if not (run_dir / "best.pt").is_file():
        dataset = UltrasoundDataset.from_folder(data)
        keep = np.concatenate([np.flatnonzero(dataset.labels == c)[:12] for c in range(len(dataset.class_names))])
        config = TrainConfig(
            model="unet/resnet18", pretrained="none", image_size=64, epochs=1, batch_size=12, progress=False
        )
        train_and_evaluate(dataset.subset(keep), run_dir, config)
    return run_dir / "best.pt"


def tiny_classifier(dataset: UltrasoundDataset, exclude: np.ndarray) -> Path:
    """A stand-in "crop classifier" for the smoke run: a whole-frame ResNet-18, 32 px, 1 epoch on 36 images.

    A real one is trained on lesion crops (``benchmarks/lesion_crop.py``, see the
    generalisation guide); any classifier with a subset of the classes fits.
    """
    run_dir = REPO / "runs" / "example-lesion-smoke-crop"
    if not (run_dir / "best.pt").is_file():
        keep = np.concatenate([np.flatnonzero(dataset.labels == c)[:12] for c in range(len(dataset.class_names))])
        config = TrainConfig(pretrained="none", image_size=32, epochs=1, batch_size=12, progress=False)
        train_and_evaluate(dataset.subset(np.setdiff1d(keep, exclude)), run_dir, config)
    return run_dir / "best.pt"


def dice(predicted: np.ndarray, truth: np.ndarray) -> float | None:
    """2|P∩T| / (|P| + |T|); ``None`` when both are empty."""
    total = int(predicted.sum()) + int(truth.sum())
    return None if total == 0 else 2.0 * float((predicted & truth).sum()) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="best.pt of a multi-task run (or the run folder)")
    parser.add_argument("folder", nargs="?", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--masks", type=Path, default=None, help="write <stem>_mask.png files here")
    parser.add_argument("--pixel-spacing", type=float, nargs=2, metavar=("DX", "DY"), help="mm per pixel")
    parser.add_argument("--crop-classifier", type=Path, default=None, help="checkpoint of a lesion-crop classifier")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many images")
    parser.add_argument(
        "--decision", choices=["lesion", "argmax"], default=None, help="label rule (default: the checkpoint's)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny U-Net, 12 BUSI images")
    args = parser.parse_args()

    if args.smoke:
        data = default_data()
        checkpoint = tiny_multitask_checkpoint(data)
        dataset = UltrasoundDataset.from_folder(data)
        picked = np.concatenate([np.flatnonzero(dataset.labels == c)[12:16] for c in range(len(dataset.class_names))])
        paths = [dataset.paths[i] for i in picked]
        truths = [dataset.load_mask(int(i)) for i in picked]
        masks_dir = args.masks or REPO / "runs" / "example-lesion-smoke" / "masks"
        crop_checkpoint = args.crop_classifier or tiny_classifier(dataset, picked)
        # One epoch on 36 images finds "lesions" everywhere, normals included, so the calibrated threshold
        # calls every image normal; the head's argmax keeps the masks (and the crop path) visible.
        decision = args.decision or "argmax"
    elif args.checkpoint is None or args.folder is None:
        parser.error("give CHECKPOINT and FOLDER (or --smoke)")
    else:
        from breastus.prediction import iter_images

        checkpoint, masks_dir, crop_checkpoint = args.checkpoint, args.masks, args.crop_classifier
        paths = list(iter_images(args.folder))[: args.limit]
        truths = [None] * len(paths)
        decision = args.decision

    predictor = Predictor.from_checkpoint(checkpoint, decision=decision)
    if not predictor.multitask:
        parser.error(f"{checkpoint} holds a classifier ({predictor.model_info.name}); train a unet/<encoder> model")
    print(
        f"{predictor.model_info.name}: decision={predictor.decision!r}, lesion threshold={predictor.lesion_threshold}"
    )
    spacing = None if args.pixel_spacing is None else (args.pixel_spacing[0], args.pixel_spacing[1])
    predictions = predictor.predict(list(paths), pixel_spacing_mm=spacing)
    scores: list[float] = []
    for prediction, truth in zip(predictions, truths, strict=True):
        assert prediction.mask is not None
        overlap = None if truth is None else dice(prediction.mask, truth.astype(bool))
        if overlap is not None:
            scores.append(overlap)
        area = f"{prediction.lesion_area_px} px" + (
            f" = {prediction.lesion_area_mm2:.1f} mm²" if prediction.lesion_area_mm2 is not None else ""
        )
        print(
            f"{Path(prediction.path or '?').name:24s} {prediction.label:10s} lesion p={prediction.lesion_probability:.3f}"
            f"  box={prediction.lesion_box}  area={area}" + ("" if overlap is None else f"  Dice={overlap:.3f}")
        )
        if masks_dir is not None:
            masks_dir.mkdir(parents=True, exist_ok=True)
            pixels = np.where(prediction.mask, 255, 0).astype(np.uint8)
            Image.fromarray(pixels).save(masks_dir / f"{Path(prediction.path or 'image').stem}_mask.png")
    if scores:
        print(f"Mean Dice over {len(scores)} images with a lesion or a predicted mask: {np.mean(scores):.3f}")
    if masks_dir is not None:
        print(f"Masks written to {masks_dir}")

    if crop_checkpoint is not None:
        crop_classifier = Predictor.from_checkpoint(crop_checkpoint)
        fused = predictor.with_crop_classifier(crop_classifier, weight=0.5).predict(list(paths))
        changed = sum(a.label != b.label for a, b in zip(predictions, fused, strict=True))
        cropped = sum(p.lesion_box is not None for p in fused)
        print(
            f"Segment-then-classify (mean of whole-frame and crop probabilities): {cropped} lesion crop(s) "
            f"classified, {changed} label(s) changed"
        )


if __name__ == "__main__":
    main()
