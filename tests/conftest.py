"""Shared fixtures: the real BUSI folder and tiny generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def busi_path() -> Path:
    """BUSI location: $BREASTUS_DATA, else ../shared/datasets/busi beside the repository."""
    return Path(os.environ.get("BREASTUS_DATA", ROOT.parent / "shared" / "datasets" / "busi"))


@pytest.fixture(scope="session")
def busi_root() -> Path:
    path = busi_path()
    if not (path / "benign").is_dir():
        pytest.skip(f"BUSI not found at {path}; set BREASTUS_DATA")
    return path


@pytest.fixture(scope="session")
def breast_root() -> Path:
    path = busi_path().parent / "breast-lesions-usg"
    if not (path / "benign").is_dir():
        pytest.skip(f"BrEaST-Lesions-USG not found at {path}")
    return path


def make_image_folder(root: Path, counts: dict[str, int], size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """Write a tiny BUSI-style folder: class-dependent blobs so a model can learn them, plus masks."""
    rng = np.random.default_rng(seed)
    for label, (name, n) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            w, h = size
            array = rng.integers(0, 60, size=(h, w), dtype=np.uint8)
            mask = np.zeros((h, w), dtype=np.uint8)
            y, x = h // 2, (w // 4) * (label + 1) % w
            array[max(0, y - 5) : y + 5, max(0, x - 5) : x + 5] = 200 + 20 * (label % 3)
            mask[max(0, y - 5) : y + 5, max(0, x - 5) : x + 5] = 255
            Image.fromarray(array, mode="L").save(folder / f"{name} ({i}).png")
            Image.fromarray(mask, mode="L").save(folder / f"{name} ({i})_mask.png")
    return root


@pytest.fixture()
def tiny_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data", {"benign": 12, "malignant": 10, "normal": 8})
