"""The public API (names, signatures, dataclass fields, CLI options) matches tests/api_snapshot.json.

An accidental break of the public API fails here with a diff. When a change is
intended (an addition, or a removal after its deprecation period, recorded in
CHANGELOG.md), regenerate the snapshot with either of::

    python tests/test_api_stability.py --update
    BREASTUS_UPDATE_API_SNAPSHOT=1 python -m pytest tests/test_api_stability.py

and commit the new ``tests/api_snapshot.json`` with the change.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import inspect
import json
import os
import pkgutil
import re
import sys
from pathlib import Path
from typing import Any

import pytest

SNAPSHOT = Path(__file__).with_name("api_snapshot.json")
UPDATE_ENV = "BREASTUS_UPDATE_API_SNAPSHOT"
PRIVATE_SUBPACKAGES = {"cli"}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def public_modules() -> list[str]:
    """``breastus`` and its public subpackages (new ones are picked up automatically)."""
    import breastus

    subpackages = sorted(
        f"breastus.{m.name}"
        for m in pkgutil.iter_modules(breastus.__path__)
        if m.ispkg and not m.name.startswith("_") and m.name not in PRIVATE_SUBPACKAGES
    )
    return ["breastus", *subpackages]


def _clean(text: str) -> str:
    return _ADDRESS.sub("", text)


def _signature(obj: Any) -> str:
    try:
        return _clean(str(inspect.signature(obj)))
    except (TypeError, ValueError):
        return "(<no signature>)"


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe_class(prefix: str, cls: type) -> dict[str, str]:
    out: dict[str, str] = {}
    bases = ", ".join(_qualname(b) for b in cls.__bases__)
    kind = "exception" if issubclass(cls, BaseException) else "class"
    out[prefix] = f"{kind}({bases}) {_signature(cls)}"
    if dataclasses.is_dataclass(cls):
        params = getattr(cls, "__dataclass_params__", None)
        out[prefix] += f" dataclass(frozen={getattr(params, 'frozen', False)})"
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f" = {_clean(repr(f.default))}"
            elif f.default_factory is not dataclasses.MISSING:
                default = " = <factory>"
            else:
                default = ""
            out[f"{prefix}.{f.name}"] = f"field: {f.type}{default}"
    if issubclass(cls, enum.Enum):
        for member in cls:
            out[f"{prefix}.{member.name}"] = f"enum member = {member.value!r}"
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("breastus"):
            continue
        for name, raw in vars(klass).items():
            if name in seen or (name.startswith("_") and name != "__call__"):
                continue
            seen.add(name)
            key = f"{prefix}.{name}"
            if key in out:
                continue
            if isinstance(raw, property):
                out[key] = "property"
            elif isinstance(raw, classmethod):
                out[key] = f"classmethod{_signature(getattr(cls, name))}"
            elif isinstance(raw, staticmethod):
                out[key] = f"staticmethod{_signature(getattr(cls, name))}"
            elif inspect.isfunction(raw):
                out[key] = f"method{_signature(raw)}"
            elif dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)}:
                continue
            elif not callable(raw):
                out[key] = f"attribute: {type(raw).__name__}"
    return out


def _describe(prefix: str, obj: Any) -> dict[str, str]:
    if inspect.isclass(obj):
        return _describe_class(prefix, obj)
    if inspect.isroutine(obj):
        return {prefix: f"function{_signature(obj)}"}
    if inspect.ismodule(obj):
        return {prefix: f"module {obj.__name__}"}
    if prefix.endswith(".__version__"):
        return {prefix: "data: str"}
    value = _clean(repr(obj))
    return {prefix: f"data: {type(obj).__name__} = {value}"}


def _cli() -> dict[str, str]:
    from breastus.cli._main import build_parser

    out: dict[str, str] = {}
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in sorted(action.choices.items()):
                for option in sub._actions:
                    if isinstance(option, argparse._HelpAction):
                        continue
                    flag = "/".join(option.option_strings) or option.dest
                    out[f"cli: breastus {name} {flag}"] = f"default={option.default!r}"
    return out


def api_description() -> dict[str, str]:
    """Every public name and its signature as ``{dotted name: description}``."""
    out: dict[str, str] = {}
    described: dict[int, str] = {}
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        names = list(getattr(module, "__all__", []))
        out[f"{module_name}.__all__"] = ", ".join(sorted(names))
        for name in names:
            obj = getattr(module, name)
            key = f"{module_name}.{name}"
            first = described.get(id(obj)) if (inspect.isclass(obj) or inspect.isroutine(obj)) else None
            if first is not None:
                out[key] = f"same object as {first}"
                continue
            if inspect.isclass(obj) or inspect.isroutine(obj):
                described[id(obj)] = key
            out.update(_describe(key, obj))
    out.update(_cli())
    return dict(sorted(out.items()))


def diff_api(expected: dict[str, str], current: dict[str, str]) -> str:
    """A readable report of what changed between two API descriptions ('' if nothing)."""
    removed = sorted(set(expected) - set(current))
    added = sorted(set(current) - set(expected))
    changed = sorted(k for k in set(expected) & set(current) if expected[k] != current[k])
    if not (removed or added or changed):
        return ""
    lines = [f"The public API differs from {SNAPSHOT.name}:"]
    for key in removed:
        lines.append(f"  REMOVED  {key}\n           was: {expected[key]}")
    for key in changed:
        lines.append(f"  CHANGED  {key}\n           was: {expected[key]}\n           now: {current[key]}")
    for key in added:
        lines.append(f"  ADDED    {key}\n           now: {current[key]}")
    lines += [
        "",
        "Removing or changing a public name, signature, field or option breaks users: keep the old form working "
        "with a FutureWarning first (breastus._deprecation.warn_deprecated / deprecated_parameter) and record "
        "the change in CHANGELOG.md. Additions are backward compatible but must be recorded too.",
        "If the change is intended, regenerate the snapshot:",
        "    python tests/test_api_stability.py --update",
        f"    (or {UPDATE_ENV}=1 python -m pytest tests/test_api_stability.py)",
    ]
    return "\n".join(lines)


def write_snapshot() -> dict[str, str]:
    current = api_description()
    SNAPSHOT.write_text(json.dumps(current, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return current


def test_public_api_matches_snapshot() -> None:
    if os.environ.get(UPDATE_ENV):
        write_snapshot()
        return
    if not SNAPSHOT.is_file():
        pytest.fail(f"{SNAPSHOT} is missing; create it with: python tests/test_api_stability.py --update")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    report = diff_api(expected, api_description())
    if report:
        pytest.fail(report, pytrace=False)


@pytest.mark.parametrize("module_name", public_modules())
def test_all_names_exist_and_are_unique(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names, f"{module_name} has no __all__; every public package lists its public names"
    assert len(names) == len(set(names)), f"{module_name}.__all__ lists a name twice"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module_name}.__all__ lists {missing}, which {module_name} does not define"


def test_diff_names_removed_changed_and_added() -> None:
    old = {"breastus.f": "function(x: 'int')", "breastus.g": "function()"}
    new = {"breastus.f": "function(x: 'int', y: 'int')", "breastus.h": "function()"}
    report = diff_api(old, new)
    assert "REMOVED  breastus.g" in report
    assert (
        "CHANGED  breastus.f\n           was: function(x: 'int')\n           now: function(x: 'int', y: 'int')"
        in report
    )
    assert "ADDED    breastus.h" in report and "--update" in report
    assert diff_api(old, dict(old)) == ""


def test_description_covers_signatures_fields_and_cli() -> None:
    api = api_description()
    assert api["breastus.create_model"].startswith("function(name: 'str' = 'resnet18'")
    assert api["breastus.TrainConfig.epochs"] == "field: int = 20"
    assert api["breastus.Predictor.predict_folder"].startswith("method(self, folder")
    assert api["breastus.Predictor.from_checkpoint"].startswith("classmethod(path")
    assert api["breastus.ConfigError"].startswith("exception(breastus._errors.BreastusError, builtins.ValueError)")
    assert api["breastus.models.create_model"] == "same object as breastus.create_model"
    assert "cli: breastus train --epochs" in api and "cli: breastus report --out" in api


if __name__ == "__main__":
    if "--update" not in sys.argv[1:]:
        sys.exit("usage: python tests/test_api_stability.py --update   (rewrites tests/api_snapshot.json)")
    written = write_snapshot()
    print(f"Wrote {len(written)} entries to {SNAPSHOT}")
