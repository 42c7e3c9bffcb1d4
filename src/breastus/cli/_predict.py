"""``breastus predict``: classify image files or folders."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from breastus._errors import ConfigError, DataError
from breastus._files import atomic_write
from breastus._lesion_decision import DECISIONS
from breastus.cli import _predict_ray
from breastus.data._io import IMAGE_SUFFIXES
from breastus.prediction._frames import parse_frames, predict_frames
from breastus.prediction._prediction import Prediction
from breastus.prediction._predictor import Predictor, iter_images

NAME = "predict"
HELP = "Classify images (files or folders) with a trained checkpoint."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``predict`` options."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt / last.pt, or a run folder")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="image files or folders (searched recursively)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object per image")
    output.add_argument("--csv", metavar="FILE", help="write path,label,probabilities to FILE (row by row)")
    parser.add_argument("--tta", action="store_true", help="average with the horizontally mirrored image")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="CPU arithmetic (auto: bf16 where the CPU computes it natively, AVX-512 BF16/AMX; else fp32)",
    )
    parser.add_argument(
        "--on-error", choices=["raise", "skip"], default="raise", help="what to do with unreadable images"
    )
    parser.add_argument(
        "--frames",
        metavar="all|N[,M...]",
        help="DICOM cine loops: classify every frame ('all') or the given 0-based frames, one result each "
        "(default: the first frame only)",
    )
    _predict_ray.add_arguments(parser)
    lesion = parser.add_argument_group("multi-task (unet/<encoder>) models")
    lesion.add_argument(
        "--masks",
        metavar="DIR",
        default=None,
        help="write each image's predicted lesion mask to DIR/<stem>_mask.png (0 or 255, the image's size)",
    )
    lesion.add_argument(
        "--decision",
        choices=list(DECISIONS),
        default=None,
        help="label rule: 'lesion' (normal only when no lesion is found; the default when the checkpoint "
        "has a calibrated threshold) or 'argmax'",
    )
    lesion.add_argument(
        "--pixel-spacing",
        metavar=("DX", "DY"),
        type=float,
        nargs=2,
        default=None,
        help="pixel width and height in mm (gives the lesion area in mm²)",
    )


def expand_paths(paths: Sequence[str]) -> Iterator[Path]:
    """The files named on the command line, each folder replaced by its images (sorted, masks left out)."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from iter_images(path)
        else:
            yield path


LESION_COLUMNS = ("lesion_probability", "x0", "y0", "x1", "y1", "lesion_area_px", "lesion_area_mm2", "mask")
"""Extra CSV columns for a multi-task model (``mask``: the written mask file, with ``--masks``)."""


class MaskWriter:
    """Write predicted masks as ``<stem>_mask.png`` into a folder, each file atomically.

    A file is complete or absent even if the run is interrupted, and files
    already in the folder are only replaced by the mask of an image of the same
    stem. Two images of the same stem in one run get ``<stem>_mask.png`` and
    ``<stem>-2_mask.png``, ... so no mask of this run overwrites another.

    Parameters
    ----------
    folder : str or pathlib.Path
        Created if missing.

    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise DataError(f"--masks {str(self.folder)!r} exists and is not a folder; give a folder path.")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._used: set[str] = set()

    def write(self, prediction: Prediction) -> Path:
        """Write ``prediction.mask`` and return the file's path."""
        if prediction.mask is None:
            raise ConfigError("--masks needs a multi-task model (unet/<encoder>); this checkpoint is a classifier.")
        stem = Path(prediction.path).stem if prediction.path else "image"
        name, n = stem, 1
        while name in self._used:
            n += 1
            name = f"{stem}-{n}"
        self._used.add(name)
        target = self.folder / f"{name}_mask.png"
        image = Image.fromarray(np.where(prediction.mask, 255, 0).astype(np.uint8), mode="L")
        atomic_write(target, lambda handle: image.save(handle, format="PNG"))
        return target


def run(args: argparse.Namespace) -> int:
    """Predict and print (or write) the results as they come."""
    if args.engine == "ray":
        return _predict_ray.run(args)
    frames = args.frames is not None
    chosen = parse_frames(args.frames) if frames else None  # a bad value fails before the model loads
    predictor = Predictor.from_checkpoint(
        args.checkpoint, device=args.device, tta=args.tta, batch_size=args.batch_size,
        decision=args.decision,
        precision=args.precision,
    )
    if args.masks and not predictor.multitask:
        raise ConfigError(
            f"--masks needs a multi-task model (unet/<encoder>); {args.checkpoint!r} holds the classifier "
            f"{predictor.model_info.name}. Train one with `breastus train --model unet/resnet18` or leave out --masks."
        )
    spacing = None if args.pixel_spacing is None else tuple(args.pixel_spacing)
    if frames:
        predictions = predict_frames(predictor, expand_paths(args.paths), chosen, on_error=args.on_error)
    else:
        predictions = predictor.predict_paths(
            expand_paths(args.paths), on_error=args.on_error, pixel_spacing_mm=spacing
        )
    writer_of_masks = MaskWriter(args.masks) if args.masks else None
    names = predictor.class_names
    count = 0
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            extra = list(LESION_COLUMNS) if predictor.multitask else []
            writer.writerow(["path", *(["frame"] if frames else []), "label", *[f"p_{c}" for c in names], *extra])
            for p in predictions:  # one flushed row per image: an interrupted run keeps what it finished
                frame = [] if not frames else ["" if p.frame is None else p.frame]
                mask_file = writer_of_masks.write(p) if writer_of_masks else None
                lesion = _lesion_cells(p, mask_file) if predictor.multitask else []
                writer.writerow([p.path, *frame, p.label, *[f"{p.probabilities[c]:.6f}" for c in names], *lesion])
                handle.flush()
                count += 1
    else:
        for p in predictions:
            mask_file = writer_of_masks.write(p) if writer_of_masks else None
            if args.json:
                row: dict[str, Any] = p.to_dict()
                if mask_file is not None:
                    row["mask"] = str(mask_file)
                print(json.dumps(row), flush=True)
            else:
                print(_line(p), flush=True)
            count += 1
    if count == 0:
        raise DataError(
            f"No image was classified: {args.paths} hold no readable image file "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}; lesion masks and hidden files are skipped)."
        )
    return 0


def _lesion_cells(p: Prediction, mask_file: Path | None) -> list[str]:
    box = p.lesion_box if p.lesion_box is not None else ("", "", "", "")
    return [
        "" if p.lesion_probability is None else f"{p.lesion_probability:.6f}",
        *[str(v) for v in box],
        "" if p.lesion_area_px is None else str(p.lesion_area_px),
        "" if p.lesion_area_mm2 is None else f"{p.lesion_area_mm2:.4f}",
        "" if mask_file is None else str(mask_file),
    ]


def _line(p: Prediction) -> str:
    probs = "  ".join(f"{c}={v:.3f}" for c, v in p.probabilities.items())
    where = p.path if p.frame is None else f"{p.path}\tframe {p.frame}"
    if p.lesion_probability is None:
        return f"{where}\t{p.label}\t{probs}"
    area = "" if p.lesion_area_mm2 is None else f" ({p.lesion_area_mm2:.1f} mm²)"
    lesion = f"lesion={p.lesion_probability:.3f}  box={p.lesion_box}  area={p.lesion_area_px} px{area}"
    return f"{where}\t{p.label}\t{probs}\t{lesion}"
