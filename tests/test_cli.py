"""The ``breastus`` command line end to end: train, evaluate, predict, and user errors."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import busi_subset_indices, cli_error_line, make_image_folder

from breastus import UltrasoundDataset
from breastus.cli import main


@dataclass
class TrainedRun:
    run_dir: Path
    manifest: Path
    metrics_json: Path
    stdout: str
    status: int


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, busi_dataset: UltrasoundDataset) -> TrainedRun:
    """`breastus train` on a 60-image BUSI manifest: default ResNet-18, 1 epoch at 32 px."""
    root = tmp_path_factory.mktemp("cli")
    manifest = root / "busi_subset.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for i in busi_subset_indices(busi_dataset.labels, 20, offset=60):
            sample = busi_dataset.samples[i]
            writer.writerow([sample.path, busi_dataset.class_names[sample.label]])
    run_dir, metrics_json = root / "run", root / "metrics.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(
            [
                "train",
                str(manifest),
                "--out",
                str(run_dir),
                "--epochs",
                "1",
                "--image-size",
                "32",
                "--batch-size",
                "16",
                "--pretrained",
                "none",
                "--device",
                "cpu",
                "--no-progress",
                "--json",
                str(metrics_json),
            ]
        )
    return TrainedRun(run_dir, manifest, metrics_json, out.getvalue(), status)


@pytest.fixture()
def two_class_folder(tmp_path: Path) -> Path:
    """An external-test-set-like folder: benign and malignant only."""
    return make_image_folder(tmp_path / "external", {"benign": 3, "malignant": 2})


# ------------------------------------------------------------------ train


@pytest.mark.busi
@pytest.mark.slow
def test_train_writes_a_complete_run(trained: TrainedRun) -> None:
    assert trained.status == 0
    files = {p.name for p in trained.run_dir.iterdir()}
    assert {"best.pt", "last.pt", "history.jsonl", "split.json", "test_metrics.json", "test_predictions.csv"} <= files
    assert len((trained.run_dir / "history.jsonl").read_text().splitlines()) == 1
    assert "Trained resnet18 for 1 epoch(s)" in trained.stdout
    assert "Test metrics" in trained.stdout and "accuracy=" in trained.stdout
    metrics = json.loads(trained.metrics_json.read_text())
    assert metrics == json.loads((trained.run_dir / "test_metrics.json").read_text())
    split = json.loads((trained.run_dir / "split.json").read_text())
    assert len(split["paths"]) == 60
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(60))
    assert metrics["n"] == len(split["test"]) > 0
    with (trained.run_dir / "test_predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["n"]


# ------------------------------------------------------------------ evaluate


@pytest.mark.busi
def test_evaluate_with_json_and_csv(
    trained: TrainedRun, two_class_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_csv = tmp_path / "eval.json", tmp_path / "eval.csv"
    checkpoint = str(trained.run_dir / "best.pt")
    status = main(["evaluate", checkpoint, str(two_class_folder), "--json", str(out_json), "--csv", str(out_csv)])
    assert status == 0
    assert "accuracy=" in capsys.readouterr().out
    metrics = json.loads(out_json.read_text())
    assert metrics["n"] == 5
    assert metrics["class_names"] == ["benign", "malignant", "normal"]
    assert metrics["auc"]["normal"] is None and metrics["sensitivity"]["normal"] is None
    assert sum(map(sum, metrics["confusion_matrix"])) == 5
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["label"] for r in rows] == ["benign"] * 3 + ["malignant"] * 2


# ------------------------------------------------------------------ predict


@pytest.mark.busi
def test_predict_csv_for_a_folder(
    trained: TrainedRun, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "predictions.csv"
    status = main(["predict", str(trained.run_dir), str(tiny_folder / "normal"), "--csv", str(out_csv)])
    assert status == 0
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8  # the masks beside the 8 images are skipped
    assert list(rows[0]) == ["path", "label", "p_benign", "p_malignant", "p_normal"]
    for row in rows:
        assert "_mask" not in row["path"]
        probabilities = [float(row[f"p_{c}"]) for c in ("benign", "malignant", "normal")]
        assert sum(probabilities) == pytest.approx(1, abs=1e-5)
        assert row["label"] == ("benign", "malignant", "normal")[int(np.argmax(probabilities))]


@pytest.mark.busi
def test_predict_json_lines_and_plain_text(
    trained: TrainedRun, tiny_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(tiny_folder / "benign" / "benign (1).png"), str(tiny_folder / "malignant" / "malignant (2).png")]
    assert main(["predict", str(trained.run_dir / "best.pt"), *images, "--json", "--tta"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, image in zip(lines, images, strict=True):
        record = json.loads(line)
        assert record["path"] == image
        assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-6)
        assert record["label"] in record["probabilities"]
    assert main(["predict", str(trained.run_dir / "best.pt"), images[0]]) == 0
    text = capsys.readouterr().out.strip().split("\t")
    assert text[0] == images[0] and text[1] in ("benign", "malignant", "normal")


# ------------------------------------------------------------------ user errors: exit 2, one line, no traceback


def test_train_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--pretrained", "none"])
    assert status == 2
    assert "nowhere" in cli_error_line(capsys, "train")


@pytest.mark.parametrize(
    ("option", "expected"),
    [(["--epochs", "0"], "'epochs'"), (["--image-size", "4"], "'image_size'"), (["--model", "resnet19"], "resnet18")],
)
def test_train_invalid_options(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], expected: str
) -> None:
    status = main(["train", str(tiny_folder), "--out", str(tmp_path / "run"), "--pretrained", "none", *option])
    assert status == 2
    assert expected in cli_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()  # nothing was started


@pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")
def test_train_unavailable_pretrained_file(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["train", str(tiny_folder), "--out", str(tmp_path / "run"), "--pretrained", str(tmp_path / "w.pth")])
    assert status == 2
    assert "w.pth" in cli_error_line(capsys, "train")


def test_evaluate_and_predict_reject_a_bad_checkpoint(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "model.pt"
    fake.write_text("not a checkpoint")
    assert main(["evaluate", str(fake), str(tiny_folder)]) == 2
    assert "model.pt" in cli_error_line(capsys, "evaluate")
    assert main(["predict", str(tmp_path / "missing.pt"), str(tiny_folder)]) == 2
    assert "missing.pt" in cli_error_line(capsys, "predict")


def test_predict_bad_inputs(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(tiny_checkpoint), str(tmp_path / "absent.png")]) == 2
    assert "absent.png" in cli_error_line(capsys, "predict")
    assert main(["predict", str(tiny_checkpoint), str(tmp_path), "--batch-size", "0"]) == 2
    assert "batch_size" in cli_error_line(capsys, "predict")


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "data"])  # --out is required
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("breastus ")


def test_help_through_the_console_script() -> None:
    script = shutil.which("breastus", path=str(Path(sys.executable).parent)) or shutil.which("breastus")
    command = [script] if script else [sys.executable, "-m", "breastus.cli"]
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    for sub in ("train", "evaluate", "predict"):
        assert sub in done.stdout
    assert "usage: breastus" in done.stdout
