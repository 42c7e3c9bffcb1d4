"""Speed of the metric functions against scikit-learn, as the cross-validation bootstrap calls them.

breastus computes :func:`~breastus.compute_metrics` and
:func:`~breastus.evaluation.sensitivity_at_specificity` in NumPy (one implementation,
used by evaluation, the bootstrap and the model card); this script times them on
BUSI-sized predictions (780 images, 3 classes) against the scikit-learn calls they
replaced (``accuracy_score``, ``f1_score``, ``roc_auc_score``, ``log_loss``,
``confusion_matrix``; ``roc_curve``), in the same run, and checks the values agree.

    nice -n 10 python benchmarks/metrics_speed.py --json benchmarks/results/metrics_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score, roc_curve

from breastus import compute_metrics
from breastus.evaluation import bootstrap_ci, sensitivity_at_specificity


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _per_call_ms(function: Callable[[], Any], repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1000


def _sklearn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    predicted = p.argmax(axis=1)
    return {
        "accuracy": accuracy_score(y, predicted),
        "macro_f1": f1_score(y, predicted, labels=sorted(set(y.tolist())), average="macro", zero_division=0),
        "log_loss": log_loss(y, p, labels=[0, 1, 2]),
        "auc": [roc_auc_score(y == i, p[:, i]) for i in range(3)],
        "confusion": confusion_matrix(y, predicted, labels=[0, 1, 2]),
    }


def _sklearn_sensitivity(truth: np.ndarray, scores: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return float(tpr[np.flatnonzero(fpr <= 0.1 + 1e-12)].max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=780, help="images")
    parser.add_argument("--repeats", type=int, default=200, help="calls timed per function")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, args.n)
    p = rng.dirichlet([1.0, 1.0, 1.0], args.n)
    names = ["benign", "malignant", "normal"]

    ours, theirs = compute_metrics(y, p, names), _sklearn_metrics(y, p)
    assert abs(ours.macro_f1 - theirs["macro_f1"]) < 1e-12 and abs(ours.log_loss - theirs["log_loss"]) < 1e-9
    assert all(abs(ours.auc[n] - a) < 1e-12 for n, a in zip(names, theirs["auc"], strict=True))
    assert sensitivity_at_specificity(y == 1, p[:, 1], 0.9)[0] == _sklearn_sensitivity(y == 1, p[:, 1])

    rows = {
        "compute_metrics": (
            _per_call_ms(lambda: compute_metrics(y, p, names), args.repeats),
            _per_call_ms(lambda: _sklearn_metrics(y, p), args.repeats),
        ),
        "sensitivity_at_specificity": (
            _per_call_ms(lambda: sensitivity_at_specificity(y == 1, p[:, 1], 0.9), args.repeats),
            _per_call_ms(lambda: _sklearn_sensitivity(y == 1, p[:, 1]), args.repeats),
        ),
    }
    start = time.perf_counter()
    bootstrap_ci(y, p, names, n_resamples=200, seed=0)
    bootstrap_s = time.perf_counter() - start

    print(f"CPU: {_cpu()} ({os.cpu_count()} cores); {args.n} images, 3 classes, {args.repeats} calls each")
    print(f"{'function':<30}{'breastus ms':>13}{'scikit-learn ms':>17}{'speed-up':>10}")
    for name, (mine, base) in rows.items():
        print(f"{name:<30}{mine:>13.3f}{base:>17.3f}{base / mine:>9.1f}x")
    print(f"bootstrap_ci, 200 resamples: {bootstrap_s:.2f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "command": "python benchmarks/metrics_speed.py" + (f" --json {args.json}" if args.json else ""),
            "machine": {"cpu": _cpu(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "n_images": args.n,
            "repeats": args.repeats,
            "ms_per_call": {k: {"breastus": a, "scikit_learn": b, "speed_up": b / a} for k, (a, b) in rows.items()},
            "bootstrap_200_resamples_s": bootstrap_s,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
