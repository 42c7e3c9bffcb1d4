"""Training: configuration, the Trainer, and its history."""

from breastus.training._config import TrainConfig as TrainConfig
from breastus.training._history import EpochRecord as EpochRecord
from breastus.training._history import TrainHistory as TrainHistory
from breastus.training._history import read_history as read_history
from breastus.training._trainer import Trainer as Trainer

__all__ = ["EpochRecord", "TrainConfig", "TrainHistory", "Trainer", "read_history"]
