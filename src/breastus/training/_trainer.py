"""The Trainer: fits a model on an UltrasoundDataset, validating every epoch."""

from __future__ import annotations

import logging
import random
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from breastus._device import resolve_device
from breastus._errors import CheckpointError, ConfigError, DataError
from breastus._metrics import compute_metrics
from breastus._precision import autocast, cpu_autocast_dtype, precision_label
from breastus._run_files import BEST_CHECKPOINT, HISTORY_FILE, LAST_CHECKPOINT
from breastus.data._cache import ImageCache
from breastus.data._dataset import NORMAL_CLASS, UltrasoundDataset
from breastus.models._checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from breastus.models._factory import build_model
from breastus.models._info import ModelInfo
from breastus.training._config import TrainConfig
from breastus.training._distributed import (
    DistributedContext,
    all_reduce_sums,
    average_buffers,
    init_distributed,
    shutdown_distributed,
)
from breastus.training._epoch import gather, lesion_validation, train_epoch, validation_outputs
from breastus.training._history import EpochRecord, TrainHistory, append_history, write_history
from breastus.training._recipe import class_loss, make_optimizer, make_scheduler, seg_loss
from breastus.transforms._batch import BatchAugment
from breastus.transforms._contract import InputContract

logger = logging.getLogger(__name__)

