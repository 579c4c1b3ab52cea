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

**The document holds the private signing key in clear.** Whoever has it can act as this
participant: store it like a password.

:func:`load_state` also accepts a state saved by the ORIGINAL participant (bincode,
docs/PROTOCOL.md 12.7), so a live participant can be migrated; see :mod:`.original_state`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import msgpack
import numpy as np

from ..codec.bincode import RoundParameters
from ..codec.crypto import EncryptKeyPair, SigningKeyPair
from ..codec.errors import CodecError
from ..exceptions import ParticipantRestore
from ..mask.objects import MaskObject, MaskObjectError
from .state import (
    Awaiting,
    LocalModel,
    NewRound,
    ParticipantState,
    Phase,
    Sending,
    SendingKind,
    SharedState,
    Sum,
    Sum2,
    Update,
)

__all__ = ["FORMAT", "VERSION", "StateInput", "dump_state", "load_state", "state_bytes"]

FORMAT = "xaynet-sdk/participant-state"
VERSION = 1

StateInput = Union[bytes, bytearray, memoryview, list[int], tuple[int, ...]]

_DTYPES = ("float32", "float64", "int32", "int64")


# ---------------------------------------------------------------------------------------------
# Dumping
# ---------------------------------------------------------------------------------------------


def _pairs(mapping: Any) -> Optional[list[list[bytes]]]:
    return None if mapping is None else [[k, v] for k, v in mapping.items()]


def _model(model: Optional[LocalModel]) -> Optional[dict[str, Any]]:
    if model is None:
        return None
    dtype = np.dtype(model.dtype).newbyteorder("<")
    return {"dtype": model.dtype.name, "data": np.ascontiguousarray(model, dtype=dtype).tobytes()}


def _sum2(phase: Sum2) -> dict[str, Any]:
    return {
        "name": "sum2",
        "ephm_public": phase.ephm_keys.public,
        "ephm_secret": phase.ephm_keys.secret,
        "sum_signature": phase.sum_signature,
        "seed_dict": _pairs(phase.seed_dict),
        "seeds": None if phase.seeds is None else list(phase.seeds),
        "mask": None if phase.mask is None else phase.mask.to_bytes(),
    }


def _phase(phase: Phase) -> dict[str, Any]:
    if isinstance(phase, NewRound):
        return {"name": "new_round"}
    if isinstance(phase, Awaiting):
        return {"name": "awaiting"}
    if isinstance(phase, Sum):
        return {
            "name": "sum",
            "ephm_public": phase.ephm_keys.public,
            "ephm_secret": phase.ephm_keys.secret,
            "sum_signature": phase.sum_signature,
        }
    if isinstance(phase, Update):
        return {
            "name": "update",
            "sum_signature": phase.sum_signature,
            "update_signature": phase.update_signature,
            "sum_dict": _pairs(phase.sum_dict),
            "model": _model(phase.model),
            "mask_seed": None if phase.mask is None else phase.mask[0],
            "masked_model": None if phase.mask is None else phase.mask[1].to_bytes(),
            "seed_dict": _pairs(phase.seed_dict),
        }
    if isinstance(phase, Sum2):
        return _sum2(phase)
    return {
        "name": "sending",
        "kind": phase.kind.value,
        "data": phase.data,
        "payload_size": phase.payload_size,
        "message_id": phase.message_id,
        "next_index": phase.next_index,
        "failed": phase.failed,
        "then": None if phase.then is None else _sum2(phase.then),
    }


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
        "local_model": _model(state.local_model),
    }
    return bytes(msgpack.packb(doc, use_bin_type=True))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class _Invalid(Exception):
    pass


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


def _field(doc: dict[Any, Any], key: str, kind: Any, where: str, optional: bool = False) -> Any:
    if key not in doc:
        raise _Invalid(f"{where}: field {key!r} is missing")
    value = doc[key]
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Invalid(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _exact(doc: dict[Any, Any], key: str, length: int, where: str, optional: bool = False) -> Any:
    value = _field(doc, key, bytes, where, optional)
    if value is not None and len(value) != length:
        raise _Invalid(f"{where}: field {key!r} must be {length} bytes, has {len(value)}")
    return value


def _pair_dict(
    doc: dict[Any, Any], key: str, value_length: int, where: str
) -> Optional[dict[bytes, bytes]]:
    pairs = _field(doc, key, list, where, optional=True)
    if pairs is None:
        return None
    result: dict[bytes, bytes] = {}
    for pair in pairs:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(x, bytes) for x in pair)
            or len(pair[0]) != 32
            or len(pair[1]) != value_length
        ):
            raise _Invalid(f"{where}: field {key!r} holds a malformed entry")
        result[pair[0]] = pair[1]
    return result


def _load_model(value: Any, where: str) -> Optional[LocalModel]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid(f"{where}: malformed local model")
    dtype = _field(value, "dtype", str, where)
    data = _field(value, "data", bytes, where)
    if dtype not in _DTYPES:
        raise _Invalid(f"{where}: unknown model dtype {dtype!r}")
    wire = np.dtype(dtype).newbyteorder("<")
    if len(data) % wire.itemsize:
        raise _Invalid(f"{where}: model data is not a whole number of {dtype} values")
    model = np.frombuffer(data, dtype=wire).astype(np.dtype(dtype))
    if model.dtype.kind == "f" and not bool(np.isfinite(model).all()):
        raise _Invalid(f"{where}: the model has NaN or infinite weights")
    return model


