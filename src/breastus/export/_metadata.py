"""What an exported model carries about itself: classes, input contract and calibration."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from breastus._errors import CheckpointError, ConfigError
from breastus._version import __version__
from breastus.models._checkpoint import Checkpoint
from breastus.models._info import ModelInfo
from breastus.transforms._contract import InputContract, resolve_contract
from breastus.transforms._preprocess import Preprocessing

EXPORT_FORMAT = "breastus-export"
EXPORT_FORMAT_VERSION = 2
"""2: the input contract as one ``input_contract`` JSON entry; 1 (still read): separate fields."""
READABLE_EXPORT_VERSIONS = ("1", "2")
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MASK_OUTPUT_NAME = "mask_logits"
"""First output of a multi-task export: lesion logits ``(N, 1, S, S)``."""
CLASS_OUTPUT_NAME = "class_logits"
"""Second output of a multi-task export: class logits ``(N, C)`` (a classifier's only output is ``logits``)."""


def output_names(multitask: bool) -> list[str]:
    """The output names of an export, in the model's output order."""
    return [MASK_OUTPUT_NAME, CLASS_OUTPUT_NAME] if multitask else [OUTPUT_NAME]


@dataclass(frozen=True, init=False)
class ExportMetadata:
    """The description stored inside an exported model (ONNX ``metadata_props``, TorchScript extra file).

    With it an exported file is self-describing: :meth:`Predictor.from_exported
    <breastus.Predictor.from_exported>` (or any other runtime) knows the class
    order, the input contract and the calibration temperature without the
    original checkpoint.

    The model's input ``image`` is ``float32`` of shape ``(N, 3, image_size,
    image_size)``: what :meth:`input_contract.eval_transform()
    <breastus.transforms.InputContract.eval_transform>` makes of the grayscale
    image (its ``preprocessing``, resize to ``image_size``, repeated to three
    channels, scaled to [0, 1] and normalised with its ``mean`` and ``std``). Its
    output ``logits`` has shape ``(N, len(class_names))``; probabilities are
    ``softmax(logits / temperature)``. A multi-task model
    (``model_info.task == "segmentation+classification"``) has two outputs
    instead: ``mask_logits`` ``(N, 1, S, S)`` (lesion probability
    ``sigmoid(mask_logits)``) and ``class_logits`` ``(N, len(class_names))``, and
    ``lesion_threshold`` is the calibrated threshold of its decision rule.

    In the file the contract is one JSON entry, ``input_contract``; the plain
    ``image_size``, ``mean`` and ``std`` entries beside it are copies for runtimes
    that read no JSON (breastus reads the contract only). Files of export format 1
    (separate ``image_size``, ``preprocessing`` and the model's ``mean``/``std``)
    are still read.

    Construct it with ``input_contract=...``, or in the older way with
    ``image_size`` (third argument) and ``preprocessing``.

    Attributes
    ----------
    model_info : ModelInfo
    class_names : tuple of str
    input_contract : InputContract
        Size, normalisation and preprocessing of the input (``Checkpoint.input_contract``).
    temperature : float
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
    input_contract: InputContract
    temperature: float = 1.0
    breastus_version: str = __version__
    lesion_threshold: float | None = None
    quantized: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        model_info: ModelInfo,
        class_names: Sequence[str],
        image_size: int | None = None,
        temperature: float = 1.0,
        preprocessing: Preprocessing | dict[str, Any] | None = None,
        breastus_version: str = __version__,
        lesion_threshold: float | None = None,
        quantized: str | None = None,
        calibration: dict[str, Any] | None = None,
        *,
        input_contract: InputContract | None = None,
    ) -> None:
        contract = resolve_contract(
            input_contract, image_size, preprocessing, model_info.mean, model_info.std, "ExportMetadata"
        )
        values = {
            "model_info": model_info,
            "class_names": tuple(class_names),
            "input_contract": contract,
            "temperature": temperature,
            "breastus_version": breastus_version,
            "lesion_threshold": lesion_threshold,
            "quantized": quantized,
            "calibration": {} if calibration is None else calibration,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def image_size(self) -> int:
        """Square input side (``input_contract.image_size``)."""
        return self.input_contract.image_size

    @property
    def preprocessing(self) -> dict[str, Any]:
        """``input_contract.preprocessing`` as plain values."""
        return self.input_contract.preprocessing.to_dict()

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> ExportMetadata:
        """The metadata of a model exported from ``checkpoint``."""
        return cls(
            model_info=checkpoint.model_info,
            class_names=tuple(checkpoint.class_names),
            temperature=float(checkpoint.temperature),
            lesion_threshold=checkpoint.lesion_threshold,
            input_contract=checkpoint.input_contract,
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
        contract = self.input_contract
        values = {
            "format": EXPORT_FORMAT,
            "format_version": str(EXPORT_FORMAT_VERSION),
            "breastus_version": self.breastus_version,
            "model": info.name,
            "model_info": json.dumps(info.to_dict()),
            "class_names": json.dumps(list(self.class_names)),
            "input_contract": json.dumps(contract.to_dict(), sort_keys=True),
            # plain copies of the contract's size and normalisation, for runtimes that read no JSON
            "image_size": str(contract.image_size),
            "mean": json.dumps(list(contract.mean)),
            "std": json.dumps(list(contract.std)),
            "temperature": repr(float(self.temperature)),
            "input": f"{INPUT_NAME}: float32 (N, 3, {contract.image_size}, {contract.image_size}); the "
            "input_contract's preprocessing, grayscale repeated to 3 channels, scaled to [0, 1], normalised "
            "with its mean and std",
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
        version = values.get("format_version")
        if version not in READABLE_EXPORT_VERSIONS:
            raise CheckpointError(
                f"{source!r} is a breastus export of format version {version!r}; this breastus {__version__} "
                f"reads versions {', '.join(READABLE_EXPORT_VERSIONS)}. Export it again with this version."
            )
        try:
            model_info = ModelInfo.from_dict(json.loads(values["model_info"]))
            return cls(
                model_info=model_info,
                class_names=tuple(str(c) for c in json.loads(values["class_names"])),
                input_contract=_recorded_contract(values, model_info, source),
                temperature=float(values.get("temperature", "1.0")),
                breastus_version=values.get("breastus_version", "unknown"),
                lesion_threshold=_optional_float(json.loads(values.get("lesion_threshold", "null"))),
                quantized=values.get("quantized"),
                calibration=dict(json.loads(values.get("calibration", "{}"))),
            )
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"The breastus metadata of {source!r} is incomplete or damaged ({exc!r}).") from exc


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _recorded_contract(values: Mapping[str, str], model_info: ModelInfo, source: str) -> InputContract:
    """The input contract of export metadata: its ``input_contract`` entry, or (format 1) the separate fields."""
    try:
        if values.get("format_version") == "1":
            return InputContract(
                int(values["image_size"]),
                model_info.mean,
                model_info.std,
                Preprocessing.from_dict(json.loads(values.get("preprocessing", "{}")) or None),
            )
        return InputContract.from_dict(json.loads(values["input_contract"]))
    except ConfigError as exc:
        raise CheckpointError(f"The input contract recorded in {source!r} cannot be used: {exc}") from exc
