"""GPU check: the CUDA paths of the Trainer and Predictor, with throughput figures.

Run on a machine with an NVIDIA GPU (it exits with status 2 without one)::

    python benchmarks/gpu_check.py --json benchmarks/results/gpu_check.json

It measures, for ResNet-18 at 224 px and batch 32 on ``--train-images`` BUSI images:

* training images/s (data loading included) of the original project's loop moved to the GPU
  (``throughput.py``'s baseline: PIL decode and transform of every PNG each epoch, fp32) and of
  the breastus ``Trainer`` in fp32, bfloat16 and float16 mixed precision (float16 with its
  gradient scaler), with and without ``batch_augment`` (augmentation on the GPU); pinned memory
  and non-blocking copies are the Trainer's defaults on CUDA; every run must end with finite
  losses;
* inference images/s at batch 32 and single-image latency through the ``Predictor`` on CUDA;
* one ``torchrun --nproc_per_node=1`` training run with the NCCL backend.

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import DATA, baseline_fit, make_checkpoint, time_predictor

from breastus import Predictor, TrainConfig, Trainer, UltrasoundDataset, __version__
from breastus.data import train_val_test_split

TRAINER_RUNS: dict[str, dict[str, Any]] = {
    "fp32": {"amp": False},
    "bf16": {"amp_dtype": "bfloat16"},
    "fp16": {"amp_dtype": "float16"},
    "bf16+batch_augment": {"amp_dtype": "bfloat16", "batch_augment": True},
    "fp32+batch_augment": {"amp": False, "batch_augment": True},
}


def trainer_rates(
    train: UltrasoundDataset, val: UltrasoundDataset, epochs: int, run_dir: Path, device: str, **changes: Any
) -> dict[str, Any]:
    config = TrainConfig(pretrained="none", epochs=epochs, progress=False, scheduler="none", device=device, **changes)
    trainer = Trainer(config, run_dir)
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    history = trainer.fit(train, val)
    records = history.records
    steady = [r.train_images_per_second for r in records[1:]] or [records[0].train_images_per_second]
    losses = [r.train_loss for r in records]
    return {
        "amp_dtype": None if trainer.amp_dtype is None else str(trainer.amp_dtype).removeprefix("torch."),
        "epoch_images_per_second": [r.train_images_per_second for r in records],
        "steady_images_per_second": statistics.mean(steady),
        "train_losses": losses,
        "finite": all(math.isfinite(v) for v in losses),
        "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
    }


def nccl_run(data: Path, scratch: Path, timeout: int, device: str) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
        "-m", "breastus.cli", "train", str(data), "--out", str(scratch / "nccl"),
        "--pretrained", "none", "--epochs", "2", "--image-size", "64", "--no-progress", "--device", device,
    ]  # fmt: skip
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    tail = (done.stdout + done.stderr)[-1500:]
    return {
        "ok": done.returncode == 0 and (scratch / "nccl" / "best.pt").is_file(),
        "returncode": done.returncode,
        "seconds": time.perf_counter() - started,
        "output_tail": tail,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--train-images", type=int, default=390)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to try the script out")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA device: nothing to check.")
        return 2
    torch.backends.cudnn.benchmark = True
    cuda = args.device == "cuda"
    props = torch.cuda.get_device_properties(0) if cuda else None
    info = {
        "gpu": props.name if props else None,
        "gpu_memory_gb": props.total_memory / 1e9 if props else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
        "cpu_count": os.cpu_count(),
        "breastus": __version__,
    }
    print(json.dumps(info), flush=True)
    dataset = UltrasoundDataset.from_folder(args.data)
    split = train_val_test_split(dataset.labels, 0.1, 0.3, None, 0)
    order = np.random.default_rng(0).permutation(np.asarray(split.train))
    train = dataset.subset(order[: args.train_images])
    val = dataset.subset(split.val)
    results: dict[str, Any] = {"machine": info, "train_images": len(train), "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        print(f"Training, ResNet-18 224 px batch 32, {len(train)} images, {args.epochs} epochs", flush=True)
        base = baseline_fit(train, None, 224, args.epochs, device=args.device)
        steady = statistics.mean(r["images_per_second"] for r in base[1:])
        results["baseline"] = {"epoch_images_per_second": [r["images_per_second"] for r in base], "steady": steady}
        print(f"  {'baseline (fp32)':<22} {steady:8.1f} img/s", flush=True)
        results["trainer"] = {}
        for name, changes in TRAINER_RUNS.items():
            rates = trainer_rates(train, val, args.epochs, scratch / name, args.device, **changes)
            rates["ratio_to_baseline"] = rates["steady_images_per_second"] / steady
            results["trainer"][name] = rates
            print(
                f"  {name:<22} {rates['steady_images_per_second']:8.1f} img/s  x{rates['ratio_to_baseline']:.2f}  "
                f"dtype {rates['amp_dtype']}  finite {rates['finite']}  peak {rates['peak_gpu_memory_mb']:.0f} MB",
                flush=True,
            )
        checkpoint = make_checkpoint(scratch / "resnet18.pt", 224)
        predictor = Predictor.from_checkpoint(checkpoint, device=args.device)
        paths = dataset.paths[:128]
        tensors = [predictor.preprocess(p) for p in paths[:32]]
        results["inference"] = time_predictor(predictor, tensors, paths, args.repeats, args.repeats * 4)
        inf = results["inference"]
        print(
            f"Inference: batch 32 {inf['batch32_images_per_second']:.0f} img/s, latency median "
            f"{inf['latency_ms_median']:.2f} ms (p95 {inf['latency_ms_p95']:.2f}), from PNG files "
            f"{inf['from_files_images_per_second']:.0f} img/s",
            flush=True,
        )
        small = scratch / "busi-subset"
        for path in dataset.paths[::8]:
            target = small / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path.resolve())
        results["torchrun_nccl"] = nccl_run(small, scratch, timeout=120, device=args.device)
        print(f"torchrun --nproc_per_node=1 (NCCL): ok={results['torchrun_nccl']['ok']}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"Results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
