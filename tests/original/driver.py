"""Drive the ORIGINAL compiled Xaynet participant and report events as JSON lines.

This program is run BY THE REFERENCE VENV'S PYTHON (see ``refenv.py``), never
imported by the main environment: it must import the original wheel's
``xaynet_sdk``, not this repository's package of the same name. It therefore
removes the repository from ``sys.path`` and refuses to run (exit 3) unless
``xaynet_sdk`` resolves to a file inside the running venv.

It ticks the raw ``xaynet_sdk.xaynet_sdk.Participant`` in the same order as
the original ``InternalParticipant._tick`` (docs/PROTOCOL.md §12.6): tick, fetch the
global model when ``new_global_model()`` (or the last fetch failed), set the
local model when ``should_set_model()``, then back off 0.1 s after progress or
0.1·1.2^n s (capped at 10 s) without.

Every event is one JSON object per line on stdout, e.g.
``{"event": "task", "round": 1, "task": "update", "t": 0.2, "tick": 2}``.

``tick()`` holds the GIL and has no HTTP timeout, so ``--timeout`` here is only
checked between ticks: the PARENT (``runner.py``) enforces the hard stop.
SIGTERM/SIGINT end the loop gracefully between ticks (saving the state when
``--state-out`` is given).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

_HERE = Path(__file__).resolve().parent
REPO_ROOT = _HERE.parents[1]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SHADOWED = 3
EXIT_INIT = 4
EXIT_ERROR = 5

TASK_NAMES = {0: "none", 1: "sum", 2: "update"}
PHASE_NAMES = {
    0: "NewRound",
    1: "Awaiting",
    2: "Sum",
    3: "Update",
    4: "Sum2",
    5: "SendingSum",
    6: "SendingUpdate",
    7: "SendingSum2",
}

_T0 = time.monotonic()
_TICKS = 0


def emit(event: str, **fields: Any) -> None:
    """Write one JSON event line; a closed pipe means the parent is gone, so exit."""
    record = {"event": event, **fields, "t": round(time.monotonic() - _T0, 4), "tick": _TICKS}
    try:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os._exit(EXIT_ERROR)


def fail(kind: str, message: str, code: int, **fields: Any) -> NoReturn:
    """Report a fatal error and exit with a distinct code."""
    emit("error", kind=kind, message=message, fatal=True, **fields)
    emit("done", reason="error", exit_code=code)
    sys.exit(code)


# --------------------------------------------------------------------------- import guard


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


def sanitize_sys_path() -> list[str]:
    """Drop the repository (and this script's folders) from sys.path; return what was dropped."""
    banned = {REPO_ROOT.resolve(), _HERE, _HERE.parent}
    kept: list[str] = []
    dropped: list[str] = []
    for entry in sys.path:
        try:
            resolved = Path(entry or os.getcwd()).resolve()
        except OSError:
            kept.append(entry)
            continue
        (dropped if resolved in banned else kept).append(entry)
    sys.path[:] = kept
    return dropped


def import_original() -> Any:
    """Import ``xaynet_sdk.xaynet_sdk`` from the venv, or exit 3 if anything else would load."""
    venv = Path(sys.prefix)
    if sys.prefix == sys.base_prefix:
        fail(
            "not_in_venv",
            f"driver must run under the reference venv's python, not {sys.executable}",
            EXIT_SHADOWED,
        )
    spec = importlib.util.find_spec("xaynet_sdk")
    if spec is None:
        fail("import", "xaynet_sdk is not installed in this venv", EXIT_SHADOWED)
    origin = spec.origin or next(iter(spec.submodule_search_locations or []), "")
    repo_pkg = REPO_ROOT / "xaynet_sdk"
    if not origin or not _inside(Path(origin), venv) or _inside(Path(origin), repo_pkg):
        fail(
            "shadowed",
            f"xaynet_sdk would be imported from {origin!r} (really {Path(origin).resolve()}), "
            f"which is not the original in {venv}",
            EXIT_SHADOWED,
            file=str(origin),
        )
    import xaynet_sdk.xaynet_sdk as native  # noqa: PLC0415 - only after the guard above

    for mod in (sys.modules["xaynet_sdk"], native):
        if not _inside(Path(mod.__file__ or ""), venv):
            fail("shadowed", f"{mod.__name__} loaded from {mod.__file__}", EXIT_SHADOWED)
    return native


# --------------------------------------------------------------------------- helpers


def die_with_parent() -> None:
    """Linux: get SIGKILLed when the parent dies, so a crashed test leaves no orphan.

    Works even while tick() holds the GIL (the kernel delivers SIGKILL).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return


def load_models(arg: str | None) -> list[list[Any]] | None:
    """``--model-json``: inline JSON or a path; a flat list, or a list of per-round lists."""
    if arg is None:
        return None
    text = arg.strip()
    try:
        data = json.loads(text if text.startswith("[") else Path(arg).read_text())
    except (OSError, ValueError) as exc:
        fail("usage", f"cannot read --model-json {arg!r}: {exc}", EXIT_USAGE)
    if not isinstance(data, list):
        fail("usage", "--model-json must be a JSON list", EXIT_USAGE)
    if data and all(isinstance(item, list) for item in data):
        return data
    return [data]


def load_state(path: str | None) -> list[int] | None:
    """``--state-in``: a JSON list of ints (as written by --state-out) or raw bytes."""
    if path is None:
        return None
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw)
        if isinstance(data, list):
            return [int(b) for b in data]
    except (ValueError, UnicodeDecodeError):
        pass
    return list(raw)


def phase_of(state: list[int]) -> str:
    """Name of the phase in a saved state (u32 LE variant index, §12.7)."""
    if len(state) < 4:
        return "?"
    index = int.from_bytes(bytes(state[:4]), "little")
    return PHASE_NAMES.get(index, str(index))


class _Stop(Exception):
    """Raised by the signal handler to cut a backoff sleep short."""


class Loop:
    """Tick loop state; mirrors InternalParticipant._tick plus event reporting."""

    def __init__(self, native: Any, participant: Any, args: argparse.Namespace) -> None:
        self.native = native
        self.p = participant
        self.args = args
        self.models = load_models(args.model_json)
        self.rounds = 0
        self.model_changes = 0
        self.fetch_pending = False
        self.fetched_any = False
        self.last_model: Any = None
        self.last_task: str | None = None
        self.last_should_set = False
        self.reported: set[tuple[Any, ...]] = set()
        self.stop_requested = False
        self.sleeping = False

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_requested = True
        if self.sleeping:
            raise _Stop

    def error_once(self, where: str, exc: BaseException) -> None:
        """Report a recoverable error once per (round, where, kind, message)."""
        key = (self.rounds, where, type(exc).__name__, str(exc))
        if key not in self.reported:
            self.reported.add(key)
            emit("error", kind=type(exc).__name__, message=str(exc), where=where, round=self.rounds)

    def report_task(self) -> None:
        task = TASK_NAMES.get(self.p.task(), str(self.p.task()))
        if task != self.last_task:
            self.last_task = task
            emit("task", round=self.rounds, task=task)

    def fetch_global_model(self) -> None:
        """As the wrapper: on a new round (or after a failed fetch) call global_model()."""
        if not (self.p.new_global_model() or self.fetch_pending):
            return
        if not self.fetch_pending:
            self.rounds += 1
            emit("new_round", round=self.rounds)
        try:
            model = self.p.global_model()
        except (self.native.GlobalModelUnavailable, self.native.GlobalModelDataTypeMisMatch) as exc:
            self.fetch_pending = True
            self.error_once("global_model", exc)
            return
        self.fetch_pending = False
        if self.fetched_any and model != self.last_model:
            self.model_changes += 1
        self.fetched_any = True
        self.last_model = model
        if model is None:
            emit("no_global_model", round=self.rounds)
        else:
            emit("global_model", round=self.rounds, model=model, changes=self.model_changes)

    def set_model(self) -> None:
        """As the wrapper: set the local model whenever should_set_model() (no fetch error)."""
        should = bool(self.p.should_set_model())
        if should and not self.last_should_set:
            emit("should_set_model", round=self.rounds)
        self.last_should_set = should
        if not should or self.models is None or self.fetch_pending:
            return
        model = self.models[min(max(self.rounds - 1, 0), len(self.models) - 1)]
        try:
            self.p.set_model(list(model))
        except Exception as exc:  # LocalModel* mismatch or TypeError: the wrapper only warns
            self.error_once("set_model", exc)
            return
        self.last_should_set = bool(self.p.should_set_model())
        emit("set_model", round=self.rounds, length=len(model), ok=True)

    def finished(self) -> str | None:
        """Reason to stop now, or None."""
        if self.stop_requested:
            return "signal"
        if self.args.rounds is not None and (
            self.rounds > self.args.rounds or self.model_changes >= self.args.rounds
        ):
            return "rounds"
        if self.args.max_ticks is not None and _TICKS >= self.args.max_ticks:
            return "max_ticks"
        if time.monotonic() - _T0 >= self.args.timeout:
            return "timeout"
        return None

    def run(self) -> str:
        """Tick until a stop condition; return the reason."""
        global _TICKS
        from justbackoff import Backoff  # noqa: PLC0415 - venv-only dependency

        backoff = Backoff(min_ms=100, max_ms=10000, factor=1.2, jitter=False)
        self.report_task()
        self.fetch_global_model()  # a restored NewRound state has new_global_model set
        self.set_model()
        while True:
            reason = self.finished()
            if reason:
                return reason
            try:
                self.p.tick()
            except Exception as exc:  # only UninitializedParticipant is expected here
                fail(type(exc).__name__, str(exc), EXIT_ERROR, where="tick")
            _TICKS += 1
            self.fetch_global_model()
            self.report_task()
            self.set_model()
            progress = bool(self.p.made_progress())
            if progress:
                backoff.reset()
            delay = backoff.duration()
            if self.args.trace_ticks:
                emit("tick_done", progress=progress, task=self.last_task, sleep=round(delay, 4))
            reason = self.finished()
            if reason:
                return reason
            remaining = self.args.timeout - (time.monotonic() - _T0)
            try:
                self.sleeping = True
                if not self.stop_requested:
                    time.sleep(max(0.0, min(delay, remaining)))
            except _Stop:
                pass
            finally:
                self.sleeping = False


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="coordinator base URL")
    ap.add_argument("--scalar", type=float, default=1.0)
    ap.add_argument(
        "--model-json",
        help="local model: inline JSON list or path; a list of lists gives one model per round",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="stop once N rounds completed (round N+1 seen) or N global-model changes",
    )
    ap.add_argument("--timeout", type=float, default=60.0, help="soft stop, checked between ticks")
    ap.add_argument("--max-ticks", type=int, default=None)
    ap.add_argument("--state-in", help="restore from this saved state (JSON list or raw bytes)")
    ap.add_argument("--state-out", help="on exit call save() and write the state here as JSON")
    ap.add_argument("--trace-ticks", action="store_true", help="emit a tick_done event per tick")
    ap.add_argument("--die-with-parent", action="store_true", help="PR_SET_PDEATHSIG=SIGKILL")
    ap.add_argument("--check-import", action="store_true", help="only verify the import, then exit")
    args = ap.parse_args(argv)
    if not args.check_import and not args.url:
        ap.error("--url is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.die_with_parent:
        die_with_parent()
    dropped = sanitize_sys_path()
    native = import_original()
    import xaynet_sdk  # noqa: PLC0415 - already imported and verified

    if args.check_import:
        emit("import_ok", file=xaynet_sdk.__file__, native=native.__file__, dropped=dropped)
        return EXIT_OK

    state = load_state(args.state_in)
    try:
        participant = native.Participant(args.url, args.scalar, state)
    except Exception as exc:
        fail(type(exc).__name__, str(exc), EXIT_INIT, where="init")
    emit(
        "started",
        pid=os.getpid(),
        file=xaynet_sdk.__file__,
        restored=state is not None,
        url=args.url,
        scalar=args.scalar,
    )

    loop = Loop(native, participant, args)
    signal.signal(signal.SIGTERM, loop.on_signal)
    signal.signal(signal.SIGINT, loop.on_signal)
    reason = loop.run()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM now kills at once

    if args.state_out:
        saved = [int(b) for b in participant.save()]
        tmp = Path(args.state_out + ".tmp")
        tmp.write_text(json.dumps(saved))
        tmp.replace(args.state_out)
        emit("saved", path=args.state_out, bytes=len(saved), phase=phase_of(saved))
    emit(
        "done",
        reason=reason,
        rounds=loop.rounds,
        model_changes=loop.model_changes,
        exit_code=EXIT_OK,
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
