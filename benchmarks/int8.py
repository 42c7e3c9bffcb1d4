"""int8 against float32 ONNX Runtime: speed on ResNet-18 at 224 px, and agreement on the BUSI test split.

One run measures:

* speed: a ResNet-18 checkpoint at 224 px exported to float32 ONNX and to int8 ONNX
  (``export_model(..., quantize="int8")``, calibrated on BUSI training images), both run by
  :class:`~breastus.export.OnnxRuntimeModule`: images/s at batch 32 and single-image latency
  (median, p95) of the model alone, and the ratios;
* quality: a model trained by the benchmark (``--model`` at ``--size`` px for ``--epochs``
  epochs on the seeded BUSI training split, ImageNet weights where packaged) is exported both
  ways (int8 calibrated on ``--calibration-size`` training images) and both are run through
  ``Predictor.from_exported`` on the test split: label agreement, max |Δ probability| and the
  macro-AUC of each.

    nice -n 5 python benchmarks/int8.py --json benchmarks/results/int8.json

Prints the CPU model and features (int8 speed depends on AVX-512 VNNI / AMX) and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from run_record import run_header, write_result

from breastus import Predictor, TrainConfig, Trainer, UltrasoundDataset, compute_metrics, cpu_features
from breastus.data import train_val_test_split
from breastus.export import OnnxRuntimeModule, export_model
from breastus.models import Checkpoint, build_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))


def link_folder(paths: list[Path], folder: Path) -> Path:
    """A folder of symbolic links to ``paths`` (the calibration images: training images only)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        (folder / f"{i:04d}{path.suffix}").symlink_to(path)
    return folder


