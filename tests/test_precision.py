"""CPU mixed precision: bf16 chosen only where the CPU runs it fast, float32 weights and probabilities kept."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import breastus._precision as precision_module
from breastus import ConfigError, Predictor, TrainConfig, Trainer, UltrasoundDataset, load_checkpoint
from breastus.cli._train import add_config_arguments, config_from_args
from breastus.reporting import write_model_card

CONFIG = TrainConfig(
    model="timm/test_resnet", pretrained="none", image_size=32, epochs=1, batch_size=16, device="cpu", progress=False
)


@pytest.fixture()
def fast_bf16(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> bool:
    """Pretend the CPU does (param True) or does not (False) compute bfloat16 natively."""
    fast = bool(request.param)
    monkeypatch.setattr(precision_module, "has_fast_bf16", lambda: fast)
    return fast


@pytest.mark.parametrize("fast_bf16", [True, False], indirect=True)
def test_auto_takes_bf16_only_on_a_fast_bf16_cpu(fast_bf16: bool, tmp_path: Path, tiny_checkpoint: Path) -> None:
    expected = torch.bfloat16 if fast_bf16 else None
    assert Trainer(CONFIG, tmp_path).amp_dtype is expected
    assert Trainer(CONFIG.replace(precision="fp32"), tmp_path).amp_dtype is None
    assert Trainer(CONFIG.replace(precision="bf16"), tmp_path).amp_dtype is torch.bfloat16
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu")
    assert predictor.precision == ("bf16" if fast_bf16 else "fp32")
    assert Predictor.from_checkpoint(tiny_checkpoint, device="cpu", precision="fp32").precision == "fp32"


@pytest.mark.parametrize("fast_bf16", [True], indirect=True)
def test_exported_models_keep_float32(fast_bf16: bool, tiny_checkpoint: Path) -> None:
    pytest.importorskip("onnxruntime")
    predictor = Predictor.from_checkpoint(tiny_checkpoint, device="cpu", backend="onnxruntime", precision="bf16")
    assert predictor.precision == "fp32"  # ONNX Runtime runs its own kernels; autocast does not apply


def _flags_file(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    return path


@pytest.mark.parametrize(
    ("flags", "fast"),
    [
        ("fpu sse avx2 avx512f avx512bw avx512_vnni", False),  # this session's Xeon: emulated bf16 only
        ("fpu avx2 avx512f avx512_bf16", True),
        ("fpu avx2 amx_tile amx_bf16", True),
        ("fpu sse avx2 fma", False),
    ],
)
def test_detection_reads_the_native_bf16_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str, fast: bool
) -> None:
    path = _flags_file(tmp_path, flags)
    real = precision_module._cpuinfo_flags
    monkeypatch.setattr(precision_module, "_cpuinfo_flags", lambda: real(path))
    monkeypatch.setattr(precision_module.platform, "machine", lambda: "x86_64")
    precision_module.has_fast_bf16.cache_clear()
    try:
        assert precision_module.has_fast_bf16() is fast
        features = precision_module.cpu_features()
        assert features["fast_bf16"] is fast
        assert features["avx512"] is ("avx512f" in flags)
    finally:
        precision_module.has_fast_bf16.cache_clear()


def test_missing_cpuinfo_means_no_fast_bf16(tmp_path: Path) -> None:
    assert precision_module._cpuinfo_flags(tmp_path / "absent") == frozenset()


def test_forced_bf16_run_keeps_float32_weights_and_records_precision(tiny_folder: Path, tmp_path: Path) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    train, val = data.subset(range(0, 30, 1)), data.subset(range(0, 30, 3))
    run = tmp_path / "bf16"
    # bf16 is emulated on a CPU without native support: slow, but it runs, so it can be tested anywhere.
    history = Trainer(CONFIG.replace(precision="bf16", epochs=2), run).fit(train, val)
    assert [r.precision for r in history.records] == ["bf16", "bf16"]
    assert all(np.isfinite(r.train_loss) and np.isfinite(r.val_loss) for r in history.records)
    lines = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [line["precision"] for line in lines] == ["bf16", "bf16"]
    for name in ("best.pt", "last.pt"):
        state = load_checkpoint(run / name).model_state
        dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
        assert dtypes == {torch.float32}, name

    fp32 = Predictor.from_checkpoint(run / "best.pt", device="cpu", precision="fp32")
    bf16 = Predictor.from_checkpoint(run / "best.pt", device="cpu", precision="bf16")
    assert bf16.precision == "bf16"
    assert next(bf16.model.parameters()).dtype == torch.float32
    paths = [str(p) for p in data.paths[:6]]
    p32, p16 = fp32.predict_proba(paths), bf16.predict_proba(paths)
    assert p16.dtype == np.float64 and p32.dtype == np.float64
    np.testing.assert_allclose(p16.sum(axis=1), 1.0, atol=1e-9)
    assert float(np.abs(p16 - p32).max()) < 0.05  # bf16 keeps ~3 significant digits
    assert not np.array_equal(p16, p32)  # and autocast really ran
    card = write_model_card(run, tmp_path / "card.md", n_bootstrap=10).read_text()
    assert "Arithmetic that ran: bf16" in card


def test_fp32_run_records_fp32(tiny_folder: Path, tmp_path: Path) -> None:
    data = UltrasoundDataset.from_folder(tiny_folder)
    history = Trainer(CONFIG.replace(precision="fp32"), tmp_path).fit(
        data.subset(range(24)), data.subset(range(24, 30))
    )
    assert history.records[0].precision == "fp32"


@pytest.mark.parametrize("value", ["float16", "bfloat16", "", None, True])
def test_invalid_precision_names_the_parameter(value: object) -> None:
    with pytest.raises(ConfigError, match=r"'precision' parameter of TrainConfig.*'auto', 'fp32', 'bf16'"):
        TrainConfig(precision=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'precision'"):
        precision_module.cpu_autocast_dtype(value)  # type: ignore[arg-type]


def test_cli_precision_flag() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args([])).precision == "auto"
    assert config_from_args(parser.parse_args(["--precision", "fp32"])).precision == "fp32"
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "fp16"])
