"""The Trainer: fits a model on an UltrasoundDataset, validating every epoch."""

from __future__ import annotations

import logging
import random
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from breastus._device import resolve_device
from breastus._errors import CheckpointError, ConfigError, DataError
from breastus.data._cache import ImageCache
from breastus.data._dataset import UltrasoundDataset
from breastus.evaluation._metrics import compute_metrics
from breastus.models._checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from breastus.models._factory import build_model
from breastus.models._info import ModelInfo
from breastus.training._config import TrainConfig
from breastus.training._history import EpochRecord, TrainHistory, append_history, write_history
from breastus.transforms._presets import eval_transform, train_transform

logger = logging.getLogger(__name__)

BEST = "best.pt"
LAST = "last.pt"
HISTORY = "history.jsonl"


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
        self.history = TrainHistory()

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

    def _loss(self, train: UltrasoundDataset) -> nn.Module:
        cfg = self.config
        weight = None
        if cfg.class_weights == "balanced":
            counts = np.asarray(train.class_counts(), dtype=np.float64)
            weight = torch.tensor(len(train) / (len(counts) * counts), dtype=torch.float32)
        elif cfg.class_weights is not None:
            weight = torch.tensor(cfg.class_weights, dtype=torch.float32)
        return nn.CrossEntropyLoss(
            weight=None if weight is None else weight.to(self.device), label_smoothing=cfg.label_smoothing
        )

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        cfg = self.config
        params = model.parameters()
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
        cfg = self.config
        sched = torch.optim.lr_scheduler
        if cfg.scheduler == "multistep":
            return sched.MultiStepLR(optimizer, milestones=cfg.resolved_milestones, gamma=cfg.gamma)
        if cfg.scheduler == "cosine":
            return sched.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        if cfg.scheduler == "onecycle":
            return sched.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
        return None

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.device.type == "cuda" and self.config.amp:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return nullcontext()

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def predict_logits(self, model: nn.Module, loader: DataLoader[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Logits and labels of every batch of ``loader`` (model in eval mode)."""
        model.eval()
        logits, labels = [], []
        with torch.inference_mode(), self._autocast():
            for images, target in loader:
                logits.append(model(self._to_device(images)).float().cpu())
                labels.append(target)
        return torch.cat(logits).numpy(), torch.cat(labels).numpy()

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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.seed)
        model, info = build_model(cfg.model, len(cfg.class_names), cfg.pretrained)
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

        cache = ImageCache(cfg.image_size) if cfg.cache_images else None
        train_data = train.with_transform(train_transform(cfg.image_size, info.mean, info.std)).with_cache(cache)
        val_data = val.with_transform(eval_transform(cfg.image_size, info.mean, info.std)).with_cache(cache)
        generator = torch.Generator()
        pin = self.device.type == "cuda"
        train_loader = DataLoader(
            train_data,
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=cfg.num_workers,
            pin_memory=pin,
            drop_last=len(train_data) % cfg.batch_size == 1,
            persistent_workers=cfg.num_workers > 0,
        )
        val_loader = DataLoader(val_data, batch_size=cfg.batch_size, num_workers=cfg.num_workers, pin_memory=pin)
        criterion = self._loss(train)
        optimizer = self._optimizer(model)
        scheduler = self._scheduler(optimizer, len(train_loader))
        scaler = torch.amp.GradScaler(
            "cuda", enabled=self.device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()
        )
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
        write_history(history_file, history.records)
        self.history = history

        for epoch in range(start_epoch, cfg.epochs + 1):
            if history.stopped_early:
                break
            started = time.perf_counter()
            generator.manual_seed(cfg.seed * 100_003 + epoch)
            torch.manual_seed(cfg.seed * 100_019 + epoch)
            lr = float(optimizer.param_groups[0]["lr"])
            train_loss, train_acc, n_seen, train_seconds = self._train_epoch(
                model, train_loader, criterion, optimizer, scheduler, scaler, epoch
            )
            if scheduler is not None and cfg.scheduler != "onecycle":
                scheduler.step()
            logits, labels = self.predict_logits(model, val_loader)
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
            training_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": history.to_dict(),
                "patience_used": patience_used,
            }
            checkpoint = self._checkpoint(model, info, epoch, training_state)
            if improved:
                save_checkpoint(
                    self._checkpoint(model, info, epoch, {"history": history.to_dict()}), self.best_checkpoint_path
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
        self.history = history
        return history

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

    def _checkpoint(self, model: nn.Module, info: ModelInfo, epoch: int, training_state: dict[str, Any]) -> Checkpoint:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        return Checkpoint(
            model_info=info,
            class_names=tuple(self.config.class_names),
            image_size=self.config.image_size,
            model_state=state,
            epoch=epoch,
            train_config=self.config.to_dict(),
            training_state=training_state,
        )

    def _train_epoch(
        self,
        model: nn.Module,
        loader: DataLoader[Any],
        criterion: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        epoch: int,
    ) -> tuple[float, float, int, float]:
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        started = time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch}/{self.config.epochs}", disable=not self.config.progress, leave=False)
        for images, labels in bar:
            images = self._to_device(images)
            labels = labels.to(self.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                logits = model(images)
                loss = criterion(logits.float(), labels)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None and self.config.scheduler == "onecycle":
                scheduler.step()
            batch = labels.shape[0]
            total_loss += float(loss.detach()) * batch
            correct += int((logits.argmax(dim=1) == labels).sum())
            seen += batch
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        return total_loss / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - started
