"""Export a trained breastus model to ONNX and run it with ONNX Runtime.

Trains a small model (or takes --checkpoint), writes it as ONNX with its class
names, input size, normalisation and temperature inside, then runs the file
twice on BUSI images -- once with a bare onnxruntime session that reads the
metadata itself, once through ``Predictor.from_exported`` -- and compares both
with eager PyTorch.

    python examples/export_onnx.py --smoke                  # < 60 s on 2 cores
    python examples/export_onnx.py --checkpoint runs/busi/best.pt --out busi.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from breastus import Predictor, TrainConfig, Trainer, UltrasoundDataset
from breastus.export import export_model

DATA = Path(os.environ.get("BREASTUS_DATA", Path(__file__).resolve().parents[1].parent / "shared/datasets/busi"))


def train_small(data: UltrasoundDataset, run_dir: Path, smoke: bool) -> Path:
    """A quickly trained ResNet-18 (not a useful classifier; enough to export)."""
    step = 13 if smoke else 3
    chosen = list(range(0, len(data), step))
    train = data.subset([i for k, i in enumerate(chosen) if k % 5])
    val = data.subset([i for k, i in enumerate(chosen) if not k % 5])
    config = TrainConfig(
        pretrained="none", image_size=64 if smoke else 128, epochs=1 if smoke else 3, progress=False, device="cpu"
    )
    Trainer(config, run_dir).fit(train, val)
    return run_dir / "best.pt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a breastus checkpoint (default: train a small one)")
    parser.add_argument("--data", type=Path, default=DATA, help="BUSI folder")
    parser.add_argument("--out", type=Path, help="ONNX file to write (default: a temporary file)")
    parser.add_argument("--images", type=int, default=24, help="BUSI images to compare on")
    parser.add_argument("--smoke", action="store_true", help="tiny and fast (CI)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))

    data = UltrasoundDataset.from_folder(args.data)
    paths = data.paths[:: max(1, len(data) // args.images)][: args.images]
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or train_small(data, Path(scratch) / "run", args.smoke)
        out = args.out or Path(scratch) / "model.onnx"
        started = time.perf_counter()
        export_model(checkpoint, out, format="onnx")
        print(
            f"Exported {checkpoint} -> {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s"
        )

        # 1. A bare ONNX Runtime session: everything needed is in the file's metadata.
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        classes, temperature = json.loads(meta["class_names"]), float(meta["temperature"])
        print(f"Metadata: classes={classes} image_size={meta['image_size']} temperature={temperature}")
        print(f"          mean={meta['mean']} std={meta['std']}")

        eager = Predictor.from_checkpoint(checkpoint, device="cpu")
        batch = torch.stack([eager.preprocess(p) for p in paths]).numpy()  # breastus' own preprocessing
        (logits,) = session.run(["logits"], {"image": batch})
        scaled = logits / temperature
        bare = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        bare /= bare.sum(axis=1, keepdims=True)

        # 2. The same file through the Predictor (preprocessing and temperature from the metadata).
        exported = Predictor.from_exported(out, device="cpu")
        through_predictor = exported.predict_proba(paths)
        reference = eager.predict_proba(paths)

    print(f"\n{'run':<34}{'max |Δ probability| vs eager PyTorch':>38}")
    print(f"{'onnxruntime session (bare)':<34}{np.abs(bare - reference).max():>38.2e}")
    print(f"{'Predictor.from_exported (ONNX)':<34}{np.abs(through_predictor - reference).max():>38.2e}")
    same = (through_predictor.argmax(axis=1) == reference.argmax(axis=1)).mean()
    print(f"\nSame predicted class on {same:.0%} of {len(paths)} BUSI images.")
    worst = max(np.abs(bare - reference).max(), np.abs(through_predictor - reference).max())
    if worst > 1e-4:
        raise SystemExit(f"ONNX and PyTorch disagree by {worst:.2e} (allowed 1e-4)")


if __name__ == "__main__":
    main()
