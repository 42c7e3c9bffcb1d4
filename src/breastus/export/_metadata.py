"""What an exported model carries about itself: classes, input contract and calibration."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from breastus._errors import CheckpointError
from breastus._version import __version__
from breastus.models._checkpoint import Checkpoint
from breastus.models._info import ModelInfo

EXPORT_FORMAT = "breastus-export"
EXPORT_FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MASK_OUTPUT_NAME = "mask_logits"
"""First output of a multi-task export: lesion logits ``(N, 1, S, S)``."""
CLASS_OUTPUT_NAME = "class_logits"
"""Second output of a multi-task export: class logits ``(N, C)`` (a classifier's only output is ``logits``)."""


def output_names(multitask: bool) -> list[str]:
    """The output names of an export, in the model's output order."""
    return [MASK_OUTPUT_NAME, CLASS_OUTPUT_NAME] if multitask else [OUTPUT_NAME]


@dataclass(frozen=True)
class ExportMetadata:
    """The description stored inside an exported model (ONNX ``metadata_props``, TorchScript extra file).

    With it an exported file is self-describing: :meth:`Predictor.from_exported
    <breastus.Predictor.from_exported>` (or any other runtime) knows the class
    order, the input size, the normalisation and the calibration temperature
    without the original checkpoint.

    The model's input ``image`` is ``float32`` of shape ``(N, 3, image_size,
    image_size)``: the grayscale image resized to ``image_size`` (after
    ``preprocessing``), repeated to three channels, scaled to [0, 1] and
    normalised with ``mean`` and ``std``. Its output ``logits`` has shape
    ``(N, len(class_names))``; probabilities are ``softmax(logits / temperature)``.
    A multi-task model (``model_info.task == "segmentation+classification"``) has
    two outputs instead: ``mask_logits`` ``(N, 1, S, S)`` (lesion probability
    ``sigmoid(mask_logits)``) and ``class_logits`` ``(N, len(class_names))``, and
    ``lesion_threshold`` is the calibrated threshold of its decision rule.

    Attributes
    ----------
    model_info : ModelInfo
    class_names : tuple of str
    image_size : int
    temperature : float
    preprocessing : dict
        :class:`~breastus.transforms.Preprocessing` as plain values (empty: defaults).
    breastus_version : str
    lesion_threshold : float or None
        Multi-task models: ``Checkpoint.lesion_threshold``.
    quantized : str or None
        ``"int8"`` for a statically quantized model (see
        :func:`~breastus.export.export_model`), ``None`` for float32.
    calibration : dict
        What an int8 model was calibrated on: the folder's name (never its full
        path), the image count, seed and method; empty for float32.

    """

    model_info: ModelInfo
    class_names: tuple[str, ...]
    image_size: int
    temperature: float = 1.0
    preprocessing: dict[str, Any] = field(default_factory=dict)
    breastus_version: str = __version__
    lesion_threshold: float | None = None
    quantized: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> ExportMetadata:
        """The metadata of a model exported from ``checkpoint``."""
        return cls(
            model_info=checkpoint.model_info,
            class_names=tuple(checkpoint.class_names),
            image_size=int(checkpoint.image_size),
            temperature=float(checkpoint.temperature),
            preprocessing=dict(checkpoint.preprocessing),
            lesion_threshold=checkpoint.lesion_threshold,
        )

    def to_strings(self) -> dict[str, str]:
        """String key/value pairs (values JSON where not plain text), as stored in the file."""
        info = self.model_info
        multitask = info.is_multitask
        quantization = (
            {"quantized": self.quantized, "calibration": json.dumps(self.calibration, sort_keys=True)}
            if self.quantized is not None
            else {}
        )
        values = {
            "format": EXPORT_FORMAT,
            "format_version": str(EXPORT_FORMAT_VERSION),
            "breastus_version": self.breastus_version,
            "model": info.name,
            "model_info": json.dumps(info.to_dict()),
            "class_names": json.dumps(list(self.class_names)),
            "image_size": str(self.image_size),
            "mean": json.dumps(list(info.mean)),
            "std": json.dumps(list(info.std)),
            "temperature": repr(float(self.temperature)),
            "preprocessing": json.dumps(self.preprocessing, sort_keys=True),
            "input": f"{INPUT_NAME}: float32 (N, 3, {self.image_size}, {self.image_size}); grayscale repeated "
            "to 3 channels, scaled to [0, 1], normalised with mean and std",
            "output": f"{OUTPUT_NAME}: float32 (N, {len(self.class_names)}) in class_names order; "
            "probabilities = softmax(logits / temperature)",
            **quantization,
        }
        if multitask:
            size = self.image_size
            values["task"] = str(info.task)
            values["lesion_threshold"] = json.dumps(self.lesion_threshold)
            values["output"] = (
                f"{MASK_OUTPUT_NAME}: float32 (N, 1, {size}, {size}), lesion probability = sigmoid(mask_logits); "
                f"{CLASS_OUTPUT_NAME}: float32 (N, {len(self.class_names)}) in class_names order, "
                "probabilities = softmax(class_logits / temperature); normal when the lesion score is below "
                "lesion_threshold (breastus.prediction.lesion_score)"
            )
        return values

    @classmethod
    def from_strings(cls, values: Mapping[str, str], source: str) -> ExportMetadata:
        """Inverse of :meth:`to_strings`.

        Raises
        ------
        CheckpointError
            If ``values`` is not breastus export metadata, is from a newer format, or is damaged.

        """
        if values.get("format") != EXPORT_FORMAT:
            raise CheckpointError(
                f"{source!r} carries no breastus metadata (no format={EXPORT_FORMAT!r} entry); export it with "
                "`breastus export CHECKPOINT --format onnx|torchscript --out FILE`."
            )
        if values.get("format_version") != str(EXPORT_FORMAT_VERSION):
            raise CheckpointError(
                f"{source!r} is a breastus export of format version {values.get('format_version')!r}; this "
                f"breastus {__version__} reads version {EXPORT_FORMAT_VERSION}. Export it again with this version."
            )
        try:
            return cls(
                model_info=ModelInfo.from_dict(json.loads(values["model_info"])),
                class_names=tuple(str(c) for c in json.loads(values["class_names"])),
                image_size=int(values["image_size"]),
                temperature=float(values.get("temperature", "1.0")),
                preprocessing=dict(json.loads(values.get("preprocessing", "{}"))),
                breastus_version=values.get("breastus_version", "unknown"),
                lesion_threshold=_optional_float(json.loads(values.get("lesion_threshold", "null"))),
                quantized=values.get("quantized"),
                calibration=dict(json.loads(values.get("calibration", "{}"))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"The breastus metadata of {source!r} is incomplete or damaged ({exc!r}).") from exc


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
