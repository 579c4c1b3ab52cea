"""The participant's state as data: shared state, one dataclass per phase, events, requests.

Everything here is an immutable value. A step of the state machine (one module per phase)
takes a :class:`ParticipantState` plus what was fetched for it and returns a
:class:`Transition`: the next state, whether that was progress, and the events that the
layer above turns into flags (``task``, ``should_set_model``, ``new_global_model``).
The steps never do I/O; they say what they need next with a :class:`Request`.

The phases follow the original Rust state machine (xaynet-sdk v0.11.0, docs/PROTOCOL.md 12.2):
NewRound, Awaiting, Sum, Update, Sum2 and the three Sending phases (one dataclass here,
:class:`Sending`, with its :class:`SendingKind`). Every phase's data derives from
:class:`Phase`; its behaviour is a :class:`PhaseSpec` in the phase's module, found through
the table in :mod:`.phases`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np
import numpy.typing as npt

from ..codec.bincode import RoundParameters
from ..codec.crypto import EncryptKeyPair, SigningKeyPair
from ..codec.message import Tag
from ..mask.config import BoundType, DataType, GroupType, MaskConfig, MaskConfigPair, ModelType
from ..mask.objects import MaskObject

__all__ = [
    "Awaiting",
    "Event",
    "FetchSeeds",
    "FetchSums",
    "LocalModel",
    "NewRound",
    "ParticipantState",
    "Phase",
    "PhaseSpec",
    "PostMessage",
    "Request",
    "Response",
    "Sending",
    "SendingKind",
    "SharedState",
    "Sum",
    "Sum2",
    "Transition",
    "Update",
    "dummy_round_parameters",
]

#: A local model as the state machine keeps it: a 1-d array of the round's data type.
LocalModel = npt.NDArray[Any]


def dummy_round_parameters() -> RoundParameters:
    """The parameters a new participant starts with (the original's ``dummy_round_parameters``).

    Zero key and seed, probabilities 0, Integer/F32/B0/M3, model length 0: any real round's
    parameters differ, so the first successful ``GET /params`` starts a new round.
    """
    config = MaskConfig(GroupType.Integer, DataType.F32, BoundType.B0, ModelType.M3)
    return RoundParameters(bytes(32), 0.0, 0.0, bytes(32), MaskConfigPair.single(config), 0)


@dataclass(frozen=True)
class SharedState:
    """What survives every round: the identity, the scalar, the message size, the last params."""

    keys: SigningKeyPair
    scalar: float
    max_message_size: Optional[int]
    round_params: RoundParameters


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------


class Phase:
    """Base of the phases' data (frozen dataclasses); a plain class so that it adds no fields,
    no equality and no hash to them."""


@dataclass(frozen=True)
class NewRound(Phase):
    """Fresh round parameters were fetched; the next step decides the task."""


@dataclass(frozen=True)
class Awaiting(Phase):
    """No task (or the task is done) until the round parameters change."""


@dataclass(frozen=True)
class Sum(Phase):
    """Selected for the sum task: the ephemeral key pair is generated, the message not yet built."""

    ephm_keys: EncryptKeyPair
    sum_signature: bytes


@dataclass(frozen=True, eq=False)
class Update(Phase):
    """Selected for the update task. Sub-steps fill the fields in order, one per tick:

    ``sum_dict`` (``GET /sums``) → ``model`` (taken from the store) → ``mask`` (seed and
    masked model; ``model`` is dropped) → ``seed_dict`` (``sum_dict`` is dropped) → compose.
    """

    sum_signature: bytes
    update_signature: bytes
    sum_dict: Optional[Mapping[bytes, bytes]] = None
    model: Optional[LocalModel] = field(default=None, repr=False)
    mask: Optional[tuple[bytes, MaskObject]] = field(default=None, repr=False)
    seed_dict: Optional[Mapping[bytes, bytes]] = None

    def has_built_seed_dict(self) -> bool:
        return self.seed_dict is not None

    def has_masked_model(self) -> bool:
        return self.mask is not None or self.has_built_seed_dict()

    def has_loaded_model(self) -> bool:
        return self.model is not None or self.has_masked_model()

    def has_fetched_sum_dict(self) -> bool:
        return self.sum_dict is not None or self.has_loaded_model()


@dataclass(frozen=True, eq=False)
class Sum2(Phase):
    """The sum participant after its Sum message: ``GET /seeds`` → decrypt → aggregate → compose."""

    ephm_keys: EncryptKeyPair
    sum_signature: bytes
    seed_dict: Optional[Mapping[bytes, bytes]] = None
    seeds: Optional[tuple[bytes, ...]] = field(default=None, repr=False)
    mask: Optional[MaskObject] = field(default=None, repr=False)

    def has_aggregated_masks(self) -> bool:
        return self.mask is not None

    def has_decrypted_seeds(self) -> bool:
        return self.seeds is not None or self.has_aggregated_masks()

    def has_fetched_seed_dict(self) -> bool:
        return self.seed_dict is not None or self.has_decrypted_seeds()


class SendingKind(enum.Enum):
    """Which message a :class:`Sending` phase sends, and so where it goes when done."""

    SUM = "sum"  # → Sum2
    UPDATE = "update"  # → Awaiting
    SUM2 = "sum2"  # → Awaiting

    @property
    def tag(self) -> Tag:
        return {"sum": Tag.Sum, "update": Tag.Update, "sum2": Tag.Sum2}[self.value]


@dataclass(frozen=True)
class Sending(Phase):
    """Sending one message, whole or in chunks, one POST per tick.

    ``data`` is the serialized payload; ``payload_size`` is 0 for a single message, else the
    max payload size the chunks were cut for (chunk data = ``payload_size - 8`` bytes);
    ``next_index`` is the next message (chunk) to take; ``failed`` holds the *sealed* bytes of
    a POST that failed, resent verbatim before anything else. ``then`` is the Sum2 state a
    sum participant continues with.
    """

    kind: SendingKind
    data: bytes = field(repr=False)
    payload_size: int = 0
    message_id: Optional[int] = None
    next_index: int = 0
    failed: Optional[bytes] = field(default=None, repr=False)
    then: Optional[Sum2] = None


@dataclass(frozen=True, eq=False)
class ParticipantState:
    """The whole participant: shared state, current phase, and the local model store.

    ``local_model`` is the slot ``set_model`` fills and the Update phase empties (the
    original's model store, which, unlike the original, is part of the saved state).
    """

    shared: SharedState
    phase: Phase
    local_model: Optional[LocalModel] = field(default=None, repr=False)

    @property
    def round_params(self) -> RoundParameters:
        return self.shared.round_params


# ---------------------------------------------------------------------------------------------
# Events, requests and transitions
# ---------------------------------------------------------------------------------------------


class Event(enum.Enum):
    """What the original's ``Notify`` reports; see docs/PROTOCOL.md 12.3 for their effect."""

    NEW_ROUND = "new_round"
    SUM = "sum"
    UPDATE = "update"
    LOAD_MODEL = "load_model"
    IDLE = "idle"


@dataclass(frozen=True)
class FetchSums:
    """``GET /sums``: the sum dictionary (204 until the Sum phase ended)."""


@dataclass(frozen=True)
class FetchSeeds:
    """``GET /seeds?pk=<pk>``: this sum participant's encrypted mask seeds."""

    pk: bytes


@dataclass(frozen=True)
class PostMessage:
    """``POST /message`` with ``body``, already sealed to the round's coordinator key."""

    body: bytes = field(repr=False)
    retry: bool = False
    index: int = 0
    count: int = 1


Request = Union[FetchSums, FetchSeeds, PostMessage]


@dataclass(frozen=True)
class Response:
    """What came back for a :class:`Request`.

    For a fetch, ``body`` is the 200 body, or None if nothing usable came (204 or any
    failure: the original treats both as "not yet"). For a post, ``ok`` says whether it
    was accepted (any 2xx/3xx).
    """

    request: Request
    body: Optional[bytes] = field(default=None, repr=False)
    ok: bool = False


@dataclass(frozen=True)
class Transition:
    """The outcome of a step: the next state, ``progress`` (the original's Complete vs
    Pending), and the events to process, in order.

    ``problem`` is ``(kind, message)`` for trouble met on the way that the next tick retries
    (such as an undecodable dictionary from the coordinator): the participant logs each kind
    once until it makes progress again, rather than once per poll.
    """

    state: ParticipantState
    progress: bool
    events: tuple[Event, ...] = ()
    problem: Optional[tuple[str, str]] = None


def model_array(values: "npt.ArrayLike", dtype: str) -> LocalModel:
    """A contiguous 1-d array of ``dtype`` (for tests and restoring)."""
    return np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1))


