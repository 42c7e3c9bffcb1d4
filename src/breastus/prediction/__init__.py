"""Prediction: classify images with a trained checkpoint (and, with a multi-task model, find the lesion)."""

from breastus._lesion_decision import calibrate_lesion_threshold as calibrate_lesion_threshold
from breastus._lesion_decision import decide as decide
from breastus._lesion_decision import decide_indices as decide_indices
from breastus._lesion_decision import lesion_score as lesion_score
from breastus._lesion_decision import lesion_scores as lesion_scores
from breastus.prediction._frames import predict_frames as predict_frames
from breastus.prediction._lesion import fuse_crop_probabilities as fuse_crop_probabilities
from breastus.prediction._lesion import postprocess_mask as postprocess_mask
from breastus.prediction._prediction import Prediction as Prediction
from breastus.prediction._predictor import ImageInput as ImageInput
from breastus.prediction._predictor import Predictor as Predictor
from breastus.prediction._predictor import iter_images as iter_images
from breastus.prediction._ray import ArchiveResult as ArchiveResult
from breastus.prediction._ray import predict_archive as predict_archive

__all__ = [
    "ArchiveResult",
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
    "predict_archive",
    "predict_frames",
]
