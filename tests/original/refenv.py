"""Reference virtual environment holding the ORIGINAL compiled Xaynet participant.

The original wheel (``xaynet-sdk-python==0.1.0``) has the same import name
(``xaynet_sdk``) as this repository's package, so it must never be installed
into the main environment. This module builds a separate venv for it, once,
and returns that venv's python; the original is then only ever driven in a
subprocess (see ``driver.py`` and ``runner.py``).

Run ``python tests/original/refenv.py`` to set the venv up and print the path
of its python.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

try:
    from venvcache import VenvError, VenvSpec, ensure_venv, run_setup, venv_python
except ImportError:  # run as a script: tests/ is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from venvcache import VenvError, VenvSpec, ensure_venv, run_setup, venv_python

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = REPO_ROOT / ".cache" / "refvenv"
ENV_VAR = "XAYNET_REFVENV"
REQUIREMENTS: tuple[str, ...] = (
    "xaynet-sdk-python==0.1.0",
    "justbackoff==0.6.0",
    "numpy",
)
MARKER_NAME = ".xaynet-refenv-ok"
# Bump when the recipe changes so existing venvs are rebuilt.
MARKER_VERSION = 1
LOCK_TIMEOUT_S = 900.0
PIP_TIMEOUT_S = 900.0

# Runs inside the venv with -I: proves the ORIGINAL extension is what imports.
_VERIFY_CODE = (
    "import json, sys, xaynet_sdk, xaynet_sdk.xaynet_sdk as x; "
    "print(json.dumps({'file': xaynet_sdk.__file__, 'ext': x.__file__, "
    "'prefix': sys.prefix, 'has_participant': hasattr(x, 'Participant')}))"
)

__all__ = [
    "DEFAULT_VENV",
    "ENV_VAR",
    "REPO_ROOT",
    "REQUIREMENTS",
    "RefEnvError",
    "ensure_reference_python",
    "venv_dir",
    "venv_python",
    "verify",
]


class RefEnvError(VenvError):
    """The reference venv could not be created or does not import the original."""


def venv_dir() -> Path:
    """Where the reference venv lives: ``$XAYNET_REFVENV`` or ``<repo>/.cache/refvenv``."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser().absolute() if override else DEFAULT_VENV


def verify(python: Path) -> dict[str, object]:
    """Import the original in the venv (isolated mode) and check it is the venv's copy."""
    venv = python.parent.parent
    out = run_setup(
        [str(python), "-I", "-c", _VERIFY_CODE],
        "importing the original xaynet_sdk in the reference venv",
        timeout=120,
        cwd=venv,
        error=RefEnvError,
    )
    try:
        info: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise RefEnvError(f"unexpected output from the import check:\n{out[-3000:]}") from exc
    ext = Path(str(info["ext"])).resolve()
    if not ext.is_relative_to(venv.resolve()) or not info.get("has_participant"):
        raise RefEnvError(f"the reference venv imported the wrong xaynet_sdk: {info} (venv {venv})")
    return info


def _spec() -> VenvSpec:
    return VenvSpec(
        path=venv_dir(),
        install=REQUIREMENTS,
        recipe={"version": MARKER_VERSION, "requirements": list(REQUIREMENTS)},
        marker_name=MARKER_NAME,
        what="the reference venv",
        verify=verify,
        error=RefEnvError,
        lock_timeout=LOCK_TIMEOUT_S,
        pip_timeout=PIP_TIMEOUT_S,
    )


def ensure_reference_python() -> Path:
    """Return the reference venv's python, building the venv first if needed.

    Idempotent and safe for concurrent callers (an fcntl lock next to the venv
    serializes the build; later callers see the marker and return at once).
    """
    return ensure_venv(_spec())


def main() -> int:
    """CLI: build (if needed) and print the reference python's path."""
    start = time.monotonic()
    try:
        python = ensure_reference_python()
    except RefEnvError as exc:
        print(f"refenv: {exc}", file=sys.stderr)
        return 1
    print(python)
    print(f"refenv: ready in {time.monotonic() - start:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
