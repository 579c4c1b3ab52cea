"""Awaiting: nothing to do until the round parameters change (never progress)."""

from __future__ import annotations

from .state import Awaiting, ParticipantState, Transition

__all__ = ["step"]


def step(state: ParticipantState) -> Transition:
    assert isinstance(state.phase, Awaiting)
    return Transition(state, False)
