"""Sphinx configuration of the breastus documentation.

Build (warnings are errors, as in CI)::

    sphinx-build -W -b html docs docs/_build/html

No network access is needed: intersphinx is off and the theme is Sphinx's
default (alabaster). The API reference and the examples page are generated at
build time by ``docs/_ext/breastus_docs.py`` from the installed package and the
files in ``examples/``, so new public names and new examples appear by
themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent / "src"))  # document the source tree even without an install

import breastus  # noqa: E402

project = "breastus"
author = "breastus developers"
copyright = "breastus developers"
release = breastus.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "breastus_docs",
]

# numpy-style docstrings only
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_preprocess_types = False

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "groupwise"
autodoc_class_signature = "mixed"
# Overrides without a docstring (torchvision Transform.transform, ...) would inherit
# upstream docstrings that reference upstream labels; keep them out.
autodoc_inherit_docstrings = False
autosummary_generate = False

nitpicky = False
# Type words in numpy docstrings ("path", "name") become cross-references; when
# several attributes share such a name Sphinx warns about the ambiguity. Those
# words are descriptions, not references, so that warning is not an error here.
suppress_warnings = ["ref.python"]
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = f"breastus {release}"
html_theme_options = {
    "description": "Breast ultrasound classification you can evaluate honestly",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_static_path: list[str] = []
