"""What ``state_file=`` adds to a task: the time of its state records, per sum and update task.

A local coordinator runs in this process with four participants of ours, ticked in turn by
one thread (their own threads would only add scheduling noise); the measured one has a state
file, the others none. Roles are drawn by the round probabilities (sum 0.5, update 1.0), so
the measured participant takes both tasks over the rounds. For each task it reports:

* records: the writes the state file got during the task's round (``set_model`` included),
  and the bytes written;
* persist: the time spent in them (msgpack dump, write, ``fsync`` of the file and of the
  directory, rename). The records run synchronously in the participant's thread, so this is
  exactly the latency the state file adds to the task;
* to message: the part of persist on the way to the message, from the local model set (update)
  or the seeds fetched (sum2) to the message on file: what delays the message itself;
* work: the time of the participant's ticks that made progress and of ``set_model`` in that
  round (requests, masking, aggregation, POSTs, and the records: ``persist`` is part of it).

Then the size of the file at the moments that matter for the decision to keep the local
model in it: waiting for the sum dictionary with the local model set, and while the Update
message is being sent (its payload holds the masked model whatever is decided).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from xaynet_sdk.coordinator import LocalCoordinator, Settings
from xaynet_sdk.driver import Participant, Task
from xaynet_sdk.protocol.saved import dump_state
from xaynet_sdk.protocol.state import Sending, SendingKind, Sum2, Update
from xaynet_sdk.state_file import Persistence


@dataclass
class TaskFigures:
    records: list[int] = field(default_factory=list)
    kbytes: list[float] = field(default_factory=list)
    persist: list[float] = field(default_factory=list)
    critical: list[float] = field(default_factory=list)
    work: list[float] = field(default_factory=list)


@dataclass
class Figures:
    n: int
    tasks: dict[str, TaskFigures] = field(default_factory=lambda: defaultdict(TaskFigures))
    file_with_model: int = 0
    file_without_model: int = 0
    file_sending: int = 0
    set_model: list[float] = field(default_factory=list)


def settings(n: int) -> Settings:
    return Settings.for_tests(
        model_length=n,
        sum=0.5,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        # Long enough for every update participant, ticked in turn by one thread, to send.
        min_sum_time=0.3,
        min_update_time=0.5 + n / 250_000,
        min_sum2_time=0.2,
        max_sum_time=30.0,
        max_update_time=30.0,
        max_sum2_time=30.0,
    )


def measure(n: int, per_task: int, timeout: float) -> Figures:
    """Rounds until the measured participant had ``per_task`` tasks of each kind."""
    figures = Figures(n)
    rng = np.random.default_rng(n)
    with tempfile.TemporaryDirectory() as tmp, LocalCoordinator(settings(n)) as coord:
        measured = Participant(coord.url, state_file=Path(tmp) / "p.state", timeout=60.0)
        persistence = measured._persistence
        assert isinstance(persistence, Persistence)
        others = [Participant(coord.url, timeout=60.0) for _ in range(3)]
        models = {id(p): rng.uniform(-1, 1, n).astype(np.float32) for p in [measured, *others]}
        serial = measured.round_serial
        role = Task.NONE
        now = Round()
        deadline = time.monotonic() + timeout

        def timed(call: Callable[[], None]) -> tuple[float, int, float, float]:
            before = (persistence.writes, persistence.seconds, persistence.bytes_written)
            start = time.perf_counter()
            call()
            spent = time.perf_counter() - start
            return (
                spent,
                persistence.writes - before[0],
                persistence.seconds - before[1],
                persistence.bytes_written - before[2],
            )

        while min(len(figures.tasks[k].work) for k in ("sum", "update")) < per_task:
            if time.monotonic() > deadline:
                raise TimeoutError(f"persistence benchmark at N={n}: {figures.tasks}")
            phase = measured.state.phase
            spent, records, persisted, written = timed(measured.tick)
            if measured.round_serial != serial:  # a new round: close the previous one
                if role is not Task.NONE and now.sent:
                    task = figures.tasks["sum" if role is Task.SUM else "update"]
                    task.records.append(now.records)
                    task.kbytes.append(now.written / 1e3)
                    task.persist.append(now.persisted)
                    task.critical.append(now.critical)
                    task.work.append(now.work)
                serial, role, now = measured.round_serial, Task.NONE, Round()
            now.add(spent if measured.made_progress() else 0.0, records, persisted, written)
            if (
                isinstance(phase, Sending)
                and phase.kind is not SendingKind.SUM
                and not isinstance(measured.state.phase, Sending)
            ):
                now.sent = True  # the task's last message went out: a complete task
            # On the way to the message: the ticks from the model (update) or from the seeds
            # (sum2) to the message on file; the tick that POSTs it records what follows.
            if isinstance(phase, Sum2) or (isinstance(phase, Update) and now.model_set):
                now.critical += persisted
            if isinstance(measured.state.phase, Sending) and not figures.file_sending:
                if measured.state.phase.kind is SendingKind.UPDATE:
                    figures.file_sending = persistence.path.stat().st_size
            if measured.should_set_model():
                set_model = partial(measured.set_model, models[id(measured)])
                spent, records, persisted, written = timed(set_model)
                figures.set_model.append(spent)
                now.add(spent, records, persisted, written)
                now.critical += persisted
                now.model_set = True
                _file_sizes(figures, measured)
            if measured.task() != Task.NONE:
                role = Task(measured.task())
            for other in others:
                other.tick()
                if other.should_set_model():
                    other.set_model(models[id(other)])
            time.sleep(0.005)
        for p in [measured, *others]:
            p.save()
    return figures


@dataclass
class Round:
    """The measured participant's figures in the current round."""

    records: int = 0
    written: float = 0.0
    persisted: float = 0.0
    critical: float = 0.0
    work: float = 0.0
    model_set: bool = False
    sent: bool = False

    def add(self, work: float, records: int, persisted: float, written: float) -> None:
        self.work += work
        self.records += records
        self.persisted += persisted
        self.written += written


