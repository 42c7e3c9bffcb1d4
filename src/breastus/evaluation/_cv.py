"""Group-aware k-fold cross-validation with pooled out-of-fold metrics and bootstrap intervals.

BUSI holds the same picture more than once, sometimes under two classes. An
image-level split puts copies of one picture on both sides of the train/test
line, and the test score then partly measures memorisation. Here the folds are
stratified by class and keep every *group* whole: by default the duplicate
groups of the audit (exact pixel copies and perceptual-hash near-duplicates,
joined into connected components), merged with a manifest's own ``group``
column when there is one. ``groups="none"`` gives the naive image-level folds,
for measuring the leakage gap.

:func:`cross_validate` reads as its steps: read the data, plan the folds
(:class:`_FoldPlan`: groups kept whole, checked), train and predict each fold
(:func:`_run_fold`, or reuse a finished one), pool the out-of-fold predictions,
and write ``oof_predictions.csv``, the plots and ``cv.json``. The groups are
found in ``_groups.py``, the fold figures and their intervals in ``_bootstrap.py``,
the fold and out-of-fold files in ``_cv_files.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastus._errors import ConfigError
from breastus._files import relative_paths
from breastus._run_files import CALIBRATION_FILE, CV_FILE, FOLD_FILE, HISTORY_FILE, OOF_FILE, TEST_METRICS_FILE
from breastus.data._dataset import UltrasoundDataset
from breastus.data._splits import kfold_indices
from breastus.evaluation._binary import BinaryMetrics, compute_binary_metrics
from breastus.evaluation._bootstrap import bootstrap_ci, headline, mean_std
from breastus.evaluation._bootstrap import fast_headline as fast_headline
from breastus.evaluation._calibration import calibrate_checkpoint
from breastus.evaluation._cv_files import load_fold, save_fold, write_oof
from breastus.evaluation._evaluate import evaluate
from breastus.evaluation._groups import GroupsOption, check_disjoint, check_groups_within_folds, resolve_groups
from breastus.evaluation._metrics import ClassificationMetrics, compute_metrics
from breastus.evaluation._plots import write_evaluation_plots
from breastus.prediction._predictor import Predictor
from breastus.training._config import TrainConfig
from breastus.training._history import EpochRecord, read_history
from breastus.training._trainer import Trainer

logger = logging.getLogger(__name__)

_BOOKKEEPING = frozenset({"fold", "n_train", "n_val", "n_test", "best_epoch"})


@dataclass(frozen=True)
class CVResult:
    """What :func:`cross_validate` produced (also in ``out_dir/cv.json``).

    Attributes
    ----------
    out_dir : pathlib.Path
        Holds ``cv.json``, ``oof_predictions.csv``, ``plots/`` and one run folder
        ``fold-<k>`` per fold.
    folds : list of dict
        Per fold: ``fold``, ``n_train``, ``n_val``, ``n_test``, ``best_epoch``,
        ``temperature`` and the :func:`headline` figures on its test fold.
    mean, std : dict
        Mean and sample standard deviation of the fold figures.
    pooled : ClassificationMetrics
        Metrics of all out-of-fold predictions together.
    pooled_binary : BinaryMetrics or None
        Malignant-vs-rest figures of the pooled predictions.
    ci95 : dict
        Bootstrap 95 % intervals of the pooled figures (empty without bootstrap).
    labels, probabilities, fold_of : numpy.ndarray
        Per image: true class, out-of-fold probabilities, test fold (1-based).
    groups : list of str
        The group of each image that the folds kept whole.
    paths : list of pathlib.Path
    class_names : tuple of str

    """

    out_dir: Path
    folds: list[dict[str, Any]]
    mean: dict[str, Any]
    std: dict[str, Any]
    pooled: ClassificationMetrics
    pooled_binary: BinaryMetrics | None
    ci95: dict[str, Any]
    labels: np.ndarray
    probabilities: np.ndarray
    fold_of: np.ndarray
    groups: list[str]
    paths: list[Path]
    class_names: tuple[str, ...]

    def summary(self) -> str:
        """A table of fold figures, their mean ± std, and the pooled figures with intervals."""

        def fmt(value: Any) -> str:
            return "  n/a" if value is None else f"{value:.3f}"

        def interval(key: str) -> str:
            pair = self.ci95.get(key)
            return "" if not pair else f"  [{pair[0]:.3f}, {pair[1]:.3f}]"

        lines = [f"{'fold':<8}{'n_test':>7}{'accuracy':>10}{'macro-F1':>10}{'macro-AUC':>11}{'ECE':>7}"]
        for fold in self.folds:
            lines.append(
                f"{fold['fold']:<8}{fold['n_test']:>7}{fmt(fold['accuracy']):>10}{fmt(fold['macro_f1']):>10}"
                f"{fmt(fold['macro_auc']):>11}{fmt(fold['ece']):>7}"
            )
        lines.append(
            f"{'mean':<8}{'':>7}{fmt(self.mean['accuracy']):>10}{fmt(self.mean['macro_f1']):>10}"
            f"{fmt(self.mean['macro_auc']):>11}{fmt(self.mean['ece']):>7}"
        )
        lines.append(
            f"{'std':<8}{'':>7}{fmt(self.std['accuracy']):>10}{fmt(self.std['macro_f1']):>10}"
            f"{fmt(self.std['macro_auc']):>11}{fmt(self.std['ece']):>7}"
        )
        pooled = self.pooled
        lines.append(f"Pooled out-of-fold predictions (n={pooled.n}), 95% bootstrap intervals:")
        lines.append(f"  accuracy  {pooled.accuracy:.3f}{interval('accuracy')}")
        lines.append(f"  macro-F1  {pooled.macro_f1:.3f}{interval('macro_f1')}")
        lines.append(f"  macro-AUC {fmt(pooled.macro_auc)}{interval('macro_auc')}")
        if pooled.lesion_called_normal is not None:
            lines.append(
                f"  called normal: lesion images {fmt(pooled.lesion_called_normal)}, "
                f"malignant images {fmt(pooled.malignant_called_normal)}"
            )
        if self.mean.get("dice") is not None:
            lines.append(f"  lesion Dice (mean over folds) {fmt(self.mean['dice'])}, IoU {fmt(self.mean.get('iou'))}")
        if self.pooled_binary is not None:
            lines.append("  " + self.pooled_binary.summary().replace("\n", "\n  "))
        return "\n".join(lines)


@dataclass(frozen=True)
class _FoldPlan:
    """The folds of a dataset: which groups stay whole, and the test fold of every image."""

    labels: np.ndarray
    groups: list[str]
    source: str
    splits: list[tuple[np.ndarray, np.ndarray]]
    fold_of: np.ndarray
    relative: list[str]


def _read_data(data: str | Path | UltrasoundDataset, config: TrainConfig) -> tuple[UltrasoundDataset, Path | None]:
    """The dataset, and the folder its paths are written relative to (``None``: their common folder)."""
    if isinstance(data, UltrasoundDataset):
        return data, None
    root = Path(data).parent if Path(data).suffix.lower() == ".csv" else Path(data)
    return UltrasoundDataset.from_path(data, config.class_names), root


def _plan_folds(
    dataset: UltrasoundDataset,
    groups: GroupsOption | Sequence[str | None],
    folds: int,
    config: TrainConfig,
    root: Path | None,
) -> _FoldPlan:
    """Group-aware stratified folds, checked to keep every group in one fold."""
    labels = dataset.labels
    group_names, source = resolve_groups(dataset, groups, config.duplicate_threshold)
    splits = kfold_indices(labels, folds, group_names, config.seed)
    fold_of = np.zeros(len(dataset), dtype=np.int64)
    for k, (_, test) in enumerate(splits, start=1):
        fold_of[test] = k
    check_groups_within_folds(group_names, fold_of)
    return _FoldPlan(labels, group_names, source, splits, fold_of, relative_paths(dataset.paths, root))


def _run_fold(
    k: int,
    plan: _FoldPlan,
    dataset: UltrasoundDataset,
    fold_dir: Path,
    config: TrainConfig,
    calibrate: bool,
    tta: bool,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Train fold ``k`` in ``fold_dir`` on the other folds, predict its test fold.

    Returns the summary row, the probabilities and the predicted classes (the
    lesion rule of a multi-task model, else the argmax).
    """
    train_all, test = plan.splits[k - 1]
    labels, group_names = plan.labels, plan.groups
    inner_groups = [group_names[int(i)] for i in train_all]
    # About val_size of the training folds; fewer inner folds (a larger part) only for tiny data.
    n_inner = max(2, round(1 / config.val_size))
    feasible = min(n_inner, int(np.bincount(labels[train_all]).max()), len(set(inner_groups)))
    fit_local, val_local = kfold_indices(labels[train_all], max(2, feasible), inner_groups, config.seed + k)[0]
    train, val = train_all[fit_local], train_all[val_local]
    check_disjoint(group_names, {"training": train, "validation": val, "test": test})
    logger.info(
        "fold %d/%d: %d train, %d validation, %d test images", k, len(plan.splits), len(train), len(val), len(test)
    )
    trainer = Trainer(config, fold_dir)
    history = trainer.fit(dataset.subset(train), dataset.subset(val))
    temperature = 1.0
    calibration = None
    if calibrate:
        calibration = calibrate_checkpoint(
            trainer.best_checkpoint_path,
            dataset.subset(val),
            dataset.subset(test),
            device=config.device,
            output=fold_dir / CALIBRATION_FILE,
        )
        temperature = calibration.temperature
    predictor = Predictor.from_checkpoint(trainer.best_checkpoint_path, device=config.device, tta=tta)
    result = evaluate(predictor, dataset.subset(test))
    fold_probabilities = result.probabilities
    fold_predicted = fold_probabilities.argmax(axis=1) if result.predicted is None else result.predicted
    segmentation = result.segmentation
    metrics = {**result.metrics.to_dict(), "segmentation": segmentation and segmentation.to_dict()}
    (fold_dir / TEST_METRICS_FILE).write_text(json.dumps(metrics, indent=2), "utf-8")
    row = {
        "fold": k,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test),
        "best_epoch": history.best_epoch,
        "temperature": temperature,
        **headline(result.metrics, fold_probabilities, result.labels),
        "ece_uncalibrated": None if calibration is None or calibration.test is None else calibration.test["ece_before"],
    }
    if segmentation is not None:
        row.update(dice=segmentation.dice, iou=segmentation.iou, pooled_dice=segmentation.pooled_dice)
    save_fold(fold_dir, row, [plan.relative[int(i)] for i in test], fold_probabilities, fold_predicted)
    return row, fold_probabilities, fold_predicted


