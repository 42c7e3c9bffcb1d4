"""``breastus export``: write a checkpoint's model as ONNX or TorchScript."""

from __future__ import annotations

import argparse

import torch

from breastus._errors import CheckpointError
from breastus.export._api import export_model, load_exported
from breastus.export._onnx import DEFAULT_OPSET
from breastus.export._quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_METHOD,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_WEIGHT_TYPE,
    QUANTIZE_MODES,
    WEIGHT_TYPES,
    calibration_images,
)
from breastus.models._checkpoint import load_checkpoint
from breastus.models._segmentation import split_outputs

NAME = "export"
HELP = "Export a trained checkpoint to ONNX or TorchScript (dynamic batch size, metadata inside)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` options."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt / last.pt, or a run folder")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="output format")
    parser.add_argument("--out", required=True, metavar="FILE", help="output file (e.g. model.onnx, model.ts)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version")
    parser.add_argument(
        "--quantize",
        choices=list(QUANTIZE_MODES),
        default=None,
        help="int8: ONNX Runtime static quantization (QDQ, per-channel weights) calibrated on --calibration",
    )
    parser.add_argument(
        "--calibration",
        metavar="DATA_DIR",
        help="folder of training images (never test images) for the int8 ranges; needed with --quantize",
    )
    parser.add_argument(
        "--calibration-size",
        type=int,
        default=DEFAULT_CALIBRATION_SIZE,
        metavar="N",
        help="calibration images taken from DATA_DIR (a seeded sample)",
    )
    parser.add_argument(
        "--calibration-method",
        choices=list(CALIBRATION_METHODS),
        default=DEFAULT_CALIBRATION_METHOD,
        help="how activation ranges are read from the calibration images",
    )
    parser.add_argument(
        "--weight-type",
        choices=list(WEIGHT_TYPES),
        default=DEFAULT_WEIGHT_TYPE,
        help="int8 weights (U8S8, the fast x86 kernels) or uint8 (U8U8: labels closer to float32 on "
        "CPUs without VNNI, but much slower)",
    )
    parser.add_argument(
        "--keep-float",
        default="none",
        metavar="first,last",
        help="weighted layers left in float32: first (after the input), last (before each output), both, or none",
    )
    parser.add_argument(
        "--reduce-range", action="store_true", help="7-bit weights (ONNX Runtime's advice for CPUs without VNNI)"
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the exported file once and comparing its probabilities with PyTorch's",
    )


def max_probability_difference(checkpoint_path: str, exported_path: str, batch: int = 3, seed: int = 0) -> float:
    """Largest |Δ probability| between the checkpoint (eager PyTorch) and the exported file on random inputs.

    For a multi-task model both outputs count: the class probabilities and the
    per-pixel lesion probabilities (sigmoid of the mask logits).
    """
    checkpoint = load_checkpoint(checkpoint_path)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, checkpoint.image_size, checkpoint.image_size, generator=generator)
    exported, _ = load_exported(exported_path, torch.device("cpu"))
    with torch.inference_mode():
        expected_mask, expected_logits = split_outputs(checkpoint.build_model()(images))
        got_mask, got_logits = split_outputs(exported(images))
        expected = torch.softmax(expected_logits.double() / checkpoint.temperature, dim=1)
        got = torch.softmax(got_logits.double() / checkpoint.temperature, dim=1)
        difference = float((expected - got).abs().max())
        if expected_mask is not None and got_mask is not None:
            lesion = (torch.sigmoid(expected_mask.double()) - torch.sigmoid(got_mask.double())).abs().max()
            difference = max(difference, float(lesion))
    return difference


def int8_agreement(checkpoint_path: str, exported_path: str, folder: str, count: int = 16) -> tuple[float, float]:
    """Label agreement and largest |Δ probability| of an int8 export against the float32 checkpoint.

    Measured on ``count`` images of ``folder`` (the calibration folder: int8 models are
    compared on real images, where their ranges hold, not on random inputs).
    """
    from breastus.prediction._predictor import Predictor

    paths = [str(p) for p in calibration_images(folder, count, seed=1)]
    reference = Predictor.from_checkpoint(checkpoint_path, device="cpu", precision="fp32").predict_proba(paths)
    int8 = Predictor.from_exported(exported_path, device="cpu").predict_proba(paths)
    agreement = float((reference.argmax(axis=1) == int8.argmax(axis=1)).mean())
    return agreement, float(abs(reference - int8).max())


def run(args: argparse.Namespace) -> int:
    """Export, then (unless ``--no-check``) compare the file's output with eager PyTorch."""
    out = export_model(
        args.checkpoint,
        args.out,
        format=args.format,
        opset=args.opset,
        quantize=args.quantize,
        calibration=args.calibration,
        calibration_size=args.calibration_size,
        calibration_method=args.calibration_method,
        weight_type=args.weight_type,
        keep_float=[part for part in args.keep_float.split(",") if part and part != "none"],
        reduce_range=args.reduce_range,
    )
    size_mb = out.stat().st_size / 1e6
    outputs = (
        "outputs 'mask_logits', 'class_logits'"
        if load_checkpoint(args.checkpoint).model_info.is_multitask
        else "output 'logits'"
    )
    kind = args.format if args.quantize is None else f"{args.format}, {args.quantize}"
    print(f"Wrote {out} ({kind}, {size_mb:.1f} MB; input 'image' (N, 3, S, S), {outputs}).")
    if args.no_check:
        return 0
    if args.quantize is not None:
        agreement, difference = int8_agreement(args.checkpoint, str(out), args.calibration)
        print(
            f"Check: int8 labels agree with float32 on {agreement:.0%} of 16 calibration images; "
            f"max |Δ probability| = {difference:.3f} (figures on a test split: benchmarks/int8.py)"
        )
        return 0
    difference = max_probability_difference(args.checkpoint, str(out))
    print(f"Check: max |Δ probability| against eager PyTorch on 3 random inputs = {difference:.2e}")
    if difference > 1e-4:
        raise CheckpointError(
            f"The exported file {str(out)!r} disagrees with the checkpoint by {difference:.2e} in probability "
            "(allowed 1e-4); try another --opset or report the model name."
        )
    return 0
