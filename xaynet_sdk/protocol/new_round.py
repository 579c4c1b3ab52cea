"""NewRound: decide the round's task from the round seed signatures (docs/PROTOCOL.md 1.2, 4.4-4.5).

Sum has priority: a sum-eligible participant never checks the update signature. The
events are those of the original's phase entries: ``sum``; ``update`` then ``load_model``
(a fresh Update phase has no model loaded); ``idle``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from ..codec.crypto import EncryptKeyPair, sum_signature, update_signature
from ..codec.eligibility import is_eligible
from .state import (
    Awaiting,
    Event,
    NewRound,
    ParticipantState,
    PhaseSpec,
    Response,
    Sum,
    Transition,
    Update,
    emits,
)

__all__ = ["PHASE", "step"]


def step(state: ParticipantState, response: Optional[Response] = None) -> Transition:
    """One NewRound step: always progress, into Sum, Update or Awaiting."""
    assert isinstance(state.phase, NewRound)
    shared = state.shared
    params = shared.round_params
    sum_sig = sum_signature(shared.keys.secret, params.seed)
    if is_eligible(sum_sig, params.sum):
        sum_phase = Sum(ephm_keys=EncryptKeyPair.generate(), sum_signature=sum_sig)
        return Transition(replace(state, phase=sum_phase), True, (Event.SUM,))
    update_sig = update_signature(shared.keys.secret, params.seed)
    if is_eligible(update_sig, params.update):
        update_phase = Update(sum_signature=sum_sig, update_signature=update_sig)
        return Transition(
            replace(state, phase=update_phase), True, (Event.UPDATE, Event.LOAD_MODEL)
        )
    return Transition(replace(state, phase=Awaiting()), True, (Event.IDLE,))


#: This phase's row of the phase table (:mod:`xaynet_sdk.protocol.phases`).
PHASE = PhaseSpec(NewRound, "new_round", step, entry_events=emits(Event.NEW_ROUND))
