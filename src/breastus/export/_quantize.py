"""int8 ONNX export: ONNX Runtime static quantization (QDQ) calibrated on training images."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from breastus._errors import ConfigError, DataError
from breastus.data._discovery import iter_images
from breastus.data._inputs import as_grayscale
from breastus.export._int8_graph import first_weighted_nodes, last_weighted_nodes, shape_arithmetic_nodes
from breastus.export._metadata import INPUT_NAME, ExportMetadata
from breastus.export._onnx import _import_onnx, onnx_bytes
from breastus.models._checkpoint import Checkpoint, atomic_write

logger = logging.getLogger(__name__)

QUANTIZE_MODES: tuple[str, ...] = ("int8",)
"""Values of ``export_model(..., quantize=...)`` and ``breastus export --quantize``."""

DEFAULT_CALIBRATION_SIZE = 128
"""Calibration images used when ``calibration_size`` is not given."""

CALIBRATION_METHODS: tuple[str, ...] = ("moving-average", "minmax", "percentile", "entropy")
"""Values of ``calibration_method`` (``breastus export --calibration-method``)."""

DEFAULT_CALIBRATION_METHOD = "moving-average"
DEFAULT_REDUCE_RANGE = False
KEEP_FLOAT_CHOICES: tuple[str, ...] = ("first", "last")
"""Entries of ``keep_float``: weighted nodes left in float32 (``breastus export --keep-float``)."""
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ()
WEIGHT_TYPES: tuple[str, ...] = ("int8", "uint8")
"""Values of ``weight_type`` (``breastus export --weight-type``).

``"int8"`` (U8S8: uint8 activations, int8 weights) is ONNX Runtime's fast x86 path with
or without VNNI; ``"uint8"`` (U8U8) avoids the 16-bit saturation of the U8S8 kernels on
CPUs without VNNI but runs much slower. Measured on an AVX2-only CPU without VNNI
(``benchmarks/int8_variants.py``): ResNet-18 at 224 px, batch 32, 2.27x float32 for U8S8
and 1.15x for U8U8; EfficientNet-Lite0 at 128 px 1.17x and 0.15x, with label agreement
on 156 BUSI test images of 87.8 % (U8S8) and 93.6 % (U8U8).
"""
DEFAULT_WEIGHT_TYPE = "int8"


def _import_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise ConfigError("int8 export needs onnxruntime; install it with pip install 'breastus[onnx]'.") from exc
    return quantization


def calibration_images(folder: str | Path, size: int = DEFAULT_CALIBRATION_SIZE, seed: int = 0) -> list[Path]:
    """Up to ``size`` image files under ``folder``, a seeded sample in sorted order (masks left out).

    Parameters
    ----------
    folder : str or pathlib.Path
        Training images (any layout; sub-folders are searched, class names are not needed).
    size : int, default=128
        How many to take; all of them when the folder has fewer.
    seed : int, default=0

    Raises
    ------
    DataError
        If the folder is missing or holds no image file.
    ConfigError
        If ``size`` is not an int >= 1.

    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"calibration_size must be an int >= 1. Got {size!r} instead.")
    paths = list(iter_images(folder))
    if not paths:
        raise DataError(
            f"The calibration folder {str(folder)!r} holds no image file; pass the folder of training images."
        )
    if len(paths) <= size:
        return paths
    chosen = np.sort(np.random.default_rng(seed).choice(len(paths), size=size, replace=False))
    return [paths[int(i)] for i in chosen]


