"""Evaluation plots as PNG files: confusion matrix, ROC curves, reliability diagram, training curves.

Figures are drawn with matplotlib's object-oriented API on the Agg canvas, so
plotting never opens a window, needs no display and leaves the global
``pyplot`` state (and backend) alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from breastus._segmentation_metrics import called_normal_shares
from breastus.evaluation._calibration import DEFAULT_BINS, reliability_bins
from breastus.training._history import EpochRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (matplotlib is imported on first use: it is slow to import)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=DPI, format="png")
    return target


def plot_confusion_matrix(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "Confusion matrix",
    predicted: Sequence[int] | np.ndarray | None = None,
) -> Path:
    """Counts and row percentages of true (rows) against predicted (columns) classes.

    With a ``"normal"`` class the title also gives the shares of lesion and of
    malignant images called normal.

    Parameters
    ----------
    labels : sequence of int
        True class index per image.
    probabilities : numpy.ndarray
        ``(n_images, n_classes)``; the prediction is the arg-max.
    class_names : sequence of str
    path : str or pathlib.Path
        PNG file to write.
    title : str, default="Confusion matrix"
    predicted : sequence of int, optional
        The predicted class of each image when another decision rule than the
        arg-max made it (a multi-task model's lesion rule).

    Returns
    -------
    pathlib.Path

    """
    names = list(class_names)
    y = np.asarray(labels, dtype=np.int64)
    chosen = np.asarray(probabilities).argmax(axis=1) if predicted is None else np.asarray(predicted, dtype=np.int64)
    matrix = confusion_matrix(y, chosen, labels=list(range(len(names))))
    lesion_share, malignant_share = called_normal_shares(y, chosen, names)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=np.float64), where=rows > 0)
    size = 1.2 + 1.1 * len(names)
    figure = _figure(size + 1.2, size)
    ax = figure.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                f"{matrix[i, j]}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    caption = f"{title} (n={len(y)})"
    if lesion_share is not None:
        caption += f"\ncalled normal: lesions {lesion_share:.0%}" + (
            "" if malignant_share is None else f", malignant {malignant_share:.0%}"
        )
    ax.set_title(caption)
    figure.colorbar(image, ax=ax, label="fraction of true class")
    figure.tight_layout()
    return _save(figure, path)


def plot_roc_curves(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "One-vs-rest ROC",
) -> Path:
    """One-vs-rest ROC curve of each class whose curve the data define, with its AUC.

    Parameters
    ----------
    labels : sequence of int
    probabilities : numpy.ndarray
    class_names : sequence of str
    path : str or pathlib.Path
    title : str, default="One-vs-rest ROC"

    Returns
    -------
    pathlib.Path

    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    figure = _figure(5.2, 5)
    ax = figure.add_subplot()
    for i, name in enumerate(class_names):
        truth = y == i
        if not 0 < truth.sum() < len(y):
            continue
        fpr, tpr, _ = roc_curve(truth, p[:, i])
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(truth, p[:, i]):.3f}, n={int(truth.sum())})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return _save(figure, path)


def plot_reliability_diagram(
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    path: str | Path,
    n_bins: int = DEFAULT_BINS,
    title: str = "Reliability diagram",
) -> Path:
    """Accuracy against mean top-label confidence per confidence bin, with the ECE.

    Bars below the diagonal mean over-confidence. The lower panel shows how many
    images fall in each bin.

    Parameters
    ----------
    labels : sequence of int
    probabilities : numpy.ndarray
    path : str or pathlib.Path
    n_bins : int, default=15
    title : str, default="Reliability diagram"

    Returns
    -------
    pathlib.Path

    """
    bins = reliability_bins(probabilities, labels, n_bins)
    width = 1.0 / n_bins
    centres = bins.edges[:-1] + width / 2
    figure = _figure(5, 6)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    used = bins.counts > 0
    top.bar(centres[used], bins.accuracy[used], width=width * 0.95, label="accuracy", edgecolor="black")
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    top.plot(
        bins.confidence[used], bins.accuracy[used], "o", color="tab:red", markersize=3, label="bin mean confidence"
    )
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"{title} (ECE {bins.ece:.3f}, {n_bins} bins)")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centres, bins.counts, width=width * 0.95, color="grey")
    bottom.set_xlabel("top-label confidence")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    return _save(figure, path)


