"""Inference cost of lesion-aware prediction against the classifier alone (issue 13 target: ≤ 1.6×).

For each encoder (default ResNet-18 and EfficientNet-Lite0) one run times, on the same
decoded BUSI images and through the full :class:`~breastus.Predictor` path (preprocessing,
model, softmax; for the multi-task model also the lesion score, the mask brought back to the
image's resolution, post-processing, box and area):

* the classifier (``resnet18`` / ``tf_efficientnet_lite0``),
* each multi-task family on the same encoder (``--families``, default ``unet/<encoder>``,
  ``unet-lite/<encoder>`` and ``fpn-lite/<encoder>``),
* each family with segment-then-classify (the classifier on the predicted lesion crop;
  ``--no-crop`` leaves these out),

as single-image latency (median of ``--repeats`` calls, one image per call) and batch
throughput (``--batch`` images per call), for each ``--backends`` (eager PyTorch by
default; ``onnxruntime``, ``torchscript``), timed round-robin, and prints each multi-task
figure as a ratio to the classifier measured in the same run. Weights are random
(speed does not depend on them); the lesion threshold is set so the crop path runs.

Runs (a few minutes each on a shared 2-core machine; one thread avoids oversubscription there)::

    python benchmarks/lesion_inference.py --json benchmarks/results/lesion_inference.json
    OMP_NUM_THREADS=1 python benchmarks/lesion_inference.py --json benchmarks/results/lesion_inference_1thread.json
    python benchmarks/lesion_inference.py --backends onnxruntime --encoders resnet18 --json /tmp/ort.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from breastus import Predictor, UltrasoundDataset, __version__, cpu_features
from breastus.models import Checkpoint, build_model
from breastus.models._segmentation import SEGMENTATION_FAMILIES

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))
NAMES = ("benign", "malignant", "normal")


def checkpoint(name: str, size: int, threshold: float | None) -> Checkpoint:
    torch.manual_seed(0)
    model, info = build_model(name, 3, None)
    return Checkpoint(info, NAMES, size, model.state_dict(), lesion_threshold=threshold)


def gflops(checkpoint: Checkpoint) -> float:
    """Forward GFLOPs of one image (``torch.utils.flop_counter``): a load-independent cost figure."""
    model = checkpoint.build_model().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, checkpoint.image_size, checkpoint.image_size))
    return counter.get_total_flops() / 1e9


def interleaved(calls: dict[str, Any], repeats: int) -> dict[str, float]:
    """Median wall seconds of each call, timed round-robin (one warm-up each).

    Taking turns spreads the load of a shared machine evenly over the variants, so
    their ratios stay meaningful when the absolute times are not.
    """
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def write(args: argparse.Namespace, rows: list[dict[str, Any]], load_before: tuple[float, float, float]) -> None:
    """Write the JSON (called after each encoder, so an interrupted run keeps what it measured)."""
    if not args.json:
        return
    result = {
        "benchmark": "lesion_inference",
        "command": "python benchmarks/lesion_inference.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_features()["model"],
        "torch_threads": torch.get_num_threads(),
        "image_size": args.image_size,
        "batch": args.batch,
        "repeats": args.repeats,
        "batch_repeats": args.batch_repeats,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "breastus_version": __version__,
        "torch_version": torch.__version__,
        "rows": rows,
        "families": args.families,
        "note": "ratio columns: multi-task cost / classifier cost in the same run (target <= 1.6)",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"Wrote {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--encoders", nargs="+", default=["resnet18", "tf_efficientnet_lite0"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="single-image calls per variant")
    parser.add_argument("--batch-repeats", type=int, default=3, help="batch calls per variant")
    parser.add_argument("--backends", nargs="+", default=["torch"], help="torch, torchscript, onnxruntime")
    parser.add_argument("--families", nargs="+", default=list(SEGMENTATION_FAMILIES), help="multi-task families")
    parser.add_argument("--no-crop", action="store_true", help="leave out the segment-then-classify variants")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    dataset = UltrasoundDataset.from_folder(args.data)
    picks = np.linspace(0, len(dataset) - 1, args.batch).astype(int)
    images = [dataset.load_image(int(i)) for i in picks]  # decoded once: the model path is timed
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    print(f"CPU: {cpu_features()['model']}, {torch.get_num_threads()} torch threads, load {load_before}")
    print(
        f"{'encoder':24s} {'backend':12s} {'model':44s} {'1 image ms':>10s} {'ratio':>6s} {'img/s':>7s} {'ratio':>6s}"
        f" {'GFLOPs':>6s}"
    )
    for encoder in args.encoders:
        classifier_ckpt = checkpoint(encoder, args.image_size, None)
        family_ckpts = {
            f"{family}/{encoder}": checkpoint(f"{family}/{encoder}", args.image_size, 1e-6) for family in args.families
        }
        flops = {encoder: gflops(classifier_ckpt)} | {name: gflops(c) for name, c in family_ckpts.items()}
        print(
            f"{encoder}: {flops[encoder]:.2f} GFLOPs per image; "
            + ", ".join(f"{name}: {flops[name]:.2f} ({flops[name] / flops[encoder]:.2f}x)" for name in family_ckpts)
        )
        for backend in args.backends:
            classifier = Predictor.from_loaded(classifier_ckpt, device="cpu", backend=backend, batch_size=args.batch)
            variants: dict[str, Predictor] = {encoder: classifier}
            cost = {encoder: flops[encoder]}
            for name, ckpt in family_ckpts.items():
                variants[name] = Predictor.from_loaded(ckpt, device="cpu", backend=backend, batch_size=args.batch)
                cost[name] = flops[name]
                if not args.no_crop:
                    variants[f"{name} + crop classifier"] = variants[name].with_crop_classifier(classifier)
                    cost[f"{name} + crop classifier"] = flops[name] + flops[encoder]
            latencies = interleaved({k: (lambda p=p: p.predict(images[0])) for k, p in variants.items()}, args.repeats)
            batches = interleaved({k: (lambda p=p: p.predict(images)) for k, p in variants.items()}, args.batch_repeats)
            base_latency, base_rate = latencies[encoder], len(images) / batches[encoder]
            for label in variants:
                latency, rate = latencies[label], len(images) / batches[label]
                row = {
                    "encoder": encoder,
                    "backend": backend,
                    "model": label,
                    "family": "classifier" if label == encoder else label.partition("/")[0],
                    "latency_ms": round(latency * 1000, 2),
                    "latency_ratio": round(latency / base_latency, 3),
                    "images_per_s": round(rate, 2),
                    "throughput_cost_ratio": round(base_rate / rate, 3),
                    "gflops_per_image": round(cost[label], 3),
                    "gflops_ratio": round(cost[label] / flops[encoder], 3),
                }
                rows.append(row)
                print(
                    f"{encoder:24s} {backend:12s} {label:44s} {row['latency_ms']:10.1f} {row['latency_ratio']:6.2f} "
                    f"{row['images_per_s']:7.1f} {row['throughput_cost_ratio']:6.2f} {row['gflops_ratio']:6.2f}"
                )
        write(args, rows, load_before)


if __name__ == "__main__":
    main()
