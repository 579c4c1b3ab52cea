"""Sphinx extension of these docs: one home per public name, and no public name undocumented.

*Public* means: listed in ``__all__`` of a module of ``xaynet_sdk`` none of whose dotted parts
starts with an underscore. Each such name needs a reference entry, either under its own
module or, for a class, function or module re-exported from elsewhere, under the name it is
documented by (``xaynet_sdk.coordinator.settings.Settings`` is documented as
``xaynet_sdk.coordinator.Settings``). A module without an ``automodule`` anywhere is reported
too. The report is one warning listing every missing entry, so ``-W`` fails the build and
says what to add where.

Where a name is documented: the *facades* (:data:`FACADES`) document everything in their
``__all__``; any other module documents only what it defines itself, so that a re-exported
class is not described twice. That is the ``autodoc-skip-member`` hook below.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.nodes import make_refnode

_log = logging.getLogger(__name__)

#: Packages whose ``__all__`` is the documented home of every name in it.
FACADES = ("xaynet_sdk", "xaynet_sdk.coordinator")

#: Where each module's automodule goes, to say so when one is missing.
#: Any other module goes to DEFAULT_PAGE.
REFERENCE_PAGES = {
    "xaynet_sdk.coordinator": "docs/reference/coordinator.rst",
    "xaynet_sdk.transport": "docs/reference/transport.rst",
    "xaynet_sdk.protocol": "docs/reference/protocol.rst",
    "xaynet_sdk.codec": "docs/reference/codec.rst",
    "xaynet_sdk.mask": "docs/reference/mask.rst",
}
DEFAULT_PAGE = "docs/reference/participant.rst"


def public_modules() -> list[str]:
    """Every importable module of xaynet_sdk without a private part, sorted."""
    import xaynet_sdk

    names = ["xaynet_sdk"]
    for info in pkgutil.walk_packages(xaynet_sdk.__path__, "xaynet_sdk."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _facade_objects() -> dict[int, str]:
    found: dict[int, str] = {}
    for facade in FACADES:
        module = importlib.import_module(facade)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if _has_identity(obj):
                found.setdefault(id(obj), f"{facade}.{name}")
    return found


def _has_identity(obj: Any) -> bool:
    """Classes, functions and modules are the same object wherever they are re-exported."""
    return inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, types.ModuleType)


def skip_member(
    app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Skip a module member that is documented at its home (a facade or where it is defined)."""
    if what != "module" or skip:
        return None
    module_name = app.env.temp_data.get("autodoc:module") or app.env.ref_context.get("py:module")
    if not module_name or module_name in FACADES or not _has_identity(obj):
        return None
    home = _facade_objects().get(id(obj))
    if home is not None and home.rsplit(".", 1)[0] != module_name:
        return True
    if isinstance(obj, types.ModuleType):
        return True  # documented by its own automodule
    defined_in = getattr(obj, "__module__", None)
    if (
        defined_in
        and defined_in != module_name
        and not any(part.startswith("_") for part in defined_in.split("."))
    ):
        return True
    return None


def _resolve(qualified: str) -> Any:
    """The object a documented dotted name stands for, or None."""
    parts = qualified.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def missing_entries(documented: set[str], documented_modules: set[str]) -> list[str]:
    """One line per public module or name without a reference entry."""
    ids = set()
    by_name: dict[str, list[Any]] = {}
    for qualified in documented | documented_modules:
        obj = _resolve(qualified)
        if obj is not None and _has_identity(obj):
            ids.add(id(obj))
        by_name.setdefault(qualified.rsplit(".", 1)[-1], []).append(obj)
    problems = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        if module_name not in documented_modules:
            page = next(
                (p for prefix, p in REFERENCE_PAGES.items() if module_name.startswith(prefix)),
                DEFAULT_PAGE,
            )
            problems.append(
                f"module {module_name}: add '.. automodule:: {module_name}' to {page}"
                f" (it documents its {len(getattr(module, '__all__', []))} public names)"
            )
            continue
        for name in getattr(module, "__all__", []):
            qualified = f"{module_name}.{name}"
            if qualified in documented or qualified in documented_modules:
                continue
            obj = getattr(module, name, None)
            if obj is not None and _has_identity(obj) and id(obj) in ids:
                continue
            if any(other is obj for other in by_name.get(name, [])):
                continue  # a constant re-exported under the same name, documented where it is
            if module_name == "xaynet_sdk" and obj is not None and _has_identity(obj):
                kind = (
                    "exception"
                    if inspect.isclass(obj) and issubclass(obj, BaseException)
                    else "class"
                    if inspect.isclass(obj)
                    else "function"
                )
                page = "exceptions" if kind == "exception" else "participant"
                fix = f"add '.. auto{kind}:: {name}' to docs/reference/{page}.rst"
            elif obj is not None and _has_identity(obj):
                fix = "give its module an automodule, or list it in an autoclass/autofunction"
            else:  # autodoc takes module data only with a doc comment
                fix = f"give it a '#: ' doc comment, or add '.. autodata:: {qualified}'"
            problems.append(f"{qualified}: no reference entry: {fix}")
    return problems


