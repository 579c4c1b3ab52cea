"""Run the ORIGINAL Xaynet participant (reference venv + ``driver.py``) from tests.

The original wheel shares the import name ``xaynet_sdk`` with this repository,
its ``tick()`` holds the GIL and has no HTTP timeout. So it always runs in a
separate process, and THIS side enforces the hard timeout (a watchdog timer
SIGKILLs the driver) and cleans up (``stop()``: SIGTERM, then SIGKILL; also
on context-manager exit, ``__del__`` and interpreter exit).

Usage::

    with OriginalParticipant(url, model=[0.0] * 4, timeout=30) as op:
        op.wait_for_event("task", task="update", timeout=10)
        op.wait_for(lambda e: e["event"] == "global_model", timeout=20)
        print(op.global_models(), op.tasks())
    # stopped here; op.saved_state() holds save() output if save_state=True
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

try:
    from .refenv import ensure_reference_python
except ImportError:  # loaded as a top-level module (tests/original on sys.path)
    from refenv import ensure_reference_python  # type: ignore[no-redef,import-not-found]

DRIVER = Path(__file__).resolve().parent / "driver.py"
Event = dict[str, Any]
Predicate = Callable[[Event], bool]

_LIVE: weakref.WeakSet[OriginalParticipant] = weakref.WeakSet()


class OriginalHarnessError(AssertionError):
    """The original participant did not do what a test waited for (timeout or exit).

    An AssertionError so pytest shows it as a test failure with the message.
    """


class OriginalParticipant:
    """One original participant in a subprocess, with its JSON events collected.

    Events are read by a background thread into ``queue`` (for streaming
    consumers) and into an append-only history that ``wait_for`` searches.
    """

    def __init__(
        self,
        url: str,
        *,
        scalar: float = 1.0,
        model: Sequence[Any] | None = None,
        rounds: int | None = None,
        timeout: float = 60.0,
        max_ticks: int | None = None,
        state: bytes | Sequence[int] | None = None,
        save_state: bool = False,
        trace_ticks: bool = False,
        kill_grace: float = 5.0,
        rust_log: str | None = None,
        python: Path | None = None,
        extra_args: Iterable[str] = (),
        start: bool = True,
    ) -> None:
        """Build the command line; start the driver unless ``start=False``.

        ``model`` is a flat list (the local model for every round) or a list of
        per-round lists. ``timeout`` is the driver's soft stop; the driver is
        SIGKILLed at ``timeout + kill_grace`` no matter what. ``rust_log`` sets
        ``XAYNET_CLIENT`` (tracing filter of the original) for its stderr.
        """
        self.url = url
        self.timeout = float(timeout)
        self.kill_grace = float(kill_grace)
        self.proc: subprocess.Popen[str] | None = None
        self.queue: queue.Queue[Event] = queue.Queue()
        self.killed_by_watchdog = False
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._eof = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=400)
        self._threads: list[threading.Thread] = []
        self._watchdog: threading.Timer | None = None
        self._saved: list[int] | None = None
        self._stopped = False
        self._lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="xaynet-original-"))
        self._state_out = self._tmp / "state-out.json" if save_state else None

        self.python = python or ensure_reference_python()
        args = [
            "--url",
            url,
            "--scalar",
            repr(float(scalar)),
            "--timeout",
            repr(self.timeout),
        ]
        if model is not None:
            model_path = self._tmp / "model.json"
            model_path.write_text(json.dumps(list(model)))
            args += ["--model-json", str(model_path)]
        if rounds is not None:
            args += ["--rounds", str(rounds)]
        if max_ticks is not None:
            args += ["--max-ticks", str(max_ticks)]
        if state is not None:
            state_path = self._tmp / "state-in.json"
            state_path.write_text(json.dumps([int(b) for b in state]))
            args += ["--state-in", str(state_path)]
        if self._state_out is not None:
            args += ["--state-out", str(self._state_out)]
        if trace_ticks:
            args.append("--trace-ticks")
        if threading.current_thread() is threading.main_thread():
            # PDEATHSIG fires when the forking THREAD exits; only safe from the main thread.
            args.append("--die-with-parent")
        args += list(extra_args)
        # -I: ignore PYTHONPATH/user site and do not put the script dir on sys.path.
        self.cmd = [str(self.python), "-I", "-u", str(DRIVER), *args]
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
        }
        if rust_log is not None:
            self.env["XAYNET_CLIENT"] = rust_log
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> OriginalParticipant:
        """Spawn the driver, its reader threads and the hard-timeout watchdog."""
        if self.proc is not None or self._stopped:
            raise RuntimeError("already started or stopped")
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=str(self.python.parent.parent),  # never the repo root
            env=self.env,
        )
        _LIVE.add(self)
        for target, name in ((self._read_stdout, "stdout"), (self._read_stderr, "stderr")):
            thread = threading.Thread(
                target=target, name=f"original-{self.proc.pid}-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._watchdog = threading.Timer(self.timeout + self.kill_grace, self._hard_kill)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ValueError
            except ValueError:
                event = {"event": "raw", "line": line}
            with self._cond:
                self._events.append(event)
                self._cond.notify_all()
            self.queue.put(event)
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _hard_kill(self) -> None:
        """Watchdog: tick() may hang forever holding the GIL, so only SIGKILL is reliable."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.killed_by_watchdog = True
            _kill(proc, signal.SIGKILL)

    def stop(self, grace: float = 3.0) -> int | None:
        """Stop the driver: SIGTERM (graceful, saves the state), SIGKILL after ``grace`` s.

        Idempotent. Returns the exit code (negative: killed by that signal).
        """
        with self._lock:
            proc = self.proc
            if self._stopped:
                return proc.returncode if proc is not None else None
            self._stopped = True
            if proc is None:  # never started: only the temp dir to clean
                shutil.rmtree(self._tmp, ignore_errors=True)
                return None
            if proc.poll() is None:
                _kill(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _kill(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
                pass
            if self._watchdog is not None:
                self._watchdog.cancel()
            for thread in self._threads:
                thread.join(timeout=5)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
            if self._state_out is not None and self._state_out.exists():
                self._saved = json.loads(self._state_out.read_text())
            shutil.rmtree(self._tmp, ignore_errors=True)
            _LIVE.discard(self)
            return proc.returncode

    def wait_exit(self, timeout: float) -> int:
        """Wait for the driver to end by itself (``--rounds``/``--max-ticks``/timeout)."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise OriginalHarnessError(
                f"original participant still running after {timeout}s\n{self.describe()}"
            ) from None
        self.stop()
        return code

    def __enter__(self) -> OriginalParticipant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self.stop(grace=1.0)
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    # ------------------------------------------------------------------ queries

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def events(self, name: str | None = None) -> list[Event]:
        """Snapshot of the events so far (optionally only those named ``name``)."""
        with self._cond:
            return [e for e in self._events if name is None or e.get("event") == name]

    def wait_for(self, predicate: Predicate, timeout: float = 30.0, start: int = 0) -> Event:
        """First event (index >= ``start``) matching ``predicate``; raise if none in time.

        Fails early, with the driver's events and stderr tail, if the driver exits.
        """
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self._events):
                    event = self._events[index]
                    index += 1
                    if predicate(event):
                        return event
                if self._eof:
                    why = "the driver exited"
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    why = f"timed out after {timeout}s"
                    break
                self._cond.wait(remaining)
        raise OriginalHarnessError(f"no matching event: {why}\n{self.describe()}")

    def wait_for_event(self, name: str, timeout: float = 30.0, **fields: Any) -> Event:
        """Wait for an event named ``name`` whose listed fields equal the given values."""
        return self.wait_for(
            lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items()),
            timeout,
        )

    def global_models(self) -> list[list[Any]]:
        """Every non-None global model fetched, in order."""
        return [e["model"] for e in self.events("global_model")]

    def tasks(self) -> list[str]:
        """The sequence of task changes: "none", "sum", "update"."""
        return [e["task"] for e in self.events("task")]

    def errors(self) -> list[Event]:
        return self.events("error")

    def saved_state(self) -> list[int] | None:
        """The ``save()`` output written at a graceful stop (needs ``save_state=True``)."""
        if self._saved is None and self._state_out is not None and self._state_out.exists():
            self._saved = json.loads(self._state_out.read_text())
        return self._saved

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(list(self._stderr)[-lines:])

    def describe(self) -> str:
        """Diagnostics for failure messages: command, exit code, last events, stderr."""
        last = self.events()[-25:]
        return (
            f"cmd: {' '.join(self.cmd)}\nreturncode: {self.returncode} "
            f"(watchdog kill: {self.killed_by_watchdog})\nlast events:\n"
            + "\n".join(json.dumps(e) for e in last)
            + f"\nstderr tail:\n{self.stderr_tail()}"
        )


def _kill(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    try:
        proc.send_signal(sig)
    except (ProcessLookupError, OSError):
        pass


@atexit.register
def _stop_all() -> None:
    """Never leave an original participant running after the test process exits."""
    for participant in list(_LIVE):
        try:
            participant.stop(grace=1.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            print(f"runner: could not stop {participant.pid}", file=sys.stderr)
