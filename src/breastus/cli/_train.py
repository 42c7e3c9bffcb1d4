"""``breastus train``: train on a data folder and report test metrics."""

from __future__ import annotations

import argparse
import json

from breastus._pipeline import train_and_evaluate
from breastus.training._config import TrainConfig
from breastus.training._distributed import is_main_process
from breastus.transforms._preprocess import Preprocessing

NAME = "train"
HELP = "Train a classifier on a BUSI-style folder (or CSV manifest), then evaluate it on a held-out test split."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` options."""
    defaults = TrainConfig()
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class, or a CSV manifest")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder for checkpoints and history")
    add_config_arguments(parser)
    parser.add_argument("--test-size", type=float, default=defaults.test_size, help="test fraction")
    parser.add_argument(
        "--no-group-duplicates",
        action="store_true",
        help="allow near-duplicate images in different splits (leaky; for comparison only)",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in RUN_DIR from its last.pt")
    parser.add_argument("--json", metavar="FILE", help="also write the test metrics to FILE")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that make a :class:`TrainConfig` (shared by ``train`` and ``cv``)."""
    defaults = TrainConfig()
    parser.add_argument(
        "--model",
        default=defaults.model,
        help="model name, e.g. resnet18, timm/resnet50, tf_efficientnet_lite0; unet/<encoder> (unet/resnet18, "
        "unet/tf_efficientnet_lite0) trains a lesion-segmenting multi-task model on the masks",
    )
    parser.add_argument(
        "--pretrained",
        default=defaults.pretrained,
        metavar="none|imagenet|PATH",
        help="initial weights: none (random), imagenet (download or packaged), or a local weights file",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="square input side in pixels")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per training step")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="initial learning rate")
    parser.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default=defaults.optimizer, help="optimizer")
    parser.add_argument(
        "--scheduler",
        choices=["multistep", "cosine", "onecycle", "none"],
        default=defaults.scheduler,
        help="learning-rate schedule (multistep: x0.1 at 50%% and 75%% of the epochs)",
    )
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="weight decay")
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing, help="label smoothing")
    parser.add_argument(
        "--class-weights", choices=["none", "balanced"], default="none", help="cross-entropy class weights"
    )
    parser.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation macro-F1",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed for initialisation, shuffling, augmentation and split"
    )
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--workers", type=int, default=defaults.num_workers, help="DataLoader worker processes")
    parser.add_argument("--val-size", type=float, default=defaults.val_size, help="validation fraction")
    parser.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    parser.add_argument(
        "--amp-dtype",
        choices=("auto", "bfloat16", "float16"),
        default="auto",
        help="mixed-precision type on CUDA (auto: bfloat16 where supported)",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=defaults.precision,
        help="CPU arithmetic (auto: bf16 autocast where the CPU computes bf16 natively, AVX-512 BF16/AMX; else fp32)",
    )
    parser.add_argument(
        "--progressive-resize",
        type=parse_progressive_resize,
        default=None,
        metavar="EPOCH:SIZE,...",
        help="train at SIZE px from EPOCH on, e.g. 1:128,4:224 (validation stays at --image-size)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument(
        "--batch-augment",
        action="store_true",
        help="augment whole batches on the training device (GPU) instead of image by image on the CPU",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="train through torch.compile: a slow first epoch (compilation), faster later ones",
    )
    parser.add_argument(
        "--fov-crop", action="store_true", help="crop each image to its ultrasound field of view (drop borders, text)"
    )
    parser.add_argument(
        "--resize",
        choices=["stretch", "letterbox"],
        default=defaults.preprocessing.resize,
        help="stretch to the square input, or keep the aspect ratio and pad with black",
    )
    parser.add_argument(
        "--intensity",
        choices=["none", "percentile", "clahe"],
        default=defaults.preprocessing.intensity,
        help="intensity standardisation (percentile: 1st-99th percentile to 0-255; clahe needs breastus[preprocess])",
    )
    parser.add_argument(
        "--augmentation",
        choices=["default", "scanner"],
        default=defaults.augmentation,
        help="training augmentation; scanner adds gain, gamma, speckle, blur, resolution and depth changes",
    )
    parser.add_argument(
        "--seg-loss-weight",
        type=float,
        default=defaults.seg_loss_weight,
        help="unet/<encoder> models: weight of the mask loss (Dice + BCE) beside the cross-entropy",
    )
    parser.add_argument(
        "--lesion-normal-recall",
        dest="lesion_min_normal_recall",
        type=float,
        default=defaults.lesion_min_normal_recall,
        help="unet/<encoder> models: share of validation normals the calibrated lesion threshold keeps normal",
    )


def parse_progressive_resize(text: str) -> tuple[tuple[int, int], ...]:
    """``"1:128,4:224"`` -> ``((1, 128), (4, 224))`` (the ``--progressive-resize`` value)."""
    try:
        return tuple((int(e), int(s)) for e, s in (step.split(":") for step in text.split(",")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected EPOCH:SIZE steps separated by commas, e.g. 1:128,4:224; got {text!r}"
        ) from exc


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` described by parsed ``train`` options."""
    return TrainConfig(
        model=args.model,
        pretrained=args.pretrained,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        scheduler=args.scheduler,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        class_weights=None if args.class_weights == "none" else args.class_weights,
        early_stopping_patience=args.early_stopping,
        seed=args.seed,
        device=args.device,
        num_workers=args.workers,
        val_size=args.val_size,
        test_size=getattr(args, "test_size", TrainConfig().test_size),
        group_duplicates=not getattr(args, "no_group_duplicates", False),
        amp=not args.no_amp,
        amp_dtype=args.amp_dtype,
        precision=getattr(args, "precision", "auto"),
        progressive_resize=getattr(args, "progressive_resize", None),
        progress=not args.no_progress,
        batch_augment=getattr(args, "batch_augment", False),
        compile=getattr(args, "compile", False),
        preprocessing=Preprocessing(
            crop=getattr(args, "fov_crop", False),
            resize=getattr(args, "resize", "stretch"),
            intensity=getattr(args, "intensity", "none"),
        ),
        augmentation=getattr(args, "augmentation", "default"),
        seg_loss_weight=getattr(args, "seg_loss_weight", TrainConfig().seg_loss_weight),
        lesion_min_normal_recall=getattr(args, "lesion_min_normal_recall", TrainConfig().lesion_min_normal_recall),
    )


def run(args: argparse.Namespace) -> int:
    """Train, evaluate on the test split and print the metrics."""
    config = config_from_args(args)
    result = train_and_evaluate(args.data_dir, args.out, config, resume=args.resume)
    if not is_main_process():  # under torchrun, rank 0 alone reports
        return 0
    history = result.history
    print(
        f"Trained {config.model} for {len(history.records)} epoch(s); best validation macro-F1 "
        f"{history.best_score:.3f} at epoch {history.best_epoch}."
    )
    print(f"Checkpoints and history: {result.run_dir}")
    print(f"Test metrics (best checkpoint, {len(result.split.test)} held-out images, duplicates kept together):")
    print(result.test.metrics.summary())
    segmentation = result.test.segmentation
    if segmentation is not None:
        print(
            f"lesion masks: Dice {segmentation.dice:.3f} IoU {segmentation.iou:.3f} per lesion image "
            f"({segmentation.n_lesion} images)"
            if segmentation.dice is not None and segmentation.iou is not None
            else "lesion masks: no test image with a lesion mask"
        )
    if args.json:
        payload = result.test.metrics.to_dict()
        if segmentation is not None:
            payload["segmentation"] = segmentation.to_dict()
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    return 0
