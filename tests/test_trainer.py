"""Trainer and TrainConfig: short real-BUSI runs, determinism, resume, and validation errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder

from breastus import (
    CheckpointError,
    ConfigError,
    DataError,
    Predictor,
    TrainConfig,
    Trainer,
    TrainHistory,
    UltrasoundDataset,
    load_checkpoint,
)
from breastus.training import read_history

# timm's 0.4 M-parameter test ResNet keeps each epoch on 48 images at 32 px well under a second.
CONFIG = TrainConfig(
    model="timm/test_resnet",
    pretrained="none",
    image_size=32,
    epochs=2,
    batch_size=16,
    device="cpu",
    progress=False,
)
TIMING = {"seconds", "train_images_per_second"}


def _metrics(history: TrainHistory) -> list[dict[str, object]]:
    return [{k: v for k, v in r.to_dict().items() if k not in TIMING} for r in history.records]


@dataclass
class Runs:
    train: UltrasoundDataset
    val: UltrasoundDataset
    a: Path
    b: Path
    resumed: Path
    history_a: TrainHistory
    history_b: TrainHistory
    history_first: TrainHistory
    history_resumed: TrainHistory


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, busi_small: UltrasoundDataset) -> Runs:
    """Two identical 2-epoch runs and a 1-epoch run resumed to 2 epochs, on 60 real BUSI images."""
    root = tmp_path_factory.mktemp("trainer")
    train = busi_small.subset([i for i in range(60) if i % 5])
    val = busi_small.subset([i for i in range(60) if i % 5 == 0])
    history_a = Trainer(CONFIG, root / "a").fit(train, val)
    history_b = Trainer(CONFIG, root / "b").fit(train, val)
    history_first = Trainer(CONFIG.replace(epochs=1), root / "resumed").fit(train, val)
    history_resumed = Trainer(CONFIG, root / "resumed").fit(train, val, resume=True)
    return Runs(
        train, val, root / "a", root / "b", root / "resumed", history_a, history_b, history_first, history_resumed
    )


# ------------------------------------------------------------------ a short real run


@pytest.mark.busi
@pytest.mark.slow
def test_run_writes_checkpoints_and_history(runs: Runs) -> None:
    assert sorted(p.name for p in runs.a.iterdir()) == ["best.pt", "history.jsonl", "last.pt"]
    lines = (runs.a / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert read_history(runs.a / "history.jsonl") == runs.history_a.records
    for record in runs.history_a.records:
        assert record.train_loss > 0 and np.isfinite(record.val_loss)
        assert 0 <= record.val_macro_f1 <= 1 and 0 <= record.val_accuracy <= 1
        assert record.train_images_per_second > 0
    assert runs.history_a.best_score == max(r.val_macro_f1 for r in runs.history_a.records)
    assert runs.history_a.records[runs.history_a.best_epoch - 1].val_macro_f1 == runs.history_a.best_score

    last, best = load_checkpoint(runs.a / "last.pt"), load_checkpoint(runs.a / "best.pt")
    assert last.epoch == 2
    assert best.epoch == runs.history_a.best_epoch
    assert "optimizer" in last.training_state and "optimizer" not in best.training_state
    assert last.class_names == ("benign", "malignant", "normal")
    assert last.image_size == 32
    assert last.model_info.name == "timm/test_resnet"
    assert TrainConfig.from_dict(last.train_config) == CONFIG

    predictor = Predictor.from_checkpoint(runs.a / "best.pt", device="cpu")
    prediction = predictor.predict(runs.val.paths[0])
    assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-6)


@pytest.mark.busi
def test_same_seed_same_metrics(runs: Runs) -> None:
    assert _metrics(runs.history_a) == _metrics(runs.history_b)
    a, b = load_checkpoint(runs.a / "last.pt").model_state, load_checkpoint(runs.b / "last.pt").model_state
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.busi
def test_resume_continues_the_epoch_count(runs: Runs) -> None:
    assert [r.epoch for r in runs.history_first.records] == [1]
    assert [r.epoch for r in runs.history_resumed.records] == [1, 2]
    assert [r.epoch for r in read_history(runs.resumed / "history.jsonl")] == [1, 2]
    assert load_checkpoint(runs.resumed / "last.pt").epoch == 2
    # an interrupted-and-resumed run ends exactly where an uninterrupted one does
    assert _metrics(runs.history_resumed) == _metrics(runs.history_a)
    a = load_checkpoint(runs.a / "last.pt").model_state
    resumed = load_checkpoint(runs.resumed / "last.pt").model_state
    assert all(torch.equal(a[k], resumed[k]) for k in a)


@pytest.mark.busi
def test_resuming_a_finished_run_trains_nothing(runs: Runs) -> None:
    before = (runs.b / "history.jsonl").read_text()
    history = Trainer(CONFIG, runs.b).fit(runs.train, runs.val, resume=True)
    assert _metrics(history) == _metrics(runs.history_b)
    assert (runs.b / "history.jsonl").read_text() == before


@pytest.mark.busi
def test_resume_errors(runs: Runs, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"best\.pt.*no optimizer state"):
        Trainer(CONFIG, tmp_path).fit(runs.train, runs.val, resume=runs.a / "best.pt")
    with pytest.raises(CheckpointError, match=r"holds timm/test_resnet.*trains timm/test_efficientnet"):
        Trainer(CONFIG.replace(model="timm/test_efficientnet"), tmp_path).fit(
            runs.train, runs.val, resume=runs.a / "last.pt"
        )
    with pytest.raises(CheckpointError, match=r"last\.pt.*does not exist"):
        Trainer(CONFIG, tmp_path / "empty").fit(runs.train, runs.val, resume=True)


# ------------------------------------------------------------------ data checks (before any training)


@pytest.mark.busi
def test_a_class_missing_from_training_data(busi_small: UltrasoundDataset, tmp_path: Path) -> None:
    no_normal = busi_small.subset(np.flatnonzero(busi_small.labels != 2))
    with pytest.raises(DataError, match=r"no image of class\(es\) \['normal'\]"):
        Trainer(CONFIG, tmp_path).fit(no_normal, busi_small)


def test_empty_or_mismatched_datasets(tiny_folder: Path, tmp_path: Path) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    with pytest.raises(DataError, match="validation dataset is empty"):
        Trainer(CONFIG, tmp_path).fit(data, data.subset([]))
    other = UltrasoundDataset.from_folder(tiny_folder, class_names=("normal", "benign", "malignant"))
    with pytest.raises(DataError, match="training dataset has classes"):
        Trainer(CONFIG, tmp_path).fit(other, data)
    assert not (tmp_path / "last.pt").exists()


# ------------------------------------------------------------------ options on tiny generated data


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "sgd", "scheduler": "onecycle", "class_weights": "balanced", "label_smoothing": 0.1},
        {"optimizer": "adamw", "scheduler": "cosine", "class_weights": (1.0, 2.0, 3.0), "weight_decay": 0.01},
        {"scheduler": "none", "cache_images": False, "channels_last": False},
    ],
)
def test_training_options_run(tiny_folder: Path, tmp_path: Path, changes: dict[str, object]) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    config = CONFIG.replace(epochs=1, **changes)
    history = Trainer(config, tmp_path).fit(data.subset(range(0, 30, 1)), data.subset(range(0, 30, 3)))
    assert [r.epoch for r in history.records] == [1]
    assert np.isfinite(history.records[0].train_loss)
    assert (tmp_path / "best.pt").is_file()


@pytest.mark.parametrize("amp_dtype", ["auto", "bfloat16", "float16"])
def test_amp_dtype_is_ignored_off_cuda(tmp_path: Path, amp_dtype: str) -> None:
    trainer = Trainer(CONFIG.replace(device="cpu", amp_dtype=amp_dtype, precision="fp32"), tmp_path)
    assert trainer.amp_dtype is None  # amp_dtype is for CUDA; on the CPU, precision decides


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (checked on a lent H200)")
@pytest.mark.parametrize(("amp_dtype", "expected"), [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_mixed_precision_trains_on_cuda(
    tiny_folder: Path, tmp_path: Path, amp_dtype: str, expected: torch.dtype
) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    trainer = Trainer(CONFIG.replace(epochs=1, device="cuda", amp_dtype=amp_dtype, batch_augment=True), tmp_path)
    assert trainer.amp_dtype == expected
    history = trainer.fit(data.subset(range(30)), data.subset(range(0, 30, 3)))
    assert np.isfinite(history.records[0].train_loss)


def test_early_stopping_is_consistent(tiny_folder: Path, tmp_path: Path) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    history = Trainer(CONFIG.replace(epochs=4, early_stopping_patience=1, lr=1e-6), tmp_path).fit(
        data, data.subset(range(0, 30, 2))
    )
    epochs = [r.epoch for r in history.records]
    assert epochs == list(range(1, len(epochs) + 1))
    assert history.stopped_early == (len(epochs) < 4)
    if history.stopped_early:  # the last epoch did not improve on the best one
        assert history.records[-1].val_macro_f1 <= history.best_score
        assert history.best_epoch < epochs[-1]


# ------------------------------------------------------------------ TrainConfig


def test_defaults_are_the_original_recipe() -> None:
    config = TrainConfig()
    assert (config.model, config.lr, config.scheduler, config.batch_size, config.optimizer) == (
        "resnet18",
        1e-3,
        "multistep",
        32,
        "adam",
    )
    assert config.resolved_milestones == [10, 15]
    assert TrainConfig(epochs=1).resolved_milestones == [1]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epochs", 0),
        ("epochs", True),
        ("batch_size", -1),
        ("image_size", 4),
        ("num_workers", -1),
        ("seed", "1"),
        ("lr", 0),
        ("optimizer", "rmsprop"),
        ("scheduler", "step"),
        ("weight_decay", -0.1),
        ("momentum", 1.0),
        ("gamma", 0.0),
        ("label_smoothing", 1.0),
        ("milestones", (5, 2)),
        ("early_stopping_patience", 0),
        ("class_names", ("benign",)),
        ("class_weights", "auto"),
        ("class_weights", (1.0, 2.0)),
        ("test_size", 0.9),
        ("val_size", 0.0),
        ("duplicate_threshold", -2),
        ("amp_dtype", "float8"),
    ],
)
def test_invalid_config_names_the_parameter(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"The '{name}' parameter of TrainConfig must be ") as info:
        TrainConfig(**{name: value})  # type: ignore[arg-type]
    assert f"Got {value!r} instead" in str(info.value)


def test_unknown_model_fails_when_the_config_is_made() -> None:
    with pytest.raises(ConfigError, match=r"'model' parameter of TrainConfig.*Did you mean.*resnet18"):
        TrainConfig(model="resnet19")


def test_config_roundtrip_and_unknown_fields() -> None:
    config = TrainConfig(epochs=3, milestones=(1, 2), class_weights=(1.0, 2.0, 3.0))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.replace(lr=0.01).lr == 0.01
    with pytest.raises(ConfigError, match=r"Unknown TrainConfig field\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="'epochs'"):
        config.replace(epochs=0)


def test_trainer_rejects_bad_config_and_device(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a TrainConfig"):
        Trainer({"epochs": 1}, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="device must be"):
        Trainer(TrainConfig(device="tpu0"), tmp_path)


def test_compiled_training_writes_plain_checkpoints(tmp_path: Path) -> None:
    """``compile=True`` trains through torch.compile; the checkpoint holds the plain model's weights."""
    # 32 training images: two full batches of 16, so one graph is compiled (not a second for a short batch).
    data = UltrasoundDataset.from_folder(
        make_image_folder(tmp_path / "data", {"benign": 12, "malignant": 12, "normal": 8})
    )
    trainer = Trainer(CONFIG.replace(epochs=1, compile=True), tmp_path / "run")
    history = trainer.fit(data, data.subset(range(0, 32, 4)))
    assert np.isfinite(history.records[0].train_loss)
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    assert trainer.model is not None
    assert checkpoint.model_state.keys() == trainer.model.state_dict().keys()  # no "_orig_mod." prefixes
    probabilities = Predictor.from_checkpoint(tmp_path / "run" / "best.pt").predict_proba([data.load_image(0)])
    assert probabilities.shape == (1, 3) and abs(float(probabilities.sum()) - 1) < 1e-5