BEST, LAST, HISTORY = BEST_CHECKPOINT, LAST_CHECKPOINT, HISTORY_FILE  # the run-folder names live in breastus._run_files


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Train a classifier with a :class:`TrainConfig`, keeping the best and last checkpoints.

    Every epoch trains on the training set, evaluates on the validation set,
    appends an :class:`EpochRecord` to ``run_dir/history.jsonl``, writes
    ``run_dir/last.pt`` and, when the validation macro-F1 improves, ``run_dir/best.pt``.
    Checkpoints are written atomically. With the same config, data and seed on the
    CPU, two runs give the same metrics, and a resumed run gives the same metrics
    as an uninterrupted one: each epoch's shuffling and augmentation are seeded
    from ``(seed, epoch)``.

    A multi-task model (``TrainConfig(model="unet/<encoder>")``) is trained on the
    lesion masks too: the datasets yield ``(image, label, mask)``
    (:class:`~breastus.UltrasoundDataset` ``with_masks``), the same random geometry
    moves image and mask, and the loss is cross-entropy + ``seg_loss_weight`` ·
    (Dice + BCE) of the mask. Normal images train towards an empty mask; lesion
    images without a mask file are left out of the mask loss (a warning says how
    many) and still train the classification head. Validation reports the lesion
    Dice (:attr:`EpochRecord.val_dice`), but ``best.pt`` is still chosen by the
    validation macro-F1 of the classification, so classifiers and multi-task
    models are selected alike. Each checkpoint carries the lesion threshold
    calibrated on that epoch's validation images (:attr:`Checkpoint.lesion_threshold`).

    Parameters
    ----------
    config : TrainConfig, optional
        Defaults to ``TrainConfig()`` (the original recipe).
    run_dir : str or pathlib.Path, default="runs/latest"
        Where checkpoints and history go (created if missing).

    Examples
    --------
    >>> from breastus import Trainer, TrainConfig, UltrasoundDataset  # doctest: +SKIP
    >>> data = UltrasoundDataset.from_folder("../shared/datasets/busi")  # doctest: +SKIP
    >>> trainer = Trainer(TrainConfig(pretrained="none", epochs=2), "runs/demo")  # doctest: +SKIP
    >>> history = trainer.fit(data.subset(range(0, 780, 2)), data.subset(range(1, 780, 4)))  # doctest: +SKIP

    """

    def __init__(self, config: TrainConfig | None = None, run_dir: str | Path = "runs/latest") -> None:
        self.config = config if config is not None else TrainConfig()
        if not isinstance(self.config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig. Got {type(self.config).__name__} instead.")
        self.run_dir = Path(run_dir)
        self.device = resolve_device(self.config.device)
        self.model: nn.Module | None = None
        self.model_info: ModelInfo | None = None
        self.input_contract: InputContract | None = None  # built by fit, stored in every checkpoint it writes
        self.history = TrainHistory()
        self.distributed = DistributedContext()
        self._multitask = False

    @property
    def best_checkpoint_path(self) -> Path:
        """``run_dir/best.pt``: the epoch with the best validation macro-F1."""
        return self.run_dir / BEST

    @property
    def last_checkpoint_path(self) -> Path:
        """``run_dir/last.pt``: the latest epoch, with optimizer state for resuming."""
        return self.run_dir / LAST

    def _check_data(self, train: UltrasoundDataset, val: UltrasoundDataset) -> None:
        names = tuple(self.config.class_names)
        for role, data in (("training", train), ("validation", val)):
            if tuple(data.class_names) != names:
                raise DataError(
                    f"The {role} dataset has classes {list(data.class_names)} but the config has {list(names)}; "
                    "build both from the same class_names."
                )
            if len(data) == 0:
                raise DataError(f"The {role} dataset is empty.")
        missing = [n for n, c in zip(names, train.class_counts(), strict=True) if c == 0]
        if missing:
            raise DataError(f"The training dataset has no image of class(es) {missing}; every class needs examples.")

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The mixed-precision type of this run, or ``None`` (float32).

        On the CPU: bfloat16 as ``config.precision`` decides (see :func:`breastus.has_fast_bf16`);
        on CUDA: ``amp`` and ``amp_dtype``; float32 elsewhere.
        """
        if self.device.type == "cpu":
            return cpu_autocast_dtype(self.config.precision)
        if self.device.type != "cuda" or not self.config.amp:
            return None
        if self.config.amp_dtype == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if self.config.amp_dtype == "bfloat16" else torch.float16

    def _autocast(self) -> AbstractContextManager[Any]:
        return autocast(self.device, self.amp_dtype)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def predict_logits(self, model: nn.Module, loader: DataLoader[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Class logits and labels of every batch of ``loader`` (model in eval mode)."""
        outputs = validation_outputs(self, model, loader)
        return outputs[0], outputs[1]

    def fit(
        self,
        train: UltrasoundDataset,
        val: UltrasoundDataset,
        resume: bool | str | Path = False,
    ) -> TrainHistory:
        """Train on ``train``, validating on ``val`` after every epoch.

        Parameters
        ----------
        train, val : UltrasoundDataset
            Their transforms are replaced by the presets for the model's
            normalisation and ``config.image_size``.
        resume : bool or path, default=False
            ``True``: continue from ``run_dir/last.pt``; a path: from that
            checkpoint. The epoch count, optimizer, scheduler, history and best score
            continue where they stopped.

        Returns
        -------
        TrainHistory

        Raises
        ------
        DataError
            If a dataset is empty, a class has no training image, or class names differ.
        CheckpointError
            If the resume checkpoint is missing or from another model or class list.

        """
        cfg = self.config
        self._check_data(train, val)
        context, self.device = init_distributed(self.device)
        self.distributed = context
        self.run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        model, info = build_model(cfg.model, len(cfg.class_names), cfg.pretrained)
        self._multitask = info.is_multitask
        if self._multitask:
            train, val = train.masked(), val.masked()
            self._warn_missing_masks(train, val)
        start_epoch = 1
        resume_from: Checkpoint | None = None
        if resume:
            path = self.last_checkpoint_path if resume is True else Path(resume)
            resume_from = load_checkpoint(path)
            self._check_resume(resume_from, info, path)
            model.load_state_dict(resume_from.model_state)
            info = resume_from.model_info
            start_epoch = resume_from.epoch + 1
        model = model.to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model, self.model_info = model, info
        train_model: nn.Module = model
        if context.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DistributedDataParallel(model, device_ids=device_ids)
        if cfg.compile:
            train_model = torch.compile(train_model)  # type: ignore[assignment]

        self.input_contract = contract = cfg.input_contract(info)
        cache = ImageCache(contract.image_size, cfg.cache_dir, contract.preprocessing) if cfg.cache_images else None
        prepared = cache is not None  # cached images already went through the contract's deterministic step
        train_data = train.with_transform(
            None if cfg.batch_augment else contract.train_transform(cfg.augmentation, prepared=prepared)
        ).with_cache(cache)
        augment = BatchAugment(contract.image_size, contract.mean, contract.std) if cfg.batch_augment else None
        seg_criterion = seg_loss() if self._multitask else None
        val_data = val.with_transform(contract.eval_transform(prepared=prepared)).with_cache(cache)
        # Distributed: each rank trains on its DistributedSampler part and validates on every
        # world_size-th image; the validation logits are gathered so all ranks see the full set.
        sampler: DistributedSampler[Any] | None = (
            DistributedSampler(train_data, context.world_size, context.rank, shuffle=True, seed=cfg.seed)
            if context.enabled
            else None
        )
        val_part = val_data.subset(range(context.rank, len(val_data), context.world_size))
        generator = torch.Generator()
        pin = self.device.type == "cuda"
        train_loader = DataLoader(
            train_data,
            batch_size=cfg.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator,
            num_workers=cfg.num_workers,
            pin_memory=pin,
            drop_last=(len(train_data) if sampler is None else len(sampler)) % cfg.batch_size == 1,
            persistent_workers=cfg.num_workers > 0,
        )
        val_loader = DataLoader(val_part, batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=pin)
        criterion = class_loss(cfg, train, self.device)
        optimizer = make_optimizer(cfg, model)
        scheduler = make_scheduler(cfg, optimizer, len(train_loader))
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        history = TrainHistory()
        patience_used = 0
        history_file = self.run_dir / HISTORY
        if resume_from is not None:
            state = resume_from.training_state
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
            history = TrainHistory.from_dict(state["history"])
            patience_used = int(state.get("patience_used", 0))
        if context.is_main:
            write_history(history_file, history.records)
        self.history = history

        for epoch in range(start_epoch, cfg.epochs + 1):
            if history.stopped_early:
                break
            started = time.perf_counter()
            generator.manual_seed(cfg.seed * 100_003 + epoch)
            torch.manual_seed(cfg.seed * 100_019 + epoch + 1_000_003 * context.rank)
            if sampler is not None:
                sampler.set_epoch(epoch)
            lr = float(optimizer.param_groups[0]["lr"])
            train_loss, train_acc, n_seen, train_seconds = train_epoch(
                self, train_model, train_loader, criterion, optimizer, scheduler, scaler, epoch, augment, seg_criterion
            )
            if context.enabled:
                average_buffers(model, context)
                sums = all_reduce_sums([train_loss * n_seen, train_acc * n_seen, float(n_seen)], context, self.device)
                train_loss, train_acc, n_seen = sums[0] / sums[2], sums[1] / sums[2], int(sums[2])
            if scheduler is not None and cfg.scheduler != "onecycle":
                scheduler.step()
            outputs = gather(validation_outputs(self, model, val_loader), context, len(val_data))
            logits, labels = outputs[0], outputs[1]
            val_dice, threshold = lesion_validation(outputs, cfg.class_names, cfg.lesion_min_normal_recall)
            probabilities = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
            metrics = compute_metrics(labels, probabilities, cfg.class_names)
            val_loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))
            record = EpochRecord(
                epoch=epoch,
                lr=lr,
                train_loss=train_loss,
                train_accuracy=train_acc,
                val_loss=val_loss,
                val_accuracy=metrics.accuracy,
                val_macro_f1=metrics.macro_f1,
                val_macro_auc=metrics.macro_auc,
                seconds=time.perf_counter() - started,
                train_images_per_second=n_seen / max(train_seconds, 1e-9),
                val_dice=val_dice,
                precision=precision_label(self.amp_dtype),
                train_size=cfg.train_size(epoch),
            )
            history.records.append(record)
            improved = record.val_macro_f1 > history.best_score
            if improved:
                history.best_score, history.best_epoch = record.val_macro_f1, epoch
                patience_used = 0
            else:
                patience_used += 1
            if cfg.early_stopping_patience is not None and patience_used >= cfg.early_stopping_patience:
                history.stopped_early = epoch < cfg.epochs
            if not context.is_main:  # only rank 0 writes checkpoints, history and logs
                continue
            training_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": history.to_dict(),
                "patience_used": patience_used,
            }
            checkpoint = self._checkpoint(model, info, epoch, training_state, threshold)
            if improved:
                save_checkpoint(
                    self._checkpoint(model, info, epoch, {"history": history.to_dict()}, threshold),
                    self.best_checkpoint_path,
                )
            save_checkpoint(checkpoint, self.last_checkpoint_path)
            append_history(history_file, record)
            logger.info(
                "epoch %d/%d  train loss %.4f acc %.3f  val loss %.4f acc %.3f macro-F1 %.3f",
                epoch,
                cfg.epochs,
                train_loss,
                train_acc,
                val_loss,
                metrics.accuracy,
                metrics.macro_f1,
            )
        shutdown_distributed(context)
        self.history = history
        return history

    def _warn_missing_masks(self, train: UltrasoundDataset, val: UltrasoundDataset) -> None:
        for role, data in (("training", train), ("validation", val)):
            missing = data.missing_masks()
            if missing:
                logger.warning(
                    "%d of %d %s images are lesion images without a mask file (first: %s); they are left out of "
                    "the mask loss "
                    "and the Dice score and still train the classification head. Add <image>_mask.png files "
                    "(or a manifest 'mask' column) to use them.",
                    len(missing),
                    len(data),
                    role,
                    data.samples[missing[0]].path,
                )
            if NORMAL_CLASS not in data.class_names:
                logger.warning(
                    "The %s classes %s have no %r class: every image is taken to hold a lesion and no lesion "
                    "threshold is calibrated.",
                    role,
                    list(data.class_names),
                    NORMAL_CLASS,
                )

    def _check_resume(self, checkpoint: Checkpoint, info: ModelInfo, path: Path) -> None:
        cfg = self.config
        if checkpoint.model_info.name != info.name or tuple(checkpoint.class_names) != tuple(cfg.class_names):
            raise CheckpointError(
                f"Cannot resume from {str(path)!r}: it holds {checkpoint.model_info.name} for classes "
                f"{list(checkpoint.class_names)}, but this run trains {info.name} for {list(cfg.class_names)}."
            )
        if "optimizer" not in checkpoint.training_state:
            raise CheckpointError(
                f"Cannot resume from {str(path)!r}: it has no optimizer state (resume from last.pt, not best.pt)."
            )

    def _checkpoint(
        self,
        model: nn.Module,
        info: ModelInfo,
        epoch: int,
        training_state: dict[str, Any],
        lesion_threshold: float | None = None,
    ) -> Checkpoint:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        return Checkpoint(
            model_info=info,
            class_names=tuple(self.config.class_names),
            model_state=state,
            epoch=epoch,
            train_config=self.config.to_dict(),
            training_state=training_state,
            lesion_threshold=lesion_threshold,
            input_contract=self.input_contract or self.config.input_contract(info),
        )
