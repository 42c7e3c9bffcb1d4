"""End to end: split a data folder, train, and evaluate the best model on the test part."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastus.data._dataset import UltrasoundDataset
from breastus.data._duplicates import duplicate_groups
from breastus.data._splits import Split, train_val_test_split
from breastus.evaluation._evaluate import EvaluationResult, evaluate
from breastus.prediction._predictor import Predictor
from breastus.training._config import TrainConfig
from breastus.training._history import TrainHistory
from breastus.training._trainer import Trainer

logger = logging.getLogger(__name__)

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class RunResult:
    """What :func:`train_and_evaluate` produced.

    Attributes
    ----------
    run_dir : pathlib.Path
        Holds ``best.pt``, ``last.pt``, ``history.jsonl``, ``split.json``,
        ``test_metrics.json`` and ``test_predictions.csv``.
    history : TrainHistory
    test : EvaluationResult
        The best checkpoint evaluated on the held-out test part.
    split : Split

    """

    run_dir: Path
    history: TrainHistory
    test: EvaluationResult
    split: Split


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

    """
    config = config if config is not None else TrainConfig()
    run = Path(run_dir)
    dataset = data if isinstance(data, UltrasoundDataset) else UltrasoundDataset.from_path(data, config.class_names)
    split_file = run / SPLIT_FILE
    if resume and split_file.is_file():
        saved = json.loads(split_file.read_text(encoding="utf-8"))
        split = Split(*(np.array(saved[k], dtype=np.int64) for k in ("train", "val", "test")))
    else:
        split = make_split(dataset, config)
        run.mkdir(parents=True, exist_ok=True)
        payload = {**split.to_dict(), "paths": [str(p) for p in dataset.paths]}
        split_file.write_text(json.dumps(payload), encoding="utf-8")
    trainer = Trainer(config, run)
    history = trainer.fit(dataset.subset(split.train), dataset.subset(split.val), resume=resume)
    predictor = Predictor.from_checkpoint(trainer.best_checkpoint_path, device=config.device)
    test = evaluate(predictor, dataset.subset(split.test))
    (run / "test_metrics.json").write_text(json.dumps(test.metrics.to_dict(), indent=2), encoding="utf-8")
    test.write_csv(run / "test_predictions.csv")
    return RunResult(run, history, test, split)
