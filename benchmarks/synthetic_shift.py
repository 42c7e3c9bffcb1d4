"""Synthetic scanner-shift benchmark: how much each corruption costs each preprocessing recipe.

In the spirit of ImageNet-C (Hendrycks & Dietterich, 2019): every recipe is trained on the
training part of one grouped BUSI split (duplicates kept together, the split of
``breastus train``), then its best checkpoint classifies the held-out test part clean and under
each corruption at three strengths. The table gives the macro-AUC (three classes) and the
malignant-vs-rest AUC, and the drop from the clean figure.

Corruptions (applied to the decoded 8-bit grayscale image, after scaling its longer side to
twice the model input; the same random draws for every recipe):

  gain        grey levels × 0.7 / 0.5 / 0.35 (darker image)
  contrast    around the mean × 0.7 / 0.5 / 0.35
  gamma       x ** 1.5 / 2.0 / 2.5 on [0, 1]
  speckle     multiplicative noise of 2-px grain, sigma 0.15 / 0.3 / 0.45
  blur        Gaussian, sigma 1 / 2 / 3 px
  downsample  down by 2 / 3 / 4, then back up (bilinear)
  border      black margin right (10 / 25 / 50 % of the width) and bottom (5 / 12 / 25 %)
  text_ruler  screen-capture margins: a ruler strip left and text lines on top
              (margins 8 / 16 / 25 %; 2 / 4 / 6 text lines)

Recipes:

  default         Preprocessing() (whole frame, stretched), default augmentation
  robust          Preprocessing(crop=True, resize="letterbox", intensity="percentile")
  robust-scanner  robust + augmentation="scanner"
  default-scanner default preprocessing + augmentation="scanner"

As run for docs/guide/generalisation.rst (2 shared CPU cores)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/synthetic_shift.py \
        --recipes default,robust,robust-scanner --image-size 128 --epochs 5 \
        --out runs/shift --json benchmarks/results/synthetic_shift.json

``--reuse`` skips training where ``RUN/best.pt`` and ``RUN/split.json`` exist. ``--smoke``
runs a tiny version (60 images, 32 px, 1 epoch, no pretrained weights) to check the script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from breastus import Predictor, Preprocessing, TrainConfig, UltrasoundDataset, __version__, train_and_evaluate
from breastus.data import duplicate_groups, load_image
from breastus.evaluation import compute_binary_metrics, compute_metrics

ROOT = Path(__file__).resolve().parents[1]

RECIPES: dict[str, dict[str, Any]] = {
    "default": {"preprocessing": Preprocessing(), "augmentation": "default"},
    "robust": {
        "preprocessing": Preprocessing(crop=True, resize="letterbox", intensity="percentile"),
        "augmentation": "default",
    },
    "robust-scanner": {
        "preprocessing": Preprocessing(crop=True, resize="letterbox", intensity="percentile"),
        "augmentation": "scanner",
    },
    "default-scanner": {"preprocessing": Preprocessing(), "augmentation": "scanner"},
}

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _u8(array: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def gain(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    return _u8(image.astype(np.float32) * (0.7, 0.5, 0.35)[level - 1])


def contrast(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    mean = float(image.mean())
    return _u8(mean + (image.astype(np.float32) - mean) * (0.7, 0.5, 0.35)[level - 1])


def gamma(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    return _u8(255.0 * (image.astype(np.float32) / 255.0) ** (1.5, 2.0, 2.5)[level - 1])


def speckle(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    coarse = rng.standard_normal((-(-height // 2), -(-width // 2))).astype(np.float32)
    noise = ndimage.zoom(coarse, 2, order=1)[:height, :width]
    return _u8(image.astype(np.float32) * (1.0 + (0.15, 0.3, 0.45)[level - 1] * noise))


def blur(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    return _u8(ndimage.gaussian_filter(image.astype(np.float32), sigma=float(level)))


def downsample(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    factor = level + 1
    small = Image.fromarray(image).resize((max(1, width // factor), max(1, height // factor)), Image.Resampling.BOX)
    return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))


def border(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    right = round(width * (0.1, 0.25, 0.5)[level - 1])
    bottom = round(height * (0.05, 0.12, 0.25)[level - 1])
    return np.pad(image, ((0, bottom), (0, right)))


_LABELS = ("LT BREAST 2H", "12L5 9.0MHz", "GAIN 56 DR 60", "DEPTH 4.0cm", "FR 21Hz", "MI 1.1 TIS 0.2")


def text_ruler(image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    margin = (0.08, 0.16, 0.25)[level - 1]
    left, top = max(8, round(width * margin)), max(8, round(height * margin))
    canvas = Image.new("L", (width + left, height + top), 0)
    canvas.paste(Image.fromarray(image), (left, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(8, top // 4))
    x = left // 2
    draw.line([(x, top), (x, top + height - 1)], fill=220, width=1)
    for i, y in enumerate(range(top, top + height, max(4, height // 10))):
        draw.line([(x - (6 if i % 2 == 0 else 3), y), (x, y)], fill=220, width=1)
    for i in range(2 * level):
        row, col = divmod(i, 2)
        position = (left + col * width // 2 + 4, 2 + row * (top // 4 + 2))
        draw.text(position, _LABELS[i % len(_LABELS)], fill=int(rng.integers(180, 256)), font=font)
    return np.asarray(canvas)


CORRUPTIONS: dict[str, Corruption] = {
    "gain": gain,
    "contrast": contrast,
    "gamma": gamma,
    "speckle": speckle,
    "blur": blur,
    "downsample": downsample,
    "border": border,
    "text_ruler": text_ruler,
}


def load_small(path: Path, longest: int) -> np.ndarray:
    image = load_image(path)
    scale = longest / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(image)


def score(labels: np.ndarray, probabilities: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float | None]:
    metrics = compute_metrics(labels, probabilities, class_names)
    binary = compute_binary_metrics(labels, probabilities, class_names)
    return {"macro_auc": metrics.macro_auc, "malignant_auc": binary.auc, "accuracy": metrics.accuracy}


def train_recipe(
    name: str, dataset: UltrasoundDataset, args: argparse.Namespace
) -> tuple[Path, np.ndarray, dict[str, Any]]:
    run = Path(args.out) / name
    recipe = RECIPES[name]
    config = TrainConfig(
        model=args.model,
        pretrained=args.pretrained,
        image_size=args.image_size,
        epochs=args.epochs,
        seed=args.seed,
        device="cpu",
        progress=False,
        preprocessing=recipe["preprocessing"],
        augmentation=recipe["augmentation"],
    )
    started = time.perf_counter()
    if args.reuse and (run / "best.pt").is_file() and (run / "split.json").is_file():
        test = np.array(json.loads((run / "split.json").read_text())["test"], dtype=np.int64)
        internal = json.loads((run / "test_metrics.json").read_text())
        trained = False
    else:
        result = train_and_evaluate(dataset, run, config)
        test = result.split.test
        internal = result.test.metrics.to_dict()
        trained = True
    info = {
        "config": config.to_dict(),
        "trained_now": trained,
        "train_seconds": time.perf_counter() - started if trained else None,
        "internal_test": {k: internal[k] for k in ("n", "accuracy", "macro_f1", "macro_auc", "auc")},
    }
    return run / "best.pt", test, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("BREASTUS_DATA", str(ROOT.parent / "shared/datasets/busi")))
    parser.add_argument("--recipes", default="default,robust,robust-scanner")
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--pretrained", default="imagenet")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/shift")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument("--reuse", action="store_true", help="reuse trained runs in --out")
    parser.add_argument("--smoke", action="store_true", help="tiny run to check the script")
    args = parser.parse_args(argv)
    if args.smoke:
        args.image_size, args.epochs, args.pretrained = 32, 1, "none"
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {sorted(RECIPES)}")
    started = time.perf_counter()
    dataset = UltrasoundDataset.from_path(args.data)
    if args.smoke:
        dataset = dataset.subset(np.linspace(0, len(dataset) - 1, 60).round().astype(int))
    dataset = dataset.with_groups(duplicate_groups(dataset.paths))
    levels = (1,) if args.smoke else (1, 2, 3)

    results: dict[str, Any] = {}
    for name in names:
        checkpoint, test, info = train_recipe(name, dataset, args)
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
        test_data = dataset.subset(test)
        labels = test_data.labels
        images = [load_small(p, 2 * args.image_size) for p in test_data.paths]
        rows: dict[str, Any] = {"clean": score(labels, predictor.predict_proba(images), predictor.class_names)}
        for corruption, apply in CORRUPTIONS.items():
            for level in levels:
                corrupted = [apply(img, level, np.random.default_rng(1000 * i + level)) for i, img in enumerate(images)]
                rows[f"{corruption}-{level}"] = score(labels, predictor.predict_proba(corrupted), predictor.class_names)
        results[name] = {**info, "n_test": len(test), "scores": rows}
        print(f"[{name}] done after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        write_json(args, results, started)  # after every recipe, so an interrupted run keeps what it measured

    def cell(name: str, key: str, metric: str) -> str:
        value = results[name]["scores"][key][metric]
        clean = results[name]["scores"]["clean"][metric]
        if value is None:
            return "n/a"
        return f"{value:.3f}" if key == "clean" else f"{value:.3f} ({value - clean:+.3f})"

    for metric in ("macro_auc", "malignant_auc"):
        print(f"\n{metric} on the held-out BUSI test part (drop from clean)")
        print(f"{'corruption':<14}" + "".join(f"{n:>22}" for n in names))
        for key in results[names[0]]["scores"]:
            print(f"{key:<14}" + "".join(f"{cell(n, key, metric):>22}" for n in names))
        means = []
        for n in names:
            scores = results[n]["scores"]
            drops = [scores[k][metric] - scores["clean"][metric] for k in scores if k != "clean"]
            results[n][f"mean_drop_{metric}"] = float(np.mean(drops))
            means.append(f"{np.mean(drops):+.3f}")
        print(f"{'mean drop':<14}" + "".join(f"{m:>22}" for m in means))

    write_json(args, results, started)
    return 0


def write_json(args: argparse.Namespace, results: dict[str, Any], started: float) -> None:
    if not args.json:
        return
    payload = {
        "benchmark": "synthetic_shift",
        "command": " ".join(["python", *sys.argv]),
        "breastus_version": __version__,
        "platform": platform.platform(),
        "seconds": time.perf_counter() - started,
        "results": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
