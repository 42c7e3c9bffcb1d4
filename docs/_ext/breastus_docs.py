"""Sphinx extension for the breastus docs: pages generated from the code at build time.

- ``.. breastus-api::`` (a comment line in ``api.rst``) is replaced by the API
  reference: an autosummary of ``breastus.__all__`` and one ``automodule`` per
  public subpackage (found with :mod:`pkgutil`, so new ones appear by themselves).
- ``.. breastus-examples::`` (in ``guide/examples.rst``) is replaced by one
  section per ``examples/*.py`` with the file included.
- Toctree globs over folders that hold no page yet are dropped from ``index.rst``
  instead of failing the ``-W`` build.
- Cross-references to a public object under another path (``breastus.Predictor``,
  ``breastus.prediction._predictor.Predictor``) are redirected to where it is
  documented.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer, PycodeError

DOCS = Path(__file__).resolve().parents[1]
REPO = DOCS.parent
ORDER = ["data", "transforms", "models", "training", "prediction", "evaluation"]
PRIVATE_SUBPACKAGES = {"cli"}
API_MARKER = ".. breastus-api::"
EXAMPLES_MARKER = ".. breastus-examples::"

_canonical: dict[int, str] = {}


def public_subpackages() -> list[str]:
    """Names of the public subpackages of breastus, in data-flow order."""
    import breastus

    found = [
        m.name
        for m in pkgutil.iter_modules(breastus.__path__)
        if m.ispkg and not m.name.startswith("_") and m.name not in PRIVATE_SUBPACKAGES
    ]
    return [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)


def _is_data(obj: Any) -> bool:
    return not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj))


def _attribute_doc(package: ModuleType, name: str) -> str:
    """The ``#:`` or string docstring of data ``name`` in the private module that defines it."""
    value = getattr(package, name)
    for info in pkgutil.iter_modules(package.__path__):
        module_name = f"{package.__name__}.{info.name}"
        module = importlib.import_module(module_name)
        if getattr(module, name, None) is not value:
            continue
        try:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except PycodeError:
            continue
        lines = docs.get(("", name))
        if lines:
            return "\n".join(lines).strip()
    return ""


def _data_directive(package: ModuleType, name: str) -> list[str]:
    value = getattr(package, name)
    text = repr(value) if isinstance(value, (int, float, str, tuple, frozenset)) else None
    lines = [f".. py:data:: {name}", f"   :module: {package.__name__}"]
    if text is not None and len(text) < 200:
        lines.append(f"   :value: {text}")
    doc = _attribute_doc(package, name)
    lines.append("")
    lines += [f"   {line}" if line else "" for line in doc.splitlines()]
    return [*lines, ""]


def build_canonical() -> dict[int, str]:
    """Where each public object is documented: ``id(object) -> dotted name``."""
    import breastus

    canonical: dict[int, str] = {}
    for sub in public_subpackages():
        package = importlib.import_module(f"breastus.{sub}")
        for name in getattr(package, "__all__", []):
            obj = getattr(package, name)
            if not _is_data(obj):
                canonical.setdefault(id(obj), f"breastus.{sub}.{name}")
    for name in breastus.__all__:
        obj = getattr(breastus, name)
        if not _is_data(obj):
            canonical.setdefault(id(obj), f"breastus.{name}")
    return canonical


