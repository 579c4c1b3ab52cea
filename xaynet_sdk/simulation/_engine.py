"""One worker's share of a simulation: many participants, a few threads, shared requests.

A participant run by :func:`~xaynet_sdk.spawn_participant` is a thread with its own session
and its own poll loop. Here a worker holds hundreds of the same protocol drivers
(:class:`xaynet_sdk.xaynet_sdk.Participant`, unchanged) and ticks each one when it is due,
from a small thread pool, over one :class:`SharedTransport`:

* ``GET /params`` is polled by one thread per worker (every 0.1 s while any participant makes
  progress, backing off to ``poll_max`` seconds) and every tick answers from the last poll:
  every participant sees the same round parameters, so one request per worker per poll
  replaces one per participant per poll;
* ``GET /sums`` and ``GET /model`` are the same for everyone in a round: the first 200 body
  is kept until the round parameters change, and a 204 is asked at most once per poll;
* ``GET /seeds`` (per sum participant) and ``POST /message`` go out as they are, over a
  pooled keep-alive session (POSTs to a plain-HTTP coordinator over one lean keep-alive
  connection per thread, :class:`_LeanPost`).

When one of the shared answers changes (a new round, the sum dictionary published) every
participant is due at once, so nobody waits out its poll backoff to see it; a participant
that waits only for one of them (no task until the next round, or an update task before the
sum dictionary) is not ticked in between: the worker's poll, which also asks for the sum
dictionary while anyone waits for it, watches for everyone. A participant
that made progress is ticked again at once, before the others (the original waits 0.1 s):
each finishes its task before the next starts, so that a thousand participants woken at once
do not all compute before any of them sends. A participant that made no progress keeps the
original's backoff (0.1 s, x1.2 per idle tick, at most 10 s).

The user callbacks follow :class:`~xaynet_sdk.participant.InternalParticipant`: after a tick,
hand over the global model when a new round started (or the last fetch failed; decoded once
per worker, see :meth:`Engine._fetch_global_model`) and call
``deserialize_training_input`` and ``on_new_global_model``; when an update task waits for a
model and ``participate_in_update_task()`` agrees, call ``train_round`` and
``serialize_training_result`` and hand the result over.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union
from urllib.parse import urlsplit

import numpy.typing as npt
import requests
from justbackoff import Backoff
from requests.adapters import HTTPAdapter

from .._logging import get_logger
from ..driver import Participant, new_backoff
from ..exceptions import LocalModelDataTypeMisMatch, LocalModelLengthMisMatch
from ..mask.config import DataType
from ..mask.model import GlobalModelError, decode_global_model
from ..participant import ParticipantABC
from ..protocol.local_model import model_to_python
from ..protocol.state import Awaiting, NewRound, Sending, Update
from ..transport import (
    ConnectFailed,
    HttpStatusError,
    RequestTimedOut,
    Transport,
    TransportError,
    TransportLike,
)

__all__ = ["Engine", "ModelParticipant", "ParticipantFactory", "SharedTransport", "WorkerSpec"]

_log = get_logger("simulation")

#: Builds participant ``index``'s user object (a ParticipantABC subclass taking the index).
ParticipantFactory = Callable[[int], ParticipantABC]
#: Gives participant ``index``'s local model (a list or 1-d numpy array).
ModelFunction = Callable[[int], Any]


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
        return None  # the model function does not train on it: nothing to keep per participant


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
        plain = urlsplit(self._http.base_url).scheme == "http" and not self._http.proxies
        self._lean = _LeanPost(self._http.url("message"), timeout) if plain else None
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
        if self._lean is not None:
            self._lean.post(body)
        else:
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


class _LeanPost:
    """``POST /message`` over one keep-alive ``http.client`` connection per thread.

    For plain HTTP without a proxy: ``requests`` spends more CPU on each request than a
    participant's update costs in cryptography; a bare connection costs a fraction of that
    (benchmarks/_scale.py). The request is the transport's, byte for byte as the original sends it
    (``Host``, ``Accept: */*``, ``Content-Length``, nothing else); any 2xx or 3xx succeeds.
    """

    def __init__(self, url: str, timeout: tuple[float, float]) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._url = url
        self._timeout = timeout
        self._local = threading.local()
        self._logged: set[str] = set()

    def _connection(self) -> http.client.HTTPConnection:
        conn: Optional[http.client.HTTPConnection] = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout[1])
            self._local.conn = conn
        return conn

    def post(self, body: bytes) -> None:
        for attempt in (0, 1):  # once more on a fresh connection: the old one may be closed
            conn = self._connection()
            try:
                if conn.sock is None:
                    conn.timeout = self._timeout[0]
                    conn.connect()
                    assert conn.sock is not None
                    conn.sock.settimeout(self._timeout[1])
                conn.putrequest("POST", self._target, skip_accept_encoding=True)
                conn.putheader("Accept", "*/*")
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                response = conn.getresponse()
                response.read()
            except TimeoutError:
                conn.close()
                raise self._fail(RequestTimedOut(f"POST {self._url} timed out")) from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                if attempt:
                    raise self._fail(ConnectFailed(f"POST {self._url} failed: {e}")) from None
                continue
            if response.will_close:
                conn.close()
            if response.status >= 400:
                error = HttpStatusError(
                    f"POST {self._url} answered {response.status}", response.status
                )
                raise self._fail(error)
            return

    def _fail(self, error: TransportError) -> TransportError:
        if error.kind not in self._logged:
            self._logged.add(error.kind)
            _log.warning("%s (further ones of this kind are not logged)", error)
        return error


@dataclass
class _Member:
    """One simulated participant: its protocol driver, its user object, its schedule."""

    index: int
    driver: Participant
    user: ParticipantABC
    backoff: Backoff = field(default_factory=new_backoff)
    #: Bumped whenever the member is (re)scheduled: older schedule entries are void.
    version: int = 0
    busy: bool = False
    #: The schedule's generation when its current tick was taken.
    generation: int = -1
    global_model: Any = None
    fetch_failed: bool = False
    #: The driver's round serial whose global model the user object was given.
    model_serial: int = 0
    train_failed_round: Optional[int] = None
    reported_round: int = 0


class _Schedule:
    """Who is ticked next: members that just made progress first (so that each finishes its
    task before others start theirs: thousands woken at once by a new round would otherwise
    all compute before any of them sends), then members whose backoff ran out, by due time.
    A changed shared answer (:attr:`SharedTransport.generation`) makes everyone due."""

    def __init__(self, members: list[_Member]) -> None:
        self._members = members
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, _Member]] = []
        self._hot: deque[tuple[int, _Member]] = deque()
        self._seq = itertools.count()
        self._generation = -1
        self._closed = False

    def wake(self, generation: int) -> None:
        """Everyone not being ticked is due now, if ``generation`` is new."""
        with self._cond:
            if generation == self._generation:
                return
            self._generation = generation
            now = time.monotonic()
            self._heap = []
            self._hot.clear()
            for m in self._members:
                if not m.busy:
                    m.version += 1
                    self._heap.append((now, next(self._seq), m.version, m))
            heapq.heapify(self._heap)
            self._cond.notify_all()

    def take(self) -> Optional[_Member]:
        """The next member to tick (marked busy), waiting until one is due; None once closed."""
        with self._cond:
            while not self._closed:
                while self._hot:
                    version, m = self._hot.popleft()
                    if version == m.version and not m.busy:
                        m.busy = True
                        m.generation = self._generation
                        return m
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, version, m = heapq.heappop(self._heap)
                    if version == m.version and not m.busy:
                        m.busy = True
                        m.generation = self._generation
                        return m
                wait = self._heap[0][0] - now if self._heap else 1.0
                self._cond.wait(min(wait, 1.0))
            return None

    def put(self, member: _Member, progress: bool) -> None:
        """Back on the schedule after a tick: at once after progress; else parked until the
        next wake if it waits for a shared answer (:func:`_parked`), else after its backoff."""
        now = time.monotonic()
        parked = not progress and _parked(member)
        due = now if progress or parked else now + member.backoff.duration()
        with self._cond:
            member.busy = False
            member.version += 1
            if progress:
                self._hot.append((member.version, member))
            elif not parked or member.generation != self._generation:
                # (a wake during its tick skipped it: it is due now)
                heapq.heappush(self._heap, (due, next(self._seq), member.version, member))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _waits_for_sums(member: _Member) -> bool:
    phase = member.driver.state.phase
    return isinstance(phase, Update) and not phase.has_fetched_sum_dict()


