"""Load what a service serves from a file: a checkpoint (PyTorch or ONNX Runtime) or an exported ONNX file.

This module is private; use :func:`breastus.service.load_served_model`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastus._errors import ConfigError
from breastus.models._checkpoint import load_checkpoint
from breastus.prediction._predictor import Predictor
from breastus.service._describe import describe_model

SERVE_BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
"""Values of ``breastus serve --backend``."""


@dataclass
class ServedModel:
    """A predictor to serve, the PyTorch predictor for its heatmaps, and its ``GET /v1/model`` description.

    Attributes
    ----------
    predictor : Predictor
    explainer : Predictor or None
        ``None`` when heatmaps are computed by ``predictor`` itself (PyTorch) or
        cannot be (an ONNX file without its checkpoint).
    description : dict
        See :func:`describe_model`.

    """

    predictor: Predictor
    explainer: Predictor | None
    description: dict[str, Any]


def _checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
    return path


def load_served_model(
    source: str | Path, backend: str = "torch", device: str = "auto", batch_size: int = 32
) -> ServedModel:
    """Load a checkpoint, run folder or ``.onnx`` file for :func:`create_app`.

    Parameters
    ----------
    source : str or pathlib.Path
        ``best.pt`` / ``last.pt``, a run folder, or an ONNX file written by
        ``breastus export`` (which needs ``backend="onnxruntime"``).
    backend : {"torch", "onnxruntime"}, default="torch"
        With ``"onnxruntime"`` a checkpoint is exported to ONNX in a temporary
        folder and loaded with :meth:`Predictor.from_exported`; the PyTorch model
        is kept as ``explainer`` for heatmaps.
    device : str, default="auto"
    batch_size : int, default=32
        Largest forward pass (and dynamic batch).

    Returns
    -------
    ServedModel

    Raises
    ------
    ConfigError
        Unknown backend, or an ONNX file with ``backend="torch"``.
    CheckpointError
        If the file cannot be loaded.

    """
    if backend not in SERVE_BACKENDS:
        raise ConfigError(f"backend must be one of {list(SERVE_BACKENDS)}. Got {backend!r} instead.")
    path = _checkpoint_file(Path(source))
    if path.suffix.lower() == ".onnx":
        if backend != "onnxruntime":
            raise ConfigError(f"{str(path)!r} is an ONNX file; serve it with --backend onnxruntime.")
        predictor = Predictor.from_exported(path, device=device, batch_size=batch_size)
        return ServedModel(predictor, None, describe_model(predictor, path, backend=backend))
    from breastus.export._api import export_model

    checkpoint = load_checkpoint(path)
    torch_predictor = Predictor.from_loaded(checkpoint, device=device, batch_size=batch_size)
    if backend == "torch":
        return ServedModel(torch_predictor, None, describe_model(torch_predictor, path, checkpoint, backend))
    with tempfile.TemporaryDirectory(prefix="breastus-serve-") as folder:
        onnx_file = export_model(checkpoint, Path(folder) / "model.onnx", format="onnx")
        predictor = Predictor.from_exported(onnx_file, device=device, batch_size=batch_size)
    return ServedModel(predictor, torch_predictor, describe_model(predictor, path, checkpoint, backend))