def _load_mask(data: Optional[bytes], where: str) -> Optional[MaskObject]:
    if data is None:
        return None
    try:
        mask, end = MaskObject.from_bytes(data)
    except MaskObjectError as e:
        raise _Invalid(f"{where}: malformed mask object ({e})") from None
    if end != len(data):
        raise _Invalid(f"{where}: trailing bytes after the mask object")
    return mask


def _ephm_keys(doc: dict[Any, Any], where: str) -> EncryptKeyPair:
    public = _exact(doc, "ephm_public", 32, where)
    secret = _exact(doc, "ephm_secret", 32, where)
    return EncryptKeyPair(public, secret)


def _load_sum2(doc: Any, where: str) -> Sum2:
    if not isinstance(doc, dict):
        raise _Invalid(f"{where}: not a map")
    seeds = _field(doc, "seeds", list, where, optional=True)
    if seeds is not None and not all(isinstance(s, bytes) and len(s) == 32 for s in seeds):
        raise _Invalid(f"{where}: malformed mask seeds")
    return Sum2(
        ephm_keys=_ephm_keys(doc, where),
        sum_signature=_exact(doc, "sum_signature", 64, where),
        seed_dict=_pair_dict(doc, "seed_dict", 80, where),
        seeds=None if seeds is None else tuple(seeds),
        mask=_load_mask(_field(doc, "mask", bytes, where, optional=True), where),
    )


def _load_phase(doc: Any) -> Phase:
    if not isinstance(doc, dict):
        raise _Invalid("phase: not a map")
    name = _field(doc, "name", str, "phase")
    where = f"phase {name!r}"
    if name == "new_round":
        return NewRound()
    if name == "awaiting":
        return Awaiting()
    if name == "sum":
        return Sum(_ephm_keys(doc, where), _exact(doc, "sum_signature", 64, where))
    if name == "update":
        seed = _exact(doc, "mask_seed", 32, where, optional=True)
        masked = _load_mask(_field(doc, "masked_model", bytes, where, optional=True), where)
        if (seed is None) != (masked is None):
            raise _Invalid(f"{where}: mask seed and masked model must be saved together")
        return Update(
            sum_signature=_exact(doc, "sum_signature", 64, where),
            update_signature=_exact(doc, "update_signature", 64, where),
            sum_dict=_pair_dict(doc, "sum_dict", 32, where),
            model=_load_model(doc.get("model"), where),
            mask=None if seed is None or masked is None else (seed, masked),
            seed_dict=_pair_dict(doc, "seed_dict", 80, where),
        )
    if name == "sum2":
        return _load_sum2(doc, where)
    if name == "sending":
        kind_name = _field(doc, "kind", str, where)
        try:
            kind = SendingKind(kind_name)
        except ValueError:
            raise _Invalid(f"{where}: unknown message kind {kind_name!r}") from None
        then_doc = doc.get("then")
        then = None if then_doc is None else _load_sum2(then_doc, f"{where} then")
        if (kind is SendingKind.SUM) != (then is not None):
            raise _Invalid(f"{where}: only a sum message continues with sum2")
        payload_size = _field(doc, "payload_size", int, where)
        message_id = _field(doc, "message_id", int, where, optional=True)
        next_index = _field(doc, "next_index", int, where)
        if payload_size < 0 or next_index < 0 or (payload_size and message_id is None):
            raise _Invalid(f"{where}: inconsistent multipart fields")
        return Sending(
            kind=kind,
            data=_field(doc, "data", bytes, where),
            payload_size=payload_size,
            message_id=message_id,
            next_index=next_index,
            failed=_field(doc, "failed", bytes, where, optional=True),
            then=then,
        )
    raise _Invalid(f"unknown phase {name!r}")


def _load_document(raw: bytes) -> ParticipantState:
    try:
        doc = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except msgpack.ExtraData as e:
        if isinstance(e.unpacked, dict) and e.unpacked.get("format") == FORMAT:
            raise _Invalid("trailing bytes after the state document (corrupted?)") from None
        raise _Invalid("the state is not a participant state (not a state document)") from None
    except (ValueError, TypeError, msgpack.UnpackException) as e:  # TypeError: unhashable map key
        text = str(e)
        if "incomplete" in text.lower() or "exceeds max_" in text:
            raise _Invalid("the state is truncated") from None
        raise _Invalid(f"the state is not a participant state ({text})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _Invalid("the state is not a participant state (no format marker)")
    version = doc.get("version")
    if version != VERSION:
        raise _Invalid(
            f"unknown state format version {version!r}: this xaynet_sdk reads version"
            f" {VERSION}; was the state saved by a newer release?"
        )
    secret = _exact(doc, "secret_key", 64, "state")
    keys = SigningKeyPair.from_seed(secret[:32])
    if keys.secret != secret:
        raise _Invalid("state: the signing key is corrupted (its halves do not match)")
    max_message_size = _field(doc, "max_message_size", int, "state", optional=True)
    try:
        params = RoundParameters.from_bytes(_exact(doc, "round_params", 136, "state"))
    except CodecError as e:
        raise _Invalid(f"state: malformed round parameters ({e})") from None
    shared = SharedState(
        keys=keys,
        scalar=_field(doc, "scalar", float, "state"),
        max_message_size=max_message_size,
        round_params=params,
    )
    phase = _load_phase(doc.get("phase"))
    local_model = _load_model(doc.get("local_model"), "local model")
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
    except (_Invalid, ValueError, OverflowError) as e:  # Overflow: a weight beyond its type
        raise ParticipantRestore(f"failed to restore participant: {e}") from None
    return result
