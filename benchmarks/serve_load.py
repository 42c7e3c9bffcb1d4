"""Load benchmark of ``breastus serve``: latency and throughput at concurrency 1/4/16, both backends.

For each backend (eager PyTorch, ONNX Runtime) the script

1. measures the ``Predictor``'s throughput in this process, before the load and again after
   it (the mean is the baseline): batches of ``--batch-size`` BUSI images and single images
   per ``predict`` call, decoded from PNG bytes in memory each time (the server decodes every
   upload too), after a warm-up, ``--batch-seconds / 4`` each;
2. starts a real ``breastus serve`` process on 127.0.0.1 (a free port), waits for ``/healthz``
   and sends a few warm-up requests;
3. runs a bounded async httpx load for each concurrency: that many clients, each uploading the
   BUSI images round-robin to ``POST /v1/predict`` back to back, for ``--duration`` seconds or
   ``--max-requests`` requests, whichever comes first; records every latency and status;
4. stops the server.

It prints the CPU model, the load average, and per backend and concurrency p50/p95 latency,
throughput, error counts and the ratio of the service's throughput to the Predictor's batch
throughput (and to its best of batch and single-image throughput) measured in the same run; JSON goes to ``benchmarks/results/serve_load.json``.
The model is ResNet-18 at 224 px with untrained weights (speed does not depend on them).

Run (about 4 minutes on a 2-core machine)::

    nice -n 5 python benchmarks/serve_load.py

Targets (issue 15): p95 <= 150 ms at concurrency 4 with ONNX Runtime; throughput at
concurrency 16 >= 80 % of the Predictor's batch throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from service_helpers import serve_process  # noqa: E402

from breastus import Predictor, __version__, cpu_features  # noqa: E402
from breastus.data._io import load_image  # noqa: E402
from breastus.models import Checkpoint, build_model, save_checkpoint  # noqa: E402
from breastus.service import load_served_model  # noqa: E402

DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))




def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def busi_images(count: int) -> list[bytes]:
    """``count`` BUSI PNGs (alternating classes) as bytes."""
    files = []
    for name in ("benign", "malignant", "normal"):
        files += sorted(p for p in (DATA / name).glob("*.png") if "_mask" not in p.name)[: count // 3 + 1]
    if not files:
        raise SystemExit(f"No BUSI images under {DATA}; set BREASTUS_DATA.")
    return [p.read_bytes() for p in files[:count]]


def write_checkpoint(folder: Path, image_size: int) -> Path:
    torch.manual_seed(0)
    model, info = build_model("resnet18", 3, pretrained=None)
    path = folder / "best.pt"
    names = ("benign", "malignant", "normal")
    save_checkpoint(Checkpoint(info, names, image_size, model.state_dict()), path)
    return path


def batch_throughput(predictor: Predictor, images: list[bytes], batch: int, seconds: float) -> dict[str, Any]:
    """Images/s of ``predictor.predict`` on batches decoded from PNG bytes."""
    chunk = [images[i % len(images)] for i in range(batch)]
    warm_until = time.perf_counter() + 1.0  # the first calls of a new batch shape are slow (oneDNN set-up)
    for _ in range(3):
        predictor.predict([load_image("x.png", data=d) for d in chunk])
        if time.perf_counter() > warm_until:
            break
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predictor.predict([load_image("x.png", data=d) for d in chunk])
        done += batch
    elapsed = time.perf_counter() - start
    return {"images": done, "seconds": round(elapsed, 2), "images_per_s": round(done / elapsed, 2)}


async def load(url: str, images: list[bytes], concurrency: int, duration: float, max_requests: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        start = time.perf_counter()

        async def worker(offset: int) -> None:
            nonlocal issued
            i = offset
            while time.perf_counter() - start < duration and issued < max_requests:
                issued += 1
                data = images[i % len(images)]
                i += concurrency
                sent = time.perf_counter()
                try:
                    response = await client.post(f"{url}/v1/predict", files={"file": ("scan.png", data)})
                except httpx.TransportError as exc:
                    errors.append(type(exc).__name__)
                    continue
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*[worker(k) for k in range(concurrency)])
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": issued,
        "ok": len(latencies),
        "status_counts": statuses,
        "errors_5xx": sum(n for code, n in statuses.items() if code.startswith("5")),
        "errors_other": len(errors) + sum(n for code, n in statuses.items() if code != "200" and code[0] != "5"),
        "seconds": round(elapsed, 2),
        "throughput_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
        "mean_ms": round(float(ms.mean()), 1) if len(ms) else None,
    }


def baseline(predictor: Predictor, images: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """The Predictor's throughput at batch 1 and at ``--batch-size``."""
    measured = {}
    for size in sorted({1, args.batch_size}):
        predictor.batch_size = size
        measured[str(size)] = batch_throughput(predictor, images, size, args.batch_seconds / 4)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency level")
    parser.add_argument("--max-requests", type=int, default=2000, help="request cap per concurrency level")
    parser.add_argument("--batch-size", type=int, default=16, help="Predictor batch and largest dynamic batch")
    parser.add_argument("--batch-seconds", type=float, default=8.0, help="Predictor timing per run, both batch sizes")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=24, help="distinct BUSI images uploaded")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = parser.parse_args()

    images = busi_images(args.images)
    results: dict[str, Any] = {
        "benchmark": "serve_load",
        "cpu": cpu_features()["model"],
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "breastus": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": f"resnet18, untrained, {args.image_size} px",
        "options": vars(args),
        "upload_bytes_mean": round(statistics.mean(len(d) for d in images)),
        "load_average_before": load_average(),
        "backends": {},
    }
    print(f"CPU: {results['cpu']} ({results['cores']} cores), load average {results['load_average_before']}")
    print(f"{len(images)} BUSI PNGs, mean {results['upload_bytes_mean'] / 1024:.0f} KiB; {results['model']}")
    with tempfile.TemporaryDirectory(prefix="serve-load-") as folder:
        checkpoint = write_checkpoint(Path(folder), args.image_size)
        for backend in args.backends:
            served = load_served_model(checkpoint, backend=backend, device="cpu", batch_size=args.batch_size)
            before = baseline(served.predictor, images, args)
            print(f"\n[{backend}] Predictor before the load: {before}")
            rows = []
            extra = ["--backend", backend, "--batch-size", str(args.batch_size), "--device", "cpu"]
            with serve_process(checkpoint, extra, timeout=300) as (url, _):
                for data in images[:4]:  # warm-up
                    httpx.post(f"{url}/v1/predict", files={"file": ("scan.png", data)}, timeout=60)
                for concurrency in args.concurrency:
                    row = asyncio.run(load(url, images, concurrency, args.duration, args.max_requests))
                    row["load_average"] = load_average()
                    rows.append(row)
                    print(
                        f"  c={concurrency:>2}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, "
                        f"{row['throughput_per_s']:.1f} req/s, 5xx {row['errors_5xx']}, "
                        f"other errors {row['errors_other']}, load {row['load_average']}"
                    )
            after = baseline(served.predictor, images, args)
            del served
            print(f"[{backend}] Predictor after the load: {after}")
            rates = {b: round((before[b]["images_per_s"] + after[b]["images_per_s"]) / 2, 2) for b in before}
            batch_rate, best_rate = rates[str(args.batch_size)], max(rates.values())
            for row in rows:
                row["ratio_to_batch"] = round(row["throughput_per_s"] / batch_rate, 3)
                row["ratio_to_best_predictor"] = round(row["throughput_per_s"] / best_rate, 3)
                print(
                    f"  c={row['concurrency']:>2}: {100 * row['ratio_to_batch']:.0f} % of the batch-{args.batch_size} "
                    f"throughput ({batch_rate} images/s), {100 * row['ratio_to_best_predictor']:.0f} % of the "
                    f"best Predictor throughput ({best_rate} images/s)"
                )
            batch = {"before": before, "after": after, "images_per_s_mean": rates}
            results["backends"][backend] = {"predictor": batch, "load": rows}
    results["load_average_after"] = load_average()
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"\nWrote {out}")


if __name__ == "__main__":
    main()
