"""Dataset discovery (folders and manifests) on the real BUSI and on tiny generated folders."""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from breastus import DEFAULT_CLASS_NAMES, DataError, UltrasoundDataset
from breastus.data import discover_folder, read_manifest
from breastus.data._discovery import is_mask_file, natural_key

_NUMBER = re.compile(r"\((\d+)\)")


def _write_manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------ the real BUSI


@pytest.mark.busi
def test_busi_counts(busi_dataset: UltrasoundDataset) -> None:
    assert len(busi_dataset) == 780
    assert busi_dataset.class_names == ("benign", "malignant", "normal")
    assert busi_dataset.class_counts() == [437, 210, 133]
    assert "437" in repr(busi_dataset) or "benign=437" in repr(busi_dataset)


@pytest.mark.busi
def test_busi_masks_are_never_samples(busi_root: Path, busi_dataset: UltrasoundDataset) -> None:
    assert not any("_mask" in p.name for p in busi_dataset.paths)
    on_disk_masks = sorted(busi_root.glob("*/*_mask*.png"))
    paired = sorted(m for masks in busi_dataset.mask_paths for m in masks)
    assert len(on_disk_masks) == 798  # 780 first masks + 18 further lesions
    assert paired == on_disk_masks  # every mask file is paired with exactly one image
    for path, masks in zip(busi_dataset.paths, busi_dataset.mask_paths, strict=True):
        assert masks, f"{path.name} has no mask"
        for mask in masks:
            assert mask.parent == path.parent
            assert mask.name.startswith(path.stem + "_mask")
    assert sum(len(m) > 1 for m in busi_dataset.mask_paths) == 17


@pytest.mark.busi
def test_busi_labels_follow_folders(busi_dataset: UltrasoundDataset) -> None:
    for sample in busi_dataset.samples:
        assert busi_dataset.class_names[sample.label] == sample.path.parent.name
        assert sample.path.name.startswith(sample.path.parent.name)


@pytest.mark.busi
def test_busi_natural_order(busi_dataset: UltrasoundDataset) -> None:
    names = [p.name for p in busi_dataset.paths]
    assert names[:11] == [f"benign ({i}).png" for i in range(1, 12)]
    for k, name in enumerate(busi_dataset.class_names):
        numbers = [int(_NUMBER.search(p.name).group(1)) for p in busi_dataset.paths if p.parent.name == name]  # type: ignore[union-attr]
        assert numbers == list(range(1, busi_dataset.class_counts()[k] + 1))
    assert list(busi_dataset.labels) == sorted(busi_dataset.labels)  # classes in class_names order


@pytest.mark.busi
def test_busi_item_is_uint8_grayscale(busi_dataset: UltrasoundDataset) -> None:
    image, label = busi_dataset[0]
    width, height = busi_dataset.load_image(0).size
    assert image.dtype == torch.uint8
    assert image.shape == (1, height, width)
    assert label == 0


@pytest.mark.busi
def test_busi_custom_class_order(busi_root: Path) -> None:
    data = UltrasoundDataset.from_folder(busi_root, class_names=("normal", "benign", "malignant"))
    assert data.class_counts() == [133, 437, 210]
    assert data.paths[0].name == "normal (1).png"


# ------------------------------------------------------------------ folder errors and details


def test_natural_key_orders_numbers() -> None:
    names = ["b (10).png", "b (2).png", "b (1).png", "B (3).png"]
    assert sorted(names, key=lambda n: natural_key(Path(n))) == ["b (1).png", "b (2).png", "B (3).png", "b (10).png"]


@pytest.mark.parametrize(
    ("name", "is_mask"),
    [("x_mask.png", True), ("x_mask_1.png", True), ("x_mask_12.png", True), ("x.png", False), ("mask.png", False)],
)
def test_is_mask_file(name: str, is_mask: bool) -> None:
    assert is_mask_file(Path(name)) is is_mask


def test_tiny_folder(tiny_folder: Path) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    assert data.class_counts() == [12, 10, 8]
    assert all(len(m) == 1 for m in data.mask_paths)
    assert data.load_mask(0) is not None
    assert data.load_mask(0).any()  # type: ignore[union-attr]


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere.*does not exist"):
        UltrasoundDataset.from_folder(tmp_path / "nowhere")


