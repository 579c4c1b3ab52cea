"""One worker's share of a simulation: many participants, a few threads, shared requests.

A participant run by :func:`~xaynet_sdk.spawn_participant` is a thread with its own session
and its own poll loop. Here a worker holds hundreds of the same protocol drivers
(:class:`xaynet_sdk.xaynet_sdk.Participant`, unchanged) and ticks each one when it is due,
from a small thread pool, over one :class:`SharedTransport`:

* ``GET /params`` is fetched once per scheduling cycle and served to every tick of that
  cycle: every participant sees the same round parameters, so one request per worker per poll
  replaces one per participant per poll;
* ``GET /sums`` and ``GET /model`` are the same for everyone in a round: the first 200 body
  is kept until the round parameters change, and a 204 is asked at most once per cycle;
* ``GET /seeds`` (per sum participant) and ``POST /message`` go out as they are, over a
  pooled keep-alive session.

When one of the shared answers changes (a new round, the sum dictionary published) every
participant is due at once, so nobody waits out its poll backoff to see it. Between those
moments each participant keeps the original's backoff (0.1 s, x1.2 per idle tick, at most
10 s), and the worker's own poll backs off to at most ``poll_max`` seconds.

The user callbacks follow :class:`~xaynet_sdk.participant.InternalParticipant`: after a tick,
fetch the global model when a new round started (or the last fetch failed) and call
``deserialize_training_input`` and ``on_new_global_model``; when an update task waits for a
model and ``participate_in_update_task()`` agrees, call ``train_round`` and
``serialize_training_result`` and hand the result over.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import requests
from justbackoff import Backoff
from requests.adapters import HTTPAdapter

from .._logging import get_logger
from ..exceptions import (
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
)
from ..participant import ParticipantABC, new_backoff
from ..protocol.state import NewRound, Sending
from ..transport import Transport, TransportError, TransportLike
from ..xaynet_sdk import Participant

__all__ = ["Engine", "ModelParticipant", "ParticipantFactory", "SharedTransport", "WorkerSpec"]

_log = get_logger("simulation")

#: Builds participant ``index``'s user object (a ParticipantABC subclass taking the index).
ParticipantFactory = Callable[[int], ParticipantABC]
#: Gives participant ``index``'s local model (a list or 1-d numpy array).
ModelFunction = Callable[[int], Any]

#: Participants due within this many seconds of a cycle are ticked in it (one params fetch).
_SLACK = 0.02


class ModelParticipant(ParticipantABC):
    """A participant whose local model is ``model(index)``, whatever the global model."""

    def __init__(self, model: ModelFunction, index: int) -> None:
        self.model = model
        self.index = index

    def train_round(self, training_input: Optional[Any]) -> Any:
        return self.model(self.index)

    def serialize_training_result(self, training_result: Any) -> Any:
        return training_result

    def deserialize_training_input(self, global_model: Any) -> Any:
        return global_model


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker runs: participants ``first .. first+count-1`` of the simulation.

    Exactly one of ``participant`` (called with the index) and ``model`` is set; both must be
    picklable (a module-level class or function; Ray also takes classes defined in
    ``__main__``). ``scalar`` is one number or a function of the index.
    """

    first: int
    count: int
    participant: Optional[ParticipantFactory] = None
    model: Optional[ModelFunction] = None
    scalar: Union[float, Callable[[int], float]] = 1.0
    numpy: bool = False
    threads: int = 4
    poll_max: float = 1.0
    timeout: tuple[float, float] = (10.0, 60.0)


