"""Coordinator faults in every phase, over real HTTP on loopback: the participants survive.

Each fault of :data:`fault_servers.FAULTS` (error statuses, empty, truncated and garbage
bodies, answers slower than the participant's timeout, connection refused), and a coordinator
stopped and restarted on the same port, is injected at the start of the coordinator's Sum,
Update and Sum2 phase in turn, for :data:`WINDOW` seconds. During the fault every participant
must keep its thread, poll no more often than the original's backoff allows (counted on the
participant's side, request by request), and log each kind of problem once rather than once
per poll; after it, the rounds must complete again. Each cell also proves that its fault was
delivered within its window (the proxy's records of faulty answers, or the participants'
refused connections), and that the next global model is exact: the mean of exactly one
subset of the participants' distinct local models.

Every cell of the matrix is printed (``pytest -s``) as one line: fault, phase, the polls and
requests of the busiest participant against their bounds, the warnings logged (all
participants), the rounds that failed, and the time from the end of the fault to the next
completed round.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fault_servers import (  # noqa: E402
    FAULTS,
    CountingTransport,
    FaultProxy,
    LogCapture,
    free_port,
    max_polls,
)
from participant_fakes import Fixed  # noqa: E402
from round_checks import Contribution, contribution, match_subset  # noqa: E402

from xaynet_sdk import AsyncParticipant, InternalParticipant  # noqa: E402
from xaynet_sdk.coordinator import LocalCoordinator, Phase, Settings  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402

pytestmark = pytest.mark.timeout(120)

#: How long each fault lasts.
WINDOW = 1.2
#: The participants' request timeout; the "slow" fault answers after SLOW_DELAY.
TIMEOUT = 0.5
SLOW_DELAY = 1.0
N_PARTICIPANTS = 10
PHASES = (Phase.SUM, Phase.UPDATE, Phase.SUM2)
#: Requests a participant may make in one tick while the coordinator fails: /params, and the
#: global model the callback wrapper refetches after a failed fetch. The tick that straddles
#: the start of the fault may also have reached its phase request (+1).
REQUESTS_PER_TICK = 2


def settings(port: int = 0) -> Settings:
    """Short phases, long enough maxima to survive a fault and finish the same round."""
    return Settings.for_tests(
        model_length=4,
        sum=0.4,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=0.3,
        min_update_time=0.5,
        min_sum2_time=0.3,
        max_sum_time=3.0,
        max_update_time=3.0,
        max_sum2_time=3.0,
        bind_address=f"127.0.0.1:{port}",
    )


Handle = Union[InternalParticipant, AsyncParticipant]
CONFIG = MaskConfig.from_name("Prime/F32/B0/M3")  # Settings.for_tests's mask configuration


def local_model(index: int) -> list[float]:
    """Random, so that no two subsets of participants have the same mean."""
    rng = np.random.default_rng(1000 + index)
    values: list[float] = rng.uniform(-1, 1, 4).astype(np.float32).tolist()
    return values


#: The updates the callback participants can contribute (the pull ones set no model).
PARTS: list[Contribution] = [
    contribution(f"participant-{i}", local_model(i), 1.0, CONFIG)
    for i in range(N_PARTICIPANTS)
    if i % 4 != 3
]


def spawn_counted(url: str, index: int) -> tuple[Handle, CountingTransport]:
    """A participant on the real HTTP transport, counting its requests: the callback API,
    or for every fourth one the pull API (it never gets a local model: it only polls)."""
    transport = CountingTransport(url, timeout=TIMEOUT)
    participant: Handle
    if index % 4 == 3:
        participant = AsyncParticipant(url, threading.Event(), transport=transport)
    else:
        participant = InternalParticipant(url, Fixed, (local_model(index),), transport=transport)
    participant.name = f"participant-{index}"  # log records are told apart by thread name
    participant.start()
    return participant, transport


def wait_for_phase_start(coord: LocalCoordinator, phase: Phase, timeout: float = 30.0) -> int:
    """Block until ``phase`` *begins* (a transition into it is seen); return the round id."""
    deadline = time.monotonic() + timeout
    previous = coord.phase
    while time.monotonic() < deadline:
        current = coord.phase
        if current is phase and previous is not phase:
            return coord.round_id
        previous = current
        time.sleep(0.002)
    raise AssertionError(f"the {phase.value} phase did not begin within {timeout} s")


def wait_for_completed_round(
    coord_of: Callable[[], LocalCoordinator], after: float, timeout: float = 30.0
) -> float:
    """The monotonic time at which a round ending after ``after`` completed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in coord_of().history:
            if record.completed and record.ended > after:
                return record.ended
        time.sleep(0.01)
    raise AssertionError(f"no round completed within {timeout} s: {coord_of().status()}")


