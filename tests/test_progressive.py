"""Progressive resizing: the per-epoch training size, and a model trained through a size change."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import breastus.training._trainer as trainer_module
from breastus import ConfigError, Predictor, TrainConfig, Trainer, UltrasoundDataset, load_checkpoint
from breastus.cli._train import add_config_arguments, config_from_args

CONFIG = TrainConfig(
    model="timm/test_resnet", pretrained="none", image_size=32, epochs=4, batch_size=16, device="cpu", progress=False
)


def test_schedule_gives_the_size_of_each_epoch() -> None:
    config = CONFIG.replace(image_size=224, epochs=8, progressive_resize=((1, 128), (3, 160), (6, 224)))
    assert [config.train_size(e) for e in range(1, 9)] == [128, 128, 160, 160, 160, 224, 224, 224]
    later = CONFIG.replace(image_size=224, progressive_resize=((3, 224),))
    assert [later.train_size(e) for e in range(1, 5)] == [224, 224, 224, 224]
    assert [CONFIG.train_size(e) for e in range(1, 5)] == [32] * 4  # no schedule: image_size throughout


@given(st.lists(st.tuples(st.integers(1, 50), st.integers(8, 224)), min_size=1, max_size=5, unique_by=lambda s: s[0]))
def test_schedule_sizes_never_exceed_image_size(steps: list[tuple[int, int]]) -> None:
    steps = sorted(steps)
    sizes = sorted(s for _, s in steps)
    steps = [(e, s) for (e, _), s in zip(steps, sizes, strict=True)]  # epochs and sizes both increasing
    config = TrainConfig(image_size=224, epochs=60, progressive_resize=tuple(steps))
    got = [config.train_size(e) for e in range(1, 61)]
    assert all(8 <= s <= 224 for s in got)
    assert got[steps[0][0] - 1 :] == sorted(got[steps[0][0] - 1 :])  # never shrinks once the schedule starts
    assert config.train_size(steps[-1][0]) == steps[-1][1]


@pytest.mark.parametrize(
    "steps",
    [
        ((1, 64), (1, 96)),  # epochs not increasing
        ((1, 28), (2, 16)),  # size shrinks
        ((0, 16),),  # epoch < 1
        ((1, 4),),  # size < 8
        ((1, 64),),  # larger than image_size=32
        ((1,),),  # not a pair
        ((1.5, 16),),  # not ints
        (),
    ],
)
def test_invalid_schedules_name_the_parameter(steps: object) -> None:
    with pytest.raises(ConfigError, match="'progressive_resize' parameter of TrainConfig"):
        CONFIG.replace(progressive_resize=steps)


def test_schedule_survives_to_dict_and_the_cli() -> None:
    config = CONFIG.replace(progressive_resize=[[1, 16], [3, 32]])
    assert config.progressive_resize == ((1, 16), (3, 32))
    assert TrainConfig.from_dict(config.to_dict()) == config
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--image-size", "32", "--progressive-resize", "1:16,3:32"])
    assert config_from_args(args).progressive_resize == ((1, 16), (3, 32))
    with pytest.raises(SystemExit):
        parser.parse_args(["--progressive-resize", "1-16"])


def test_model_trains_through_a_size_change(tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    train, val = data.subset(range(0, 30)), data.subset(range(0, 30, 3))
    config = CONFIG.replace(epochs=3, progressive_resize=((1, 16), (3, 32)))
    seen: list[tuple[bool, int]] = []
    build = trainer_module.build_model

    def hooked(*args: Any, **kwargs: Any) -> Any:  # record the input size of every forward pass
        model, info = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, x: seen.append((m.training, int(x[0].shape[-1]))))
        return model, info

    monkeypatch.setattr(trainer_module, "build_model", hooked)
    history = Trainer(config, tmp_path / "run").fit(train, val)
    assert [r.train_size for r in history.records] == [16, 16, 32]
    train_sizes = [size for training, size in seen if training]
    eval_sizes = {size for training, size in seen if not training}
    assert train_sizes == [16, 16] * 2 + [32, 32]  # 30 images in batches of 16, per epoch
    assert eval_sizes == {32}  # validation always at image_size
    assert all(np.isfinite(r.train_loss) for r in history.records)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint.image_size == 32
    probabilities = Predictor.from_loaded(checkpoint, device="cpu").predict_proba([str(data.paths[0])])
    assert probabilities.shape == (1, 3)
