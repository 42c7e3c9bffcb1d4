"""Copy a BUSI-style folder with every image resized so its short side is at most ``--short-side`` px.

The GPU benchmarks (``benchmarks/gpu_batch.sh``) ran on a lent machine that receives at most
64 MiB, less than BUSI (109 MB) and BrEaST (58 MB) at their original resolution. This script
made the copies it used: the aspect ratio is kept, images are resampled bilinearly and masks
with nearest neighbour, modes are kept (grayscale stays grayscale, the RGB overlays stay RGB),
and files other than PNG images are copied unchanged. ``--no-masks`` leaves the masks out;
``--grayscale`` stores each image as breastus decodes it (:func:`breastus.data.load_image`:
alpha onto black, colour to luma), which makes colour and RGBA files much smaller.
At 224 px and above the training pipeline only ever shrinks these copies further, so a model
sees nearly what it would see from the originals (two resamplings instead of one)::

    python benchmarks/shrink_dataset.py ../shared/datasets/busi /tmp/busi-224 --short-side 224

Duplicate groups should still come from the originals: run ``breastus audit ORIGINAL --json
audit.json`` and pass ``--audit-json audit.json`` to ``benchmarks/busi_cv.py`` (resizing moved
one near-duplicate pair of BUSI just past the perceptual-hash threshold).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from breastus.data import load_image


def shrink(source: Path, target: Path, short_side: int, masks: bool = True, grayscale: bool = False) -> int:
    """Write the resized copy of ``source`` to ``target``; returns the number of images written."""
    count = 0
    for src in sorted(source.rglob("*")):
        if not src.is_file():
            continue
        is_mask = "_mask" in src.stem
        if is_mask and not masks:
            continue
        dst = target / src.relative_to(source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix.lower() != ".png":
            shutil.copy2(src, dst)
            continue
        if grayscale and not is_mask:
            image = load_image(src)
        else:
            with Image.open(src) as opened:
                opened.load()
                image = opened
        width, height = image.size
        scale = short_side / min(width, height)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = image.resize(size, Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR)
        image.save(dst, optimize=True)
        count += 0 if is_mask else 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--short-side", type=int, default=224)
    parser.add_argument("--no-masks", action="store_true", help="leave the lesion masks out")
    parser.add_argument("--grayscale", action="store_true", help="store images decoded to 8-bit grayscale")
    args = parser.parse_args(argv)
    if args.target.exists() and any(args.target.iterdir()):
        parser.error(f"{args.target} exists and is not empty; choose a new folder")
    count = shrink(args.source, args.target, args.short_side, masks=not args.no_masks, grayscale=args.grayscale)
    print(f"{count} images written to {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
