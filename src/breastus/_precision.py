"""CPU mixed precision: does this CPU run bfloat16 fast, and which precision does a run use.

PyTorch runs ``torch.autocast("cpu", dtype=torch.bfloat16)`` on every x86 CPU
with AVX-512, but only CPUs with native bfloat16 arithmetic (AVX-512 BF16,
AMX) are faster for it; elsewhere oneDNN emulates bfloat16 and a training step
gets slower. ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` accepts the
emulation too, so it cannot tell the two apart: :func:`has_fast_bf16` reads
the CPU's feature flags instead.
"""

from __future__ import annotations

import functools
import platform
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import torch

from breastus._errors import ConfigError

PrecisionName = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")
"""Values of ``TrainConfig.precision`` and ``Predictor(..., precision=...)``."""

FAST_BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
"""x86 ``/proc/cpuinfo`` flags of native bfloat16 arithmetic (``bf16`` on Arm, in the ``Features`` line)."""


def _cpuinfo_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo`` (empty where the file is missing)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_features() -> dict[str, Any]:
    """What the CPU offers for bfloat16, for benchmarks and logs.

    Returns
    -------
    dict
        ``model`` (the CPU's name), ``machine`` (``x86_64``, ``aarch64``, ...),
        ``torch_capability`` (:func:`torch.backends.cpu.get_cpu_capability`),
        ``bf16_flags`` (the native-bfloat16 flags found), ``avx512``,
        ``avx512_vnni`` and ``vnni`` (AVX-512 VNNI or AVX-VNNI: 8-bit dot products
        without 16-bit saturation; bools) and ``fast_bf16`` (:func:`has_fast_bf16`).

    """
    flags = _cpuinfo_flags()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "model": model,
        "machine": platform.machine(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_flags": sorted(f for f in flags if f in FAST_BF16_FLAGS or f == "bf16" or f == "amx_tile"),
        "avx512": "avx512f" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "vnni": "avx512_vnni" in flags or "avx_vnni" in flags,
        "fast_bf16": has_fast_bf16(),
    }


@functools.cache
def has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX on x86, BF16 on Arm).

    Read from the CPU's feature flags (``/proc/cpuinfo`` on Linux); ``False``
    where they cannot be read, so an unknown CPU keeps float32. The result is
    cached for the process.
    """
    flags = _cpuinfo_flags()
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return any(flag in flags for flag in FAST_BF16_FLAGS)


def check_precision(precision: str, where: str) -> None:
    """Raise a :class:`~breastus.ConfigError` unless ``precision`` is ``"auto"``, ``"fp32"`` or ``"bf16"``."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"The 'precision' parameter of {where} must be one of {list(PRECISIONS)}. Got {precision!r} instead; "
            "use 'auto' (bf16 where the CPU runs it fast), 'fp32' or 'bf16'."
        )


def cpu_autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast type of a CPU run with ``precision``: ``torch.bfloat16`` or ``None`` (float32).

    ``"auto"`` gives bfloat16 only where :func:`has_fast_bf16` is true; ``"bf16"``
    forces it (it runs on any CPU, emulated and slower without native support);
    ``"fp32"`` never.

    Raises
    ------
    ConfigError
        If ``precision`` is not one of :data:`PRECISIONS`.

    """
    check_precision(precision, "cpu_autocast_dtype")
    if precision == "bf16" or (precision == "auto" and has_fast_bf16()):
        return torch.bfloat16
    return None


def precision_label(dtype: torch.dtype | None) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"``: how a history record names an autocast type."""
    if dtype is None:
        return "fp32"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype).removeprefix("torch."))


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """``torch.autocast(device.type, dtype)``, or a no-op context for float32."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
