"""Export: trained models as ONNX or TorchScript files that describe themselves.

``breastus export CHECKPOINT --format onnx|torchscript --out FILE`` on the
command line (``--quantize int8 --calibration DATA_DIR`` for an int8 ONNX model), :func:`export_model` in Python; :meth:`Predictor.from_exported
<breastus.Predictor.from_exported>` runs the file, and
``Predictor.from_checkpoint(path, backend="onnxruntime")`` exports in memory.
"""

from breastus.export._api import BACKENDS as BACKENDS
from breastus.export._api import Backend as Backend
from breastus.export._api import ExportFormat as ExportFormat
from breastus.export._api import backend_model as backend_model
from breastus.export._api import export_model as export_model
from breastus.export._api import load_exported as load_exported
from breastus.export._metadata import ExportMetadata as ExportMetadata
from breastus.export._onnx import OnnxRuntimeModule as OnnxRuntimeModule
from breastus.export._onnx import export_onnx as export_onnx
from breastus.export._onnx import load_onnx as load_onnx
from breastus.export._quantize import QUANTIZE_MODES as QUANTIZE_MODES
from breastus.export._quantize import calibration_images as calibration_images
from breastus.export._quantize import export_int8_onnx as export_int8_onnx
from breastus.export._quantize import int8_onnx_bytes as int8_onnx_bytes
from breastus.export._torchscript import export_torchscript as export_torchscript
from breastus.export._torchscript import load_torchscript as load_torchscript

__all__ = [
    "BACKENDS",
    "QUANTIZE_MODES",
    "Backend",
    "ExportFormat",
    "ExportMetadata",
    "OnnxRuntimeModule",
    "backend_model",
    "calibration_images",
    "export_int8_onnx",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "int8_onnx_bytes",
    "load_exported",
    "load_onnx",
    "load_torchscript",
]
