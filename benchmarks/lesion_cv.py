"""Classifier vs multi-task vs segment-then-classify on BUSI grouped CV, confirmed on BrEaST.

Takes two finished ``breastus cv`` runs made with the same recipe, seed and folds (a
classifier, e.g. ``tf_efficientnet_lite0``, and a multi-task model on the same encoder,
``unet/tf_efficientnet_lite0``) and adds the third recipe of the comparison:

* **segment-then-classify**: a classifier of lesion crops is cross-validated on the lesion
  crops of the same BUSI images (``benchmarks/lesion_crop.py``, crops from the true masks
  for training), with the *same duplicate groups and folds* as the two runs (the folds are
  checked to hold the same images). At test time the fold's multi-task model finds the
  lesion, its crop is classified by the fold's crop classifier and the two probability
  vectors are fused (:meth:`breastus.Predictor.with_crop_classifier`); "normal" still means
  "no lesion found". No true mask is used at test time.

It then reports, for all three recipes, the BUSI out-of-fold figures (pooled over the five
held-out folds) and the external BrEaST-Lesions-USG figures of every fold model (their mean)
and of the probability-averaging ensemble (malignant-vs-rest AUC). BrEaST is only predicted:
nothing is trained, selected or thresholded on it. Reduced CPU run (about 15 minutes of
crop training on 2 cores, after the two CV runs of ``docs/guide/lesion.rst``)::

    python benchmarks/lesion_cv.py --classifier runs/cv-lite0 --multitask runs/cv-unet-lite0 \\
        --crops-run runs/cv-crops-lite0 --json benchmarks/results/lesion_cv.json

``--folds-only`` skips BrEaST.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from breastus import Predictor, TrainConfig, UltrasoundDataset, __version__, cpu_features, cross_validate
from breastus._run_files import CV_FILE, FOLD_FILE, OOF_FILE
from breastus.evaluation import compute_binary_metrics, compute_metrics, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lesion_aware import figures  # the figures of one evaluation, shared with that benchmark
from lesion_crop import crop_folder
from run_record import write_result

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("classifier", "multitask", "segment_then_classify")


def read_run(run: Path) -> dict[str, Any]:
    """``cv.json`` of a finished ``breastus cv`` run, with each fold's test paths."""
    if not (run / CV_FILE).is_file():
        raise SystemExit(f"{run} holds no {CV_FILE}; run `breastus cv ... --out {run}` first.")
    report = json.loads((run / CV_FILE).read_text("utf-8"))
    report["test_paths"] = [
        json.loads((run / f"fold-{k}" / FOLD_FILE).read_text("utf-8"))["paths"]
        for k in range(1, report["n_folds"] + 1)
    ]
    return report


def oof_groups(run: Path) -> dict[str, str]:
    """Relative path -> duplicate group, as the run's audit grouped them."""
    with (run / OOF_FILE).open(encoding="utf-8") as handle:
        return {row["path"]: row["group"] for row in csv.DictReader(handle)}


def crop_cv(args: argparse.Namespace, classifier: dict[str, Any], groups: dict[str, str]) -> dict[str, Any]:
    """Cross-validate the crop classifier on the same folds (resumable in ``args.crops_run``)."""
    crops = args.crops_run / "crops"
    if not crops.is_dir():
        with tempfile.TemporaryDirectory(dir=args.crops_run.parent) as scratch:
            crop_folder(args.data, Path(scratch) / "crops", margin=args.margin)
            args.crops_run.mkdir(parents=True, exist_ok=True)
            (Path(scratch) / "crops").rename(crops)
    config = TrainConfig.from_dict({**classifier["config"], "device": "cpu", "progress": False})
    dataset = UltrasoundDataset.from_path(crops, config.class_names)
    relative = [str(p.relative_to(crops)) for p in dataset.paths]
    missing = [p for p in relative if p not in groups]
    if missing:
        raise SystemExit(f"{len(missing)} crops have no group in the multi-task run, e.g. {missing[:3]}")
    cross_validate(
        dataset,
        args.crops_run,
        config,
        folds=classifier["n_folds"],
        groups=[groups[p] for p in relative],
        bootstrap=0,
        plots=False,
        resume=True,
    )
    return read_run(args.crops_run)


def check_same_folds(runs: dict[str, dict[str, Any]]) -> None:
    """Every run must hold out the same images in fold k (else the comparison leaks)."""
    reference_name, reference = next(iter(runs.items()))
    for name, run in runs.items():
        for k, (a, b) in enumerate(zip(reference["test_paths"], run["test_paths"], strict=True), start=1):
            if sorted(a) != sorted(b):
                raise SystemExit(f"fold {k} of {name} holds other test images than {reference_name}: not comparable")


def fold_predictors(args: argparse.Namespace, k: int) -> dict[str, Predictor]:
    """Fold ``k``'s predictor of each recipe; segment-then-classify wraps the loaded multi-task one."""
    def load(run: Path) -> Predictor:
        return Predictor.from_checkpoint(run / f"fold-{k}" / "best.pt", device="cpu")

    multitask = load(args.multitask)
    return {
        "classifier": load(args.classifier),
        "multitask": multitask,
        "segment_then_classify": multitask.with_crop_classifier(
            load(args.crops_run), weight=args.weight, margin=args.margin
        ),
    }


