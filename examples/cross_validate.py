"""Honest evaluation on BUSI: audit the data, then cross-validate on duplicate-aware folds.

1. ``audit`` finds exact and near-duplicate images (BUSI files some pictures twice,
   a few under two classes) and writes a JSON and a self-contained HTML report.
2. ``cross_validate`` trains one model per fold on stratified folds that keep every
   duplicate group whole, pools the out-of-fold predictions and reports the mean and
   standard deviation over folds plus bootstrap 95 % confidence intervals.

Usage::

    python examples/cross_validate.py --smoke          # 2 folds, 46 images, 32 px, 1 epoch (< 60 s)
    python examples/cross_validate.py --folds 5 --model tf_efficientnet_lite0 --pretrained imagenet \\
        --image-size 224 --epochs 20 --out runs/cv-lite0

BUSI is read from ``$BREASTUS_DATA`` (default ``../shared/datasets/busi``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from breastus import TrainConfig, UltrasoundDataset, audit, cross_validate

DATA = Path(os.environ.get("BREASTUS_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets" / "busi"))
# Two pairs of duplicates filed under two classes, and a benign pair, kept in the smoke subset.
KNOWN_DUPLICATES = (
    "benign/benign (433).png",
    "malignant/malignant (145).png",
    "benign/benign (269).png",
    "normal/normal (1).png",
    "benign/benign (1).png",
    "benign/benign (318).png",
)


def smoke_subset(data: UltrasoundDataset) -> UltrasoundDataset:
    """46 images: the known duplicates plus the first 14 of each class."""
    wanted = {DATA / p for p in KNOWN_DUPLICATES}
    picked = [i for i, p in enumerate(data.paths) if p in wanted]
    for label in range(len(data.class_names)):
        picked += [int(i) for i in np.flatnonzero(data.labels == label)[:14]]
    return data.subset(sorted(set(picked)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="BUSI-style folder")
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary folder)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--groups", choices=["audit", "none"], default="audit")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="tiny and fast (for CI)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="breastus-cv-"))
    started = time.perf_counter()

    data = UltrasoundDataset.from_folder(args.data)
    if args.smoke:
        data = smoke_subset(data)
        # Audit just these images (a CSV manifest); the full BUSI audit takes about 20 s.
        out.mkdir(parents=True, exist_ok=True)
        rows = [f'"{s.path}",{data.class_names[s.label]},"{";".join(map(str, s.mask_paths))}"' for s in data.samples]
        (out / "subset.csv").write_text("path,label,mask\n" + "\n".join(rows) + "\n", encoding="utf-8")
        report = audit(out / "subset.csv")
        config = TrainConfig(pretrained="none", image_size=32, epochs=1, batch_size=16, progress=False, device="cpu")
        folds, bootstrap = 2, 200
    else:
        report = audit(args.data)
        config = TrainConfig(
            model=args.model, pretrained=args.pretrained, image_size=args.image_size, epochs=args.epochs, progress=False
        )
        folds, bootstrap = args.folds, 1000
    print(report.summary())
    report.write_json(out / "audit.json")
    report.write_html(out / "audit.html")
    print(f"Audit reports: {out / 'audit.json'}, {out / 'audit.html'}")

    result = cross_validate(
        data,
        out / "cv",
        config,
        folds=folds,
        groups=args.groups,
        bootstrap=bootstrap,
        on_fold=lambda row: print(f"fold {row['fold']} done: accuracy {row['accuracy']:.3f}", flush=True),
    )
    print(result.summary())
    same_fold = {p.name: int(f) for p, f in zip(result.paths, result.fold_of, strict=True)}
    if args.groups == "audit" and {"benign (433).png", "malignant (145).png"} <= set(same_fold):
        assert same_fold["benign (433).png"] == same_fold["malignant (145).png"]
        print("benign (433) and malignant (145), the same picture, were kept in one fold.")
    print(f"cv.json, oof_predictions.csv and plots/ in {out / 'cv'} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
