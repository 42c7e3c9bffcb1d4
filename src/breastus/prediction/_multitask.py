"""The multi-task half of the :class:`~breastus.prediction.Predictor`: from lesion maps to lesion fields.

A multi-task model (``unet/<encoder>``) gives a lesion probability map beside the
class logits. This module holds what the Predictor does with it, per image:

- :func:`check_lesion_settings` validates ``decision``, ``lesion_threshold`` and ``mask_cut``;
- :func:`prepare` decodes an input and remembers where it went (its
  :class:`~breastus.transforms.InputGeometry`, its pixel spacing, and for a
  crop classifier the grayscale image) in an :class:`Item`;
- :func:`lesion_predictions` turns the maps into masks, boxes and areas and
  applies the decision rule (:func:`~breastus.prediction.decide_indices`);
- :func:`with_crop_classifier` and :func:`fuse_crops` add segment-then-classify:
  a classifier of lesion crops whose probabilities are fused with the whole frame's.

The model itself runs in :mod:`breastus.prediction._predictor` (``Predictor._forward``).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from breastus._errors import ConfigError
from breastus._lesion_decision import check_decision, decide_indices, lesion_scores
from breastus.data._inputs import ImageInput, as_grayscale
from breastus.prediction._lesion import (
    InputGeometry,
    check_spacing,
    fuse_crop_probabilities,
    lesion_measurements,
    mask_to_input,
    postprocess_mask,
)
from breastus.prediction._prediction import Prediction, Spacing
from breastus.transforms._lesion import crop_to_lesion

if TYPE_CHECKING:
    from breastus.prediction._predictor import Predictor


@dataclass
class Item:
    """One prepared input: the model tensor, its path, and what the lesion fields need."""

    tensor: torch.Tensor
    path: str | None
    geometry: InputGeometry | None = None
    gray: Image.Image | None = None
    spacing: Spacing | None = None


def check_lesion_settings(
    multitask: bool, model_name: str, decision: str | None, lesion_threshold: float | None, mask_cut: float
) -> tuple[str, float | None, float]:
    """The checked ``(decision, lesion_threshold, mask_cut)`` of a Predictor (see :class:`Predictor`).

    Raises
    ------
    ConfigError
        If a value is out of range, or ``decision="lesion"`` lacks a multi-task model or a threshold.

    """
    if lesion_threshold is not None and not (isinstance(lesion_threshold, (int, float)) and lesion_threshold > 0):
        raise ConfigError(f"lesion_threshold must be a float > 0 or None. Got {lesion_threshold!r} instead.")
    threshold = None if lesion_threshold is None else float(lesion_threshold)
    if decision is None:
        decision = "lesion" if multitask and threshold is not None else "argmax"
    decision = check_decision(decision)
    if decision == "lesion" and not multitask:
        raise ConfigError(
            f"decision='lesion' needs a multi-task model (unet/<encoder>); {model_name} is a classifier. "
            "Use decision='argmax'."
        )
    if decision == "lesion" and threshold is None:
        raise ConfigError(
            "decision='lesion' needs a calibrated lesion_threshold; this checkpoint has none. Pass "
            "lesion_threshold=..., or decision='argmax'."
        )
    if not (isinstance(mask_cut, (int, float)) and 0.0 < mask_cut <= 1.0):
        raise ConfigError(f"mask_cut must be a probability in (0, 1]. Got {mask_cut!r} instead.")
    return decision, threshold, float(mask_cut)


def spacing_per_image(value: Spacing | Sequence[Spacing | None] | None, count: int) -> list[Spacing | None]:
    """One pixel spacing (or None) per image from a single spacing or a list of them."""
    if value is None:
        return [None] * count
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        single = check_spacing(value)  # type: ignore[arg-type]
        return [single] * count
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise ConfigError(
            "pixel_spacing_mm must be one (dx, dy) pair for all images or a list with one pair (or None) per "
            f"image ({count}). Got {value!r} instead."
        )
    return [None if v is None else check_spacing(v) for v in value]


def prepare(predictor: Predictor, image: ImageInput, spacing: Spacing | None = None) -> Item:
    """Decode and preprocess one input, remembering (for multi-task models) where it went."""
    path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
    if not predictor.multitask:
        return Item(predictor.preprocess(image), path)
    gray, _ = as_grayscale(image)
    if spacing is None:  # DICOM files carry their pixel spacing (breastus.data.read_dicom)
        spacing = gray.info.get("pixel_spacing_mm")
    pixels = TF.pil_to_tensor(gray)
    # the contract's crop is done here, to know its box; the rest of its transform follows
    geometry = predictor.input_contract.geometry(pixels[0].numpy())
    top, bottom, left, right = geometry.crop
    pixels = pixels[:, top:bottom, left:right]
    kept = gray if predictor.crop_classifier is not None else None
    return Item(predictor._uncropped_transform(pixels), path, geometry, kept, spacing)


def lesion_predictions(
    predictor: Predictor, rows: np.ndarray, maps: np.ndarray, items: Sequence[Item]
) -> list[Prediction]:
    """Predictions from class probabilities and lesion maps: the lesion, the crop fusion and the decision rule."""
    scores = lesion_scores(maps)
    rule = predictor.lesion_threshold if predictor.decision == "lesion" else None
    masks = []
    for lesion_map, score, item in zip(maps, scores, items, strict=True):
        assert item.geometry is not None
        if rule is not None and score < rule:  # no lesion found: the image is normal, its mask empty
            masks.append(np.zeros((item.geometry.height, item.geometry.width), dtype=bool))
            continue
        cut = predictor.mask_cut if rule is None else min(predictor.mask_cut, rule)
        masks.append(postprocess_mask(mask_to_input(lesion_map, item.geometry), cut))
    measured = [lesion_measurements(m, item.spacing) for m, item in zip(masks, items, strict=True)]
    if predictor.crop_classifier is not None:
        rows = fuse_crops(predictor, rows, items, [box for box, _, _ in measured])
    class_names = predictor.class_names
    labels = decide_indices(rows, scores, rule, class_names)
    return [
        Prediction(
            label=class_names[int(label)],
            probabilities={name: float(p) for name, p in zip(class_names, row, strict=True)},
            path=item.path,
            lesion_probability=float(score),
            mask=mask,
            lesion_box=box,
            lesion_area_px=area,
            lesion_area_mm2=area_mm2,
        )
        for label, row, score, mask, (box, area, area_mm2), item in zip(
            labels, rows, scores, masks, measured, items, strict=True
        )
    ]


def fuse_crops(
    predictor: Predictor, rows: np.ndarray, items: Sequence[Item], boxes: Sequence[tuple[int, int, int, int] | None]
) -> np.ndarray:
    """Segment-then-classify: fuse the crop classifier's probabilities on each found lesion's crop."""
    classifier = predictor.crop_classifier
    assert classifier is not None
    found = [i for i, box in enumerate(boxes) if box is not None]
    if not found:
        return rows
    crops = []
    for i in found:
        gray, box = items[i].gray, boxes[i]
        assert gray is not None and box is not None
        x0, y0, x1, y1 = box
        crops.append(crop_to_lesion(gray, (y0, y1, x0, x1), predictor.crop_margin))
    crop_rows = classifier.predict_proba(crops)
    fused = rows.copy()
    for i, crop_row in zip(found, crop_rows, strict=True):
        fused[i] = fuse_crop_probabilities(
            rows[i], crop_row, predictor.class_names, classifier.class_names, predictor.crop_weight
        )
    return fused


def with_crop_classifier(predictor: Predictor, classifier: Predictor, weight: float, margin: float) -> Predictor:
    """A copy of ``predictor`` fusing ``classifier`` on lesion crops (see :meth:`Predictor.with_crop_classifier`)."""
    from breastus.prediction._predictor import Predictor

    if not predictor.multitask:
        raise ConfigError(
            f"with_crop_classifier needs a multi-task model (unet/<encoder>) to find the lesion; "
            f"{predictor.model_info.name} is a classifier."
        )
    if not isinstance(classifier, Predictor):
        raise ConfigError(f"classifier must be a Predictor. Got {type(classifier).__name__} instead.")
    unknown = [c for c in classifier.class_names if c not in predictor.class_names]
    if unknown:
        raise ConfigError(
            f"The crop classifier's classes {list(classifier.class_names)} include {unknown}, which the "
            f"multi-task model (classes {list(predictor.class_names)}) does not have."
        )
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"weight must be in [0, 1]. Got {weight!r} instead.")
    if not margin >= 0:
        raise ConfigError(f"margin must be >= 0. Got {margin!r} instead.")
    combined = copy.copy(predictor)
    combined.crop_classifier = classifier
    combined.crop_weight = float(weight)
    combined.crop_margin = float(margin)
    return combined
