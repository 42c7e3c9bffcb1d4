"""Models: one factory for torchvision ResNets, timm architectures and multi-task U-Nets, and weight loading."""

from breastus.models._checkpoint import Checkpoint as Checkpoint
from breastus.models._checkpoint import load_checkpoint as load_checkpoint
from breastus.models._checkpoint import save_checkpoint as save_checkpoint
from breastus.models._factory import TORCHVISION_MODELS as TORCHVISION_MODELS
from breastus.models._factory import build_model as build_model
from breastus.models._factory import create_model as create_model
from breastus.models._factory import list_models as list_models
from breastus.models._factory import parse_model_name as parse_model_name
from breastus.models._info import ModelInfo as ModelInfo
from breastus.models._segmentation import split_outputs as split_outputs
from breastus.models._weights import read_state_dict as read_state_dict

__all__ = [
    "TORCHVISION_MODELS",
    "Checkpoint",
    "ModelInfo",
    "build_model",
    "create_model",
    "list_models",
    "load_checkpoint",
    "parse_model_name",
    "read_state_dict",
    "save_checkpoint",
    "split_outputs",
]
