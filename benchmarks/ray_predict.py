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

On a shared machine, wall times follow the load of the other jobs, and several
processes get a larger share of a busy CPU than one process with two threads.
So CPU time is also measured: the single process's ``time.process_time()``, and
for Ray the driver's plus each actor process's own (written by a metering
subclass of the actor after each batch, so imports and model loading in the
actors count). **Images per CPU-second** compares what each engine costs, load
or not; "after start-up" leaves out the model load (single) and each actor's
imports and model load (Ray).

Run (the figures in docs/guide/archives.rst)::

    nice -n 5 python benchmarks/ray_predict.py --json benchmarks/results/ray_predict.json

Prints the CPU, the load average, a table and the ratios; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from breastus import Predictor, __version__, cpu_features
from breastus.models import Checkpoint, build_model, save_checkpoint
from breastus.prediction import iter_images
from breastus.prediction._ray import _ArchiveWorker, _predict_archive

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))
CLASSES = ("benign", "malignant", "normal")




def spread(paths: list[Path], n: int) -> list[str]:
    """``n`` paths taken evenly across the sorted list (all classes, not only the first folder)."""
    step = len(paths) / n
    return [str(paths[int(i * step)]) for i in range(n)]


class MeteredWorker(_ArchiveWorker):
    """The predict_archive actor, also writing its process's CPU time (after start-up, after each batch)."""

    meter_dir = ""  # set before the run; this class is pickled by value (it lives in __main__)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cpu_after_startup = time.process_time()  # imports, Ray worker start and model load

    def __call__(self, batch: Any) -> Any:
        table = super().__call__(batch)
        meter = {"startup": self.cpu_after_startup, "end": time.process_time()}
        (Path(self.meter_dir) / f"{os.getpid()}.json").write_text(json.dumps(meter))
        return table


def single(checkpoint: Path, paths: list[str], batch_size: int) -> dict[str, float]:
    """Wall and CPU time of the whole run and of its start-up (model load and first batch)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=batch_size)
    first = first_cpu = 0.0
    rows = 0
    for _ in predictor.predict_paths([Path(p) for p in paths]):
        rows += 1
        if rows == 1:
            first, first_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert rows == len(paths)
    return {
        "seconds": time.perf_counter() - started,
        "startup_seconds": first,
        "cpu_seconds": time.process_time() - cpu_started,
        "startup_cpu_seconds": first_cpu,
    }


def on_ray(checkpoint: Path, paths: list[str], out: Path, workers: int, batch_size: int) -> dict[str, float]:
    """The same for predict_archive; CPU: the driver's plus every actor process's (imports included)."""
    meters = out.with_suffix(".cpu")
    meters.mkdir()
    MeteredWorker.meter_dir = str(meters)
    cpu_started = time.process_time()
    result = _predict_archive(
        checkpoint, paths, out, num_workers=workers, batch_size=batch_size, backend=None, device="cpu", tta=False,
        threads_per_worker=1, ray_address=None, resume=False, rows_per_part=1000, worker=MeteredWorker,
    )  # fmt: skip
    driver_cpu = time.process_time() - cpu_started
    assert (result.predicted, result.failed) == (len(paths), 0), result
    actors = [json.loads(f.read_text()) for f in meters.glob("*.json")]
    return {
        "seconds": result.seconds,
        "startup_seconds": result.startup_seconds,
        "cpu_seconds": driver_cpu + sum(a["end"] for a in actors),
        "startup_cpu_seconds": sum(a["startup"] for a in actors),  # a lower bound: the first batch is not in it
        "actors": len(actors),
    }


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
    print(f"CPU: {cpu_features()['model']} ({os.cpu_count()} logical cores, shared CPU); load average {load_before}")
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
    for row in runs.values():
        row["whole_run_images_per_second"] = n / row["seconds"]
        row["steady_images_per_second"] = (n - args.batch_size) / (row["seconds"] - row["startup_seconds"])
        row["images_per_cpu_second"] = n / row["cpu_seconds"]
        row["images_per_cpu_second_after_startup"] = n / (row["cpu_seconds"] - row["startup_cpu_seconds"])

    def ratio(key: str) -> float:
        return runs["ray"][key] / ((runs["single_1"][key] + runs["single_2"][key]) / 2)

    ratios = {
        "whole_run": ratio("whole_run_images_per_second"),
        "steady_state": ratio("steady_images_per_second"),
        "per_cpu_second": ratio("images_per_cpu_second"),
        "per_cpu_second_after_startup": ratio("images_per_cpu_second_after_startup"),
    }
    ratios["whole_run_with_ray_init"] = (
        ratios["whole_run"] * runs["ray"]["seconds"] / (runs["ray"]["seconds"] + ray_init)
    )
    load_after = os.getloadavg()

    head = ("wall s", "start-up s", "img/s", "steady img/s", "CPU s", "img/CPU-s", "img/CPU-s*")
    print("\n" + f"{'run':<10}" + "".join(f"{h:>14}" for h in head))
    keys = ("seconds", "startup_seconds", "whole_run_images_per_second", "steady_images_per_second", "cpu_seconds",
            "images_per_cpu_second", "images_per_cpu_second_after_startup")  # fmt: skip
    for name, row in runs.items():
        print(f"{name:<10}" + "".join(f"{row[k]:>14.2f}" for k in keys))
    print("* CPU after start-up (single: model load and first batch; Ray: each actor's imports and model load)")
    print(f"ray.init {ray_init:.1f} s, ray.shutdown {ray_shutdown:.1f} s (once per cluster, not in the rows above)")
    print(f"Ray ({args.workers} workers) / single process (mean of the two runs), target >= 0.9x:")
    for name, value in ratios.items():
        print(f"  {name:<30}{value:.2f}x")
    print(f"load average after: {load_after}")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report: dict[str, Any] = {
            "runs": runs,
            "ratios_ray_to_single": ratios,
            "ray_init_seconds": ray_init,
            "ray_shutdown_seconds": ray_shutdown,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "machine": {
                "cpu": cpu_features()["model"],
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
