"""CPU bf16: Trainer and Predictor throughput with ``precision`` auto, fp32 and bf16 (forced), and parity.

Prints the CPU's model and the bfloat16 features found (``breastus.cpu_features``), then, on
ResNet-18 at ``--size`` px, batch 32:

* Trainer images/s (steady-state epoch, images cached) for ``precision="fp32"``, ``"auto"``
  and ``"bf16"`` (forced; emulated and slow on a CPU without AVX-512 BF16 / AMX);
* Predictor images/s at batch 32 (model and softmax on prepared images) for the same three;
* parity: max |Δ probability| and label agreement of bf16 against fp32 predictions on BUSI
  images, with the same weights.

On a CPU without native bf16, ``auto`` must run fp32 (and so match fp32's speed): the
script says so ("no fast bf16 on this CPU: fp32 kept"). On an AMX / AVX-512 BF16 CPU the
ratios auto/fp32 are the speed-up targets (>= 2.5x training, >= 3.5x inference).

    nice -n 5 python benchmarks/cpu_bf16.py --json benchmarks/results/cpu_bf16.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from run_record import run_header, write_result

from breastus import Predictor, TrainConfig, Trainer, UltrasoundDataset, cpu_features
from breastus.models import Checkpoint, build_model, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))
PRECISIONS = ("fp32", "auto", "bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--train-images", type=int, default=64)
    parser.add_argument("--batch-repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_bf16.json")
    args = parser.parse_args()
    features = cpu_features()
    verdict = (
        "fast bf16 on this CPU: auto runs bf16 autocast + channels_last"
        if features["fast_bf16"]
        else "no fast bf16 on this CPU: fp32 kept"
    )
    result: dict[str, Any] = {
        **run_header(args),
        "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "verdict": verdict,
    }
    print(f"CPU: {features['model']}; {features}", flush=True)
    print(verdict, flush=True)
    data = UltrasoundDataset.from_folder(DATA)
    order = np.random.default_rng(0).permutation(len(data))
    train = data.subset(order[: args.train_images])
    val = data.subset(order[args.train_images : args.train_images + 16])
    paths = [data.paths[int(i)] for i in order[-32:]]
    result["training"], result["inference"] = {}, {}
    with tempfile.TemporaryDirectory(prefix="breastus-bf16-") as scratch_name:
        scratch = Path(scratch_name)
        for precision in PRECISIONS:
            config = TrainConfig(
                pretrained="none",
                image_size=args.size,
                epochs=2,
                scheduler="none",
                device="cpu",
                progress=False,
                precision=precision,  # type: ignore[arg-type]
            )
            history = Trainer(config, scratch / precision).fit(train, val)
            last = history.records[-1]
            result["training"][precision] = {
                "ran": last.precision,
                "images_per_second": last.train_images_per_second,
                "per_epoch": [r.train_images_per_second for r in history.records],
            }
            print(
                f"  train {precision:<5} (ran {last.precision}): {last.train_images_per_second:.2f} img/s", flush=True
            )

        torch.manual_seed(0)
        model, info = build_model("resnet18", 3, None)
        checkpoint = save_checkpoint(
            Checkpoint(info, tuple(data.class_names), args.size, model.state_dict()), scratch / "r.pt"
        )
        probabilities: dict[str, np.ndarray] = {}
        for precision in PRECISIONS:
            predictor = Predictor.from_checkpoint(checkpoint, device="cpu", precision=precision)
            tensors = [predictor.preprocess(p) for p in paths]
            predictor._proba_batch(tensors)  # warm-up
            rates = []
            for _ in range(args.batch_repeats):
                started = time.perf_counter()
                probabilities[precision] = predictor._proba_batch(tensors)
                rates.append(32 / (time.perf_counter() - started))
            result["inference"][precision] = {
                "ran": predictor.precision,
                "batch32_images_per_second": max(rates),
                "median": statistics.median(rates),
            }
            print(f"  predict {precision:<5} (ran {predictor.precision}): {max(rates):.1f} img/s", flush=True)
    fp32, bf16 = probabilities["fp32"], probabilities["bf16"]
    result["parity_bf16_vs_fp32"] = {
        "images": len(paths),
        "max_probability_difference": float(np.abs(fp32 - bf16).max()),
        "label_agreement": float((fp32.argmax(1) == bf16.argmax(1)).mean()),
        "note": "same random-init ResNet-18 weights; quality parity on a trained model needs a fast-bf16 CPU run",
    }
    for part, key in (("training", "images_per_second"), ("inference", "batch32_images_per_second")):
        figures = result[part]
        figures["ratio_auto_to_fp32"] = figures["auto"][key] / figures["fp32"][key]
        figures["ratio_bf16_to_fp32"] = figures["bf16"][key] / figures["fp32"][key]
        print(
            f"{part}: auto/fp32 x{figures['ratio_auto_to_fp32']:.2f}, forced bf16/fp32 x{figures['ratio_bf16_to_fp32']:.2f}"
        )
    write_result(args.json, result)


if __name__ == "__main__":
    main()