def _reader(batches: Sequence[np.ndarray]) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over prepared ``float32`` batches."""
    quantization = _import_quantization()

    class _Reader(quantization.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    return _Reader()


def calibration_batches(checkpoint: Checkpoint, paths: Sequence[Path], batch_size: int = 16) -> list[np.ndarray]:
    """The model inputs of ``paths``, prepared exactly as :meth:`Predictor.preprocess <breastus.Predictor.preprocess>` does."""
    from torchvision.transforms.v2 import functional as TF

    transform = checkpoint.input_contract.eval_transform()
    tensors = [transform(TF.pil_to_tensor(as_grayscale(p)[0])).numpy() for p in paths]
    return [np.stack(tensors[i : i + batch_size]).astype(np.float32) for i in range(0, len(tensors), batch_size)]


def int8_settings(
    calibration_method: str = DEFAULT_CALIBRATION_METHOD,
    reduce_range: bool = DEFAULT_REDUCE_RANGE,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    symmetric_activations: bool = False,
    static_padding: bool = True,
    weight_type: str = DEFAULT_WEIGHT_TYPE,
) -> dict[str, Any]:
    """The quantization settings, validated, as the export metadata records them (``calibration`` entry).

    Raises
    ------
    ConfigError
        If ``calibration_method``, ``weight_type`` or an entry of ``keep_float`` is unknown,
        or a flag is not a bool.

    """
    if calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"calibration_method must be one of {list(CALIBRATION_METHODS)}. Got {calibration_method!r} instead."
        )
    if isinstance(keep_float, str):
        keep_float = [part for part in keep_float.split(",") if part and part != "none"]
    unknown = [k for k in keep_float if k not in KEEP_FLOAT_CHOICES]
    if unknown:
        raise ConfigError(
            f"keep_float entries must be among {list(KEEP_FLOAT_CHOICES)} (nodes left in float32). "
            f"Got {unknown!r} instead."
        )
    if weight_type not in WEIGHT_TYPES:
        raise ConfigError(f"weight_type must be one of {list(WEIGHT_TYPES)}. Got {weight_type!r} instead.")
    flags = {
        "reduce_range": reduce_range,
        "symmetric_activations": symmetric_activations,
        "static_padding": static_padding,
    }
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False. Got {value!r} instead.")
    return {
        "method": calibration_method,
        "format": "QDQ",
        "weights": f"{weight_type} per channel" + (", 7-bit range" if reduce_range else ""),
        "weight_type": weight_type,
        "activations": "uint8 per tensor" + (", symmetric" if symmetric_activations else ""),
        "reduce_range": reduce_range,
        "keep_float": sorted(set(keep_float)),
        "static_padding": static_padding,
    }


def _excluded_nodes(prepared: Path, keep_float: Sequence[str]) -> list[str]:
    """Names of the prepared graph's nodes left in float32: the chosen ends and any padding arithmetic."""
    onnx = _import_onnx()
    graph = onnx.load(str(prepared)).graph
    names = set(shape_arithmetic_nodes(graph))
    if "first" in keep_float:
        names.update(first_weighted_nodes(graph))
    if "last" in keep_float:
        names.update(last_weighted_nodes(graph))
    return sorted(names)


