"""The record every speed benchmark writes: what ran, where, under what load, and the JSON file.

Imported by the benchmark scripts (``python benchmarks/<name>.py`` puts this folder on
``sys.path``). The note about a shared CPU is derived from the load average before the
run, so an idle machine's figures are not labelled as shared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from breastus import __version__, cpu_features


def run_header(args: argparse.Namespace, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Command, load average, CPU, breastus version and options of this run."""
    load = os.getloadavg()
    cpus = os.cpu_count() or 1
    shared = load[0] > 0.75 * cpus
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "note": (
            "shared CPU: other processes ran at the same time; read the figures with the load average"
            if shared
            else "idle CPU (1-minute load average below 0.75 per core before the run)"
        ),
        "load_average_before": load,
        "cpu": cpu_features(),
        "cpus": cpus,
        "breastus": __version__,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in set(skip)},
    }


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Add the load average after the run and write ``result`` as JSON to ``path``."""
    result["load_average_after"] = os.getloadavg()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {path}")
