"""The subset of bincode 1.3.1 that Xaynet v0.11 puts on the wire (docs/PROTOCOL.md section 3).

bincode as used by the original (``bincode::serialize``/``deserialize``) means:
little-endian fixed-width integers, ``usize`` as u64, ``f64`` as its IEEE bit pattern,
sequences and maps as a u64 element count followed by the elements, enums as a u32 variant
index, sodiumoxide keys and signatures as *byte strings* (u64 length + raw bytes, the
length must be exactly right), and trailing bytes allowed after the top-level value.

Decoding goes through :class:`Reader`, a bounds-checked cursor: every read states the
field it is reading, so a truncated body produces a :class:`DecodeError` saying which field
and how many bytes were missing, never an ``IndexError`` or ``struct.error``. Element
counts are checked against the bytes that remain *before* anything is allocated, so a
hostile count such as 2**63 fails immediately instead of exhausting memory.

Encoding is plain functions (``pack_*``) returning ``bytes``; they raise
:class:`EncodeError` for values the format cannot represent.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Iterable, Mapping, Union

from ..mask.config import InvalidMaskConfig, MaskConfig, MaskConfigPair
from .errors import DecodeError, EncodeError

__all__ = [
    "BytesLike",
    "ROUND_PARAMETERS_LENGTH",
    "Reader",
    "RoundParameters",
    "decode_sum_dict",
    "decode_update_seed_dict",
    "encode_bigint",
    "encode_biguint",
    "encode_model",
    "encode_ratio",
    "encode_sum_dict",
    "encode_update_seed_dict",
    "pack_bool",
    "pack_byte_string",
    "pack_bytes_map",
    "pack_f64",
    "pack_i8",
    "pack_mask_config",
    "pack_u16",
    "pack_u32",
    "pack_u64",
    "pack_u8",
    "read_bytes_map",
    "read_mask_config",
]

BytesLike = Union[bytes, bytearray, memoryview]

#: Length of the bincode ``RoundParameters`` (the body of ``GET /params``).
ROUND_PARAMETERS_LENGTH = 136

#: Key and value sizes of the dictionaries (docs/PROTOCOL.md sections 3.4 and 4).
PUBLIC_KEY_LENGTH = 32
ENCRYPTED_SEED_LENGTH = 80
ROUND_SEED_LENGTH = 32

_U64_MAX = 2**64 - 1

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I8 = struct.Struct("<b")
_F64 = struct.Struct("<d")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


class Reader:
    """A bounds-checked little-endian cursor over a byte buffer.

    Every method takes a ``field`` name used only for error messages. Reads never copy
    more than the value read, and nothing is allocated on the strength of an untrusted
    length before that length has been checked against :attr:`remaining`.
    """

    __slots__ = ("_view", "_pos")

    def __init__(self, data: BytesLike, offset: int = 0) -> None:
        view = memoryview(data)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        if not 0 <= offset <= len(view):
            raise DecodeError(f"offset {offset} outside a buffer of {len(view)} bytes")
        self._view = view
        self._pos = offset

    # -- position ---------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Offset of the next unread byte."""
        return self._pos

    @property
    def remaining(self) -> int:
        """Bytes left to read."""
        return len(self._view) - self._pos

    def at_end(self) -> bool:
        return self._pos == len(self._view)

    # -- raw bytes --------------------------------------------------------------------------
    def take(self, n: int, field: str) -> memoryview:
        """The next ``n`` bytes as a view (no copy), or a DecodeError naming ``field``."""
        if n < 0:
            raise DecodeError(f"{field}: negative length {n}")
        if n > self.remaining:
            raise DecodeError(f"{field} truncated: need {n} bytes, have {self.remaining}")
        start = self._pos
        self._pos += n
        return self._view[start : self._pos]

    def read_bytes(self, n: int, field: str) -> bytes:
        """The next ``n`` bytes, copied."""
        return bytes(self.take(n, field))

    # -- integers and floats --------------------------------------------------------------
    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def i8(self, field: str) -> int:
        return int(_I8.unpack(self.take(1, field))[0])

    def u16(self, field: str) -> int:
        return int(_U16.unpack(self.take(2, field))[0])

    def u32(self, field: str) -> int:
        return int(_U32.unpack(self.take(4, field))[0])

    def u64(self, field: str) -> int:
        return int(_U64.unpack(self.take(8, field))[0])

    def f64(self, field: str) -> float:
        """An IEEE-754 double, bit pattern as is (NaN and -0.0 included)."""
        return float(_F64.unpack(self.take(8, field))[0])

    def boolean(self, field: str) -> bool:
        """bincode ``bool``: exactly 0 or 1; anything else is rejected like serde does."""
        value = self.u8(field)
        if value > 1:
            raise DecodeError(f"{field}: invalid bool byte {value} (must be 0 or 1)")
        return value == 1

    def option(self, field: str) -> bool:
        """The tag of an ``Option<T>``: True if a ``T`` follows (tag 1), False for None (tag 0)."""
        tag = self.u8(field)
        if tag > 1:
            raise DecodeError(f"{field}: invalid Option tag {tag} (must be 0 or 1)")
        return tag == 1

    # -- length-prefixed values -------------------------------------------------------------
    def byte_string(self, field: str, expected_length: "int | None" = None) -> bytes:
        """A u64-length-prefixed byte string (sodiumoxide keys, ``Vec<u8>``).

        With ``expected_length`` the prefix must equal it, as sodiumoxide's fixed-size
        types require; without, the prefix is only checked against the remaining bytes.
        """
        length = self.u64(f"{field} length")
        if expected_length is not None and length != expected_length:
            raise DecodeError(f"{field}: byte string length {length}, expected {expected_length}")
        if length > self.remaining:
            raise DecodeError(f"{field} truncated: need {length} bytes, have {self.remaining}")
        return self.read_bytes(length, field)

    def count(self, field: str, min_element_size: int) -> int:
        """A u64 element count, validated against the remaining bytes before any allocation.

        ``min_element_size`` is the smallest number of bytes one element can occupy; a
        count whose elements cannot possibly fit is rejected here.
        """
        if min_element_size < 1:
            raise ValueError("min_element_size must be at least 1")
        count = self.u64(f"{field} count")
        if count > self.remaining // min_element_size:
            raise DecodeError(
                f"{field} truncated: {count} entries of at least {min_element_size} bytes"
                f" need {count * min_element_size} bytes, have {self.remaining}"
            )
        return count


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def _check_range(value: int, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"{what} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise EncodeError(f"{what} {value} out of range [{low}, {high}]")
    return value


def pack_u8(value: int) -> bytes:
    return bytes((_check_range(value, 0, 0xFF, "u8"),))


def pack_i8(value: int) -> bytes:
    return _I8.pack(_check_range(value, -128, 127, "i8"))


def pack_u16(value: int) -> bytes:
    return _U16.pack(_check_range(value, 0, 0xFFFF, "u16"))


def pack_u32(value: int) -> bytes:
    return _U32.pack(_check_range(value, 0, 0xFFFF_FFFF, "u32"))


def pack_u64(value: int) -> bytes:
    return _U64.pack(_check_range(value, 0, _U64_MAX, "u64"))


def pack_f64(value: float) -> bytes:
    return _F64.pack(value)


def pack_bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def pack_byte_string(
    data: BytesLike, expected_length: "int | None" = None, what: str = "bytes"
) -> bytes:
    """u64 LE length + raw bytes (how sodiumoxide serializes keys and signatures)."""
    raw = bytes(data)
    if expected_length is not None and len(raw) != expected_length:
        raise EncodeError(f"{what} must be {expected_length} bytes, got {len(raw)}")
    return _U64.pack(len(raw)) + raw


# ---------------------------------------------------------------------------------------------
# MaskConfig in bincode: four u32 variant indices (NOT the 4-byte wire form of mask objects)
# ---------------------------------------------------------------------------------------------


def pack_mask_config(config: MaskConfig) -> bytes:
    """Four u32 LE serde variant indices: group, data, bound, model (Bmax = 4, M12 = 3)."""
    return b"".join(_U32.pack(i) for i in config.to_indices())


def read_mask_config(reader: Reader, field: str) -> MaskConfig:
    group = reader.u32(f"{field}.group_type")
    data = reader.u32(f"{field}.data_type")
    bound = reader.u32(f"{field}.bound_type")
    model = reader.u32(f"{field}.model_type")
    try:
        return MaskConfig.from_indices(group, data, bound, model)
    except InvalidMaskConfig as e:
        raise DecodeError(f"{field}: {e}") from None


# ---------------------------------------------------------------------------------------------
# RoundParameters (GET /params)
# ---------------------------------------------------------------------------------------------


def _as_bytes(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{what} must be bytes, got {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != length:
        raise EncodeError(f"{what} must be {length} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True, eq=False)
class RoundParameters:
    """The parameters the coordinator publishes for a round (docs/PROTOCOL.md section 3.3).

    Equality follows Rust's derived ``PartialEq``: the floats compare *numerically*, so
    ``-0.0 == 0.0`` and a NaN probability never equals anything, not even the same object.
    That last point is why ``__eq__`` is hand-written: a dataclass ``__eq__`` compares field
    tuples, and tuple comparison short-cuts on identity, which would make ``p == p`` true
    for a NaN probability. The participant relies on ``!=`` to detect a new round, and the
    original sees a NaN-probability round as new on every poll (section 12.4).
    """

    pk: bytes
    sum: float
    update: float
    seed: bytes
    mask_config: MaskConfigPair
    model_length: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "pk", _as_bytes(self.pk, PUBLIC_KEY_LENGTH, "RoundParameters.pk"))
        object.__setattr__(
            self, "seed", _as_bytes(self.seed, ROUND_SEED_LENGTH, "RoundParameters.seed")
        )
        for name in ("sum", "update"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EncodeError(
                    f"RoundParameters.{name} must be a float, got {type(value).__name__}"
                )
            object.__setattr__(self, name, float(value))
        if not isinstance(self.mask_config, MaskConfigPair):
            raise EncodeError("RoundParameters.mask_config must be a MaskConfigPair")
        _check_range(self.model_length, 0, _U64_MAX, "RoundParameters.model_length")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RoundParameters):
            return NotImplemented
        return (
            self.pk == other.pk
            and self.sum == other.sum  # float ==: NaN != NaN, -0.0 == 0.0 (as in Rust)
            and self.update == other.update
            and self.seed == other.seed
            and self.mask_config == other.mask_config
            and self.model_length == other.model_length
        )

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        # hash(-0.0) == hash(0.0), so equal parameters hash equally.
        return hash(
            (self.pk, self.sum, self.update, self.seed, self.mask_config, self.model_length)
        )

    def __repr__(self) -> str:
        # The pk and seed are public, but long; show a prefix to keep logs readable.
        vect, unit = self.mask_config.vect, self.mask_config.unit
        config = vect.name if vect == unit else f"{vect.name}|{unit.name}"
        return (
            f"RoundParameters(pk={self.pk[:4].hex()}…, sum={self.sum!r}, update={self.update!r},"
            f" seed={self.seed[:4].hex()}…, mask_config={config},"
            f" model_length={self.model_length})"
        )

    # -- encoding ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The 136-byte bincode form."""
        return b"".join(
            (
                pack_byte_string(self.pk),
                _F64.pack(self.sum),
                _F64.pack(self.update),
                pack_byte_string(self.seed),
                pack_mask_config(self.mask_config.vect),
                pack_mask_config(self.mask_config.unit),
                _U64.pack(self.model_length),
            )
        )

    @classmethod
    def read(cls, reader: Reader) -> "RoundParameters":
        """Read the struct at the reader's position (for embedding in larger bincode values)."""
        if reader.remaining < ROUND_PARAMETERS_LENGTH:
            raise DecodeError(
                f"round parameters truncated: need {ROUND_PARAMETERS_LENGTH} bytes,"
                f" have {reader.remaining}"
            )
        pk = reader.byte_string("round parameters pk", PUBLIC_KEY_LENGTH)
        sum_ = reader.f64("round parameters sum")
        update = reader.f64("round parameters update")
        seed = reader.byte_string("round parameters seed", ROUND_SEED_LENGTH)
        vect = read_mask_config(reader, "round parameters mask_config.vect")
        unit = read_mask_config(reader, "round parameters mask_config.unit")
        model_length = reader.u64("round parameters model_length")
        return cls(pk, sum_, update, seed, MaskConfigPair(vect, unit), model_length)

    @classmethod
    def from_bytes(cls, data: BytesLike) -> "RoundParameters":
        """Decode a ``GET /params`` body. Trailing bytes are ignored, as bincode does.

        The last ``bytes`` object decoded is remembered (by identity: bytes are immutable and
        the result is frozen): a simulation worker hands one body to hundreds of participants.
        """
        global _LAST_PARAMS
        last = _LAST_PARAMS
        if last is not None and data is last[0]:
            return last[1]
        params = cls.read(Reader(data))
        if isinstance(data, bytes):
            _LAST_PARAMS = (data, params)
        return params

    def is_pathological(self) -> bool:
        """True if a probability is NaN: such parameters never compare equal to themselves."""
        return math.isnan(self.sum) or math.isnan(self.update)


#: (body, decoded) of the last :meth:`RoundParameters.from_bytes` call.
_LAST_PARAMS: "tuple[bytes, RoundParameters] | None" = None


# ---------------------------------------------------------------------------------------------
# Dictionaries: HashMap<[u8; K], [u8; V]> with sodiumoxide byte-string keys and values
# ---------------------------------------------------------------------------------------------


def pack_bytes_map(
    mapping: Mapping[bytes, bytes], key_length: int, value_length: int, what: str
) -> bytes:
    """A bincode map of fixed-size byte strings, entries in the mapping's iteration order.

    The original serializes a ``HashMap``, whose order is unspecified; receivers must not
    depend on it, so insertion order is as good as any and keeps tests deterministic.
    """
    parts = [_U64.pack(len(mapping))]
    for key, value in mapping.items():
        parts.append(pack_byte_string(_as_bytes(key, key_length, f"{what} key")))
        parts.append(pack_byte_string(_as_bytes(value, value_length, f"{what} value")))
    return b"".join(parts)


def read_bytes_map(
    reader: Reader, key_length: int, value_length: int, what: str
) -> dict[bytes, bytes]:
    """Read a bincode map of fixed-size byte strings; a duplicate key is a DecodeError.

    serde would silently keep the last duplicate. A faithful peer never sends one (its map
    is a ``HashMap``), so a duplicate means a broken or malicious peer, and rejecting is the
    safer reading.
    """
    entry_size = 8 + key_length + 8 + value_length
    count = reader.count(what, entry_size)
    result: dict[bytes, bytes] = {}
    for i in range(count):
        key = reader.byte_string(f"{what} entry {i} key", key_length)
        value = reader.byte_string(f"{what} entry {i} value", value_length)
        if key in result:
            raise DecodeError(f"{what}: duplicate key in entry {i}")
        result[key] = value
    return result


def encode_sum_dict(sum_dict: Mapping[bytes, bytes]) -> bytes:
    """``SumDict``: sum participant Ed25519 pk (32) → ephemeral X25519 pk (32); 80 bytes/entry."""
    return pack_bytes_map(sum_dict, PUBLIC_KEY_LENGTH, PUBLIC_KEY_LENGTH, "sum dict")


def decode_sum_dict(data: BytesLike) -> dict[bytes, bytes]:
    """Decode a ``GET /sums`` body. Trailing bytes are ignored, as bincode does."""
    return read_bytes_map(Reader(data), PUBLIC_KEY_LENGTH, PUBLIC_KEY_LENGTH, "sum dict")


def encode_update_seed_dict(seed_dict: Mapping[bytes, bytes]) -> bytes:
    """``UpdateSeedDict``: update participant pk (32) → sealed mask seed (80); 128 bytes/entry."""
    return pack_bytes_map(seed_dict, PUBLIC_KEY_LENGTH, ENCRYPTED_SEED_LENGTH, "update seed dict")


def decode_update_seed_dict(data: BytesLike) -> dict[bytes, bytes]:
    """Decode a ``GET /seeds`` body. Trailing bytes are ignored, as bincode does."""
    return read_bytes_map(
        Reader(data), PUBLIC_KEY_LENGTH, ENCRYPTED_SEED_LENGTH, "update seed dict"
    )


# ---------------------------------------------------------------------------------------------
# Big numbers and the model (encoder only; decoding the model lives in xaynet_sdk.mask.model)
# ---------------------------------------------------------------------------------------------


def encode_biguint(value: int) -> bytes:
    """num-bigint ``BigUint``: u64 digit count + u32 LE digits, least significant first, minimal."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"BigUint must be an int, got {type(value).__name__}")
    if value < 0:
        raise EncodeError(f"BigUint must be non-negative, got {value}")
    ndigits = (value.bit_length() + 31) // 32
    return _U64.pack(ndigits) + value.to_bytes(4 * ndigits, "little")


def encode_bigint(value: int) -> bytes:
    """num-bigint ``BigInt``: sign i8 (-1, 0, 1) then the magnitude as a BigUint."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError(f"BigInt must be an int, got {type(value).__name__}")
    sign = (value > 0) - (value < 0)
    return _I8.pack(sign) + encode_biguint(abs(value))


def encode_ratio(numer: int, denom: int) -> bytes:
    """num-rational ``Ratio<BigInt>``: numer then denom, written as given (not reduced).

    Writing the pair verbatim lets tests produce the unreduced or zero-denominator ratios a
    decoder must cope with; a coordinator should pass reduced fractions with a positive
    denominator, as ``fractions.Fraction`` gives them.
    """
    return encode_bigint(numer) + encode_bigint(denom)


def encode_model(ratios: Iterable[tuple[int, int]]) -> bytes:
    """``Model`` (newtype of ``Vec<Ratio<BigInt>>``): u64 count then each ratio (section 3.5)."""
    items = list(ratios)
    return _U64.pack(len(items)) + b"".join(encode_ratio(n, d) for n, d in items)
