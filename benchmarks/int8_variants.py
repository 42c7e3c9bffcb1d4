"""int8 quantization settings compared on one trained checkpoint, in one run.

Each variant is exported from ``--checkpoint`` by :func:`breastus.export.int8_onnx_bytes`
(calibrated on ``--calibration-size`` BUSI training images of the seeded split, the
sample benchmarks/int8.py takes) and measured against the float32 ONNX export of the same
checkpoint, both run by ONNX Runtime on the BUSI test split (156 images, prepared as the
Predictor prepares them): label agreement with float32, max |Δ probability|, macro-AUC
difference, and speed: images/s at batch 32 (ratio to float32, measured before and after
the variants, the mean taken) and single-image latency (median).

    python benchmarks/int8.py --keep-checkpoint runs/int8/lite0_128.pt --json benchmarks/results/int8.json
    python benchmarks/int8_variants.py --checkpoint runs/int8/lite0_128.pt \\
        --json benchmarks/results/int8_variants_lite0.json

(the first trains the checkpoint: Lite0, 128 px, 3 epochs, the seeded BUSI split).

Prints the CPU features (int8 speed and the U8S8 saturation depend on VNNI).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from int8 import DATA, link_folder, speed
from run_record import run_header, write_result

from breastus import UltrasoundDataset, compute_metrics, cpu_features, load_checkpoint
from breastus.data import train_val_test_split
from breastus.export import OnnxRuntimeModule, int8_onnx_bytes
from breastus.export._onnx import onnx_bytes
from breastus.export._quantize import calibration_batches

S8 = {"weight_type": "int8"}  # U8S8: uint8 activations, int8 weights (saturates without VNNI)
U8 = {"weight_type": "uint8"}  # U8U8: uint8 activations and weights
VARIANTS: dict[str, dict[str, Any]] = {
    "U8S8 minmax, dynamic padding (its arithmetic float)": {**S8, "calibration_method": "minmax", "static_padding": False},
    "U8S8 minmax": {**S8, "calibration_method": "minmax"},
    "U8S8 moving-average": {**S8, "calibration_method": "moving-average"},
    "U8S8 entropy": {**S8, "calibration_method": "entropy"},
    "U8S8 moving-average, reduce-range": {**S8, "calibration_method": "moving-average", "reduce_range": True},
    "U8S8 moving-average, keep first+last": {**S8, "calibration_method": "moving-average", "keep_float": ("first", "last")},
    "U8U8 moving-average": {**U8, "calibration_method": "moving-average"},
    "U8U8 minmax": {**U8, "calibration_method": "minmax"},
    "U8U8 percentile": {**U8, "calibration_method": "percentile"},
    "U8U8 entropy": {**U8, "calibration_method": "entropy"},
    "U8U8 moving-average, keep first": {**U8, "calibration_method": "moving-average", "keep_float": ("first",)},
    "U8U8 entropy, keep first+last": {**U8, "calibration_method": "entropy", "keep_float": ("first", "last")},
}


def probabilities(module: OnnxRuntimeModule, batches: list[np.ndarray], temperature: float) -> np.ndarray:
    """Class probabilities (softmax of logits / temperature; a multi-task model's class output)."""
    rows = []
    for batch in batches:
        out = module(torch.from_numpy(batch))
        logits = out[-1] if isinstance(out, tuple) else out
        rows.append(torch.softmax(logits.double() / temperature, dim=1).numpy())
    return np.concatenate(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a trained checkpoint (best.pt)")
    parser.add_argument("--calibration-size", type=int, default=128)
    parser.add_argument("--variants", default="all", help="variant names separated by ';', or all")
    parser.add_argument("--batch-repeats", type=int, default=5)
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    names = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(";")]
    result: dict[str, Any] = {**run_header(args), "torch_threads": torch.get_num_threads()}
    print(f"CPU: {cpu_features()}; load average {os.getloadavg()}", flush=True)
    checkpoint = load_checkpoint(args.checkpoint)
    size = checkpoint.image_size
    data = UltrasoundDataset.from_folder(DATA)
    split = train_val_test_split(data.labels, 0.1, 0.2, None, 0)
    train, test = data.subset(split.train), data.subset(split.test)
    rng = np.random.default_rng(0)
    calibration_paths = [train.paths[int(i)] for i in rng.choice(len(train), args.calibration_size, replace=False)]
    labels = np.asarray(test.labels)
    test_batches = calibration_batches(checkpoint, test.paths, batch_size=32)
    fp32 = OnnxRuntimeModule(onnx_bytes(checkpoint))
    reference = probabilities(fp32, test_batches, checkpoint.temperature)
    auc32 = compute_metrics(labels, reference, data.class_names).macro_auc or 0.0
    fp32_before = speed(fp32, size, args.batch_repeats, args.latency_repeats)
    result.update(model=checkpoint.model_info.name, image_size=size, test_images=len(test), macro_auc_fp32=auc32)
    result["fp32_before"] = fp32_before
    variants: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="breastus-int8v-") as scratch:
        calibration = link_folder(calibration_paths, Path(scratch) / "busi-train-calibration")
        for name in names:
            started = time.perf_counter()
            data8 = int8_onnx_bytes(checkpoint, calibration, args.calibration_size, **VARIANTS[name])
            export_seconds = time.perf_counter() - started
            int8 = OnnxRuntimeModule(data8)
            got = probabilities(int8, test_batches, checkpoint.temperature)
            auc8 = compute_metrics(labels, got, data.class_names).macro_auc or 0.0
            variants[name] = {
                "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in VARIANTS[name].items()},
                "label_agreement": float((reference.argmax(1) == got.argmax(1)).mean()),
                "max_probability_difference": float(np.abs(reference - got).max()),
                "macro_auc_int8": auc8,
                "macro_auc_difference": auc8 - auc32,
                "export_seconds": export_seconds,
                "file_mb": len(data8) / 1e6,
                **speed(int8, size, args.batch_repeats, args.latency_repeats),
            }
            v = variants[name]
            print(
                f"{name}: agreement {v['label_agreement']:.1%}, AUC {v['macro_auc_difference']:+.4f}, "
                f"max |dp| {v['max_probability_difference']:.3f}, batch 32 {v['batch32_images_per_second']:.1f} img/s, "
                f"latency {v['latency_ms_median']:.1f} ms",
                flush=True,
            )
    fp32_after = speed(fp32, size, args.batch_repeats, args.latency_repeats)
    result["fp32_after"] = fp32_after
    fp32_rate = (fp32_before["batch32_images_per_second"] + fp32_after["batch32_images_per_second"]) / 2
    fp32_latency = (fp32_before["latency_ms_median"] + fp32_after["latency_ms_median"]) / 2
    print(
        f"fp32: batch 32 {fp32_before['batch32_images_per_second']:.1f} / {fp32_after['batch32_images_per_second']:.1f}"
        f" img/s (before / after), latency {fp32_latency:.1f} ms; macro-AUC {auc32:.4f}"
    )
    for name, v in variants.items():
        v["ratio_batch32"] = v["batch32_images_per_second"] / fp32_rate
        v["ratio_latency"] = fp32_latency / v["latency_ms_median"]
        print(f"  {name}: x{v['ratio_batch32']:.2f} batch 32, x{v['ratio_latency']:.2f} latency")
    result["variants"] = variants
    write_result(args.json, result)


if __name__ == "__main__":
    main()
