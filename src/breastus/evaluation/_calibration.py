"""Calibration: temperature scaling and the expected calibration error.

A network trained with cross-entropy is usually over-confident: among images
predicted with probability 0.95, fewer than 95 % are right. Temperature scaling
(Guo et al., *On Calibration of Modern Neural Networks*, ICML 2017) divides the
logits by one scalar ``T`` fitted on held-out validation data by minimising the
negative log-likelihood; it changes no prediction (the arg-max is kept) and is
stored in the checkpoint (:attr:`Checkpoint.temperature
<breastus.models.Checkpoint.temperature>`), which the :class:`~breastus.Predictor`
applies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import log_softmax, softmax
from torch.utils.data import DataLoader

from breastus._errors import DataError
from breastus._metrics import check_probabilities
from breastus._run_files import BEST_CHECKPOINT
from breastus.data._dataset import UltrasoundDataset
from breastus.models._checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from breastus.prediction._predictor import Predictor
from breastus.training._outputs import collect_outputs

DEFAULT_BINS = 15
"""Number of equal-width confidence bins of :func:`expected_calibration_error`."""

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""Range searched by :func:`fit_temperature`."""


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of top-label confidence (a reliability diagram).

    Attributes
    ----------
    edges : numpy.ndarray
        ``n_bins + 1`` bin edges over [0, 1].
    confidence : numpy.ndarray
        Mean top-label probability in each bin (``nan`` for an empty bin).
    accuracy : numpy.ndarray
        Fraction of correct predictions in each bin (``nan`` for an empty bin).
    counts : numpy.ndarray
        Number of samples in each bin.

    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: count-weighted mean ``|accuracy - confidence|``."""
        used = self.counts > 0
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float((gaps * self.counts[used]).sum() / max(int(self.counts.sum()), 1))


def _check(probabilities: np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, p = check_probabilities(labels, probabilities, None, task="measure calibration")
    return p, y


def reliability_bins(
    probabilities: np.ndarray, labels: Sequence[int] | np.ndarray, n_bins: int = DEFAULT_BINS
) -> ReliabilityBins:
    """Bin the top-label confidence into ``n_bins`` equal-width bins.

    A sample with confidence ``c`` falls in bin ``k`` when ``edges[k] < c <= edges[k + 1]``
    (the first bin also takes ``c = 0``).

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(n_samples, n_classes)``, rows summing to 1.
    labels : sequence of int
        True class index of each sample.
    n_bins : int, default=15

    Returns
    -------
    ReliabilityBins

    """
    p, y = _check(probabilities, labels)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / counts
    return ReliabilityBins(edges=edges, confidence=mean_conf, accuracy=accuracy, counts=counts)


def expected_calibration_error(
    probabilities: np.ndarray, labels: Sequence[int] | np.ndarray, n_bins: int = DEFAULT_BINS
) -> float:
    """Expected calibration error (ECE) of the top-label confidence.

    ``ECE = sum_k (n_k / n) * |accuracy_k - confidence_k|`` over ``n_bins``
    equal-width confidence bins (Naeini et al., AAAI 2015; Guo et al., 2017).

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(n_samples, n_classes)``, rows summing to 1.
    labels : sequence of int
        True class index of each sample.
    n_bins : int, default=15

    Returns
    -------
    float
        In [0, 1]; 0 is perfectly calibrated.

    Examples
    --------
    >>> import numpy as np
    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), [0, 1])
    0.4

    """
    return reliability_bins(probabilities, labels, n_bins).ece


def negative_log_likelihood(logits: np.ndarray, labels: Sequence[int] | np.ndarray, temperature: float = 1.0) -> float:
    """Mean cross-entropy of ``softmax(logits / temperature)`` against ``labels``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.int64)
    return float(-log_softmax(z, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """The temperature ``T`` minimising the NLL of ``softmax(logits / T)``.

    A bounded scalar search (:func:`scipy.optimize.minimize_scalar`) over
    ``log T`` in :data:`TEMPERATURE_BOUNDS`. ``T > 1`` softens over-confident
    predictions, ``T < 1`` sharpens under-confident ones.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(n_samples, n_classes)`` validation logits (before the softmax).
    labels : sequence of int
        True class index of each sample.

    Returns
    -------
    float

    Raises
    ------
    DataError
        If shapes disagree or there are no samples.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 2000)
    >>> calibrated = 1.5 * (rng.normal(size=(2000, 3)) + 1.5 * np.eye(3)[y])  # Bayes log-odds
    >>> round(fit_temperature(calibrated, y), 2), round(fit_temperature(5 * calibrated, y), 2)
    (1.03, 5.15)

    """
    from scipy.optimize import minimize_scalar  # imported here: slow to import, rarely needed

    z, y = _check(logits, labels)
    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(z, y, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted temperature and the calibration it gives.

    Attributes
    ----------
    temperature : float
    n_bins : int
    val : dict
        On the validation data the temperature was fitted on: ``n``,
        ``ece_before``, ``ece_after``, ``nll_before``, ``nll_after``.
    test : dict or None
        The same on held-out test data, when given (the honest figure).

    """

    temperature: float
    n_bins: int
    val: dict[str, float]
    test: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return asdict(self)

    def summary(self) -> str:
        """One line per data part."""
        lines = [f"temperature {self.temperature:.3f}"]
        for part, values in (("validation", self.val), ("test", self.test)):
            if values is not None:
                lines.append(
                    f"{part} (n={int(values['n'])}): ECE {values['ece_before']:.3f} -> {values['ece_after']:.3f}, "
                    f"NLL {values['nll_before']:.3f} -> {values['nll_after']:.3f}"
                )
        return "\n".join(lines)


def calibration_figures(
    logits: np.ndarray, labels: Sequence[int] | np.ndarray, temperature: float, n_bins: int = DEFAULT_BINS
) -> dict[str, float]:
    """ECE and NLL of ``logits`` before (``T = 1``) and after dividing by ``temperature``."""
    z, y = _check(logits, labels)
    return {
        "n": float(len(y)),
        "ece_before": expected_calibration_error(softmax(z, axis=1), y, n_bins),
        "ece_after": expected_calibration_error(softmax(z / temperature, axis=1), y, n_bins),
        "nll_before": negative_log_likelihood(z, y),
        "nll_after": negative_log_likelihood(z, y, temperature),
    }


def checkpoint_logits(
    checkpoint: Checkpoint, dataset: UltrasoundDataset, device: str | torch.device = "auto", batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits (no temperature) of a checkpoint's model on every image of ``dataset``.

    Images get exactly the preprocessing of the :class:`~breastus.Predictor`
    built from the checkpoint.

    Returns
    -------
    logits : numpy.ndarray
        ``(n_images, n_classes)`` in the checkpoint's class order.
    labels : numpy.ndarray
        Each image's class index in the checkpoint's class order.

    Raises
    ------
    DataError
        If the dataset has a class the checkpoint does not predict.

    """
    predictor = Predictor.from_loaded(checkpoint, device=device, batch_size=batch_size)
    return _predictor_logits(predictor, dataset, batch_size)


def _predictor_logits(
    predictor: Predictor, dataset: UltrasoundDataset, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`checkpoint_logits` with a Predictor already built (one model for several datasets)."""
    names = tuple(predictor.class_names)
    unknown = [c for c in dataset.class_names if c not in names]
    if unknown:
        raise DataError(
            f"The dataset has class(es) {unknown} that the model does not predict; it predicts {list(names)}."
        )
    remap = np.array([names.index(c) for c in dataset.class_names], dtype=np.int64)
    return _logits(predictor, dataset, batch_size), remap[dataset.labels]


def _logits(predictor: Predictor, dataset: UltrasoundDataset, batch_size: int = 32) -> np.ndarray:
    data = dataset.masked(False).with_cache(None).with_transform(predictor.transform)

    def forward(images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        return None, predictor._outputs(images.to(predictor.device))[1]  # the Predictor's precision

    outputs = collect_outputs(forward, DataLoader(data, batch_size=batch_size), len(predictor.class_names))
    return outputs[0]


def calibrate_checkpoint(
    path: str | Path,
    val: UltrasoundDataset,
    test: UltrasoundDataset | None = None,
    device: str | torch.device = "auto",
    n_bins: int = DEFAULT_BINS,
    output: str | Path | None = None,
) -> CalibrationResult:
    """Fit a temperature on ``val``, store it in the checkpoint file and report ECE before and after.

    Parameters
    ----------
    path : str or pathlib.Path
        A breastus checkpoint (typically ``RUN_DIR/best.pt``; a run folder means
        its ``best.pt``); rewritten
        atomically with the fitted :attr:`~breastus.models.Checkpoint.temperature`.
    val : UltrasoundDataset
        Validation images (never the test images) to fit on.
    test : UltrasoundDataset, optional
        Held-out images on which ECE before and after is also reported.
    device : str or torch.device, default="auto"
    n_bins : int, default=15
    output : str or pathlib.Path, optional
        Also write the result as JSON there (e.g. ``RUN_DIR/calibration.json``).

    Returns
    -------
    CalibrationResult

    Raises
    ------
    CheckpointError
        If the checkpoint cannot be read.
    DataError
        If ``val`` is empty or has a class the model does not predict.

    """
    file = Path(path)
    if file.is_dir():
        file = file / BEST_CHECKPOINT
    checkpoint = load_checkpoint(file)
    if len(val) == 0:
        raise DataError("Cannot fit a temperature on an empty validation set.")
    predictor = Predictor.from_loaded(checkpoint, device=device)  # one model for val and test
    logits, labels = _predictor_logits(predictor, val)
    temperature = fit_temperature(logits, labels)
    test_figures = None
    if test is not None and len(test) > 0:
        test_logits, test_labels = _predictor_logits(predictor, test)
        test_figures = calibration_figures(test_logits, test_labels, temperature, n_bins)
    checkpoint.temperature = temperature
    save_checkpoint(checkpoint, file)
    result = CalibrationResult(
        temperature=temperature,
        n_bins=n_bins,
        val=calibration_figures(logits, labels, temperature, n_bins),
        test=test_figures,
    )
    if output is not None:
        Path(output).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result
