"""Lesion-aware prediction: Prediction lesion fields, the mask back at input resolution, the decision rule,
segment-then-classify, export of both outputs (issue 13, parts 3 and 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from export_helpers import export_with_parity
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from breastus._errors import ConfigError
from breastus.models._info import ModelInfo
from breastus.prediction import Predictor
from breastus.prediction._lesion import fuse_crop_probabilities, input_geometry, mask_to_input
from breastus.transforms._preprocess import Preprocessing

NAMES = ("benign", "malignant", "normal")
MULTITASK = "segmentation+classification"
INFO = ModelInfo("unet/resnet18", "smp", "resnet18", 3, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), task=MULTITASK)
CLASSIFIER_INFO = ModelInfo("torchvision/resnet18", "torchvision", "resnet18", 2, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


class BrightIsLesion(nn.Module):
    """A stand-in multi-task model: bright pixels (> 0.5 after scaling) are lesion; benign is favoured."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = 40.0 * (x[:, :1] - 0.5)
        logits = torch.tensor([[1.0, 0.5, 0.8]]).expand(x.shape[0], 3)
        return mask, logits + 0.0 * x.mean()


class AlwaysMalignant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 4.0]]).expand(x.shape[0], 2) + 0.0 * x.mean()


def frame(height: int = 90, width: int = 130, square: tuple[int, int] | None = (30, 40), side: int = 24) -> np.ndarray:
    """A frame with black side bars, a dim field of view and (optionally) one bright square lesion."""
    image = np.zeros((height, width), dtype=np.uint8)
    image[:, 15 : width - 15] = 60  # the field of view; the bars are 0
    if square is not None:
        top, left = square
        image[top : top + side, left : left + side] = 250
    return image


def truth(image: np.ndarray) -> np.ndarray:
    return image > 200


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def predictor(preprocessing: Preprocessing | None = None, **kwargs: object) -> Predictor:
    return Predictor(BrightIsLesion(), INFO, NAMES, 64, device="cpu", preprocessing=preprocessing, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "preprocessing",
    [
        Preprocessing(),
        Preprocessing(resize="letterbox"),
        Preprocessing(crop=True, resize="letterbox"),
        Preprocessing(crop=True),
    ],
    ids=["stretch", "letterbox", "crop+letterbox", "crop+stretch"],
)
def test_mask_comes_back_at_input_resolution_and_moves_with_the_image(preprocessing: Preprocessing) -> None:
    model = predictor(preprocessing)
    for square in [(10, 20), (30, 40), (60, 95)]:
        image = frame(square=square)
        result = model.predict(image)
        assert result.mask is not None and result.mask.shape == image.shape and result.mask.dtype == bool
        assert iou(result.mask, truth(image)) > 0.8, (square, iou(result.mask, truth(image)))
        x0, y0, x1, y1 = result.lesion_box  # type: ignore[misc]
        assert abs(x0 - square[1]) <= 2 and abs(y0 - square[0]) <= 2
        assert abs(x1 - (square[1] + 24)) <= 2 and abs(y1 - (square[0] + 24)) <= 2
        assert result.lesion_area_px == pytest.approx(24 * 24, rel=0.15)
        assert result.lesion_probability == pytest.approx(1.0, abs=1e-3)


def test_geometry_letterbox_content_box_and_inverse() -> None:
    geometry = input_geometry(40, 80, (0, 40, 0, 80), Preprocessing(resize="letterbox"), 32)
    assert geometry.content == (0, 8, 32, 24)  # 80 -> 32 wide, 40 -> 16 high, 8 px bars above and below
    model_map = np.zeros((32, 32), dtype=np.float32)
    model_map[8:24, 16:32] = 1.0  # the right half of the content
    back = mask_to_input(model_map, geometry)
    assert back.shape == (40, 80)
    assert back[:, 42:].min() > 0.99 and back[:, :38].max() < 0.01


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["stretch", "letterbox"]), st.sampled_from([32, 64]))
def test_letterbox_bars_never_leak_into_the_mask(height: int, width: int, resize: str, size: int) -> None:
    geometry = input_geometry(height, width, (0, height, 0, width), Preprocessing(resize=resize), size)  # type: ignore[arg-type]
    x0, y0, x1, y1 = geometry.content
    model_map = np.zeros((size, size), dtype=np.float32)
    model_map[y0:y1, x0:x1] = 1.0  # lesion exactly where the image is, bars empty
    back = mask_to_input(model_map, geometry)
    assert back.shape == (height, width) and back.min() > 0.999
    if resize == "letterbox":  # the content keeps the image's proportions (to a pixel)
        assert max(x1 - x0, y1 - y0) == size
        assert abs((x1 - x0) * height - (y1 - y0) * width) <= max(height, width)