def speed(module: OnnxRuntimeModule, size: int, batch_repeats: int, latency_repeats: int) -> dict[str, float]:
    batch = torch.randn(32, 3, size, size)
    single = torch.randn(1, 3, size, size)
    module(batch)
    module(single)
    rates = []
    for _ in range(batch_repeats):
        started = time.perf_counter()
        module(batch)
        rates.append(32 / (time.perf_counter() - started))
    latencies = []
    for _ in range(latency_repeats):
        started = time.perf_counter()
        module(single)
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "batch32_images_per_second": max(rates),
        "batch32_images_per_second_median": statistics.median(rates),
        "latency_ms_median": statistics.median(latencies),
        "latency_ms_p95": float(np.percentile(latencies, 95)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-repeats", type=int, default=5)
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--model", default="tf_efficientnet_lite0", help="model trained for the quality part")
    parser.add_argument("--pretrained", default="imagenet")
    parser.add_argument("--size", type=int, default=128, help="image size of the trained model")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--calibration-size", type=int, default=128)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "int8.json")
    parser.add_argument(
        "--keep-checkpoint", type=Path, default=None, help="copy the quality model's best.pt here (for int8_variants.py)"
    )
    args = parser.parse_args()
    features = cpu_features()
    result: dict[str, Any] = {
        **run_header(args),
        "torch_threads": torch.get_num_threads(),
    }
    print(f"CPU: {features['model']}; {features}; load average {os.getloadavg()}", flush=True)
    data = UltrasoundDataset.from_folder(DATA)
    split = train_val_test_split(data.labels, 0.1, 0.2, None, 0)
    train, val, test = data.subset(split.train), data.subset(split.val), data.subset(split.test)
    rng = np.random.default_rng(0)
    calibration_paths = [train.paths[int(i)] for i in rng.choice(len(train), args.calibration_size, replace=False)]

    with tempfile.TemporaryDirectory(prefix="breastus-int8-") as scratch_name:
        scratch = Path(scratch_name)
        calibration = link_folder(calibration_paths, scratch / "busi-train-calibration")

        print("speed: ResNet-18 at 224 px ...", flush=True)
        torch.manual_seed(0)
        model, info = build_model("resnet18", 3, None)
        resnet = save_checkpoint(Checkpoint(info, tuple(data.class_names), 224, model.state_dict()), scratch / "r.pt")
        files = {
            "fp32": export_model(resnet, scratch / "r.onnx"),
            "int8": export_model(
                resnet, scratch / "r.int8.onnx", quantize="int8", calibration=calibration, calibration_size=32
            ),
        }
        result["speed"] = {}
        for name, file in files.items():
            result["speed"][name] = {
                "file_mb": file.stat().st_size / 1e6,
                **speed(OnnxRuntimeModule(file), 224, args.batch_repeats, args.latency_repeats),
            }
            s = result["speed"][name]
            print(
                f"  {name}: batch 32 {s['batch32_images_per_second']:.1f} img/s, latency "
                f"{s['latency_ms_median']:.1f} ms (p95 {s['latency_ms_p95']:.1f})",
                flush=True,
            )
        fp32, int8 = result["speed"]["fp32"], result["speed"]["int8"]
        result["speed"]["ratio_batch32"] = int8["batch32_images_per_second"] / fp32["batch32_images_per_second"]
        result["speed"]["ratio_latency"] = fp32["latency_ms_median"] / int8["latency_ms_median"]

        print(f"quality: training {args.model} at {args.size} px for {args.epochs} epochs ...", flush=True)
        config = TrainConfig(
            model=args.model,
            pretrained=args.pretrained,
            image_size=args.size,
            epochs=args.epochs,
            scheduler="onecycle",
            optimizer="adamw",
            lr=1e-3,
            device="cpu",
            progress=False,
        )
        started = time.perf_counter()
        Trainer(config, scratch / "run").fit(train, val)
        result["train_seconds"] = time.perf_counter() - started
        best = scratch / "run" / "best.pt"
        if args.keep_checkpoint is not None:
            args.keep_checkpoint.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(best, args.keep_checkpoint)
        fp32_file = export_model(best, scratch / "m.onnx")
        started = time.perf_counter()
        int8_file = export_model(
            best,
            scratch / "m.int8.onnx",
            quantize="int8",
            calibration=calibration,
            calibration_size=args.calibration_size,
        )
        result["int8_export_seconds"] = time.perf_counter() - started
        labels = np.asarray(test.labels)
        outputs = {}
        for name, file in (("fp32", fp32_file), ("int8", int8_file)):
            outputs[name] = Predictor.from_exported(file, device="cpu").predict_proba(test.paths)
        metrics = {k: compute_metrics(labels, v, data.class_names) for k, v in outputs.items()}
        agreement = float((outputs["fp32"].argmax(1) == outputs["int8"].argmax(1)).mean())
        result["quality"] = {
            "model": args.model,
            "image_size": args.size,
            "test_images": len(test),
            "calibration_images": args.calibration_size,
            "label_agreement": agreement,
            "max_probability_difference": float(np.abs(outputs["fp32"] - outputs["int8"]).max()),
            "macro_auc_fp32": metrics["fp32"].macro_auc,
            "macro_auc_int8": metrics["int8"].macro_auc,
            "macro_auc_difference": (metrics["int8"].macro_auc or 0.0) - (metrics["fp32"].macro_auc or 0.0),
            "accuracy_fp32": metrics["fp32"].accuracy,
            "accuracy_int8": metrics["int8"].accuracy,
        }
        shutil.rmtree(scratch / "run", ignore_errors=True)
    q = result["quality"]
    print(
        f"int8 / fp32 ONNX Runtime: batch 32 x{result['speed']['ratio_batch32']:.2f}, latency "
        f"{int8['latency_ms_median']:.1f} vs {fp32['latency_ms_median']:.1f} ms; BUSI test ({q['test_images']} images, "
        f"{q['model']} {q['image_size']} px): agreement {q['label_agreement']:.1%}, macro-AUC "
        f"{q['macro_auc_fp32']:.4f} -> {q['macro_auc_int8']:.4f} ({q['macro_auc_difference']:+.4f})"
    )
    write_result(args.json, result)


if __name__ == "__main__":
    main()
