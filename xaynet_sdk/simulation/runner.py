"""Run N simulated participants for R rounds and report each round's outcome as data.

The participants are split into ``workers`` equal slices, one per worker process (or Ray
actor); each worker multiplexes its slice over a few threads (see ``_engine``). Without a
URL the runner starts a :class:`~xaynet_sdk.coordinator.LocalCoordinator` in this process,
sized for N (:func:`embedded_settings`), and reads each round's accepted and rejected
messages from it; against another coordinator only the participants' side is known (the
coordinator answers 200 to every POST, as the original does, so acceptance is not), and a
round counts as completed when ``GET /model`` serves a new model by the time the next round
starts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Union

from ..codec.bincode import RoundParameters
from ..codec.errors import CodecError
from ..coordinator import LocalCoordinator, Settings
from ..transport import Transport, TransportError
from ._backends import REPORT_INTERVAL, make_backend
from ._engine import ModelFunction, ParticipantFactory, WorkerSpec

__all__ = [
    "ConstantModel",
    "RoundOutcome",
    "SimulationResult",
    "embedded_settings",
    "run_simulation",
]

_log = logging.getLogger("xaynet_sdk.simulation")

#: How long after a round ended its outcome waits for the workers' last counts (late POSTs).
_SETTLE = 4 * REPORT_INTERVAL
#: How long it waits at most for every participant to be counted in it (a loaded worker's
#: report can come late; a participant that never ticked during a short round never comes).
_STRAGGLERS = 30.0


@dataclass(frozen=True)
class RoundOutcome:
    """One round, as the participants saw it and (embedded) as the coordinator counted it.

    ``round`` counts the rounds of this simulation from 1; ``round_id`` is the coordinator's
    (embedded only). ``sum``/``update``/``idle``: participants per task, counted by the
    workers. ``sent_*``: messages POSTed without a transport error. ``accepted_*``, ``late_updates``
    (Update messages rejected as ``wrong_phase``: they arrived after the Update phase
    closed; one that arrives after its round ended fails to decrypt and counts in
    ``rejected`` only) and ``rejected`` (every rejection) come from
    the embedded coordinator's counters; None against a URL. ``seconds``: the round's
    duration; ``cpu_seconds``: the CPU time of this process (embedded coordinator) and of the
    workers during it.
    """

    round: int
    round_id: Optional[int]
    completed: Optional[bool]
    failure: Optional[str]
    sum: int
    update: int
    idle: int
    trained: int
    sent_sums: int
    sent_updates: int
    sent_sum2s: int
    failed_posts: int
    accepted_sums: Optional[int]
    accepted_updates: Optional[int]
    accepted_sum2s: Optional[int]
    late_updates: Optional[int]
    rejected: Optional[int]
    seconds: float
    cpu_seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SimulationResult:
    """What :func:`run_simulation` returns: every finished round, and how the run went."""

    participants: int
    workers: int
    backend: str
    url: str
    #: From the call to every worker running all its participants.
    startup_seconds: float
    rounds: list[RoundOutcome] = field(default_factory=list)
    #: Requests made by all workers, by endpoint (params, sums, seeds, model, message).
    requests: dict[str, int] = field(default_factory=dict)
    #: Errors in user callbacks or ticks, by kind (each also logged once).
    errors: dict[str, int] = field(default_factory=dict)
    #: Participant ticks by all workers.
    ticks: int = 0
    #: The embedded coordinator's counters at the end (``LocalCoordinator.stats``).
    coordinator_stats: Optional[dict[str, Any]] = None

    @property
    def completed_rounds(self) -> list[RoundOutcome]:
        return [r for r in self.rounds if r.completed is not False]


class ConstantModel:
    """Participant ``i``'s model: ``length`` copies of ``(i % 1000 + 1) / 1000`` (picklable).

    The CLI's model, and a cheap stand-in when only the protocol's cost is of interest.
    """

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, index: int) -> Any:
        import numpy as np

        return np.full(self.length, (index % 1000 + 1) / 1000, dtype=np.float32)


def embedded_settings(
    participants: int,
    model_length: int,
    *,
    sum_participants: float = 5.0,
    update: float = 0.9,
    min_update_time: float = 2.0,
    data_type: str = "F32",
) -> Settings:
    """Coordinator settings for ``participants`` simulated participants.

    About ``sum_participants`` sum participants per round (sum probability
    ``sum_participants / N``, at most 0.5), update probability ``update``, a model type that
    can aggregate every update (M3 up to 1,000 participants, M6 up to 10^6, else M9), at
    least 3 updates, and ``min_update_time`` seconds of Update phase.
    """
    n = max(1, participants)
    model_type = "M3" if n <= 1_000 else "M6" if n <= 1_000_000 else "M9"
    return Settings.for_tests(
        model_length=model_length,
        mask=f"Prime/{data_type}/B0/{model_type}",
        sum=min(0.5, sum_participants / n),
        update=update,
        min_sum_count=1,
        min_update_count=3,
        min_sum2_count=1,
        min_sum_time=1.0,
        min_update_time=min_update_time,
        min_sum2_time=0.5,
        max_sum_time=120,
        max_update_time=120,
        max_sum2_time=120,
        max_sum_count=max(100, n),
        max_update_count=max(100, n),
        max_sum2_count=max(100, n),
    )


class _Rounds:
    """Follows the rounds: the seed of each (from ``GET /params``), the workers' counts per
    seed, and the coordinator's counters (embedded)."""

    def __init__(
        self, url: str, coordinator: Optional[LocalCoordinator], participants: int
    ) -> None:
        self.participants = participants
        self.coordinator = coordinator
        self.http = Transport(url, timeout=(5.0, 30.0))
        self.seeds: list[str] = []  # in the order seen
        #: The round in progress at the first poll: not one of the simulation's (it began
        #: before every worker ran), so not reported.
        self.in_progress: Optional[str] = None
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.counts: dict[str, Counter[str]] = {}
        self.cpu: dict[int, float] = {}
        self.cpu_at: dict[str, float] = {}
        self.stats_at_emit = self._stats()
        self.emitted = 0
        self.requests: dict[int, dict[str, int]] = {}
        self.errors: Counter[str] = Counter()
        self.ticks = 0
        self.model_digest: Optional[bytes] = None
        self.model_changed: dict[str, Optional[bool]] = {}

    def _model_changed(self) -> Optional[bool]:
        """Whether ``GET /model`` serves another model than at the last call (None: unknown)."""
        try:
            body = self.http.get_model()
        except TransportError:
            return None
        digest = hashlib.sha256(body).digest() if body is not None else None
        changed = digest is not None and digest != self.model_digest
        self.model_digest = digest
        return changed

    def _stats(self) -> Optional[dict[str, Any]]:
        return self.coordinator.stats if self.coordinator is not None else None

    def total_cpu(self) -> float:
        return time.process_time() + sum(self.cpu.values())

    def absorb(self, reports: list[tuple[int, dict[str, Any]]]) -> None:
        for worker, report in reports:
            for seed, counts in report["rounds"].items():
                self.counts.setdefault(seed, Counter()).update(counts)
            self.cpu[worker] = float(report["cpu"])
            self.requests[worker] = dict(report["requests"])
            self.errors.update(report["errors"])
            self.ticks += int(report["ticks"])

    def poll(self) -> None:
        """One ``GET /params``: note a new round (and when the previous one ended).

        The first call (once every worker runs) only notes the round in progress."""
        try:
            body = self.http.get_params()
            seed = RoundParameters.from_bytes(body).seed.hex() if body is not None else None
        except (TransportError, CodecError):
            return
        if seed is None or seed in self.started or seed == self.in_progress:
            return
        if self.in_progress is None and not self.seeds:
            self.in_progress = seed
            return
        now = time.monotonic()
        if self.seeds:
            self.ended.setdefault(self.seeds[-1], now)
            if self.coordinator is None:
                self.model_changed[self.seeds[-1]] = self._model_changed()
        else:
            self.stats_at_emit = self._stats()  # the first round's counters start here
            if self.coordinator is None:
                self._model_changed()  # the model before the first round
        self.seeds.append(seed)
        self.started[seed] = now
        self.cpu_at[seed] = self.total_cpu()

    def _counted(self, seed: str) -> int:
        """How many participants the workers have counted in the round ``seed`` so far."""
        c = self.counts.get(seed, Counter())
        return c["sum"] + c["update"] + c["idle"]

    def progress(self) -> str:
        """Where the simulation's own count of rounds stands, for a timeout's message."""
        waiting = ""
        if self.emitted < len(self.seeds):
            counted = self._counted(self.seeds[self.emitted])
            waiting = f"; round {self.emitted + 1} has {counted} of {self.participants} counted"
        begun = len(self.seeds)
        return f"{begun} rounds begun since every worker ran, {self.emitted} reported{waiting}"

    def ready(self) -> list[RoundOutcome]:
        """The outcomes of rounds that ended at least a settling time ago and in which every
        participant has been counted (or that ended :data:`_STRAGGLERS` seconds ago), in
        order: a worker's report can arrive after the next round began."""
        out: list[RoundOutcome] = []
        now = time.monotonic()
        while self.emitted < len(self.seeds):
            seed = self.seeds[self.emitted]
            record = None
            if self.coordinator is not None:
                # By seed: a round number read beside GET /params can be the previous
                # round's, as the poll that first sees a seed is the one nearest its start.
                records = {r.seed.hex(): r for r in self.coordinator.history}
                record = records.get(seed)
                if record is None:
                    return out
                end_time = record.ended
            else:
                if seed not in self.ended:
                    return out
                end_time = self.ended[seed]
            if now - end_time < _SETTLE:
                return out
            if self._counted(seed) < self.participants and now - end_time < _STRAGGLERS:
                return out
            out.append(self._outcome(seed, record, end_time))
            self.emitted += 1
        return out

    def _outcome(self, seed: str, record: Any, end_time: float) -> RoundOutcome:
        c = self.counts.get(seed, Counter())
        stats = self._stats()
        late = rejected = accepted = None
        if stats is not None and self.stats_at_emit is not None:
            prev = self.stats_at_emit

            def delta(*path: str) -> int:
                a: Any = stats
                b: Any = prev
                for key in path:
                    a = a.get(key, {}) if isinstance(a, dict) else 0
                    b = b.get(key, {}) if isinstance(b, dict) else 0
                return int(a or 0) - int(b or 0)

            late = delta("rejected_by_message", "Update", "wrong_phase")
            rejected = int(stats["rejected_total"]) - int(prev["rejected_total"])
            self.stats_at_emit = stats
        if record is not None:
            accepted = (record.sum_count, record.update_count, record.sum2_count)
        started = record.started if record is not None else self.started[seed]
        cpu_end = self.total_cpu()
        cpu = cpu_end - self.cpu_at.get(seed, cpu_end)
        return RoundOutcome(
            round=self.emitted + 1,
            round_id=record.round_id if record is not None else None,
            completed=record.completed if record is not None else self.model_changed.get(seed),
            failure=record.failure if record is not None else None,
            sum=c["sum"],
            update=c["update"],
            idle=c["idle"],
            trained=c["trained"],
            sent_sums=c["posted_sum"],
            sent_updates=c["posted_update"],
            sent_sum2s=c["posted_sum2"],
            failed_posts=c["post_failed_sum"] + c["post_failed_update"] + c["post_failed_sum2"],
            accepted_sums=accepted[0] if accepted else None,
            accepted_updates=accepted[1] if accepted else None,
            accepted_sum2s=accepted[2] if accepted else None,
            late_updates=late,
            rejected=rejected,
            seconds=round(end_time - started, 3),
            cpu_seconds=round(cpu, 3),
        )


