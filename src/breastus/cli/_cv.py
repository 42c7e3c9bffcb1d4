"""``breastus cv``: group-aware k-fold cross-validation with pooled metrics and confidence intervals."""

from __future__ import annotations

import argparse
from typing import Any

from breastus._run_files import CV_FILE, OOF_FILE
from breastus.cli._train import add_config_arguments, config_from_args
from breastus.evaluation._cv import cross_validate

NAME = "cv"
HELP = (
    "Cross-validate a training recipe: stratified k folds that keep duplicate images together, one model "
    "per fold, pooled out-of-fold metrics with bootstrap confidence intervals."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cv`` options (the training options of ``breastus train`` included)."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class, or a CSV manifest")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (fold-<k> run folders, cv.json)")
    parser.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds")
    parser.add_argument(
        "--groups",
        choices=["audit", "none"],
        default="audit",
        help="audit: keep exact and near-duplicate images (and a manifest's groups) in one fold; "
        "none: naive image-level folds (leaky; for comparison only)",
    )
    parser.add_argument(
        "--duplicate-threshold",
        type=int,
        default=None,
        metavar="N",
        help="perceptual-hash distance for near-duplicates (default: the TrainConfig default, 6)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples; 0: none")
    parser.add_argument("--tta", action="store_true", help="average test predictions with the mirrored image")
    parser.add_argument("--no-calibrate", action="store_true", help="skip temperature scaling of each fold")
    parser.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    parser.add_argument("--resume", action="store_true", help="reuse folds already finished in DIR")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Cross-validate and print the fold table and the pooled metrics."""
    config = config_from_args(args)
    if args.duplicate_threshold is not None:
        config = config.replace(duplicate_threshold=args.duplicate_threshold)

    def report(row: dict[str, Any]) -> None:
        auc = "n/a" if row["macro_auc"] is None else f"{row['macro_auc']:.3f}"
        print(
            f"fold {row['fold']}: {row['n_test']} test images  accuracy {row['accuracy']:.3f}  "
            f"macro-F1 {row['macro_f1']:.3f}  macro-AUC {auc}",
            flush=True,
        )

    result = cross_validate(
        args.data_dir,
        args.out,
        config,
        folds=args.folds,
        groups=args.groups,
        calibrate=not args.no_calibrate,
        tta=args.tta,
        bootstrap=args.bootstrap,
        plots=not args.no_plots,
        resume=args.resume,
        on_fold=report,
    )
    print(result.summary())
    print(f"Written: {result.out_dir / CV_FILE}, {result.out_dir / OOF_FILE}", end="")
    print("" if args.no_plots else f", {result.out_dir / 'plots'}/")
    return 0