def test_decision_rule_normal_iff_no_lesion_and_empty_mask() -> None:
    model = predictor(lesion_threshold=0.5)
    assert model.decision == "lesion"
    normal, lesion = model.predict([frame(square=None), frame()])
    assert normal.label == "normal" and normal.lesion_probability is not None and normal.lesion_probability < 0.5
    assert normal.mask is not None and not normal.mask.any() and normal.lesion_box is None
    assert normal.lesion_area_px == 0
    # argmax of the head would be benign for both; the lesion rule says normal for the first only
    assert lesion.label == "benign"
    argmax = predictor(lesion_threshold=0.5, decision="argmax")
    assert [p.label for p in argmax.predict([frame(square=None), frame()])] == ["benign", "benign"]
    assert predictor().decision == "argmax"  # no calibrated threshold


def test_decision_errors() -> None:
    with pytest.raises(ConfigError, match="needs a calibrated lesion_threshold"):
        predictor(decision="lesion")
    with pytest.raises(ConfigError, match="needs a multi-task model"):
        Predictor(
            AlwaysMalignant(), CLASSIFIER_INFO, ("benign", "malignant"), 32, decision="lesion", lesion_threshold=0.5
        )
    with pytest.raises(ConfigError, match="decision must be one of"):
        predictor(decision="vote")


def test_pixel_spacing_gives_area_in_mm2_and_to_dict_has_lesion_scalars() -> None:
    model = predictor()
    result = model.predict(frame(), pixel_spacing_mm=(0.1, 0.2))
    assert result.lesion_area_px is not None
    assert result.lesion_area_mm2 == pytest.approx(result.lesion_area_px * 0.02)
    row = result.to_dict()
    assert set(row) >= {"lesion_probability", "lesion_box", "lesion_area_px", "lesion_area_mm2"}
    assert "mask" not in row and "mask" not in repr(result)
    per_image = model.predict([frame(), frame()], pixel_spacing_mm=[(0.1, 0.1), None])
    assert per_image[0].lesion_area_mm2 is not None and per_image[1].lesion_area_mm2 is None
    with pytest.raises(ConfigError, match="pixel_spacing_mm"):
        model.predict([frame(), frame()], pixel_spacing_mm=[(0.1, 0.1)])
    with pytest.raises(ConfigError, match="finite and > 0"):
        model.predict(frame(), pixel_spacing_mm=(0.0, 0.1))


def test_classifier_predictions_have_no_lesion_fields() -> None:
    model = Predictor(AlwaysMalignant(), CLASSIFIER_INFO, ("benign", "malignant"), 32, device="cpu")
    result = model.predict(frame())
    assert result.label == "malignant" and result.lesion_probability is None and result.mask is None
    assert set(result.to_dict()) == {"path", "label", "probabilities"}


def test_predict_folder_and_proba_and_tta_for_multitask(tmp_path: Path) -> None:
    for i, square in enumerate([(10, 20), None, (40, 60)]):
        Image.fromarray(frame(square=square)).save(tmp_path / f"img{i}.png")
    model = predictor(lesion_threshold=0.5, batch_size=2)
    results = list(model.predict_folder(tmp_path, pixel_spacing_mm=(0.5, 0.5)))
    assert [Path(p.path).name for p in results] == ["img0.png", "img1.png", "img2.png"]  # type: ignore[arg-type]
    assert [p.label for p in results] == ["benign", "normal", "benign"]
    assert results[0].lesion_area_mm2 == pytest.approx(results[0].lesion_area_px * 0.25)  # type: ignore[operator]
    proba = model.predict_proba([tmp_path / "img0.png", tmp_path / "img1.png"])
    assert proba.shape == (2, 3) and np.allclose(proba.sum(axis=1), 1)
    mirrored = predictor(lesion_threshold=0.5, tta=True).predict(frame())
    assert mirrored.mask is not None and iou(mirrored.mask, truth(frame())) > 0.8


