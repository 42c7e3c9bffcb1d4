"""Entry point of the ``breastus`` command.

Each sub-command lives in its own module exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; add one to :data:`COMMANDS`.
User errors (bad data, missing files, invalid options) print one ``error:`` line
and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from breastus._errors import BreastusError
from breastus._version import __version__
from breastus.cli import _audit, _cv, _evaluate, _explain, _export, _predict, _report, _serve, _train

COMMANDS: tuple[ModuleType, ...] = (_train, _evaluate, _predict, _report, _explain, _audit, _cv, _export, _serve)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="breastus",
        description="Train, evaluate and use breast ultrasound classifiers (normal / benign / malignant).",
    )
    parser.add_argument("--version", action="version", version=f"breastus {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (INFO level)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        child = sub.add_parser(
            command.NAME,
            help=command.HELP,
            description=command.HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        command.add_arguments(child)
        child.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``breastus`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        status: int = args.handler(args)
    except (BreastusError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"breastus {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"breastus {args.command}: interrupted; files already written are kept.", file=sys.stderr)
        return 130
    return status
