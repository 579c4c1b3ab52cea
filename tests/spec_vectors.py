"""Load the data the tests assert: ``tests/vectors/*.json`` and ``tests/vectors/mask_orders.json``.

The vectors were taken from the original (xaynet v0.11.0 and the ``xaynet-sdk-python`` 0.1.0
wheel) and are owned by this repository, beside the protocol description they belong to
(``docs/PROTOCOL.md``, whose section 14 lists them). This module is the only place that knows
where they live.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["VECTORS_DIR", "load_orders", "load_vector"]

VECTORS_DIR: Path = Path(__file__).resolve().parent / "vectors"


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"test vector file {path} not found: it belongs to the repository")
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def load_vector(name: str) -> dict[str, Any]:
    """Load ``tests/vectors/<name>.json``; ``name`` may be given with or without ``.json``."""
    if not name.endswith(".json"):
        name += ".json"
    data = _load_json(VECTORS_DIR / name)
    if not isinstance(data, dict):
        raise ValueError(f"test vector {name} is not a JSON object")
    return data


def load_orders() -> dict[str, int]:
    """The 240 group orders of ``mask_orders.json``, keyed like ``"Prime/F32/B0/M3"``."""
    raw = _load_json(VECTORS_DIR / "mask_orders.json")
    return {str(k): int(v) for k, v in raw.items()}
