"""Two CPU processes under torchrun (gloo) train on a BUSI subset and end with identical weights."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from breastus import Predictor, UltrasoundDataset, load_checkpoint
from breastus.training._distributed import (
    DistributedContext,
    all_gather_objects,
    all_reduce_sums,
    init_distributed,
    is_main_process,
)

WORKER = textwrap.dedent(
    """
    import hashlib, json, os, sys
    from breastus import TrainConfig, Trainer, UltrasoundDataset

    data_root, run_dir, out_dir = sys.argv[1:4]
    data = UltrasoundDataset.from_folder(data_root)
    chosen = list(range(0, len(data), 19))[:40]
    train = data.subset([i for k, i in enumerate(chosen) if k % 4])
    val = data.subset([i for k, i in enumerate(chosen) if not k % 4])
    config = TrainConfig(
        pretrained="none", image_size=32, epochs=1, batch_size=8, device="cpu", progress=False, seed=3
    )
    trainer = Trainer(config, run_dir)
    history = trainer.fit(train, val)
    digest = hashlib.sha256()
    for key, value in sorted(trainer.model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    rank = os.environ["RANK"]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(
            {
                "sha256": digest.hexdigest(),
                "world_size": trainer.distributed.world_size,
                "val_accuracy": history.records[-1].val_accuracy,
                "val_indices": [i for k, i in enumerate(chosen) if not k % 4],
            },
            handle,
        )
    """
)


def state_hash(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(state.items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_single_process_context_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    context, device = init_distributed(torch.device("cpu"))
    assert context == DistributedContext() and not context.enabled and context.is_main
    assert device == torch.device("cpu")
    assert all_gather_objects({"a": 1}, context) == [{"a": 1}]
    assert all_reduce_sums([1.5, 2.0], context, device) == [1.5, 2.0]
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()


@pytest.mark.slow
@pytest.mark.busi
def test_two_processes_finish_with_identical_weights(busi_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, str(script), str(busi_root), str(run_dir), str(out_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]
    assert ranks[0]["val_accuracy"] == ranks[1]["val_accuracy"]

    # Rank 0 alone wrote one history line and a checkpoint holding those same weights.
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 1
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert state_hash(checkpoint.model_state) == ranks[0]["sha256"]

    # The recorded validation accuracy covers the whole validation set, not one rank's half.
    data = UltrasoundDataset.from_folder(busi_root)
    val = data.subset(ranks[0]["val_indices"])
    probabilities = Predictor.from_loaded(checkpoint, device="cpu").predict_proba(val.paths)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == val.labels))
    assert len(val) == 10
    assert accuracy == pytest.approx(ranks[0]["val_accuracy"])
