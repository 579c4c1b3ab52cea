"""The mask layer's helper threads: kept, and kept off the calling thread's CPU.

The maths in :mod:`.masking` says how a job splits into independent tasks; this module only
runs them: :func:`in_parallel` runs the first task on the calling thread and the others on
helper threads that live as long as the process (one set per process: a forked child makes
its own). The C core releases the GIL, so the tasks really run at once.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
from concurrent.futures import Future, wait
from typing import Callable, Sequence

__all__ = ["Helper", "in_parallel", "keep_off_this_cpu", "usable_cores", "usable_cores_set"]


def usable_cores_set() -> "set[int]":
    """The CPUs this thread may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def usable_cores() -> int:
    return len(usable_cores_set())


class Helper:
    """A kept thread that runs the tasks it is given; its thread id lets the caller keep it
    off the caller's CPU (see :func:`in_parallel`)."""

    def __init__(self, name: str) -> None:
        self.tasks: "queue.SimpleQueue[tuple[Callable[[], None], Future[None]]]" = (
            queue.SimpleQueue()
        )
        self.cpus: "set[int] | None" = None
        ready = threading.Event()
        self.tid = 0

        def run() -> None:
            self.tid = threading.get_native_id()
            ready.set()
            while True:
                task, done = self.tasks.get()
                try:
                    task()
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    done.set_exception(e)
                else:
                    done.set_result(None)

        threading.Thread(target=run, name=name, daemon=True).start()
        ready.wait()

    def submit(self, task: Callable[[], None]) -> "Future[None]":
        done: Future[None] = Future()
        self.tasks.put((task, done))
        return done


_helpers: "tuple[int, list[Helper]]" = (0, [])
_helpers_lock = threading.Lock()
try:
    sched_getcpu: "Callable[[], int] | None" = ctypes.CDLL(None).sched_getcpu
except (AttributeError, OSError, TypeError):  # not glibc/Linux
    sched_getcpu = None


def keep_off_this_cpu(helpers: "list[Helper]") -> None:
    """Let the helpers run on any usable CPU but this thread's.

    Linux often wakes a helper on the CPU of the thread that woke it, which goes on
    computing there, and moves it to an idle CPU only later: after a pause (a participant
    waiting for the next phase) two threads were then slower than one (README,
    performance). The caller's own affinity is left alone; this is Linux only, and any
    refusal is ignored."""
    if sched_getcpu is None or not hasattr(os, "sched_setaffinity"):
        return
    try:
        cpus = usable_cores_set() - {sched_getcpu()}
        if not cpus:
            return
        for helper in helpers:
            if helper.cpus != cpus:
                os.sched_setaffinity(helper.tid, cpus)
                helper.cpus = cpus
    except OSError:
        pass


def in_parallel(tasks: "Sequence[Callable[[], None]]") -> None:
    """Run the first task on this thread and the others on kept helper threads; raise what
    any raised, once all are done (they share buffers).

    Kept threads, because a new one takes long to start, next to a mask of 10^5 numbers,
    and, like a woken one, first queues behind this thread on its CPU (see
    :func:`keep_off_this_cpu`)."""
    global _helpers
    others: "list[Future[None]]" = []
    if len(tasks) > 1:
        with _helpers_lock:
            if _helpers[0] != os.getpid():  # a forked child has no helper threads
                _helpers = (os.getpid(), [])
            pool = _helpers[1]
            while len(pool) < len(tasks) - 1:
                pool.append(Helper(f"xaynet_sdk.mask-{len(pool) + 1}"))
            helpers = pool[: len(tasks) - 1]
            keep_off_this_cpu(helpers)
        others = [helper.submit(task) for helper, task in zip(helpers, tasks[1:])]
    try:
        tasks[0]()
    finally:
        wait(others)
    for done in others:
        done.result()
