"""Scale: predictions stream in constant memory and an interrupted ``breastus predict`` keeps its rows.

Issue 5, item 5. Peak RSS over 1,000 and 10,000 images is measured by
``benchmarks/predict_folder_memory.py`` (no timing or memory thresholds here).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_when
from PIL import Image

from breastus import Predictor
from breastus.data import _inputs
from breastus.prediction._predictor import iter_images

CLASSES = ("benign", "malignant", "normal")


def _write_scans(folder: Path, n: int, side: int = 12) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, size=(side, side), dtype=np.uint8)).save(folder / f"scan {i}.png")
    return folder


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_midway_keeps_every_finished_row(tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = _write_scans(tmp_path / "scans", 800)
    out = tmp_path / "predictions.csv"
    command = [sys.executable, "-m", "breastus.cli", "predict", str(tiny_checkpoint), str(folder)]
    command += ["--csv", str(out), "--batch-size", "1", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = kill_when(process, lambda: out.is_file() and out.read_bytes().count(b"\n") > 30)
    assert process.returncode == -signal.SIGKILL, f"not killed midway (status {process.returncode}): {err!r}"

    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n"), "the last row is incomplete"
    with out.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    assert header == ["path", "label", *[f"p_{c}" for c in CLASSES]]
    assert 30 <= len(body) < 800, len(body)
    expected = [str(p) for p in iter_images(folder)][: len(body)]
    assert [r[0] for r in body] == expected  # the first rows, in order, none missing
    for row in body:
        assert len(row) == 5 and row[1] in CLASSES
        probabilities = np.array([float(v) for v in row[2:]])
        assert abs(probabilities.sum() - 1) < 1e-5
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    again = predictor.predict([Path(r[0]) for r in body[:3]])
    for row, p in zip(body[:3], again, strict=True):
        np.testing.assert_allclose([float(v) for v in row[2:]], list(p.probabilities.values()), atol=2e-6)


def test_predict_folder_decodes_one_batch_ahead_at_most(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays flat: at any time at most one batch of decoded images waits to be yielded."""
    folder = _write_scans(tmp_path / "scans", 100, side=8)
    decoded = 0
    real = _inputs.load_image

    def counting(path: str | Path) -> Image.Image:
        nonlocal decoded
        decoded += 1
        return real(path)

    monkeypatch.setattr(_inputs, "load_image", counting)  # what the Predictor decodes paths with
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", batch_size=8)
    stream = predictor.predict_folder(folder)
    assert decoded == 0  # lazy: nothing is read before the first result is asked for
    seen = 0
    for _ in stream:
        seen += 1
        assert decoded - seen < 8
    assert seen == decoded == 100
