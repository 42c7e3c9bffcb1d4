"""The command-line option of each :class:`~breastus.TrainConfig` field, for the model card's "how to reproduce".

This module is private. The options are defined by ``breastus train`` and
``breastus cv`` (:mod:`breastus.cli`); the library must not import its own command
line, so the card reads their names from this table instead, and
``tests/test_architecture.py`` checks that the table and the CLI's parsers agree.
An option starting with ``--no-`` switches a field that defaults to ``True`` off.
Fields missing here (``momentum``, ``milestones``, ``preprocessing``, ...) have no
option and are reproduced in Python only.
"""

from __future__ import annotations

_SHARED_OPTIONS: dict[str, str] = {
    "model": "--model",
    "pretrained": "--pretrained",
    "image_size": "--image-size",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "optimizer": "--optimizer",
    "weight_decay": "--weight-decay",
    "scheduler": "--scheduler",
    "label_smoothing": "--label-smoothing",
    "class_weights": "--class-weights",
    "early_stopping_patience": "--early-stopping",
    "seed": "--seed",
    "device": "--device",
    "amp": "--no-amp",
    "amp_dtype": "--amp-dtype",
    "num_workers": "--workers",
    "batch_augment": "--batch-augment",
    "compile": "--compile",
    "val_size": "--val-size",
    "progress": "--no-progress",
    "augmentation": "--augmentation",
}

COMMAND_OPTIONS: dict[str, dict[str, str]] = {
    "train": {**_SHARED_OPTIONS, "test_size": "--test-size", "group_duplicates": "--no-group-duplicates"},
    "cv": {**_SHARED_OPTIONS, "duplicate_threshold": "--duplicate-threshold"},
}
"""``command -> {TrainConfig field: option}`` for ``breastus train`` and ``breastus cv``."""
