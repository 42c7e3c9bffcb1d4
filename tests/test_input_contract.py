"""The input contract (issue 14): built once, stored once, read alike by everything that makes model inputs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from breastus import Checkpoint, CheckpointError, ConfigError, ModelInfo, Predictor, Preprocessing, TrainConfig
from breastus.data import ImageCache, Sample, UltrasoundDataset, load_image
from breastus.export import ExportMetadata
from breastus.models import build_model, load_checkpoint, save_checkpoint
from breastus.transforms import InputContract, Letterbox

NAMES = ("benign", "malignant", "normal")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ROBUST = Preprocessing(crop=True, resize="letterbox", intensity="percentile")
SETTINGS = [
    Preprocessing(),
    Preprocessing(resize="letterbox"),
    Preprocessing(crop=True),
    Preprocessing(intensity="percentile", percentiles=(5.0, 95.0)),
    ROBUST,
]


@pytest.fixture(scope="module")
def small_model() -> tuple[torch.nn.Module, ModelInfo]:
    torch.manual_seed(0)
    return build_model("timm/test_resnet", 3)


def frame(height: int, width: int, seed: int) -> np.ndarray:
    """A grayscale screen capture: textured field of view on a black border, with a bright caption."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width), np.uint8)
    top, left = height // 7, width // 6
    image[top : height - height // 9, left : width - width // 8] = rng.integers(
        10, 240, (height - height // 9 - top, width - width // 8 - left)
    )
    image[1:3, 1 : max(2, width // 4)] = 255  # text in the border
    return image


def old_payload(checkpoint: Checkpoint) -> dict[str, object]:
    """The payload in the layout breastus wrote before the input contract (checkpoint format 1)."""
    return {
        "format": "breastus-checkpoint",
        "format_version": 1,
        "breastus_version": "0.1.0",
        "model_info": checkpoint.model_info.to_dict(),
        "class_names": list(checkpoint.class_names),
        "image_size": checkpoint.image_size,
        "temperature": float(checkpoint.temperature),
        "epoch": checkpoint.epoch,
        "train_config": checkpoint.train_config,
        "training_state": checkpoint.training_state,
        "preprocessing": checkpoint.preprocessing,
        "lesion_threshold": None,
        "model_state": checkpoint.model_state,
    }


def test_contract_validates_its_values_with_precise_errors() -> None:
    contract = InputContract(32, [0.5, 0.5, 0.5], np.array([0.25, 0.25, 0.25]), {"crop": True})
    assert contract.mean == (0.5, 0.5, 0.5) and contract.std == (0.25, 0.25, 0.25)
    assert contract.preprocessing == Preprocessing(crop=True)
    with pytest.raises(ConfigError, match=r"'image_size' parameter of InputContract must be an int >= 8\. Got 4"):
        InputContract(4, MEAN, STD)
    with pytest.raises(ConfigError, match=r"'image_size'.*Got True"):
        InputContract(True, MEAN, STD)
    with pytest.raises(ConfigError, match=r"'mean' parameter of InputContract must be three finite floats\. Got"):
        InputContract(32, (0.5, 0.5), STD)
    with pytest.raises(ConfigError, match=r"'mean'.*three finite floats"):
        InputContract(32, (0.5, float("nan"), 0.5), STD)
    with pytest.raises(ConfigError, match="'std' parameter of InputContract must be three finite floats > 0"):
        InputContract(32, MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(ConfigError, match="'preprocessing' parameter of InputContract"):
        InputContract(32, MEAN, STD, "crop")
    with pytest.raises(ConfigError, match="'resize' parameter of Preprocessing"):
        InputContract(32, MEAN, STD, {"resize": "zoom"})


def test_from_dict_names_what_is_wrong() -> None:
    good = InputContract(32, MEAN, STD).to_dict()
    with pytest.raises(ConfigError, match=r"Unknown InputContract field\(s\) \['colour'\].*upgrade breastus"):
        InputContract.from_dict({**good, "colour": "rgb"})
    with pytest.raises(ConfigError, match=r"missing \['std'\]"):
        InputContract.from_dict({k: v for k, v in good.items() if k != "std"})
    with pytest.raises(ConfigError, match=r"read from a dict.*Got list"):
        InputContract.from_dict([32])
    # preprocessing is optional (the defaults)
    assert InputContract.from_dict({k: v for k, v in good.items() if k != "preprocessing"}) == InputContract(
        32, MEAN, STD
    )


@settings(max_examples=30, deadline=None)
@given(
    size=st.integers(8, 512),
    crop=st.booleans(),
    resize=st.sampled_from(["stretch", "letterbox"]),
    intensity=st.sampled_from(["none", "percentile"]),
    low=st.floats(0, 49, allow_nan=False),
    mean=st.tuples(*[st.floats(-2, 2, allow_nan=False)] * 3),
    std=st.tuples(*[st.floats(0.01, 3, allow_nan=False)] * 3),
)
def test_contract_roundtrips_through_json(
    size: int,
    crop: bool,
    resize: str,
    intensity: str,
    low: float,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> None:
    prep = Preprocessing(crop=crop, resize=resize, intensity=intensity, percentiles=(low, 100 - low))
    contract = InputContract(size, mean, std, prep)
    assert InputContract.from_dict(json.loads(json.dumps(contract.to_dict()))) == contract


def test_train_config_builds_the_contract(
    small_model: tuple[torch.nn.Module, ModelInfo],
) -> None:
    _, info = small_model
    config = TrainConfig(model="timm/test_resnet", image_size=48, preprocessing=ROBUST)
    contract = config.input_contract(info)
    assert contract == InputContract(48, info.mean, info.std, ROBUST)


def test_checkpoint_writes_the_contract_once_and_reads_it_back(
    tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]
) -> None:
    model, info = small_model
    contract = InputContract(64, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), ROBUST)
    checkpoint = Checkpoint(info, NAMES, model_state=model.state_dict(), input_contract=contract)
    payload = checkpoint.to_dict()
    assert payload["input_contract"] == contract.to_dict() and payload["format_version"] == 2
    assert "image_size" not in payload and "preprocessing" not in payload
    loaded = load_checkpoint(save_checkpoint(checkpoint, tmp_path / "new.pt"))
    assert loaded.input_contract == contract
    # the older attributes stay readable (and settable), derived from the contract
    assert loaded.image_size == 64 and loaded.preprocessing == ROBUST.to_dict()
    loaded.preprocessing = {}
    assert loaded.input_contract == InputContract(64, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    # the older construction makes the contract with the model's normalisation; both must agree
    legacy = Checkpoint(info, NAMES, 64, model.state_dict(), preprocessing=ROBUST.to_dict())
    assert legacy.input_contract == InputContract(64, info.mean, info.std, ROBUST)
    with pytest.raises(ConfigError, match="image_size=32 and an input_contract of image_size=64"):
        Checkpoint(info, NAMES, 32, model.state_dict(), input_contract=contract)
    with pytest.raises(ConfigError, match="needs an input_contract"):
        Checkpoint(info, NAMES, model_state=model.state_dict())


@pytest.mark.parametrize("prep", [Preprocessing(), ROBUST], ids=["default", "robust"])
def test_checkpoint_in_the_old_layout_predicts_as_before(
    tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo], prep: Preprocessing
) -> None:
    model, info = small_model
    size = 32
    checkpoint = Checkpoint(info, NAMES, size, model.state_dict(), temperature=1.3, preprocessing=prep.to_dict())
    old_file = tmp_path / "old.pt"
    torch.save(old_payload(checkpoint), old_file)
    loaded = load_checkpoint(old_file)
    assert loaded.input_contract == InputContract(size, info.mean, info.std, prep)

    paths = []
    for i, (h, w) in enumerate([(40, 60), (70, 50), (33, 90)]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(frame(h, w, i)).save(paths[-1])
    old = Predictor.from_checkpoint(old_file, device="cpu", precision="fp32")
    assert old.input_contract == loaded.input_contract
    new = Predictor.from_checkpoint(save_checkpoint(loaded, tmp_path / "new.pt"), device="cpu", precision="fp32")
    # the pipeline as it was written before the contract, step by step
    resize = Letterbox(size) if prep.resize == "letterbox" else (lambda x: TF.resize(x, [size, size], antialias=True))
    mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
    manual = torch.stack(
        [
            (resize(prep.prepare(TF.pil_to_tensor(load_image(p)))).expand(3, -1, -1).float() / 255 - mean) / std
            for p in paths
        ]
    )
    with torch.inference_mode():
        expected = torch.softmax(model.eval()(manual).double() / 1.3, dim=1).numpy()
    np.testing.assert_allclose(old.predict_proba(paths), expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(old.predict_proba(paths), new.predict_proba(paths))


def test_damaged_contract_in_a_checkpoint_names_the_file(
    tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]
) -> None:
    model, info = small_model
    payload = Checkpoint(info, NAMES, 32, model.state_dict()).to_dict()
    payload["input_contract"] = {**payload["input_contract"], "image_size": 2}  # type: ignore[dict-item]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"input contract recorded in checkpoint .*bad\.pt.*image_size"):
        load_checkpoint(tmp_path / "bad.pt")


def test_export_metadata_carries_the_contract_as_one_entry(small_model: tuple[torch.nn.Module, ModelInfo]) -> None:
    model, info = small_model
    contract = InputContract(64, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), ROBUST)
    checkpoint = Checkpoint(info, NAMES, model_state=model.state_dict(), input_contract=contract, temperature=1.5)
    meta = ExportMetadata.from_checkpoint(checkpoint)
    strings = meta.to_strings()
    assert InputContract.from_dict(json.loads(strings["input_contract"])) == contract
    assert "preprocessing" not in strings and strings["format_version"] == "2"
    assert ExportMetadata.from_strings(strings, "x") == meta
    assert meta.image_size == 64 and meta.preprocessing == ROBUST.to_dict()
    # an export of format 1 (separate entries, the model's normalisation) is still read
    old = {k: v for k, v in strings.items() if k != "input_contract"}
    old.update(format_version="1", image_size="32", preprocessing=json.dumps({"resize": "letterbox"}))
    read = ExportMetadata.from_strings(old, "old.onnx")
    assert read.input_contract == InputContract(32, info.mean, info.std, Preprocessing(resize="letterbox"))
    old["preprocessing"] = json.dumps({"resize": "zoom"})
    with pytest.raises(CheckpointError, match=r"input contract recorded in 'old\.onnx'.*'resize'"):
        ExportMetadata.from_strings(old, "old.onnx")


def test_exported_model_and_explanations_read_the_same_contract(
    tmp_path: Path, small_model: tuple[torch.nn.Module, ModelInfo]
) -> None:
    pytest.importorskip("onnxruntime")
    from breastus.export import export_model

    model, info = small_model
    contract = InputContract(32, info.mean, info.std, ROBUST)
    checkpoint = Checkpoint(info, NAMES, model_state=model.state_dict(), input_contract=contract)
    path = save_checkpoint(checkpoint, tmp_path / "best.pt")
    onnx_file = export_model(path, tmp_path / "model.onnx")
    eager = Predictor.from_checkpoint(path, device="cpu", precision="fp32")
    exported = Predictor.from_exported(onnx_file, device="cpu")
    assert eager.input_contract == exported.input_contract == contract
    image = frame(50, 80, 3)
    assert torch.equal(eager.preprocess(image), exported.preprocess(image))
    heatmap = eager.explain(image)
    assert isinstance(heatmap, np.ndarray) and heatmap.shape == image.shape
    # outside the field of view (the crop of the contract) the heatmap is 0
    top, _, left, _ = contract.geometry(image).crop
    assert top > 0 and left > 0 and heatmap[:top].max() == 0 and heatmap[:, :left].max() == 0


def _dataset(folder: Path, images: list[np.ndarray]) -> UltrasoundDataset:
    samples = []
    for i, pixels in enumerate(images):
        path, mask = folder / f"benign ({i}).png", folder / f"benign ({i})_mask.png"
        Image.fromarray(pixels).save(path)
        lesion = np.zeros_like(pixels)
        h, w = pixels.shape
        lesion[h // 3 : h // 2 + 2, w // 3 : w // 2 + 3] = 255
        Image.fromarray(lesion).save(mask)
        samples.append(Sample(path, 0, (mask,)))
    return UltrasoundDataset(samples, NAMES)


@settings(max_examples=12, deadline=None)
@given(
    prep=st.sampled_from(SETTINGS),
    shapes=st.lists(st.tuples(st.integers(12, 90), st.integers(12, 90)), min_size=1, max_size=3),
    size=st.sampled_from([16, 32]),
    seed=st.integers(0, 2**16),
)
def test_cached_and_uncached_items_are_equal(
    prep: Preprocessing, shapes: list[tuple[int, int]], size: int, seed: int
) -> None:
    contract = InputContract(size, MEAN, STD, prep)
    with tempfile.TemporaryDirectory() as scratch:
        data = _dataset(Path(scratch), [frame(h, w, seed + i) for i, (h, w) in enumerate(shapes)])
        cache = ImageCache(size, Path(scratch) / "store", preprocessing=prep)
        uncached = data.with_transform(contract.eval_transform())
        cached = data.with_transform(contract.eval_transform(prepared=True)).with_cache(cache)
        for i in range(len(data)):
            # the cache stores exactly what the contract's deterministic step outputs
            decoded = TF.pil_to_tensor(load_image(data.paths[i]))
            assert torch.equal(cache.get(data.paths[i]), contract.step()(decoded).as_subclass(torch.Tensor))
            assert torch.equal(uncached[i][0], cached[i][0])
        masked_uncached, masked_cached = uncached.masked(), cached.masked()
        for i in range(len(data)):
            image_u, _, mask_u = masked_uncached[i]
            image_c, _, mask_c = masked_cached[i]
            assert torch.equal(image_u, image_c) and torch.equal(mask_u, mask_c)
            assert mask_u.shape == (1, size, size) and int(mask_u.max()) == 1
        # a second cache reading the disk store serves the same items
        again = data.with_transform(contract.eval_transform(prepared=True)).with_cache(
            ImageCache(size, Path(scratch) / "store", preprocessing=prep)
        )
        assert all(torch.equal(again[i][0], uncached[i][0]) for i in range(len(data)))
        assert again.cache is not None and again.cache.disk_hits == len(data)