def test_segment_then_classify_fuses_the_crop_probabilities() -> None:
    whole = predictor(lesion_threshold=0.5)
    crop_classifier = Predictor(AlwaysMalignant(), CLASSIFIER_INFO, ("benign", "malignant"), 32, device="cpu")
    fused = whole.with_crop_classifier(crop_classifier)
    plain_lesion, plain_normal = whole.predict([frame(), frame(square=None)])
    lesion, normal = fused.predict([frame(), frame(square=None)])
    crop_p = torch.softmax(torch.tensor([0.0, 4.0]).double(), 0).numpy()
    expected = fuse_crop_probabilities(
        np.array([plain_lesion.probabilities[c] for c in NAMES]), crop_p, NAMES, ("benign", "malignant")
    )
    assert [lesion.probabilities[c] for c in NAMES] == pytest.approx(list(expected))
    assert lesion.label == "malignant" and plain_lesion.label == "benign"
    assert normal.probabilities == pytest.approx(plain_normal.probabilities) and normal.label == "normal"
    assert sum(lesion.probabilities.values()) == pytest.approx(1.0)
    assert whole.crop_classifier is None  # the original is unchanged
    with pytest.raises(ConfigError, match="needs a multi-task model"):
        crop_classifier.with_crop_classifier(crop_classifier)
    odd = Predictor(AlwaysMalignant(), CLASSIFIER_INFO, ("cyst", "malignant"), 32, device="cpu")
    with pytest.raises(ConfigError, match="include \\['cyst'\\]"):
        whole.with_crop_classifier(odd)


def test_fusion_is_a_weighted_mean_that_sums_to_one() -> None:
    whole = np.array([0.5, 0.3, 0.2])
    assert fuse_crop_probabilities(whole, np.array([0.2, 0.8]), NAMES, NAMES[:2], 0.0) == pytest.approx(whole)
    full = fuse_crop_probabilities(whole, np.array([0.1, 0.1, 0.8]), NAMES, NAMES, 1.0)
    assert full == pytest.approx([0.1, 0.1, 0.8])
    assert fuse_crop_probabilities(whole, np.array([0.2, 0.8]), NAMES, NAMES[:2]).sum() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def unet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real smp U-Net (ResNet-18 encoder) at 64 px with a calibrated lesion threshold."""
    from breastus.models import Checkpoint, build_model, save_checkpoint

    torch.manual_seed(0)
    model, info = build_model("unet/resnet18", 3, None)
    assert info.task == MULTITASK
    with torch.no_grad():
        head: Any = model.classification_head
        head[3].weight.mul_(30)  # confident, non-uniform class probabilities
    checkpoint = Checkpoint(info, NAMES, 64, model.state_dict(), temperature=1.3, lesion_threshold=0.45)
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("unet") / "best.pt")


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_export_carries_both_outputs_with_parity(format: str, unet_checkpoint: Path, tmp_path: Path) -> None:
    out, meta = export_with_parity(unet_checkpoint, tmp_path / f"unet.{format}", format)
    assert meta.model_info.task == MULTITASK and meta.lesion_threshold == pytest.approx(0.45)
    # the exported predictor gives the same lesion fields as the checkpoint
    image = frame()
    want = Predictor.from_checkpoint(unet_checkpoint, device="cpu").predict(image, pixel_spacing_mm=(0.1, 0.1))
    got = Predictor.from_exported(out, device="cpu").predict(image, pixel_spacing_mm=(0.1, 0.1))
    assert got.label == want.label and want.lesion_probability is not None
    assert got.lesion_probability == pytest.approx(want.lesion_probability, abs=1e-4)
    assert got.probabilities == pytest.approx(want.probabilities, abs=1e-4)
    assert got.mask is not None and want.mask is not None and (got.mask != want.mask).mean() < 1e-3


def test_real_unet_prediction_shapes_and_onnxruntime_backend(unet_checkpoint: Path) -> None:
    model = Predictor.from_checkpoint(unet_checkpoint, device="cpu")
    assert model.decision == "lesion" and model.lesion_threshold == pytest.approx(0.45)
    image = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    result = model.predict(image)
    assert result.mask is not None and result.mask.shape == (50, 70)
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert (result.label == "normal") == (result.lesion_probability < 0.45)  # type: ignore[operator]
    runtime = Predictor.from_checkpoint(unet_checkpoint, device="cpu", backend="onnxruntime").predict(image)
    assert runtime.lesion_probability == pytest.approx(result.lesion_probability, abs=1e-4)
    assert Predictor.from_checkpoint(unet_checkpoint, device="cpu", decision="argmax").decision == "argmax"
