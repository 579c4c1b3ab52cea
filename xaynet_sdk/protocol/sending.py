"""Sending: one POST per tick, whole message or chunk by chunk (docs/PROTOCOL.md 5.6, 12.2).

Each message (or chunk) is signed, sealed to the round's coordinator key and POSTed. A
failed POST keeps its *sealed* bytes and resends exactly those on the next tick (sealing is
randomized, so resealing would send different bytes). When nothing is left, the next tick
moves on: SendingSum → Sum2 (no event), SendingUpdate and SendingSum2 → Awaiting (``idle``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from ..codec.crypto import seal
from ..codec.multipart import MessageEncoder
from .state import (
    Awaiting,
    Event,
    ParticipantState,
    PostMessage,
    Response,
    Sending,
    SendingKind,
    SharedState,
    Sum2,
    Transition,
)

__all__ = ["encoder", "has_request", "request", "start_sending", "step"]


def start_sending(
    shared: SharedState, kind: SendingKind, data: bytes, then: Optional[Sum2] = None
) -> Sending:
    """The Sending phase for a serialized payload, split as ``shared.max_message_size`` says."""
    enc = MessageEncoder(
        shared.keys, shared.round_params.pk, data, kind.tag, shared.max_message_size
    )
    return Sending(
        kind=kind,
        data=data,
        payload_size=enc.max_payload_size if enc.is_multipart else 0,
        message_id=enc.message_id,
        then=then,
    )


def encoder(shared: SharedState, phase: Sending) -> MessageEncoder:
    """The message encoder of a Sending phase (rebuilt on demand: it is pure data)."""
    if phase.payload_size == 0 or phase.message_id is None:
        return MessageEncoder(shared.keys, shared.round_params.pk, phase.data, phase.kind.tag)
    return MessageEncoder.from_multipart_state(
        shared.keys,
        shared.round_params.pk,
        phase.data,
        phase.kind.tag,
        phase.payload_size,
        phase.message_id,
    )


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
