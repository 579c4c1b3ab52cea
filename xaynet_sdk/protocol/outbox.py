"""A serialized payload into the Sending phase that sends it: the step that ends Sum, Update
and Sum2 (docs/PROTOCOL.md 5.6).

Apart from :mod:`.sending` so that the phases that start sending do not import the Sending
phase, which imports :mod:`.sum2` (a SendingSum continues with Sum2).
"""

from __future__ import annotations

from typing import Optional

from ..codec.multipart import MessageEncoder
from .state import Sending, SendingKind, SharedState, Sum2

__all__ = ["encoder", "start_sending"]


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
