"""Sending: one POST per tick, whole message or chunk by chunk (docs/PROTOCOL.md 5.6, 12.2).

Each message (or chunk) is signed, sealed to the round's coordinator key and POSTed. A
failed POST keeps its *sealed* bytes and resends exactly those on the next tick (sealing is
randomized, so resealing would send different bytes). When nothing is left, the next tick
moves on: SendingSum → Sum2 (no event), SendingUpdate and SendingSum2 → Awaiting (``idle``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from ..codec.crypto import seal
from . import sum2
from .outbox import encoder, start_sending
from .saved_fields import InvalidState, field
from .state import (
    Awaiting,
    Event,
    ParticipantState,
    PhaseSpec,
    PostMessage,
    Response,
    Sending,
    SendingKind,
    Transition,
)

__all__ = ["PHASE", "encoder", "has_request", "request", "start_sending", "step"]


def has_request(state: ParticipantState) -> bool:
    """Whether :func:`request` has a POST, without signing and sealing it."""
    phase = state.phase
    assert isinstance(phase, Sending)
    return phase.failed is not None or phase.next_index < len(encoder(state.shared, phase))


def request(state: ParticipantState) -> Optional[PostMessage]:
    """The next POST: the failed one again, else the next message sealed; None when done."""
    phase = state.phase
    assert isinstance(phase, Sending)
    enc = encoder(state.shared, phase)
    count = len(enc)
    if phase.failed is not None:
        return PostMessage(phase.failed, retry=True, index=phase.next_index - 1, count=count)
    if phase.next_index >= count:
        return None
    plaintext = enc.message(phase.next_index)
    body = seal(plaintext, state.shared.round_params.pk)
    return PostMessage(body, retry=False, index=phase.next_index, count=count)


def step(state: ParticipantState, response: Optional[Response]) -> Transition:
    """Record a POST's outcome; with no response (nothing left to send) go to the next phase."""
    phase = state.phase
    assert isinstance(phase, Sending)
    if response is None:
        if phase.kind is SendingKind.SUM:
            assert phase.then is not None
            return Transition(replace(state, phase=phase.then), True)
        return Transition(replace(state, phase=Awaiting()), True, (Event.IDLE,))
    req = response.request
    assert isinstance(req, PostMessage)
    next_index = phase.next_index if req.retry else phase.next_index + 1
    if response.ok:
        return Transition(
            replace(state, phase=replace(phase, next_index=next_index, failed=None)), True
        )
    return Transition(
        replace(state, phase=replace(phase, next_index=next_index, failed=req.body)), False
    )


def _dump(phase: Sending) -> dict[str, Any]:
    then = None if phase.then is None else {"name": sum2.PHASE.name, **sum2.dump(phase.then)}
    return {
        "kind": phase.kind.value,
        "data": phase.data,
        "payload_size": phase.payload_size,
        "message_id": phase.message_id,
        "next_index": phase.next_index,
        "failed": phase.failed,
        "then": then,
    }


def _load(doc: dict[Any, Any], where: str) -> Sending:
    kind_name = field(doc, "kind", str, where)
    try:
        kind = SendingKind(kind_name)
    except ValueError:
        raise InvalidState(f"{where}: unknown message kind {kind_name!r}") from None
    then_doc = doc.get("then")
    then = None if then_doc is None else sum2.load(then_doc, f"{where} then")
    if (kind is SendingKind.SUM) != (then is not None):
        raise InvalidState(f"{where}: only a sum message continues with sum2")
    payload_size = field(doc, "payload_size", int, where)
    message_id = field(doc, "message_id", int, where, optional=True)
    next_index = field(doc, "next_index", int, where)
    if payload_size < 0 or next_index < 0 or (payload_size and message_id is None):
        raise InvalidState(f"{where}: inconsistent multipart fields")
    return Sending(
        kind=kind,
        data=field(doc, "data", bytes, where),
        payload_size=payload_size,
        message_id=message_id,
        next_index=next_index,
        failed=field(doc, "failed", bytes, where, optional=True),
        then=then,
    )


#: This phase's row of the phase table (:mod:`xaynet_sdk.protocol.phases`).
PHASE = PhaseSpec(
    Sending, "sending", step, request=request, has_request=has_request, dump=_dump, load=_load
)
