"""Where the coordinator keeps what must survive a restart: in memory (the default) or in Redis.

One interface, :class:`StateStore`, two implementations: :class:`MemoryStore` (nothing survives
the process; every method is a no-op) and :class:`RedisStore` (``[redis] url``).

What is stored, and when (per accepted message: one write of the message, and for Update
messages a snapshot of the aggregate every :data:`AGGREGATE_EVERY` messages):

* **at each round start**, in one ``MULTI`` transaction: the round (id, key pair, seed, the
  probabilities, mask configuration and model length it runs with), the id of the latest
  global model (and, without ``[s3]``, its bytes), and the removal of the previous round's
  messages. A round's end and the next round's start are one atomic step.
* **every accepted message**, before it changes the round (write-ahead), as one ``RPUSH`` to
  its phase's list: the round id, the sealed box id (the replay filter), the participant key
  and the payload. An Update message is split in the same transaction: its seeds go to
  ``messages:update``, its masked model to ``models:update``. The message is accepted only
  once Redis has acknowledged it; if Redis cannot be written, the message is rejected
  (``storage_unavailable``) and the round goes on.
* **every** :data:`AGGREGATE_EVERY` **Update messages** a snapshot of the aggregate (the sum
  of the masked models so far and whose they are) replaces the stored masked models, so
  Redis holds at most that many models of a round and a restore adds at most that many.
* **at each phase change** the phase; at the end of the Update phase, in the same
  transaction, a snapshot of the whole Update phase (aggregate, seed dict, update
  participants) replaces its messages, so a round in Sum2 holds no Update message.

Restoring replays the stored Sum and Sum2 messages through the same state rules, and rebuilds
the Update phase from its seeds, the last aggregate and the masked models after it
(:meth:`~.state.CoordinatorState.restore`), so the interrupted round continues in its phase
with its id and keys, and the messages accepted before the crash still count. Redis keys
(prefix ``xaynet_sdk:``): ``coordinator_state``, ``phase``, ``messages:sum``,
``messages:update``, ``models:update``, ``update_aggregate``, ``messages:sum2``,
``update_snapshot``, ``latest_global_model_id``, ``global_model``. They are not the
original's (whose values are bincode of its own types), so the two coordinators must not
share a Redis database.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

import msgpack

from ..exceptions import XaynetError
from .outcomes import Phase
from .settings import redact_url

__all__ = [
    "AGGREGATE_EVERY",
    "KEY_PREFIX",
    "MemoryStore",
    "ModelRef",
    "RedisStore",
    "RestoreError",
    "RoundMeta",
    "StateStore",
    "StoreError",
    "StoredState",
    "global_model_id",
    "open_store",
]

_log = logging.getLogger("xaynet_sdk.coordinator.store")

#: The prefix of every key this coordinator writes to Redis.
KEY_PREFIX = "xaynet_sdk:"
#: Update messages between two snapshots of the aggregate (bounds what Redis holds and what
#: a restore replays to this many masked models; a snapshot costs about one of them).
AGGREGATE_EVERY = 32
_FORMAT = 1
_MESSAGE_PHASES = (Phase.SUM, Phase.UPDATE, Phase.SUM2)
_PHASE_ORDER = (Phase.SUM, Phase.UPDATE, Phase.SUM2, Phase.UNMASK)


class StoreError(XaynetError):
    """The store cannot be reached or did not accept a write."""


class RestoreError(XaynetError):
    """The stored state cannot be restored with these settings (the message says why)."""


def global_model_id(round_id: int, seed: bytes) -> str:
    """The original's id of a round's global model: ``<round id>_<hex of the round seed>``."""
    return f"{round_id}_{seed.hex()}"


@dataclass(frozen=True)
class RoundMeta:
    """A round as stored: enough to rebuild its parameters and open its messages."""

    round_id: int
    public: bytes
    secret: bytes
    seed: bytes
    sum: float
    update: float
    mask: str
    model_length: int

    def __repr__(self) -> str:  # never show the key
        return f"RoundMeta(round_id={self.round_id}, mask={self.mask!r})"

    def pack(self) -> bytes:
        return bytes(
            msgpack.packb(
                {
                    "format": _FORMAT,
                    "round_id": self.round_id,
                    "public": self.public,
                    "secret": self.secret,
                    "seed": self.seed,
                    "sum": self.sum,
                    "update": self.update,
                    "mask": self.mask,
                    "model_length": self.model_length,
                }
            )
        )

    @classmethod
    def unpack(cls, data: bytes) -> "RoundMeta":
        try:
            fields = msgpack.unpackb(data)
            if fields.pop("format") != _FORMAT:
                raise ValueError("unknown format")
            return cls(**fields)
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as e:
            raise RestoreError(
                f"the stored coordinator state is not one this version wrote ({e}); start with"
                " [restore] enable = false to discard it"
            ) from None


@dataclass(frozen=True)
class ModelRef:
    """The latest global model as stored: its id, and its bytes unless they are in S3."""

    id: str
    data: Optional[bytes] = None


@dataclass
class StoredState:
    """What :meth:`StateStore.load` finds."""

    round: RoundMeta
    #: The last phase the round was known to open.
    phase: Phase
    #: The accepted messages of the round, by phase (records of :func:`~.state.wal_record`).
    messages: dict[Phase, list[bytes]] = field(default_factory=dict)
    #: The aggregate at the end of the Update phase (replaces the Update messages).
    update_snapshot: Optional[bytes] = None
    #: During the Update phase: the last snapshot of the aggregate, and the masked models
    #: accepted after it (``messages[Phase.UPDATE]`` holds the seeds of every Update).
    update_aggregate: Optional[bytes] = None
    update_models: list[bytes] = field(default_factory=list)
    latest_model: Optional[ModelRef] = None


class StateStore:
    """The in-memory default: nothing is written, nothing is restored."""

    #: Whether writes survive the process (the state builds write-ahead records only then).
    durable = False

    def describe(self) -> str:
        return "memory"

    def load(self) -> Optional[StoredState]:
        return None

    def clear(self) -> None:
        """Delete every stored key (``[restore] enable = false``)."""

    def begin_round(self, meta: RoundMeta, model: Optional[ModelRef]) -> None:
        """Atomically: the new round, the latest model, and no messages."""

    def append(self, phase: Phase, record: bytes) -> None:
        """Record an accepted message; raises :class:`StoreError` if it was not stored."""

    def append_update(self, seeds: bytes, model: bytes) -> None:
        """Record an accepted Update message (its seeds and its masked model), atomically."""

    def snapshot_aggregate(self, snapshot: bytes) -> None:
        """Store the aggregate so far; it replaces the stored masked models, atomically."""

    def phase_opened(self, round_id: int, phase: Phase, update_snapshot: Optional[bytes]) -> None:
        """Note the phase; with ``update_snapshot`` (Sum2), it replaces the Update messages."""

    def close(self) -> None:
        pass


MemoryStore = StateStore


class RedisStore(StateStore):
    """The state in Redis (redis-py). Thread-safe: redis-py's pool gives each thread a
    connection; a broken connection is retried a few times (a Redis restart), then the
    call fails with :class:`StoreError`.

    An outage is logged once (WARNING) when a call first fails, and once (INFO) when a call
    succeeds again; the failures in between are counted in :attr:`failures`.
    """

    durable = True

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.url = redact_url(url)
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
                health_check_interval=0,
            )
        except ValueError as e:
            raise StoreError(f"redis.url is not a valid Redis URL: {e}") from None
        self._lock = threading.Lock()
        self._down = False
        #: Calls that failed since the outage began (0 while Redis answers).
        self.failures = 0

    def describe(self) -> str:
        return f"Redis at {self.url}"

    def connect(self) -> "RedisStore":
        """Check that Redis answers (at start: a clear error instead of a late failure)."""
        try:
            self._client.ping()
        except self._redis_errors as e:
            raise StoreError(f"cannot reach Redis at {self.url}: {e}") from None
        return self

    # -- calls ----------------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            result = fn(*args)
        except self._redis_errors as e:
            with self._lock:
                self.failures += 1
                first = not self._down
                self._down = True
            if first:
                _log.warning(
                    "Redis at %s failed (%s: %s): accepted messages can not be recorded, so"
                    " messages are rejected and the round does not advance until it is back",
                    self.url,
                    what,
                    e,
                )
            raise StoreError(f"Redis at {self.url}: {what} failed: {e}") from None
        if self._down:
            with self._lock:
                recovered, self._down = self._down, False
            if recovered:
                _log.info("Redis at %s is reachable again", self.url)
        return result

    @staticmethod
    def _key(name: str) -> str:
        return KEY_PREFIX + name

    def _messages_key(self, phase: Phase) -> str:
        return self._key(f"messages:{phase.value.lower()}")

    def _round_keys(self) -> list[str]:
        """What belongs to the current round's messages (deleted when a round begins)."""
        names = ["update_snapshot", "update_aggregate", "models:update"]
        return [self._key(n) for n in names] + [self._messages_key(p) for p in _MESSAGE_PHASES]

    def _all_keys(self) -> list[str]:
        names = ["coordinator_state", "phase", "latest_global_model_id", "global_model"]
        return [self._key(n) for n in names] + self._round_keys()

    # -- the interface --------------------------------------------------------------------------
    def load(self) -> Optional[StoredState]:
        def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=True)
            pipe.get(self._key("coordinator_state"))
            pipe.get(self._key("phase"))
            pipe.get(self._key("update_snapshot"))
            pipe.get(self._key("latest_global_model_id"))
            pipe.get(self._key("global_model"))
            pipe.get(self._key("update_aggregate"))
            pipe.lrange(self._key("models:update"), 0, -1)
            for phase in _MESSAGE_PHASES:
                pipe.lrange(self._messages_key(phase), 0, -1)
            return list(pipe.execute())

        state, phase, snapshot, model_id, model, aggregate, models, *messages = self._call(
            "load", read
        )
        if state is None:
            return None
        meta = RoundMeta.unpack(state)
        stored_phase = Phase.SUM
        if phase is not None:
            round_text, _, name = phase.decode("ascii", "replace").partition(":")
            if round_text == str(meta.round_id):
                try:
                    stored_phase = Phase(name)
                except ValueError:
                    raise RestoreError(f"unknown stored phase {name!r}") from None
        latest = ModelRef(model_id.decode("ascii"), model) if model_id is not None else None
        return StoredState(
            meta,
            stored_phase,
            messages={p: list(m) for p, m in zip(_MESSAGE_PHASES, messages)},
            update_snapshot=snapshot,
            update_aggregate=aggregate,
            update_models=list(models),
            latest_model=latest,
        )

    def clear(self) -> None:
        self._call("clear", self._client.delete, *self._all_keys())

    def begin_round(self, meta: RoundMeta, model: Optional[ModelRef]) -> None:
        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(*self._round_keys())
            pipe.set(self._key("coordinator_state"), meta.pack())
            pipe.set(self._key("phase"), f"{meta.round_id}:{Phase.SUM.value}")
            if model is not None:
                pipe.set(self._key("latest_global_model_id"), model.id)
                if model.data is not None:
                    pipe.set(self._key("global_model"), model.data)
                else:
                    pipe.delete(self._key("global_model"))
            pipe.execute()

        self._call("begin_round", write)

    def append(self, phase: Phase, record: bytes) -> None:
        self._call("append", self._client.rpush, self._messages_key(phase), record)

    def append_update(self, seeds: bytes, model: bytes) -> None:
        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(self._messages_key(Phase.UPDATE), seeds)
            pipe.rpush(self._key("models:update"), model)
            pipe.execute()

        self._call("append", write)

    def snapshot_aggregate(self, snapshot: bytes) -> None:
        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._key("update_aggregate"), snapshot)
            pipe.delete(self._key("models:update"))
            pipe.execute()

        self._call("snapshot_aggregate", write)

    def phase_opened(self, round_id: int, phase: Phase, update_snapshot: Optional[bytes]) -> None:
        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._key("phase"), f"{round_id}:{phase.value}")
            if update_snapshot is not None:
                pipe.set(self._key("update_snapshot"), update_snapshot)
                pipe.delete(
                    self._messages_key(Phase.UPDATE),
                    self._key("models:update"),
                    self._key("update_aggregate"),
                )
            pipe.execute()

        self._call("phase_opened", write)

    def close(self) -> None:
        self._client.close()


def phase_index(phase: Phase) -> int:
    """Sum 0, Update 1, Sum2 2, Unmask 3."""
    return _PHASE_ORDER.index(phase)


def open_store(url: Optional[str]) -> StateStore:
    """The store for ``[redis] url`` (connected), or the in-memory one without it."""
    if url is None:
        return MemoryStore()
    return RedisStore(url).connect()
