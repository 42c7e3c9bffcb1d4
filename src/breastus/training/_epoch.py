"""One epoch of a :class:`~breastus.Trainer`: the training pass and the validation outputs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from breastus._segmentation_metrics import overlap_counts, segmentation_metrics
from breastus.data._dataset import MASK_UNKNOWN, NORMAL_CLASS
from breastus.models._segmentation import split_outputs
from breastus.training._distributed import DistributedContext, all_gather_objects
from breastus.training._outputs import collect_outputs
from breastus.transforms._batch import BatchAugment

if TYPE_CHECKING:
    from breastus.training._trainer import Trainer


def train_epoch(
    trainer: Trainer,
    model: nn.Module,
    loader: DataLoader[Any],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    epoch: int,
    augment: BatchAugment | None = None,
    seg_criterion: Any = None,
) -> tuple[float, float, int, float]:
    """Train one epoch; the mean loss, accuracy, images seen and seconds spent."""
    config, device = trainer.config, trainer.device
    model.train()
    # Per-batch losses and hits stay on the device until the end of the epoch, so an
    # accelerator is not synchronised with the host at every step.
    losses: list[torch.Tensor] = []
    hits: list[torch.Tensor] = []
    sizes: list[int] = []
    started = time.perf_counter()
    show = config.progress and trainer.distributed.is_main
    bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", disable=not show, leave=False)
    for step, batch in enumerate(bar):
        images, labels = batch[0], batch[1]
        if augment is not None:
            images = augment(images.to(device, non_blocking=True))
        images = trainer._to_device(images)
        size = config.train_size(epoch)
        if size != images.shape[-1]:  # progressive resizing: cached at image_size, downsampled here
            images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        labels = labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with trainer._autocast():
            mask_logits, logits = split_outputs(model(images))
            loss = criterion(logits.float(), labels)
            if mask_logits is not None and seg_criterion is not None and len(batch) == 3:
                masks = batch[2].to(device, non_blocking=True)
                loss = loss + config.seg_loss_weight * seg_criterion(mask_logits, masks)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None and config.scheduler == "onecycle":
            scheduler.step()
        losses.append(loss.detach())
        hits.append((logits.argmax(dim=1) == labels).sum())
        sizes.append(labels.shape[0])
        if show and (device.type == "cpu" or step % 20 == 0):
            bar.set_postfix(loss=f"{float(losses[-1]):.4f}")
    seen = sum(sizes)
    if not sizes:
        return 0.0, 0.0, 0, time.perf_counter() - started
    total_loss = sum(float(v) * n for v, n in zip(torch.stack(losses).cpu(), sizes, strict=True))
    correct = int(torch.stack(hits).sum())
    return total_loss / seen, correct / seen, seen, time.perf_counter() - started


def _lesion_arrays(probs: np.ndarray, batch: Any) -> tuple[np.ndarray, ...]:
    """Overlap counts, known-mask flags and lesion scores of a batch ``(image, label, mask)``."""
    from breastus._lesion_decision import lesion_scores

    if len(batch) != 3:
        return ()
    target = batch[2].numpy()
    known = target.reshape(len(target), -1)[:, 0] != MASK_UNKNOWN
    return overlap_counts(probs > 0.5, target == 1), known, lesion_scores(probs)


def validation_outputs(trainer: Trainer, model: nn.Module, loader: DataLoader[Any]) -> tuple[np.ndarray, ...]:
    """Class logits and labels; with masks also overlap counts, known-mask flags and lesion scores."""
    model.eval()

    def forward(images: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        mask_logits, class_logits = split_outputs(model(trainer._to_device(images)))
        return mask_logits, class_logits.float()

    with trainer._autocast():
        outputs = collect_outputs(forward, loader, len(trainer.config.class_names), _lesion_arrays)
    if len(outputs[0]) == 0 and trainer._multitask:  # an empty validation shard of a distributed run
        outputs += (np.zeros((0, 3), np.int64), np.zeros(0, bool), np.zeros(0))
    return outputs


def gather(part: tuple[np.ndarray, ...], context: DistributedContext, total: int) -> tuple[np.ndarray, ...]:
    """Reassemble validation outputs of rank ``r`` (images ``r``, ``r + world_size``, ...) in order."""
    if not context.enabled:
        return part
    parts = all_gather_objects(part, context)
    merged = [np.zeros((total, *array.shape[1:]), dtype=array.dtype) for array in part]
    for rank, rank_part in enumerate(parts):
        for target, array in zip(merged, rank_part, strict=True):
            target[rank :: context.world_size] = array
    return tuple(merged)


def lesion_validation(
    outputs: tuple[np.ndarray, ...], class_names: tuple[str, ...] | list[str], min_normal_recall: float
) -> tuple[float | None, float | None]:
    """Validation lesion Dice and the calibrated lesion threshold (``None``, ``None`` for a classifier)."""
    if len(outputs) < 5:
        return None, None
    labels, counts, known, scores = outputs[1], outputs[2], outputs[3], outputs[4]
    dice = segmentation_metrics(counts[known]).dice
    names = list(class_names)
    if NORMAL_CLASS not in names or not np.any(labels == names.index(NORMAL_CLASS)):
        return dice, None
    from breastus._lesion_decision import calibrate_lesion_threshold

    is_lesion = labels != names.index(NORMAL_CLASS)
    return dice, calibrate_lesion_threshold(scores, is_lesion, min_normal_recall)
