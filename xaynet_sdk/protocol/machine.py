"""The state machine as a whole: one tick = params check, then at most one phase step.

The caller (the participant core) drives it like the original's ``tick()``:

1. fetch ``GET /params`` and call :func:`on_params`. A result means the tick is over:
   no params (204 or an error) is no progress; changed params start a new round
   (``new_round``; whatever the phase was doing is dropped, the keys, the scalar and the
   local model store are kept).
2. otherwise ask :func:`next_request` what the phase needs (``GET /sums``, ``GET /seeds``,
   ``POST /message`` or nothing), perform it, and pass the answer to :func:`step`.

No function here does I/O; they only compute.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from ..codec.bincode import RoundParameters
from ..codec.crypto import SigningKeyPair
from . import awaiting, new_round, sending, sum, sum2, update
from .state import (
    Awaiting,
    Event,
    LocalModel,
    NewRound,
    ParticipantState,
    Request,
    Response,
    Sending,
    SharedState,
    Sum,
    Sum2,
    Transition,
    Update,
    dummy_round_parameters,
)

__all__ = [
    "entry_events",
    "has_request",
    "new_state",
    "next_request",
    "on_params",
    "step",
    "with_local_model",
]


def new_state(
    keys: SigningKeyPair, scalar: float, max_message_size: Optional[int]
) -> tuple[ParticipantState, tuple[Event, ...]]:
    """A new participant: Awaiting with dummy parameters (the original emits ``idle``)."""
    shared = SharedState(keys, float(scalar), max_message_size, dummy_round_parameters())
    return ParticipantState(shared, Awaiting()), (Event.IDLE,)


def entry_events(state: ParticipantState) -> tuple[Event, ...]:
    """The events of entering the state's phase, as the original emits them on restore."""
    phase = state.phase
    if isinstance(phase, NewRound):
        return (Event.NEW_ROUND,)
    if isinstance(phase, Awaiting):
        return (Event.IDLE,)
    if isinstance(phase, Sum):
        return (Event.SUM,)
    if isinstance(phase, Update):
        if phase.has_loaded_model() or state.local_model is not None:
            return (Event.UPDATE,)
        return (Event.UPDATE, Event.LOAD_MODEL)
    return ()


def on_params(state: ParticipantState, params: Optional[RoundParameters]) -> Optional[Transition]:
    """The round freshness check every tick starts with; None means "same round, go on"."""
    if params is None:
        return Transition(state, False)
    if params != state.shared.round_params:
        shared = replace(state.shared, round_params=params)
        return Transition(replace(state, shared=shared, phase=NewRound()), True, (Event.NEW_ROUND,))
    return None


def next_request(state: ParticipantState) -> Optional[Request]:
    """What the current phase's step needs fetched or sent first, if anything."""
    phase = state.phase
    if isinstance(phase, Update):
        return update.request(state)
    if isinstance(phase, Sum2):
        return sum2.request(state)
    if isinstance(phase, Sending):
        return sending.request(state)
    return None


def has_request(state: ParticipantState) -> bool:
    """Whether :func:`next_request` has something (cheap: a message is not sealed for it)."""
    if isinstance(state.phase, Sending):
        return sending.has_request(state)
    return next_request(state) is not None


def step(state: ParticipantState, response: Optional[Response] = None) -> Transition:
    """The current phase's step, given the response to :func:`next_request` (if any)."""
    phase = state.phase
    if isinstance(phase, NewRound):
        return new_round.step(state)
    if isinstance(phase, Awaiting):
        return awaiting.step(state)
    if isinstance(phase, Sum):
        return sum.step(state)
    if isinstance(phase, Update):
        return update.step(state, response)
    if isinstance(phase, Sum2):
        return sum2.step(state, response)
    return sending.step(state, response)


def with_local_model(state: ParticipantState, model: Optional[LocalModel]) -> ParticipantState:
    """The state with the model store set (``set_model``) or emptied."""
    return replace(state, local_model=model)
