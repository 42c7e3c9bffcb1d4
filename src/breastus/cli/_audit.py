"""``breastus audit``: find duplicates, label conflicts and file problems in a data folder."""

from __future__ import annotations

import argparse

from breastus.data._audit import audit
from breastus.data._duplicates import DEFAULT_HASH_THRESHOLD

NAME = "audit"
HELP = (
    "Audit a data folder (or CSV manifest): exact and near-duplicate images, label conflicts, "
    "unreadable files, missing masks, size and mode statistics."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``audit`` options."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class, or a CSV manifest")
    parser.add_argument("--json", metavar="FILE", help="write the full report to FILE as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with thumbnails to FILE")
    parser.add_argument(
        "--threshold",
        type=int,
        default=DEFAULT_HASH_THRESHOLD,
        metavar="N",
        help="largest perceptual-hash distance (of 64 bits) called a near-duplicate; -1: exact copies only",
    )
    parser.add_argument("--thumbnail-size", type=int, default=128, metavar="PX", help="HTML thumbnail side")


def run(args: argparse.Namespace) -> int:
    """Audit, print a summary and write the requested reports."""
    report = audit(args.data_dir, threshold=args.threshold)
    print(report.summary())
    if args.json:
        print(f"JSON report: {report.write_json(args.json)}")
    if args.html:
        print(f"HTML report: {report.write_html(args.html, args.thumbnail_size)}")
    return 0
