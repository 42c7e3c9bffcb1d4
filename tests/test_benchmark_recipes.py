"""The benchmark rows' recipes are valid configurations and valid ``breastus cv`` commands."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from breastus import TrainConfig, UltrasoundDataset
from breastus.cli._main import build_parser
from breastus.cli._train import config_from_args

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def busi_cv() -> ModuleType:
    spec = importlib.util.spec_from_file_location("busi_cv", BENCHMARKS / "busi_cv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["busi_cv"] = module
    spec.loader.exec_module(module)
    return module


def test_every_row_command_parses_to_the_rows_config(busi_cv: ModuleType, tmp_path: Path) -> None:
    parser = build_parser()
    for key, row in busi_cv.ROWS.items():
        options = busi_cv.row_options(row)
        args = parser.parse_args(["cv", "DATA", "--out", str(tmp_path / key), *options])
        from_cli = config_from_args(args)
        expected = TrainConfig(**row.config)
        for name in ("model", "pretrained", "epochs", "optimizer", "lr", "weight_decay", "scheduler"):
            assert getattr(from_cli, name) == getattr(expected, name), (key, name)
        assert from_cli.preprocessing == expected.preprocessing, key
        assert from_cli.augmentation == expected.augmentation, key
        assert from_cli.label_smoothing == expected.label_smoothing, key
        assert ("--tta" in options) == row.tta
    assert busi_cv.row_options(busi_cv.ROWS["a"], epochs=3)[-2:] == ["--epochs", "3"]
    assert "--epochs 20" in " ".join(busi_cv.row_options(busi_cv.ROWS["b"]))


def test_groups_from_an_audit_json_follow_relative_paths(
    busi_cv: ModuleType, tiny_folder: Path, tmp_path: Path
) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    first, second = (p.relative_to(tiny_folder).as_posix() for p in data.paths[:2])
    report = tmp_path / "audit.json"
    report.write_text(json.dumps({"groups": [[first, second]]}), encoding="utf-8")
    names = busi_cv.groups_from_audit_json(report, data, tiny_folder)
    assert names[0] == names[1] == "dup-0"
    assert all(name is None for name in names[2:])
    report.write_text(json.dumps({"groups": [["elsewhere/a.png", "elsewhere/b.png"]]}), encoding="utf-8")
    with pytest.raises(SystemExit, match="none of its grouped images"):
        busi_cv.groups_from_audit_json(report, data, tiny_folder)


@pytest.mark.parametrize("command", ["train", "cv"])
def test_speed_flags_reach_the_config(command: str, tmp_path: Path) -> None:
    args = build_parser().parse_args([command, "DATA", "--out", str(tmp_path), "--compile", "--batch-augment"])
    config = config_from_args(args)
    assert config.compile and config.batch_augment
    plain = config_from_args(build_parser().parse_args([command, "DATA", "--out", str(tmp_path)]))
    assert not plain.compile and not plain.batch_augment
