"""``breastus predict --engine ray``: the archive options of ``predict`` (see :mod:`breastus.prediction._ray`)."""

from __future__ import annotations

import argparse

from breastus._errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine``, ``--out``, ``--num-workers`` and ``--ray-address`` to ``predict``."""
    group = parser.add_argument_group("archives on Ray (pip install 'breastus[ray]')")
    group.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: Ray Data actors writing one Parquet row per image to --out, unreadable "
        "files recorded as error rows (--on-error does not apply; --device auto means cpu)",
    )
    group.add_argument("--out", metavar="OUT.parquet", help="with --engine ray: Parquet dataset directory to write")
    group.add_argument(
        "--num-workers", type=int, help="with --engine ray: Ray actors; unset: one per CPU of the cluster"
    )
    group.add_argument(
        "--ray-address", metavar="ADDR", help="with --engine ray: existing cluster, e.g. ray://head:10001 or auto"
    )
    group.add_argument(
        "--no-resume", action="store_true", help="with --engine ray: refuse an OUT that already holds rows"
    )


def run(args: argparse.Namespace) -> int:
    """Predict the images named by ``args.paths`` on Ray into ``args.out``; print a summary."""
    from breastus.prediction._ray import predict_archive

    if not args.out:
        raise ConfigError("--engine ray needs --out OUT.parquet (the Parquet dataset directory to write).")
    if args.json or args.csv:
        raise ConfigError("--engine ray writes Parquet to --out; drop --json/--csv (or use --engine local).")
    if getattr(args, "frames", None) is not None:
        raise ConfigError("--engine ray classifies the first frame of a DICOM cine loop; drop --frames.")
    result = predict_archive(
        args.checkpoint,
        args.paths,
        args.out,
        num_workers=args.num_workers,
        batch_size=args.batch_size,
        backend=getattr(args, "backend", None),
        device="cpu" if args.device == "auto" else args.device,
        tta=args.tta,
        ray_address=args.ray_address,
        resume=not args.no_resume,
    )
    print(
        f"Wrote {result.written} row(s) to {result.out} ({result.predicted} predicted, {result.failed} unreadable) "
        f"in {result.seconds:.1f} s on {result.num_workers} worker(s); {result.skipped} already there were skipped."
    )
    return 0
