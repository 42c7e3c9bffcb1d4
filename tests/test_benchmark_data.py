"""The data-copy scripts behind the GPU benchmarks: lesion crops and resized grayscale copies."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lesion_crop() -> ModuleType:
    return load_script("lesion_crop")


@pytest.fixture(scope="module")
def shrink_dataset() -> ModuleType:
    return load_script("shrink_dataset")


def write_case(folder: Path, name: str, size: tuple[int, int], box: tuple[int, int, int, int] | None) -> None:
    """An image of ``size`` (width, height) whose pixels encode their column; a mask of ``box`` if given."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    columns = np.tile(np.arange(width, dtype=np.uint8), (height, 1))
    Image.fromarray(columns, mode="L").save(folder / f"{name}.png")
    if box is not None:
        mask = np.zeros((height, width), dtype=np.uint8)
        left, top, right, bottom = box
        mask[top:bottom, left:right] = 255
        Image.fromarray(mask, mode="L").save(folder / f"{name}_mask.png")


def test_lesion_crop_keeps_the_lesion_and_its_margin(lesion_crop: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "busi"
    write_case(source / "benign", "benign (1)", (200, 100), (60, 40, 100, 60))  # 40 x 20 lesion
    write_case(source / "malignant", "malignant (1)", (200, 100), (150, 10, 190, 50))  # 40 x 40, near the edge
    write_case(source / "normal", "normal (1)", (200, 100), None)
    counts = lesion_crop.crop_folder(source, tmp_path / "crops", margin=0.25)
    assert counts == {"lesion_crops": 2, "centre_crops": 1}

    benign = np.asarray(Image.open(tmp_path / "crops" / "benign" / "benign (1).png"))
    # 10 px (0.25 x the longer side 40) on every side: columns 50-109, rows 30-69.
    assert benign.shape == (40, 60)
    assert benign[0, 0] == 50 and benign[0, -1] == 109
    malignant = np.asarray(Image.open(tmp_path / "crops" / "malignant" / "malignant (1).png"))
    assert malignant.shape == (60, 60)  # rows 0-59 and columns 140-199: clipped to the frame
    assert malignant[0, 0] == 140 and malignant[0, -1] == 199
    # The normal image: centred box of the median relative lesion size, widened by 25 % per axis.
    normal = np.asarray(Image.open(tmp_path / "crops" / "normal" / "normal (1).png"))
    # Median relative side (0.2 of the width, 0.4 of the height) x 1.5: 60 x 60 px around the centre.
    assert abs(normal.shape[0] - 60) <= 1 and abs(normal.shape[1] - 60) <= 1
    assert abs(int(normal[0, 0]) - 70) <= 1
    assert not list((tmp_path / "crops").rglob("*_mask.png"))


def test_lesion_crop_refuses_a_folder_without_masks(lesion_crop: ModuleType, tmp_path: Path) -> None:
    write_case(tmp_path / "busi" / "normal", "normal (1)", (40, 30), None)
    with pytest.raises(SystemExit, match="No lesion masks"):
        lesion_crop.crop_folder(tmp_path / "busi", tmp_path / "crops")


def test_lesion_crop_refuses_a_negative_margin(lesion_crop: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        lesion_crop.main([str(tmp_path), str(tmp_path / "out"), "--margin", "-1"])


def test_shrink_grayscale_stores_what_breastus_decodes(shrink_dataset: ModuleType, tmp_path: Path) -> None:
    from breastus.data import load_image

    source = tmp_path / "src" / "benign"
    source.mkdir(parents=True)
    rgba = np.zeros((300, 400, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 3] = 200, 100, 128  # half-transparent orange
    Image.fromarray(rgba, mode="RGBA").save(source / "benign (1).png")
    Image.fromarray(np.full((300, 400), 255, np.uint8), mode="L").save(source / "benign (1)_mask.png")
    count = shrink_dataset.shrink(tmp_path / "src", tmp_path / "out", 150, grayscale=True)
    assert count == 1
    with Image.open(tmp_path / "out" / "benign" / "benign (1).png") as written:
        assert written.mode == "L" and written.size == (200, 150)
        expected = load_image(source / "benign (1).png").resize((200, 150), Image.Resampling.BILINEAR)
        assert np.array_equal(np.asarray(written), np.asarray(expected))
    with Image.open(tmp_path / "out" / "benign" / "benign (1)_mask.png") as mask:
        assert mask.size == (200, 150) and mask.mode == "L"
