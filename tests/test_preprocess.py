"""Preprocessing for other hospitals' images, and the scanner augmentation.

Field-of-view crop on generated screen captures (borders, ruler, text), aspect-keeping
resize, intensity standardisation, cache/Predictor consistency, and — on the real BUSI
lesion masks — that the geometric augmentations keep the lesion in view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from breastus import ConfigError, Predictor, Preprocessing, TrainConfig, UltrasoundDataset, eval_transform
from breastus.data import ImageCache, load_image, load_mask
from breastus.models import load_checkpoint
from breastus.training import Trainer
from breastus.transforms import (
    Letterbox,
    RandomDepthCrop,
    RandomGamma,
    RandomResolution,
    SpeckleNoise,
    field_of_view_box,
    percentile_window,
    scanner_geometry,
    train_transform,
)

ROBUST = Preprocessing(crop=True, resize="letterbox", intensity="percentile")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def speckle_tissue(height: int, width: int, rng: np.random.Generator, dark_bottom: bool = True) -> np.ndarray:
    """Ultrasound-like texture: bright speckle on top, very dark (2-7) speckle in the deepest third."""
    tissue = rng.gamma(2.0, 40.0, size=(height, width)).clip(1, 255)
    if dark_bottom:
        tissue[2 * height // 3 :] = rng.integers(1, 8, size=(height - 2 * height // 3, width))
    return tissue.astype(np.uint8)


def screen_capture(
    rng: np.random.Generator, top: int, left: int, right: int, bottom: int, fov: tuple[int, int] = (180, 240)
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A black frame holding a field of view, a ruler strip at the left and text at the top."""
    height, width = fov
    frame = np.zeros((top + height + bottom, left + width + right), dtype=np.uint8)
    frame[top : top + height, left : left + width] = speckle_tissue(height, width, rng)
    canvas = Image.fromarray(frame)
    draw = ImageDraw.Draw(canvas)
    if left >= 20:  # ruler: a line with ticks, in the left margin, 10 px clear of the field of view
        x = left // 2
        draw.line([(x, top), (x, top + height)], fill=230)
        for y in range(top, top + height, 15):
            draw.line([(x - 5, y), (x, y)], fill=230)
    if top >= 20:  # burned-in text in the top margin, clear of the field of view by more than the 5 x 5 closing bridges
        font = ImageFont.load_default(size=max(8, top // 2))
        draw.text((left + 4, 1), "LT BREAST 12L5", fill=255, font=font)
    return np.asarray(canvas), (top, top + height, left, left + width)


@settings(max_examples=12, deadline=None)
@given(
    top=st.integers(0, 60),
    left=st.integers(0, 80),
    right=st.integers(0, 120),
    bottom=st.integers(0, 60),
    seed=st.integers(0, 1000),
)
def test_field_of_view_crop_drops_borders_ruler_and_text(
    top: int, left: int, right: int, bottom: int, seed: int
) -> None:
    frame, truth = screen_capture(np.random.default_rng(seed), top, left, right, bottom)
    box = field_of_view_box(frame)
    tolerance = 4  # pixels, at a field of view of 180 x 240
    assert all(abs(a - b) <= tolerance for a, b in zip(box, truth, strict=True)), (box, truth)


def test_field_of_view_keeps_dark_tissue_and_text_inside() -> None:
    rng = np.random.default_rng(0)
    frame, (top, bottom, left, _right) = screen_capture(rng, 30, 40, 60, 30)
    inside = Image.fromarray(frame)
    ImageDraw.Draw(inside).text((left + 10, top + 10), "RT UIQ", fill=255)
    box = field_of_view_box(np.asarray(inside))
    assert box[1] >= bottom - 4  # the very dark deepest third (grey 1-7) stays in view
    assert box[0] <= top + 2 and box[2] <= left + 2


def test_field_of_view_of_a_sector_keeps_the_apex() -> None:
    yy, xx = np.mgrid[0:300, 0:400]
    angle = np.degrees(np.arctan2(xx - 200, yy + 20))
    radius = np.hypot(xx - 200, yy + 20)
    fan = (np.abs(angle) < 35) & (radius < 300)
    frame = np.where(fan, speckle_tissue(300, 400, np.random.default_rng(1), dark_bottom=False), 0).astype(np.uint8)
    rows, cols = np.flatnonzero(fan.any(axis=1)), np.flatnonzero(fan.any(axis=0))
    top, bottom, left, right = field_of_view_box(frame)
    assert top <= rows[0] + 6 and bottom >= rows[-1] - 4
    assert abs(left - cols[0]) <= 4 and abs(right - cols[-1] - 1) <= 4


def test_field_of_view_falls_back_to_the_whole_frame() -> None:
    assert field_of_view_box(np.zeros((50, 80), dtype=np.uint8)) == (0, 50, 0, 80)
    sparse = np.zeros((200, 200), dtype=np.uint8)
    sparse[10:20, 10:20] = 200  # a small blob, under 10 % of the frame
    assert field_of_view_box(sparse) == (0, 200, 0, 200)
    with pytest.raises(ConfigError, match="non-empty"):
        field_of_view_box(np.zeros((4, 4, 3), dtype=np.uint8))


def test_busi_frames_are_not_cropped(busi_root: Path) -> None:
    """BUSI is already cropped to the field of view: the crop must not cut dark deep tissue."""
    for name in ("malignant/malignant (82).png", "malignant/malignant (21).png", "normal/normal (10).png"):
        image = np.asarray(load_image(busi_root / name))
        top, bottom, left, right = field_of_view_box(image)
        assert (bottom - top) * (right - left) >= 0.99 * image.size, name


def test_letterbox_keeps_proportions_and_pads_black() -> None:
    image = torch.full((1, 60, 120), 50, dtype=torch.uint8)
    image[:, 20:40, 50:70] = 250  # a 20 x 20 square
    boxed = Letterbox(64)(image)
    assert boxed.shape == (1, 64, 64)
    assert int(boxed[:, :16].max()) == 0 and int(boxed[:, 48:].max()) == 0  # 16 rows of padding each side
    square = boxed[0] > 150
    rows, cols = np.flatnonzero(square.any(dim=1).numpy()), np.flatnonzero(square.any(dim=0).numpy())
    assert abs(len(rows) - len(cols)) <= 1 and 9 <= len(rows) <= 12
    stretched = Preprocessing().apply(image, 64)[0] > 150
    s_rows, s_cols = np.flatnonzero(stretched.any(dim=1).numpy()), np.flatnonzero(stretched.any(dim=0).numpy())
    assert len(s_rows) >= 1.7 * len(s_cols)  # the default squashes the square into a tall rectangle
    mask = tv_tensors.Mask(torch.zeros(1, 60, 120, dtype=torch.uint8))
    _, boxed_mask = Letterbox(64)(tv_tensors.Image(image), mask)
    assert isinstance(boxed_mask, tv_tensors.Mask) and boxed_mask.shape == (1, 64, 64)


def test_percentile_window_undoes_gain_and_contrast() -> None:
    tissue = speckle_tissue(120, 160, np.random.default_rng(3), dark_bottom=False)
    reference = percentile_window(tissue).astype(np.int16)
    darker = (tissue.astype(np.float32) * 0.5).round().astype(np.uint8)
    flatter = (100 + (tissue.astype(np.float32) - 100) * 0.6).clip(0, 255).round().astype(np.uint8)
    for changed in (darker, flatter):
        assert np.abs(percentile_window(changed).astype(np.int16) - reference).mean() < 4
    assert np.abs(darker.astype(np.int16) - tissue).mean() > 20
    flat = np.full((10, 10), 7, dtype=np.uint8)
    assert np.array_equal(percentile_window(flat), flat)


def test_clahe_option_runs_and_changes_the_image() -> None:
    pytest.importorskip("cv2")
    tissue = torch.from_numpy(speckle_tissue(100, 140, np.random.default_rng(4)))[None]
    out = Preprocessing(intensity="clahe").prepare(tissue)
    assert out.shape == tissue.shape and out.dtype == torch.uint8 and not torch.equal(out, tissue)


def test_preprocessing_validates_and_round_trips() -> None:
    assert Preprocessing.from_dict(ROBUST.to_dict()) == ROBUST
    assert Preprocessing.from_dict(None) == Preprocessing() == Preprocessing.from_dict({})
    assert ROBUST.resize_only() == Preprocessing(resize="letterbox")
    with pytest.raises(ConfigError, match="'resize' parameter of Preprocessing"):
        Preprocessing(resize="squash")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="percentiles"):
        Preprocessing(percentiles=(99.0, 1.0))
    with pytest.raises(ConfigError, match="Unknown Preprocessing field"):
        Preprocessing.from_dict({"crop": True, "sharpen": 1})
    config = TrainConfig(preprocessing=ROBUST, augmentation="scanner")
    data = config.to_dict()
    assert data["preprocessing"]["percentiles"] == [1.0, 99.0]
    assert TrainConfig.from_dict(data) == config
    old = {k: v for k, v in data.items() if k not in ("preprocessing", "augmentation")}
    assert TrainConfig.from_dict(old).preprocessing == Preprocessing()
    with pytest.raises(ConfigError, match="augmentation"):
        TrainConfig(augmentation="heavy")  # type: ignore[arg-type]


@pytest.mark.parametrize("preprocessing", [Preprocessing(), ROBUST])
def test_cache_serves_what_the_eval_transform_makes(tmp_path: Path, preprocessing: Preprocessing) -> None:
    frame, _ = screen_capture(np.random.default_rng(5), 20, 30, 50, 10)
    path = tmp_path / "capture.png"
    Image.fromarray(frame).save(path)
    direct = eval_transform(48, MEAN, STD, preprocessing)(TF.pil_to_tensor(load_image(path)))
    cache = ImageCache(48, directory=tmp_path / "cache", preprocessing=preprocessing)
    cached = eval_transform(48, MEAN, STD, preprocessing.resize_only())(cache.get(path))
    assert torch.equal(direct, cached)
    default_name = ImageCache(48).entry_name(b"x")
    assert (cache.entry_name(b"x") == default_name) == (preprocessing == Preprocessing())


def lesion_cells(mask: np.ndarray, cell: int = 8) -> torch.Tensor:
    """Label each lesion pixel with the id of its cell on a coarse grid (0: background)."""
    height, width = mask.shape
    ids = (np.arange(height)[:, None] // cell) * 1000 + np.arange(width)[None, :] // cell + 1
    return torch.from_numpy(np.where(mask, ids, 0).astype(np.int64))[None]


@pytest.mark.busi
def test_scanner_geometry_keeps_lesions_in_view(busi_root: Path) -> None:
    data = UltrasoundDataset.from_folder(busi_root)
    chosen = [i for i, s in enumerate(data.samples) if s.mask_paths][::25][:16]
    size = 96
    kept = []
    for index in chosen:
        image = data.load_image(index).resize((240, 180))
        mask = load_mask(data.samples[index].mask_paths, data.load_image(index).size)
        mask = np.asarray(Image.fromarray(mask).resize((240, 180), Image.Resampling.NEAREST))
        reference = Letterbox(size)(tv_tensors.Mask(lesion_cells(mask)))
        cells = set(reference.unique().tolist()) - {0}
        geometry = v2.Compose(scanner_geometry(size, Letterbox(size)))
        for seed in range(5):
            torch.manual_seed(seed)
            out_image, out_mask = geometry(
                tv_tensors.Image(TF.pil_to_tensor(image)), tv_tensors.Mask(lesion_cells(mask))
            )
            assert out_image.shape == (1, size, size) and out_mask.shape == (1, size, size)
            kept.append(len(cells & set(out_mask.unique().tolist())) / len(cells))
    kept_array = np.array(kept)
    assert kept_array.mean() >= 0.9, kept_array.mean()
    assert np.quantile(kept_array, 0.05) >= 0.75, np.sort(kept_array)[:5]


def test_depth_crop_cuts_only_the_deepest_signal_rows() -> None:
    image = torch.zeros(1, 100, 80, dtype=torch.uint8)
    image[:, 20:80] = 100  # letterboxed: signal rows 20-79
    torch.manual_seed(0)
    out = RandomDepthCrop(keep=(0.5, 0.5), p=1.0)(image)
    assert out.shape == (1, 50, 80) and int(out[:, 20:].min()) == 100
    with pytest.raises(ConfigError, match="keep"):
        RandomDepthCrop(keep=(0.9, 0.5))


def test_appearance_transforms_change_images_but_not_masks() -> None:
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.rand(1, 32, 32))
    mask = tv_tensors.Mask(torch.randint(0, 3, (1, 32, 32)))
    for transform in (RandomResolution((0.3, 0.3), p=1.0), RandomGamma((2.0, 2.0)), SpeckleNoise((0.3, 0.3), p=1.0)):
        out_image, out_mask = transform(image, mask)
        assert torch.equal(out_mask, mask)
        assert not torch.allclose(out_image, image)
        assert float(out_image.min()) >= 0.0 and float(out_image.max()) <= 1.0
    gamma_image, _ = RandomGamma((2.0, 2.0))(image, mask)
    assert torch.allclose(gamma_image, image**2, atol=1e-6)
    uint8 = torch.randint(0, 256, (1, 40, 56), dtype=torch.uint8)
    for augmentation in ("default", "scanner"):
        out = train_transform(40, MEAN, STD, ROBUST, augmentation)(uint8)
        assert out.shape == (3, 40, 40) and out.dtype == torch.float32
    with pytest.raises(ConfigError, match="augmentation"):
        train_transform(40, MEAN, STD, ROBUST, "heavy")  # type: ignore[arg-type]


@pytest.mark.slow
def test_predictor_applies_the_checkpoint_preprocessing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for label, name in enumerate(("benign", "malignant", "normal")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            frame, _ = screen_capture(np.random.default_rng(10 * label + i), 12, 16, 24, 8, fov=(40, 56))
            frame = frame.copy()
            frame[20:30, 20 + 8 * label : 30 + 8 * label] = 250
            Image.fromarray(frame).save(root / name / f"{name} ({i}).png")
    data = UltrasoundDataset.from_folder(root)
    config = TrainConfig(
        model="resnet18",
        pretrained="none",
        image_size=32,
        epochs=1,
        batch_size=8,
        device="cpu",
        progress=False,
        preprocessing=ROBUST,
        augmentation="scanner",
    )
    trainer = Trainer(config, tmp_path / "run")
    trainer.fit(data.subset(range(0, 18, 2)), data.subset(range(1, 18, 2)))
    checkpoint = load_checkpoint(trainer.best_checkpoint_path)
    assert checkpoint.preprocessing == ROBUST.to_dict()
    # the contract is built once by the Trainer and is what the checkpoint and the Predictor carry
    assert checkpoint.input_contract == trainer.input_contract == config.input_contract(checkpoint.model_info)
    predictor = Predictor.from_checkpoint(trainer.best_checkpoint_path, device="cpu")
    assert predictor.preprocessing == ROBUST and predictor.input_contract == checkpoint.input_contract

    paths = data.paths[:4]
    model = checkpoint.build_model()
    manual = torch.stack(
        [
            eval_transform(32, checkpoint.model_info.mean, checkpoint.model_info.std, ROBUST)(
                TF.pil_to_tensor(load_image(p))
            )
            for p in paths
        ]
    )
    with torch.inference_mode():
        expected = torch.softmax(model(manual).double() / checkpoint.temperature, dim=1).numpy()
    np.testing.assert_allclose(predictor.predict_proba(paths), expected, rtol=1e-5, atol=1e-6)
    plain = eval_transform(32, checkpoint.model_info.mean, checkpoint.model_info.std)(
        TF.pil_to_tensor(load_image(paths[0]))
    )
    assert not torch.allclose(predictor.preprocess(paths[0]), plain)  # the preprocessing really differs

    # An old checkpoint (no preprocessing recorded) loads with the old behaviour.
    checkpoint.preprocessing = {}
    old = Predictor.from_loaded(checkpoint, device="cpu")
    assert old.preprocessing == Preprocessing()
    assert torch.equal(old.preprocess(paths[0]), plain)


def test_train_command_line_sets_the_preprocessing() -> None:
    from breastus.cli._main import build_parser
    from breastus.cli._train import config_from_args

    flags = ["--fov-crop", "--resize", "letterbox", "--intensity", "percentile", "--augmentation", "scanner"]
    args = build_parser().parse_args(["train", "data", "--out", "run", *flags])
    config = config_from_args(args)
    assert config.preprocessing == ROBUST and config.augmentation == "scanner"
    plain = config_from_args(build_parser().parse_args(["train", "data", "--out", "run"]))
    assert plain.preprocessing == Preprocessing() and plain.augmentation == "default"