def _file_sizes(figures: Figures, p: Participant) -> None:
    """The file with the local model just set, and the same state without it."""
    if figures.file_with_model or not isinstance(p.state.phase, Update):
        return
    persistence = p._persistence
    assert persistence is not None
    figures.file_with_model = persistence.path.stat().st_size
    state = p.state
    figures.file_without_model = len(dump_state(replace(state, local_model=None)))


def bench(quick: bool, row: Callable[[list[str], list[int]], str], load: Any) -> None:
    sizes = (100_000,) if quick else (100_000, 1_000_000)
    per_task = 1 if quick else 3
    widths = [8, 11, 9, 10, 12, 13, 10]
    print(f"\n## Persistence: what state_file= adds per task (median of {per_task} tasks)")
    titles = ["task", "N", "records", "kB", "persist ms", "to message", "work ms"]
    print(row(titles, widths))
    all_figures = []
    for n in sizes:
        figures = measure(n, per_task, timeout=300 + n / 2_000)
        all_figures.append(figures)
        for kind in ("update", "sum"):
            task = figures.tasks[kind]
            med = statistics.median
            cells = [
                kind,
                f"{n:,}",
                f"{med(task.records):.0f}",
                f"{med(task.kbytes):,.1f}",  # a sum task writes a few kB
                f"{med(task.persist) * 1e3:.2f}",
                f"{med(task.critical) * 1e3:.2f}",
                f"{med(task.work) * 1e3:.1f}",
            ]
            print(row(cells, widths))
    for f in all_figures:
        print(
            f"# N={f.n:,}: file with the local model set {f.file_with_model / 1e6:.2f} MB,"
            f" without it {f.file_without_model / 1e6:.2f} MB; while the Update is sent"
            f" {f.file_sending / 1e6:.2f} MB; set_model with its record"
            f" {statistics.median(f.set_model) * 1e3:.1f} ms"
        )
    print("# persist: dump + write + fsync + rename + fsync(dir) of all the task's records (ms);")
    print("# to message: the part of it between the model set (update) or the seeds fetched")
    print("# (sum2) and the message on file, i.e. what delays the message; work: the ticks")
    print("# that made progress and set_model in the task's round (persist included)")
    print(f"# {load.report()}")
