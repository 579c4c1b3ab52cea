"""Awaiting: nothing to do until the round parameters change (never progress)."""

from __future__ import annotations

from typing import Optional

from .state import Awaiting, Event, ParticipantState, PhaseSpec, Response, Transition, emits

__all__ = ["PHASE", "step"]


def step(state: ParticipantState, response: Optional[Response] = None) -> Transition:
    assert isinstance(state.phase, Awaiting)
    return Transition(state, False)


#: This phase's row of the phase table (:mod:`xaynet_sdk.protocol.phases`).
PHASE = PhaseSpec(Awaiting, "awaiting", step, entry_events=emits(Event.IDLE))
