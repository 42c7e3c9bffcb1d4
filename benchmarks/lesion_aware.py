"""Lesion-aware (multi-task U-Net) vs classifier: a reduced CPU comparison on one BUSI split.

Both models start from the packaged ImageNet EfficientNet-Lite0 weights and are trained
with the same recipe on the same duplicate-grouped BUSI split (train / validation /
test, ``train_and_evaluate``): the classifier ``tf_efficientnet_lite0`` and the
multi-task ``unet/tf_efficientnet_lite0`` (lesion mask + class, loss CE + Dice + BCE,
lesion threshold calibrated on the validation part). Each is then evaluated on the BUSI
test part and on BrEaST-Lesions-USG (evaluate only: nothing is selected on it). The
multi-task model is reported twice: with its lesion decision rule ("normal" only when
no lesion is found) and with the plain argmax of its class head.

Figures: accuracy, macro-AUC, malignant-vs-rest AUC, lesion images called normal,
malignant images called normal, normal recall, lesion Dice (per lesion image). The
"Inference cost" part times the forward pass of both models at 224 px, batch 1 and 32.

It is a single split at reduced size and epochs, so differences of a few points are
within the noise; BUSI grouped 5-fold CV on a GPU is the real comparison. Run::

    nice -n 5 python benchmarks/lesion_aware.py --image-size 96 --epochs 6

``--smoke`` runs the whole script in seconds on a generated dataset (for the tests).
Writes ``benchmarks/results/lesion_aware_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from breastus import Predictor, TrainConfig, UltrasoundDataset, __version__, cpu_features, train_and_evaluate
from breastus.evaluation import EvaluationResult, compute_binary_metrics, evaluate
from breastus.models import build_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lesion_aware_cpu.json"




def figures(result: EvaluationResult) -> dict[str, Any]:
    """The compared figures of one evaluation."""
    metrics = result.metrics
    names = list(result.class_names)
    binary = (
        compute_binary_metrics(result.labels, result.probabilities, names)
        if "malignant" in result.class_names
        else None
    )
    segmentation = result.segmentation
    return {
        "n": metrics.n,
        "accuracy": metrics.accuracy,
        "macro_auc": metrics.macro_auc,
        "malignant_auc": None if binary is None else binary.auc,
        "lesion_called_normal": metrics.lesion_called_normal,
        "malignant_called_normal": metrics.malignant_called_normal,
        "normal_recall": metrics.sensitivity.get("normal"),
        "dice": None if segmentation is None else segmentation.dice,
        "iou": None if segmentation is None else segmentation.iou,
        "pooled_dice": None if segmentation is None else segmentation.pooled_dice,
    }


def inference_cost(models: dict[str, str], image_size: int, batches: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Mean seconds per forward pass (random weights, eval mode, channels-last) and the U-Net/classifier ratio."""
    timings: dict[str, dict[str, float]] = {}
    for label, name in models.items():
        model, _ = build_model(name, 3, pretrained=None)
        model = model.eval().to(memory_format=torch.channels_last)
        timings[label] = {}
        for batch in batches:
            x = torch.randn(batch, 3, image_size, image_size).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                model(x)  # warm-up
                started = time.perf_counter()
                for _ in range(repeats if batch == 1 else max(1, repeats // 3)):
                    model(x)
                n = repeats if batch == 1 else max(1, repeats // 3)
                timings[label][f"batch_{batch}_s"] = (time.perf_counter() - started) / n
    labels = list(models)
    ratios = {
        key: timings[labels[1]][key] / timings[labels[0]][key] for key in timings[labels[0]] if timings[labels[0]][key]
    }
    return {"image_size": image_size, "seconds": timings, "ratio_multitask_over_classifier": ratios}


def make_smoke_data(root: Path) -> Path:
    """A tiny BUSI-style folder with masks (lesions are bright squares, normals have empty masks)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("benign", "malignant", "normal")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(1, 9):
            image = rng.integers(0, 60, (40, 48), dtype=np.uint8)
            mask = np.zeros_like(image)
            if name != "normal":
                y, x = int(rng.integers(4, 24)), int(rng.integers(4, 30))
                image[y : y + 10, x : x + 10] = 150 + 50 * label
                mask[y : y + 10, x : x + 10] = 255
            Image.fromarray(image).save(root / name / f"{name} ({i}).png")
            Image.fromarray(mask).save(root / name / f"{name} ({i})_mask.png")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared/datasets/busi"))
    )
    parser.add_argument("--external", type=Path, default=ROOT.parent / "shared" / "datasets" / "breast-lesions-usg")
    parser.add_argument("--encoder", default="tf_efficientnet_lite0")
    parser.add_argument("--pretrained", default="imagenet")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a busy CPU)")
    parser.add_argument("--runs", type=Path, default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="seconds-long run on generated data (for the tests)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    temporary = tempfile.TemporaryDirectory(prefix="lesion_aware_")
    runs = args.runs if args.runs is not None else Path(temporary.name)
    encoder, pretrained, size, epochs, external = (
        args.encoder,
        args.pretrained,
        args.image_size,
        args.epochs,
        args.external,
    )
    cost_size, cost_batches, repeats = 224, (1, 32), 6
    if args.smoke:
        args.data = make_smoke_data(runs / "smoke-data")
        external = args.data
        encoder, pretrained, size, epochs, cost_size, cost_batches, repeats = (
            "test_resnet",
            "none",
            32,
            1,
            32,
            (1, 4),
            2,
        )
    models = {"classifier": f"timm/{encoder}", "multitask": f"unet/{encoder}"}
    config = TrainConfig(
        pretrained=pretrained,
        image_size=size,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer="adamw",
        scheduler="cosine",
        seed=args.seed,
        device="cpu",
        progress=False,
        val_size=0.25 if args.smoke else 0.1,
        test_size=0.25 if args.smoke else 0.2,
    )
    busi = UltrasoundDataset.from_path(args.data)
    breast = UltrasoundDataset.from_path(external) if external.exists() else None
    print(f"breastus {__version__}, CPU: {cpu_features()['model']}, torch threads {torch.get_num_threads()}", flush=True)
    print(f"BUSI {len(busi)} images; external {0 if breast is None else len(breast)} images", flush=True)
    rows: dict[str, Any] = {}
    split: dict[str, int] = {}
    for label, name in models.items():
        t0 = time.perf_counter()
        result = train_and_evaluate(busi, runs / label, config.replace(model=name))
        seconds = time.perf_counter() - t0
        split = {"train": len(result.split.train), "val": len(result.split.val), "test": len(result.split.test)}
        checkpoint = runs / label / "best.pt"
        decisions = ["lesion", "argmax"] if label == "multitask" else ["argmax"]
        for decision in decisions:
            key = label if decision == "argmax" and label == "classifier" else f"{label}-{decision}"
            predictor = Predictor.from_checkpoint(checkpoint, device="cpu", decision=decision)
            busi_test = evaluate(predictor, busi.subset(result.split.test))
            row: dict[str, Any] = {
                "model": name,
                "decision": decision,
                "train_seconds": seconds,
                "best_epoch": result.history.best_epoch,
                "val_dice": result.history.records[result.history.best_epoch - 1].val_dice,
                "lesion_threshold": predictor.lesion_threshold,
                "busi_test": figures(busi_test),
            }
            if breast is not None:
                row["external"] = figures(evaluate(predictor, breast))
            rows[key] = row
            print(f"== {key}: {json.dumps(row)}", flush=True)
    cost = inference_cost(models, cost_size, cost_batches, repeats)
    print(f"== inference cost: {json.dumps(cost)}", flush=True)
    payload = {
        "benchmark": "lesion_aware",
        "breastus": __version__,
        "argv": sys.argv if argv is None else ["benchmarks/lesion_aware.py", *argv],
        "cpu": cpu_features()["model"],
        "torch_threads": torch.get_num_threads(),
        "smoke": args.smoke,
        "config": {k: v for k, v in config.to_dict().items() if k != "model"},
        "split": split,
        "rows": rows,
        "inference_cost": cost,
        "seconds": time.perf_counter() - started,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(f"Results: {args.json} ({payload['seconds']:.0f} s)")
    temporary.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
