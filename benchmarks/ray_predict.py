"""Ray benchmark: ``predict_archive`` on local Ray workers against the single-process Predictor.

Both classify the same real BUSI images (PNG files, decoded and resized by the
Predictor) with the same untrained checkpoint (ResNet-18 at 224 px by default):

* **single**: one process, ``Predictor.from_checkpoint(...).predict_paths(...)``,
  PyTorch on all cores (its default), model load included;
* **ray**: ``predict_archive`` with ``--workers`` actors of one thread each on a
  local Ray that is already running (``ray.init`` is timed apart, as it is paid
  once per cluster, not per archive). Actor start-up (importing breastus and
  loading the model in each actor) and writing the Parquet output are included.

The engines run single, ray, single in one run (the two single runs bracket
Ray, so a change of the machine's load shows as a difference between them).
Two throughputs are given per run: **whole run** (N / wall time, everything
included) and **steady state** (the images after the first batch divided by the
time after the first rows came out: the rate an archive of millions of images
sees once the fixed start-up costs are paid). The ratios are Ray's over the
mean of the two single runs.

Run (the figures in docs/guide/archives.rst)::

    nice -n 5 python benchmarks/ray_predict.py --json benchmarks/results/ray_predict.json

Prints the CPU, the load average, a table and the ratios; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from breastus import Predictor, __version__
from breastus.models import Checkpoint, build_model, save_checkpoint
from breastus.prediction import iter_images, predict_archive

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))
CLASSES = ("benign", "malignant", "normal")


def cpu_model() -> str:
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def spread(paths: list[Path], n: int) -> list[str]:
    """``n`` paths taken evenly across the sorted list (all classes, not only the first folder)."""
    step = len(paths) / n
    return [str(paths[int(i * step)]) for i in range(n)]


def single(checkpoint: Path, paths: list[str], batch_size: int) -> tuple[float, float]:
    """Wall time of the whole run, and until the first prediction came out."""
    started = time.perf_counter()
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=batch_size)
    first, rows = 0.0, 0
    for _ in predictor.predict_paths([Path(p) for p in paths]):
        rows += 1
        if rows == 1:
            first = time.perf_counter() - started
    seconds = time.perf_counter() - started
    assert rows == len(paths)
    return seconds, first


def on_ray(checkpoint: Path, paths: list[str], out: Path, workers: int, batch_size: int) -> tuple[float, float]:
    """Wall time of the whole run, and until the first rows came back."""
    shutil.rmtree(out, ignore_errors=True)
    result = predict_archive(checkpoint, paths, out, num_workers=workers, batch_size=batch_size)
    assert (result.predicted, result.failed) == (len(paths), 0), result
    return result.seconds, result.startup_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import ray

    paths = spread(list(iter_images(DATA)), args.images)
    load_before = os.getloadavg()
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores, shared CPU); load average {load_before}")
    print(f"{args.model} untrained at {args.size} px, batch {args.batch_size}; {len(paths)} BUSI PNGs from {DATA}")

    with tempfile.TemporaryDirectory(prefix="ray_predict_") as tmp:
        checkpoint = Path(tmp) / "best.pt"
        torch.manual_seed(0)
        network, info = build_model(args.model, len(CLASSES), pretrained=None)
        save_checkpoint(Checkpoint(info, CLASSES, args.size, dict(network.state_dict())), checkpoint)

        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        ray_init = time.perf_counter() - started
        try:
            runs = {
                "single_1": single(checkpoint, paths, args.batch_size),
                "ray": on_ray(checkpoint, paths, Path(tmp) / "out.parquet", args.workers, args.batch_size),
                "single_2": single(checkpoint, paths, args.batch_size),
            }
        finally:
            started = time.perf_counter()
            ray.shutdown()
            ray_shutdown = time.perf_counter() - started

    n = len(paths)
    table = {
        name: {
            "seconds": seconds,
            "startup_seconds": first,
            "whole_run_images_per_second": n / seconds,
            "steady_images_per_second": (n - args.batch_size) / (seconds - first),
        }
        for name, (seconds, first) in runs.items()
    }

    def single_mean(key: str) -> float:
        return (table["single_1"][key] + table["single_2"][key]) / 2

    ratios = {
        "whole_run": table["ray"]["whole_run_images_per_second"] / single_mean("whole_run_images_per_second"),
        "steady_state": table["ray"]["steady_images_per_second"] / single_mean("steady_images_per_second"),
        "whole_run_with_ray_init": (n / (runs["ray"][0] + ray_init)) / single_mean("whole_run_images_per_second"),
    }
    load_after = os.getloadavg()

    print(f"\n{'run':<10}{'wall s':>8}{'start-up s':>12}{'whole-run img/s':>17}{'steady img/s':>14}")
    for name, row in table.items():
        print(
            f"{name:<10}{row['seconds']:>8.1f}{row['startup_seconds']:>12.1f}"
            f"{row['whole_run_images_per_second']:>17.1f}{row['steady_images_per_second']:>14.1f}"
        )
    print(f"ray.init {ray_init:.1f} s, ray.shutdown {ray_shutdown:.1f} s (once per cluster, not in the rows above)")
    print(
        f"Ray ({args.workers} workers) / single process: whole run {ratios['whole_run']:.2f}x, "
        f"steady state {ratios['steady_state']:.2f}x, whole run counting ray.init "
        f"{ratios['whole_run_with_ray_init']:.2f}x (target >= 0.9x)"
    )
    print(f"load average after: {load_after}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {
            "runs": table,
            "ratios_ray_to_single": ratios,
            "ray_init_seconds": ray_init,
            "ray_shutdown_seconds": ray_shutdown,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "machine": {
                "cpu": cpu_model(),
                "logical_cores": os.cpu_count(),
                "note": "shared CPU: other jobs ran at the same time (see the load averages)",
                "python": platform.python_version(),
                "torch": torch.__version__,
                "ray": ray.__version__,
                "breastus": __version__,
                "torch_threads_single": torch.get_num_threads(),
            },
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
