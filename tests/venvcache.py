"""Cached virtual environments for tests that need packages the main environment must not have
(the original wheel, whose import name is ours) or need not have (Keras for an example).

:func:`ensure_venv` builds a venv once: ``python -m venv``, ``pip install`` of the spec's
arguments, an optional step after it, a check, then a marker file recording the recipe. Later
calls see a marker with the same recipe and return at once; a changed recipe rebuilds. An
fcntl lock next to the venv serializes concurrent builders (other pytest processes, CI jobs);
whoever waited finds the marker written and returns.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

__all__ = ["VenvError", "VenvSpec", "clean_env", "ensure_venv", "run_setup", "venv_python"]

_TAIL_CHARS = 3000


class VenvError(RuntimeError):
    """A cached venv could not be created or failed its check."""


@dataclass(frozen=True)
class VenvSpec:
    """How to build one cached venv."""

    path: Path
    #: Arguments of ``pip install`` (requirements, ``-r file``, ...).
    install: tuple[str, ...]
    #: What the marker records; a venv whose marker differs is rebuilt.
    recipe: Mapping[str, object]
    #: The marker file's name inside the venv.
    marker_name: str
    #: For messages: "the reference venv".
    what: str
    #: Runs after pip with the venv's python (e.g. to add a .pth file).
    after_install: Optional[Callable[[Path], None]] = None
    #: Checks the built venv with its python; its result is stored in the marker.
    verify: Optional[Callable[[Path], Mapping[str, object]]] = None
    #: The exception type raised on failure (a subclass of VenvError).
    error: type[VenvError] = VenvError
    lock_timeout: float = 900.0
    pip_timeout: float = 900.0
    extra_marker: Mapping[str, object] = field(default_factory=dict)


def venv_python(venv: Path) -> Path:
    """The venv's interpreter; deliberately NOT resolved (a resolved symlink loses the venv)."""
    return venv / "bin" / "python"


def _tail(text: str) -> str:
    return text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]


def clean_env() -> dict[str, str]:
    """Environment for setup commands: no PYTHONPATH/PYTHONHOME leaking the repo in."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(key, None)
    return env


def run_setup(
    cmd: list[str],
    what: str,
    timeout: float,
    cwd: Path,
    error: type[VenvError] = VenvError,
) -> str:
    """Run a setup step; on failure raise ``error`` with the output tail."""
    try:
        proc = subprocess.run(
            cmd,
            cwd=str(cwd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            env=clean_env(),
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else ""
        raise error(
            f"{what} timed out after {timeout:.0f}s: {' '.join(cmd)}\n{_tail(out or '')}"
        ) from exc
    except OSError as exc:
        raise error(f"{what} could not start: {' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise error(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- output tail ---\n{_tail(proc.stdout)}"
        )
    return proc.stdout


def _marker_ok(spec: VenvSpec) -> bool:
    """Fast check (no subprocess): the marker matches the recipe and the python exists."""
    try:
        data = json.loads((spec.path / spec.marker_name).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    if any(data.get(k) != v for k, v in spec.recipe.items()):
        return False
    return venv_python(spec.path).exists()  # follows the symlink: base python still there


def _build(spec: VenvSpec) -> None:
    """Create the venv from scratch, install, check, write the marker."""
    venv = spec.path
    if venv.exists():
        shutil.rmtree(venv)
    base = sys.executable
    run_setup(
        [base, "-m", "venv", str(venv)],
        f"creating {spec.what}",
        timeout=300,
        cwd=venv.parent,
        error=spec.error,
    )
    python = venv_python(venv)
    run_setup(
        [
            str(python),
            "-I",
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            *spec.install,
        ],
        f"pip install into {spec.what}",
        timeout=spec.pip_timeout,
        cwd=venv,
        error=spec.error,
    )
    if spec.after_install is not None:
        spec.after_install(python)
    checked = dict(spec.verify(python)) if spec.verify is not None else {}
    marker = {
        **spec.recipe,
        **spec.extra_marker,
        "import": checked,
        "base_python": base,
        "built": time.time(),
    }
    tmp = venv / (spec.marker_name + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1))
    tmp.replace(venv / spec.marker_name)


def ensure_venv(spec: VenvSpec) -> Path:
    """Return the venv's python, building the venv first if needed.

    Idempotent and safe for concurrent callers (an fcntl lock next to the venv serializes
    the build; later callers see the marker and return at once).
    """
    venv = spec.path
    if _marker_ok(spec):
        return venv_python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / (venv.name + ".lock")
    with open(lock_path, "a+") as lock:
        deadline = time.monotonic() + spec.lock_timeout
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise spec.error(
                        f"timed out after {spec.lock_timeout:.0f}s waiting for {lock_path} "
                        f"(another process is building {spec.what})"
                    ) from None
                time.sleep(0.5)
        try:
            if not _marker_ok(spec):  # someone else may have finished while we waited
                _build(spec)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return venv_python(venv)
