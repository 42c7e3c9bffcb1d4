"""Command-line interface: ``breastus train | evaluate | predict``."""

from breastus.cli._main import main as main

__all__ = ["main"]
