"""Awaiting: nothing to do until the round parameters change (never progress)."""

from __future__ import annotations

from typing import Any, Optional

from .state import Awaiting, Event, ParticipantState, PhaseSpec, Response, Transition

__all__ = ["PHASE", "step"]


def step(state: ParticipantState, response: Optional[Response] = None) -> Transition:
    assert isinstance(state.phase, Awaiting)
    return Transition(state, False)


def _entry_events(state: ParticipantState) -> tuple[Event, ...]:
    return (Event.IDLE,)


def _dump(phase: Awaiting) -> dict[str, Any]:
    return {}


def _load(doc: dict[Any, Any], where: str) -> Awaiting:
    return Awaiting()


PHASE = PhaseSpec(Awaiting, "awaiting", step, _dump, _load, entry_events=_entry_events)
