"""Speed benchmark: training and inference throughput, latency, memory and use of the machine's peak.

One run measures, on ResNet-18 at 224 px and batch 32 (the original BUSI recipe):

* training images/s, data loading included, of
  (a) a baseline written the way the original student project did it: a folder dataset that
      opens and transforms every PNG each epoch (torchvision v1 transforms), the eager model in
      the default memory format, a default DataLoader, ``loss.item()`` every step;
  (b) the breastus ``Trainer`` with its defaults (decode-once cache, channels_last);
  (c) the ``Trainer`` with ``batch_augment=True``;
  (d) the ``Trainer`` with ``compile=True`` (``torch.compile``; its first epoch includes compiling);
  each for ``--epochs`` epochs over the same ``--train-images`` BUSI images (epoch 1 fills the
  cache, later epochs show the steady state), and the ratios to (a), over the whole run and per epoch;
* optional time-to-quality (``--ttq-epochs N``): (a) and (b) trained on the same split at
  ``--ttq-size`` px, wall time until the validation macro-F1 first reaches (a)'s final value;
* inference through the ``Predictor`` for eager PyTorch, TorchScript and ONNX Runtime:
  images/s at batch 32 (model and softmax, on decoded images), images/s from PNG files, and
  single-image latency (median and p95) of the model alone and from a file;
* peak resident memory of ``predict_folder`` over all 780 BUSI images and over 78;
* FLOPs per image (``torch.utils.flop_counter``) × images/s against a measured fp32 GEMM peak.

Full run, about 10 minutes on an idle 2-core machine::

    python benchmarks/throughput.py --json benchmarks/results/throughput.json

Prints a table and writes JSON (numbers, options, load average before and after, versions).
Timings on a shared machine are noisy: read them with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from seed_loop import FolderDataset, baseline_transforms
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import models

from breastus import Predictor, TrainConfig, Trainer, UltrasoundDataset, __version__, compute_metrics
from breastus.data import train_val_test_split
from breastus.models import Checkpoint, build_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))
BACKENDS = ("torch", "torchscript", "onnxruntime")


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# --------------------------------------------------------------------------- machine limits


def gemm_peak(n: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """Best fp32 matrix-multiply rate with torch's default threads: GFLOP per second and per CPU-second."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu_started)
    return 2 * n**3 / best / 1e9, 2 * n**3 / best_cpu / 1e9