def pooled_figures(parts: list[Any]) -> dict[str, Any]:
    """Classification figures of fold evaluations pooled into one out-of-fold set."""
    names = list(parts[0].class_names)
    labels = np.concatenate([p.labels for p in parts])
    probabilities = np.concatenate([p.probabilities for p in parts])
    predicted = np.concatenate([p.probabilities.argmax(1) if p.predicted is None else p.predicted for p in parts])
    metrics = compute_metrics(labels, probabilities, names, predicted=predicted)
    binary = compute_binary_metrics(labels, probabilities, names)
    return {
        "n": metrics.n,
        "accuracy": metrics.accuracy,
        "macro_auc": metrics.macro_auc,
        "malignant_auc": binary.auc,
        "lesion_called_normal": metrics.lesion_called_normal,
        "malignant_called_normal": metrics.malignant_called_normal,
        "normal_recall": metrics.sensitivity.get("normal"),
    }


def busi_rows(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """BUSI out-of-fold figures: the two CV runs as written, segment-then-classify predicted here."""
    rows: dict[str, dict[str, Any]] = {}
    for name in ("classifier", "multitask"):
        pooled = runs[name]["pooled"]
        binary = pooled.get("binary_metrics") or {}
        rows[name] = {
            "n": pooled["metrics"]["n"],
            "accuracy": pooled["accuracy"],
            "macro_auc": pooled["macro_auc"],
            "malignant_auc": binary.get("auc"),
            "lesion_called_normal": pooled["lesion_called_normal"],
            "malignant_called_normal": pooled["malignant_called_normal"],
            "normal_recall": pooled["metrics"]["sensitivity"].get("normal"),
            "dice": runs[name]["mean"].get("dice"),
            "pooled_dice": runs[name]["mean"].get("pooled_dice"),
        }
    busi = UltrasoundDataset.from_path(args.data)
    index = {str(p.relative_to(args.data)): i for i, p in enumerate(busi.paths)}
    parts = []
    for k, paths in enumerate(runs["multitask"]["test_paths"], start=1):
        predictor = fold_predictors(args, k)["segment_then_classify"]
        parts.append(evaluate(predictor, busi.subset([index[p] for p in paths])))
        print(f"  BUSI fold {k} segment-then-classify: accuracy {parts[-1].metrics.accuracy:.3f}", flush=True)
    rows["segment_then_classify"] = {
        **pooled_figures(parts),
        "dice": rows["multitask"]["dice"],  # the same masks: the crop classifier changes only the class
        "pooled_dice": rows["multitask"]["pooled_dice"],
    }
    return rows


def external_rows(args: argparse.Namespace, n_folds: int) -> dict[str, dict[str, Any]]:
    """BrEaST figures of each fold model (and their mean) and the ensemble's malignant AUC."""
    dataset = UltrasoundDataset.from_path(args.external)
    folds: dict[str, list[dict[str, Any]]] = {name: [] for name in RECIPES}
    probabilities: dict[str, list[np.ndarray]] = {name: [] for name in RECIPES}
    for k in range(1, n_folds + 1):
        for name, predictor in fold_predictors(args, k).items():
            result = evaluate(predictor, dataset)
            folds[name].append(figures(result))
            probabilities[name].append(result.probabilities)
            shown = {a: b for a, b in folds[name][-1].items() if b is not None}
            print(f"  BrEaST {name} fold {k}: {json.dumps(shown)}", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    for name in RECIPES:
        mean = {
            key: float(np.mean([f[key] for f in folds[name]]))
            for key in folds[name][0]
            if all(f[key] is not None for f in folds[name])
        }
        ensemble = compute_binary_metrics(result.labels, np.mean(probabilities[name], axis=0), list(result.class_names))
        rows[name] = {"folds": folds[name], "mean": mean, "ensemble_malignant_auc": ensemble.auc}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", type=Path, required=True, help="breastus cv run of the classifier")
    parser.add_argument("--multitask", type=Path, required=True, help="breastus cv run of the multi-task model")
    parser.add_argument("--crops-run", type=Path, required=True, help="folder for the crop-classifier CV (resumable)")
    parser.add_argument("--data", type=Path, default=None, help="BUSI folder (default: the runs' data)")
    parser.add_argument("--external", type=Path, default=ROOT.parent / "shared" / "datasets" / "breast-lesions-usg")
    parser.add_argument("--margin", type=float, default=0.25, help="crop context, x the box's longer side")
    parser.add_argument("--weight", type=float, default=0.5, help="weight of the crop's probabilities")
    parser.add_argument("--folds-only", action="store_true", help="BUSI CV only, no external figures")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = {"classifier": read_run(args.classifier), "multitask": read_run(args.multitask)}
    args.data = args.data or Path(runs["multitask"]["data"])
    print(f"CPU: {cpu_features()['model']}; BUSI {args.data}", flush=True)
    runs["segment_then_classify"] = crop_cv(args, runs["classifier"], oof_groups(args.multitask))
    check_same_folds(runs)
    payload: dict[str, Any] = {
        "benchmark": "lesion_cv",
        "breastus": __version__,
        "argv": sys.argv,
        "cpu": cpu_features(),
        "recipes": {
            name: {"run": str(getattr(args, a)), "config": runs[name]["config"]}
            for name, a in zip(RECIPES, ("classifier", "multitask", "crops_run"), strict=True)
        },
        "busi_cv": busi_rows(args, runs),
    }
    if not args.folds_only:
        payload["external"] = {"data": str(args.external), **external_rows(args, runs["multitask"]["n_folds"])}
    payload["seconds"] = time.perf_counter() - started
    for name in RECIPES:
        row = payload["busi_cv"][name]
        print(f"BUSI CV {name:22s} " + " ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
        if "external" in payload:
            ext = payload["external"][name]
            print(
                f"BrEaST  {name:22s} "
                + " ".join(f"{k} {v:.3f}" for k, v in ext["mean"].items() if k != "n")
                + f" ensemble_malignant_auc {ext['ensemble_malignant_auc']:.3f}"
            )
    if args.json is not None:
        write_result(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
