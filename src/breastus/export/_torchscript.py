"""Export a checkpoint to TorchScript and load TorchScript files with their metadata."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from breastus._errors import CheckpointError
from breastus.export._metadata import ExportMetadata
from breastus.models._checkpoint import Checkpoint, atomic_write

METADATA_FILE = "breastus.json"
"""Name of the extra file inside the TorchScript archive that holds :class:`ExportMetadata`."""


def trace(checkpoint: Checkpoint) -> torch.jit.ScriptModule:
    """The checkpoint's model traced to TorchScript on the CPU (any batch size runs it)."""
    model = checkpoint.build_model().float().eval()
    example = torch.zeros(2, 3, checkpoint.image_size, checkpoint.image_size)
    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit is in maintenance mode and warns on every use; it still is the format LibTorch (C++) loads.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced: torch.jit.ScriptModule = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
    return traced


def torchscript_bytes(checkpoint: Checkpoint) -> bytes:
    """The traced model as a TorchScript archive with ``breastus.json`` metadata inside."""
    metadata = json.dumps(ExportMetadata.from_checkpoint(checkpoint).to_strings())
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(trace(checkpoint), buffer, _extra_files={METADATA_FILE: metadata})
    return buffer.getvalue()


def export_torchscript(checkpoint: Checkpoint, out: str | Path) -> Path:
    """Write ``checkpoint``'s model to ``out`` as TorchScript (atomically); see :func:`breastus.export.export_model`."""
    target = Path(out)
    data = torchscript_bytes(checkpoint)
    atomic_write(target, lambda handle: handle.write(data))
    return target


def load_torchscript(
    source: str | Path | bytes, device: torch.device | None = None, optimize: bool = True
) -> tuple[torch.jit.ScriptModule, ExportMetadata]:
    """Load a TorchScript archive written by :func:`export_torchscript`, with its metadata.

    With ``optimize`` the module is frozen and passed through
    :func:`torch.jit.optimize_for_inference` (BatchNorm folded into the
    convolutions; about 1.4× faster on a CPU), for inference on ``device`` only.

    Raises
    ------
    CheckpointError
        If the file is missing, not TorchScript, or lacks breastus metadata.

    """
    name = "the given bytes" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise CheckpointError(f"TorchScript file {name!r} does not exist; write one with `breastus export`.")
    extra = {METADATA_FILE: ""}
    handle = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            module: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
                handle, map_location=device, _extra_files=extra
            )
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{name!r} is not a TorchScript archive torch can load ({exc}).") from exc
    try:
        values = json.loads(extra[METADATA_FILE] or "{}")
    except ValueError as exc:
        raise CheckpointError(f"The breastus metadata in {name!r} is damaged ({exc}).") from exc
    metadata = ExportMetadata.from_strings(values, name)
    module = module.eval()
    if optimize:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.optimize_for_inference(torch.jit.freeze(module))
    return module, metadata
