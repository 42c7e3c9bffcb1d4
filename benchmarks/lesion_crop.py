"""Copy a BUSI-style folder with every image cropped to its lesion: the "lesion box given" protocol.

Many published breast-ultrasound classifiers are trained and tested on regions of interest
around the lesion rather than on whole frames; in the clinic the sonographer has usually
marked the lesion already. This script makes such a copy from the lesion masks, so that the
unchanged ``breastus cv`` / ``benchmarks/busi_cv.py`` and ``benchmarks/external_eval.py``
measure what knowing the lesion's box buys (docs/guide/generalisation.rst)::

    python benchmarks/lesion_crop.py ../shared/datasets/busi /tmp/busi-lesion
    python benchmarks/lesion_crop.py ../shared/datasets/breast-lesions-usg /tmp/breast-lesion

Each image is decoded as breastus decodes it (:func:`breastus.data.load_image`: 8-bit
grayscale) and cropped by :func:`breastus.transforms.crop_to_lesion` to the bounding box of the
union of its masks (:func:`breastus.transforms.lesion_box`), widened by ``--margin`` times the
box's longer side on every side (clipped to the frame). An image without a lesion
(BUSI's and BrEaST's "normal" class) gets a centred box of the median relative lesion-box size
of the folder, each axis widened by ``--margin`` of its own side, so that crops of every class
have similar fields of view.
Masks are not copied. The crop uses the masks of the test images too: it is an upper bound for
a workflow where a person or a detector supplies the box, not a fully automatic pipeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from breastus.data import discover_folder, load_image, load_mask
from breastus.transforms import crop_to_lesion, lesion_box


def crop_folder(source: Path, target: Path, margin: float = 0.25) -> dict[str, int]:
    """Write the lesion crops of ``source`` to ``target``; returns counts of lesion and centre crops."""
    samples = discover_folder(source)
    boxes: dict[Path, tuple[int, int, int, int] | None] = {}
    relative: list[tuple[float, float]] = []
    for sample in samples:  # boxes first (the median box size is needed for the images without one)
        with Image.open(sample.path) as header:  # the size only: each image is decoded once, below
            width, height = header.size
        box = lesion_box(load_mask(sample.mask_paths, (width, height))) if sample.mask_paths else None
        boxes[sample.path] = box
        if box is not None:
            top, bottom, left, right = box
            side = max(bottom - top, right - left)
            relative.append((side / width, side / height))
    if not relative:
        raise SystemExit(f"No lesion masks found under {source}; lesion crops need <image>_mask.png files.")
    median_width, median_height = np.median(np.asarray(relative), axis=0)
    for sample in samples:
        image = load_image(sample.path)
        box = boxes[sample.path]
        if box is None:  # a centred box, each axis widened by the margin of its own side
            half_w = (1 + 2 * margin) * median_width * image.width / 2
            half_h = (1 + 2 * margin) * median_height * image.height / 2
            centre_x, centre_y = image.width / 2, image.height / 2
            centre = (
                max(0, int(centre_y - half_h)),
                min(image.height, int(centre_y + half_h)),
                max(0, int(centre_x - half_w)),
                min(image.width, int(centre_x + half_w)),
            )
            crop = crop_to_lesion(image, centre, margin=0.0)
        else:
            crop = crop_to_lesion(image, box, margin)
        out = target / sample.path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        crop.save(out)
    lesions = sum(box is not None for box in boxes.values())
    return {"lesion_crops": lesions, "centre_crops": len(boxes) - lesions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="BUSI-style folder with <image>_mask.png lesion masks")
    parser.add_argument("target", type=Path, help="new folder for the crops")
    parser.add_argument("--margin", type=float, default=0.25, help="context around the box, × its longer side")
    args = parser.parse_args(argv)
    if args.margin < 0:
        parser.error(f"--margin must be >= 0, got {args.margin}")
    if args.target.exists() and any(args.target.iterdir()):
        parser.error(f"{args.target} exists and is not empty; choose a new folder")
    counts = crop_folder(args.source, args.target, args.margin)
    print(f"{counts['lesion_crops']} lesion crops and {counts['centre_crops']} centre crops written to {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