def int8_onnx_bytes(
    checkpoint: Checkpoint,
    calibration: str | Path,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    seed: int = 0,
    opset: int = 17,
    *,
    calibration_method: str = DEFAULT_CALIBRATION_METHOD,
    reduce_range: bool = DEFAULT_REDUCE_RANGE,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    symmetric_activations: bool = False,
    static_padding: bool = True,
    weight_type: str = DEFAULT_WEIGHT_TYPE,
) -> bytes:
    """The checkpoint's model as an int8 ONNX model, statically quantized on images of ``calibration``.

    The float32 export (:func:`~breastus.export.onnx_bytes`; timm's dynamic 'same'
    padding written as constant pads when ``static_padding``) is pre-processed
    (``onnxruntime.quantization.quant_pre_process``: shape inference and graph
    optimisation), then quantized by ``onnxruntime.quantization.quantize_static``
    in QDQ format with per-channel weights (``weight_type``) and uint8 activations
    (int8 activations, S8S8, ran slower than float32 on x86). Activation ranges come from ``calibration_size``
    images of ``calibration``, prepared as the Predictor prepares them, by
    ``calibration_method``. Any remaining shape arithmetic feeding a ``Pad`` stays
    float32. The breastus metadata is carried over, plus ``quantized = "int8"`` and
    ``calibration`` (folder name, image count, seed and the settings of
    :func:`int8_settings`; no absolute path).

    Parameters
    ----------
    calibration_method : {"moving-average", "minmax", "percentile", "entropy"}, default="moving-average"
        ``"minmax"``: the extreme values over all calibration images; ``"moving-average"``:
        MinMax with the per-batch extremes averaged (ORT's ``CalibMovingAverage``), less
        driven by one outlier image; ``"percentile"`` (99.999th) and ``"entropy"`` are
        histogram methods (slower to calibrate).
    reduce_range : bool
        Quantize weights to 7 bits: ONNX Runtime's advice for x86 CPUs without VNNI,
        whose U8S8 kernels (``VPMADDUBSW``) can saturate 16-bit sums.
    keep_float : sequence of {"first", "last"}
        Weighted nodes left in float32: the first convolution(s) after the input,
        the last layer(s) before each output (classifier; a multi-task model's mask head too).
    symmetric_activations : bool, default=False
        Symmetric activation ranges (ORT's ``ActivationSymmetric``).
    static_padding : bool, default=True
    weight_type : {"int8", "uint8"}, default="int8"
        Weight type: ``"int8"`` (U8S8, ONNX Runtime's fast x86 kernels, with or without
        VNNI) or ``"uint8"`` (U8U8: no 16-bit saturation on CPUs without VNNI, so labels
        closer to float32 there, but much slower: measured figures in the CPU-speed guide).

    Raises
    ------
    ConfigError
        If onnxruntime or onnx is missing, or a setting or ``calibration_size`` is invalid.
    DataError
        If the calibration folder holds no image.

    """
    settings = int8_settings(
        calibration_method, reduce_range, keep_float, symmetric_activations, static_padding, weight_type
    )
    quantization = _import_quantization()
    onnx = _import_onnx()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    paths = calibration_images(calibration, calibration_size, seed)
    batches = calibration_batches(checkpoint, paths)
    metadata = replace(
        ExportMetadata.from_checkpoint(checkpoint),
        quantized="int8",
        calibration={"folder": Path(calibration).resolve().name, "images": len(paths), "seed": seed, **settings},
    )
    method = quantization.CalibrationMethod.MinMax
    if calibration_method in ("percentile", "entropy"):
        method = getattr(quantization.CalibrationMethod, calibration_method.capitalize())
    extra_options = {
        "CalibMovingAverage": calibration_method == "moving-average",
        "ActivationSymmetric": symmetric_activations,
    }
    with tempfile.TemporaryDirectory(prefix="breastus-int8-") as scratch:
        fp32, prepared, quantized = (Path(scratch) / n for n in ("fp32.onnx", "prep.onnx", "int8.onnx"))
        fp32.write_bytes(onnx_bytes(checkpoint, opset, static_padding=static_padding))
        quant_pre_process(fp32, prepared, skip_symbolic_shape=True)
        quantization.quantize_static(
            prepared,
            quantized,
            _reader(batches),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8
            if settings["weight_type"] == "int8"
            else quantization.QuantType.QUInt8,
            calibrate_method=method,
            nodes_to_exclude=_excluded_nodes(prepared, settings["keep_float"]),
            extra_options=extra_options,
        )
        proto = onnx.load(str(quantized))
    del proto.metadata_props[:]
    for key, value in metadata.to_strings().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = (
        f"breastus {checkpoint.model_info.name} classifier of {', '.join(checkpoint.class_names)} "
        f"(int8 QDQ, {settings['weights']} weights, calibrated on {len(paths)} images)"
    )
    data: bytes = proto.SerializeToString()
    return data


def export_int8_onnx(
    checkpoint: Checkpoint,
    out: str | Path,
    calibration: str | Path,
    calibration_size: int = DEFAULT_CALIBRATION_SIZE,
    seed: int = 0,
    opset: int = 17,
    **settings: Any,
) -> Path:
    """Write the int8 ONNX model of :func:`int8_onnx_bytes` to ``out`` (atomically; ``settings`` as it takes)."""
    target = Path(out)
    data = int8_onnx_bytes(checkpoint, calibration, calibration_size, seed, opset, **settings)
    atomic_write(target, lambda handle: handle.write(data))
    logger.info("Wrote the int8 model %s (%.1f MB).", target, len(data) / 1e6)
    return target
