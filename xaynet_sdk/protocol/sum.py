"""Sum: compose the Sum message ``(sum_signature, ephm_pk)`` and go sending it.

After the message is sent the participant continues in Sum2 with the same ephemeral keys.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from ..codec.message import SumPayload
from .outbox import start_sending
from .saved_fields import ephm_keys, exact
from .state import (
    Event,
    ParticipantState,
    PhaseSpec,
    Response,
    SendingKind,
    Sum,
    Sum2,
    Transition,
    emits,
)

__all__ = ["PHASE", "step"]


def step(state: ParticipantState, response: Optional[Response] = None) -> Transition:
    """Always progress: Sum → SendingSum (no event, as in the original)."""
    phase = state.phase
    assert isinstance(phase, Sum)
    payload = SumPayload(phase.sum_signature, phase.ephm_keys.public)
    then = Sum2(ephm_keys=phase.ephm_keys, sum_signature=phase.sum_signature)
    sending = start_sending(state.shared, SendingKind.SUM, payload.to_bytes(), then)
    return Transition(replace(state, phase=sending), True)


def _dump(phase: Sum) -> dict[str, Any]:
    return {
        "ephm_public": phase.ephm_keys.public,
        "ephm_secret": phase.ephm_keys.secret,
        "sum_signature": phase.sum_signature,
    }


def _load(doc: dict[Any, Any], where: str) -> Sum:
    return Sum(ephm_keys(doc, where), exact(doc, "sum_signature", 64, where))


#: This phase's row of the phase table (:mod:`xaynet_sdk.protocol.phases`).
PHASE = PhaseSpec(Sum, "sum", step, entry_events=emits(Event.SUM), dump=_dump, load=_load)
