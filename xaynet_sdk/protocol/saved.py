"""The saved participant state: a versioned msgpack document (``stop()`` / ``state=``).

Layout (format version 1), a msgpack map::

    format            "xaynet-sdk/participant-state"   (the magic that identifies the document)
    version           1
    secret_key        64 bytes: the Ed25519 signing key (seed ‖ public key) = the identity
    scalar            float
    max_message_size  int or nil (nil: messages are never split)
    round_params      136 bytes: bincode RoundParameters of the round in progress
    phase             map: "name" plus the phase's fields (see below)
    local_model       nil, or {"dtype": "float32" | "float64" | "int32" | "int64",
                               "data": little-endian bytes}: the cached local model

Phases: ``new_round``, ``awaiting``; ``sum`` {ephm_public, ephm_secret, sum_signature};
``update`` {sum_signature, update_signature, sum_dict, model, mask_seed, masked_model,
seed_dict}; ``sum2`` {ephm_public, ephm_secret, sum_signature, seed_dict, seeds, mask};
``sending`` {kind, data, payload_size, message_id, next_index, failed, then (a sum2 map or
nil)}. Dictionaries are lists of ``[key, value]`` byte pairs, mask objects their wire bytes.
Each phase's fields are written and read by its own module (``dump`` and ``load`` of its
``PHASE``), found by name in the phase table (:mod:`.phases`).

**The document holds the private signing key in clear.** Whoever has it can act as this
participant: store it like a password.

:func:`load_state` also accepts a state saved by the ORIGINAL participant (bincode,
docs/PROTOCOL.md 12.7), so a live participant can be migrated; see :mod:`.original_state`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import msgpack

from ..codec.bincode import RoundParameters
from ..codec.crypto import SigningKeyPair
from ..codec.errors import CodecError
from ..exceptions import ParticipantRestore
from .phases import by_name, spec_of
from .saved_fields import InvalidState, dump_model, exact, field, load_model
from .state import ParticipantState, Phase, SharedState

__all__ = ["FORMAT", "VERSION", "StateInput", "dump_state", "load_state", "state_bytes"]

FORMAT = "xaynet-sdk/participant-state"
VERSION = 1

StateInput = Union[bytes, bytearray, memoryview, list[int], tuple[int, ...]]


# ---------------------------------------------------------------------------------------------
# Dumping
# ---------------------------------------------------------------------------------------------


def _phase(phase: Phase) -> dict[str, Any]:
    spec = spec_of(phase)
    return {"name": spec.name, **spec.dump(phase)}


def dump_state(state: ParticipantState) -> bytes:
    """The msgpack document of ``state``."""
    shared = state.shared
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "secret_key": shared.keys.secret,
        "scalar": float(shared.scalar),
        "max_message_size": shared.max_message_size,
        "round_params": shared.round_params.to_bytes(),
        "phase": _phase(state.phase),
        "local_model": dump_model(state.local_model),
    }
    return bytes(msgpack.packb(doc, use_bin_type=True))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def state_bytes(state: object) -> bytes:
    """The raw bytes of a state given as bytes or as the list of ints ``stop()`` returns."""
    if isinstance(state, str):
        raise TypeError(
            "state must be the list of ints returned by stop() (or bytes), not str; if you"
            " stored it as text, parse it back into a list first"
        )
    if isinstance(state, (bytes, bytearray, memoryview)):
        return bytes(state)
    if isinstance(state, (list, tuple)):
        try:
            return bytes(state)
        except (TypeError, ValueError):
            raise ParticipantRestore(
                "failed to restore participant: the state is not a list of byte values"
                " (ints 0..255) as returned by stop()"
            ) from None
    raise TypeError(
        f"state must be the list of ints returned by stop() (or bytes), not {type(state).__name__}"
    )


def _load_phase(doc: Any) -> Phase:
    if not isinstance(doc, dict):
        raise InvalidState("phase: not a map")
    name = field(doc, "name", str, "phase")
    spec = by_name(name)
    if spec is None:
        raise InvalidState(f"unknown phase {name!r}")
    return spec.kind() if spec.load is None else spec.load(doc, f"phase {name!r}")


def _load_document(raw: bytes) -> ParticipantState:
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except msgpack.ExtraData as e:
        if isinstance(e.unpacked, dict) and e.unpacked.get("format") == FORMAT:
            raise InvalidState("trailing bytes after the state document (corrupted?)") from None
        raise InvalidState("the state is not a participant state (not a state document)") from None
    except (ValueError, TypeError, msgpack.UnpackException) as e:  # TypeError: unhashable map key
        text = str(e)
        if "incomplete" in text.lower() or "exceeds max_" in text:
            raise InvalidState("the state is truncated") from None
        raise InvalidState(f"the state is not a participant state ({text})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InvalidState("the state is not a participant state (no format marker)")
    version = doc.get("version")
    if version != VERSION:
        raise InvalidState(
            f"unknown state format version {version!r}: this xaynet_sdk reads version"
            f" {VERSION}; was the state saved by a newer release?"
        )
    secret = exact(doc, "secret_key", 64, "state")
    keys = SigningKeyPair.from_seed(secret[:32])
    if keys.secret != secret:
        raise InvalidState("state: the signing key is corrupted (its halves do not match)")
    max_message_size = field(doc, "max_message_size", int, "state", optional=True)
    try:
        params = RoundParameters.from_bytes(exact(doc, "round_params", 136, "state"))
    except CodecError as e:
        raise InvalidState(f"state: malformed round parameters ({e})") from None
    shared = SharedState(
        keys=keys,
        scalar=field(doc, "scalar", float, "state"),
        max_message_size=max_message_size,
        round_params=params,
    )
    phase = _load_phase(doc.get("phase"))
    local_model = load_model(doc.get("local_model"), "local model")
    return ParticipantState(shared, phase, local_model)


def load_state(
    state: object,
    check: Optional[Callable[[ParticipantState], None]] = None,
) -> ParticipantState:
    """Parse a saved state; :class:`ParticipantRestore` says why if it cannot be used.

    Accepts our msgpack document (any list of ints, bytes or bytearray) and the bincode
    state of the original participant. ``check`` may refuse the result with ValueError.
    """
    raw = state_bytes(state)
    if not raw:
        raise ParticipantRestore("failed to restore participant: the state is empty")
    try:
        if len(raw) >= 4 and raw[0] < 0x80 and raw[1:4] == b"\0\0\0":
            # A u32 LE variant index: the original's bincode state (a msgpack document
            # starts with a map marker, 0x80 or above).
            from .original_state import load_original_state

            result = load_original_state(raw)
        else:
            result = _load_document(raw)
        if check is not None:
            check(result)
    except (InvalidState, ValueError, OverflowError) as e:  # Overflow: a weight beyond its type
        raise ParticipantRestore(f"failed to restore participant: {e}") from None
    return result
