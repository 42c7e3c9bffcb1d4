"""Building a Predictor from what training or export wrote: a checkpoint file, a loaded checkpoint, an export.

The classes, the input contract (size, normalisation, preprocessing), temperature, task
and lesion threshold all come from the file, so predictions match what training measured. These
are the bodies of :meth:`Predictor.from_checkpoint`, :meth:`Predictor.from_loaded` and
:meth:`Predictor.from_exported` (documented there).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from breastus._device import resolve_device
from breastus._errors import CheckpointError
from breastus.models._checkpoint import Checkpoint, load_checkpoint

if TYPE_CHECKING:
    from breastus.export._metadata import ExportMetadata
    from breastus.prediction._predictor import Predictor


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


def _configured(
    cls: type[Predictor],
    model: torch.nn.Module,
    source: Checkpoint | ExportMetadata,
    device: str | torch.device,
    tta: bool,
    batch_size: int,
    decision: str | None,
    **options: Any,
) -> Predictor:
    """A ``cls`` running ``model``, configured by what a checkpoint or an export records."""
    return cls(
        model,
        source.model_info,
        source.class_names,
        source.input_contract.image_size,
        device=device,
        tta=tta,
        temperature=source.temperature,
        batch_size=batch_size,
        decision=decision,
        lesion_threshold=source.lesion_threshold,
        input_contract=source.input_contract,
        **options,
    )


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
    return _configured(cls, module, meta, device, tta, batch_size, decision)


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

    model = backend_model(checkpoint, backend, resolve_device(device))
    return _configured(cls, model, checkpoint, device, tta, batch_size, decision, precision=precision)
