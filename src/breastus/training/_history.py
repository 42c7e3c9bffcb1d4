"""Per-epoch training records and the history file that holds them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EpochRecord:
    """Metrics of one training epoch (validation metrics on the validation set).

    ``val_dice`` is the per-image lesion Dice on the validation lesion images of a
    multi-task model (``None`` for a classifier; see
    :class:`~breastus.evaluation.SegmentationMetrics`).
    """

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    val_macro_auc: float | None
    seconds: float
    train_images_per_second: float
    val_dice: float | None = None
    precision: str = "fp32"
    """Arithmetic of the training and validation passes: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast)."""
    train_size: int | None = None
    """Training image side of the epoch (``None`` in histories written before progressive resizing)."""

    def to_dict(self) -> dict[str, Any]:
        """The record as plain values."""
        return asdict(self)


@dataclass
class TrainHistory:
    """What :meth:`Trainer.fit <breastus.Trainer.fit>` returns.

    Attributes
    ----------
    records : list of EpochRecord
        One per completed epoch, in order.
    best_epoch : int
        Epoch of the best validation macro-F1 (the ``best.pt`` checkpoint); 0 if none.
    best_score : float
        That macro-F1.
    stopped_early : bool
        Whether early stopping ended the run.

    """

    records: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = -1.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The history as plain values."""
        return {
            "records": [r.to_dict() for r in self.records],
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainHistory:
        """Inverse of :meth:`to_dict`."""
        return cls(
            records=[EpochRecord(**r) for r in data.get("records", [])],
            best_epoch=int(data.get("best_epoch", 0)),
            best_score=float(data.get("best_score", -1.0)),
            stopped_early=bool(data.get("stopped_early", False)),
        )


def write_history(path: Path, records: Sequence[EpochRecord]) -> None:
    """Rewrite the JSON-lines history file with ``records`` (one object per line)."""
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records), encoding="utf-8")


def append_history(path: Path, record: EpochRecord) -> None:
    """Append one record to the JSON-lines history file."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record.to_dict()) + "\n")
        handle.flush()


def read_history(path: str | Path) -> list[EpochRecord]:
    """Read a ``history.jsonl`` file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [EpochRecord(**json.loads(line)) for line in lines if line.strip()]
