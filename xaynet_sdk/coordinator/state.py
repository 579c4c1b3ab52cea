"""The round state: keys, seed, dictionaries, aggregation, and the rules that change them.

One :class:`CoordinatorState` holds the current :class:`Round` behind one lock. Request threads
call the ``accept_*`` methods (each a short critical section: checks, dictionary updates, one
modular vector addition in C) after doing the expensive, stateless work of a message
(decryption, signature checks, parsing, range checks) outside the lock. The round thread
(:mod:`.rounds`) calls the ``open_*`` transitions, also under the lock.

Three properties matter and are why the code looks the way it does:

* **Atomic publication.** The sum dict is published in the same critical section that opens
  the Update phase, and the seed dict with the Sum2 phase. A participant can only build an
  Update (Sum2) message after reading the published dictionary, so its message can never meet
  the previous phase. The original publishes first and changes phase a moment later, and drops
  messages that arrive in between (docs/PROTOCOL.md section 13.3).
* **No message lost at a phase end.** Every POST takes a :class:`Ticket` when its body has
  arrived; a phase that ends (by count or by time) first stops issuing tickets for itself, then
  waits until the tickets already issued are settled. A message that arrived while its phase
  was open is therefore judged in that phase, however long its decryption takes. The original
  answers queued requests of an ending phase with "rejected".
* **GETs never wait.** What GET requests serve (parameters, dictionaries, the model) is encoded
  once when published and replaced by reference, so ``/params`` polling never takes the lock.
* **Nothing accepted is forgotten** (with a durable :mod:`.store`, ``[redis]``): an accepted
  message is stored, in the same critical section and before it changes the round, so the
  stored messages are exactly the accepted ones; a new round is stored before it is opened.
  :meth:`CoordinatorState.restore` rebuilds the round from them through the same rules.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Optional, Union

import msgpack

from ..codec.bincode import Reader, RoundParameters, encode_sum_dict, encode_update_seed_dict
from ..codec.crypto import EncryptKeyPair, SigningKeyPair, sha256
from ..codec.errors import DecodeError
from ..codec.message import (
    Message,
    Sum2Payload,
    SumPayload,
    UpdatePayload,
    decode_local_seed_dict,
    encode_local_seed_dict,
)
from ..mask.masking import Aggregation
from ..mask.objects import MaskObject
from .limits import Limits
from .outcomes import Phase, Reason, Rejected
from .reassembly import ReassembledMessage, Reassembler
from .settings import Settings
from .store import (
    AGGREGATE_EVERY,
    MemoryStore,
    ModelRef,
    RestoreError,
    RoundMeta,
    StateStore,
    StoredState,
    StoreError,
    phase_index,
)

__all__ = [
    "CoordinatorState",
    "PublishedModel",
    "Round",
    "RoundRecord",
    "Ticket",
    "decode_model_fractions",
    "derive_round_seed",
    "model_length_of",
    "wal_record",
]

_log = logging.getLogger("xaynet_sdk.coordinator.state")
_F64 = struct.Struct("<d")
_HISTORY = 1000
_RECORD = struct.Struct(">Q48s32s")  # round id, sealed box id, participant key; then payload
_MODEL = struct.Struct(">Q32s")  # round id, participant key; then the masked model

AnyPayload = Union[SumPayload, UpdatePayload, Sum2Payload]
#: A write-ahead record: bytes, or for an Update (its seeds, its masked model).
Record = Union[bytes, tuple[bytes, bytes]]


def wal_record(round_id: int, body_id: bytes, pk: bytes, payload: AnyPayload) -> Record:
    """A message's write-ahead record: what replaying it needs, already verified.

    Sum and Sum2: the payload. Update: the seeds in one record and the masked model in
    another, because the masked models are replaced by snapshots of their sum (see
    :mod:`.store`) and the seeds are not."""
    head = _RECORD.pack(round_id, body_id, pk)
    if isinstance(payload, UpdatePayload):
        model = b"".join([_MODEL.pack(round_id, pk), *payload.masked_model.wire_parts()])
        return head + encode_local_seed_dict(payload.local_seed_dict), model
    return head + payload.to_bytes()


def derive_round_seed(prev_seed: bytes, keys: EncryptKeyPair, sum_: float, update: float) -> bytes:
    """The next round seed, as the original's Idle phase derives it (docs/PROTOCOL.md section 4.6).

    The new round's X25519 *secret* key is used as an Ed25519 seed; the seed is the SHA-256 of
    that key's signature over ``prev_seed ‖ f64_le(sum) ‖ f64_le(update)``. Participants never
    check it (any 32 unpredictable bytes interoperate); following it keeps rounds reproducible
    from the keys, like the original's.
    """
    signer = SigningKeyPair.from_seed(keys.secret)
    return sha256(signer.sign(prev_seed + _F64.pack(sum_) + _F64.pack(update)))


def decode_model_fractions(data: bytes) -> list[Fraction]:
    """A bincode ``Vec<Ratio<BigInt>>`` (as :func:`~xaynet_sdk.codec.encode_model` writes it)."""
    reader = Reader(data)
    count = reader.count("model", 18)
    out = []
    for _ in range(count):
        numer = _read_bigint(reader)
        denom = _read_bigint(reader)
        if denom == 0:
            raise DecodeError("model: a ratio with a zero denominator")
        out.append(Fraction(numer, denom))
    return out


def model_length_of(data: bytes) -> int:
    """The number of weights of a bincode model, after checking its whole structure
    (without building the numbers: a restored model is served at once)."""
    view = memoryview(data)
    if len(view) < 8:
        raise DecodeError("model: truncated length")
    count = int.from_bytes(view[:8], "little")
    position = 8
    end = len(view)
    for _ in range(2 * count):
        if position + 9 > end or view[position] not in (0, 1, 0xFF):
            raise DecodeError("model: not a bincode Vec<Ratio<BigInt>>")
        digits = int.from_bytes(view[position + 1 : position + 9], "little")
        position += 9 + 4 * digits
    if position != end:
        raise DecodeError("model: not a bincode Vec<Ratio<BigInt>> of its stated length")
    return count


def _read_bigint(reader: Reader) -> int:
    sign = reader.i8("bigint sign")
    digits = reader.count("bigint digits", 4)
    magnitude = int.from_bytes(reader.take(4 * digits, "bigint digits"), "little")
    return -magnitude if sign < 0 else magnitude


class PublishedModel:
    """A global model as published: its wire bytes, and its exact fractions on demand.

    The fractions are decoded lazily because, for large models, building a million Python
    ``Fraction`` objects takes seconds; the bytes are what ``GET /model`` serves.
    """

    def __init__(
        self,
        round_id: int,
        data: bytes,
        fractions: Optional[list[Fraction]] = None,
        id: Optional[str] = None,
    ):
        self.round_id = round_id
        #: The original's id ``<round id>_<hex of the round seed>`` (S3 key, Redis value).
        self.id = id
        self.data = data
        self._fractions = fractions
        self._lock = threading.Lock()

    def fractions(self) -> list[Fraction]:
        with self._lock:
            if self._fractions is None:
                self._fractions = decode_model_fractions(self.data)
            return self._fractions


@dataclass(frozen=True)
class RoundRecord:
    """How a round ended: for ``LocalCoordinator.history`` and tests."""

    round_id: int
    #: The round seed (public, in the round parameters): what a client can tell rounds by.
    seed: bytes
    completed: bool
    failure: Optional[str]
    sum_count: int
    update_count: int
    sum2_count: int
    #: ``time.monotonic()`` at the round's start and end (when the next round started).
    started: float
    ended: float

    @property
    def duration(self) -> float:
        return self.ended - self.started


class Round:
    """Everything that belongs to one round. Mutated only under ``CoordinatorState.lock``."""

    def __init__(
        self, round_id: int, keys: EncryptKeyPair, seed: bytes, settings: Settings, now: float
    ) -> None:
        self.round_id = round_id
        self.keys = keys
        self.seed = seed
        self.params = RoundParameters(
            pk=keys.public,
            sum=settings.pet.sum,
            update=settings.pet.update,
            seed=seed,
            mask_config=settings.mask_config,
            model_length=settings.model_length,
        )
        self.params_bytes = self.params.to_bytes()
        self.started = now
        self.phase = Phase.SUM
        self.phase_started = now
        #: Set when the current phase stops taking new messages (it ends once inflight is 0).
        self.closing = False
        #: Tickets issued for the current phase and not yet settled.
        self.inflight = 0
        self.accepted: Counter[Phase] = Counter()
        self.rejected: Counter[Phase] = Counter()
        self.discarded: Counter[Phase] = Counter()
        self.sum_dict: dict[bytes, bytes] = {}
        self.sum_dict_bytes: Optional[bytes] = None
        self.seed_dict: dict[bytes, dict[bytes, bytes]] = {}
        self.seeds_published = False
        self.seed_cache: dict[bytes, bytes] = {}
        self.update_pks: set[bytes] = set()
        self.aggregation = Aggregation(settings.mask_config, settings.model_length)
        #: the distinct Sum2 masks, and their votes by index in ``masks``
        self.masks: list[MaskObject] = []
        self.mask_counts: Counter[int] = Counter()
        self.sum2_pks: set[bytes] = set()
        #: the ids (see ``sealed_box_id``) of every body accepted this round, whole messages
        #: and chunks: replays.
        self.accepted_ids: set[bytes] = set()
        #: Update messages stored since the last stored snapshot of the aggregate.
        self.since_aggregate = 0


@dataclass(frozen=True)
class Ticket:
    """A POSTed message's view of the round when its body had arrived.

    ``phase`` is the coordinator's phase then; ``accepting`` says whether that phase was open
    for messages (and the ticket counted in ``inflight``); ``replay`` whether the very same
    bytes were already accepted this round.
    """

    round: Round
    phase: Phase
    accepting: bool
    replay: bool
    body_id: bytes


class CoordinatorState:
    """The current round behind one lock and one condition; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        limits: Limits,
        *,
        keep_models: Optional[int] = None,
        clock: Callable[[], float] = time.monotonic,
        store: Optional[StateStore] = None,
        store_model_bytes: bool = True,
    ) -> None:
        self.settings = settings
        #: Where the round survives a restart (see :mod:`.store`); in memory by default.
        self.store = store if store is not None else MemoryStore()
        #: Whether the store keeps the global model's bytes (False when they go to S3).
        self.store_model_bytes = store_model_bytes
        self._restoring = False
        self._base_round_id = 0
        self.limits = limits
        self.clock = clock
        self.lock = threading.Lock()
        #: Notified on every accepted message, settled ticket of a closing phase, published
        #: model, and on stop: the round thread and ``wait_for_*`` callers wait on it.
        self.cond = threading.Condition(self.lock)
        self.stopping = False
        self.keep_models = keep_models
        self._prev_seed = bytes(32)
        self._round: Optional[Round] = None
        self._reassembler = Reassembler(
            max_builders=limits.multipart_max_messages,
            max_builders_per_participant=limits.multipart_max_messages_per_participant,
            max_total_bytes=limits.multipart_bytes(settings),
            max_age=limits.multipart_max_age,
            clock=clock,
        )
        self._models: list[PublishedModel] = []
        self._models_published = 0
        self._latest_model: Optional[PublishedModel] = None
        self._history: deque[RoundRecord] = deque(maxlen=_HISTORY)

    # -- reading (no lock: every attribute read here is replaced, never mutated) -------------
    @property
    def round(self) -> Round:
        current = self._round
        if current is None:
            raise RuntimeError("the coordinator has not started its first round")
        return current

    @property
    def started(self) -> bool:
        return self._round is not None

    def params_bytes(self) -> bytes:
        return self.round.params_bytes

    def sums_bytes(self) -> Optional[bytes]:
        """The sum dict from the start of the Update phase until the next round, else None."""
        return self.round.sum_dict_bytes

    def seeds_bytes(self, pk: bytes) -> Optional[bytes]:
        """The seeds for sum participant ``pk`` once published; None if unpublished or unknown."""
        current = self.round
        if not current.seeds_published:
            return None
        cached = current.seed_cache.get(pk)
        if cached is not None:
            return cached
        seeds = current.seed_dict.get(pk)
        if seeds is None:
            return None
        encoded = encode_update_seed_dict(seeds)  # the dict is frozen once published
        current.seed_cache[pk] = encoded
        return encoded

    def model_bytes(self) -> Optional[bytes]:
        latest = self._latest_model
        return latest.data if latest is not None else None

    @property
    def latest_model(self) -> Optional[PublishedModel]:
        return self._latest_model

    @property
    def models_published(self) -> int:
        return self._models_published

    def models(self) -> list[PublishedModel]:
        """The retained published models, oldest first."""
        with self.lock:
            return list(self._models)

    def history(self) -> list[RoundRecord]:
        with self.lock:
            return list(self._history)

    @property
    def buffered_multipart(self) -> tuple[int, int]:
        """(incomplete multipart messages, their buffered bytes)."""
        with self.lock:
            return len(self._reassembler), self._reassembler.buffered_bytes

    # -- round lifecycle (the round thread; callers hold the lock) ---------------------------
    def begin_round(self, publish: Optional[PublishedModel] = None) -> Round:
        """Idle: a new round id, key pair and seed; empty dictionaries; the Sum phase opens.

        Everything participants see changes at once: ``/params``, ``/sums`` (204 again) and
        ``/seeds`` (204 again). The global model stays, as in the original; ``publish``
        (the model of the round that ends) becomes the served one in the same step.

        With a durable store the new round and ``publish`` are stored first, in one
        transaction; if that fails (:class:`StoreError`) nothing changes here.
        """
        previous = self._round
        round_id = (previous.round_id if previous is not None else self._base_round_id) + 1
        keys = EncryptKeyPair.generate()
        seed = derive_round_seed(
            self._prev_seed, keys, self.settings.pet.sum, self.settings.pet.update
        )
        if self.store.durable:
            ref = None
            if publish is not None:
                if publish.id is None:
                    raise ValueError("a model to store needs its id")
                ref = ModelRef(publish.id, publish.data if self.store_model_bytes else None)
            self.store.begin_round(self._meta(round_id, keys, seed), ref)
        self._prev_seed = seed
        self._reassembler.reset()
        if publish is not None:
            self.publish_model(publish)
        self._round = Round(round_id, keys, seed, self.settings, self.clock())
        self.cond.notify_all()
        return self._round

    def _meta(self, round_id: int, keys: EncryptKeyPair, seed: bytes) -> RoundMeta:
        settings = self.settings
        return RoundMeta(
            round_id,
            keys.public,
            keys.secret,
            seed,
            settings.pet.sum,
            settings.pet.update,
            settings.mask.name,
            settings.model_length,
        )

    # -- restore (before the round thread and the server start; takes the lock itself) --------
    def restore(self, stored: StoredState, model: Optional[PublishedModel]) -> Round:
        """Continue the stored round in its phase, with its id and keys (see :mod:`.store`).

        Its Sum and Sum2 messages are replayed through the ``accept_*`` rules, its Update phase
        rebuilt from the stored seeds and aggregate (a record stored twice by a retried write
        counts once); the interrupted phase's timer starts anew.
        Raises :class:`RestoreError` if the stored round has another mask configuration or
        model length than the settings. If only the selection probabilities changed, the
        stored round is abandoned and the next one starts with the new ones.
        """
        meta = stored.round
        settings = self.settings
        self.check_restorable(stored)
        with self.lock:
            self._latest_model = model
            self._prev_seed = meta.seed
            self._base_round_id = meta.round_id
            if (meta.sum, meta.update) != (settings.pet.sum, settings.pet.update):
                _log.warning(
                    "the stored round %d ran with other selection probabilities: it is"
                    " abandoned, round %d starts with the new ones",
                    meta.round_id,
                    meta.round_id + 1,
                )
                return self.begin_round()
            keys = EncryptKeyPair(meta.public, meta.secret)
            current = Round(meta.round_id, keys, meta.seed, settings, self.clock())
            self._round = current
        target = max(
            [phase_index(stored.phase)]
            + [phase_index(p) for p, records in stored.messages.items() if records]
        )
        self._restoring = True
        try:
            self._replay(current, Phase.SUM, stored.messages.get(Phase.SUM, []))
            if target >= 1:
                with self.lock:
                    self.open_update(current)
                with self.lock:
                    if stored.update_snapshot is not None:
                        self._load_update_snapshot(current, stored.update_snapshot)
                    else:
                        self._replay_updates(current, stored)
            if target >= 2:
                with self.lock:
                    self.open_sum2(current)
                self._replay(current, Phase.SUM2, stored.messages.get(Phase.SUM2, []))
            if target >= 3:
                with self.lock:
                    self.open_unmask(current)
        finally:
            self._restoring = False
        return current

    def check_restorable(self, stored: StoredState) -> None:
        """:class:`RestoreError` unless the stored round has the settings' mask and length."""
        meta = stored.round
        settings = self.settings
        if meta.mask != settings.mask.name or meta.model_length != settings.model_length:
            raise RestoreError(
                f"the stored coordinator state (round {meta.round_id}) was made with mask"
                f" {meta.mask} and model length {meta.model_length}, but the settings say"
                f" {settings.mask.name} and {settings.model_length}: start with the same"
                " [mask] and [model] settings, or with [restore] enable = false to discard the"
                " stored state"
            )

    def _replay(self, current: Round, phase: Phase, records: list[bytes]) -> None:
        decode: dict[Phase, Callable[[memoryview], AnyPayload]] = {
            Phase.SUM: SumPayload.from_bytes,
            Phase.SUM2: Sum2Payload.from_bytes,
        }
        for record in records:
            try:
                round_id, body_id, pk = _RECORD.unpack_from(record)
                if round_id != current.round_id:
                    continue
                payload = decode[phase](memoryview(record)[_RECORD.size :])
            except (struct.error, DecodeError) as e:
                raise RestoreError(f"a stored {phase.value} message is corrupt: {e}") from None
            ticket = Ticket(current, phase, True, False, body_id)
            try:
                if isinstance(payload, Sum2Payload):
                    self.accept_sum2(ticket, pk, payload)
                elif isinstance(payload, SumPayload):
                    self.accept_sum(ticket, pk, payload)
            except Rejected as e:
                # A record written twice (a write retried after a lost reply) counts once.
                if e.reason is not Reason.DUPLICATE:
                    raise RestoreError(
                        f"a stored {phase.value} message is refused on replay: {e}"
                    ) from None

    def _replay_updates(self, current: Round, stored: StoredState) -> None:
        """The Update phase from its seeds records, the last aggregate and the models after
        it (lock held). A record stored twice (a retried write) counts once."""
        try:
            for record in stored.messages.get(Phase.UPDATE, []):
                round_id, body_id, pk = _RECORD.unpack_from(record)
                if round_id != current.round_id or pk in current.update_pks:
                    continue
                seeds, _ = decode_local_seed_dict(record, _RECORD.size)
                if set(seeds) != set(current.sum_dict):
                    raise RestoreError("a stored Update message does not fit the sum dict")
                current.update_pks.add(pk)
                for sum_pk, encrypted_seed in seeds.items():
                    current.seed_dict[sum_pk][pk] = encrypted_seed
                current.accepted[Phase.UPDATE] += 1
                current.accepted_ids.add(body_id)
            aggregation = current.aggregation
            covered: set[bytes] = set()
            if stored.update_aggregate is not None:
                snapshot = msgpack.unpackb(stored.update_aggregate)
                if snapshot["round_id"] == current.round_id and snapshot["nb_models"]:
                    obj, _ = MaskObject.from_bytes(snapshot["object"])
                    aggregation.aggregate(obj)  # adopted as is; the count is the stored one
                    aggregation.nb_models = int(snapshot["nb_models"])
                    covered = set(snapshot["pks"])
            for record in stored.update_models:
                round_id, pk = _MODEL.unpack_from(record)
                if round_id != current.round_id or pk in covered:
                    continue
                obj, _ = MaskObject.from_bytes(record, _MODEL.size)
                aggregation.aggregate(obj)
                covered.add(pk)
        except (struct.error, DecodeError, ValueError, KeyError, TypeError) as e:
            raise RestoreError(f"a stored Update message is corrupt: {e}") from None
        if covered != current.update_pks or aggregation.nb_models != len(covered):
            raise RestoreError(
                f"the stored Update phase is inconsistent: {len(current.update_pks)} updates,"
                f" {aggregation.nb_models} masked models"
            )
        current.since_aggregate = len(stored.update_models)

    def _snapshot_aggregate(self, current: Round) -> None:
        """Store the aggregate so far in place of the stored masked models (lock held)."""
        aggregation = current.aggregation
        snapshot = msgpack.packb(
            {
                "round_id": current.round_id,
                "nb_models": aggregation.nb_models,
                "object": aggregation.object.to_bytes(),
                "pks": sorted(current.update_pks),
            }
        )
        try:
            self.store.snapshot_aggregate(bytes(snapshot))
        except StoreError:
            return  # logged by the store; the masked models stay stored, tried again next time
        current.since_aggregate = 0

    def _update_snapshot(self, current: Round) -> bytes:
        aggregation = current.aggregation
        return bytes(
            msgpack.packb(
                {
                    "nb_models": aggregation.nb_models,
                    "object": aggregation.object.to_bytes(),
                    "update_pks": sorted(current.update_pks),
                    "seed_dict": current.seed_dict,
                    "accepted": current.accepted[Phase.UPDATE],
                }
            )
        )

    def _load_update_snapshot(self, current: Round, data: bytes) -> None:
        try:
            snapshot = msgpack.unpackb(data, strict_map_key=False)
            nb_models = int(snapshot["nb_models"])
            if nb_models:
                obj, _ = MaskObject.from_bytes(snapshot["object"])
                # aggregate() adopts the first object as is; the count is then the stored one.
                current.aggregation.aggregate(obj)
                current.aggregation.nb_models = nb_models
            current.update_pks = set(snapshot["update_pks"])
            current.seed_dict = {k: dict(v) for k, v in snapshot["seed_dict"].items()}
            current.accepted[Phase.UPDATE] = int(snapshot["accepted"])
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as e:
            raise RestoreError(
                f"the stored aggregate of the Update phase is corrupt: {e}"
            ) from None

    def _open(self, current: Round, phase: Phase) -> None:
        current.phase = phase
        current.phase_started = self.clock()
        current.closing = False
        current.inflight = 0
        # Chunks of the previous phase's messages can no longer complete usefully.
        self._reassembler.reset()
        self.cond.notify_all()

    def open_update(self, current: Round) -> None:
        """Publish the sum dict and open the Update phase, atomically."""
        current.sum_dict_bytes = encode_sum_dict(current.sum_dict)
        current.seed_dict = {pk: {} for pk in current.sum_dict}
        self._open(current, Phase.UPDATE)
        self._note_phase(current)

    def open_sum2(self, current: Round) -> None:
        """Publish the seed dict and open the Sum2 phase, atomically."""
        current.seeds_published = True
        self._open(current, Phase.SUM2)
        if self.store.durable and not self._restoring:
            self._note_phase(current, self._update_snapshot(current))

    def open_unmask(self, current: Round) -> None:
        """No message is accepted from here on; the round thread unmasks outside the lock."""
        self._open(current, Phase.UNMASK)
        self._note_phase(current)

    def _note_phase(self, current: Round, update_snapshot: Optional[bytes] = None) -> None:
        """Store the phase change. A failure is only logged (by the store): the stored
        messages alone restore the round, in the phase they reached."""
        if self._restoring or not self.store.durable:
            return
        try:
            self.store.phase_opened(current.round_id, current.phase, update_snapshot)
        except StoreError:
            pass

    def publish_model(self, model: PublishedModel) -> None:
        """Make ``model`` the one ``GET /model`` serves (it survives failed rounds)."""
        self._latest_model = model
        self._models_published += 1
        self._models.append(model)
        if self.keep_models is not None and len(self._models) > self.keep_models:
            del self._models[: len(self._models) - self.keep_models]
        self.cond.notify_all()

    def record(self, record: RoundRecord) -> None:
        self._history.append(record)

    # -- the message side (request threads) --------------------------------------------------
    def enter(self, body_id: bytes) -> Ticket:
        """A ticket for a message whose body has just arrived (see the module docstring)."""
        with self.lock:
            current = self.round
            accepting = (
                current.phase in (Phase.SUM, Phase.UPDATE, Phase.SUM2)
                and not current.closing
                and not self.stopping
            )
            if accepting:
                current.inflight += 1
            return Ticket(
                current, current.phase, accepting, body_id in current.accepted_ids, body_id
            )

    def leave(self, ticket: Ticket) -> None:
        """Settle a ticket; the last one of a closing phase wakes the round thread."""
        if not ticket.accepting:
            return
        with self.lock:
            current = ticket.round
            if current is self._round and current.phase is ticket.phase:
                current.inflight -= 1
                if current.closing and current.inflight <= 0:
                    self.cond.notify_all()

    def note_rejection(self, ticket: Ticket, reason: Reason) -> None:
        """Count a rejection against the round and phase of its arrival (for the phase log)."""
        with self.lock:
            if reason is Reason.DISCARDED:
                ticket.round.discarded[ticket.phase] += 1
            else:
                ticket.round.rejected[ticket.phase] += 1

    def _current(self, ticket: Ticket) -> Round:
        """The ticket's round, if it is still current and in the ticket's phase (lock held)."""
        current = self._round
        if current is not ticket.round or current.phase is not ticket.phase:
            # Only possible after the in-flight grace expired (or at stop).
            raise Rejected(Reason.WRONG_PHASE, "the phase ended while the message was processed")
        return current

    def _accept(self, current: Round, ticket: Ticket) -> None:
        current.accepted[ticket.phase] += 1
        current.accepted_ids.add(ticket.body_id)
        self.cond.notify_all()

    def write_ahead_record(
        self, ticket: Ticket, pk: bytes, payload: AnyPayload
    ) -> Optional[Record]:
        """The record :meth:`accept_sum` (etc.) must store first; None without a durable store.

        Built outside the lock by the caller: for an Update it copies the masked model."""
        if not self.store.durable:
            return None
        return wal_record(ticket.round.round_id, ticket.body_id, pk, payload)

    def _write_ahead(self, ticket: Ticket, record: Optional[Record]) -> None:
        """Store an accepted message before it changes the round (lock held)."""
        if record is None:
            return
        try:
            if isinstance(record, tuple):
                self.store.append_update(*record)
            else:
                self.store.append(ticket.phase, record)
        except StoreError as e:
            raise Rejected(Reason.STORAGE, str(e)) from None

    def _check_room(self, current: Round, ticket: Ticket, maximum: int) -> None:
        if current.accepted[ticket.phase] >= maximum:
            raise Rejected(
                Reason.DISCARDED,
                f"the {ticket.phase.value} phase already accepted its maximum of {maximum}",
            )

    def add_chunk(self, ticket: Ticket, message: Message) -> Optional[ReassembledMessage]:
        """Buffer a verified chunk; the reassembled message once complete, else None."""
        with self.lock:
            self._current(ticket)
            rebuilt = self._reassembler.add(message)  # ReassemblyError is a DecodeError
            ticket.round.accepted_ids.add(ticket.body_id)
            return rebuilt

    def accept_sum(
        self, ticket: Ticket, pk: bytes, payload: SumPayload, record: Optional[Record] = None
    ) -> None:
        """Sum: add ``pk → ephemeral key`` to the sum dict (one entry per participant)."""
        with self.lock:
            current = self._current(ticket)
            self._check_room(current, ticket, self.settings.pet.max_sum_count)
            if pk in current.sum_dict:
                raise Rejected(Reason.DUPLICATE, "this sum participant is already registered")
            self._write_ahead(ticket, record)
            current.sum_dict[pk] = payload.ephm_pk
            self._accept(current, ticket)

    def accept_update(
        self, ticket: Ticket, pk: bytes, payload: UpdatePayload, record: Optional[Record] = None
    ) -> None:
        """Update: record the seeds and add the masked model (validated by the caller).

        The checks are the original's, in its order: the model still fits the aggregation
        (its count limit; the rest was checked outside the lock), then the seed dict has one
        seed per sum participant, only for sum participants, and this participant has not
        submitted yet.
        """
        with self.lock:
            current = self._current(ticket)
            self._check_room(current, ticket, self.settings.pet.max_update_count)
            aggregation = current.aggregation
            configs = aggregation.configs
            if aggregation.nb_models >= min(configs.vect.max_nb_models, configs.unit.max_nb_models):
                raise Rejected(
                    Reason.INVALID_MODEL,
                    f"the model type allows at most {configs.vect.max_nb_models} models",
                )
            seeds = payload.local_seed_dict
            if len(seeds) != len(current.sum_dict):
                raise Rejected(
                    Reason.SEED_DICT_MISMATCH,
                    f"{len(seeds)} seeds for {len(current.sum_dict)} sum participants",
                )
            if any(sum_pk not in current.sum_dict for sum_pk in seeds):
                raise Rejected(
                    Reason.UNKNOWN_SUM_PARTICIPANT, "a seed for a key that is not in the sum dict"
                )
            if pk in current.update_pks:
                raise Rejected(Reason.DUPLICATE, "this update participant already submitted")
            self._write_ahead(ticket, record)
            current.update_pks.add(pk)
            for sum_pk, encrypted_seed in seeds.items():
                current.seed_dict[sum_pk][pk] = encrypted_seed
            aggregation.aggregate(payload.masked_model)
            if record is not None:
                current.since_aggregate += 1
                if current.since_aggregate >= AGGREGATE_EVERY:
                    self._snapshot_aggregate(current)
            self._accept(current, ticket)

    def accept_sum2(
        self, ticket: Ticket, pk: bytes, payload: Sum2Payload, record: Optional[Record] = None
    ) -> None:
        """Sum2: count one vote for the mask, by value.

        Masks are compared, not hashed: an honest round has one distinct mask, and comparing
        two of 10^5 numbers costs a fifth of hashing one. Units first, which differ for
        different masks but for crafted ones; there is one mask per sum participant at most."""
        mask = payload.model_mask
        with self.lock:
            current = self._current(ticket)
            self._check_room(current, ticket, self.settings.pet.max_sum2_count)
            if pk not in current.sum_dict:
                raise Rejected(Reason.UNKNOWN_SUM_PARTICIPANT, "the sender is not in the sum dict")
            if pk in current.sum2_pks:
                raise Rejected(Reason.DUPLICATE, "this sum participant already sent its mask")
            self._write_ahead(ticket, record)
            current.sum2_pks.add(pk)
            index = next(
                (
                    i
                    for i, known in enumerate(current.masks)
                    if known.unit == mask.unit and known.vect == mask.vect
                ),
                len(current.masks),
            )
            if index == len(current.masks):
                current.masks.append(mask)
            current.mask_counts[index] += 1
            self._accept(current, ticket)
