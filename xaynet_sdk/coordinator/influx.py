"""``[metrics.influxdb]``: the original's measurements, written to InfluxDB 1.x.

The same measurements, fields and tags as the original coordinator (``xaynet-server`` with
its ``metrics`` feature), in the line protocol over ``POST <url>/write?db=<db>``:

=======================  =====================  ==============================================
measurement              value                  tags / when
=======================  =====================  ==============================================
``phase``                the phase's number     when a phase starts (0 Idle, 1 Sum, 2 Update,
                         (integer)              3 Sum2, 4 Unmask, 6 Shutdown)
``round_total_number``   the round id           when a round starts (its Idle phase)
``round_param_sum``      sum probability        ``round_id``, ``phase`` (0), at round start
``round_param_update``   update probability     ``round_id``, ``phase`` (0), at round start
``message_sum``,         1                      ``round_id``, ``phase``: a message accepted
``message_update``,
``message_sum2``
``message_rejected``     1                      ``round_id``, ``phase``: a message rejected
``message_discarded``    1                      ``round_id``, ``phase``: over the phase's max
``masks_total_number``   distinct masks         ``round_id``, ``phase`` (4), at Unmask
``event``                ``title``,             a failed round: "Phase error" and why
                         ``description``
=======================  =====================  ==============================================

``message_rejected`` counts every rejection here, also those the original's services drop
before its state machine sees them (undecryptable, malformed); the reasons are in
``LocalCoordinator.stats`` and the Prometheus metrics.

Points are queued (at most 4048, as the original's buffer; beyond that they are dropped and
counted) and written in batches by one thread, so that a slow or absent InfluxDB never slows
the coordinator. The database is created at start if it does not exist. A failed write is
logged once as a warning, then at DEBUG.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional, Union

from .metrics import PHASE_NUMBERS
from .outcomes import Phase, Reason
from .state import CoordinatorState, Round, RoundRecord

__all__ = ["InfluxWriter"]

_log = logging.getLogger("xaynet_sdk.coordinator.metrics")

_QUEUE_SIZE = 4048
_BATCH = 1000
_FLUSH_INTERVAL = 1.0
_MESSAGE_MEASUREMENTS = {
    Phase.SUM: "message_sum",
    Phase.UPDATE: "message_update",
    Phase.SUM2: "message_sum2",
}

Value = Union[int, float, str]


def _field(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def line(
    measurement: str,
    fields: dict[str, Value],
    tags: Optional[dict[str, Union[int, str]]] = None,
    timestamp_ns: Optional[int] = None,
) -> str:
    """One point in the line protocol (tags and measurement are plain names and numbers)."""
    head = measurement
    for key, tag in (tags or {}).items():
        head += f",{key}={tag}"
    body = ",".join(f"{k}={_field(v)}" for k, v in fields.items())
    stamp = time.time_ns() if timestamp_ns is None else timestamp_ns
    return f"{head} {body} {stamp}"


class InfluxWriter:
    """Writes points to ``url`` / ``db`` from a background thread; see the module docstring.

    It listens to the stats (``message_accepted``, ``message_rejected``, ``round_failed``)
    and to a :class:`~.metrics.PhaseFollower` (``phase_started``).
    """

    def __init__(self, url: str, db: str, state: CoordinatorState) -> None:
        split = urllib.parse.urlsplit(url.strip())
        self._base = urllib.parse.urlunsplit(
            (split.scheme, split.hostname or "", "", "", "")
        ).rstrip("/")
        if split.port is not None:
            self._base += f":{split.port}"
        self._base += split.path.rstrip("/")
        self._auth: Optional[str] = None
        if split.username is not None:
            user = urllib.parse.unquote(split.username)
            password = urllib.parse.unquote(split.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._auth = f"Basic {token}"
        self.db = db
        self.state = state
        #: where points go, without credentials (for the log)
        self.target = f"{self._base} (database {db})"
        self._queue: queue.Queue[Optional[str]] = queue.Queue(_QUEUE_SIZE)
        self._thread: Optional[threading.Thread] = None
        self._warned = False
        self.dropped = 0
        self.written = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="xaynet-coordinator-influxdb", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write the Shutdown phase and what is queued (within ``timeout``), then stop."""
        self.metric("phase", PHASE_NUMBERS[Phase.STOPPED])
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout)

    # -- recording (any thread) ------------------------------------------------------------
    def metric(
        self, measurement: str, value: Value, tags: Optional[dict[str, Union[int, str]]] = None
    ) -> None:
        self._put(line(measurement, {"value": value}, tags))

    def event(self, title: str, description: Optional[str] = None) -> None:
        fields: dict[str, Value] = {"title": title}
        if description is not None:
            fields["description"] = description
        self._put(line("event", fields))

    def _put(self, point: str) -> None:
        try:
            self._queue.put_nowait(point)
        except queue.Full:
            self.dropped += 1

    def _tags(self, phase: Optional[Phase]) -> dict[str, Union[int, str]]:
        round_id = self.state.round.round_id if self.state.started else 0
        number = PHASE_NUMBERS[phase] if phase is not None else PHASE_NUMBERS[Phase.IDLE]
        return {"phase": number, "round_id": round_id}

    # -- Stats listener -------------------------------------------------------------------
    def message_accepted(self, phase: Phase) -> None:
        measurement = _MESSAGE_MEASUREMENTS.get(phase)
        if measurement is not None:
            self.metric(measurement, 1, self._tags(phase))

    def message_rejected(self, phase: Optional[Phase], reason: Reason) -> None:
        name = "message_discarded" if reason is Reason.DISCARDED else "message_rejected"
        self.metric(name, 1, self._tags(phase))

    def round_failed(self, kind: str) -> None:
        self.event("Phase error", kind)

    # -- PhaseFollower listener -----------------------------------------------------------
    def phase_started(self, current: Round, phase: Phase) -> None:
        tags: dict[str, Union[int, str]] = {"phase": 0, "round_id": current.round_id}
        if phase is Phase.SUM:
            # The round's Idle phase: its number and parameters, then the Sum phase.
            self.metric("phase", PHASE_NUMBERS[Phase.IDLE])
            self.metric("round_total_number", current.round_id)
            self.metric("round_param_sum", float(current.params.sum), tags)
            self.metric("round_param_update", float(current.params.update), tags)
        self.metric("phase", PHASE_NUMBERS[phase])
        if phase is Phase.UNMASK:
            with self.state.lock:
                masks = len(current.masks)
            tags["phase"] = PHASE_NUMBERS[Phase.UNMASK]
            self.metric("masks_total_number", masks, tags)

    def round_ended(self, current: Round, record: RoundRecord) -> None:
        pass

    # -- the writer thread ----------------------------------------------------------------
    def _request(self, path: str, query: dict[str, str], body: bytes) -> None:
        url = f"{self._base}{path}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, data=body, method="POST")
        if self._auth is not None:
            request.add_header("Authorization", self._auth)
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()

    def _failed(self, what: str, error: BaseException) -> None:
        if not self._warned:
            self._warned = True
            _log.warning(
                "InfluxDB at %s: %s failed (%s); further failures are logged at DEBUG level",
                self.target,
                what,
                error,
            )
        else:
            _log.debug("InfluxDB at %s: %s failed (%s)", self.target, what, error)

    def _run(self) -> None:
        try:
            self._request("/query", {"q": f'CREATE DATABASE "{self.db}"'}, b"")
        except (OSError, urllib.error.URLError) as e:
            self._failed("creating the database", e)
        done = False
        while not done:
            batch: list[str] = []
            deadline = time.monotonic() + _FLUSH_INTERVAL
            while len(batch) < _BATCH:
                try:
                    point = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if point is None:
                    done = True
                    break
                batch.append(point)
            if not batch:
                continue
            try:
                self._request(
                    "/write", {"db": self.db, "precision": "ns"}, "\n".join(batch).encode()
                )
                self.written += len(batch)
            except (OSError, urllib.error.URLError) as e:
                self._failed(f"writing {len(batch)} points", e)
