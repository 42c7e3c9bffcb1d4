"""benchmarks/lesion_aware.py runs end to end (``--smoke``) and writes every compared figure."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_lesion_aware_smoke(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("lesion_aware", BENCHMARKS / "lesion_aware.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lesion_aware"] = module
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    out = tmp_path / "result.json"
    try:
        assert module.main(["--smoke", "--runs", str(tmp_path / "runs"), "--json", str(out), "--batch-size", "8"]) == 0
    finally:
        torch.set_num_threads(threads)
    payload = json.loads(out.read_text())
    assert set(payload["rows"]) == {"classifier", "multitask-lesion", "multitask-argmax"}
    for key, row in payload["rows"].items():
        for part in ("busi_test", "external"):
            figures = row[part]
            for name in ("accuracy", "macro_auc", "malignant_auc", "lesion_called_normal", "normal_recall"):
                assert name in figures, (key, part, name)
        assert (row["busi_test"]["dice"] is None) == (key == "classifier")
    assert payload["rows"]["multitask-lesion"]["lesion_threshold"] is not None
    ratios = payload["inference_cost"]["ratio_multitask_over_classifier"]
    assert set(ratios) == {"batch_1_s", "batch_4_s"} and all(r > 0 for r in ratios.values())
    assert payload["cpu"] and payload["smoke"] is True
