"""The lint is part of the test command: ruff (lint and format) over the tree, mypy (strict) over
the package at the lowest Python version that ``requires-python`` admits, so that code using a
newer language feature or library signature fails here and not on a user's machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text("utf-8"))

pytestmark = pytest.mark.timeout(600)


def _lowest_python() -> str:
    spec = PYPROJECT["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(3\.\d+)", spec)
    assert match, f"requires-python {spec!r} is not of the form >=3.N"
    return match.group(1)


def _tool(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=540
    )
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


def test_linters_target_the_lowest_supported_python() -> None:
    lowest = _lowest_python()
    assert PYPROJECT["tool"]["mypy"]["python_version"] == lowest
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + lowest.replace(".", "")
    classifiers = PYPROJECT["project"]["classifiers"]
    assert f"Programming Language :: Python :: {lowest}" in classifiers


def test_ruff_check() -> None:
    _tool("ruff", "check", ".")


def test_ruff_format() -> None:
    _tool("ruff", "format", "--check", ".")


def test_mypy_strict_at_the_lowest_python() -> None:
    _tool("mypy", "--python-version", _lowest_python(), "xaynet_sdk")
