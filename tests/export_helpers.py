"""Export a multi-task checkpoint and check both of its outputs against the eager model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from breastus.export import export_model, load_exported
from breastus.models import load_checkpoint


def export_with_parity(checkpoint: Path, out: Path, format: str) -> tuple[Path, Any]:
    """Export ``checkpoint`` to ``out``; assert mask and class outputs match eager within 1e-4; return (file, metadata)."""
    exported = export_model(checkpoint, out, format=format)  # type: ignore[arg-type]
    module, meta = load_exported(exported, torch.device("cpu"))
    eager = load_checkpoint(checkpoint).build_model().eval()
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want_mask, want_logits = eager(images)
        got_mask, got_logits = module(images)
    assert got_mask.shape == (3, 1, 64, 64) and got_logits.shape == (3, 3)
    assert (got_mask - want_mask).abs().max() <= 1e-4 * max(1.0, float(want_mask.abs().max()))
    assert (torch.sigmoid(got_mask) - torch.sigmoid(want_mask)).abs().max() <= 1e-4
    assert (torch.softmax(got_logits, 1) - torch.softmax(want_logits, 1)).abs().max() <= 1e-4
    if format == "onnx":
        import onnx

        assert [o.name for o in onnx.load(str(exported)).graph.output] == ["mask_logits", "class_logits"]
    return exported, meta