def delivered(
    proxy: FaultProxy | None,
    transports: list[CountingTransport],
    fault: str,
    start: float,
    end: float,
    paths: frozenset[str] | None = None,
) -> int:
    """Faulty answers the proxy gave in ``[start, end]`` (to ``paths``), or for "refused"
    and a stopped coordinator the connections the participants saw refused."""
    if fault in ("refused", "restart") or proxy is None:
        return sum(
            1 for t in transports for r in t.between(start, end) if r.outcome == "ConnectFailed"
        )
    return sum(
        1
        for r in list(proxy.records)
        if r.fault == fault and start <= r.time <= end and (paths is None or r.path in paths)
    )


def exact_model_at(coord: LocalCoordinator, ended: float) -> list[str]:
    """The participants whose updates make up, exactly, the model of the round that ended at
    ``ended`` (``match_subset`` fails unless exactly one subset's mean is the model)."""
    completed = [r for r in coord.history if r.completed]
    models = coord.global_models
    assert len(models) == len(completed)
    (index,) = [i for i, r in enumerate(completed) if r.ended == ended]
    return match_subset(models[index], PARTS, CONFIG, size=completed[index].update_count)


class Matrix:
    """Checks and prints one cell of the fault matrix."""

    def __init__(
        self,
        logs: LogCapture,
        participants: list[Handle],
        transports: list[CountingTransport],
    ) -> None:
        self.logs = logs
        self.participants = participants
        self.transports = transports

    def check(
        self,
        fault: str,
        phase: Phase,
        start: float,
        end: float,
        recovered: float,
        coord: LocalCoordinator,
        delivered: int,
        polled: frozenset[str] = frozenset({"params"}),
        progress_possible: bool = False,
    ) -> dict[str, Any]:
        """One cell: ``delivered`` is how many faulty answers (or refused connections) the
        participants got in the window; ``polled`` are the failing endpoints that a
        participant retries each tick without making progress; with ``progress_possible``
        (some endpoints work) the total number of requests is not bounded by the backoff.
        The round that completed at ``recovered`` must have published an exact model."""
        window = end - start
        ticks = max_polls(window)
        requests = [t.between(start, end) for t in self.transports]
        counts = [len(r) for r in requests]
        polls = [sum(1 for x in r if x.endpoint in polled) for r in requests]
        failed_rounds = sum(
            1 for r in coord.history if not r.completed and start <= r.ended <= recovered
        )
        row = {
            "fault": fault,
            "phase": phase.value,
            "window_s": round(window, 2),
            "requests_max": max(counts),
            "requests_bound": None if progress_possible else REQUESTS_PER_TICK * ticks + 1,
            "polls_max": max(polls),
            "polls_bound": ticks,
            "warnings": len(self.logs.participant_records(start, end)),
            "failed_rounds": failed_rounds,
            "recovery_s": round(recovered - end, 2),
            "delivered": delivered,
            "next_model": exact_model_at(coord, recovered),
        }
        print(f"\nFAULT-MATRIX {row}")
        assert delivered >= 1, f"the fault was not delivered in its window: {row}"
        assert all(p.is_alive() for p in self.participants), f"a participant died: {row}"
        assert max(polls) <= ticks, f"polling faster than the backoff allows: {row}"
        if not progress_possible:
            assert max(counts) <= REQUESTS_PER_TICK * ticks + 1, f"too many requests: {row}"
        assert min(counts) >= 1, f"a participant stopped polling: {row}"
        repeated = self.logs.repeated(start, end)
        assert not repeated, f"logged more than once per participant: {repeated}"
        return row

    def final_checks(self) -> None:
        bad = [
            r
            for r in self.logs.participant_records(level=logging.ERROR)
            if r.has_traceback or "unrecoverable" in r.message
        ]
        assert not bad, bad


@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.value)
def test_every_fault_in_a_phase(phase: Phase) -> None:
    """One coordinator behind the proxy; each fault in turn, at the start of ``phase``."""
    with (
        LogCapture() as logs,
        LocalCoordinator(settings()) as coord,
        FaultProxy(coord.url, slow_delay=SLOW_DELAY) as proxy,
    ):
        spawned = [spawn_counted(proxy.url, i) for i in range(N_PARTICIPANTS)]
        participants = [p for p, _ in spawned]
        matrix = Matrix(logs, participants, [t for _, t in spawned])
        try:
            coord.wait_for_global_models(1, timeout=30)  # everyone is in the rhythm
            for fault in FAULTS:
                wait_for_phase_start(coord, phase)
                start = time.monotonic()
                proxy.set_fault(fault)
                time.sleep(WINDOW)
                proxy.set_fault(None)
                end = time.monotonic()
                recovered = wait_for_completed_round(lambda: coord, end)
                got = delivered(proxy, matrix.transports, fault, start, end)
                matrix.check(fault, phase, start, end, recovered, coord, got)
            matrix.final_checks()
        finally:
            for p in participants:
                p.stop()


