"""Confidence intervals of a run's metrics: the ones breastus stored, read from any of its JSON shapes.

This module is private (see :mod:`breastus.reporting._model_card`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from breastus.reporting._run import Run

CI_KEYS = ("confidence_intervals", "ci95", "ci", "bootstrap", "bootstrap_ci")


@dataclass(frozen=True)
class Interval:
    """A confidence interval of one metric and how it was obtained."""

    low: float
    high: float
    method: str


def _as_interval(value: Any, method: str) -> Interval | None:
    """Read ``[low, high]``, ``{"low": .., "high": ..}`` (or lower/upper, ci_low/ci_high, ci: [..])."""
    if isinstance(value, Mapping):
        for low_key, high_key in (("low", "high"), ("lower", "upper"), ("ci_low", "ci_high")):
            if low_key in value and high_key in value:
                return _as_interval([value[low_key], value[high_key]], method)
        for key in ("ci", "ci95", "interval"):
            if key in value:
                return _as_interval(value[key], method)
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return Interval(float(value[0]), float(value[1]), method)
    return None


def intervals_from(data: Any, method: str, prefix: str = "") -> dict[str, Interval]:
    """Every ``metric -> interval`` found in a (possibly nested) JSON object."""
    found: dict[str, Interval] = {}
    if not isinstance(data, Mapping):
        return found
    for key, value in data.items():
        name = f"{prefix}{key}"
        interval = _as_interval(value, method)
        if interval is not None:
            found[name] = interval
        elif isinstance(value, Mapping):
            found.update(intervals_from(value, method, f"{name}/"))
    return found


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"auc": {"benign": 0.9}}`` -> ``{"auc/benign": 0.9}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def stored_intervals(run: Run) -> dict[str, Interval]:
    """Intervals already computed by breastus (cv.json, bootstrap files, test_metrics.json)."""
    if run.bootstrap_file is not None:
        path, data = run.bootstrap_file
        found = intervals_from(data, f"from {path.name}")
        if found:
            return found
    for key in CI_KEYS:
        if run.metrics is not None and key in run.metrics:
            found = intervals_from(run.metrics[key], "from test_metrics.json")
            if found:
                return found
    return {}
