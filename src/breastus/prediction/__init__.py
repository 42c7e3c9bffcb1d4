"""Prediction: classify images with a trained checkpoint."""

from breastus.prediction._frames import predict_frames as predict_frames
from breastus.prediction._predictor import ImageInput as ImageInput
from breastus.prediction._predictor import Prediction as Prediction
from breastus.prediction._predictor import Predictor as Predictor
from breastus.prediction._predictor import iter_images as iter_images
from breastus.prediction._ray import ArchiveResult as ArchiveResult
from breastus.prediction._ray import predict_archive as predict_archive

__all__ = ["ArchiveResult", "ImageInput", "Prediction", "Predictor", "iter_images", "predict_archive", "predict_frames"]
