"""Prediction: classify images with a trained checkpoint (and, with a multi-task model, find the lesion)."""

from breastus.prediction._decision import calibrate_lesion_threshold as calibrate_lesion_threshold
from breastus.prediction._decision import decide as decide
from breastus.prediction._decision import decide_indices as decide_indices
from breastus.prediction._decision import lesion_score as lesion_score
from breastus.prediction._decision import lesion_scores as lesion_scores
from breastus.prediction._lesion import fuse_crop_probabilities as fuse_crop_probabilities
from breastus.prediction._lesion import postprocess_mask as postprocess_mask
from breastus.prediction._predictor import ImageInput as ImageInput
from breastus.prediction._predictor import Prediction as Prediction
from breastus.prediction._predictor import Predictor as Predictor
from breastus.prediction._predictor import iter_images as iter_images

__all__ = [
    "ImageInput",
    "Prediction",
    "Predictor",
    "calibrate_lesion_threshold",
    "decide",
    "decide_indices",
    "fuse_crop_probabilities",
    "iter_images",
    "lesion_score",
    "lesion_scores",
    "postprocess_mask",
]