def test_unknown_class_folder(tiny_folder: Path) -> None:
    (tiny_folder / "Benign_old").mkdir()
    with pytest.raises(DataError, match=r"Benign_old.*not known classes.*class_names"):
        discover_folder(tiny_folder)


def test_empty_class_folder(tiny_folder: Path) -> None:
    shutil.rmtree(tiny_folder / "normal")
    (tiny_folder / "normal").mkdir()
    with pytest.raises(DataError, match=r"normal.*holds no image"):
        discover_folder(tiny_folder)


def test_folder_with_only_masks_is_empty(tiny_folder: Path) -> None:
    for image in (tiny_folder / "normal").glob("*).png"):
        image.unlink()
    with pytest.raises(DataError, match="holds no image"):
        discover_folder(tiny_folder)


def test_no_class_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class folder"):
        discover_folder(tmp_path)


def test_a_missing_class_folder_is_allowed(tiny_folder: Path) -> None:
    shutil.rmtree(tiny_folder / "normal")
    data = UltrasoundDataset.from_folder(tiny_folder)
    assert data.class_counts() == [12, 10, 0]


def test_hidden_and_non_image_files_are_ignored(tiny_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tiny_folder / "benign" / "notes.txt").write_text("x")
    (tiny_folder / "benign" / ".DS_Store").write_bytes(b"\0")
    (tiny_folder / ".cache").mkdir()
    Image.new("L", (8, 8)).save(tiny_folder / "benign" / "orphan_mask.png")
    with caplog.at_level(logging.WARNING):
        data = UltrasoundDataset.from_folder(tiny_folder)
    assert data.class_counts() == [12, 10, 8]
    assert "orphan" in caplog.text


def test_images_sharing_a_stem_are_both_kept(tiny_folder: Path) -> None:
    Image.new("L", (8, 8), 50).save(tiny_folder / "normal" / "normal (1).jpg")
    data = UltrasoundDataset.from_folder(tiny_folder)
    assert data.class_counts() == [12, 10, 9]
    names = [p.name for p in data.paths if p.stem == "normal (1)"]
    assert names == ["normal (1).jpg", "normal (1).png"]
    assert all(len(data.mask_paths[data.paths.index(p)]) == 1 for p in data.paths if p.stem == "normal (1)")


def test_invalid_class_names(tiny_folder: Path) -> None:
    with pytest.raises(DataError, match="at least 2"):
        UltrasoundDataset.from_folder(tiny_folder, class_names=("benign",))
    with pytest.raises(DataError, match="unique"):
        UltrasoundDataset.from_folder(tiny_folder, class_names=("benign", "benign", "normal"))


def test_on_error_skip_drops_unreadable_images(tiny_folder: Path) -> None:
    bad = tiny_folder / "benign" / "benign (99).png"
    bad.write_text("not an image")
    with pytest.raises(DataError, match=r"benign \(99\)\.png"):
        UltrasoundDataset.from_folder(tiny_folder)[12]  # the 13th benign image, in natural order
    data = UltrasoundDataset.from_folder(tiny_folder, on_error="skip")
    assert data.class_counts() == [12, 10, 8]
    assert [p for p, _ in data.skipped] == [bad]
    with pytest.raises(DataError, match="on_error"):
        UltrasoundDataset.from_folder(tiny_folder, on_error="ignore")  # type: ignore[arg-type]


def test_subset_groups_and_transform(tiny_folder: Path) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    part = data.subset([0, 12, 29])
    assert part.labels.tolist() == [0, 1, 2]
    grouped = part.with_groups(["a", "a", None])
    assert grouped.groups == ["a", "a", None]
    with pytest.raises(DataError, match="one entry per sample"):
        part.with_groups(["a"])
    doubled = part.with_transform(lambda t: t.float() * 2)
    image, _ = doubled[0]
    assert image.dtype == torch.float32
    assert torch.equal(image, part[0][0].float() * 2)


# ------------------------------------------------------------------ manifests


