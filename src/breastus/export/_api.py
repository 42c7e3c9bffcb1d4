"""One entry point per task: export a checkpoint, load an export, build a model for a Predictor backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from breastus._errors import CheckpointError, ConfigError
from breastus.export._metadata import ExportMetadata
from breastus.export._onnx import DEFAULT_OPSET, OnnxRuntimeModule, export_onnx, load_onnx, onnx_bytes
from breastus.export._quantize import (
    DEFAULT_CALIBRATION_METHOD,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_KEEP_FLOAT,
    DEFAULT_REDUCE_RANGE,
    DEFAULT_WEIGHT_TYPE,
    QUANTIZE_MODES,
    export_int8_onnx,
    int8_settings,
)
from breastus.export._torchscript import export_torchscript, load_torchscript, torchscript_bytes
from breastus.models._checkpoint import Checkpoint, load_checkpoint

ExportFormat = Literal["onnx", "torchscript"]
Backend = Literal["torch", "torchscript", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("torch", "torchscript", "onnxruntime")
"""Values of ``Predictor.from_checkpoint(..., backend=...)``."""


def _checkpoint(source: Checkpoint | str | Path) -> Checkpoint:
    return source if isinstance(source, Checkpoint) else load_checkpoint(source)


def export_model(
    checkpoint: Checkpoint | str | Path,
    out: str | Path,
    format: ExportFormat = "onnx",
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    *,
    calibration_method: str = DEFAULT_CALIBRATION_METHOD,
    weight_type: str = DEFAULT_WEIGHT_TYPE,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    reduce_range: bool = DEFAULT_REDUCE_RANGE,
) -> Path:
    """Export a trained model to ONNX or TorchScript, self-described by :class:`ExportMetadata`.

    Both formats take a ``float32`` batch ``image`` of shape ``(N, 3, S, S)`` with
    any batch size ``N`` and return ``logits`` ``(N, n_classes)`` (a multi-task
    ``unet/<encoder>`` model: ``mask_logits`` ``(N, 1, S, S)`` and
    ``class_logits`` ``(N, n_classes)``, and the metadata records the task and
    the lesion threshold). The class
    names, image size, mean/std, preprocessing and calibration temperature are
    stored in the file (ONNX ``metadata_props``; TorchScript extra file
    ``breastus.json``), so :meth:`Predictor.from_exported
    <breastus.Predictor.from_exported>` needs nothing else.

    Parameters
    ----------
    checkpoint : Checkpoint, str or pathlib.Path
        A loaded checkpoint, a ``.pt`` file or a run folder.
    out : str or pathlib.Path
        Output file (``.onnx`` or ``.pt`` / ``.ts`` by convention); written atomically.
    format : {"onnx", "torchscript"}, default="onnx"
    opset : int, default=17
        ONNX opset version (ONNX only).
    quantize : {"int8"} or None, default=None
        ``"int8"``: ONNX Runtime static quantization (QDQ, per-channel int8
        weights, uint8 activations) calibrated on ``calibration`` (ONNX only; see
        :func:`~breastus.export.int8_onnx_bytes`). The metadata then records
        ``quantized="int8"`` and the calibration folder's name and image count.
    calibration : str or pathlib.Path, optional
        Folder of training images (never test images) for the int8 ranges;
        required with ``quantize``.
    calibration_size : int, default=128
        Calibration images taken from ``calibration`` (a seeded sample).
    calibration_method, weight_type, keep_float, reduce_range
        int8 settings, as :func:`~breastus.export.int8_onnx_bytes` takes them (its
        docs give their measured effect); recorded in the metadata's ``calibration``.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ConfigError
        Unknown ``format``, ``quantize`` or int8 setting, ``quantize`` without
        ``calibration`` or with TorchScript, or the ``onnx`` package is missing.
    DataError
        The calibration folder holds no image.
    CheckpointError
        The checkpoint cannot be read.

    Examples
    --------
    >>> from breastus.export import export_model  # doctest: +SKIP
    >>> export_model("runs/busi/best.pt", "busi.onnx")  # doctest: +SKIP
    PosixPath('busi.onnx')

    """
    if format not in ("onnx", "torchscript"):
        raise ConfigError(f"format must be 'onnx' or 'torchscript'. Got {format!r} instead.")
    if quantize is not None:
        if quantize not in QUANTIZE_MODES:
            raise ConfigError(f"quantize must be None or one of {list(QUANTIZE_MODES)}. Got {quantize!r} instead.")
        if format != "onnx":
            raise ConfigError(f"quantize={quantize!r} needs format='onnx'. Got format={format!r} instead.")
        if calibration is None:
            raise ConfigError(
                f"quantize={quantize!r} needs calibration images: pass calibration=FOLDER (training images; "
                "--calibration DATA_DIR on the command line)."
            )
        int8_settings(calibration_method, reduce_range, keep_float, weight_type=weight_type)  # fail before loading
    loaded = _checkpoint(checkpoint)
    if quantize is not None and calibration is not None:
        return export_int8_onnx(
            loaded,
            out,
            calibration,
            calibration_size,
            opset=opset,
            calibration_method=calibration_method,
            weight_type=weight_type,
            keep_float=keep_float,
            reduce_range=reduce_range,
        )
    if format == "onnx":
        return export_onnx(loaded, out, opset)
    return export_torchscript(loaded, out)


def load_exported(path: str | Path, device: torch.device | None = None) -> tuple[nn.Module, ExportMetadata]:
    """Load an ONNX (``.onnx``, run by ONNX Runtime) or TorchScript file written by :func:`export_model`.

    Returns
    -------
    module : torch.nn.Module
        Called like the original model: ``module(images) -> logits`` (a multi-task
        export: ``(mask_logits, class_logits)``).
    metadata : ExportMetadata

    Raises
    ------
    CheckpointError
        If the file is missing, of neither format, or lacks breastus metadata.

    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(
            f"Exported model {str(file)!r} does not exist; write one with "
            "`breastus export CHECKPOINT --format onnx|torchscript --out FILE`."
        )
    with file.open("rb") as handle:
        is_zip = handle.read(4) == b"PK\x03\x04"  # TorchScript archives are zip files; ONNX is protobuf
    if is_zip:
        return load_torchscript(file, device)
    return load_onnx(file, device)


def backend_model(checkpoint: Checkpoint, backend: Backend | str, device: torch.device | None = None) -> nn.Module:
    """The checkpoint's model for a Predictor ``backend``, exported in memory (no file is written).

    ``"torch"``: the eager model; ``"torchscript"``: traced; ``"onnxruntime"``:
    exported to ONNX and run by :class:`OnnxRuntimeModule`.

    Raises
    ------
    ConfigError
        Unknown ``backend``, or its package is missing.

    """
    if backend == "torch":
        return checkpoint.build_model()
    if backend == "torchscript":
        module, _ = load_torchscript(torchscript_bytes(checkpoint), device)
        return module
    if backend == "onnxruntime":
        return OnnxRuntimeModule(onnx_bytes(checkpoint), device)
    raise ConfigError(f"backend must be one of {list(BACKENDS)}. Got {backend!r} instead.")
