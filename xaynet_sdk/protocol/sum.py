"""Sum: compose the Sum message ``(sum_signature, ephm_pk)`` and go sending it.

After the message is sent the participant continues in Sum2 with the same ephemeral keys.
"""

from __future__ import annotations

from dataclasses import replace

from ..codec.message import SumPayload
from .sending import start_sending
from .state import ParticipantState, SendingKind, Sum, Sum2, Transition

__all__ = ["step"]


def step(state: ParticipantState) -> Transition:
    """Always progress: Sum → SendingSum (no event, as in the original)."""
    phase = state.phase
    assert isinstance(phase, Sum)
    payload = SumPayload(phase.sum_signature, phase.ephm_keys.public)
    then = Sum2(ephm_keys=phase.ephm_keys, sum_signature=phase.sum_signature)
    sending = start_sending(state.shared, SendingKind.SUM, payload.to_bytes(), then)
    return Transition(replace(state, phase=sending), True)