@pytest.mark.parametrize("fault", ["garbage", "status_500", "truncated"])
def test_fault_on_the_phase_endpoints_only(fault: str) -> None:
    """``/params`` works but ``/sums`` and ``/seeds`` fail: the Update and Sum2 steps retry
    quietly, with backoff, and the round completes once the dictionaries come through."""
    with (
        LogCapture() as logs,
        LocalCoordinator(settings()) as coord,
        FaultProxy(coord.url, slow_delay=SLOW_DELAY) as proxy,
    ):
        spawned = [spawn_counted(proxy.url, i) for i in range(N_PARTICIPANTS)]
        participants = [p for p, _ in spawned]
        matrix = Matrix(logs, participants, [t for _, t in spawned])
        try:
            coord.wait_for_global_models(1, timeout=30)
            wait_for_phase_start(coord, Phase.UPDATE)
            start = time.monotonic()
            proxy.set_fault(fault, {"/sums", "/seeds"})
            time.sleep(2 * WINDOW)  # the Update phase, and the Sum2 phase if it begins
            proxy.set_fault(None)
            end = time.monotonic()
            recovered = wait_for_completed_round(lambda: coord, end)
            matrix.check(
                f"{fault} on /sums and /seeds",
                Phase.UPDATE,
                start,
                end,
                recovered,
                coord,
                delivered(
                    proxy, matrix.transports, fault, start, end, frozenset({"/sums", "/seeds"})
                ),
                polled=frozenset({"sums", "seeds"}),
                progress_possible=True,
            )
            matrix.final_checks()
        finally:
            for p in participants:
                p.stop()


def test_coordinator_restarted_on_the_same_port_in_every_phase() -> None:
    """Stop the coordinator in each phase; a NEW one starts on the same port after WINDOW.

    The new coordinator has new round keys and starts at round 1: the participants see new
    round parameters, drop what they were doing and take part in its rounds.
    """
    port = free_port()
    coords = [LocalCoordinator(settings(port)).start()]
    url = coords[0].url
    assert coords[0].port == port
    with LogCapture() as logs:
        spawned = [spawn_counted(url, i) for i in range(N_PARTICIPANTS)]
        participants = [p for p, _ in spawned]
        matrix = Matrix(logs, participants, [t for _, t in spawned])
        try:
            coords[-1].wait_for_global_models(1, timeout=30)
            for phase in PHASES:
                wait_for_phase_start(coords[-1], phase)
                start = time.monotonic()
                coords[-1].stop()
                time.sleep(WINDOW)
                coords.append(LocalCoordinator(settings(port)).start())  # rebinds the port
                end = time.monotonic()
                recovered = wait_for_completed_round(lambda: coords[-1], end)
                got = delivered(None, matrix.transports, "restart", start, end)
                matrix.check("restart", phase, start, end, recovered, coords[-1], got)
            matrix.final_checks()
        finally:
            for p in participants:
                p.stop()
            for c in coords:
                c.stop()


def test_slow_global_model_keeps_the_polling_bounded() -> None:
    """Only ``GET /model`` is slower than the timeout (a large model on a bad link).

    The callback participants do not train without the round's global model (as in the
    original), but they keep fetching it one request at a time, log the problem once, and
    take part again as soon as it comes through.
    """
    with (
        LogCapture() as logs,
        LocalCoordinator(settings()) as coord,
        FaultProxy(coord.url, slow_delay=SLOW_DELAY) as proxy,
    ):
        spawned = [spawn_counted(proxy.url, i) for i in range(N_PARTICIPANTS)]
        participants = [p for p, _ in spawned]
        try:
            coord.wait_for_global_models(1, timeout=30)
            proxy.set_fault("slow", {"/model"})
            start = time.monotonic()
            published = coord.stats["global_models"]
            time.sleep(2 * WINDOW)
            end = time.monotonic()
            proxy.set_fault(None)
            coord.wait_for_global_models(published + 1, timeout=30)
            transports = [t for _, t in spawned]
            assert delivered(proxy, transports, "slow", start, end, frozenset({"/model"})) >= 1
            window = end - start
            for t in (t for _, t in spawned):
                models = [r for r in t.between(start, end) if r.endpoint == "model"]
                # One thread, one fetch at a time, each one waiting out the timeout.
                assert len(models) <= int(window / TIMEOUT) + 1, len(models)
            assert all(p.is_alive() for p in participants)
            assert not logs.repeated(start, end)
        finally:
            for p in participants:
                p.stop()


def test_threads_end_when_participants_stop_during_a_fault() -> None:
    """``stop()`` returns at once even while every request hangs, and no thread lingers."""
    with LocalCoordinator(settings()) as coord, FaultProxy(coord.url, slow_delay=3.0) as proxy:
        spawned = [spawn_counted(proxy.url, i) for i in range(3)]
        coord.wait_for_global_models(1, timeout=30)
        proxy.set_fault("slow")
        time.sleep(0.3)
        assert delivered(proxy, [t for _, t in spawned], "slow", 0.0, time.monotonic()) >= 1
        before = time.monotonic()
        states = [p.stop() for p, _ in spawned]
        # At once: far below SLOW_DELAY (3 s), however loaded the machine.
        assert time.monotonic() - before < 2.5
        assert all(isinstance(s, list) and s for s in states)
        for p, _ in spawned:
            p.join(20)  # stop() cut the request in flight: the thread ends
            assert not p.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("participant-")]
