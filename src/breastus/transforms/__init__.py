"""Transforms: train and evaluation presets built from torchvision.transforms.v2."""

from breastus.transforms._presets import ToThreeChannels as ToThreeChannels
from breastus.transforms._presets import eval_transform as eval_transform
from breastus.transforms._presets import train_transform as train_transform

__all__ = ["ToThreeChannels", "eval_transform", "train_transform"]
