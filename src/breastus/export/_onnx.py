"""Export a checkpoint to ONNX and run ONNX files with ONNX Runtime."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from breastus._errors import CheckpointError, ConfigError
from breastus.export._metadata import INPUT_NAME, ExportMetadata, output_names
from breastus.models._checkpoint import Checkpoint, atomic_write

DEFAULT_OPSET = 17
"""ONNX opset written by :func:`export_onnx` (ONNX Runtime 1.14 and later run it)."""


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ConfigError(
            "Exporting to ONNX needs the onnx package; install it with pip install 'breastus[onnx]'."
        ) from exc
    return onnx


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            "Running ONNX models needs onnxruntime; install it with pip install 'breastus[onnx]' "
            "(or onnxruntime-gpu for CUDA)."
        ) from exc
    return onnxruntime


def onnx_bytes(checkpoint: Checkpoint, opset: int = DEFAULT_OPSET, static_padding: bool = False) -> bytes:
    """The checkpoint's model as a serialised ONNX model with breastus metadata and a dynamic batch size.

    Uses PyTorch's TorchScript-based exporter (``dynamo=False``), which needs no
    extra package and exports every torchvision and timm model breastus builds.
    ``static_padding``: timm's dynamic 'same' padding (``Conv2dSame``) is written as
    constant ``Pad`` nodes for the checkpoint's image size (same outputs, no shape
    arithmetic in the graph; the int8 export uses it).
    """
    onnx = _import_onnx()
    model = checkpoint.build_model().float().eval()
    if static_padding:
        from breastus.export._int8_graph import static_same_padding

        static_same_padding(model, checkpoint.image_size)
    outputs = output_names(checkpoint.model_info.is_multitask)
    example = torch.zeros(2, 3, checkpoint.image_size, checkpoint.image_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, which needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript-based exporter writes to file objects
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=opset,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in ExportMetadata.from_checkpoint(checkpoint).to_strings().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    kind = "lesion segmenter and classifier" if len(outputs) > 1 else "classifier"
    proto.doc_string = f"breastus {checkpoint.model_info.name} {kind} of {', '.join(checkpoint.class_names)}"
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def export_onnx(checkpoint: Checkpoint, out: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``checkpoint``'s model to ``out`` as ONNX (atomically); see :func:`breastus.export.export_model`."""
    target = Path(out)
    data = onnx_bytes(checkpoint, opset)
    atomic_write(target, lambda handle: handle.write(data))
    return target


class OnnxRuntimeModule(nn.Module):
    """An ONNX Runtime inference session behind the ``nn.Module`` call interface.

    ``module(images)`` runs the session on the ``float32`` batch and returns the
    logits as a tensor on the input's device (a multi-task export's
    ``(mask_logits, class_logits)`` pair as a tuple, like the eager model). It has no parameters and cannot
    be trained or differentiated.

    Parameters
    ----------
    model : bytes, str or pathlib.Path
        An ONNX file or its bytes.
    device : torch.device, optional
        With a CUDA device and ``onnxruntime-gpu`` installed, runs on the GPU;
        otherwise on the CPU.
    threads : int, optional
        Intra-op threads; default ``torch.get_num_threads()`` (so
        ``OMP_NUM_THREADS`` and :func:`torch.set_num_threads` apply here too).

    Attributes
    ----------
    host_batches : bool
        ``True``: the :class:`~breastus.Predictor` builds this model's batches with
        NumPy and prepares images on one PyTorch thread, so that PyTorch's idle
        OpenMP threads do not spin on the cores ONNX Runtime computes on (on a
        2-core machine that cost about 10 ms of a 25 ms single-image prediction).

    """

    host_batches = True

    def __init__(self, model: bytes | str | Path, device: torch.device | None = None, threads: int | None = None):
        super().__init__()
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads if threads is not None else torch.get_num_threads())
        providers = ["CPUExecutionProvider"]
        if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            where = "the given bytes" if isinstance(model, bytes) else repr(str(model))
            raise CheckpointError(f"ONNX Runtime cannot load {where}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.output_name = self.output_names[0]

    @property
    def metadata(self) -> dict[str, str]:
        """The file's ``metadata_props``."""
        values: dict[str, str] = self.session.get_modelmeta().custom_metadata_map
        return dict(values)

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        results = self.session.run(self.output_names, {self.input_name: array})
        tensors = tuple(torch.from_numpy(r).to(images.device) for r in results)
        return tensors[0] if len(tensors) == 1 else tensors


def load_onnx(path: str | Path, device: torch.device | None = None) -> tuple[OnnxRuntimeModule, ExportMetadata]:
    """Open an ONNX file written by :func:`export_onnx` with ONNX Runtime, with its metadata.

    Raises
    ------
    CheckpointError
        If the file is missing, not ONNX, or lacks breastus metadata.

    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"ONNX file {str(file)!r} does not exist; write one with `breastus export`.")
    module = OnnxRuntimeModule(file, device)
    return module, ExportMetadata.from_strings(module.metadata, str(file))