# ---------------------------------------------------------------------------------------------
# What a phase module provides
# ---------------------------------------------------------------------------------------------


def no_request(state: ParticipantState) -> Optional[Request]:
    """The request of a phase whose steps are all local."""
    return None


def no_events(state: ParticipantState) -> tuple[Event, ...]:
    """The entry events of a phase that the original enters silently."""
    return ()


def emits(*events: Event) -> Callable[[ParticipantState], tuple[Event, ...]]:
    """Entry events that do not depend on the state."""
    return lambda state: events


def no_fields(phase: Phase) -> dict[str, Any]:
    """The saved fields of a phase that has none."""
    return {}


@dataclass(frozen=True)
class PhaseSpec:
    """One phase's behaviour, as its module exports it (``PHASE``); see :mod:`.phases`.

    ``kind`` is the phase's data class and ``name`` its name in the saved state. ``step``
    computes the next transition from the response to ``request`` (None when the request
    is None); ``has_request`` answers "is there a request?" cheaply (default: ``request``
    is not None); ``entry_events`` are the events of entering the phase, emitted again on
    restore. ``dump`` gives the phase's fields for the saved state (a dict of msgpack
    values, without the name) and ``load`` reads them back (raising
    :class:`~.saved_fields.InvalidState`; ``where`` names the place in error messages);
    a phase without fields needs neither (``load`` None: ``kind()``).
    """

    kind: type[Phase]
    name: str
    step: Callable[[ParticipantState, Optional[Response]], Transition]
    request: Callable[[ParticipantState], Optional[Request]] = no_request
    has_request: Optional[Callable[[ParticipantState], bool]] = None
    entry_events: Callable[[ParticipantState], tuple[Event, ...]] = no_events
    dump: Callable[[Any], dict[str, Any]] = no_fields
    load: Optional[Callable[[dict[Any, Any], str], Phase]] = None
