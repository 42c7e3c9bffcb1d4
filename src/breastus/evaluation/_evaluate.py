"""Evaluate a Predictor on a labelled dataset."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from breastus._errors import DataError
from breastus._segmentation_metrics import SegmentationMetrics, overlap_counts, segmentation_metrics
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
    predicted : numpy.ndarray or None
        The predictor's class index of each image (its decision rule: for a
        multi-task model with a calibrated threshold, "normal" means no lesion
        found); ``None``: the argmax of ``probabilities``.
    lesion_probabilities : numpy.ndarray or None
        Multi-task models: the probability that each image holds a lesion.
    segmentation : SegmentationMetrics or None
        Multi-task models on a dataset with masks: Dice and IoU of the predicted
        lesion masks (at the images' resolution) against the true ones.

    """

    metrics: ClassificationMetrics
    probabilities: np.ndarray
    labels: np.ndarray
    paths: list[Path]
    class_names: tuple[str, ...]
    predicted: np.ndarray | None = None
    lesion_probabilities: np.ndarray | None = None
    segmentation: SegmentationMetrics | None = None

    def write_csv(self, path: str | Path) -> Path:
        """Write one row per image: path, true label, predicted label, probabilities."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            lesion = self.lesion_probabilities
            writer.writerow(
                ["path", "label", "predicted", *[f"p_{c}" for c in self.class_names]]
                + (["p_lesion"] if lesion is not None else [])
            )
            predicted = self.probabilities.argmax(axis=1) if self.predicted is None else self.predicted
            for i, (file, label, row) in enumerate(zip(self.paths, self.labels, self.probabilities, strict=True)):
                writer.writerow(
                    [
                        str(file),
                        self.class_names[label],
                        self.class_names[int(predicted[i])],
                        *[f"{p:.6f}" for p in row],
                    ]
                    + ([f"{lesion[i]:.6f}"] if lesion is not None else [])
                )
        return target


def evaluate(predictor: Predictor, dataset: UltrasoundDataset) -> EvaluationResult:
    """Predict every image of ``dataset`` and compute the metrics.

    ``dataset`` may hold a subset of the predictor's classes (an external test set
    with only ``benign`` and ``malignant``, say): metrics that need the missing
    classes are reported as ``None``. The class of each image is the predictor's
    decision (:attr:`~breastus.Prediction.label`); for a multi-task model the
    predicted lesion masks are also scored against the dataset's masks (Dice, IoU;
    lesion images without a mask file are left out, normal images count as empty).

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
    rows, predicted, lesion, counts = [], [], [], []
    for i, prediction in enumerate(predictor.predict_paths(dataset.paths)):
        rows.append(np.array(list(prediction.probabilities.values())))
        predicted.append(predictor.class_names.index(prediction.label))
        if prediction.lesion_probability is not None:
            lesion.append(prediction.lesion_probability)
        if prediction.mask is not None and dataset.has_mask(i):
            truth = dataset.load_mask(i)
            if truth is None:  # a normal image without a mask file
                truth = np.zeros(prediction.mask.shape, dtype=bool)
            counts.append(overlap_counts(prediction.mask[None], truth[None])[0])
    probabilities = np.stack(rows)
    chosen = np.asarray(predicted, dtype=np.int64)
    metrics = compute_metrics(labels, probabilities, predictor.class_names, predicted=chosen)
    return EvaluationResult(
        metrics,
        probabilities,
        labels,
        dataset.paths,
        predictor.class_names,
        predicted=chosen,
        lesion_probabilities=np.asarray(lesion) if len(lesion) == len(rows) else None,
        segmentation=segmentation_metrics(np.asarray(counts).reshape(-1, 3)) if counts else None,
    )
