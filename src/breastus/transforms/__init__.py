"""Transforms: the input contract, preprocessing, and train and evaluation presets (torchvision.transforms.v2).

:class:`InputContract` is what a model expects of its input (size, normalisation,
:class:`Preprocessing`); checkpoints and exports carry one, and every model-input
transform is built from it.
"""

from breastus.transforms._augment import RandomDepthCrop as RandomDepthCrop
from breastus.transforms._augment import RandomGamma as RandomGamma
from breastus.transforms._augment import RandomResolution as RandomResolution
from breastus.transforms._augment import SpeckleNoise as SpeckleNoise
from breastus.transforms._augment import scanner_appearance as scanner_appearance
from breastus.transforms._augment import scanner_geometry as scanner_geometry
from breastus.transforms._batch import BatchAugment as BatchAugment
from breastus.transforms._contract import InputContract as InputContract
from breastus.transforms._lesion import crop_to_lesion as crop_to_lesion
from breastus.transforms._lesion import lesion_box as lesion_box
from breastus.transforms._preprocess import Letterbox as Letterbox
from breastus.transforms._preprocess import PrepareImage as PrepareImage
from breastus.transforms._preprocess import Preprocessing as Preprocessing
from breastus.transforms._preprocess import clahe as clahe
from breastus.transforms._preprocess import field_of_view_box as field_of_view_box
from breastus.transforms._preprocess import percentile_window as percentile_window
from breastus.transforms._presets import ToThreeChannels as ToThreeChannels
from breastus.transforms._presets import eval_transform as eval_transform
from breastus.transforms._presets import train_transform as train_transform

__all__ = [
    "BatchAugment",
    "InputContract",
    "Letterbox",
    "PrepareImage",
    "Preprocessing",
    "RandomDepthCrop",
    "RandomGamma",
    "RandomResolution",
    "SpeckleNoise",
    "ToThreeChannels",
    "clahe",
    "crop_to_lesion",
    "eval_transform",
    "field_of_view_box",
    "lesion_box",
    "percentile_window",
    "scanner_appearance",
    "scanner_geometry",
    "train_transform",
]