def test_manifest_with_group_and_masks(tiny_folder: Path) -> None:
    manifest = _write_manifest(
        tiny_folder / "data.csv",
        ["path", "label", "group", "mask"],
        [
            ["benign/benign (1).png", "benign", "p1", "benign/benign (1)_mask.png"],
            ["benign/benign (2).png", "benign", "p1", "benign/benign (2)_mask.png;benign/benign (1)_mask.png"],
            [str(tiny_folder / "malignant" / "malignant (1).png"), "malignant", "", ""],
            ["normal/normal (1).png", "normal", "p3", ""],
        ],
    )
    data = UltrasoundDataset.from_manifest(manifest)
    assert data.class_names == DEFAULT_CLASS_NAMES
    assert data.labels.tolist() == [0, 0, 1, 2]
    assert data.groups == ["p1", "p1", None, "p3"]
    assert data.paths[0] == tiny_folder / "benign" / "benign (1).png"  # relative to the manifest's folder
    assert data.paths[2] == tiny_folder / "malignant" / "malignant (1).png"
    assert len(data.mask_paths[1]) == 2
    assert data.mask_paths[2] == ()
    image, label = data[3]
    assert label == 2 and image.shape[0] == 1


def test_manifest_minimal_columns_and_own_classes(tiny_folder: Path) -> None:
    manifest = _write_manifest(
        tiny_folder / "two.csv",
        ["path", "label"],
        [["benign/benign (1).png", "cyst"], ["malignant/malignant (1).png", "carcinoma"]],
    )
    samples, names = read_manifest(manifest)
    assert names == ("carcinoma", "cyst")  # sorted labels when they are not the BUSI classes
    assert [s.label for s in samples] == [1, 0]


def test_manifest_wrong_label_names_the_file_and_line(tiny_folder: Path) -> None:
    manifest = _write_manifest(
        tiny_folder / "typo.csv",
        ["path", "label"],
        [["benign/benign (1).png", "benign"], ["malignant/malignant (1).png", "maligant"]],
    )
    with pytest.raises(DataError, match=r"typo\.csv.*line 3.*maligant"):
        UltrasoundDataset.from_manifest(manifest, class_names=DEFAULT_CLASS_NAMES)


def test_manifest_missing_column(tiny_folder: Path) -> None:
    manifest = _write_manifest(tiny_folder / "bad.csv", ["file", "label"], [["benign/benign (1).png", "benign"]])
    with pytest.raises(DataError, match=r"bad\.csv.*lacks column.*path"):
        read_manifest(manifest)


def test_manifest_empty_and_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n")
    with pytest.raises(DataError, match=r"empty\.csv.*no rows"):
        read_manifest(empty)
    with pytest.raises(DataError, match=r"absent\.csv.*does not exist"):
        read_manifest(tmp_path / "absent.csv")


def test_manifest_short_row_names_the_file_and_line(tiny_folder: Path) -> None:
    manifest = tiny_folder / "short.csv"
    manifest.write_text("path,label\nbenign/benign (1).png,benign\nbenign/benign (2).png\n")
    with pytest.raises(DataError, match=r"short\.csv.*line 3"):
        read_manifest(manifest)


def test_from_path_picks_the_manifest_for_csv(tiny_folder: Path) -> None:
    manifest = _write_manifest(
        tiny_folder / "LIST.CSV",
        ["path", "label"],
        [["benign/benign (1).png", "benign"], ["normal/normal (1).png", "normal"]],
    )
    assert len(UltrasoundDataset.from_path(manifest)) == 2
    assert len(UltrasoundDataset.from_path(tiny_folder)) == 30


@pytest.mark.busi
def test_busi_manifest_matches_folder_discovery(tmp_path: Path, busi_dataset: UltrasoundDataset) -> None:
    rows = [[str(s.path), busi_dataset.class_names[s.label]] for s in busi_dataset.samples[::13]]
    data = UltrasoundDataset.from_manifest(_write_manifest(tmp_path / "busi.csv", ["path", "label"], rows))
    assert data.paths == busi_dataset.paths[::13]
    np.testing.assert_array_equal(data.labels, busi_dataset.labels[::13])