def _split(n: int, workers: int) -> list[tuple[int, int]]:
    base, extra = divmod(n, workers)
    slices, first = [], 0
    for w in range(workers):
        count = base + (1 if w < extra else 0)
        slices.append((first, count))
        first += count
    return [s for s in slices if s[1] > 0]


def run_simulation(
    participant: Optional[ParticipantFactory] = None,
    *,
    participants: int,
    rounds: int,
    model: Optional[ModelFunction] = None,
    model_length: Optional[int] = None,
    url: Optional[str] = None,
    settings: Optional[Settings] = None,
    workers: Optional[int] = None,
    backend: str = "multiprocessing",
    threads: int = 4,
    scalar: Union[float, Callable[[int], float]] = 1.0,
    numpy: bool = False,
    poll_max: float = 1.0,
    on_round: Optional[Callable[[RoundOutcome], None]] = None,
    timeout: Optional[float] = None,
    ray_address: Optional[str] = None,
) -> SimulationResult:
    """Run ``participants`` participants until ``rounds`` rounds completed; return the outcomes.

    ``participant`` is a :class:`~xaynet_sdk.ParticipantABC` subclass (or any picklable
    callable) called with the participant's index, 0 to N-1; or give ``model``, a picklable
    function of the index returning the local model; neither: :class:`ConstantModel` of
    ``model_length``. ``url``: an existing coordinator; without it a local one runs in this
    process with ``settings`` (default :func:`embedded_settings` for N and ``model_length``).
    ``workers`` defaults to the number of usable cores; ``backend`` is ``"multiprocessing"``
    or ``"ray"`` (``ray_address`` to join a cluster). The rounds count from the first one that
    begins once every worker runs (the one in progress then is not reported); ``on_round`` is
    called with each round's outcome as it is known. Raises ``TimeoutError`` if the rounds do
    not complete within ``timeout`` seconds (default: 120 s per round and for the one in
    progress, plus 1 s per 10 participants), and ``RuntimeError`` if a worker fails.

    The multiprocessing backend starts its workers with ``spawn``: as with any
    ``multiprocessing`` program, call this under ``if __name__ == "__main__":`` in a script.
    """
    if participants < 1 or rounds < 1:
        raise ValueError("participants and rounds must be at least 1")
    if participant is not None and model is not None:
        raise ValueError("give participant or model, not both")
    if participant is None and model is None:
        if model_length is None:
            raise ValueError("give participant, model or model_length")
        model = ConstantModel(model_length)
    workers = workers or len(os.sched_getaffinity(0))
    workers = max(1, min(workers, participants))
    if timeout is None:
        timeout = 120.0 * (rounds + 1) + participants / 10
    t0 = time.monotonic()
    coordinator: Optional[LocalCoordinator] = None
    if url is None:
        if settings is None:
            if model_length is None:
                raise ValueError("an embedded coordinator needs model_length (or settings)")
            settings = embedded_settings(participants, model_length)
        coordinator = LocalCoordinator(settings, keep_models=1).start()
        url = coordinator.url
    specs = [
        WorkerSpec(first, count, participant, model, scalar, numpy, threads, poll_max)
        for first, count in _split(participants, workers)
    ]
    tracker = _Rounds(url, coordinator, participants)
    runner = make_backend(backend, ray_address)
    result = SimulationResult(participants, len(specs), backend, url, 0.0)
    try:
        runner.start(url, specs)
        runner.wait_started(timeout=max(60.0, participants / 20))
        result.startup_seconds = time.monotonic() - t0
        # The rounds count from the next one that begins: the one in progress (and any that
        # ended while workers were starting; Ray actors can take many seconds) did not have
        # every participant from its start.
        tracker.poll()
        _log.info(
            "%d participants running in %d %s workers after %.2f s",
            participants,
            len(specs),
            backend,
            result.startup_seconds,
        )
        deadline = t0 + timeout
        while len(result.completed_rounds) < rounds:
            if time.monotonic() > deadline:
                status = coordinator.status() if coordinator is not None else url
                raise TimeoutError(
                    f"{len(result.completed_rounds)} of {rounds} rounds completed in"
                    f" {timeout:g} s ({tracker.progress()}): {status}"
                )
            tracker.absorb(runner.reports())
            tracker.poll()
            for outcome in tracker.ready():
                result.rounds.append(outcome)
                if on_round is not None:
                    on_round(outcome)
                if len(result.completed_rounds) >= rounds:
                    break
            time.sleep(0.05)
    finally:
        try:
            tracker.absorb(runner.stop())
        finally:
            tracker.http.close()
            if coordinator is not None:
                result.coordinator_stats = coordinator.stats
                coordinator.stop()
    totals: Counter[str] = Counter()
    for counts in tracker.requests.values():
        totals.update(counts)
    result.requests = dict(totals)
    result.errors = dict(tracker.errors)
    result.ticks = tracker.ticks
    if not math.isfinite(result.startup_seconds):  # pragma: no cover - defensive
        result.startup_seconds = 0.0
    return result
