"""The message pipeline: from a POSTed body to an accepted (or rejected) PET message.

The order is the original's (docs/PROTOCOL.md section 13.3), each step cheaper than the next so
that garbage is dropped early:

1. replay filter (an extension: the same bytes as an already accepted message),
2. decryption with the round's key,
3. header checks and the phase filter by tag,
4. the Ed25519 message signature,
5. the coordinator key named in the header,
6. the payload,
7. multipart reassembly (chunks went through 2-6 one by one),
8. task validation against the round seed and probabilities,
9. the state machine (:class:`~.state.CoordinatorState`), which is the only step that takes
   the round lock; range checks of masked models and masks run before it, outside the lock.
   With ``[redis]`` the accepted message is recorded there first (write-ahead, :mod:`.store`);
   its record is built here, outside the lock.

Any failure ends in :class:`~.outcomes.Rejected` and is counted; the HTTP reply is 200 either
way, as in the original.
"""

from __future__ import annotations

import enum
import logging

from ..codec.crypto import open_sealed, verify_sum_signature, verify_update_signature
from ..codec.eligibility import is_eligible
from ..codec.errors import (
    DecodeError,
    DecryptError,
    InvalidSignatureError,
    WrongCoordinatorKeyError,
)
from ..codec.message import (
    ChunkPayload,
    Payload,
    Sum2Payload,
    SumPayload,
    Tag,
    UpdatePayload,
    decode_header,
    decode_message,
)
from ..mask.masking import AggregationError
from ..mask.objects import MaskObject
from .outcomes import MESSAGE_PHASES, Phase, Reason, Rejected
from .state import CoordinatorState, Round, Ticket
from .stats import Stats

__all__ = ["Outcome", "Pipeline"]

_log = logging.getLogger("xaynet_sdk.coordinator.pipeline")


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    BUFFERED = "buffered"  # a chunk of a multipart message, kept for reassembly
    REJECTED = "rejected"


class Pipeline:
    """Processes POST bodies; thread-safe (all shared state lives in the state and stats)."""

    def __init__(self, state: CoordinatorState, stats: Stats) -> None:
        self.state = state
        self.stats = stats

    def handle(self, body: bytes) -> Outcome:
        """Run ``body`` through the pipeline; never raises (failures are counted and logged)."""
        ticket = self.state.enter(sealed_box_id(body))
        try:
            phase = self._process(ticket, body)
        except Rejected as e:
            self._reject(ticket, e.reason, e.detail, e.tag)
            return Outcome.REJECTED
        except Exception:  # noqa: BLE001 - a bug must not take the server down
            _log.exception("internal error while processing a message")
            self._reject(ticket, Reason.INTERNAL, "see the traceback above")
            return Outcome.REJECTED
        finally:
            self.state.leave(ticket)
        if phase is None:
            self.stats.chunk_buffered()
            return Outcome.BUFFERED
        self.stats.accepted(phase)
        return Outcome.ACCEPTED

    def reject_too_large(self, size: int, limit: int) -> None:
        """Count a body refused at the HTTP level (413) before it was read."""
        phase = self.state.round.phase if self.state.started else Phase.IDLE
        self.stats.rejected(phase, Reason.TOO_LARGE, f"{size} bytes, limit {limit}")

    def _reject(
        self, ticket: Ticket, reason: Reason, detail: str, tag: "Tag | None" = None
    ) -> None:
        self.state.note_rejection(ticket, reason)
        self.stats.rejected(ticket.phase, reason, detail, tag)

    # -- the steps ----------------------------------------------------------------------------
    def _process(self, ticket: Ticket, body: bytes) -> "Phase | None":
        """Accept the message; return its phase, or None for a buffered chunk."""
        if ticket.replay:
            raise Rejected(Reason.REPLAY, "the same bytes were already accepted this round")
        current = ticket.round
        try:
            plaintext = open_sealed(body, current.keys.public, current.keys.secret)
        except DecryptError as e:
            raise Rejected(Reason.DECRYPT, str(e)) from None
        try:
            header = decode_header(plaintext)
        except DecodeError as e:
            raise Rejected(Reason.MALFORMED, str(e)) from None
        try:
            return self._process_message(ticket, plaintext, header.tag)
        except Rejected as e:
            e.tag = header.tag
            raise

    def _process_message(self, ticket: Ticket, plaintext: bytes, tag: Tag) -> "Phase | None":
        """Steps 3 to 9, for a plaintext whose header was read (its tag is ``tag``)."""
        current = ticket.round
        if not ticket.accepting or MESSAGE_PHASES[tag] is not ticket.phase:
            raise Rejected(
                Reason.WRONG_PHASE,
                f"a {tag.name} message while the {ticket.phase.value} phase"
                f" {'runs' if ticket.accepting else 'takes no messages'}",
            )
        try:
            message = decode_message(plaintext, expected_coordinator_pk=current.keys.public)
        except InvalidSignatureError as e:
            raise Rejected(Reason.BAD_SIGNATURE, str(e)) from None
        except WrongCoordinatorKeyError as e:
            raise Rejected(Reason.WRONG_COORDINATOR_PK, str(e)) from None
        except DecodeError as e:
            raise Rejected(Reason.MALFORMED, str(e)) from None

        payload: Payload = message.payload
        if message.is_multipart:
            try:
                rebuilt = self.state.add_chunk(ticket, message)
            except DecodeError as e:  # ReassemblyError
                raise Rejected(Reason.MULTIPART, str(e)) from None
            if rebuilt is None:
                return None
            try:
                payload = rebuilt.decode_payload()
            except DecodeError as e:
                raise Rejected(Reason.MALFORMED, f"reassembled message: {e}") from None

        if isinstance(payload, ChunkPayload):  # a chunk inside a reassembled message
            raise Rejected(Reason.MALFORMED, "unexpected chunk payload")
        pk = message.participant_pk
        _validate_task(current, pk, payload)
        if isinstance(payload, SumPayload):
            record = self.state.write_ahead_record(ticket, pk, payload)
            self.state.accept_sum(ticket, pk, payload, record)
        elif isinstance(payload, UpdatePayload):
            try:
                current.aggregation.validate(payload.masked_model)
            except AggregationError as e:
                raise Rejected(Reason.INVALID_MODEL, str(e)) from None
            record = self.state.write_ahead_record(ticket, pk, payload)
            self.state.accept_update(ticket, pk, payload, record)
        elif isinstance(payload, Sum2Payload):
            mask = payload.model_mask
            _validate_mask(current, mask)
            record = self.state.write_ahead_record(ticket, pk, payload)
            self.state.accept_sum2(ticket, pk, payload, record)
        return ticket.phase


