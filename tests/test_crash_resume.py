"""Crash-safe checkpoints: SIGKILL a training run, resume it, get the uninterrupted result (issue 5, item 2).

The killed run is a real ``breastus train`` process; the reference and the resumed
run call the same CLI entry point in this process with the same single CPU thread,
so all three compute bit-identical arithmetic.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import kill_when, make_image_folder

from breastus import CheckpointError, load_checkpoint
from breastus.cli import main
from breastus.models._checkpoint import atomic_write
from breastus.training._history import read_history

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

EPOCHS = 3
VOLATILE = {"seconds", "train_images_per_second"}  # wall-clock figures, not results


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(data),
        "--out",
        str(out),
        "--model",
        "timm/test_resnet",
        "--pretrained",
        "none",
        "--epochs",
        str(EPOCHS),
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--seed",
        "7",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Run torch on one thread here, as the subprocess does (OMP_NUM_THREADS=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _results(run: Path) -> tuple[list[dict[str, object]], dict[str, object]]:
    history = [{k: v for k, v in r.to_dict().items() if k not in VOLATILE} for r in read_history(run / "history.jsonl")]
    return history, json.loads((run / "test_metrics.json").read_text())


def _kill_during_epoch_2(command: list[str], run: Path) -> int:
    """Start ``command``; SIGKILL it as soon as epoch 1 is on disk. Returns the epoch in last.pt then."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = run / "history.jsonl"
    # append_history runs after last.pt is renamed into place: one line = epoch 1 is safely saved
    err = kill_when(process, lambda: history.is_file() and history.read_text().count("\n") >= 1)
    assert process.returncode == -signal.SIGKILL, f"the run was not killed (status {process.returncode}): {err!r}"
    return load_checkpoint(run / "last.pt").epoch


@pytest.mark.slow
def test_sigkill_during_epoch_2_then_resume_matches_an_uninterrupted_run(tmp_path: Path, one_thread: None) -> None:
    data = make_image_folder(tmp_path / "data", {"benign": 20, "malignant": 20, "normal": 20}, size=(32, 32))
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "breastus.cli", *_train_args(data, killed)]
    assert _kill_during_epoch_2(command, killed) == 1  # killed during epoch 2: only epoch 1 is saved
    assert not (killed / "test_metrics.json").exists()
    assert load_checkpoint(killed / "best.pt").epoch == 1
    assert not [p.name for p in killed.iterdir() if p.name.endswith(".tmp") and p.name.startswith(".best")]

    assert main(_train_args(data, killed, "--resume")) == 0
    assert main(_train_args(data, tmp_path / "uninterrupted")) == 0

    resumed_history, resumed_test = _results(killed)
    reference_history, reference_test = _results(tmp_path / "uninterrupted")
    assert [r["epoch"] for r in resumed_history] == list(range(1, EPOCHS + 1))
    assert resumed_history == reference_history  # every epoch's loss, accuracy, F1 and AUC, exactly
    assert resumed_test == reference_test
    a = load_checkpoint(killed / "last.pt").model_state
    b = load_checkpoint(tmp_path / "uninterrupted" / "last.pt").model_state
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_data_model_or_classes(
    tmp_path: Path, one_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_image_folder(tmp_path / "data", {"benign": 10, "malignant": 10, "normal": 10}, size=(32, 32))
    run = tmp_path / "run"
    args = _train_args(data, run)
    args[args.index(str(EPOCHS))] = "1"
    assert main(args) == 0
    capsys.readouterr()
    other_model = [*args, "--resume"]
    other_model[other_model.index("timm/test_resnet")] = "timm/test_efficientnet"
    assert main(other_model) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "last.pt" in err and "timm/test_resnet" in err and "test_efficientnet" in err
    make_image_folder(data, {"benign": 11}, size=(32, 32))  # one image more: not the data split.json was made from
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "split.json" in err and "31 now" in err and "Resume with the same data" in err
    # other class names (Python API: the CLI always trains the three BUSI classes)
    from breastus import TrainConfig, Trainer, UltrasoundDataset

    names = ("benign", "malignant")
    two = UltrasoundDataset([s for s in UltrasoundDataset.from_folder(data).samples if s.label < 2], names)
    config = TrainConfig(model="timm/test_resnet", pretrained="none", image_size=32, class_names=names, device="cpu")
    with pytest.raises(CheckpointError, match=r"Cannot resume.*last\.pt.*\['benign', 'malignant', 'normal'\]"):
        Trainer(config, run).fit(two, two, resume=True)


# ------------------------------------------------------------------ atomic writes


def test_a_writer_failing_midway_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"old complete checkpoint")

    def half_then_fail(handle: object) -> None:
        handle.write(b"new but only ha")  # type: ignore[attr-defined]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old complete checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the temporary file is removed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_during_a_checkpoint_write_leaves_the_old_file(tmp_path: Path) -> None:
    """A process killed in the middle of writing leaves the previous checkpoint loadable."""
    from breastus.models import Checkpoint, ModelInfo, save_checkpoint

    info = ModelInfo("timm/test_resnet", "timm", "test_resnet", 2, (0.5,) * 3, (0.5,) * 3)  # type: ignore[arg-type]
    old = Checkpoint(info, ("a", "b"), 32, {"w": torch.arange(4.0)}, epoch=1)
    target = save_checkpoint(old, tmp_path / "last.pt")
    pid = os.fork()
    if pid == 0:  # child: write half of a new checkpoint, then die without any cleanup
        try:

            def die_midway(handle: object) -> None:
                handle.write(b"PK\x03\x04 half a zip")  # type: ignore[attr-defined]
                handle.flush()  # type: ignore[attr-defined]
                os.kill(os.getpid(), signal.SIGKILL)

            atomic_write(target, die_midway)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    loaded = load_checkpoint(target)
    assert loaded.epoch == 1 and torch.equal(loaded.model_state["w"], torch.arange(4.0))
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert [p.name.startswith(".last.pt.") and p.name.endswith(".tmp") for p in leftovers] == [True]
