"""Multi-task training: masks in the dataset, joint augmentation, cache, Dice, loss, resume, real BUSI."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import tv_tensors

from breastus import TrainConfig, Trainer, UltrasoundDataset, load_checkpoint
from breastus._segmentation_metrics import compute_segmentation_metrics, segmentation_metrics
from breastus.data import ImageCache
from breastus.data._dataset import MASK_UNKNOWN
from breastus.transforms import Preprocessing, eval_transform, train_transform

MEAN = STD = (0.5, 0.5, 0.5)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here on one thread (the ``one_torch_thread`` fixture)."""


def make_lesion_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (56, 48), seed: int = 0) -> Path:
    """BUSI-style folder: lesions are bright squares with their masks, normals have empty masks.

    ``benign (1).png`` has no mask file (a lesion image without a mask).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    for label, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            image = rng.integers(0, 60, (height, width), dtype=np.uint8)
            mask = np.zeros_like(image)
            if name != "normal":
                y, x = int(rng.integers(6, height - 18)), int(rng.integers(6, width - 18))
                image[y : y + 12, x : x + 12] = 150 + 50 * label
                mask[y : y + 12, x : x + 12] = 255
            Image.fromarray(image).save(root / name / f"{name} ({i}).png")
            if not (name == "benign" and i == 1):
                Image.fromarray(mask).save(root / name / f"{name} ({i})_mask.png")
    return root


@pytest.fixture()
def lesion_folder(tmp_path: Path) -> Path:
    return make_lesion_folder(tmp_path / "data", {"benign": 8, "malignant": 6, "normal": 6})


# ---------------------------------------------------------------- dataset and masks


def test_dataset_yields_masks(lesion_folder: Path) -> None:
    data = UltrasoundDataset.from_folder(lesion_folder).masked()
    image, label, mask = data[1]
    assert image.shape == (1, 48, 56) and mask.shape == (1, 48, 56) and mask.dtype == torch.uint8
    assert set(mask.unique().tolist()) == {0, 1} and label == 0
    assert int(mask.sum()) == 144  # the 12 x 12 square
    _, _, unknown = data[0]  # benign (1) has no mask file
    assert bool((unknown == MASK_UNKNOWN).all())
    normal = data.class_names.index("normal")
    _, _, empty = data[int(np.flatnonzero(data.labels == normal)[0])]
    assert int(empty.sum()) == 0
    assert data.missing_masks() == [0]
    assert data.subset([0, 1]).with_masks and not UltrasoundDataset.from_folder(lesion_folder).with_masks


def test_several_masks_are_merged(tmp_path: Path) -> None:
    root = make_lesion_folder(tmp_path / "d", {"benign": 2, "malignant": 1, "normal": 1})
    extra = np.zeros((48, 56), dtype=np.uint8)
    extra[0:4, 0:4] = 255
    Image.fromarray(extra).save(root / "benign" / "benign (2)_mask_1.png")
    data = UltrasoundDataset.from_folder(root).masked()
    assert int(data[1][2].sum()) == 144 + 16


def test_cached_masks_match_uncached(lesion_folder: Path) -> None:
    data = UltrasoundDataset.from_folder(lesion_folder).masked()
    transform = eval_transform(32, MEAN, STD)
    plain = data.with_transform(transform)
    cached = data.with_transform(eval_transform(32, MEAN, STD, Preprocessing().resize_only())).with_cache(
        ImageCache(32)
    )
    for i in range(3):
        torch.testing.assert_close(plain[i][0], cached[i][0], atol=0.02, rtol=0)
        assert torch.equal(plain[i][2], cached[i][2])
    assert cached.cache is not None and len(cached.cache) == 3


def test_cached_mask_gets_the_field_of_view_crop(tmp_path: Path) -> None:
    root = tmp_path / "fov"
    for name in ("benign", "normal"):
        (root / name).mkdir(parents=True)
    image = np.zeros((64, 64), dtype=np.uint8)
    image[:, 16:] = 80  # the field of view is the right three quarters
    image[20:36, 40:56] = 250
    mask = np.zeros_like(image)
    mask[20:36, 40:56] = 255
    Image.fromarray(image).save(root / "benign" / "benign (1).png")
    Image.fromarray(mask).save(root / "benign" / "benign (1)_mask.png")
    Image.fromarray(image).save(root / "normal" / "normal (1).png")
    data = UltrasoundDataset.from_folder(root, ("benign", "normal")).masked()
    prep = Preprocessing(crop=True)
    cached, cached_mask = ImageCache(32, preprocessing=prep).get_with_mask(data.paths[0], data.mask_paths[0])
    raw_image, _, raw_mask = data.with_transform(None)[0]
    _, uncached_mask = eval_transform(32, MEAN, STD, prep)(raw_image, tv_tensors.Mask(raw_mask))
    assert torch.equal(cached_mask, uncached_mask.as_subclass(torch.Tensor))
    bright = cached[0] > 200
    overlap = (bright & (cached_mask[0] == 1)).sum() / bright.sum()
    assert float(overlap) > 0.9  # the mask was cropped like the image (not left uncropped)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    top=st.integers(0, 40),
    left=st.integers(0, 40),
    side=st.integers(14, 24),
    augmentation=st.sampled_from(["default", "scanner"]),
)
def test_mask_moves_with_the_image(seed: int, top: int, left: int, side: int, augmentation: str) -> None:
    image = torch.zeros(1, 64, 64, dtype=torch.uint8)
    image[:, top : top + side, left : left + side] = 255
    mask = (image > 0).to(torch.uint8)
    torch.manual_seed(seed)
    out_image, out_mask = train_transform(64, MEAN, STD, augmentation=augmentation)(image, tv_tensors.Mask(mask))  # type: ignore[arg-type]
    assert out_mask.dtype == torch.uint8 and set(out_mask.unique().tolist()) <= {0, 1}
    bright = out_image[0] > out_image[0].min() + 0.5 * (out_image[0].max() - out_image[0].min())
    lesion = out_mask[0].as_subclass(torch.Tensor) == 1
    if int(lesion.sum()) < 20:  # the crop cut the square away (almost) entirely
        return
    dice = 2 * float((bright & lesion).sum()) / float(bright.sum() + lesion.sum())
    assert dice > 0.75


def test_flip_moves_the_mask() -> None:
    image = torch.zeros(1, 32, 32, dtype=torch.uint8)
    image[:, 4:12, 2:10] = 255
    mask = tv_tensors.Mask((image > 0).to(torch.uint8))
    from torchvision.transforms import v2

    flipped_image, flipped_mask = v2.RandomHorizontalFlip(p=1.0)(image, mask)
    assert torch.equal((flipped_image > 0).to(torch.uint8), flipped_mask.as_subclass(torch.Tensor))
    assert int(flipped_mask[0, 5, 25]) == 1 and int(flipped_mask[0, 5, 5]) == 0


# ---------------------------------------------------------------- Dice and IoU


def test_dice_and_iou_on_known_masks() -> None:
    target = np.zeros((3, 8, 8), dtype=bool)
    predicted = np.zeros_like(target)
    target[0, :4, :4] = True  # 16 px
    predicted[0, :4, :2] = True  # 8 px inside: Dice 2*8/24, IoU 8/16
    target[1, :2, :2] = True  # 4 px, missed entirely: Dice 0
    predicted[2, 0, 0] = True  # a normal image with one false pixel
    metrics = compute_segmentation_metrics(predicted, target)
    assert metrics.n == 3 and metrics.n_lesion == 2
    assert metrics.dice == pytest.approx((16 / 24 + 0) / 2)
    assert metrics.iou == pytest.approx((0.5 + 0) / 2)
    assert metrics.pooled_dice == pytest.approx(2 * 8 / (9 + 20))
    assert metrics.pooled_iou == pytest.approx(8 / (9 + 20 - 8))
    assert metrics.empty_correct == 0.0
    assert compute_segmentation_metrics(target, target).dice == 1.0
    empty = segmentation_metrics(np.zeros((0, 3)))
    assert empty.dice is None and empty.pooled_dice is None and empty.n == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_dice_bounds_and_symmetry(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.random((4, 6, 6)) > 0.6
    b = rng.random((4, 6, 6)) > 0.6
    ab, ba = compute_segmentation_metrics(a, b), compute_segmentation_metrics(b, a)
    assert ab.pooled_dice == pytest.approx(ba.pooled_dice)
    if ab.pooled_dice is not None and ab.pooled_iou is not None:
        assert 0 <= ab.pooled_iou <= ab.pooled_dice <= 1  # IoU never exceeds Dice


# ---------------------------------------------------------------- training


def _config(**changes: object) -> TrainConfig:
    values: dict[str, object] = {
        "model": "unet/test_resnet",
        "pretrained": "none",
        "image_size": 32,
        "epochs": 2,
        "batch_size": 8,
        "progress": False,
        "lr": 3e-3,
    }
    values.update(changes)
    return TrainConfig(**values)  # type: ignore[arg-type]


def test_two_epoch_multitask_training(lesion_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = UltrasoundDataset.from_folder(lesion_folder)
    with caplog.at_level(logging.WARNING, logger="breastus.training._trainer"):
        history = Trainer(_config(), tmp_path / "run").fit(data, data)
    assert "1 of 20 training images" in caplog.text and "left out of the mask loss" in caplog.text
    assert len(history.records) == 2
    assert all(r.val_dice is not None and 0 <= r.val_dice <= 1 for r in history.records)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.model_info.task == "segmentation+classification"
    assert best.lesion_threshold is not None and 0 < best.lesion_threshold <= 1
    mask_logits, class_logits = best.build_model()(torch.zeros(2, 3, 32, 32))
    assert mask_logits.shape == (2, 1, 32, 32) and class_logits.shape == (2, 3)


def test_mask_loss_lowers_the_loss(lesion_folder: Path, tmp_path: Path) -> None:
    data = UltrasoundDataset.from_folder(lesion_folder)
    with_mask = Trainer(_config(epochs=1), tmp_path / "a").fit(data, data)
    without = Trainer(_config(epochs=1, seg_loss_weight=0.0), tmp_path / "b").fit(data, data)
    # the same seed and batches: the extra Dice + BCE term adds to the training loss
    assert with_mask.records[0].train_loss > without.records[0].train_loss + 0.5


def test_resume_multitask_run(lesion_folder: Path, tmp_path: Path) -> None:
    data = UltrasoundDataset.from_folder(lesion_folder)
    whole = Trainer(_config(epochs=2), tmp_path / "whole").fit(data, data)
    Trainer(_config(epochs=1), tmp_path / "parts").fit(data, data)
    resumed = Trainer(_config(epochs=2), tmp_path / "parts").fit(data, data, resume=True)
    assert [r.epoch for r in resumed.records] == [1, 2]
    for a, b in zip(whole.records, resumed.records, strict=True):
        assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5)
        assert a.val_dice == pytest.approx(b.val_dice, rel=1e-5)
    a_ckpt = load_checkpoint(tmp_path / "whole" / "last.pt")
    b_ckpt = load_checkpoint(tmp_path / "parts" / "last.pt")
    assert a_ckpt.lesion_threshold == pytest.approx(b_ckpt.lesion_threshold)


@pytest.mark.busi
@pytest.mark.slow
def test_multitask_on_real_busi(busi_small: UltrasoundDataset, tmp_path: Path) -> None:
    train = busi_small.subset(range(0, len(busi_small), 2))
    val = busi_small.subset(range(1, len(busi_small), 2))
    assert not train.missing_masks()  # every BUSI image has a mask file
    history = Trainer(_config(image_size=64, batch_size=10), tmp_path / "busi").fit(train, val)
    assert len(history.records) == 2 and history.records[-1].val_dice is not None
    best = load_checkpoint(tmp_path / "busi" / "best.pt")
    assert best.lesion_threshold is not None and best.image_size == 64


DDP_WORKER = """
import hashlib, json, os, sys
from breastus import TrainConfig, Trainer, UltrasoundDataset
data_root, run_dir, out_dir = sys.argv[1:4]
data = UltrasoundDataset.from_folder(data_root)
config = TrainConfig(
    model="unet/test_resnet", pretrained="none", image_size=32, epochs=1, batch_size=4, device="cpu",
    progress=False, seed=3,
)
trainer = Trainer(config, run_dir)
history = trainer.fit(data.subset(range(0, len(data), 2)), data.subset(range(1, len(data), 2)))
digest = hashlib.sha256()
for key, value in sorted(trainer.model.state_dict().items()):
    digest.update(key.encode())
    digest.update(value.detach().cpu().contiguous().numpy().tobytes())
with open(os.path.join(out_dir, f"rank{os.environ['RANK']}.json"), "w") as handle:
    json.dump({"sha256": digest.hexdigest(), "val_dice": history.records[-1].val_dice}, handle)
"""


@pytest.mark.slow
def test_multitask_under_two_process_ddp(lesion_folder: Path, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, str(script), str(lesion_folder), str(tmp_path / "run"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    assert ranks[0]["val_dice"] is not None and ranks[0]["val_dice"] == ranks[1]["val_dice"]
    assert load_checkpoint(tmp_path / "run" / "best.pt").lesion_threshold is not None
