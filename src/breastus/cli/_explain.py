"""``breastus explain``: heatmap overlays, and with ``--masks`` how well heatmaps point at the lesion."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from breastus._errors import ConfigError, DataError
from breastus._run_files import read_split
from breastus.cli._predict import expand_paths
from breastus.data._dataset import UltrasoundDataset
from breastus.data._io import load_image
from breastus.explain._cam import CAM_METHODS, class_model
from breastus.explain._layers import find_target_layer
from breastus.explain._localisation import DEFAULT_GAUSSIAN_SIGMA, evaluate_localisation
from breastus.explain._overlay import save_overlay
from breastus.prediction._prediction import Prediction
from breastus.prediction._predictor import ImageInput, Predictor

NAME = "explain"
HELP = (
    "Write class-activation heatmap overlays for images; with --masks, score the heatmaps against the "
    "lesion masks of a labelled folder (pointing game, mass inside) next to random and centred-Gaussian baselines."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``explain`` options."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt / last.pt, or a run folder")
    parser.add_argument(
        "paths",
        metavar="PATH",
        nargs="+",
        help="image files or folders (searched recursively); with --masks one labelled folder or CSV manifest",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the overlay PNGs (and reports)")
    parser.add_argument("--method", choices=CAM_METHODS, default="gradcam", help="heatmap method")
    parser.add_argument(
        "--target",
        default=None,
        metavar="CLASS",
        help="class to explain (name or index); default the predicted class; with --masks also 'true'",
    )
    parser.add_argument(
        "--layer", default=None, metavar="NAME", help="target layer as a dotted module path; default automatic"
    )
    parser.add_argument(
        "--masks",
        action="store_true",
        help="score heatmaps against lesion masks; images without a lesion (normal) are skipped",
    )
    parser.add_argument(
        "--split",
        metavar="SPLIT_JSON",
        default=None,
        help="with --masks: use only the --part indices of this split.json (written by breastus train)",
    )
    parser.add_argument("--part", choices=["train", "val", "test"], default="test", help="which part of --split to use")
    parser.add_argument(
        "--sigma",
        type=float,
        default=DEFAULT_GAUSSIAN_SIGMA,
        help="standard deviation of the centred-Gaussian baseline, as a fraction of the image side",
    )
    parser.add_argument("--tolerance", type=float, default=0.0, help="pointing-game tolerance in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-heatmap baseline")
    parser.add_argument("--no-overlays", action="store_true", help="with --masks: write only the reports")
    parser.add_argument("--width", type=float, default=4.0, help="overlay width in inches (at --dpi)")
    parser.add_argument("--dpi", type=int, default=100, help="overlay pixels per inch")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward/backward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def _parse_target(value: str | None, class_names: Sequence[str], allow_true: bool) -> int | str | None:
    if value is None:
        return None
    if value == "true":
        if not allow_true:
            raise ConfigError("--target true needs --masks (the true class comes from the labelled folder).")
        return value
    if value in class_names:
        return value
    if value.isdigit() and int(value) < len(class_names):
        return int(value)
    raise ConfigError(f"--target must be one of {list(class_names)}, an index 0..{len(class_names) - 1}, or 'true'.")


def _unique_png(folder: Path, stem: str, suffix: str, taken: set[Path]) -> Path:
    candidate = folder / f"{stem}_{suffix}.png"
    number = 2
    while candidate in taken:
        candidate = folder / f"{stem}_{suffix}_{number}.png"
        number += 1
    taken.add(candidate)
    return candidate


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run(args: argparse.Namespace) -> int:
    """Explain images, or score heatmaps against masks with ``--masks``."""
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be an int >= 1. Got {args.batch_size} instead.")
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, batch_size=args.batch_size)
    explained_model, explained_layer = class_model(predictor, args.layer)
    layer_name, _ = find_target_layer(explained_model, explained_layer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.masks:
        return _run_masks(args, predictor, layer_name, out)
    if args.split is not None:
        raise ConfigError("--split needs --masks.")
    target = _parse_target(args.target, predictor.class_names, allow_true=False)
    taken: set[Path] = set()
    paths = list(expand_paths(args.paths))
    for chunk in _chunks(paths, args.batch_size):
        images: list[ImageInput] = [load_image(p) for p in chunk]
        predictions = predictor.predict(images)
        heatmaps = predictor.explain(images, target, args.method, args.layer)
        for path, image, prediction, heatmap in zip(chunk, images, predictions, heatmaps, strict=True):
            explained = _target_name(target, prediction, predictor.class_names)
            png = save_overlay(
                _unique_png(out, path.stem, args.method, taken),
                image,
                heatmap,
                label=prediction.label,
                probability=prediction.confidence,
                target=explained,
                width=args.width,
                dpi=args.dpi,
                predicted_mask=prediction.mask,
                lesion_probability=prediction.lesion_probability,
            )
            print(f"{path}\t{prediction.label}\t{prediction.confidence:.3f}\t{png}", flush=True)
    return 0


def _target_name(target: int | str | None, prediction: Prediction, class_names: Sequence[str]) -> str:
    if target is None:
        return prediction.label
    return target if isinstance(target, str) else class_names[target]


def _select(dataset: UltrasoundDataset, split: str | None, part: str) -> list[int]:
    if split is None:
        return list(range(len(dataset)))
    path = Path(split)
    saved = read_split(path)
    if part not in saved:
        raise DataError(f"Split file {str(path)!r} has no {part!r} list; its keys are {sorted(saved)}.")
    indices = [int(i) for i in saved[part]]
    if indices and max(indices) >= len(dataset):
        raise DataError(
            f"Split file {str(path)!r} indexes image {max(indices)} but the data holds {len(dataset)} images; "
            "pass the folder the run was trained on."
        )
    recorded = saved.get("paths")
    if recorded is not None:
        current = [str(p) for p in dataset.paths]
        differing = [i for i in indices if Path(recorded[i]).name != Path(current[i]).name]
        if len(recorded) != len(current) or differing:
            raise DataError(
                f"Split file {str(path)!r} was made for other images (first difference at index "
                f"{differing[0] if differing else len(current)}); pass the folder the run was trained on."
            )
    return indices


def _run_masks(args: argparse.Namespace, predictor: Predictor, layer_name: str, out: Path) -> int:
    if len(args.paths) != 1:
        raise ConfigError(f"--masks takes one labelled folder or CSV manifest. Got {len(args.paths)} paths.")
    dataset = UltrasoundDataset.from_path(args.paths[0], predictor.class_names)
    target_arg = _parse_target(args.target, predictor.class_names, allow_true=True)
    names = predictor.class_names
    kept: list[int] = []
    masks: list[np.ndarray] = []
    skipped = 0
    for index in _select(dataset, args.split, args.part):
        mask = dataset.load_mask(index)
        if mask is None or not mask.any():
            skipped += 1
            continue
        kept.append(index)
        masks.append(mask)
    if not kept:
        raise DataError(f"No image in {args.paths[0]!r} (selection) has a non-empty lesion mask to score against.")
    heatmaps: list[np.ndarray] = []
    rows: list[dict[str, Any]] = []
    overlay_dir = out / "overlays"
    for chunk in _chunks(list(range(len(kept))), args.batch_size):
        images: list[ImageInput] = [dataset.load_image(kept[i]) for i in chunk]
        truths = [names[dataset.samples[kept[i]].label] for i in chunk]
        predictions = predictor.predict(images)
        target = truths if target_arg == "true" else target_arg
        maps = predictor.explain(images, target, args.method, args.layer)
        heatmaps += maps
        for i, image, truth, prediction, heatmap in zip(chunk, images, truths, predictions, maps, strict=True):
            path = dataset.samples[kept[i]].path
            explained = truth if target_arg == "true" else _target_name(target_arg, prediction, names)
            row = {
                "index": kept[i],
                "path": str(path),
                "true": truth,
                "predicted": prediction.label,
                "probability": round(prediction.confidence, 6),
                "target": explained,
                "overlay": "",
            }
            if not args.no_overlays:
                status = "correct" if prediction.label == truth else "wrong"
                png = overlay_dir / truth / f"{path.stem}_{args.method}_{status}.png"
                save_overlay(
                    png,
                    image,
                    heatmap,
                    label=prediction.label,
                    probability=prediction.confidence,
                    target=explained,
                    truth=truth,
                    mask=masks[i],
                    width=args.width,
                    dpi=args.dpi,
                    predicted_mask=prediction.mask,
                    lesion_probability=prediction.lesion_probability,
                )
                row["overlay"] = str(png)
            rows.append(row)
    labels = [row["true"] for row in rows]
    report = evaluate_localisation(heatmaps, masks, labels, args.method, args.sigma, args.tolerance, args.seed)
    for row, *scores in zip(
        rows,
        report.method.image_hits,
        report.method.image_mass,
        report.gaussian.image_hits,
        report.gaussian.image_mass,
        strict=True,
    ):
        row.update(
            hit=scores[0], mass_inside=round(scores[1], 6), gaussian_hit=scores[2], gaussian_mass=round(scores[3], 6)
        )
    payload = {
        "checkpoint": str(args.checkpoint),
        "data": str(args.paths[0]),
        "split": args.split,
        "part": args.part if args.split else None,
        "method": args.method,
        "layer": layer_name,
        "target": args.target or "predicted",
        "skipped_without_lesion": skipped,
        "accuracy": float(np.mean([r["predicted"] == r["true"] for r in rows])),
        **report.to_dict(),
    }
    (out / "localisation.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    with (out / "localisation.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(
        f"{args.method} heatmaps at layer {layer_name!r} of {predictor.model_info.name}, target "
        f"{payload['target']}, on {len(rows)} images with lesion masks ({skipped} without a lesion skipped):"
    )
    print(report.summary())
    print(f"Reports: {out / 'localisation.json'}, {out / 'localisation.csv'}")
    return 0