def api_rst() -> str:
    """The generated part of ``api.rst``."""
    import breastus

    canonical = build_canonical()
    top_only = []
    entries = []
    constants = []
    for name in breastus.__all__:
        obj = getattr(breastus, name)
        if name == "__version__":
            continue
        target = canonical.get(id(obj), f"breastus.{name}") if not _is_data(obj) else None
        if target is None:
            target = next(
                (
                    f"breastus.{sub}.{name}"
                    for sub in public_subpackages()
                    if getattr(importlib.import_module(f"breastus.{sub}"), name, None) is obj
                ),
                f"breastus.{name}",
            )
        if target == f"breastus.{name}":
            top_only.append(name)
        if _is_data(obj):
            constants.append(f":data:`~{target}`")
        else:
            entries.append(f"   ~{target.removeprefix('breastus.')}")
    out = [
        "The ``breastus`` package",
        "------------------------",
        "",
        ".. automodule:: breastus",
        "",
        "Everything in ``breastus.__all__`` (``from breastus import ...``); each name links to its",
        "documentation, in its subpackage below.",
        "",
        ".. autosummary::",
        "   :nosignatures:",
        "",
        *entries,
        "",
        *([f"Constants: {', '.join(constants)}.", ""] if constants else []),
        ".. py:data:: __version__",
        "   :module: breastus",
        f"   :value: {breastus.__version__!r}",
        "",
        "   The installed version, ``MAJOR.MINOR.PATCH`` (semantic versioning).",
        "",
    ]
    for name in top_only:
        obj = getattr(breastus, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            kind = "autoexception"
        elif inspect.isclass(obj):
            kind = "autoclass"
        elif inspect.isroutine(obj):
            kind = "autofunction"
        else:
            kind = "autodata"
        out += [f".. {kind}:: breastus.{name}", *(["   :members:"] if kind == "autoclass" else []), ""]
    for sub in public_subpackages():
        package = importlib.import_module(f"breastus.{sub}")
        title = f"``breastus.{sub}``"
        out += [title, "-" * len(title), "", f".. automodule:: breastus.{sub}", "   :members:", ""]
        for name in getattr(package, "__all__", []):
            if _is_data(getattr(package, name)):
                out += _data_directive(package, name)
    return "\n".join(out) + "\n"


def _summary(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def examples_rst() -> str:
    """One section per ``examples/*.py``: its purpose, how to run it, and the file."""
    files = sorted((REPO / "examples").glob("*.py"))
    first = ["train_busi.py", "predict_folder.py"]
    files.sort(key=lambda p: (first.index(p.name) if p.name in first else len(first), p.name))
    out: list[str] = []
    for file in files:
        title = f"``examples/{file.name}``"
        summary = _summary(file).replace("*", r"\*").replace("`", "'")
        out += [title, "-" * len(title), ""]
        if summary:
            out += [summary, ""]
        out += [
            "Run the tiny version (as CI does)::",
            "",
            f"    python examples/{file.name} --smoke",
            "",
            f".. literalinclude:: ../../examples/{file.name}",
            "   :language: python",
            "   :linenos:",
            "",
        ]
    if not files:
        out += ["No example scripts yet.", ""]
    return "\n".join(out)


def _drop_empty_globs(text: str) -> str:
    """Remove toctrees whose only glob matches no page (Sphinx would warn)."""

    def keep(match: re.Match[str]) -> str:
        block = match.group(0)
        globs = re.findall(r"^\s+([\w/-]+)/\*\s*$", block, re.M)
        others = re.findall(r"^\s{3}(?!:)(?![\w/-]+/\*\s*$)\S.*$", block, re.M)
        if globs and not others and not any(any((DOCS / g).glob("*.rst")) for g in globs):
            return ""
        return block

    return re.sub(r"^\.\. toctree::\n(?:[ \t]+.*\n|[ \t]*\n)*", keep, text, flags=re.M)


def on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    text = source[0]
    if API_MARKER in text:
        text = text.replace(API_MARKER, api_rst())
    if EXAMPLES_MARKER in text:
        text = text.replace(EXAMPLES_MARKER, examples_rst())
        for file in (REPO / "examples").glob("*.py"):
            app.env.note_dependency(str(file))
    if docname == app.config.root_doc:
        text = _drop_empty_globs(text)
    source[0] = text


def on_env_get_outdated(
    app: Sphinx, env: BuildEnvironment, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Always re-read the generated pages: new public names or examples change them."""
    generated = []
    for docname in env.found_docs:
        path = env.doc2path(docname)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            continue
        if API_MARKER in text or EXAMPLES_MARKER in text or docname == app.config.root_doc:
            generated.append(docname)
    return generated


def _lookup(dotted: str) -> Any:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise AttributeError(dotted)


def on_missing_reference(app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element) -> Any:
    """Resolve ``breastus.X`` / private paths to the page where the object is documented."""
    if node.get("refdomain") != "py":
        return None
    target = str(node.get("reftarget", ""))
    if not target.startswith("breastus"):
        return None
    if not _canonical:
        _canonical.update(build_canonical())
    parts = target.split(".")
    for i in range(len(parts), 1, -1):
        try:
            obj = _lookup(".".join(parts[:i]))
        except (AttributeError, ImportError):
            continue
        name = _canonical.get(id(obj))
        if name is None:
            continue
        new = ".".join([name, *parts[i:]])
        if new == target:
            return None
        domain = env.domains["py"]
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], new, node, contnode)
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", on_source_read)
    app.connect("env-get-outdated", on_env_get_outdated)
    app.connect("missing-reference", on_missing_reference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