class SharedTransport(TransportLike):
    """One worker's requests, shared by its participants (see the module docstring).

    :meth:`refresh` fetches the round parameters for a new cycle; every ``get_params`` until
    the next refresh answers from it. ``generation`` grows when a shared answer changes.
    """

    def __init__(self, url: str, pool: int, timeout: tuple[float, float]) -> None:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._http = Transport(url, timeout=timeout, session=session)
        self._cycle = 0
        self._params: Optional[bytes] = None
        self.generation = 0
        self._lock = threading.Lock()
        # endpoint -> (params body it belongs to, cycle fetched, body)
        self._cache: dict[str, tuple[Optional[bytes], int, Optional[bytes]]] = {}
        self._locks = {"sums": threading.Lock(), "model": threading.Lock()}
        self._local = threading.local()
        self.requests: Counter[str] = Counter()

    def refresh(self) -> Optional[bytes]:
        """One real ``GET /params`` for the cycle that starts; its body (None: none usable)."""
        try:
            body = self._http.get_params()
        except TransportError:
            body = None  # logged by the transport, once per kind
        with self._lock:
            self.requests["params"] += 1
            self._cycle += 1
            if body is not None and body != self._params:
                self._params = body
                self.generation += 1
            elif body is None:
                self._params = None
        return body

    def get_params(self) -> Optional[bytes]:
        return self._params

    def get_sums(self) -> Optional[bytes]:
        return self._shared("sums", self._http.get_sums)

    def get_model(self) -> Optional[bytes]:
        return self._shared("model", self._http.get_model)

    def get_seeds(self, pk: bytes) -> Optional[bytes]:
        with self._lock:
            self.requests["seeds"] += 1
        return self._http.get_seeds(pk)

    def post_message(self, body: bytes) -> None:
        self._local.posted = False
        with self._lock:
            self.requests["message"] += 1
        self._http.post_message(body)  # raises TransportError: the driver retries
        self._local.posted = True

    def take_posted(self) -> Optional[bool]:
        """Whether this thread's last tick POSTed successfully (None: it did not POST)."""
        posted: Optional[bool] = getattr(self._local, "posted", None)
        self._local.posted = None
        return posted

    def close(self) -> None:
        self._http.close()

    def _shared(self, endpoint: str, fetch: Callable[[], Optional[bytes]]) -> Optional[bytes]:
        params, cycle = self._params, self._cycle
        with self._locks[endpoint]:
            cached = self._cache.get(endpoint)
            if cached is not None and cached[0] == params:
                if cached[2] is not None or cached[1] == cycle:
                    return cached[2]
            try:
                body = fetch()
            except TransportError:
                body = None  # the others of this cycle take it as "not yet", as the driver does
                self._cache[endpoint] = (params, cycle, None)
                raise
            finally:
                with self._lock:
                    self.requests[endpoint] += 1
            self._cache[endpoint] = (params, cycle, body)
            if body is not None and endpoint == "sums":
                with self._lock:
                    self.generation += 1
            return body


@dataclass
class _Member:
    """One simulated participant: its protocol driver, its user object, its schedule."""

    index: int
    driver: Participant
    user: ParticipantABC
    backoff: Backoff = field(default_factory=new_backoff)
    due: float = 0.0
    global_model: Any = None
    fetch_failed: bool = False
    train_failed_round: Optional[int] = None
    reported_round: int = 0


def _round_key(member: _Member) -> str:
    return member.driver.round_params.seed.hex()