def _report(
    result: CVResult,
    plan: _FoldPlan,
    config: TrainConfig,
    root: Path | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The contents of ``cv.json``."""
    multi: dict[str, list[str]] = {}
    for path, group in zip(plan.relative, plan.groups, strict=True):
        multi.setdefault(group, []).append(path)
    bootstrap = options["bootstrap"]
    return {
        "n_folds": len(plan.splits),
        "folds": result.folds,
        "mean": result.mean,
        "std": result.std,
        "pooled": {
            **headline(result.pooled, result.probabilities, result.labels),
            "metrics": result.pooled.to_dict(),
            "binary_metrics": result.pooled_binary and result.pooled_binary.to_dict(),
        },
        "ci95": result.ci95,
        "bootstrap": {
            "resamples": bootstrap,
            "seed": config.seed,
            "level": 0.95,
            "unit": "image" if plan.source == "none" else "group",
        },
        "groups": {
            "source": plan.source,
            "threshold": config.duplicate_threshold if plan.source.startswith("audit") else None,
            "n_images": len(plan.labels),
            "n_groups": len(multi),
            "multi_image_groups": [paths for paths in multi.values() if len(paths) > 1],
            "checked_no_group_in_two_folds": True,
        },
        "calibrated": options["calibrate"],
        "tta": options["tta"],
        "config": config.to_dict(),
        "data": str(root) if root is not None else None,
        "class_names": list(result.class_names),
    }


def cross_validate(
    data: str | Path | UltrasoundDataset,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    folds: int = 5,
    groups: GroupsOption | Sequence[str | None] = "audit",
    *,
    calibrate: bool = True,
    tta: bool = False,
    bootstrap: int = 1000,
    plots: bool = True,
    resume: bool = False,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> CVResult:
    """Stratified, group-aware k-fold cross-validation: one model per fold.

    For fold ``k`` the images of the other folds are split once more, keeping
    groups whole, into a training part and a validation part of about
    ``config.val_size`` of them (the Trainer keeps the epoch with the best
    validation macro-F1, and temperature scaling is fitted there); the model is
    trained in ``out_dir/fold-<k>`` and predicts its held-out fold. Every image
    is predicted exactly once, by the one model that never saw it or any of its
    duplicates.

    Writes ``out_dir/cv.json`` (``folds``, ``mean``, ``std``, ``pooled``,
    ``ci95``, ``groups``, ``config``), ``out_dir/oof_predictions.csv`` (one row
    per image: path, label, predicted, fold, group, probabilities) and, with
    ``plots``, the pooled plots in ``out_dir/plots``.

    Parameters
    ----------
    data : path or UltrasoundDataset
        A BUSI-style folder, a CSV manifest or a dataset.
    out_dir : str or pathlib.Path
    config : TrainConfig, optional
        Training settings of every fold; ``config.seed`` also seeds the folds and
        the bootstrap, ``config.duplicate_threshold`` sets the near-duplicate
        distance of ``groups="audit"``.
    folds : int, default=5
    groups : {"audit", "none"} or sequence, default="audit"
        See :func:`resolve_groups`. ``"none"``: naive image-level folds (leaky
        on BUSI; for comparison only).
    calibrate : bool, default=True
        Fit a temperature on each fold's validation part (stored in its ``best.pt``).
    tta : bool, default=False
        Average each test prediction with that of the mirrored image.
    bootstrap : int, default=1000
        Resamples for the 95 % intervals of the pooled figures; 0 skips them.
    plots : bool, default=True
        Write confusion matrix, ROC, reliability and training-curve PNGs.
    resume : bool, default=False
        Reuse folds already finished in ``out_dir`` (their ``fold.json``) when
        they hold the same test images.
    on_fold : callable, optional
        Called with each fold's summary dict when the fold is done.

    Returns
    -------
    CVResult

    Raises
    ------
    ConfigError
        If ``folds`` < 2 or exceeds the number of groups, or ``groups`` is unknown.
    DataError
        If the data cannot be read, or (an internal check) a group would span two folds.

    Examples
    --------
    >>> from breastus import TrainConfig
    >>> from breastus.evaluation import cross_validate
    >>> result = cross_validate(  # doctest: +SKIP
    ...     "../shared/datasets/busi", "runs/cv", TrainConfig(pretrained="none", epochs=20), folds=5
    ... )
    >>> print(result.summary())  # doctest: +SKIP

    """
    started = time.perf_counter()
    config = config if config is not None else TrainConfig()
    if not isinstance(bootstrap, int) or bootstrap < 0:
        raise ConfigError(f"bootstrap must be an int >= 0. Got {bootstrap!r} instead.")
    dataset, root = _read_data(data, config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan_folds(dataset, groups, folds, config, root)
    names = tuple(config.class_names)
    probabilities = np.full((len(dataset), len(names)), np.nan)
    predicted = np.full(len(dataset), -1, dtype=np.int64)
    fold_rows: list[dict[str, Any]] = []
    histories: dict[str, list[EpochRecord]] = {}
    for k, (_, test) in enumerate(plan.splits, start=1):
        fold_dir = out / f"fold-{k}"
        saved = load_fold(fold_dir, plan.relative, test) if resume else None
        if saved is not None:
            logger.info("fold %d/%d: reusing %s", k, folds, fold_dir / FOLD_FILE)
        row, probabilities[test], predicted[test] = saved or _run_fold(
            k, plan, dataset, fold_dir, config, calibrate, tta
        )
        fold_rows.append(row)
        if (fold_dir / HISTORY_FILE).is_file():
            histories[f"fold {k}"] = read_history(fold_dir / HISTORY_FILE)
        if on_fold is not None:
            on_fold(row)

    labels = plan.labels
    mean, std = mean_std([{k: v for k, v in row.items() if k not in _BOOKKEEPING} for row in fold_rows])
    result = CVResult(
        out_dir=out,
        folds=fold_rows,
        mean=mean,
        std=std,
        # the folds' own decisions (the lesion rule of a multi-task model, else the argmax)
        pooled=compute_metrics(labels, probabilities, names, predicted=predicted),
        pooled_binary=compute_binary_metrics(labels, probabilities, names) if "malignant" in names else None,
        ci95=bootstrap_ci(labels, probabilities, names, plan.groups, bootstrap, config.seed) if bootstrap else {},
        labels=labels,
        probabilities=probabilities,
        fold_of=plan.fold_of,
        groups=plan.groups,
        paths=dataset.paths,
        class_names=names,
    )
    write_oof(out / OOF_FILE, plan.relative, labels, probabilities, plan.fold_of, plan.groups, names)
    if plots:
        write_evaluation_plots(
            out / "plots", labels, probabilities, names, histories, title="out-of-fold", predicted=predicted
        )
    report = _report(result, plan, config, root, {"bootstrap": bootstrap, "calibrate": calibrate, "tta": tta})
    report["seconds"] = time.perf_counter() - started
    (out / CV_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return result
