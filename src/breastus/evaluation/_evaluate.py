"""Evaluate a Predictor on a labelled dataset."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastus._errors import DataError
from breastus.data._dataset import UltrasoundDataset
from breastus.evaluation._metrics import ClassificationMetrics, compute_metrics
from breastus.prediction._predictor import Predictor


@dataclass(frozen=True)
class EvaluationResult:
    """Per-image probabilities and the metrics computed from them.

    Attributes
    ----------
    metrics : ClassificationMetrics
    probabilities : numpy.ndarray
        ``(n_images, n_classes)``, in the predictor's class order.
    labels : numpy.ndarray
        True class index of each image.
    paths : list of pathlib.Path
    class_names : tuple of str

    """

    metrics: ClassificationMetrics
    probabilities: np.ndarray
    labels: np.ndarray
    paths: list[Path]
    class_names: tuple[str, ...]

    def write_csv(self, path: str | Path) -> Path:
        """Write one row per image: path, true label, predicted label, probabilities."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "predicted", *[f"p_{c}" for c in self.class_names]])
            for file, label, row in zip(self.paths, self.labels, self.probabilities, strict=True):
                writer.writerow(
                    [
                        str(file),
                        self.class_names[label],
                        self.class_names[int(row.argmax())],
                        *[f"{p:.6f}" for p in row],
                    ]
                )
        return target


def evaluate(predictor: Predictor, dataset: UltrasoundDataset) -> EvaluationResult:
    """Predict every image of ``dataset`` and compute the metrics.

    ``dataset`` may hold a subset of the predictor's classes (an external test set
    with only ``benign`` and ``malignant``, say): metrics that need the missing
    classes are reported as ``None``.

    Raises
    ------
    DataError
        If a dataset class is unknown to the predictor, or the dataset is empty.

    """
    unknown = [c for c in dataset.class_names if c not in predictor.class_names]
    if unknown:
        raise DataError(
            f"The dataset has class(es) {unknown} that the model does not predict; the model's classes are "
            f"{list(predictor.class_names)}."
        )
    if len(dataset) == 0:
        raise DataError("Cannot evaluate on an empty dataset.")
    remap = np.array([predictor.class_names.index(c) for c in dataset.class_names])
    labels = remap[dataset.labels]
    rows = [np.array(list(p.probabilities.values())) for p in predictor.predict_paths(dataset.paths)]
    probabilities = np.stack(rows)
    metrics = compute_metrics(labels, probabilities, predictor.class_names)
    return EvaluationResult(metrics, probabilities, labels, dataset.paths, predictor.class_names)
