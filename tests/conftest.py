"""Shared fixtures: the real BUSI folder and tiny generated datasets."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
NO_SKIPS = "BREASTUS_NO_SKIPS"
"""Set (by ``.ci/run``): a skipped test fails, unless its reason is in :data:`ALLOWED_SKIP_REASONS`."""
ALLOWED_SKIP_REASONS = ("CUDA", "downloadable here")  # no GPU on CI; a network CI has makes an offline check moot


def _forbid_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    """Turn ``report``'s skip into a failure where ``BREASTUS_NO_SKIPS`` is set and the reason is not allowed."""
    if not (os.environ.get(NO_SKIPS) and report.skipped and not hasattr(report, "wasxfail")):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(allowed in reason for allowed in ALLOWED_SKIP_REASONS):
        report.outcome = "failed"
        report.longrepr = f"skipped where {NO_SKIPS} forbids it: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test skipped by a mark, a fixture (missing data) or ``pytest.skip``."""
    outcome = yield
    _forbid_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A whole module skipped at import (``pytest.importorskip`` of a missing extra)."""
    outcome = yield
    _forbid_skip(outcome.get_result())


def cli_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The one line ``breastus <command>`` wrote to stderr for a failure (no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"breastus {command}: error: ")
    return lines[0]


def kill_when(process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 240) -> bytes:
    """SIGKILL ``process`` as soon as ``ready()`` holds (polled every 5 ms); its stderr once it has ended."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if ready():
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if process.poll() is None:
            process.kill()
        _, err = process.communicate(timeout=60)
    return err


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
def one_torch_thread() -> Iterator[None]:
    """Run the test on one intra-op thread (two oversubscribed threads on a shared 2-core machine are ~20x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def tiny_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "data", {"benign": 12, "malignant": 10, "normal": 8})


# --- Shared BUSI views and a tiny checkpoint (session-scoped: built once, reused by many test files) ---


@pytest.fixture(scope="session")
def busi_dataset(busi_root: Path):  # type: ignore[no-untyped-def]
    """The whole real BUSI folder as an UltrasoundDataset (discovery only, no decoding)."""
    from breastus import UltrasoundDataset

    return UltrasoundDataset.from_folder(busi_root)


@pytest.fixture(scope="session")
def busi_duplicate_groups(busi_dataset) -> list[str]:  # type: ignore[no-untyped-def]
    """Duplicate group of every BUSI image (decodes all 780 images once: ~10 s on 2 busy cores)."""
    from breastus.data import duplicate_groups

    return duplicate_groups(busi_dataset.paths)


def busi_subset_indices(labels: np.ndarray, per_class: int, offset: int = 0) -> np.ndarray:
    """Indices of ``per_class`` images of every class (natural order, from ``offset``), sorted."""
    return np.sort(
        np.concatenate([np.flatnonzero(labels == k)[offset : offset + per_class] for k in np.unique(labels)])
    )


@pytest.fixture(scope="session")
def busi_small(busi_dataset):  # type: ignore[no-untyped-def]
    """60 real BUSI images, 20 per class, for short training runs."""
    return busi_dataset.subset(busi_subset_indices(busi_dataset.labels, 20))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised ResNet-18 breastus checkpoint at image size 32 (no training)."""
    import torch

    from breastus.models import Checkpoint, build_model, save_checkpoint

    torch.manual_seed(0)
    model, info = build_model("resnet18", 3, pretrained=None)
    path = tmp_path_factory.mktemp("tiny_checkpoint") / "best.pt"
    save_checkpoint(
        Checkpoint(
            model_info=info,
            class_names=("benign", "malignant", "normal"),
            image_size=32,
            model_state=model.state_dict(),
        ),
        path,
    )
    return path


# CI runs hypothesis derandomized, so a rare generated case cannot make a green build red by chance.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")
