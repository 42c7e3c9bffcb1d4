"""Heatmaps (Predictor.explain), target layers, overlays, localisation scores and `breastus explain`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from breastus import ConfigError, DataError, ModelInfo, Predictor, UltrasoundDataset
from breastus.cli import main
from breastus.explain import (
    CAM_METHODS,
    centred_gaussian,
    class_activation_maps,
    evaluate_localisation,
    find_target_layer,
    mass_inside,
    pointing_game_hit,
    save_overlay,
)
from breastus.models import Checkpoint, build_model, save_checkpoint
from breastus.transforms import Preprocessing

pytest.importorskip("pytorch_grad_cam")


class BlobNet(nn.Module):
    """Two hand-set convolutions that respond to bright pixels; logit 0 rises with brightness, logit 1 falls."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 2)
        with torch.no_grad():
            first, second = self.features[0], self.features[2]
            first.weight.fill_(1 / 27)
            first.bias.fill_(-0.2)
            second.weight.fill_(1 / 36)
            second.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0] * 8, [-1.0] * 8]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def blob_predictor(image_size: int = 64) -> Predictor:
    info = ModelInfo("custom/blobnet", "timm", "blobnet", 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return Predictor(BlobNet(), info, ("blob", "plain"), image_size, device="cpu")


def blob_image(height: int, width: int, row: int, col: int, radius: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, size=(height, width)).astype(np.uint8)
    rows, cols = np.ogrid[:height, :width]
    image[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = 250
    return image


@pytest.fixture(scope="module")
def resnet_predictor() -> Predictor:
    torch.manual_seed(0)
    model, info = build_model("resnet18", 3)
    return Predictor(model.eval(), info, ("benign", "malignant", "normal"), 64, device="cpu")


@pytest.mark.parametrize("method", CAM_METHODS)
@pytest.mark.parametrize("size", [(40, 48), (97, 131), (160, 90)])
def test_heatmap_has_input_size_and_unit_range(method: str, size: tuple[int, int]) -> None:
    height, width = size
    heatmap = blob_predictor().explain(blob_image(height, width, height // 3, width // 2, 6), method=method)
    assert heatmap.shape == (height, width)
    assert heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert heatmap.max() == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_resnet_heatmap_size_for_every_input_kind(resnet_predictor: Predictor, method: str, tmp_path: Path) -> None:
    gray = np.random.default_rng(1).integers(0, 255, size=(70, 90), dtype=np.uint8)
    path = tmp_path / "scan.png"
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(path)
    inputs = [gray, np.stack([gray] * 3, axis=-1), Image.fromarray(gray), str(path), path]
    heatmaps = resnet_predictor.explain(inputs, method=method)
    assert [h.shape for h in heatmaps] == [(70, 90)] * len(inputs)
    for heatmap in heatmaps:
        assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
        np.testing.assert_allclose(heatmap, heatmaps[0], atol=1e-5)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(8, 180),
    width=st.integers(8, 180),
    seed=st.integers(0, 2**16),
    method=st.sampled_from(["gradcam", "gradcam++"]),
)
def test_heatmap_shape_property(height: int, width: int, seed: int, method: str) -> None:
    image = np.random.default_rng(seed).integers(0, 255, size=(height, width), dtype=np.uint8)
    heatmap = blob_predictor(32).explain(image, method=method)
    assert heatmap.shape == (height, width)
    assert np.isfinite(heatmap).all() and heatmap.min() >= 0.0 and heatmap.max() <= 1.0


@pytest.mark.parametrize("method", CAM_METHODS)
@pytest.mark.parametrize(("row", "col"), [(20, 25), (70, 100), (45, 60)])
def test_maximum_falls_on_the_bright_blob(method: str, row: int, col: int) -> None:
    height, width, radius = 90, 120, 9
    image = blob_image(height, width, row, col, radius, seed=row)
    heatmap = blob_predictor().explain(image, target="blob", method=method)
    peak_row, peak_col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    assert (peak_row - row) ** 2 + (peak_col - col) ** 2 <= radius**2
    mask = np.zeros_like(image, dtype=bool)
    rr, cc = np.ogrid[:height, :width]
    mask[(rr - row) ** 2 + (cc - col) ** 2 <= radius**2] = True
    assert pointing_game_hit(heatmap, mask)
    assert mass_inside(heatmap, mask) > 5 * mask.mean()


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_heatmap_follows_field_of_view_crop_and_letterbox(resize: str) -> None:
    # A wide black frame around a 60 x 150 field of view holding one blob: the heatmap must come back on
    # the frame's own pixel grid, zero outside the field of view, with its peak on the blob.
    frame = np.zeros((100, 220), dtype=np.uint8)
    frame[20:80, 40:190] = np.maximum(blob_image(60, 150, 30, 110, 8, seed=5), 10)
    info = ModelInfo("custom/blobnet", "timm", "blobnet", 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    predictor = Predictor(
        BlobNet(), info, ("blob", "plain"), 64, device="cpu", preprocessing=Preprocessing(crop=True, resize=resize)
    )
    heatmap = predictor.explain(frame, target="blob")
    assert heatmap.shape == frame.shape
    assert heatmap[:20].max() == 0 and heatmap[80:].max() == 0 and heatmap[:, :40].max() == 0
    peak_row, peak_col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    assert (peak_row - 50) ** 2 + (peak_col - 150) ** 2 <= 8**2


def test_explicit_and_automatic_layers_agree_on_resnets(resnet_predictor: Predictor) -> None:
    image = np.random.default_rng(2).integers(0, 255, size=(80, 72), dtype=np.uint8)
    automatic = resnet_predictor.explain(image, target="malignant")
    explicit = resnet_predictor.explain(image, target="malignant", layer="layer4")
    module = resnet_predictor.explain(image, target="malignant", layer=resnet_predictor.model.layer4)
    np.testing.assert_array_equal(automatic, explicit)
    np.testing.assert_array_equal(automatic, module)
    earlier = resnet_predictor.explain(image, target="malignant", layer="layer3")
    assert earlier.shape == automatic.shape and not np.array_equal(earlier, automatic)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet18", "layer4"), ("timm/resnet18", "layer4"), ("tf_efficientnet_lite0", "bn2"), ("efficientnet_b0", "bn2")],
)
def test_automatic_layer_per_family(name: str, expected: str) -> None:
    model, _ = build_model(name, 3)
    chosen, module = find_target_layer(model)
    assert chosen == expected and module is model.get_submodule(expected)


def test_automatic_layer_of_other_models_is_last_feature_map() -> None:
    assert find_target_layer(BlobNet())[0] == "features"
    model, _ = build_model("mobilenetv3_small_050", 3)  # conv_head runs after pooling there
    name, _ = find_target_layer(model)
    assert name.startswith("blocks")


def test_timm_efficientnet_explicit_layer_matches_automatic() -> None:
    torch.manual_seed(0)
    model, _ = build_model("tf_efficientnet_lite0", 3)
    batch = torch.randn(2, 3, 64, 64)
    automatic = class_activation_maps(model, batch, [0, 2])
    explicit = class_activation_maps(model, batch, [0, 2], layer="bn2")
    for a, b in zip(automatic, explicit, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unknown_layer_lists_candidates(resnet_predictor: Predictor) -> None:
    with pytest.raises(ConfigError, match=r"no layer 'layer5'.*layer4"):
        resnet_predictor.explain(np.zeros((32, 32), np.uint8), layer="layer5")


def test_bad_method_and_target_are_config_errors(resnet_predictor: Predictor) -> None:
    image = np.zeros((32, 32), np.uint8)
    with pytest.raises(ConfigError, match="gradcam"):
        resnet_predictor.explain(image, method="gradcam+")
    with pytest.raises(ConfigError, match="benign"):
        resnet_predictor.explain(image, target="cyst")
    with pytest.raises(ConfigError, match="index"):
        resnet_predictor.explain(image, target=3)
    with pytest.raises(ConfigError, match="one class per image"):
        resnet_predictor.explain([image, image], target=["benign"])


def test_batch_with_one_target_per_image() -> None:
    predictor = blob_predictor()
    images = [blob_image(60, 80, 20, 20, 7), blob_image(50, 50, 30, 30, 6), blob_image(90, 40, 60, 20, 5)]
    targets: list[int | str] = ["blob", "plain", 0]
    batch = predictor.explain(images, target=targets)
    singles = [predictor.explain(image, target=t) for image, t in zip(images, targets, strict=True)]
    for together, alone in zip(batch, singles, strict=True):
        np.testing.assert_allclose(together, alone, atol=1e-5)
    assert not np.allclose(batch[0], predictor.explain(images[0], target="plain"))


def test_default_target_is_the_predicted_class(resnet_predictor: Predictor) -> None:
    images = [np.random.default_rng(i).integers(0, 255, size=(50, 60), dtype=np.uint8) for i in range(3)]
    predicted = [p.label for p in resnet_predictor.predict(images)]
    np.testing.assert_array_equal(
        np.stack(resnet_predictor.explain(images)), np.stack(resnet_predictor.explain(images, target=predicted))
    )


def test_pointing_game_and_mass_inside() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:4, 2:4] = True
    heat = np.zeros((10, 10))
    heat[6, 6] = 1.0
    assert not pointing_game_hit(heat, mask)
    assert pointing_game_hit(heat, mask, tolerance=4.3)  # distance to (3, 3) is sqrt(18) = 4.24
    assert not pointing_game_hit(heat, mask, tolerance=4.2)
    assert mass_inside(heat, mask) == 0.0
    assert mass_inside(np.ones((10, 10)), mask) == pytest.approx(0.04)
    assert mass_inside(np.zeros((10, 10)), mask) == pytest.approx(0.04)
    with pytest.raises(DataError, match="empty"):
        pointing_game_hit(heat, np.zeros((10, 10)))
    with pytest.raises(DataError, match="shape"):
        mass_inside(heat, mask[:5])


def test_centred_gaussian_peaks_in_the_centre() -> None:
    bump = centred_gaussian((41, 60), sigma=0.25)
    assert bump.shape == (41, 60) and bump.max() == pytest.approx(1.0)
    assert np.unravel_index(int(np.argmax(bump)), bump.shape) == (20, 29)
    assert bump[20, 29 + 15] == pytest.approx(np.exp(-0.5 * (14.5 / 15) ** 2 + 0.5 * (0.5 / 15) ** 2), rel=1e-4)
    with pytest.raises(ConfigError):
        centred_gaussian((10, 10), sigma=0)


def test_evaluate_localisation_against_baselines() -> None:
    rng = np.random.default_rng(0)
    heatmaps, masks, labels = [], [], []
    for i in range(40):
        mask = np.zeros((60, 80), dtype=bool)
        row, col = rng.integers(5, 50), rng.integers(5, 70)
        mask[row : row + 8, col : col + 8] = True
        heat = rng.random((60, 80)) * 0.5
        heat[row + 3, col + 3] = 1.0 if i % 4 else 0.1  # three in four point inside
        heatmaps.append(heat)
        masks.append(mask)
        labels.append("benign" if i % 2 else "malignant")
    report = evaluate_localisation(heatmaps, masks, labels, method="toy", seed=3)
    assert report.method.pointing_game == pytest.approx(0.75)
    assert report.method.hits == 30 and report.method.n_images == 40
    low, high = report.method.pointing_game_ci
    assert low < 0.75 < high
    assert report.mask_share == pytest.approx(64 / 4800)
    assert report.random.pointing_game < 0.2 and abs(report.random.mass_inside - report.mask_share) < 0.01
    assert set(report.method.per_class) == {"benign", "malignant"}
    assert report.margin_over_gaussian == pytest.approx(100 * (0.75 - report.gaussian.pointing_game))
    assert "toy" in report.summary() and "centred gaussian" in report.summary()
    assert json.loads(json.dumps(report.to_dict()))["scores"][0]["hits"] == 30
    again = evaluate_localisation(heatmaps, masks, labels, method="toy", seed=3)
    assert again.random.image_hits == report.random.image_hits
    with pytest.raises(DataError):
        evaluate_localisation(heatmaps[:2], masks[:3])


def test_save_overlay_writes_png(tmp_path: Path) -> None:
    image = blob_image(120, 160, 60, 80, 10)
    heat = centred_gaussian((120, 160))
    mask = np.zeros((120, 160), dtype=bool)
    mask[50:70, 70:90] = True
    path = save_overlay(
        tmp_path / "sub" / "o.png", image, heat, label="benign", probability=0.9, truth="malignant", mask=mask, dpi=50
    )
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width == 200
    with pytest.raises(DataError, match="shape"):
        save_overlay(tmp_path / "bad.png", image, heat[:10])


def _checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model, info = build_model("resnet18", 3)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    checkpoint = Checkpoint(info, ("benign", "malignant", "normal"), 64, state)
    return save_checkpoint(checkpoint, tmp_path / "best.pt")


def test_cli_explain_writes_overlays(tmp_path: Path, tiny_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = _checkpoint(tmp_path)
    one = tiny_folder / "benign" / "benign (1).png"
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(blob_image(40, 50, 20, 25, 6)).save(folder / name)
    out = tmp_path / "out"
    argv = ["explain", str(checkpoint), str(one), str(folder), "--out", str(out), "--dpi", "40"]
    assert main([*argv, "--method", "layercam", "--target", "normal"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["a_layercam.png", "b_layercam.png", "benign (1)_layercam.png"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(str(one))
    assert main(["explain", str(checkpoint), str(one), "--out", str(out), "--layer", "layer9"]) == 2
    assert "layer4" in capsys.readouterr().err


def test_cli_explain_masks_reports_localisation(tmp_path: Path, tiny_folder: Path) -> None:
    blank = tiny_folder / "normal" / "normal (9).png"
    Image.fromarray(np.full((40, 48), 30, np.uint8)).save(blank)
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(tiny_folder / "normal" / "normal (9)_mask.png")
    checkpoint = _checkpoint(tmp_path)
    out = tmp_path / "loc"
    argv = ["explain", str(checkpoint), str(tiny_folder), "--out", str(out), "--masks", "--method", "gradcam++"]
    assert main([*argv, "--target", "true", "--no-overlays"]) == 0
    report = json.loads((out / "localisation.json").read_text())
    assert report["n_images"] == 30 and report["skipped_without_lesion"] == 1
    assert report["layer"] == "layer4" and report["method"] == "gradcam++" and report["target"] == "true"
    assert [s["source"] for s in report["scores"]] == ["gradcam++", "random", "centred gaussian"]
    assert len((out / "localisation.csv").read_text().strip().splitlines()) == 31
    assert not (out / "overlays").exists()

    dataset = UltrasoundDataset.from_folder(tiny_folder)
    split = {"train": [], "val": [], "test": [0, 12, 30], "paths": [str(p) for p in dataset.paths]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    assert main([*argv, "--split", str(tmp_path / "split.json"), "--dpi", "40"]) == 0
    report = json.loads((out / "localisation.json").read_text())
    assert report["n_images"] == 2 and report["skipped_without_lesion"] == 1  # index 30 is the blank normal image
    assert len(list((out / "overlays").rglob("*.png"))) == 2
    split["paths"][12] = "elsewhere.png"
    (tmp_path / "split.json").write_text(json.dumps(split))
    assert main([*argv, "--split", str(tmp_path / "split.json")]) == 2
