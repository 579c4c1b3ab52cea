"""The coordinator in one object, :class:`LocalCoordinator`: settings in, a serving coordinator out.

It wires the modules of :mod:`xaynet_sdk.coordinator` together: the store (restore first),
the HTTP server, the metrics, the round driver; and it stops them in the reverse order.
"""

from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction
from types import TracebackType
from typing import Any, Callable, Optional

from .limits import Limits
from .outcomes import Phase
from .pipeline import Pipeline
from .rounds import RoundDriver
from .server import CoordinatorHTTPServer
from .settings import Settings
from .state import CoordinatorState, PublishedModel, RoundRecord, model_length_of
from .stats import Stats
from .store import RestoreError, StoredState, open_store
from .tls import server_context

__all__ = ["LocalCoordinator"]

_log = logging.getLogger("xaynet_sdk.coordinator")


class LocalCoordinator:
    """The coordinator, serving in background threads between :meth:`start` and :meth:`stop`.

    ``limits`` bounds what clients can make it hold (see :class:`Limits`); ``keep_models``
    bounds how many published global models stay in memory (``None``: all, for tests; the
    CLI keeps 1). A context manager: ``with LocalCoordinator(settings) as c:`` starts and
    stops it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        limits: Optional[Limits] = None,
        keep_models: Optional[int] = None,
    ) -> None:
        if not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings, got {type(settings).__name__}")
        if keep_models is not None and keep_models < 1:
            raise ValueError("keep_models must be at least 1 (or None to keep all)")
        self.settings = settings
        self.limits = limits if limits is not None else Limits()
        self._stats = Stats()
        self._state = CoordinatorState(settings, self.limits, keep_models=keep_models)
        self._pipeline = Pipeline(self._state, self._stats)
        self._driver: Optional[RoundDriver] = None
        self._server: Optional[CoordinatorHTTPServer] = None
        self._server_thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        self._stopped = False
        #: the phase follower, the Prometheus endpoint, the InfluxDB writer (as configured)
        self._metrics: list[Any] = []
        #: the port of ``/metrics`` when ``[metrics.prometheus]`` is set
        self.metrics_port: Optional[int] = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "LocalCoordinator":
        """Bind (port 0: a free port), open round 1 and serve in background threads.

        Raises ``OSError`` if the address cannot be bound, :class:`SettingsError` if TLS is
        configured and a certificate or key cannot be used. Starting twice is an error;
        a stopped coordinator cannot be restarted (build a new one).

        With ``[redis]`` the stored round is restored first (``[restore] enable``; ``false``
        deletes it): :class:`StoreError` if Redis or S3 cannot be reached,
        :class:`RestoreError` if the stored state does not fit the settings.
        """
        with self._lifecycle:
            if self._stopped:
                raise RuntimeError("this coordinator was stopped; create a new one")
            if self._server is not None:
                raise RuntimeError("the coordinator is already running")
            context = server_context(self.settings.api) if self.settings.api.tls else None
            # -- [redis], [restore], [s3] --
            settings = self.settings
            store = open_store(settings.redis.url if settings.redis is not None else None)
            models = None
            try:
                if settings.s3 is not None:
                    from .s3 import S3ModelStore

                    models = S3ModelStore(settings.s3).connect()
                if not settings.restore.enable:
                    store.clear()
                    _log.info("[restore] enable = false: the stored state was deleted")
                stored = store.load()
                restored = None
                if stored is not None:
                    self._state.check_restorable(stored)
                    restored = self._restored_model(stored, models)
            except BaseException:
                store.close()
                raise
            self._state.store = store
            self._state.store_model_bytes = models is None
            # -- end of [redis], [restore], [s3] --
            api = self.settings.api
            try:
                server = CoordinatorHTTPServer(
                    api.host,
                    api.port,
                    self._state,
                    self._pipeline,
                    self._stats,
                    self.limits,
                    context,
                )
            except BaseException:
                store.close()
                raise
            try:
                self._start_metrics(server)
                if stored is None:
                    with self._state.lock:
                        first = self._state.begin_round()
                else:
                    first = self._state.restore(stored, restored)
            except BaseException:
                for part in self._metrics:
                    part.stop()
                server.close()
                store.close()
                raise
            if stored is not None:
                _log.info(
                    "restored from %s: round %d in the %s phase (accepted: %d sum, %d update,"
                    " %d sum2); latest global model: %s",
                    store.describe(),
                    first.round_id,
                    first.phase.value,
                    first.accepted[Phase.SUM],
                    first.accepted[Phase.UPDATE],
                    first.accepted[Phase.SUM2],
                    restored.id if restored is not None else "none",
                )
            self._server = server
            self._driver = RoundDriver(self._state, self._stats, models)
            self._driver.start()
            self._server_thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="xaynet-coordinator-http",
                daemon=True,
            )
            self._server_thread.start()
        nb_models = self.settings.mask.max_nb_models
        if self.settings.pet.max_update_count > nb_models:
            _log.info(
                "the model type %s aggregates at most %d updates per round; further ones are"
                " rejected (max_update_count is %d)",
                self.settings.mask.model_type.name,
                nb_models,
                self.settings.pet.max_update_count,
            )
        if self.settings.insecure_min_counts:
            _log.warning(
                "insecure_min_counts is set: rounds may aggregate fewer than 3 updates, which"
                " reveals individual models (for tests only)"
            )
        _log.info(
            "coordinator listening on %s (%s, model length %d); round %d: %s phase",
            self.url,
            self.settings.mask.name,
            self.settings.model_length,
            first.round_id,
            first.phase.value,
        )
        return self

    def _restored_model(self, stored: StoredState, models: Any) -> Optional[PublishedModel]:
        """The latest global model named in the store, checked like the original does."""
        ref = stored.latest_model
        if ref is None:
            return None
        where = models.describe() if models is not None else self._state.store.describe()
        data = models.get(ref.id) if models is not None else ref.data
        if data is None:
            raise RestoreError(f"the latest global model {ref.id} is missing from {where}")
        try:
            length = model_length_of(data)
        except ValueError as e:
            raise RestoreError(f"the latest global model {ref.id} in {where}: {e}") from None
        if length != self.settings.model_length:
            raise RestoreError(
                f"the length of the global model with the id {ref.id} does not match the model"
                f" length setting: {length} != {self.settings.model_length}"
            )
        round_id = int(ref.id.split("_", 1)[0]) if ref.id.split("_", 1)[0].isdigit() else 0
        return PublishedModel(round_id, data, id=ref.id)

    def stop(self) -> None:
        """Stop serving and rounds, close every connection, join every thread. Idempotent."""
        with self._lifecycle:
            if self._stopped:
                return
            self._stopped = True
            server, driver, thread = self._server, self._driver, self._server_thread
        if driver is not None:
            driver.stop(timeout=0)  # wake it; joined below, after the server is down
        if server is not None:
            server.shutdown()
            server.close()
        if thread is not None:
            thread.join()
        if driver is not None:
            driver.stop()
        for part in self._metrics:  # the phase follower first: it feeds the others
            part.stop()
        self._state.store.close()  # every accepted message was stored before its reply
        if server is not None:
            _log.info("coordinator on %s stopped", self._url_of(server))

    def _start_metrics(self, server: CoordinatorHTTPServer) -> None:
        """``[metrics.prometheus]``: serve ``/metrics``; ``[metrics.influxdb]``: write to it."""
        metrics = self.settings.metrics
        if not metrics.prometheus and metrics.influxdb_url is None:
            return
        from .metrics import CoordinatorMetrics, PhaseFollower

        follower = PhaseFollower(self._state)
        self._metrics.append(follower)
        if metrics.prometheus:
            recorder = CoordinatorMetrics(
                self._state, self._stats, lambda: self.phase, lambda: server.open_connections
            )
            assert metrics.prometheus_host is not None
            self.metrics_port = recorder.serve(metrics.prometheus_host, metrics.prometheus_port)
            self._metrics.append(recorder)
            follower.add(recorder)
            host = metrics.prometheus_host
            _log.info(
                "Prometheus metrics on http://%s:%d/metrics",
                f"[{host}]" if ":" in host else host,
                self.metrics_port,
            )
        if metrics.influxdb_url is not None:
            from .influx import InfluxWriter

            writer = InfluxWriter(metrics.influxdb_url, metrics.influxdb_db or "", self._state)
            writer.start()
            self._metrics.append(writer)
            follower.add(writer)
            self._stats.listener = writer
            _log.info("writing the original's measurements to InfluxDB at %s", writer.target)
        follower.start()

    def __enter__(self) -> "LocalCoordinator":
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    # -- what tests and examples read ----------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https`` with TLS; a wildcard address shows as loopback)."""
        if self._server is None:
            raise RuntimeError("the coordinator is not started")
        return self._url_of(self._server)

    def _url_of(self, server: CoordinatorHTTPServer) -> str:
        scheme = "https" if self.settings.api.tls else "http"
        host = self.settings.api.host
        if host == "0.0.0.0":
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{server.port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the coordinator is not started")
        return self._server.port

    @property
    def running(self) -> bool:
        return self._server is not None and not self._stopped

    @property
    def round_id(self) -> int:
        """The current round number (1 for the first round)."""
        return self._state.round.round_id if self._state.started else 0

    @property
    def phase(self) -> Phase:
        if self._stopped:
            return Phase.STOPPED
        return self._state.round.phase if self._state.started else Phase.IDLE

    @property
    def global_model(self) -> Optional[list[Fraction]]:
        """The latest global model as exact fractions, or None before the first one."""
        latest = self._state.latest_model
        return latest.fractions() if latest is not None else None

    @property
    def global_model_bytes(self) -> Optional[bytes]:
        """The latest global model as ``GET /model`` serves it (bincode)."""
        return self._state.model_bytes()

    @property
    def global_models(self) -> list[list[Fraction]]:
        """Every retained global model (all of them unless ``keep_models`` was set)."""
        return [m.fractions() for m in self._state.models()]

    @property
    def history(self) -> list[RoundRecord]:
        """How each finished round ended (up to the last 1000), oldest first."""
        return self._state.history()

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (plain dicts), plus the current round and phase.

        Keys: ``round_id``, ``phase``, ``rounds_completed``, ``rounds_failed``,
        ``round_failures`` (by kind), ``global_models``, ``accepted`` (by phase),
        ``chunks_buffered``, ``rejected`` (by :class:`Reason` value), ``rejected_total``,
        ``rejected_by_phase`` (the phase a message arrived in → reason → count),
        ``rejected_by_message`` (Sum/Update/Sum2, or "unknown" before the header could be
        read → reason → count), ``http`` ("METHOD path" → status → count),
        ``connections_refused``, ``connections_closed`` (by the front end: timeouts, evictions,
        failed TLS handshakes → count), ``multipart_buffered`` ([messages, bytes]).
        """
        snapshot = self._stats.snapshot()
        snapshot["round_id"] = self.round_id
        snapshot["phase"] = self.phase.value
        snapshot["global_models"] = self._state.models_published
        snapshot["multipart_buffered"] = list(self._state.buffered_multipart)
        return snapshot

    def status(self) -> str:
        """A one-line summary for error messages and logs."""
        s = self.stats
        current = ""
        if self._state.started:
            r = self._state.round
            current = (
                f" (accepted this round: {r.accepted[Phase.SUM]} sum,"
                f" {r.accepted[Phase.UPDATE]} update, {r.accepted[Phase.SUM2]} sum2)"
            )
        last = self.history[-1:] if self._state.started else []
        ended = f"; last round: {last[0].failure or 'completed'}" if last else ""
        return (
            f"round {s['round_id']} in the {s['phase']} phase{current};"
            f" {s['rounds_completed']} rounds completed, {s['rounds_failed']} failed"
            f"{' ' + str(s['round_failures']) if s['round_failures'] else ''};"
            f" {s['global_models']} global models;"
            f" accepted {s['accepted']}; rejected {s['rejected'] or 0}{ended}"
        )

    # -- waiting ------------------------------------------------------------------------------
    def wait_for_global_models(self, n: int, timeout: float = 60.0) -> list[list[Fraction]]:
        """Block until ``n`` global models were published since start; return those ``n``.

        Raises ``TimeoutError`` (with :meth:`status`) if they do not come in time. With
        ``keep_models`` set, models already dropped are missing from the result.
        """
        if n < 0:
            raise ValueError("n must not be negative")
        self._wait(lambda: self._state.models_published >= n, timeout, f"{n} global models")
        published = self._state.models()
        dropped = self._state.models_published - len(published)
        return [m.fractions() for m in published[: max(0, n - dropped)]]

    def wait_for_round(self, round_id: int, timeout: float = 60.0) -> None:
        """Block until round ``round_id`` (or a later one) has started."""
        self._wait(lambda: self.round_id >= round_id, timeout, f"round {round_id}")

    def wait_for_phase(
        self, phase: Phase, timeout: float = 60.0, round_id: Optional[int] = None
    ) -> int:
        """Block until the coordinator is in ``phase`` (of ``round_id``, if given).

        Returns the round id. The phase must be reached while waiting; a round that runs past
        it is not waited for again.
        """
        phase = Phase(phase)

        def reached() -> bool:
            return (
                self._state.started
                and self._state.round.phase is phase
                and (round_id is None or self._state.round.round_id == round_id)
            )

        what = f"the {phase.value} phase" + (f" of round {round_id}" if round_id else "")
        self._wait(reached, timeout, what)
        return self._state.round.round_id

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        problem = ""
        with self._state.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    problem = f"waited {timeout:g} s for {what}"
                    break
                if self._stopped:
                    problem = f"the coordinator stopped while waiting for {what}"
                    break
                self._state.cond.wait(remaining)
        if problem:
            raise TimeoutError(f"{problem}: {self.status()}")