def resolve_by_suffix(app: Sphinx, env: BuildEnvironment, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference that names a documented object by a shorter or another path.

    Docstrings say :class:`DecodeError` in a module that only imports it, or
    :func:`xaynet_sdk.participant.spawn_participant` for a function documented at the
    package top. Such a reference resolves if exactly one documented object ends with its
    last dotted part(s); otherwise it stays broken and nitpicky mode reports it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target or " " in target or target.split(".")[-1].startswith("_"):
        return None
    domain: Any = env.get_domain("py")
    parts = target.split(".")
    for cut in range(len(parts)):
        suffix = "." + ".".join(parts[cut:])
        found = [
            name
            for name, entry in domain.objects.items()
            if name.endswith(suffix) and not entry.aliased
        ]
        if len(found) == 1:
            entry = domain.objects[found[0]]
            return make_refnode(
                app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, found[0]
            )
        if found:
            return None
    return None


def no_napoleon_for_data(app: Sphinx) -> None:
    """Keep napoleon away from data and attribute docstrings.

    Napoleon reads "The group order: ..." in an attribute's docstring as a type named
    "The group order"; the docstrings here are prose there, not Google-style fields.
    """
    from sphinx.ext.napoleon import _process_docstring

    listeners = app.events.listeners.get("autodoc-process-docstring", [])
    for listener in list(listeners):
        if listener.handler is _process_docstring:
            app.disconnect(listener.id)

    def process(app: Sphinx, what: Any, name: str, obj: Any, options: Any, lines: Any) -> None:
        if what not in ("data", "attribute", "property"):
            _process_docstring(app, what, name, obj, options, lines)

    app.connect("autodoc-process-docstring", process)


#: Pages whose text is a Markdown file of the repository root, and the links to rewrite in
#: them: what points at a root file in the repository points at its page on the site.
ROOT_PAGES = {"migration": "MIGRATION.md", "changelog": "CHANGELOG.md"}
ROOT_LINKS = {
    "](MIGRATION.md": "](migration.md",
    "](CHANGELOG.md": "](changelog.md",
    "](docs/": "](",
}


def read_root_page(app: Sphinx, docname: str, source: list[str]) -> None:
    """Replace the stub of a root-file page by that file, with its links rewritten."""
    if docname not in ROOT_PAGES:
        return
    path = Path(app.srcdir).parent / ROOT_PAGES[docname]
    app.env.note_dependency(str(path))
    text = path.read_text(encoding="utf-8")
    for old, new in ROOT_LINKS.items():
        text = text.replace(old, new)
    source[0] = text


def dataclass_factories(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """Show a dataclass field's ``default_factory`` as a call (``= list()``).

    :mod:`inspect` gives such a field the default ``<factory>``, which is not Python: Sphinx
    then falls back to splitting the signature at every comma, and ``dict[str, int]`` turns
    into two broken cross-references.
    """
    if what != "class" or not signature or "<factory>" not in signature:
        return None
    if not dataclasses.is_dataclass(obj):
        return None
    for field in dataclasses.fields(obj):
        factory = field.default_factory
        if factory is dataclasses.MISSING:
            continue
        call = f"{getattr(factory, '__qualname__', 'factory')}()"
        signature = re.sub(
            rf"(\b{re.escape(field.name)}: [^=]*?= )<factory>", rf"\g<1>{call}", signature
        )
    return signature, return_annotation


def check_consistency(app: Sphinx, env: BuildEnvironment) -> None:
    domain: Any = env.get_domain("py")
    documented = {name for name, entry in domain.objects.items() if not entry.aliased}
    modules = set(domain.modules)
    problems = missing_entries(documented, modules)
    if problems:
        _log.warning(
            "%d entries are missing from the API reference:\n  %s",
            len(problems),
            "\n  ".join(problems),
            type="xaynet",
            subtype="undocumented",
        )


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx.ext.napoleon")
    no_napoleon_for_data(app)
    app.connect("autodoc-skip-member", skip_member)
    app.connect("autodoc-process-signature", dataclass_factories)
    app.connect("missing-reference", resolve_by_suffix)
    app.connect("source-read", read_root_page)
    app.connect("env-check-consistency", check_consistency)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
