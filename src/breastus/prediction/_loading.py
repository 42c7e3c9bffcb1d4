"""Building a Predictor from what training or export wrote: a checkpoint file, a loaded checkpoint, an export.

The classes, input size, normalisation, preprocessing, temperature, task and lesion
threshold all come from the file, so predictions match what training measured. These
are the bodies of :meth:`Predictor.from_checkpoint`, :meth:`Predictor.from_loaded` and
:meth:`Predictor.from_exported` (documented there).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from breastus._device import resolve_device
from breastus._errors import CheckpointError, ConfigError
from breastus.models._checkpoint import Checkpoint, load_checkpoint
from breastus.transforms._preprocess import Preprocessing

if TYPE_CHECKING:
    from breastus.prediction._predictor import Predictor


def recorded_preprocessing(recorded: dict[str, Any] | None, what: str) -> Preprocessing:
    """Rebuild the :class:`Preprocessing` stored in a checkpoint or export, as a CheckpointError if unusable."""
    try:
        return Preprocessing.from_dict(recorded)
    except ConfigError as exc:
        raise CheckpointError(f"{what} cannot be used: {exc}") from exc


def from_checkpoint(
    cls: type[Predictor],
    path: str | Path,
    device: str | torch.device,
    tta: bool,
    batch_size: int,
    backend: str,
    decision: str | None,
    precision: str,
) -> Predictor:
    """``cls.from_loaded`` of the checkpoint at ``path``, its errors naming the file."""
    checkpoint = load_checkpoint(path)
    try:
        return cls.from_loaded(
            checkpoint,
            device=device,
            tta=tta,
            batch_size=batch_size,
            backend=backend,
            decision=decision,
            precision=precision,
        )
    except CheckpointError as exc:  # the model is rebuilt here: name the file it came from
        raise CheckpointError(f"Checkpoint {str(path)!r}: {exc}") from exc


def from_exported(
    cls: type[Predictor],
    path: str | Path,
    device: str | torch.device,
    tta: bool,
    batch_size: int,
    decision: str | None,
) -> Predictor:
    """A ``cls`` running the ONNX or TorchScript file at ``path``, configured by its metadata."""
    from breastus.export._api import load_exported

    module, meta = load_exported(path, resolve_device(device))
    preprocessing = recorded_preprocessing(meta.preprocessing, f"The preprocessing recorded in {str(path)!r}")
    return cls(
        module,
        meta.model_info,
        meta.class_names,
        meta.image_size,
        device=device,
        tta=tta,
        temperature=meta.temperature,
        batch_size=batch_size,
        preprocessing=preprocessing,
        decision=decision,
        lesion_threshold=meta.lesion_threshold,
    )


def from_loaded(
    cls: type[Predictor],
    checkpoint: Checkpoint,
    device: str | torch.device,
    tta: bool,
    batch_size: int,
    backend: str,
    decision: str | None,
    precision: str,
) -> Predictor:
    """A ``cls`` running ``checkpoint``'s model on ``backend``, configured by the checkpoint."""
    from breastus.export._api import backend_model

    preprocessing = recorded_preprocessing(checkpoint.preprocessing, "The checkpoint's preprocessing")
    return cls(
        backend_model(checkpoint, backend, resolve_device(device)),
        checkpoint.model_info,
        checkpoint.class_names,
        checkpoint.image_size,
        device=device,
        tta=tta,
        temperature=checkpoint.temperature,
        batch_size=batch_size,
        preprocessing=preprocessing,
        decision=decision,
        lesion_threshold=getattr(checkpoint, "lesion_threshold", None),
        precision=precision,
    )
