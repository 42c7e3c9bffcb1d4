"""What the Predictor returns: the :class:`Prediction` of one image, and the pixel :data:`Spacing` it may use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Spacing = tuple[float, float]
"""A pixel's width and height ``(dx, dy)`` in millimetres."""


@dataclass(frozen=True)
class Prediction:
    """The classification of one image.

    Attributes
    ----------
    label : str
        The most probable class.
    probabilities : dict of str to float
        Probability of each class (in the model's class order); sums to 1.
    path : str or None
        The image file, when the input was a path.
    frame : int or None
        The 0-based frame of a DICOM file, from :meth:`Predictor.predict_frames`.
    lesion_probability : float or None
        Multi-task models only: the probability that a lesion is present
        (:func:`~breastus.prediction.lesion_score` of the predicted lesion map).
    mask : numpy.ndarray or None
        Multi-task models only: the predicted lesion, ``bool`` at the input image's
        resolution (see :meth:`Predictor.predict`).
    lesion_box : tuple of int or None
        ``(x0, y0, x1, y1)`` of the mask in input pixels, half-open; ``None`` when
        the mask is empty or the model is a classifier.
    lesion_area_px : int or None
        Lesion pixels in the mask.
    lesion_area_mm2 : float or None
        The area in mm², when a pixel spacing was given.

    """

    label: str
    probabilities: dict[str, float] = field(repr=False)
    path: str | None = None
    frame: int | None = None
    lesion_probability: float | None = None
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    lesion_box: tuple[int, int, int, int] | None = None
    lesion_area_px: int | None = None
    lesion_area_mm2: float | None = None

    @property
    def confidence(self) -> float:
        """Probability of the predicted label."""
        return self.probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON and CSV (the lesion scalars for multi-task models, not the mask)."""
        values: dict[str, Any] = {"path": self.path, "label": self.label, "probabilities": dict(self.probabilities)}
        if self.frame is not None:
            values["frame"] = self.frame
        if self.lesion_probability is not None:
            values["lesion_probability"] = self.lesion_probability
            values["lesion_box"] = None if self.lesion_box is None else list(self.lesion_box)
            values["lesion_area_px"] = self.lesion_area_px
            values["lesion_area_mm2"] = self.lesion_area_mm2
        return values
