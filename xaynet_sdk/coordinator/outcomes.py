"""The vocabulary shared by the coordinator's modules: phases, rejection reasons.

Kept apart so that the pipeline, the round state and the counters agree on the names that
appear in ``LocalCoordinator.stats`` and in the log without importing each other.
"""

from __future__ import annotations

import enum

from ..codec.message import Tag
from ..exceptions import XaynetError

__all__ = ["MESSAGE_PHASES", "Phase", "Reason", "Rejected"]


class Phase(str, enum.Enum):
    """The coordinator's phases (docs/PROTOCOL.md 1.1). Values are the names in ``stats``."""

    IDLE = "Idle"
    SUM = "Sum"
    UPDATE = "Update"
    SUM2 = "Sum2"
    UNMASK = "Unmask"
    STOPPED = "Stopped"


#: The phase in which a message of each tag is accepted (the original's phase filter).
MESSAGE_PHASES = {Tag.Sum: Phase.SUM, Tag.Update: Phase.UPDATE, Tag.Sum2: Phase.SUM2}


class Reason(str, enum.Enum):
    """Why a POSTed message was not accepted. Values are the keys in ``stats["rejected"]``.

    The HTTP reply is 200 whatever the reason (except ``too_large``, an extension), as in
    the original: the participant never learns the outcome.
    """

    #: The body exceeds the size limit (HTTP 413; the original has no limit).
    TOO_LARGE = "too_large"
    #: The sealed box does not open with this round's key (garbage, or another round's key).
    DECRYPT = "decrypt"
    #: Header length checks, an unknown tag, or a payload that does not parse.
    MALFORMED = "malformed"
    #: A message for another phase than the current one (too early, too late).
    WRONG_PHASE = "wrong_phase"
    #: The Ed25519 signature over the message does not verify.
    BAD_SIGNATURE = "bad_signature"
    #: The header names another coordinator key (a message built for another round).
    WRONG_COORDINATOR_PK = "wrong_coordinator_pk"
    #: A multipart chunk refused by the bounded reassembler.
    MULTIPART = "multipart"
    #: The task signatures do not make the sender a sum (update) participant this round.
    NOT_ELIGIBLE = "not_eligible"
    #: Exactly the same bytes as a message already accepted this round.
    REPLAY = "replay"
    #: The sender already has an accepted message of this kind this round.
    DUPLICATE = "duplicate"
    #: Sum2 from a non-member of the sum dict, or a seed for an unknown sum participant.
    UNKNOWN_SUM_PARTICIPANT = "unknown_sum_participant"
    #: The local seed dict does not have one entry per sum participant.
    SEED_DICT_MISMATCH = "seed_dict_mismatch"
    #: The masked model cannot be aggregated (configuration, length, range, too many models).
    INVALID_MODEL = "invalid_model"
    #: The Sum2 mask has the wrong configuration or length, or a number out of range.
    INVALID_MASK = "invalid_mask"
    #: The phase already accepted its maximum count (the original "discards" these).
    DISCARDED = "discarded"
    #: A bug on our side; logged with its traceback.
    INTERNAL = "internal_error"
    #: The message could not be recorded in Redis (``[redis]``), so it was not accepted.
    STORAGE = "storage_unavailable"


class Rejected(XaynetError):
    """A message is refused: raised anywhere in the pipeline, counted once at the top.

    ``tag`` is the message's kind once its header was read (None before: undecryptable or
    malformed bodies), so that e.g. late Update messages can be told from late Sum2 ones.
    """

    def __init__(self, reason: Reason, detail: str = "", tag: "Tag | None" = None) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.tag = tag
