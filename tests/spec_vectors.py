"""Locate and load the protocol spec (``PROTOCOL.md``, ``mask_orders.json``, ``vectors/*.json``).

The spec lives outside the repository (``<repo>/../shared/spec``) so that every implementation
is tested against the same files; ``XAYNET_SPEC_DIR`` overrides the location, for example in a
checkout that keeps the spec elsewhere. This module is the only place that knows the path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["SPEC_DIR", "SpecNotFound", "load_orders", "load_vector", "spec_dir"]

ENV_VAR = "XAYNET_SPEC_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR: Path = (
    Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else REPO_ROOT.parent / "shared" / "spec"
)


class SpecNotFound(FileNotFoundError):
    """The spec directory or one of its files is missing: the tests cannot run without it."""


def spec_dir() -> Path:
    """``SPEC_DIR``, checked to exist: a missing spec fails loudly and says where to look."""
    if not SPEC_DIR.is_dir():
        raise SpecNotFound(
            f"spec directory {SPEC_DIR} not found; set the environment variable {ENV_VAR} to the"
            f" directory holding PROTOCOL.md, mask_orders.json and vectors/"
        )
    return SPEC_DIR


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise SpecNotFound(
            f"spec file {path} not found (spec directory {SPEC_DIR}, override with {ENV_VAR})"
        )
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def load_vector(name: str) -> dict[str, Any]:
    """Load ``vectors/<name>.json``; ``name`` may be given with or without ``.json``."""
    if not name.endswith(".json"):
        name += ".json"
    data = _load_json(spec_dir() / "vectors" / name)
    if not isinstance(data, dict):
        raise ValueError(f"spec vector {name} is not a JSON object")
    return data


def load_orders() -> dict[str, int]:
    """The 240 group orders of ``mask_orders.json``, keyed like ``"Prime/F32/B0/M3"``."""
    raw = _load_json(spec_dir() / "mask_orders.json")
    return {str(k): int(v) for k, v in raw.items()}