class Engine:
    """Runs one :class:`WorkerSpec` against ``url`` until :meth:`stop`.

    :meth:`drain` hands over what happened since the last call: per round (keyed by the round
    seed in hex) the participants per task, the models trained, and the messages POSTed (or
    failed) per kind; plus the requests made and the CPU time used.
    """

    def __init__(self, url: str, spec: WorkerSpec) -> None:
        started = time.monotonic()
        self.spec = spec
        self.transport = SharedTransport(url, spec.threads, spec.timeout)
        self.members: list[_Member] = []
        for index in range(spec.first, spec.first + spec.count):
            scalar = spec.scalar(index) if callable(spec.scalar) else spec.scalar
            driver = Participant(url, scalar, transport=self.transport)
            if spec.participant is not None:
                user = spec.participant(index)
            else:
                assert spec.model is not None
                user = ModelParticipant(spec.model, index)
            self.members.append(_Member(index, driver, user))
        self.startup_seconds = time.monotonic() - started
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._rounds: dict[str, Counter[str]] = {}
        self._errors: Counter[str] = Counter()
        self._ticks = 0

    # -- control ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def drain(self) -> dict[str, Any]:
        with self._lock:
            rounds = {k: dict(v) for k, v in self._rounds.items()}
            self._rounds.clear()
            errors = dict(self._errors)
            self._errors.clear()
            ticks, self._ticks = self._ticks, 0
        requests_ = dict(self.transport.requests)
        return {
            "rounds": rounds,
            "errors": errors,
            "ticks": ticks,
            "requests": requests_,
            "cpu": time.process_time(),
        }

    def run(self) -> None:
        """The scheduling loop; returns after :meth:`stop` (closing the connections)."""
        poll = Backoff(min_ms=100, max_ms=int(self.spec.poll_max * 1000), factor=1.2, jitter=False)
        generation = -1
        with ThreadPoolExecutor(self.spec.threads, thread_name_prefix="xaynet-sim") as pool:
            try:
                while not self._stop.is_set():
                    self.transport.refresh()
                    now = time.monotonic()
                    if self.transport.generation != generation:
                        generation = self.transport.generation
                        for m in self.members:
                            m.due = now
                    due = [m for m in self.members if m.due <= now + _SLACK]
                    progress = any(list(pool.map(self._tick, due))) if due else False
                    if self._stop.is_set():
                        break
                    if progress:
                        poll.reset()
                    if self.transport.generation != generation:
                        continue  # a shared answer changed during the cycle: everyone is due
                    now = time.monotonic()
                    wait = poll.duration()
                    if self.members:
                        wait = min(wait, min(m.due for m in self.members) - now)
                    self._stop.wait(max(0.0, wait))
            finally:
                self.transport.close()
                for m in self.members:
                    self._call("on_stop", m.user.on_stop)

    # -- one participant ----------------------------------------------------------------------
    def _tick(self, member: _Member) -> bool:
        driver = member.driver
        before = driver.state.phase
        kind = before.kind.value if isinstance(before, Sending) else None
        try:
            driver.tick()
        except Exception as e:  # noqa: BLE001 - one participant never stops the others
            self._count_error(f"tick {type(e).__name__}")
            member.due = time.monotonic() + member.backoff.duration()
            return False
        progress = driver.made_progress()
        posted = self.transport.take_posted()
        if driver.new_global_model() or member.fetch_failed:
            self._fetch_global_model(member)
        if (
            driver.should_set_model()
            and not member.fetch_failed
            and member.train_failed_round != driver.round_serial
        ):
            self._train(member)
        with self._lock:
            self._ticks += 1
            if kind is not None and posted is not None:
                self._count(member, f"{'posted' if posted else 'post_failed'}_{kind}")
            if member.reported_round != driver.round_serial and not isinstance(
                driver.state.phase, NewRound
            ):
                member.reported_round = driver.round_serial
                self._count(member, ("idle", "sum", "update")[driver.task()])
        if progress:
            member.backoff.reset()
        member.due = time.monotonic() + member.backoff.duration()
        return progress

    def _count(self, member: _Member, what: str) -> None:
        self._rounds.setdefault(_round_key(member), Counter())[what] += 1

    def _count_error(self, what: str) -> None:
        with self._lock:
            first = what not in self._errors
            self._errors[what] += 1
        if first:
            _log.error("simulated participant: %s (counted, logged once)", what)

    def _call(self, name: str, fn: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            return True, fn()
        except Exception as e:  # noqa: BLE001 - user code must not stop the simulation
            self._count_error(f"{name} raised {type(e).__name__}: {e}")
            return False, None

    def _fetch_global_model(self, member: _Member) -> None:
        try:
            model = member.driver.global_model(numpy=self.spec.numpy)
        except (GlobalModelUnavailable, GlobalModelDataTypeMisMatch):
            member.fetch_failed = True
            return
        member.fetch_failed = False
        user = member.user
        if model is not None:
            ok, value = self._call(
                "deserialize_training_input", lambda: user.deserialize_training_input(model)
            )
            if not ok:
                return
            member.global_model = value
        else:
            member.global_model = None
        self._call("on_new_global_model", lambda: user.on_new_global_model(member.global_model))

    def _train(self, member: _Member) -> None:
        user, driver = member.user, member.driver
        ok, wants = self._call("participate_in_update_task", user.participate_in_update_task)
        if not (ok and wants):
            return
        serial = driver.round_serial
        ok, local = self._call(
            "train_round",
            lambda: user.serialize_training_result(user.train_round(member.global_model)),
        )
        if not ok:
            member.train_failed_round = serial
            return
        try:
            driver.set_model(local)
        except (LocalModelLengthMisMatch, LocalModelDataTypeMisMatch, TypeError) as e:
            self._count_error(f"set_model: {type(e).__name__}")
            member.train_failed_round = serial
            return
        with self._lock:
            self._count(member, "trained")
