"""Explanations: class-activation heatmaps, overlays, and whether the heatmaps point at the lesion.

Heatmaps come from :meth:`breastus.Predictor.explain` (or
:func:`class_activation_maps` for any model and batch) and are computed with the
``grad-cam`` package (``pip install 'breastus[explain]'``), imported on first use.
:func:`save_overlay` draws one over the ultrasound image, and
:func:`evaluate_localisation` measures heatmaps against lesion masks next to a
random and a centred-Gaussian baseline.
"""

from breastus.explain._cam import CAM_METHODS as CAM_METHODS
from breastus.explain._cam import class_activation_maps as class_activation_maps
from breastus.explain._layers import find_target_layer as find_target_layer
from breastus.explain._localisation import DEFAULT_GAUSSIAN_SIGMA as DEFAULT_GAUSSIAN_SIGMA
from breastus.explain._localisation import LocalisationReport as LocalisationReport
from breastus.explain._localisation import LocalisationScore as LocalisationScore
from breastus.explain._localisation import centred_gaussian as centred_gaussian
from breastus.explain._localisation import evaluate_localisation as evaluate_localisation
from breastus.explain._localisation import mass_inside as mass_inside
from breastus.explain._localisation import pointing_game_hit as pointing_game_hit
from breastus.explain._localisation import uniform_random as uniform_random
from breastus.explain._overlay import overlay_figure as overlay_figure
from breastus.explain._overlay import save_overlay as save_overlay

__all__ = [
    "CAM_METHODS",
    "DEFAULT_GAUSSIAN_SIGMA",
    "LocalisationReport",
    "LocalisationScore",
    "centred_gaussian",
    "class_activation_maps",
    "evaluate_localisation",
    "find_target_layer",
    "mass_inside",
    "overlay_figure",
    "pointing_game_hit",
    "save_overlay",
    "uniform_random",
]
