"""The losses, optimizer and learning-rate schedule a :class:`~breastus.TrainConfig` names."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from breastus.data._dataset import MASK_UNKNOWN, UltrasoundDataset
from breastus.training._config import TrainConfig


def class_loss(config: TrainConfig, train: UltrasoundDataset, device: torch.device) -> nn.Module:
    """Cross-entropy with the config's class weights (``"balanced"``: inverse class frequency) and smoothing."""
    weight = None
    if config.class_weights == "balanced":
        counts = np.asarray(train.class_counts(), dtype=np.float64)
        weight = torch.tensor(len(train) / (len(counts) * counts), dtype=torch.float32)
    elif config.class_weights is not None:
        weight = torch.tensor(config.class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(
        weight=None if weight is None else weight.to(device), label_smoothing=config.label_smoothing
    )


def seg_loss() -> Any:
    """Dice + BCE on the lesion logits (segmentation_models_pytorch's losses), skipping unknown masks."""
    from segmentation_models_pytorch.losses import DiceLoss, SoftBCEWithLogitsLoss

    dice = DiceLoss("binary", from_logits=True)
    bce = SoftBCEWithLogitsLoss()

    def loss(mask_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        known = masks.reshape(masks.shape[0], -1)[:, 0] != MASK_UNKNOWN
        if not bool(known.any()):  # keep the decoder in the graph (DDP needs every parameter used)
            return mask_logits.sum() * 0.0
        logits, target = mask_logits[known].float(), masks[known].float()
        value: torch.Tensor = dice(logits, target) + bce(logits, target)
        return value

    return loss


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (with momentum), AdamW or Adam over the model's parameters."""
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """The learning-rate scheduler (stepped per epoch, ``onecycle`` per batch), or ``None``."""
    sched = torch.optim.lr_scheduler
    if config.scheduler == "multistep":
        return sched.MultiStepLR(optimizer, milestones=config.resolved_milestones, gamma=config.gamma)
    if config.scheduler == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    return None
