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

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

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
_TAIL_CHARS = 3000

# Runs inside the venv with -I: proves the ORIGINAL extension is what imports.
_VERIFY_CODE = (
    "import json, sys, xaynet_sdk, xaynet_sdk.xaynet_sdk as x; "
    "print(json.dumps({'file': xaynet_sdk.__file__, 'ext': x.__file__, "
    "'prefix': sys.prefix, 'has_participant': hasattr(x, 'Participant')}))"
)


class RefEnvError(RuntimeError):
    """The reference venv could not be created or does not import the original."""


def venv_dir() -> Path:
    """Where the reference venv lives: ``$XAYNET_REFVENV`` or ``<repo>/.cache/refvenv``."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser().absolute() if override else DEFAULT_VENV


def venv_python(venv: Path) -> Path:
    """The venv's interpreter; deliberately NOT resolved (a resolved symlink loses the venv)."""
    return venv / "bin" / "python"


def _tail(text: str) -> str:
    return text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]


def _run(cmd: list[str], what: str, timeout: float, cwd: Path) -> str:
    """Run a setup step; on failure raise RefEnvError with the output tail."""
    try:
        proc = subprocess.run(
            cmd,
            cwd=str(cwd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            env=_clean_env(),
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else ""
        raise RefEnvError(
            f"{what} timed out after {timeout:.0f}s: {' '.join(cmd)}\n{_tail(out or '')}"
        ) from exc
    except OSError as exc:
        raise RefEnvError(f"{what} could not start: {' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise RefEnvError(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- output tail ---\n{_tail(proc.stdout)}"
        )
    return proc.stdout


def _clean_env() -> dict[str, str]:
    """Environment for setup commands: no PYTHONPATH/PYTHONHOME leaking the repo in."""
    env = dict(os.environ)
    for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(key, None)
    return env


def _expected_marker() -> dict[str, object]:
    return {"version": MARKER_VERSION, "requirements": list(REQUIREMENTS)}


def _marker_ok(venv: Path) -> bool:
    """Fast check (no subprocess): marker matches this recipe and the python exists."""
    marker = venv / MARKER_NAME
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    expected = _expected_marker()
    if any(data.get(k) != v for k, v in expected.items()):
        return False
    return venv_python(venv).exists()  # exists() follows the symlink: base python still there


def verify(python: Path) -> dict[str, object]:
    """Import the original in the venv (isolated mode) and check it is the venv's copy."""
    venv = python.parent.parent
    out = _run(
        [str(python), "-I", "-c", _VERIFY_CODE],
        "importing the original xaynet_sdk in the reference venv",
        timeout=120,
        cwd=venv,
    )
    try:
        info = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise RefEnvError(f"unexpected output from the import check:\n{_tail(out)}") from exc
    ext = Path(str(info["ext"])).resolve()
    if not ext.is_relative_to(venv.resolve()) or not info.get("has_participant"):
        raise RefEnvError(f"the reference venv imported the wrong xaynet_sdk: {info} (venv {venv})")
    return info


def _build(venv: Path) -> None:
    """Create the venv from scratch, install the pinned original, verify, write the marker."""
    if venv.exists():
        shutil.rmtree(venv)
    base = sys.executable
    _run([base, "-m", "venv", str(venv)], "creating the venv", timeout=300, cwd=venv.parent)
    python = venv_python(venv)
    _run(
        [
            str(python),
            "-I",
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            *REQUIREMENTS,
        ],
        "pip install into the reference venv",
        timeout=PIP_TIMEOUT_S,
        cwd=venv,
    )
    info = verify(python)
    marker = _expected_marker() | {"import": info, "base_python": base, "built": time.time()}
    tmp = venv / (MARKER_NAME + ".tmp")
    tmp.write_text(json.dumps(marker, indent=1))
    tmp.replace(venv / MARKER_NAME)


def ensure_reference_python() -> Path:
    """Return the reference venv's python, building the venv first if needed.

    Idempotent and safe for concurrent callers (an fcntl lock next to the venv
    serializes the build; later callers see the marker and return at once).
    """
    venv = venv_dir()
    if _marker_ok(venv):
        return venv_python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / (venv.name + ".lock")
    with open(lock_path, "a+") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RefEnvError(
                        f"timed out after {LOCK_TIMEOUT_S:.0f}s waiting for {lock_path} "
                        "(another process is building the reference venv)"
                    ) from None
                time.sleep(0.5)
        try:
            if not _marker_ok(venv):  # someone else may have finished while we waited
                _build(venv)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return venv_python(venv)


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
