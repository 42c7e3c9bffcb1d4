"""The data audit: duplicates, label conflicts, unreadable files, masks, statistics, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from breastus import ConfigError, DataError, UltrasoundDataset, audit, kfold_indices
from breastus.cli import main


@pytest.fixture(scope="module")
def busi_audit(busi_root: Path):  # type: ignore[no-untyped-def]
    return audit(busi_root, threshold=6)


@pytest.mark.busi
@pytest.mark.slow
def test_busi_audit_finds_the_known_duplicates_and_conflicts(busi_audit) -> None:  # type: ignore[no-untyped-def]
    report = busi_audit
    assert len(report.images) == 780 and report.unreadable == []
    assert len(report.groups) == 142
    assert report.n_duplicated_images == 316
    assert all(len(g) >= 2 for g in report.groups)
    assert len(report.conflicts) == 8
    conflict_sets = [set(c["paths"]) for c in report.conflicts]
    assert {"benign/benign (433).png", "malignant/malignant (145).png"} in conflict_sets
    assert all(len(set(c["labels"])) > 1 for c in report.conflicts)
    # 433/145 are the one set of exact pixel copies (identical decoded pixels).
    assert report.exact_duplicates == [["benign/benign (433).png", "malignant/malignant (145).png"]]
    stats = report.statistics()
    assert stats["class_counts"] == {"benign": 437, "malignant": 210, "normal": 133}
    assert stats["modes"] == {"L": 764, "RGB": 16}
    assert report.images_without_masks == [] and report.masks_without_images == []


@pytest.mark.busi
@pytest.mark.slow
def test_busi_audit_groups_are_respected_by_the_splitter(busi_audit, busi_root: Path) -> None:  # type: ignore[no-untyped-def]
    data = UltrasoundDataset.from_folder(busi_root)
    groups = busi_audit.group_names(data.paths)
    assert sum(g is not None for g in groups) == 316
    fold_of = np.zeros(len(data), dtype=int)
    for k, (_, test) in enumerate(kfold_indices(data.labels, 5, groups, seed=0)):
        fold_of[test] = k
    for group in busi_audit.groups:
        folds = {int(fold_of[data.paths.index(busi_root / p)]) for p in group}
        assert len(folds) == 1, group


@pytest.mark.busi
@pytest.mark.slow
def test_busi_reports_json_and_html(busi_audit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(busi_audit.write_json(tmp_path / "a.json").read_text())
    assert {"groups", "conflicts", "unreadable"} <= set(data)
    assert len(data["groups"]) == 142 and len(data["conflicts"]) == 8
    html = busi_audit.write_html(tmp_path / "a.html", thumbnail_size=32).read_text()
    assert html.count('class="group conflict"') == 8
    assert html.count("data:image/png;base64,") == 316  # one thumbnail per duplicated image, embedded
    assert "malignant/malignant (145).png" in html


def _copy(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes())


def test_audit_finds_exact_near_conflicts_and_file_problems(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", {"benign": 4, "malignant": 3, "normal": 2}, size=(64, 64))
    benign1 = np.asarray(Image.open(root / "benign" / "benign (1).png"))
    # Exact copy across classes, re-encoded as RGB (other bytes, same decoded pixels).
    Image.fromarray(np.stack([benign1] * 3, axis=-1)).save(root / "malignant" / "copy.png")
    # Near-duplicate: one pixel changed.
    near = benign1.copy()
    near[0, 0] ^= 1
    Image.fromarray(near).save(root / "benign" / "near.png")
    (root / "normal" / "broken.png").write_bytes(b"not a png")
    _copy(root / "benign" / "benign (2)_mask.png", root / "benign" / "ghost_mask.png")
    (root / "normal" / "normal (1)_mask.png").unlink()
    Image.new("L", (10, 10)).save(root / "benign" / "benign (3)_mask.png")
    (root / "benign" / "notes.txt").write_text("hello")

    report = audit(root)
    groups = [sorted(g) for g in report.groups]
    assert sorted(["benign/benign (1).png", "benign/near.png", "malignant/copy.png"]) in groups
    assert report.exact_duplicates == [["benign/benign (1).png", "malignant/copy.png"]]
    assert len(report.conflicts) == 1 and report.conflicts[0]["classes"] == ["benign", "malignant"]
    assert [u["path"] for u in report.unreadable] == ["normal/broken.png"]
    assert report.masks_without_images == ["benign/ghost_mask.png"]
    assert "normal/normal (1).png" in report.images_without_masks
    assert [m["mask"] for m in report.mask_size_mismatches] == ["benign/benign (3)_mask.png"]
    assert report.ignored_files == ["benign/notes.txt"]
    assert report.statistics()["modes"] == {"L": 10, "RGB": 1}
    # Exact-only audit keeps the exact pair but drops the near-duplicate.
    exact_only = audit(root, threshold=-1)
    assert [sorted(g) for g in exact_only.groups] == [["benign/benign (1).png", "malignant/copy.png"]]


def test_audit_of_a_manifest(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", {"benign": 3, "malignant": 3})
    _copy(root / "benign" / "benign (1).png", root / "malignant" / "dup.png")
    lines = ["path,label"] + [f"{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(root.glob("*/*.png"))]
    lines = [line for line in lines if "_mask" not in line]
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    report = audit(root / "m.csv")
    assert report.conflicts[0]["paths"] == ["benign/benign (1).png", "malignant/dup.png"]


@pytest.mark.parametrize("threshold", [-2, 65, 1.5, True])
def test_audit_rejects_bad_thresholds(tiny_folder: Path, threshold: object) -> None:
    with pytest.raises(ConfigError, match="threshold"):
        audit(tiny_folder, threshold=threshold)  # type: ignore[arg-type]


def test_audit_rejects_missing_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither a folder"):
        audit(tmp_path / "nope")


def test_audit_cli_writes_reports(tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _copy(tiny_folder / "benign" / "benign (1).png", tiny_folder / "normal" / "dup.png")
    status = main(["audit", str(tiny_folder), "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")])
    assert status == 0
    out = capsys.readouterr().out
    assert "Label conflicts (one group, several classes): 1" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["conflicts"][0]["paths"] == ["benign/benign (1).png", "normal/dup.png"]
    assert "data:image/png;base64," in (tmp_path / "r.html").read_text()
    assert main(["audit", str(tmp_path / "missing")]) == 2
