"""Heatmap overlays: the heatmap over the grayscale ultrasound, with a colour bar and the prediction.

This module is private; use the names re-exported by :mod:`breastus.explain`.
Figures are drawn with matplotlib's object-oriented API (no ``pyplot`` state, no
display needed) and written as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from breastus._errors import DataError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from breastus.data._inputs import ImageInput


def _title(
    label: str | None, probability: float | None, target: str | None, truth: str | None, title: str | None
) -> str:
    if title is not None:
        return title
    lines = []
    if label is not None:
        lines.append(f"predicted {label}" + (f" ({probability:.2f})" if probability is not None else ""))
    if truth is not None:
        lines.append(f"true {truth}")
    if target is not None and target != label:
        lines.append(f"heatmap for {target}")
    return "\n".join(lines)


def overlay_figure(
    image: ImageInput,
    heatmap: np.ndarray,
    label: str | None = None,
    probability: float | None = None,
    target: str | None = None,
    truth: str | None = None,
    mask: np.ndarray | None = None,
    title: str | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
    width: float = 4.0,
    predicted_mask: np.ndarray | None = None,
    lesion_probability: float | None = None,
) -> Figure:
    """Draw ``heatmap`` over the grayscale ``image`` with a colour bar and the prediction.

    Parameters
    ----------
    image : path, PIL image or numpy array
        The ultrasound image (shown in grayscale whatever its mode).
    heatmap : numpy.ndarray
        ``(H, W)`` map in [0, 1] with the image's height and width.
    label : str, optional
        The predicted class.
    probability : float, optional
        Its probability.
    target : str, optional
        The class the heatmap explains; mentioned when it differs from ``label``.
    truth : str, optional
        The true class, when known.
    mask : numpy.ndarray, optional
        ``(H, W)`` lesion mask, drawn as a white outline.
    title : str, optional
        Replaces the title built from ``label``, ``probability``, ``truth``, ``target``.
    alpha : float, default=0.45
        Opacity of the heatmap.
    cmap : str, default="jet"
        Matplotlib colour map of the heatmap.
    width : float, default=4.0
        Figure width in inches (the height follows the image's aspect ratio).
    predicted_mask : numpy.ndarray, optional
        ``(H, W)`` lesion mask predicted by a multi-task model
        (:attr:`Prediction.mask <breastus.Prediction.mask>`), drawn as a lime
        outline (the true ``mask`` stays white).
    lesion_probability : float, optional
        :attr:`Prediction.lesion_probability <breastus.Prediction.lesion_probability>`, added to the title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    DataError
        If the heatmap (or mask) shape differs from the image's.

    """
    from matplotlib.figure import Figure

    from breastus.data._inputs import as_grayscale

    gray = np.asarray(as_grayscale(image)[0])
    heat = np.asarray(heatmap, dtype=np.float32)
    for what, array in (("heatmap", heat), ("mask", mask), ("predicted mask", predicted_mask)):
        if array is not None and np.shape(array) != gray.shape:
            raise DataError(
                f"The {what} has shape {np.shape(array)} but the image is {gray.shape} (height, width); "
                "compute it at the image's size (Predictor.explain does)."
            )
    height, width_px = gray.shape
    text = _title(label, probability, target, truth, title)
    if lesion_probability is not None and title is None:
        found = predicted_mask is not None and bool(np.any(predicted_mask))
        text += f"\nlesion p={lesion_probability:.2f}" + (" (outlined)" if found else ", none outlined")
    figure = Figure(figsize=(width, width * 0.85 * height / width_px + 0.25 * (1 + text.count("\n"))))
    axes = figure.add_subplot()
    axes.imshow(gray, cmap="gray", vmin=0, vmax=255, interpolation="bilinear")
    shown = axes.imshow(heat, cmap=cmap, vmin=0.0, vmax=1.0, alpha=alpha, interpolation="bilinear")
    if mask is not None and np.any(mask):
        axes.contour(np.asarray(mask, dtype=np.float32), levels=[0.5], colors="white", linewidths=1.0)
    if predicted_mask is not None and np.any(predicted_mask):
        axes.contour(np.asarray(predicted_mask, dtype=np.float32), levels=[0.5], colors="lime", linewidths=1.2)
    axes.set_axis_off()
    if text:
        axes.set_title(text, fontsize=9)
    bar = figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.03)
    bar.set_label("class activation", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    figure.tight_layout(pad=0.3)
    return figure


def save_overlay(
    path: str | Path,
    image: ImageInput,
    heatmap: np.ndarray,
    label: str | None = None,
    probability: float | None = None,
    target: str | None = None,
    truth: str | None = None,
    mask: np.ndarray | None = None,
    title: str | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
    width: float = 4.0,
    dpi: int = 100,
    predicted_mask: np.ndarray | None = None,
    lesion_probability: float | None = None,
) -> Path:
    """Write the overlay of :func:`overlay_figure` to a PNG file.

    Parameters
    ----------
    path : str or pathlib.Path
        The PNG to write (parent folders are created).
    image, heatmap, label, probability, target, truth, mask, title, alpha, cmap, width
        As in :func:`overlay_figure`.
    predicted_mask, lesion_probability
        As in :func:`overlay_figure`: the outline of the lesion a multi-task model predicted.
    dpi : int, default=100
        Pixels per inch: ``width=4, dpi=100`` gives a 400-pixel-wide PNG.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> from breastus import Predictor  # doctest: +SKIP
    >>> from breastus.explain import save_overlay  # doctest: +SKIP
    >>> predictor = Predictor.from_checkpoint("runs/busi/best.pt")  # doctest: +SKIP
    >>> p = predictor.predict("scan.png")  # doctest: +SKIP
    >>> save_overlay("scan_gradcam.png", "scan.png", predictor.explain("scan.png"),
    ...              label=p.label, probability=p.confidence)  # doctest: +SKIP

    """
    target_path = Path(path)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    figure = overlay_figure(
        image,
        heatmap,
        label,
        probability,
        target,
        truth,
        mask,
        title,
        alpha,
        cmap,
        width,
        predicted_mask,
        lesion_probability,
    )
    figure.savefig(target_path, dpi=dpi, format="png")
    return target_path