def flops_per_image(size: int) -> tuple[float, float]:
    """Forward and forward+backward FLOPs of ResNet-18 for one ``size`` px image."""
    model = models.resnet18(num_classes=3)
    x = torch.randn(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model.eval()(x)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model.train()
        model(torch.randn(2, 3, size, size)).sum().backward()
    return float(forward), float(counter.get_total_flops()) / 2


# --------------------------------------------------------------------------- (a) the baseline


def baseline_fit(
    train: UltrasoundDataset,
    val: UltrasoundDataset | None,
    size: int,
    epochs: int,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict[str, float]]:
    """Train the baseline; per epoch: training images/s (loading included), seconds, val macro-F1."""
    torch.manual_seed(seed)
    train_tf, eval_tf = baseline_transforms(size)
    loader = DataLoader(FolderDataset(train.paths, list(train.labels), train_tf), batch_size=32, shuffle=True)
    model = models.resnet18(num_classes=3).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    records = []
    for _ in range(epochs):
        started, cpu_started = time.perf_counter(), time.process_time()
        model.train()
        seen = 0
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            loss.item()
            seen += len(labels)
        train_seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        record = {
            "images_per_second": seen / train_seconds,
            "images_per_cpu_second": seen / cpu_seconds,
            "train_seconds": train_seconds,
        }
        if val is not None:
            model.eval()
            val_loader = DataLoader(FolderDataset(val.paths, list(val.labels), eval_tf), batch_size=32)
            probabilities, labels_seen = [], []
            with torch.no_grad():
                for images, labels in val_loader:
                    probabilities.append(torch.softmax(model(images.to(device)), dim=1).cpu())
                    labels_seen.append(labels)
            metrics = compute_metrics(
                torch.cat(labels_seen).numpy(), torch.cat(probabilities).numpy(), train.class_names
            )
            record["val_macro_f1"] = metrics.macro_f1
            record["val_macro_auc"] = metrics.macro_auc
        record["seconds"] = time.perf_counter() - started
        records.append(record)
    return records


class TimedTrainer(Trainer):
    """The Trainer, also recording the process CPU time of each training epoch (all threads)."""

    cpu_seconds: list[float]

    def _train_epoch(self, *args: Any, **kwargs: Any) -> tuple[float, float, int, float]:
        started = time.process_time()
        out = super()._train_epoch(*args, **kwargs)
        self.cpu_seconds.append(time.process_time() - started)
        return out


def trainer_fit(
    train: UltrasoundDataset, val: UltrasoundDataset, size: int, epochs: int, run_dir: Path, **changes: Any
) -> list[dict[str, float]]:
    config = TrainConfig(
        pretrained="none", image_size=size, epochs=epochs, progress=False, scheduler="none", device="cpu", **changes
    )
    trainer = TimedTrainer(config, run_dir)
    trainer.cpu_seconds = []
    history = trainer.fit(train, val)
    per_epoch = len(train) // 32 * 32 if len(train) % 32 == 1 else len(train)
    return [
        {
            "images_per_second": r.train_images_per_second,
            "images_per_cpu_second": per_epoch / cpu,
            "val_macro_f1": r.val_macro_f1,
            "seconds": r.seconds,
        }
        for r, cpu in zip(history.records, trainer.cpu_seconds, strict=True)
    ]


# --------------------------------------------------------------------------- inference


def make_checkpoint(path: Path, size: int) -> Path:
    torch.manual_seed(0)
    model, info = build_model("resnet18", 3, None)
    return save_checkpoint(Checkpoint(info, ("benign", "malignant", "normal"), size, model.state_dict()), path)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def default_eager(tensors: list[torch.Tensor], batch_repeats: int, latency_repeats: int) -> dict[str, Any]:
    """The issue's reference: torchvision ResNet-18 as is, ``eval()``, ``no_grad``, default memory format."""
    torch.manual_seed(0)
    model = models.resnet18(num_classes=3).eval()
    batch = torch.stack(tensors)
    timings, cpu_timings, single = [], [], []
    with torch.no_grad():
        torch.softmax(model(batch), dim=1)  # warm-up
        for _ in range(batch_repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            torch.softmax(model(batch), dim=1)
            timings.append(time.perf_counter() - started)
            cpu_timings.append(time.process_time() - cpu_started)
        for i in range(latency_repeats):
            started = time.perf_counter()
            torch.softmax(model(batch[i % len(tensors)].unsqueeze(0)), dim=1)
            single.append((time.perf_counter() - started) * 1000)
    rate = len(tensors) / statistics.median(timings)
    print(
        f"  {'default eager':<12} batch 32: {rate:6.1f} img/s   latency {statistics.median(single):6.1f} ms", flush=True
    )
    return {
        "batch32_images_per_second": rate,
        "batch32_images_per_cpu_second": len(tensors) / statistics.median(cpu_timings),
        "latency_ms_median": statistics.median(single),
        "latency_ms_p95": percentile(single, 95),
    }


def time_predictor(
    predictor: Predictor, tensors: list[torch.Tensor], paths: list[Path], batch_repeats: int, latency_repeats: int
) -> dict[str, Any]:
    """Images/s at batch 32 (wall and CPU), from PNG files, and single-image latency of one Predictor."""
    predictor._proba_batch(tensors)  # warm-up
    timings, cpu_timings = [], []
    for _ in range(batch_repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        predictor._proba_batch(tensors)
        timings.append(time.perf_counter() - started)
        cpu_timings.append(time.process_time() - cpu_started)
    started = time.perf_counter()
    n_files = len(list(predictor.predict_paths(paths[:32])))
    file_rate = n_files / (time.perf_counter() - started)
    single, single_file = [], []
    for i in range(latency_repeats):
        started = time.perf_counter()
        predictor._proba_batch([tensors[i % len(tensors)]])
        single.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        predictor.predict(paths[i % len(paths)])
        single_file.append((time.perf_counter() - started) * 1000)
    return {
        "batch32_images_per_second": len(tensors) / statistics.median(timings),
        "batch32_images_per_cpu_second": len(tensors) / statistics.median(cpu_timings),
        "from_files_images_per_second": file_rate,
        "latency_ms_median": statistics.median(single),
        "latency_ms_p95": percentile(single, 95),
        "latency_from_file_ms_median": statistics.median(single_file),
        "latency_from_file_ms_p95": percentile(single_file, 95),
    }


def inference(checkpoint: Path, paths: list[Path], batch_repeats: int, latency_repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for backend in BACKENDS:
        started = time.perf_counter()
        predictor = Predictor.from_checkpoint(checkpoint, device="cpu", backend=backend)
        setup = time.perf_counter() - started
        tensors = [predictor.preprocess(p) for p in paths[:32]]
        if not results:
            results["default_eager"] = default_eager(tensors, batch_repeats, latency_repeats)
        results[backend] = {
            "setup_seconds": setup,
            **time_predictor(predictor, tensors, paths, batch_repeats, latency_repeats),
        }
        print(
            f"  {backend:<12} batch 32: {results[backend]['batch32_images_per_second']:6.1f} img/s   "
            f"latency {results[backend]['latency_ms_median']:6.1f} ms",
            flush=True,
        )
    return results


END_TO_END = {
    # README command 1 (the main job) and a 5-fold cross-validation of the same recipe.
    "main": ["train", str(DATA), "--out", "{out}", "--pretrained", "none", "--no-progress"],
    "cv": ["cv", str(DATA), "--folds", "5", "--out", "{out}", "--pretrained", "none", "--no-progress"],
}


def end_to_end(job: str, scratch: Path) -> dict[str, Any]:
    """Wall time and peak resident memory of one whole ``breastus`` command, in a child process."""
    command = [sys.executable, "-m", "breastus.cli", *(a.format(out=scratch / job) for a in END_TO_END[job])]
    print(f"end to end: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest child so far, MB
    tail = (done.stdout + done.stderr).strip().splitlines()[-12:]
    print(f"  {job}: exit {done.returncode}, {seconds / 60:.1f} min, peak RSS {peak:.0f} MB", flush=True)
    return {"command": command, "returncode": done.returncode, "seconds": seconds, "peak_rss_mb": peak, "tail": tail}


def memory_mb(field: str) -> float:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process from /proc, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(checkpoint: str, folder: str, backend: str) -> None:
    """Child process: resident memory after set-up and its peak while streaming predict_folder over ``folder``."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", backend=backend)
    predictor._proba_batch([torch.zeros(3, predictor.image_size, predictor.image_size)])
    before = memory_mb("VmRSS")
    # Reset the peak to the current size (Linux), so set-up (e.g. the ONNX export) does not hide growth.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    count = sum(1 for _ in predictor.predict_folder(folder))
    result = {
        "images": count,
        "rss_after_setup_mb": before,
        "peak_rss_mb": memory_mb("VmHWM"),
        "rss_after_mb": memory_mb("VmRSS"),
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(result))


def peak_rss(checkpoint: Path, data: UltrasoundDataset, backend: str, scratch: Path) -> dict[str, Any]:
    small = scratch / "busi-78"
    for path in data.paths[::10]:
        target = small / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    out = {}
    for name, folder in (("78", small), ("780", DATA)):
        done = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(checkpoint), str(folder), backend],
            capture_output=True,
            text=True,
            check=True,
        )
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"  predict_folder over {out[name]['images']} images: RSS after set-up "
            f"{out[name]['rss_after_setup_mb']:.0f} MB, peak {out[name]['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--train-images", type=int, default=96, help="BUSI images per training epoch (a multiple of 32)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per configuration")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-repeats", type=int, default=3, help="timed batches of 32 per backend")
    parser.add_argument("--latency-repeats", type=int, default=20, help="timed single images per backend")
    parser.add_argument("--ttq-epochs", type=int, default=0, help="time-to-quality epochs (0: skip)")
    parser.add_argument("--ttq-size", type=int, default=64, help="image size for time-to-quality")
    parser.add_argument("--rss-backend", choices=BACKENDS, default="onnxruntime")
    parser.add_argument("--skip", default="", help="comma list of sections to skip: train,compile,infer,rss")
    parser.add_argument(
        "--end-to-end",
        default="",
        help="comma list of whole commands to time: main (README's main job), cv (5-fold breastus cv); "
        "about 30 minutes and 2.5 hours on an idle 2-core machine",
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return
    skip = set(filter(None, args.skip.split(",")))

    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "environment": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "uptime_before": uptime(),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "breastus": __version__,
        },
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "rss_child"},
    }
    print(result["uptime_before"], flush=True)
    peak, peak_cpu = gemm_peak()
    result["gemm_peak_gflops_per_cpu_second"] = peak_cpu
    forward, train_flops = flops_per_image(args.size)
    result["gemm_peak_gflops"] = peak
    result["flops_per_image"] = {"forward": forward, "train_step": train_flops}
    print(
        f"fp32 GEMM peak {peak:.1f} GFLOP/s; ResNet-18 at {args.size} px: {forward / 1e9:.2f} GFLOP forward, "
        f"{train_flops / 1e9:.2f} GFLOP per training image",
        flush=True,
    )

    data = UltrasoundDataset.from_folder(DATA)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data))
    train = data.subset(order[: args.train_images])
    val = data.subset(order[args.train_images : args.train_images + 16])

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        if "train" not in skip:
            print("training throughput ...", flush=True)
            runs = {
                "a_baseline": baseline_fit(train, None, args.size, args.epochs),
                "b_trainer": trainer_fit(train, val, args.size, args.epochs, scratch / "b"),
                "c_trainer_batch_augment": trainer_fit(
                    train, val, args.size, args.epochs, scratch / "c", batch_augment=True
                ),
            }
            if "compile" not in skip:
                runs["d_trainer_compile"] = trainer_fit(train, val, args.size, args.epochs, scratch / "d", compile=True)
            result["training"] = runs
            for name, records in runs.items():
                rates = ", ".join(f"{r['images_per_second']:.2f}" for r in records)
                print(f"  {name:<24} img/s per epoch: {rates}", flush=True)
        if args.ttq_epochs > 0 and "ttq" not in skip:
            print("time to quality ...", flush=True)
            split = train_val_test_split(data.labels, 0.1, 0.2, None, 0)
            ttq_train, ttq_val = data.subset(split.train), data.subset(split.val)
            base = baseline_fit(ttq_train, ttq_val, args.ttq_size, args.ttq_epochs)
            ours = trainer_fit(ttq_train, ttq_val, args.ttq_size, args.ttq_epochs, scratch / "ttq")
            target = base[-1]["val_macro_f1"]

            def reach(records: list[dict[str, float]]) -> float | None:
                elapsed = 0.0
                for r in records:
                    elapsed += r["seconds"]
                    if r["val_macro_f1"] >= target:
                        return elapsed
                return None

            result["time_to_quality"] = {
                "baseline": base,
                "trainer": ours,
                "target_macro_f1": target,
                "baseline_seconds": reach(base),
                "trainer_seconds": reach(ours),
            }
        checkpoint = make_checkpoint(scratch / "resnet18.pt", args.size)
        if "infer" not in skip:
            print("inference ...", flush=True)
            paths = data.paths[:: max(1, len(data) // 40)][:40]
            result["inference"] = inference(checkpoint, paths, args.batch_repeats, args.latency_repeats)
        for job in filter(None, args.end_to_end.split(",")):
            result.setdefault("end_to_end", {})[job] = end_to_end(job, scratch)
        if "rss" not in skip:
            print("peak RSS of predict_folder ...", flush=True)
            result["predict_folder_rss"] = {
                "backend": args.rss_backend,
                **peak_rss(checkpoint, data, args.rss_backend, scratch),
            }
    result["uptime_after"] = uptime()
    print(result["uptime_after"])
    print()
    print(render_table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"\nwrote {args.json}")


def whole_run_rate(records: list[dict[str, float]]) -> float:
    """Images per second over all epochs of one run (equal-sized epochs: the harmonic mean)."""
    return len(records) / sum(1 / r["images_per_second"] for r in records)


def render_table(result: dict[str, Any]) -> str:
    peak = result["gemm_peak_gflops"]
    train_flops = result["flops_per_image"]["train_step"]
    forward = result["flops_per_image"]["forward"]
    lines = [f"{'measurement':<52}{'value':>16}{'ratio':>8}{'% of GEMM peak':>16}", "-" * 92]

    peak_cpu = result.get("gemm_peak_gflops_per_cpu_second", peak)

    def row(
        name: str, value: float, unit: str, ratio: float | None = None, flops: float | None = None, cpu: bool = False
    ) -> None:
        ratio_text = f"{ratio:.2f}x" if ratio is not None else ""
        share = f"{100 * flops * value / 1e9 / (peak_cpu if cpu else peak):.0f} %" if flops is not None else ""
        lines.append(f"{name:<52}{value:>9.2f} {unit:<6}{ratio_text:>8}{share:>16}")

    if "gemm_peak_gflops_per_cpu_second" in result:
        lines.append(
            f"fp32 GEMM peak: {peak:.1f} GFLOP/s, {peak_cpu:.1f} GFLOP per CPU-second (2048x2048 matmul); "
            "'/cpu-s' rows count the benchmark's own CPU time (all threads), so other load matters less"
        )
    else:
        lines.append(f"fp32 GEMM peak: {peak:.1f} GFLOP/s (2048x2048 matmul)")
    if "training" in result:
        runs = result["training"]
        base_last = runs["a_baseline"][-1]["images_per_second"]
        base_first = runs["a_baseline"][0]["images_per_second"]
        labels = {
            "a_baseline": "(a) baseline",
            "b_trainer": "(b) Trainer",
            "c_trainer_batch_augment": "(c) Trainer, batch_augment",
            "d_trainer_compile": "(d) Trainer, compile",
        }
        base_all = whole_run_rate(runs["a_baseline"])
        for key, records in runs.items():
            rate = whole_run_rate(records)
            row(f"train img/s, all {len(records)} epochs, {labels[key]}", rate, "/s", rate / base_all, train_flops)
        for key, records in runs.items():
            row(
                f"train img/s, epoch 1, {labels[key]}",
                records[0]["images_per_second"],
                "/s",
                records[0]["images_per_second"] / base_first,
                train_flops,
            )
            if len(records) > 1:
                row(
                    f"train img/s, epoch {len(records)}, {labels[key]}",
                    records[-1]["images_per_second"],
                    "/s",
                    records[-1]["images_per_second"] / base_last,
                    train_flops,
                )
        if "images_per_cpu_second" in runs["a_baseline"][-1]:
            base_cpu = runs["a_baseline"][-1]["images_per_cpu_second"]
            for key, records in runs.items():
                row(
                    f"train img/cpu-s, epoch {len(records)}, {labels[key]}",
                    records[-1]["images_per_cpu_second"],
                    "/cpu-s",
                    records[-1]["images_per_cpu_second"] / base_cpu,
                    train_flops,
                    cpu=True,
                )
    if "time_to_quality" in result:
        ttq = result["time_to_quality"]
        lines.append(
            f"time to val macro-F1 >= {ttq['target_macro_f1']:.3f}: baseline {ttq['baseline_seconds']} s, "
            f"Trainer {ttq['trainer_seconds']} s"
        )
    if "inference" in result:
        inf = result["inference"]
        # Ratios against the reference (plain torchvision model) where measured, else the eager Predictor.
        eager = inf.get("default_eager", inf["torch"])
        predictors = {k: v for k, v in inf.items() if k != "default_eager"}
        for backend, values in inf.items():
            row(
                f"infer img/s, batch 32, {backend}",
                values["batch32_images_per_second"],
                "/s",
                values["batch32_images_per_second"] / eager["batch32_images_per_second"],
                forward,
            )
        for backend, values in inf.items():
            if "batch32_images_per_cpu_second" in values:
                row(
                    f"infer img/cpu-s, batch 32, {backend}",
                    values["batch32_images_per_cpu_second"],
                    "/cpu-s",
                    values["batch32_images_per_cpu_second"] / eager["batch32_images_per_cpu_second"],
                    forward,
                    cpu=True,
                )
        for backend, values in predictors.items():
            row(
                f"infer img/s from PNG files, batch 32, {backend}",
                values["from_files_images_per_second"],
                "/s",
                values["from_files_images_per_second"] / inf["torch"]["from_files_images_per_second"],
            )
        for backend, values in inf.items():
            row(
                f"latency median, 1 image, {backend}",
                values["latency_ms_median"],
                "ms",
                eager["latency_ms_median"] / values["latency_ms_median"],
            )
            row(f"latency p95, 1 image, {backend}", values["latency_ms_p95"], "ms")
            if "latency_from_file_ms_median" in values:
                row(f"latency median, 1 PNG file, {backend}", values["latency_from_file_ms_median"], "ms")
    for job, values in result.get("end_to_end", {}).items():
        row(f"end to end, {job} ({'ok' if values['returncode'] == 0 else 'failed'})", values["seconds"] / 60, "min")
    if "predict_folder_rss" in result:
        rss = result["predict_folder_rss"]
        for key in ("78", "780"):
            row(f"RSS after set-up, {rss['backend']} Predictor", rss[key]["rss_after_setup_mb"], "MB")
            row(
                f"peak RSS predict_folder, {rss[key]['images']} images ({rss['backend']})",
                rss[key]["peak_rss_mb"],
                "MB",
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