def plot_training_curves(
    histories: Sequence[EpochRecord] | Mapping[str, Sequence[EpochRecord]],
    path: str | Path,
    title: str = "Training curves",
) -> Path:
    """Loss and validation macro-F1 per epoch (one line per run for several runs).

    Parameters
    ----------
    histories : sequence of EpochRecord, or mapping of name to sequence of EpochRecord
        One run's records (``history.jsonl``, see
        :func:`~breastus.training.read_history`) or several, e.g. one per fold.
    path : str or pathlib.Path
    title : str, default="Training curves"

    Returns
    -------
    pathlib.Path

    """
    runs: Mapping[str, Sequence[EpochRecord]] = histories if isinstance(histories, Mapping) else {"": list(histories)}
    figure = _figure(10, 4)
    loss_ax, score_ax = figure.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for color, (name, records) in zip(colors, runs.items(), strict=True):
        epochs = [r.epoch for r in records]
        prefix = f"{name} " if name else ""
        loss_ax.plot(epochs, [r.train_loss for r in records], color=color, label=f"{prefix}train", marker=".")
        loss_ax.plot(
            epochs, [r.val_loss for r in records], color=color, linestyle="--", marker=".", label=f"{prefix}validation"
        )
        score_ax.plot(epochs, [r.val_macro_f1 for r in records], color=color, marker=".", label=f"{prefix}val macro-F1")
        score_ax.plot(
            epochs, [r.val_accuracy for r in records], color=color, linestyle=":", label=f"{prefix}val accuracy"
        )
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_title(f"{title}: loss")
    score_ax.set_xlabel("epoch")
    score_ax.set_ylabel("score")
    score_ax.set_ylim(0, 1)
    score_ax.set_title(f"{title}: validation")
    for ax in (loss_ax, score_ax):
        ax.legend(fontsize="x-small", ncol=2 if len(runs) > 2 else 1)
    figure.tight_layout()
    return _save(figure, path)


def write_evaluation_plots(
    out_dir: str | Path,
    labels: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    histories: Sequence[EpochRecord] | Mapping[str, Sequence[EpochRecord]] | None = None,
    title: str = "",
    predicted: Sequence[int] | np.ndarray | None = None,
) -> list[Path]:
    """Write every evaluation plot into ``out_dir``.

    Files: ``confusion_matrix.png``, ``roc.png``, ``reliability.png`` and, when
    ``histories`` are given, ``training_curves.png``.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Created if missing.
    labels : sequence of int
    probabilities : numpy.ndarray
    class_names : sequence of str
    histories : optional
        See :func:`plot_training_curves`.
    title : str, default=""
        Prefix of every title (e.g. the data set name).
    predicted : sequence of int, optional
        The predictions' classes when not the arg-max (see :func:`plot_confusion_matrix`).

    Returns
    -------
    list of pathlib.Path
        The files written.

    """
    out = Path(out_dir)
    prefix = f"{title}: " if title else ""
    written = [
        plot_confusion_matrix(
            labels, probabilities, class_names, out / "confusion_matrix.png", f"{prefix}confusion", predicted
        ),
        plot_roc_curves(labels, probabilities, class_names, out / "roc.png", f"{prefix}one-vs-rest ROC"),
        plot_reliability_diagram(labels, probabilities, out / "reliability.png", title=f"{prefix}reliability"),
    ]
    if histories:
        written.append(plot_training_curves(histories, out / "training_curves.png"))
    return written
