"""The breastus checkpoint: one file with weights and everything needed to predict.

A checkpoint is a ``torch.save`` dictionary of tensors and plain Python values
only, so it is read with ``torch.load(..., weights_only=True)`` and loading never
runs code. It is written atomically: to a temporary file in the same folder,
flushed and fsynced, then renamed over the target, so a crash leaves either the
old or the new file, never half of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from breastus._errors import CheckpointError, ConfigError
from breastus._files import atomic_write as atomic_write
from breastus._run_files import BEST_CHECKPOINT, LAST_CHECKPOINT
from breastus._version import __version__
from breastus.models._factory import build_model
from breastus.models._info import ModelInfo
from breastus.models._weights import safe_torch_load
from breastus.transforms._contract import InputContract, resolve_contract
from breastus.transforms._preprocess import Preprocessing

FORMAT = "breastus-checkpoint"
FORMAT_VERSION = 2
"""2: one ``input_contract`` entry; 1 (still read): ``image_size`` and ``preprocessing`` beside ``model_info``'s normalisation."""
READABLE_VERSIONS = (1, 2)


@dataclass(init=False)
class Checkpoint:
    """Contents of a breastus checkpoint file.

    Construct it as ``Checkpoint(model_info, class_names, model_state=...,
    input_contract=...)``, or in the older way with ``image_size`` (third
    argument) and ``preprocessing``, from which the contract is made with the
    model's normalisation; both together must agree.

    Attributes
    ----------
    model_info : ModelInfo
        Architecture and the normalisation of its weights.
    class_names : tuple of str
        Output order of the model.
    model_state : dict of str to torch.Tensor
        The weights.
    input_contract : InputContract
        What the model expects of its input (size, normalisation,
        preprocessing), written once to the file; the
        :class:`~breastus.Predictor`, exports and explanations read it.
    temperature : float
        Softmax temperature from calibration (1.0: uncalibrated).
    epoch : int
        Training epochs completed.
    train_config : dict
        The :class:`~breastus.TrainConfig` as plain values: the recipe, for
        reproducing the run; nothing reads the model's input from it.
    training_state : dict
        Optimizer, scheduler, history and best score, for resuming.
    breastus_version : str
        Version that wrote the file.
    lesion_threshold : float or None
        Multi-task models only: the lesion score below which an image is called
        "normal" (calibrated on the validation split by the
        :class:`~breastus.Trainer`, see :mod:`breastus._lesion_decision`);
        ``None``: no lesion rule, plain argmax of the class probabilities.

    Raises
    ------
    ConfigError
        If ``model_state`` is missing, neither ``input_contract`` nor
        ``image_size`` is given, or they disagree.

    """

    model_info: ModelInfo
    class_names: tuple[str, ...]
    model_state: dict[str, torch.Tensor]
    input_contract: InputContract
    temperature: float = 1.0
    epoch: int = 0
    train_config: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)
    breastus_version: str = __version__
    lesion_threshold: float | None = None

    def __init__(
        self,
        model_info: ModelInfo,
        class_names: Sequence[str],
        image_size: int | None = None,
        model_state: dict[str, torch.Tensor] | None = None,
        temperature: float = 1.0,
        epoch: int = 0,
        train_config: dict[str, Any] | None = None,
        training_state: dict[str, Any] | None = None,
        breastus_version: str = __version__,
        preprocessing: Preprocessing | dict[str, Any] | None = None,
        lesion_threshold: float | None = None,
        *,
        input_contract: InputContract | None = None,
    ) -> None:
        if model_state is None:
            raise ConfigError("Checkpoint needs model_state (the weights). Got None.")
        self.model_info = model_info
        self.class_names = tuple(class_names)
        self.model_state = model_state
        self.input_contract = resolve_contract(
            input_contract, image_size, preprocessing, model_info.mean, model_info.std, "Checkpoint"
        )
        self.temperature = temperature
        self.epoch = epoch
        self.train_config = {} if train_config is None else train_config
        self.training_state = {} if training_state is None else training_state
        self.breastus_version = breastus_version
        self.lesion_threshold = lesion_threshold

    @property
    def image_size(self) -> int:
        """Square input side the model was trained at (``input_contract.image_size``)."""
        return self.input_contract.image_size

    @image_size.setter
    def image_size(self, value: int) -> None:
        self.input_contract = replace(self.input_contract, image_size=value)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """``input_contract.preprocessing`` as plain values; setting it (a dict or a Preprocessing) replaces it."""
        return self.input_contract.preprocessing.to_dict()

    @preprocessing.setter
    def preprocessing(self, value: Preprocessing | dict[str, Any]) -> None:
        prep = value if isinstance(value, Preprocessing) else Preprocessing.from_dict(value)
        self.input_contract = replace(self.input_contract, preprocessing=prep)

    def to_dict(self) -> dict[str, Any]:
        """The payload written by :func:`save_checkpoint` (the input contract under ``"input_contract"``)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "breastus_version": self.breastus_version,
            "model_info": self.model_info.to_dict(),
            "class_names": list(self.class_names),
            "input_contract": self.input_contract.to_dict(),
            "temperature": float(self.temperature),
            "epoch": self.epoch,
            "train_config": self.train_config,
            "training_state": self.training_state,
            "lesion_threshold": None if self.lesion_threshold is None else float(self.lesion_threshold),
            "model_state": self.model_state,
        }

    def build_model(self) -> nn.Module:
        """Rebuild the model with these weights (in eval mode, on the CPU).

        Raises
        ------
        CheckpointError
            If the weights do not fit the recorded architecture.

        """
        info = self.model_info
        try:
            model, _ = build_model(info.name, info.num_classes, pretrained=None)
        except ConfigError as exc:
            raise CheckpointError(
                f"This checkpoint holds a {info.name} model, which this installation cannot build ({exc}). "
                f"It was written by breastus {self.breastus_version}; install the breastus/timm versions that "
                "wrote it."
            ) from exc
        own = model.state_dict()
        missing = [k for k in own if k not in self.model_state]
        unexpected = [k for k in self.model_state if k not in own]
        mismatched = [
            f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in self.model_state.items()
            if k in own and tuple(v.shape) != tuple(own[k].shape)
        ]
        if missing or unexpected or mismatched:
            details = "; ".join(
                f"{what} {items[:3]}{' ...' if len(items) > 3 else ''}"
                for what, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", mismatched))
                if items
            )
            raise CheckpointError(
                f"The weights in this checkpoint do not fit {info.name} with {info.num_classes} classes "
                f"({details}); the file is damaged or was edited."
            )
        try:
            model.load_state_dict(self.model_state)
        except RuntimeError as exc:
            raise CheckpointError(
                f"The weights in this checkpoint do not fit {info.name} with {info.num_classes} classes; "
                f"the file is damaged or was edited ({str(exc).splitlines()[0]})."
            ) from exc
        return model.eval()


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically and return the path."""
    target = Path(path)
    payload = checkpoint.to_dict()
    atomic_write(target, lambda handle: torch.save(payload, handle))
    return target


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a breastus checkpoint without running any code from it.

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        If the file is missing, corrupt, unsafe (pickled code), not a breastus
        checkpoint, or from an incompatible breastus version. The message names the file.

    """
    file = Path(path)
    if file.is_dir():
        for candidate in (file / BEST_CHECKPOINT, file / LAST_CHECKPOINT):
            if candidate.is_file():
                file = candidate
                break
    if not file.is_file():
        raise CheckpointError(
            f"Checkpoint {str(file)!r} does not exist; pass a .pt file written by breastus train "
            "(RUN_DIR/best.pt or RUN_DIR/last.pt) or a run directory."
        )
    data = safe_torch_load(file)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(file)!r} is not a breastus checkpoint (no 'format': {FORMAT!r} entry). A plain state dict "
            "can be used as pretrained weights: create_model(name, pretrained=path)."
        )
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{str(file)!r} is a breastus checkpoint of format version {version!r} written by breastus "
            f"{data.get('breastus_version')!r}; this breastus {__version__} reads formats "
            f"{', '.join(map(str, READABLE_VERSIONS))}. "
            "Install the breastus version that wrote it, or retrain."
        )
    try:
        model_info = ModelInfo.from_dict(data["model_info"])
        checkpoint = Checkpoint(
            model_info=model_info,
            class_names=tuple(str(c) for c in data["class_names"]),
            model_state=dict(data["model_state"]),
            temperature=float(data.get("temperature", 1.0)),
            epoch=int(data.get("epoch", 0)),
            train_config=dict(data.get("train_config", {})),
            training_state=dict(data.get("training_state", {})),
            breastus_version=str(data.get("breastus_version", "unknown")),
            lesion_threshold=None if data.get("lesion_threshold") is None else float(data["lesion_threshold"]),
            input_contract=_recorded_contract(data, model_info, file),
        )
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {str(file)!r} is incomplete or damaged: missing or bad {exc}.") from exc
    info = checkpoint.model_info
    if len(checkpoint.class_names) != info.num_classes or len(set(checkpoint.class_names)) != info.num_classes:
        raise CheckpointError(
            f"Checkpoint {str(file)!r} is inconsistent: its model {info.name} has {info.num_classes} outputs "
            f"but its class names are {list(checkpoint.class_names)}; the file was edited or damaged. Retrain, "
            "or re-save it with one unique class name per output."
        )
    if not all(isinstance(v, torch.Tensor) for v in checkpoint.model_state.values()):
        raise CheckpointError(f"Checkpoint {str(file)!r} is damaged: its model_state holds values that are not tensors.")
    return checkpoint


def _recorded_contract(data: dict[str, Any], model_info: ModelInfo, file: Path) -> InputContract:
    """The input contract of a checkpoint payload: its ``input_contract``, or (format 1) the loose fields."""
    try:
        if data.get("format_version") == 1:  # image_size and preprocessing beside the model's normalisation
            return InputContract(
                int(data["image_size"]),
                model_info.mean,
                model_info.std,
                Preprocessing.from_dict(data.get("preprocessing") or None),
            )
        return InputContract.from_dict(data["input_contract"])
    except ConfigError as exc:
        raise CheckpointError(f"The input contract recorded in checkpoint {str(file)!r} cannot be used: {exc}") from exc
