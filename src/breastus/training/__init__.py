"""Training: configuration, the Trainer, and its history.

``_config`` holds :class:`TrainConfig`; ``_trainer`` the :class:`Trainer` (setup, the epoch loop,
checkpoints); ``_epoch`` one epoch's training pass and validation outputs; ``_recipe`` the losses,
optimizer and schedule; ``_outputs`` the one loop that runs a model over a loader (validation and
calibration logits); ``_distributed`` multi-process runs; ``_history`` the per-epoch records.
"""

from breastus.training._config import TrainConfig as TrainConfig
from breastus.training._history import EpochRecord as EpochRecord
from breastus.training._history import TrainHistory as TrainHistory
from breastus.training._history import read_history as read_history
from breastus.training._trainer import Trainer as Trainer

__all__ = ["EpochRecord", "TrainConfig", "TrainHistory", "Trainer", "read_history"]
