"""Scale benchmark: peak memory of ``Predictor.predict_folder`` over 1,000 and 10,000 images.

For each N, the script writes N small distinct grayscale PNGs into a temporary
folder, then classifies them in a fresh Python process (so every N gets its own
peak) that streams ``predict_folder`` into a CSV file row by row, as
``breastus predict --csv`` does. The child reports:

* ``peak_rss_mib``: the process's peak resident memory (``resource.getrusage``);
* ``rss_after_warmup_mib`` / ``rss_end_mib``: resident memory after the model is
  loaded and one batch has run, and after the last image (``/proc/self/statm``);
* ``rss_growth_mib``: the difference, the part that could grow with N;
* ``python_peak_mib``: the peak of Python-level allocations during the loop
  (``tracemalloc``; tensors allocated by torch's C++ code are not in it);
* ``images_per_second`` and the CSV row count.

Flat memory means peak RSS and growth are about the same for N = 1,000 and 10,000.

Run (the numbers in docs/guide/failure_modes.rst)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/predict_folder_memory.py \
        --json benchmarks/results/predict_folder_memory.json

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CLASSES = ("benign", "malignant", "normal")


def write_images(folder: Path, n: int, side: int, seed: int = 0) -> None:
    """N distinct ``side`` x ``side`` grayscale PNGs, 100 per sub-folder."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = folder / f"part{i // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(side, side), dtype=np.uint8)).save(sub / f"scan {i}.png")


def write_checkpoint(path: Path, model: str, image_size: int) -> None:
    """A randomly initialised breastus checkpoint (memory does not depend on the weights' values)."""
    import torch

    from breastus.models import Checkpoint, build_model, save_checkpoint

    torch.manual_seed(0)
    network, info = build_model(model, len(CLASSES), pretrained=None)
    save_checkpoint(Checkpoint(info, CLASSES, image_size, dict(network.state_dict())), path)


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(checkpoint: str, folder: str, csv_path: str, batch_size: int) -> dict[str, Any]:
    """Stream predict_folder into a CSV; runs in its own process."""
    import csv
    import tracemalloc

    from breastus import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", batch_size=batch_size)
    names = predictor.class_names
    rows = 0
    samples: list[tuple[int, float]] = []
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", *[f"p_{c}" for c in names]])
        started = time.perf_counter()
        warm = None
        for prediction in predictor.predict_folder(folder):
            writer.writerow([prediction.path, prediction.label, *[f"{prediction.probabilities[c]:.6f}" for c in names]])
            handle.flush()
            rows += 1
            if rows == batch_size:  # model loaded, first batch done: the baseline
                warm = _rss_mib()
                tracemalloc.start()
                started = time.perf_counter()
            if rows % 1000 == 0:
                samples.append((rows, round(_rss_mib(), 1)))
        seconds = time.perf_counter() - started
        python_peak = tracemalloc.get_traced_memory()[1] / 2**20 if tracemalloc.is_tracing() else 0.0
    end = _rss_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "rows": rows,
        "peak_rss_mib": round(peak, 1),
        "rss_after_warmup_mib": round(warm or end, 1),
        "rss_end_mib": round(end, 1),
        "rss_growth_mib": round(end - (warm or end), 1),
        "python_peak_mib": round(python_peak, 2),
        "rss_samples_mib": samples,
        "images_per_second": round((rows - batch_size) / max(seconds, 1e-9), 1),
    }


def run_one(n: int, args: argparse.Namespace, checkpoint: Path, scratch: Path) -> dict[str, Any]:
    folder = scratch / f"images_{n}"
    started = time.perf_counter()
    write_images(folder, n, args.side)
    generated = time.perf_counter() - started
    csv_path = scratch / f"predictions_{n}.csv"
    command = [
        sys.executable,
        __file__,
        "--child",
        json.dumps([str(checkpoint), str(folder), str(csv_path), args.batch_size]),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    result.update(n=n, csv_rows=len(lines) - 1, generate_seconds=round(generated, 1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="1000,10000", help="comma-separated image counts")
    parser.add_argument("--side", type=int, default=48, help="side of the generated images in pixels")
    parser.add_argument("--model", default="resnet18", help="architecture of the (random) checkpoint")
    parser.add_argument("--image-size", type=int, default=32, help="model input size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", metavar="FILE", help="write the results to FILE")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return

    counts = [int(v) for v in args.n.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="breastus-predict-memory-") as tmp:
        scratch = Path(tmp)
        checkpoint = scratch / "best.pt"
        write_checkpoint(checkpoint, args.model, args.image_size)
        for n in counts:
            results.append(run_one(n, args, checkpoint, scratch))
            print(f"N={n}: done", file=sys.stderr)
    header = f"{'N':>7} {'peak RSS':>10} {'RSS warm':>10} {'RSS end':>9} {'growth':>8} {'py peak':>8} {'img/s':>7}"
    print(header)
    for r in results:
        print(
            f"{r['n']:>7} {r['peak_rss_mib']:>8.1f}Mi {r['rss_after_warmup_mib']:>8.1f}Mi {r['rss_end_mib']:>7.1f}Mi "
            f"{r['rss_growth_mib']:>6.1f}Mi {r['python_peak_mib']:>6.2f}Mi {r['images_per_second']:>7.1f}"
        )
    if args.json:
        payload = {
            "benchmark": "predict_folder_memory",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {
                "model": args.model,
                "image_size": args.image_size,
                "batch_size": args.batch_size,
                "image_side": args.side,
            },
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "results": results,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