def sealed_box_id(body: bytes) -> bytes:
    """What identifies a sealed box for the replay filter: its first 48 bytes, the
    ephemeral public key and the Poly1305 tag of the ciphertext.

    The very same body has the same id. Another body with the same id has another ciphertext
    under the same key and tag, so it does not decrypt (short of a Poly1305 forgery) and is
    rejected anyway; and only accepted bodies are remembered. Hashing the whole body instead
    costs time in proportion to the model, on every message."""
    return bytes(body[:48])


def _validate_task(
    current: Round, pk: bytes, payload: "SumPayload | UpdatePayload | Sum2Payload"
) -> None:
    """The original's task validation against the current seed and probabilities.

    A sum participant is whoever has a valid, eligible sum signature; an update participant
    must *not* be one and must have a valid, eligible update signature (so an Update with an
    invalid sum signature is fine, as in the original).
    """
    params = current.params
    sum_signature = payload.sum_signature
    is_summer = verify_sum_signature(pk, sum_signature, params.seed) and is_eligible(
        sum_signature, params.sum
    )
    if isinstance(payload, UpdatePayload):
        update_signature = payload.update_signature
        is_updater = (
            not is_summer
            and verify_update_signature(pk, update_signature, params.seed)
            and is_eligible(update_signature, params.update)
        )
        if not is_updater:
            raise Rejected(Reason.NOT_ELIGIBLE, "the sender is not an update participant")
    elif not is_summer:
        raise Rejected(Reason.NOT_ELIGIBLE, "the sender is not a sum participant")


def _validate_mask(current: Round, mask: MaskObject) -> None:
    """A Sum2 mask must be able to unmask this round (an extension: the original counts
    any mask and only finds out at the end, when a malformed one can at best cause a tie)."""
    configs = current.aggregation.configs
    if mask.vect.config != configs.vect or mask.unit.config != configs.unit:
        raise Rejected(Reason.INVALID_MASK, "the mask has another configuration than the round")
    if len(mask.vect) != current.aggregation.model_length:
        raise Rejected(
            Reason.INVALID_MASK,
            f"mask length {len(mask.vect)} != model length {current.aggregation.model_length}",
        )
    if not mask.is_valid():
        raise Rejected(Reason.INVALID_MASK, "a number is not below the group order")
