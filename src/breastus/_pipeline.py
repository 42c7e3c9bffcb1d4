"""End to end: split a data folder, train, and evaluate the best model on the test part."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastus._errors import DataError
from breastus._run_files import CALIBRATION_FILE, SPLIT_FILE, TEST_METRICS_FILE, TEST_PREDICTIONS_FILE, read_split
from breastus.data._dataset import UltrasoundDataset
from breastus.data._duplicates import duplicate_groups
from breastus.data._splits import Split, train_val_test_split
from breastus.evaluation._calibration import CalibrationResult, calibrate_checkpoint
from breastus.evaluation._evaluate import EvaluationResult, evaluate
from breastus.models._checkpoint import atomic_write
from breastus.prediction._predictor import Predictor
from breastus.training._config import TrainConfig
from breastus.training._distributed import is_main_process
from breastus.training._history import TrainHistory
from breastus.training._trainer import Trainer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """What :func:`train_and_evaluate` produced.

    Attributes
    ----------
    run_dir : pathlib.Path
        Holds ``best.pt``, ``last.pt``, ``history.jsonl``, ``split.json``,
        ``calibration.json``, ``test_metrics.json`` and ``test_predictions.csv``.
    history : TrainHistory
    test : EvaluationResult
        The best checkpoint evaluated on the held-out test part.
    split : Split
    calibration : CalibrationResult or None
        The temperature fitted on the validation part (stored in ``best.pt``)
        and the expected calibration error before and after, on the validation
        and test parts.

    """

    run_dir: Path
    history: TrainHistory
    test: EvaluationResult
    split: Split
    calibration: CalibrationResult | None = None


def _groups(dataset: UltrasoundDataset, config: TrainConfig) -> list[Any] | None:
    given = dataset.groups
    if any(g is not None for g in given):
        return given
    if not config.group_duplicates:
        return None
    logger.info("Finding duplicate images to keep them in one split...")
    return list(duplicate_groups(dataset.paths, config.duplicate_threshold))


def make_split(dataset: UltrasoundDataset, config: TrainConfig) -> Split:
    """The train/validation/test split of ``dataset`` that ``config`` asks for.

    Groups are the dataset's own when it has any (a manifest's ``group`` column),
    else duplicate groups when ``config.group_duplicates``, else none.
    """
    return train_val_test_split(
        dataset.labels, config.val_size, config.test_size, _groups(dataset, config), config.seed
    )


def _read_split(split_file: Path, dataset: UltrasoundDataset) -> Split:
    """The split saved in ``split_file``, checked against the images of ``dataset``."""
    try:
        saved = read_split(split_file)
    except DataError as exc:
        raise DataError(f"Cannot resume: {exc} Or delete it to split again (the test part may then differ).") from exc
    split = Split(*(np.array(saved[k], dtype=np.int64) for k in ("train", "val", "test")))
    saved_paths = saved.get("paths", [str(p) for p in dataset.paths])
    # Compare class folder and file name only: the data may be given by another (relative) path now.
    now = [Path(p).parts[-2:] for p in dataset.paths]
    before = [Path(p).parts[-2:] for p in saved_paths]
    if now != before:
        changed = next((str(b) for a, b in zip(now, before, strict=False) if a != b), None)
        raise DataError(
            f"Cannot resume: the data is not what {str(split_file)!r} was made from ({len(before)} images then, "
            f"{len(now)} now" + (f"; first difference at {changed}" if changed else "") + "). "
            "Resume with the same data folder or manifest, or start a new run folder."
        )
    return split


def train_and_evaluate(
    data: str | Path | UltrasoundDataset,
    run_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
) -> RunResult:
    """Split a dataset, train on it and evaluate the best checkpoint on the test part.

    The split (seeded, stratified, duplicates kept together) is written to
    ``run_dir/split.json`` and reused on ``resume``.

    Parameters
    ----------
    data : path or UltrasoundDataset
        A BUSI-style folder, a CSV manifest, or a dataset.
    run_dir : str or pathlib.Path
    config : TrainConfig, optional
    resume : bool, default=False
        Continue an interrupted run in ``run_dir`` from ``last.pt``.

    Returns
    -------
    RunResult

    Raises
    ------
    DataError
        If the data cannot be read, or on ``resume`` the data differs from the
        images ``split.json`` was made from.
    CheckpointError
        On ``resume``, if ``last.pt`` is missing or from another model or class list.

    """
    config = config if config is not None else TrainConfig()
    run = Path(run_dir)
    dataset = data if isinstance(data, UltrasoundDataset) else UltrasoundDataset.from_path(data, config.class_names)
    split_file = run / SPLIT_FILE
    if resume and split_file.is_file():
        split = _read_split(split_file, dataset)
    else:
        split = make_split(dataset, config)
        run.mkdir(parents=True, exist_ok=True)
        payload = {**split.to_dict(), "paths": [str(p) for p in dataset.paths]}
        if is_main_process():  # under torchrun every rank computes the same split; rank 0 writes it
            text = json.dumps(payload).encode("utf-8")
            atomic_write(split_file, lambda handle: handle.write(text))  # a killed run never leaves half a split
    trainer = Trainer(config, run)
    history = trainer.fit(dataset.subset(split.train), dataset.subset(split.val), resume=resume)
    calibration = None
    if trainer.distributed.is_main:  # temperature scaling on the validation part, stored in best.pt
        calibration = calibrate_checkpoint(
            trainer.best_checkpoint_path,
            dataset.subset(split.val),
            dataset.subset(split.test),
            device=config.device,
            output=run / CALIBRATION_FILE,
        )
    predictor = Predictor.from_checkpoint(trainer.best_checkpoint_path, device=config.device)
    test = evaluate(predictor, dataset.subset(split.test))
    if trainer.distributed.is_main:
        metrics = test.metrics.to_dict()
        if test.segmentation is not None:  # multi-task models: the lesion Dice / IoU
            metrics["segmentation"] = test.segmentation.to_dict()
        (run / TEST_METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        test.write_csv(run / TEST_PREDICTIONS_FILE)
    return RunResult(run, history, test, split, calibration)
