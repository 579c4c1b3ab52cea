"""Counters behind ``LocalCoordinator.stats``, and the once-per-kind logging of rejections.

Every POST ends as exactly one of: accepted (by phase), a chunk buffered for reassembly, or
rejected (by reason, and by the phase the coordinator was in when the message arrived).
Counters have their own lock so that counting never waits for the round state.

Rejections are logged at INFO the first time each reason occurs and at DEBUG afterwards: the
operator learns that e.g. stale messages arrive, without a flood of lines from a busy round.
No key, seed or message content is ever logged.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any, Optional

from ..codec.message import Tag
from .outcomes import Phase, Reason

__all__ = ["Stats"]

_log = logging.getLogger("xaynet_sdk.coordinator.pipeline")


class Stats:
    """Thread-safe counters; :meth:`snapshot` returns plain dicts (JSON-serializable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accepted: Counter[str] = Counter()
        self._chunks = 0
        self._rejected: Counter[str] = Counter()
        self._rejected_by_phase: dict[str, Counter[str]] = {}
        self._rejected_by_message: dict[str, Counter[str]] = {}
        self._http: dict[str, Counter[str]] = {}
        self._rounds_completed = 0
        self._rounds_failed = 0
        self._failures: Counter[str] = Counter()
        self._connections_refused = 0
        self._connection_events: Counter[str] = Counter()
        self._logged: set[Reason] = set()
        #: told of every message outcome and failed round (the InfluxDB writer), if set
        self.listener: Any = None

    # -- recording ------------------------------------------------------------------------
    def accepted(self, phase: Phase) -> None:
        with self._lock:
            self._accepted[phase.value] += 1
        if self.listener is not None:
            self.listener.message_accepted(phase)

    def chunk_buffered(self) -> None:
        with self._lock:
            self._chunks += 1

    def rejected(
        self,
        phase: Optional[Phase],
        reason: Reason,
        detail: str = "",
        tag: Optional[Tag] = None,
    ) -> None:
        """Count a rejection and log it (INFO the first time per reason, then DEBUG).

        ``phase`` is the coordinator's phase when the message arrived, ``tag`` the message's
        kind if its header could be read.
        """
        phase_name = phase.value if phase is not None else Phase.IDLE.value
        kind = tag.name if tag is not None else "unknown"
        with self._lock:
            self._rejected[reason.value] += 1
            self._rejected_by_phase.setdefault(phase_name, Counter())[reason.value] += 1
            self._rejected_by_message.setdefault(kind, Counter())[reason.value] += 1
            first = reason not in self._logged
            self._logged.add(reason)
        if self.listener is not None:
            self.listener.message_rejected(phase, reason)
        text = f"{detail}" if detail else reason.value
        what = f"a {tag.name} message" if tag is not None else "a message"
        if first:
            _log.info(
                "rejected %s in the %s phase: %s (%s); further rejections for this reason are"
                " logged at DEBUG level",
                what,
                phase_name,
                reason.value,
                text,
            )
        else:
            _log.debug("rejected %s in the %s phase: %s (%s)", what, phase_name, reason.value, text)

    def request(self, method: str, path: str, status: int) -> None:
        key = f"{method} {path}"
        with self._lock:
            self._http.setdefault(key, Counter())[str(status)] += 1

    def connection_refused(self) -> None:
        with self._lock:
            self._connections_refused += 1

    def connection_event(self, name: str) -> None:
        """A connection closed by the front end: a timeout, an eviction, a failed handshake."""
        with self._lock:
            self._connection_events[name] += 1

    def round_completed(self) -> None:
        with self._lock:
            self._rounds_completed += 1

    def round_failed(self, kind: str) -> None:
        with self._lock:
            self._rounds_failed += 1
            self._failures[kind] += 1
        if self.listener is not None:
            self.listener.round_failed(kind)

    # -- reading ----------------------------------------------------------------------------
    @property
    def rounds_completed(self) -> int:
        with self._lock:
            return self._rounds_completed

    @property
    def rounds_failed(self) -> int:
        with self._lock:
            return self._rounds_failed

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter."""
        with self._lock:
            return {
                "rounds_completed": self._rounds_completed,
                "rounds_failed": self._rounds_failed,
                "round_failures": dict(self._failures),
                "accepted": {p.value: self._accepted[p.value] for p in _MESSAGE_PHASES},
                "chunks_buffered": self._chunks,
                "rejected": dict(self._rejected),
                "rejected_total": sum(self._rejected.values()),
                "rejected_by_phase": {p: dict(c) for p, c in self._rejected_by_phase.items()},
                "rejected_by_message": {k: dict(c) for k, c in self._rejected_by_message.items()},
                "http": {k: dict(c) for k, c in self._http.items()},
                "connections_refused": self._connections_refused,
                "connections_closed": dict(self._connection_events),
            }


_MESSAGE_PHASES = (Phase.SUM, Phase.UPDATE, Phase.SUM2)
