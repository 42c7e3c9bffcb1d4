"""Which layer a class-activation map is built from: by name, by module, or chosen automatically.

This module is private; use :func:`breastus.explain.find_target_layer`. The maps
themselves are computed in :mod:`breastus.explain._cam`.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
import torchvision
from torch import nn

from breastus._errors import ConfigError

Layer = str | nn.Module | None
"""A target layer: a dotted module path (``"layer4"``, ``"blocks.6"``), the module itself, or ``None`` (automatic)."""


def _module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _resolve_named_layer(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = _module_names(model)
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        top = [n for n, _ in model.named_children()]
        hint = f" Closest names: {close}." if close else ""
        raise ConfigError(
            f"The model ({type(model).__name__}) has no layer {name!r}.{hint} Pass a dotted module path from "
            f"model.named_modules(); its top-level children are {top}. Leave layer=None to pick the last "
            "convolutional stage automatically."
        ) from None


def _probe_last_spatial_layer(model: nn.Module, example: torch.Tensor) -> str:
    """Name of the last module (in execution order) whose output is a feature map larger than 1 x 1."""
    order: list[str] = []
    names = {module: name for name, module in model.named_modules() if name}
    handles = []

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-1] > 1 and output.shape[-2] > 1:
            order.append(names[module])

    for module in names:
        handles.append(module.register_forward_hook(record))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not order:
        raise ConfigError(
            f"Cannot find a convolutional feature map in {type(model).__name__}: no layer outputs a "
            "(batch, channels, height, width) tensor larger than 1 x 1. Pass layer='<dotted module path>'."
        )
    return order[-1]


def find_target_layer(
    model: nn.Module, layer: Layer = None, example: torch.Tensor | None = None
) -> tuple[str, nn.Module]:
    """The layer whose activations a class-activation map is built from.

    Automatic choice (``layer=None``):

    * torchvision and timm ResNets (and ResNeXt, Wide ResNet): ``layer4``, the last
      residual stage;
    * timm EfficientNets (EfficientNet-Lite included): ``bn2``, the activated output
      of the 1x1 head convolution; ``conv_head`` or the last block when the model
      has no ``bn2``;
    * any other model: the last module, in execution order, whose output is a
      feature map larger than 1 x 1 (found with one forward pass of ``example``).

    Parameters
    ----------
    model : torch.nn.Module
    layer : str, torch.nn.Module or None, default=None
        A dotted module path as in ``model.named_modules()`` (``"layer4"``,
        ``"layer4.1.conv2"``, ``"blocks.6"``), a submodule of ``model``, or ``None``.
    example : torch.Tensor, optional
        A ``(B, C, H, W)`` input for the forward pass of the generic rule; default
        zeros of shape ``(1, 3, 64, 64)``.

    Returns
    -------
    name : str
        Dotted path of the layer (``""`` for a module passed in that is not a submodule).
    module : torch.nn.Module

    Raises
    ------
    ConfigError
        If ``layer`` names no module of ``model`` (the message lists the closest
        names), or no feature map can be found automatically.

    Examples
    --------
    >>> from breastus import create_model
    >>> from breastus.explain import find_target_layer
    >>> find_target_layer(create_model("resnet18"))[0]
    'layer4'
    >>> find_target_layer(create_model("tf_efficientnet_lite0"))[0]
    'bn2'

    """
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        return "", layer
    if isinstance(layer, str):
        return layer, _resolve_named_layer(model, layer)
    if layer is not None:
        raise ConfigError(
            f"layer must be None, a dotted module path (str) or a torch.nn.Module. Got {type(layer).__name__} instead."
        )
    import timm  # imported here: only CAMs of timm models need it

    if isinstance(model, (torchvision.models.ResNet, timm.models.resnet.ResNet)):
        return "layer4", model.get_submodule("layer4")
    if isinstance(model, timm.models.efficientnet.EfficientNet):
        for name in ("bn2", "conv_head"):
            if not isinstance(getattr(model, name, None), (nn.Identity, type(None))):
                return name, model.get_submodule(name)
        name = f"blocks.{len(model.blocks) - 1}"
        return name, model.get_submodule(name)
    if example is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        example = torch.zeros(1, 3, 64, 64, device=device)
    name = _probe_last_spatial_layer(model, example[:1])
    return name, model.get_submodule(name)
