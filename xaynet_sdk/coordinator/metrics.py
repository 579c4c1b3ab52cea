"""Prometheus metrics: what the original records in InfluxDB, served at ``/metrics``.

The original (``xaynet-server`` with the ``metrics`` feature) writes these measurements; here
each has a Prometheus counterpart, read from the coordinator's state and counters when
Prometheus scrapes (so a metric can never disagree with ``LocalCoordinator.stats``):

===========================================  ==================================================
original measurement (tags)                  metric here
===========================================  ==================================================
``phase`` (0 Idle, 1 Sum, 2 Update,          ``xaynet_phase`` (same numbers), and
3 Sum2, 4 Unmask, 5 Error, 6 Shutdown)       ``xaynet_phase_state{phase}`` (1 for the current)
``round_total_number``                       ``xaynet_round_id``
``round_param_sum``, ``round_param_update``  ``xaynet_round_param_sum``, ``..._update``
``message_sum/update/sum2`` (accepted)       ``xaynet_messages_accepted_total{phase}``
``message_rejected`` (round_id, phase)       ``xaynet_messages_rejected_total{phase,reason}``
``message_discarded`` (round_id, phase)      ``xaynet_messages_discarded_total{phase}``
``masks_total_number`` (unique masks)        ``xaynet_masks_total_number``
``event`` "Phase error"                      ``xaynet_rounds_failed_total{kind}``
===========================================  ==================================================

Extensions: ``xaynet_round_participants{phase}`` (messages accepted this round),
``xaynet_rounds_completed_total``, ``xaynet_global_models_total``,
``xaynet_phase_duration_seconds{phase}`` and ``xaynet_round_duration_seconds`` (histograms),
``xaynet_http_requests_total{method,path,status}``, ``xaynet_open_connections``,
``xaynet_connections_refused_total`` and ``xaynet_connections_closed_total{reason}``.

The original tags each data point with the round id; Prometheus keeps the round id as its own
series (``xaynet_round_id``) instead, since a label per round would grow without bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any, Callable, Optional

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .outcomes import Phase, Reason
from .state import CoordinatorState, Round, RoundRecord
from .stats import Stats

__all__ = ["PHASE_NUMBERS", "CoordinatorMetrics", "PhaseFollower"]

_log = logging.getLogger("xaynet_sdk.coordinator.metrics")

#: The original's ``PhaseName as u8`` (``Error`` is 5; a failed round shows as its counter).
PHASE_NUMBERS = {
    Phase.IDLE: 0,
    Phase.SUM: 1,
    Phase.UPDATE: 2,
    Phase.SUM2: 3,
    Phase.UNMASK: 4,
    Phase.STOPPED: 6,
}
_MESSAGE_PHASES = (Phase.SUM, Phase.UPDATE, Phase.SUM2)
_DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))


class _StateCollector(Collector):
    """Reads the state and the counters at scrape time."""

    def __init__(
        self,
        state: CoordinatorState,
        stats: Stats,
        phase: Callable[[], Phase],
        open_connections: Callable[[], int],
    ) -> None:
        self._state = state
        self._stats = stats
        self._phase = phase
        self._open_connections = open_connections

    def collect(self) -> Iterator[Metric]:
        state = self._state
        phase = self._phase()
        round_id = 0
        params: tuple[float, float] = (0.0, 0.0)
        participants = {p: 0 for p in _MESSAGE_PHASES}
        masks = 0
        if state.started:
            with state.lock:
                current = state.round
                round_id = current.round_id
                params = (current.params.sum, current.params.update)
                participants = {p: current.accepted[p] for p in _MESSAGE_PHASES}
                masks = len(current.masks)
        snapshot = self._stats.snapshot()

        yield GaugeMetricFamily(
            "xaynet_phase",
            "The phase, numbered as the original's metric (0 Idle, 1 Sum, 2 Update, 3 Sum2,"
            " 4 Unmask, 6 Shutdown)",
            value=PHASE_NUMBERS[phase],
        )
        states = GaugeMetricFamily(
            "xaynet_phase_state", "1 for the current phase", labels=["phase"]
        )
        for p in PHASE_NUMBERS:
            states.add_metric([p.value], 1.0 if p is phase else 0.0)
        yield states
        yield GaugeMetricFamily("xaynet_round_id", "The current round id", value=round_id)
        yield GaugeMetricFamily(
            "xaynet_round_param_sum", "The round's sum probability", value=params[0]
        )
        yield GaugeMetricFamily(
            "xaynet_round_param_update", "The round's update probability", value=params[1]
        )
        counted = GaugeMetricFamily(
            "xaynet_round_participants",
            "Messages accepted in the current round, by phase (sum, update, sum2 participants)",
            labels=["phase"],
        )
        for p, n in participants.items():
            counted.add_metric([p.value], n)
        yield counted
        yield GaugeMetricFamily(
            "xaynet_masks_total_number",
            "Distinct Sum2 masks received in the current round",
            value=masks,
        )

        accepted = CounterMetricFamily(
            "xaynet_messages_accepted", "Messages accepted, by phase", labels=["phase"]
        )
        for name, n in snapshot["accepted"].items():
            accepted.add_metric([name], n)
        yield accepted
        rejected = CounterMetricFamily(
            "xaynet_messages_rejected",
            "Messages rejected, by the phase they arrived in and the reason",
            labels=["phase", "reason"],
        )
        discarded = CounterMetricFamily(
            "xaynet_messages_discarded",
            "Messages discarded because their phase had its maximum count, by phase",
            labels=["phase"],
        )
        for phase_name, reasons in sorted(snapshot["rejected_by_phase"].items()):
            for reason, n in sorted(reasons.items()):
                if reason == Reason.DISCARDED.value:
                    discarded.add_metric([phase_name], n)
                else:
                    rejected.add_metric([phase_name, reason], n)
        yield rejected
        yield discarded
        yield CounterMetricFamily(
            "xaynet_rounds_completed",
            "Rounds that published a global model",
            value=snapshot["rounds_completed"],
        )
        failed = CounterMetricFamily(
            "xaynet_rounds_failed", "Rounds that failed, by kind", labels=["kind"]
        )
        for kind, n in sorted(snapshot["round_failures"].items()):
            failed.add_metric([kind], n)
        yield failed
        yield CounterMetricFamily(
            "xaynet_global_models", "Global models published", value=state.models_published
        )
        http = CounterMetricFamily(
            "xaynet_http_requests",
            "HTTP requests answered, by method, path and status",
            labels=["method", "path", "status"],
        )
        for key, statuses in sorted(snapshot["http"].items()):
            method, _, path = key.partition(" ")
            for status, n in sorted(statuses.items()):
                http.add_metric([method, path, status], n)
        yield http
        yield GaugeMetricFamily(
            "xaynet_open_connections", "Open client connections", value=self._open_connections()
        )
        yield CounterMetricFamily(
            "xaynet_connections_refused",
            "Connections closed at once because the server was full",
            value=snapshot["connections_refused"],
        )
        closed = CounterMetricFamily(
            "xaynet_connections_closed",
            "Connections closed by the server: timeouts, evictions, failed TLS handshakes",
            labels=["reason"],
        )
        for reason, n in sorted(snapshot["connections_closed"].items()):
            closed.add_metric([reason], n)
        yield closed


class PhaseFollower:
    """A thread that follows the round's phases and tells its listeners.

    The state notifies its condition on every change, so each phase change is seen once; a
    phase so short that it ended before the thread looked (Unmask, typically) is reported
    when the round ends. Listeners are called on this thread, never under the state's lock.
    """

    def __init__(self, state: CoordinatorState) -> None:
        self.state = state
        self._listeners: list[Any] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, listener: Any) -> None:
        """``listener.phase_started(round, phase)``, ``listener.phase_ended(round, phase,
        seconds)`` and ``listener.round_ended(round, record)``; any of them may be absent."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._follow, name="xaynet-coordinator-metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.state.cond:
            self.state.cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _tell(self, what: str, *args: Any) -> None:
        for listener in self._listeners:
            method = getattr(listener, what, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception:  # noqa: BLE001 - metrics must never stop the coordinator
                _log.warning("a metrics listener failed", exc_info=True)

    def _follow(self) -> None:
        state = self.state
        last: Optional[tuple[Round, Phase, float]] = None
        while not self._stop.is_set():
            with state.cond:
                unchanged = (
                    last is not None and state.round is last[0] and state.round.phase is last[1]
                )
                if not state.started or unchanged:
                    state.cond.wait(0.5)
                if not state.started:
                    continue
                current = state.round
                seen = (current, current.phase, current.phase_started)
            if last is None:
                self._tell("phase_started", current, current.phase)
            elif seen[0] is last[0] and seen[1] is not last[1]:
                self._tell("phase_ended", current, last[1], seen[2] - last[2])
                self._tell("phase_started", current, seen[1])
            elif seen[0] is not last[0]:
                ended = last[0]
                records = [r for r in state.history()[-8:] if r.round_id == ended.round_id]
                if records:
                    record = records[-1]
                    final, final_started = ended.phase, ended.phase_started
                    if final is not last[1]:
                        # The round's last phase (Unmask, typically) ended before this thread
                        # looked: the one seen last ended when it started.
                        self._tell("phase_ended", ended, last[1], final_started - last[2])
                        self._tell("phase_started", ended, final)
                        last = (ended, final, final_started)
                    self._tell("phase_ended", ended, last[1], max(0.0, record.ended - last[2]))
                    self._tell("round_ended", ended, record)
                self._tell("phase_started", current, current.phase)
            last = seen


class CoordinatorMetrics:
    """The coordinator's metrics registry; :meth:`serve` exposes it over HTTP.

    Durations are observed by a :class:`PhaseFollower` listener when a phase or round ends.
    """

    def __init__(
        self,
        state: CoordinatorState,
        stats: Stats,
        phase: Callable[[], Phase],
        open_connections: Callable[[], int],
    ) -> None:
        self.state = state
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StateCollector(state, stats, phase, open_connections))
        self.phase_duration = Histogram(
            "xaynet_phase_duration_seconds",
            "How long each phase was open",
            ["phase"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.round_duration = Histogram(
            "xaynet_round_duration_seconds",
            "How long each finished round took, from its Sum phase to the next round",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._server: Any = None
        self._server_thread: Optional[threading.Thread] = None

    # -- PhaseFollower listener ---------------------------------------------------------------
    def phase_ended(self, current: Round, phase: Phase, seconds: float) -> None:
        self.phase_duration.labels(phase.value).observe(seconds)

    def round_ended(self, current: Round, record: RoundRecord) -> None:
        self.round_duration.observe(record.duration)

    # -- serving ------------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0: a free port); return the port."""
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._server_thread = server, thread
        return int(server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._server_thread is not None:
                self._server_thread.join()
