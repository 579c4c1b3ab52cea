"""The tick loop shared by both participant drivers (ours and the original): stdlib only.

It is loaded by file path (never through ``sys.path``) by ``_participant_driver.py`` (this
repository's ``xaynet_sdk.driver.Participant``) and ``_original_driver.py`` (the original's
``xaynet_sdk.xaynet_sdk.Participant`` in its own venv), so both participants are driven by
exactly the same code. The two expose the same low-level API: ``tick()``, ``made_progress()``,
``should_set_model()``, ``set_model()``, ``task()``.

Pacing is the same for both and is not the original wrappers' (which sleep 0.1 s even after
progress): after a tick that made progress the next tick follows at once; after one that did
not, the loop sleeps ``--idle-sleep`` seconds (default 5 ms). Global models are never fetched.

Measured work, reported as one JSON line per event on stdout with ``time.monotonic()``
timestamps (Linux ``CLOCK_MONOTONIC``: comparable across processes):

* ``--mode update``: when the participant is an update participant and has fetched the sum
  dict (the first progress tick after ``should_set_model()`` turned true, so no waiting for the
  Sum phase to end is measured), the driver takes ``t_set``, calls ``set_model`` and ticks
  until the task ends (its Update message was sent). Event ``update`` with ``t_set``,
  ``t_done`` and ``maxrss_kb`` (peak resident memory of this process so far).
* ``--mode sum``: the participant just works; when a sum task ends (its Sum2 message was
  sent), event ``sum`` with ``t_done`` and ``maxrss_kb``. The parent measures from the
  coordinator's publication of the seed dict.

A task of the other kind is reported as ``other_task`` and done like any other (an update
participant in ``--mode sum`` gets the model too). The loop ends after ``--rounds`` measured
tasks, at ``--timeout`` seconds, or on SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import sys
import time
from typing import Any, Callable

TASK_NONE, TASK_SUM, TASK_UPDATE = 0, 1, 2


def emit(event: str, **fields: Any) -> None:
    try:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        os._exit(1)


def maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def rss_kb() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def die_with_parent() -> None:
    """Linux: SIGKILL when the parent dies (works even while a tick holds the GIL)."""
    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def parse_args(argv: "list[str] | None" = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="drive one participant for the benchmarks")
    ap.add_argument("--url", required=True)
    ap.add_argument("--length", type=int, required=True, help="model length")
    ap.add_argument("--mode", choices=("update", "sum"), required=True)
    ap.add_argument("--rounds", type=int, default=3, help="measured tasks, then exit")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--idle-sleep", type=float, default=0.005)
    return ap.parse_args(argv)


def run(
    args: argparse.Namespace,
    participant: Any,
    model: Any,
    info: "dict[str, Any]",
) -> int:
    """Tick ``participant`` as described in the module docstring; ``model`` is what
    ``set_model`` receives (built by the caller in the form its participant takes)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    emit("ready", pid=os.getpid(), rss_kb=rss_kb(), maxrss_kb=maxrss_kb(), **info)
    deadline = time.monotonic() + args.timeout
    measured = 0
    task = TASK_NONE
    waiting_for_sums = False
    t_set = 0.0
    tick: Callable[[], None] = participant.tick
    while measured < args.rounds and not stop and time.monotonic() < deadline:
        tick()
        progress = participant.made_progress()
        previous, task = task, participant.task()
        if previous != task and previous != TASK_NONE:  # a task ended (its message was sent)
            t_done = time.monotonic()
            wanted = TASK_SUM if args.mode == "sum" else TASK_UPDATE
            if previous == wanted and (previous == TASK_SUM or t_set):
                measured += 1
                fields = {"t_set": t_set} if previous == TASK_UPDATE else {}
                emit(args.mode, n=measured, t_done=t_done, maxrss_kb=maxrss_kb(), **fields)
            else:
                emit("other_task", task=previous)
            t_set = 0.0
        if participant.should_set_model():
            if not waiting_for_sums:
                waiting_for_sums = True  # the tick that set the flag; sums come next
            elif progress:  # the sum dict was fetched: the model is what it waits for
                waiting_for_sums = False
                t_set = time.monotonic()
                participant.set_model(model)
                continue
        else:
            waiting_for_sums = False
        if not progress:
            time.sleep(args.idle_sleep)
    emit("done", measured=measured, maxrss_kb=maxrss_kb())
    return 0
