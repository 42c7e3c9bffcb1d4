"""External evaluation of cross-validation fold models: each fold's model and their ensemble.

``breastus cv`` (or ``benchmarks/busi_cv.py``) leaves one model per fold in
``RUN_DIR/fold-<k>/best.pt``, each trained on BUSI only and calibrated on its own
validation part. This script predicts an external folder (BrEaST-Lesions-USG, say) with
every fold model and with the ensemble that averages their probabilities, and reports
malignant-vs-rest AUC, sensitivity at 90 % specificity and benign-vs-malignant accuracy::

    python benchmarks/external_eval.py runs/bench-busi-cv/b-audit \\
        ../shared/datasets/breast-lesions-usg --tta --json runs/bench-busi-cv/b-audit/external.json

Several run folders may be given; each is evaluated on its own. The external data is only
ever predicted, never trained or tuned on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from breastus import Predictor, UltrasoundDataset, __version__
from breastus.evaluation import compute_binary_metrics, evaluate


def evaluate_run(run_dir: Path, dataset: UltrasoundDataset, tta: bool, device: str) -> dict[str, Any]:
    """Metrics of each fold model of ``run_dir`` and of their probability-averaging ensemble."""
    checkpoints = sorted(run_dir.glob("fold-*/best.pt"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not checkpoints:
        raise SystemExit(f"{run_dir} holds no fold-*/best.pt; run breastus cv first.")
    started = time.perf_counter()
    folds: list[dict[str, Any]] = []
    probabilities: list[np.ndarray] = []
    labels = np.zeros(0, dtype=np.int64)
    class_names: tuple[str, ...] = ()
    for checkpoint in checkpoints:
        predictor = Predictor.from_checkpoint(checkpoint, device=device, tta=tta)
        result = evaluate(predictor, dataset)
        labels, class_names = result.labels, result.class_names
        probabilities.append(result.probabilities)
        binary = compute_binary_metrics(labels, result.probabilities, class_names)
        folds.append({"checkpoint": str(checkpoint), **binary.to_dict()})
        print(f"  {checkpoint.parent.name}: {binary.summary()}", flush=True)
    ensemble = compute_binary_metrics(labels, np.mean(probabilities, axis=0), class_names)
    print(f"  ensemble of {len(checkpoints)}: {ensemble.summary()}", flush=True)
    aucs = [f["auc"] for f in folds if f["auc"] is not None]
    return {
        "run_dir": str(run_dir),
        "n_models": len(checkpoints),
        "tta": tta,
        "folds": folds,
        "fold_auc_mean": float(np.mean(aucs)) if aucs else None,
        "fold_auc_std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else None,
        "ensemble": ensemble.to_dict(),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="cross-validation run folders (with fold-*/best.pt)")
    parser.add_argument("data", type=Path, help="external data folder or CSV manifest")
    parser.add_argument("--tta", action="store_true", help="average with the mirrored image")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, help="results file")
    args = parser.parse_args(argv)

    dataset = UltrasoundDataset.from_path(args.data)
    print(f"{args.data}: {len(dataset)} images, classes {list(dataset.class_names)}", flush=True)
    results = []
    for run in args.runs:
        print(f"== {run}", flush=True)
        results.append(evaluate_run(run, dataset, args.tta, args.device))
    payload = {
        "benchmark": "external_eval",
        "breastus": __version__,
        "argv": sys.argv,
        "data": str(args.data),
        "n_images": len(dataset),
        "results": results,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
        print(f"Results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
