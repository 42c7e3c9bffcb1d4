"""The breastus checkpoint: one file with weights and everything needed to predict.

A checkpoint is a ``torch.save`` dictionary of tensors and plain Python values
only, so it is read with ``torch.load(..., weights_only=True)`` and loading never
runs code. It is written atomically: to a temporary file in the same folder,
flushed and fsynced, then renamed over the target, so a crash leaves either the
old or the new file, never half of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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

FORMAT = "breastus-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """Contents of a breastus checkpoint file.

    Attributes
    ----------
    model_info : ModelInfo
        Architecture and normalisation.
    class_names : tuple of str
        Output order of the model.
    image_size : int
        Square input side the model was trained at.
    model_state : dict of str to torch.Tensor
        The weights.
    temperature : float
        Softmax temperature from calibration (1.0: uncalibrated).
    epoch : int
        Training epochs completed.
    train_config : dict
        The :class:`~breastus.TrainConfig` as plain values.
    training_state : dict
        Optimizer, scheduler, history and best score, for resuming.
    breastus_version : str
        Version that wrote the file.
    preprocessing : dict
        The :class:`~breastus.transforms.Preprocessing` the model was trained
        with, as plain values; empty (old checkpoints): the defaults.
    lesion_threshold : float or None
        Multi-task models only: the lesion score below which an image is called
        "normal" (calibrated on the validation split by the
        :class:`~breastus.Trainer`, see :mod:`breastus._lesion_decision`);
        ``None``: no lesion rule, plain argmax of the class probabilities.

    """

    model_info: ModelInfo
    class_names: tuple[str, ...]
    image_size: int
    model_state: dict[str, torch.Tensor]
    temperature: float = 1.0
    epoch: int = 0
    train_config: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)
    breastus_version: str = __version__
    preprocessing: dict[str, Any] = field(default_factory=dict)
    lesion_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The payload written by :func:`save_checkpoint`."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "breastus_version": self.breastus_version,
            "model_info": self.model_info.to_dict(),
            "class_names": list(self.class_names),
            "image_size": self.image_size,
            "temperature": float(self.temperature),
            "epoch": self.epoch,
            "train_config": self.train_config,
            "training_state": self.training_state,
            "preprocessing": self.preprocessing,
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
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{str(file)!r} is a breastus checkpoint of format version {version!r} written by breastus "
            f"{data.get('breastus_version')!r}; this breastus {__version__} reads format {FORMAT_VERSION}. "
            "Install the breastus version that wrote it, or retrain."
        )
    try:
        checkpoint = Checkpoint(
            model_info=ModelInfo.from_dict(data["model_info"]),
            class_names=tuple(str(c) for c in data["class_names"]),
            image_size=int(data["image_size"]),
            model_state=dict(data["model_state"]),
            temperature=float(data.get("temperature", 1.0)),
            epoch=int(data.get("epoch", 0)),
            train_config=dict(data.get("train_config", {})),
            training_state=dict(data.get("training_state", {})),
            breastus_version=str(data.get("breastus_version", "unknown")),
            preprocessing=dict(data.get("preprocessing") or {}),
            lesion_threshold=None if data.get("lesion_threshold") is None else float(data["lesion_threshold"]),
        )
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
