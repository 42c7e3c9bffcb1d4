"""The lighter multi-task families ``unet-lite/`` and ``fpn-lite/``: shapes, names, checkpoints, export, predictor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from export_helpers import export_with_parity

from breastus import CheckpointError, ConfigError, create_model, list_models
from breastus.models import Checkpoint, build_model, load_checkpoint, save_checkpoint, split_outputs
from breastus.models._segmentation import SEGMENTATION_FAMILIES, is_segmentation_name, parse_segmentation_name
from breastus.prediction import Predictor
from breastus.training import TrainConfig

NAMES = ("benign", "malignant", "normal")
LIGHT = ("unet-lite", "fpn-lite")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # oversubscribed intra-op threads on a shared 2-core machine are much slower than one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", LIGHT)
@pytest.mark.parametrize("encoder", ["resnet18", "tf_efficientnet_lite0"])
def test_forward_shapes_and_lighter_decoder(family: str, encoder: str) -> None:
    model, info = build_model(f"{family}/{encoder}", 3)
    assert info.name == f"{family}/{encoder}" and info.source == "smp" and info.is_multitask
    assert info.architecture == encoder
    model.eval()
    with torch.inference_mode():
        mask_logits, class_logits = split_outputs(model(torch.randn(2, 3, 64, 96)))
    assert mask_logits is not None and tuple(mask_logits.shape) == (2, 1, 64, 96)
    assert tuple(class_logits.shape) == (2, 3)
    unet, _ = build_model(f"unet/{encoder}", 3)
    assert parameters(model.decoder) < parameters(unet.decoder) / 4
    assert parameters(model.encoder) == parameters(unet.encoder)  # same encoder, same classification head
    assert parameters(model.classification_head) == parameters(unet.classification_head)


def test_family_fixes_the_architecture() -> None:
    fpn, _ = build_model("fpn-lite/resnet18", 3)
    lite, _ = build_model("unet-lite/resnet18", 3)
    unet, _ = build_model("unet/resnet18", 3)
    assert type(fpn).__name__ == "FPN" and type(lite).__name__ == "Unet" and type(unet).__name__ == "Unet"
    fpn_decoder: Any = fpn.decoder
    assert fpn_decoder.p5.out_channels == 64 and fpn_decoder.out_channels == 32
    lite_blocks: Any = lite.decoder.blocks
    assert [b.conv2[0].out_channels for b in lite_blocks] == [64, 32, 16, 16, 8]
    unet_blocks: Any = unet.decoder.blocks
    assert [b.conv2[0].out_channels for b in unet_blocks] == [256, 128, 64, 32, 16]  # unet/ unchanged


@pytest.mark.parametrize("family", LIGHT)
def test_checkpoint_round_trip_gives_identical_outputs(family: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, info = build_model(f"{family}/resnet18", 3)
    checkpoint = Checkpoint(info, NAMES, 64, model.state_dict(), lesion_threshold=0.4)
    loaded = load_checkpoint(save_checkpoint(checkpoint, tmp_path / "best.pt"))
    assert loaded.model_info == info and loaded.lesion_threshold == 0.4
    rebuilt = loaded.build_model().eval()
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        for a, b in zip(model(x), rebuilt(x), strict=True):
            assert torch.equal(a, b)


def test_whole_model_file_of_another_family_does_not_load(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source, _ = build_model("fpn-lite/resnet18", 3)
    path = tmp_path / "fpn.pth"
    torch.save(source.state_dict(), path)
    same, _ = build_model("fpn-lite/resnet18", 2, pretrained=path)  # another head size: skipped
    assert torch.equal(same.decoder.state_dict()["p5.weight"], source.decoder.state_dict()["p5.weight"])
    with pytest.raises(CheckpointError):
        build_model("unet-lite/resnet18", 3, pretrained=path)


def test_names_and_parse_errors() -> None:
    assert SEGMENTATION_FAMILIES == ("unet", "unet-lite", "fpn-lite")
    assert list_models("smp", "resnet18") == ["unet/resnet18", "unet-lite/resnet18", "fpn-lite/resnet18"]
    assert "fpn-lite/tf_efficientnet_lite0" in list_models("smp", "tf_efficientnet_lite*")
    assert not any(is_segmentation_name(n) for n in list_models())
    assert parse_segmentation_name("fpn-lite/tf_efficientnet_lite0") == ("fpn-lite", "tf_efficientnet_lite0")
    assert is_segmentation_name("unet-lite/resnet18") and not is_segmentation_name("fpn/resnet18")
    with pytest.raises(ConfigError, match=r"family in \['unet', 'unet-lite', 'fpn-lite'\]"):
        parse_segmentation_name("fpn/resnet18")
    with pytest.raises(ConfigError, match="family in"):
        parse_segmentation_name("fpn-lite/")
    with pytest.raises(ConfigError, match=r"Unknown encoder 'resnet19'.*resnet18"):
        create_model("fpn-lite/resnet19")
    with pytest.raises(ConfigError, match=r"Unknown encoder"):
        create_model("unet-lite/not_a_model")
    assert TrainConfig(model="fpn-lite/resnet18", image_size=96).task == "segmentation+classification"
    with pytest.raises(ConfigError, match="divisible by 32"):
        TrainConfig(model="unet-lite/resnet18", image_size=100)


@pytest.fixture(scope="module")
def fpn_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model, info = build_model("fpn-lite/resnet18", 3, None)
    with torch.no_grad():
        head: Any = model.classification_head
        head[3].weight.mul_(30)  # confident, non-uniform class probabilities
    checkpoint = Checkpoint(info, NAMES, 64, model.state_dict(), lesion_threshold=0.45)
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("fpn") / "best.pt")


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_export_parity_of_both_outputs(format: str, fpn_checkpoint: Path, tmp_path: Path) -> None:
    _, meta = export_with_parity(fpn_checkpoint, tmp_path / f"fpn.{format}", format)
    assert meta.model_info.name == "fpn-lite/resnet18" and meta.lesion_threshold == pytest.approx(0.45)


def test_predictor_on_fpn_lite_gives_lesion_fields_at_input_resolution(fpn_checkpoint: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    model = Predictor.from_checkpoint(fpn_checkpoint, device="cpu", decision="argmax")
    result = model.predict(image, pixel_spacing_mm=(0.1, 0.1))
    assert result.mask is not None and result.mask.shape == (50, 70)
    assert result.lesion_probability is not None and 0.0 <= result.lesion_probability <= 1.0
    assert result.lesion_area_px == int(result.mask.sum())
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    runtime = Predictor.from_checkpoint(fpn_checkpoint, device="cpu", backend="onnxruntime", decision="argmax")
    other = runtime.predict(image, pixel_spacing_mm=(0.1, 0.1))
    assert other.lesion_probability == pytest.approx(result.lesion_probability, abs=1e-4)
    assert other.probabilities == pytest.approx(result.probabilities, abs=1e-4)
