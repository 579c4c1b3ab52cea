"""Sphinx configuration of the xaynet_sdk documentation site.

Build: ``python -m sphinx -W --keep-going -b html docs build/docs`` (tests/test_docs.py
does that). The build needs no network: the intersphinx inventories are files in
``_inventories/`` (see the README.md there).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import xaynet_sdk  # noqa: E402  (after the path set-up; the package must be installed)

project = "xaynet_sdk"
author = "The xaynet_sdk authors"
copyright = "The xaynet_sdk authors, Apache-2.0"
release = xaynet_sdk.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "xaynet_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_inventories"]

# Every cross-reference must resolve, and every warning fails the build (-W in the test).
nitpicky = True
nitpick_ignore_regex = [
    # Private names (a base class shown by show-inheritance) have no entries by design.
    ("py:.*", r".*\._[A-Za-z][\w.]*"),
]
nitpick_ignore = [
    # requests has no local inventory; the one place is a type hint of the transport.
    ("py:class", "requests.sessions.Session"),
    # justbackoff has no inventory either: the driver's poll backoff.
    ("py:class", "justbackoff.Backoff"),
]
# "more than one target found" for a short module name (:mod:`.state` of the coordinator
# resolves to it first): the link is right, the warning is noise.
suppress_warnings = ["ref.python"]

# -- Markdown (MyST) ----------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
# "## 3.2 Big numbers" gets the anchor #big-numbers: links into PROTOCOL.md and the guides.
myst_heading_anchors = 4

# -- API reference ------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- Links to Python and numpy, from local inventories (no network at build time) ---------------
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", str(HERE / "_inventories" / "python.inv")),
    "numpy": ("https://numpy.org/doc/stable", str(HERE / "_inventories" / "numpy.inv")),
}
intersphinx_timeout = 1

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"xaynet_sdk {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