def _parked(member: _Member) -> bool:
    """Whether a participant that made no progress waits only for a shared answer: a new
    round (Awaiting) or the sum dictionary. The worker's poll watches both for everyone and
    wakes it, so ticking it on its own backoff would only repeat the same answer."""
    return isinstance(member.driver.state.phase, Awaiting) or _waits_for_sums(member)


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
        self._progress = threading.Event()
        self._schedule = _Schedule(self.members)
        self._model_lock = threading.Lock()
        self._model_cache: tuple[Optional[bytes], Optional[DataType], Optional[Any]] = (
            None,
            None,
            None,
        )
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
        """Poll the round parameters and tick the participants until :meth:`stop`.

        This thread polls (every 0.1 s while anything progresses, backing off to
        ``poll_max``); ``threads`` threads take the participants off the schedule.
        """
        spec = self.spec
        poll = Backoff(min_ms=100, max_ms=int(spec.poll_max * 1000), factor=1.2, jitter=False)
        self.transport.refresh()
        self._schedule.wake(self.transport.generation)
        workers = [
            threading.Thread(target=self._work, name=f"xaynet-sim-{i}", daemon=True)
            for i in range(spec.threads)
        ]
        for worker in workers:
            worker.start()
        try:
            while not self._stop.wait(poll.duration()):
                self.transport.refresh()
                if any(_waits_for_sums(m) for m in self.members):
                    try:
                        self.transport.get_sums()  # one request per poll, for everyone
                    except TransportError:
                        pass  # logged by the transport; the next poll asks again
                self._schedule.wake(self.transport.generation)
                if self._progress.is_set():
                    self._progress.clear()
                    poll.reset()
        finally:
            self._schedule.close()
            for worker in workers:
                worker.join()
            self.transport.close()
            for m in self.members:
                self._call("on_stop", m.user.on_stop)

    def _work(self) -> None:
        schedule = self._schedule
        while True:
            member = schedule.take()
            if member is None:
                return
            progress = self._tick(member)
            if progress:
                self._progress.set()
            schedule.wake(self.transport.generation)
            schedule.put(member, progress)

    # -- one participant ----------------------------------------------------------------------
    def _tick(self, member: _Member) -> bool:
        driver = member.driver
        before = driver.state.phase
        kind = before.kind.value if isinstance(before, Sending) else None
        try:
            driver.tick()
        except Exception as e:  # noqa: BLE001 - one participant never stops the others
            self._count_error(f"tick {type(e).__name__}")
            return False
        progress = driver.made_progress()
        posted = self.transport.take_posted()
        if self.spec.participant is not None and (
            member.model_serial != driver.round_serial or member.fetch_failed
        ):
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
        """The round's global model to the user object, as ``InternalParticipant`` does after a
        new round, but fetched and decoded once per worker per round (decoding the exact
        rationals is what costs: a millisecond per 2,000 weights) and copied for each."""
        driver = member.driver
        member.model_serial = driver.round_serial
        data_type = driver.round_params.mask_config.vect.data_type
        try:
            body = self.transport.get_model()
            array = self._decode(body, data_type) if body is not None else None
        except (TransportError, GlobalModelError) as e:
            if isinstance(e, GlobalModelError):
                self._count_error(f"global model: {e}")
            member.fetch_failed = True
            return
        member.fetch_failed = False
        user = member.user
        if array is not None:
            model = array.copy() if self.spec.numpy else model_to_python(array)
            ok, value = self._call(
                "deserialize_training_input", lambda: user.deserialize_training_input(model)
            )
            if not ok:
                return
            member.global_model = value
        else:
            member.global_model = None
        self._call("on_new_global_model", lambda: user.on_new_global_model(member.global_model))

    def _decode(self, body: bytes, data_type: DataType) -> npt.NDArray[Any]:
        with self._model_lock:
            cached_body, cached_type, array = self._model_cache
            if body is not cached_body or data_type is not cached_type or array is None:
                array = decode_global_model(body, data_type)
                self._model_cache = (body, data_type, array)
            return array

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
