"""The layers hold: the model card's option table matches the CLI, and the import contracts pass."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from breastus.cli._main import COMMANDS
from breastus.reporting._reproduce import COMMAND_OPTIONS
from breastus.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _parser_options(command: str) -> dict[str, str]:
    """``TrainConfig field -> option`` as the real ``breastus <command>`` parser defines them."""
    parser = argparse.ArgumentParser()
    (module,) = [m for m in COMMANDS if command == m.NAME]
    module.add_arguments(parser)
    options = {option for action in parser._actions for option in action.option_strings}
    special = {
        "early_stopping_patience": "--early-stopping",
        "num_workers": "--workers",
        "lesion_min_normal_recall": "--lesion-normal-recall",
    }
    found: dict[str, str] = {}
    for name in TrainConfig.__dataclass_fields__:
        option = special.get(name, "--" + name.replace("_", "-"))
        if option in options:
            found[name] = option
        elif f"--no-{name.replace('_', '-')}" in options:
            found[name] = f"--no-{name.replace('_', '-')}"
    return found


@pytest.mark.parametrize("command", ["train", "cv"])
def test_model_card_option_table_matches_the_cli(command: str) -> None:
    assert COMMAND_OPTIONS[command] == _parser_options(command), (
        f"breastus {command} sets other TrainConfig fields than breastus.reporting._reproduce.COMMAND_OPTIONS"
        f"[{command!r}] lists; update that table when adding or renaming a CLI option."
    )


def test_library_does_not_import_the_cli() -> None:
    """Importing the whole library (everything but the CLI) leaves breastus.cli unimported."""
    code = (
        "import sys, importlib, pathlib, breastus\n"
        "root = pathlib.Path(breastus.__file__).parent\n"
        "for f in sorted(root.rglob('*.py')):\n"
        "    name = '.'.join(('breastus', *f.relative_to(root).with_suffix('').parts)).removesuffix('.__init__')\n"
        "    if not name.startswith('breastus.cli') and name != 'breastus.__main__':\n"
        "        importlib.import_module(name)\n"
        "print(sorted(n for n in sys.modules if n.startswith('breastus.cli')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed")
def test_import_contracts_hold() -> None:
    result = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
