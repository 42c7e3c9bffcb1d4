"""Time to quality: wall time until the validation macro-AUC first reaches a target.

In one run, on the same seeded BUSI train/validation split and image size:

(a) the seed-style loop (``throughput.baseline_fit``: ResNet-18 from scratch, Adam 1e-3,
    PNGs decoded every epoch), for ``--seed-epochs`` epochs;
(b) breastus's recommended recipe: EfficientNet-Lite0 with its packaged ImageNet weights,
    AdamW + one-cycle schedule, progressive resizing (``--start-size`` px for the first
    epochs, then ``--size``), early stopping, the decode-once cache, CPU precision ``auto``;
(c) the same recipe without progressive resizing (what resizing adds on its own).

The clock starts before each run builds its model and stops after the validation pass of
the first epoch whose macro-AUC reaches ``--target``; the ratio (b)/(a) is reported for the
stated target and for (a)'s own best macro-AUC (a target (a) reaches by construction).

    nice -n 5 python benchmarks/time_to_quality.py --json benchmarks/results/time_to_quality.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from run_record import run_header, write_result
from throughput import baseline_fit

import breastus.training._trainer as trainer_module
from breastus import TrainConfig, Trainer, UltrasoundDataset
from breastus.data import train_val_test_split

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))


def recipe_run(
    train: UltrasoundDataset, val: UltrasoundDataset, run_dir: Path, config: TrainConfig
) -> list[dict[str, float]]:
    """Per epoch: elapsed wall seconds since the start and the validation macro-AUC.

    The clock is read after each validation pass: the Trainer's per-epoch validation
    (``training._trainer.validation_outputs``) is wrapped for the run.
    """
    stamps: list[float] = []
    original = trainer_module.validation_outputs

    def stamped(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        stamps.append(time.perf_counter())
        return out

    started = time.perf_counter()
    trainer_module.validation_outputs = stamped
    try:
        history = Trainer(config, run_dir).fit(train, val)
    finally:
        trainer_module.validation_outputs = original
    if len(stamps) < len(history.records):
        raise RuntimeError(f"{len(stamps)} validation passes timed for {len(history.records)} epochs")
    return [
        {"epoch": r.epoch, "elapsed": t - started, "val_macro_auc": r.val_macro_auc or 0.0, "train_size": r.train_size}
        for r, t in zip(history.records, stamps[: len(history.records)], strict=True)
    ]


def seed_run(train: UltrasoundDataset, val: UltrasoundDataset, size: int, epochs: int) -> list[dict[str, float]]:
    records = baseline_fit(train, val, size, epochs)
    elapsed, out = 0.0, []
    for epoch, r in enumerate(records, start=1):
        elapsed += r["seconds"]
        out.append({"epoch": epoch, "elapsed": elapsed, "val_macro_auc": r["val_macro_auc"] or 0.0})
    return out


def reach(records: list[dict[str, float]], target: float) -> float | None:
    """Elapsed seconds at the first epoch whose validation macro-AUC is >= target."""
    return next((r["elapsed"] for r in records if r["val_macro_auc"] >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.80, help="validation macro-AUC to reach")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--start-size", type=int, default=96, help="progressive resizing: first epochs at this size")
    parser.add_argument("--seed-epochs", type=int, default=8)
    parser.add_argument("--recipe-epochs", type=int, default=6)
    parser.add_argument("--skip-ablation", action="store_true", help="skip (c), the recipe without resizing")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "time_to_quality.json")
    args = parser.parse_args()
    result: dict[str, Any] = run_header(args)
    print(f"CPU: {result['cpu']['model']}; load average {os.getloadavg()}", flush=True)
    data = UltrasoundDataset.from_folder(DATA)
    split = train_val_test_split(data.labels, 0.1, 0.2, None, 0)
    train, val = data.subset(split.train), data.subset(split.val)
    result["images"] = {"train": len(train), "val": len(val)}
    switch = max(2, args.recipe_epochs // 3)
    recipe = TrainConfig(
        model="tf_efficientnet_lite0",
        pretrained="imagenet",
        image_size=args.size,
        epochs=args.recipe_epochs,
        optimizer="adamw",
        lr=1e-3,
        weight_decay=1e-4,
        scheduler="onecycle",
        progressive_resize=((1, args.start_size), (switch + 1, args.size)),
        early_stopping_patience=3,
        device="cpu",
        progress=False,
    )
    result["recipe"] = recipe.to_dict()
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="breastus-ttq-") as scratch_name:
        scratch = Path(scratch_name)
        print(f"(a) seed-style loop, {args.seed_epochs} epochs at {args.size} px ...", flush=True)
        runs["a_seed_loop"] = seed_run(train, val, args.size, args.seed_epochs)
        print(f"    {runs['a_seed_loop']}", flush=True)
        print("(b) breastus recipe with progressive resizing ...", flush=True)
        runs["b_recipe"] = recipe_run(train, val, scratch / "b", recipe)
        print(f"    {runs['b_recipe']}", flush=True)
        if not args.skip_ablation:
            print("(c) the recipe without progressive resizing ...", flush=True)
            runs["c_recipe_fixed_size"] = recipe_run(train, val, scratch / "c", recipe.replace(progressive_resize=None))
            print(f"    {runs['c_recipe_fixed_size']}", flush=True)
    result["runs"] = runs
    seed_best = max(r["val_macro_auc"] for r in runs["a_seed_loop"])
    targets = {"stated": args.target, "seed_loop_best": seed_best}
    result["targets"] = targets
    result["seconds_to_target"] = {
        name: {run: reach(records, value) for run, records in runs.items()} for name, value in targets.items()
    }
    for name, times in result["seconds_to_target"].items():
        a, b = times["a_seed_loop"], times["b_recipe"]
        times["ratio_recipe_to_seed"] = None if a is None or b is None else b / a
        shown = ", ".join(f"{k} {'not reached' if v is None else f'{v:.1f}'}" for k, v in times.items())
        print(f"target {name} = {targets[name]:.3f}: {shown}")
    write_result(args.json, result)


if __name__ == "__main__":
    main()
