"""``breastus report``: write the Markdown model card of a trained run."""

from __future__ import annotations

import argparse
import sys

from breastus.reporting._model_card import MODEL_CARD_FILE, build_model_card, write_model_card

NAME = "report"
HELP = "Write a Markdown model card (intended use, data caveats, protocol, metrics with CIs) for a trained run."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` options."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of breastus train (or breastus cv)")
    parser.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help=f"output file; '-' prints to stdout (default: RUN_DIR/{MODEL_CARD_FILE})",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples for confidence intervals"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def run(args: argparse.Namespace) -> int:
    """Write (or print) the card."""
    if args.out == "-":
        sys.stdout.write(build_model_card(args.run_dir, n_bootstrap=args.bootstrap, seed=args.seed))
        return 0
    path = write_model_card(args.run_dir, args.out, n_bootstrap=args.bootstrap, seed=args.seed)
    print(f"Model card written to {path}")
    return 0
