"""The state machine as a whole: one tick = params check, then at most one phase step.

The caller (the participant core) drives it like the original's ``tick()``:

1. fetch ``GET /params`` and call :func:`on_params`. A result means the tick is over:
   no params (204 or an error) is no progress; changed params start a new round
   (``new_round``; whatever the phase was doing is dropped, the keys, the scalar and the
   local model store are kept).
2. otherwise ask :func:`next_request` what the phase needs (``GET /sums``, ``GET /seeds``,
   ``POST /message`` or nothing), perform it, and pass the answer to :func:`step`.

No function here does I/O; they only compute. Each phase's behaviour is found in the
phase table (:mod:`.phases`, which also says how to add a phase).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from ..codec.bincode import RoundParameters
from ..codec.crypto import SigningKeyPair
from .phases import spec_of
from .state import (
    Awaiting,
    Event,
    LocalModel,
    NewRound,
    ParticipantState,
    Request,
    Response,
    SharedState,
    Transition,
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
    return spec_of(state.phase).entry_events(state)


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
    return spec_of(state.phase).request(state)


def has_request(state: ParticipantState) -> bool:
    """Whether :func:`next_request` has something (cheap: a message is not sealed for it)."""
    spec = spec_of(state.phase)
    if spec.has_request is not None:
        return spec.has_request(state)
    return spec.request(state) is not None


def step(state: ParticipantState, response: Optional[Response] = None) -> Transition:
    """The current phase's step, given the response to :func:`next_request` (if any)."""
    return spec_of(state.phase).step(state, response)


def with_local_model(state: ParticipantState, model: Optional[LocalModel]) -> ParticipantState:
    """The state with the model store set (``set_model``) or emptied."""
    return replace(state, local_model=model)
