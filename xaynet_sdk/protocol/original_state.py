"""Restoring a state saved by the ORIGINAL participant (bincode ``SerializableState``, 12.7).

This lets a user migrate a live participant: ``stop()`` (or ``save()``) on the original,
then ``spawn_participant(..., state=that_list)`` here keeps the identity and the round
progress. Layout: a u32 variant index (0 NewRound, 1 Awaiting, 2 Sum, 3 Update, 4 Sum2,
5 SendingSum, 6 SendingUpdate, 7 SendingSum2), the phase's private state, then the shared
state ``keys.public ‖ keys.secret ‖ scalar ‖ Option<u64> message size ‖ RoundParameters``.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import Optional

import numpy as np

from ..codec.bincode import Reader, RoundParameters, read_bytes_map, read_mask_config
from ..codec.crypto import EncryptKeyPair, SigningKeyPair
from ..codec.errors import DecodeError
from ..codec.message import HEADER_LENGTH, Tag
from ..codec.multipart import MIN_MESSAGE_SIZE
from ..mask.config import DataType
from ..mask.objects import MaskObject, MaskUnit, MaskVect, ints_to_limbs
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

__all__ = ["load_original_state"]


def _key(r: Reader, length: int, what: str) -> bytes:
    return r.byte_string(what, length)


def _biguint(r: Reader, what: str) -> int:
    count = r.count(what, 4)
    raw = r.read_bytes(4 * count, what)
    return int.from_bytes(raw, "little")


def _bigint(r: Reader, what: str) -> int:
    sign = r.i8(f"{what} sign")
    if sign not in (-1, 0, 1):
        raise DecodeError(f"{what}: invalid BigInt sign {sign}")
    magnitude = _biguint(r, what)
    return -magnitude if sign < 0 else (0 if sign == 0 else magnitude)


def _mask_object(r: Reader, what: str) -> MaskObject:
    count = r.count(f"{what} vect", 8)
    values = [_biguint(r, f"{what} vect element") for _ in range(count)]
    vect_config = read_mask_config(r, f"{what} vect config")
    unit_value = _biguint(r, f"{what} unit")
    unit_config = read_mask_config(r, f"{what} unit config")
    for v in values:
        if v.bit_length() > 64 * vect_config.limbs:
            raise DecodeError(f"{what}: element too large for its configuration")
    if unit_value.bit_length() > 64 * unit_config.limbs:
        raise DecodeError(f"{what}: unit too large for its configuration")
    return MaskObject(
        MaskVect(vect_config, ints_to_limbs(values, vect_config.limbs)),
        MaskUnit.from_int(unit_config, unit_value),
    )


def _ratios(r: Reader, what: str) -> list[Fraction]:
    count = r.count(what, 18)  # a ratio is two BigInts of at least 9 bytes each
    values: list[Fraction] = []
    for _ in range(count):
        numer = _bigint(r, f"{what} numer")
        denom = _bigint(r, f"{what} denom")
        if denom == 0:
            raise DecodeError(f"{what}: zero denominator")
        values.append(Fraction(numer, denom))
    return values


def _to_model(ratios: list[Fraction], data_type: DataType) -> LocalModel:
    """Exact for models the original built with ``from_primitives``; anything else is refused.

    A value outside the data type cannot come from the original, so the state is corrupt:
    refuse it here rather than let it become inf (or wrap) and fail every later tick.
    """
    dtype = np.dtype(data_type.numpy_dtype)
    if data_type.is_float:
        top = Fraction(float(np.finfo(dtype).max))
        if any(abs(v) > top for v in ratios):
            raise DecodeError("model: a weight is out of the range of its data type")
        return np.asarray([float(v) for v in ratios], dtype=dtype)
    info = np.iinfo(dtype)
    values = [int(v) for v in ratios]
    if any(not info.min <= v <= info.max for v in values):
        raise DecodeError("model: a weight is out of the range of its data type")
    return np.asarray(values, dtype=dtype)


def _ephm_keys(r: Reader) -> EncryptKeyPair:
    public = _key(r, 32, "ephm public key")
    secret = _key(r, 32, "ephm secret key")
    return EncryptKeyPair(public, secret)


def _sum2(r: Reader) -> Sum2:
    keys = _ephm_keys(r)
    signature = _key(r, 64, "sum signature")
    seed_dict = read_bytes_map(r, 32, 80, "seed dict") if r.option("seed dict") else None
    seeds: Optional[tuple[bytes, ...]] = None
    if r.option("seeds"):
        n = r.count("seeds", 40)
        seeds = tuple(_key(r, 32, "mask seed") for _ in range(n))
    mask = _mask_object(r, "mask") if r.option("mask") else None
    return Sum2(keys, signature, seed_dict, seeds, mask)


def _sending(r: Reader, kind: SendingKind) -> Sending:
    variant = r.u32("message encoder")
    if variant == 0:
        message = r.byte_string("simple message") if r.option("simple message") else None
        failed = r.byte_string("failed message") if r.option("failed message") else None
        then = _sum2(r) if kind is SendingKind.SUM else None
        if message is None:
            return Sending(kind, b"", 0, None, 1, failed, then)
        if len(message) < HEADER_LENGTH or message[132] != kind.tag.value:
            raise DecodeError("the saved message is not a message of this phase")
        return Sending(kind, message[HEADER_LENGTH:], 0, None, 0, failed, then)
    if variant != 1:
        raise DecodeError(f"invalid message encoder variant {variant}")
    _key(r, 32, "encoder public key")
    _key(r, 64, "encoder secret key")
    _key(r, 32, "encoder coordinator pk")
    data = r.byte_string("multipart data")
    next_id = r.u16("multipart next chunk id")
    tag = Tag.from_index(r.u32("multipart tag"))
    payload_size = r.u64("multipart payload size")
    message_id = r.u16("multipart message id")
    failed = r.byte_string("failed message") if r.option("failed message") else None
    then = _sum2(r) if kind is SendingKind.SUM else None
    if tag is not kind.tag:
        raise DecodeError("the saved message is not a message of this phase")
    return Sending(kind, data, payload_size, message_id, next_id, failed, then)


def load_original_state(raw: bytes) -> ParticipantState:
    """Parse the original's saved state; :class:`DecodeError` (a ValueError) if malformed."""
    r = Reader(raw)
    variant = r.u32("phase")
    phase: Phase
    ratios: Optional[list[Fraction]] = None
    if variant == 0:
        phase = NewRound()
    elif variant == 1:
        phase = Awaiting()
    elif variant == 2:
        phase = Sum(_ephm_keys(r), _key(r, 64, "sum signature"))
    elif variant == 3:
        sum_sig = _key(r, 64, "sum signature")
        update_sig = _key(r, 64, "update signature")
        sum_dict = read_bytes_map(r, 32, 32, "sum dict") if r.option("sum dict") else None
        seed_dict = read_bytes_map(r, 32, 80, "local seed dict") if r.option("seed dict") else None
        ratios = _ratios(r, "model") if r.option("model") else None
        mask = None
        if r.option("mask"):
            seed = _key(r, 32, "mask seed")
            mask = (seed, _mask_object(r, "masked model"))
        phase = Update(sum_sig, update_sig, sum_dict, None, mask, seed_dict)
    elif variant == 4:
        phase = _sum2(r)
    elif variant in (5, 6, 7):
        kind = {5: SendingKind.SUM, 6: SendingKind.UPDATE, 7: SendingKind.SUM2}[variant]
        phase = _sending(r, kind)
    else:
        raise DecodeError(f"invalid phase variant {variant} (valid: 0..7)")
    shared = _shared(r)
    if ratios is not None:
        assert isinstance(phase, Update)
        data_type = shared.round_params.mask_config.vect.data_type
        phase = replace(phase, model=_to_model(ratios, data_type))
    return ParticipantState(shared, phase)


def _shared(r: Reader) -> SharedState:
    public = _key(r, 32, "public signing key")
    secret = _key(r, 64, "secret signing key")
    keys = SigningKeyPair.from_seed(secret[:32])
    if keys.public != public or keys.secret != secret:
        raise DecodeError("the signing key pair is corrupted")
    scalar = r.f64("scalar")
    size: Optional[int] = None
    if r.option("max message size"):
        size = r.u64("max message size")
        if size < MIN_MESSAGE_SIZE:
            raise DecodeError(f"max_message_size must be at least {MIN_MESSAGE_SIZE} (got {size})")
    params = RoundParameters.read(r)
    return SharedState(keys, scalar, size, params)
