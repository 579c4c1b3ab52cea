"""PET messages: the signed plaintext header, the payloads, and the LocalSeedDict (section 5).

Layout of a plaintext message (docs/PROTOCOL.md section 5.2)::

    [0:64)    Ed25519 signature over [64:length)
    [64:96)   participant public signing key
    [96:128)  coordinator public encryption key of the round
    [128:132) length, u32 BIG-endian, the whole message including this header
    [132]     tag: 1 Sum, 2 Update, 3 Sum2
    [133]     flags: bit0 MULTIPART (other bits ignored on read, written as 0)
    [134:136) reserved, 00 00
    [136:)    payload (a Chunk payload when MULTIPART is set)

On the wire this plaintext is sealed to the coordinator key (:func:`~.crypto.seal`); that
step is left to the caller because the sealed bytes are random and the participant must
resend the *same* sealed bytes after a failed POST.

Deliberate tightening (section 5.2 says the original parses the payload from *all* bytes
after the header): payloads are read from ``[136:length)`` only, the bytes the signature
covers. A faithful sender never writes bytes past ``length``, so this changes nothing for
interoperation, while it stops unsigned trailing bytes from entering a chunk's data.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Mapping, Union

from ..mask.objects import MaskObject, MaskObjectError
from . import crypto
from .bincode import BytesLike, Reader
from .errors import DecodeError, EncodeError, InvalidSignatureError, WrongCoordinatorKeyError

__all__ = [
    "CHUNK_HEADER_LENGTH",
    "ChunkPayload",
    "HEADER_LENGTH",
    "LAST_CHUNK",
    "LOCAL_SEED_DICT_ENTRY_LENGTH",
    "MULTIPART",
    "Message",
    "MessageHeader",
    "Payload",
    "SEALBYTES",
    "SUM_PAYLOAD_LENGTH",
    "Sum2Payload",
    "SumPayload",
    "Tag",
    "UpdatePayload",
    "decode_header",
    "decode_length_value",
    "decode_local_seed_dict",
    "decode_message",
    "decode_payload",
    "encode_length_value",
    "encode_local_seed_dict",
    "encode_message",
    "encode_unsigned",
]

HEADER_LENGTH = 136
SEALBYTES = crypto.SEALBYTES
SIGNATURE_LENGTH = crypto.SIGNATURE_LENGTH
PUBLIC_KEY_LENGTH = crypto.PUBLIC_KEY_LENGTH
ENCRYPTED_SEED_LENGTH = 32 + SEALBYTES  # a sealed 32-byte mask seed

#: Message flag (header byte 133): the payload is a chunk of a larger payload.
MULTIPART = 0x01
#: Chunk flag (chunk byte 4): this chunk is the last one of its message.
LAST_CHUNK = 0x01

CHUNK_HEADER_LENGTH = 8
SUM_PAYLOAD_LENGTH = SIGNATURE_LENGTH + PUBLIC_KEY_LENGTH  # 96
LOCAL_SEED_DICT_ENTRY_LENGTH = PUBLIC_KEY_LENGTH + ENCRYPTED_SEED_LENGTH  # 112
LENGTH_FIELD_LENGTH = 4

_U32_BE = struct.Struct(">I")
_U16_BE = struct.Struct(">H")
_U32_MAX = 0xFFFF_FFFF


class Tag(enum.IntEnum):
    """The message tag byte. Values are the wire bytes (not serde indices)."""

    Sum = 1
    Update = 2
    Sum2 = 3

    @property
    def index(self) -> int:
        """The serde variant index (Sum 0, Update 1, Sum2 2), as in the saved state."""
        return int(self.value) - 1

    @classmethod
    def from_index(cls, index: int) -> "Tag":
        if not 0 <= index <= 2:
            raise DecodeError(f"invalid tag variant index {index} (valid: 0..2)")
        return cls(index + 1)


def _to_tag(value: "Tag | int", error: type[Exception] = EncodeError) -> Tag:
    try:
        return Tag(value)
    except ValueError:
        raise error(f"invalid message tag {value!r} (valid: 1 Sum, 2 Update, 3 Sum2)") from None


def _fixed(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise EncodeError(f"{what} must be bytes, got {type(value).__name__}")
    raw = bytes(value)
    if len(raw) != length:
        raise EncodeError(f"{what} must be {length} bytes, got {len(raw)}")
    return raw


# ---------------------------------------------------------------------------------------------
# Length-Value items and the LocalSeedDict (section 5.4)
# ---------------------------------------------------------------------------------------------


def encode_length_value(value: BytesLike) -> bytes:
    """``u32 BE total length (including these 4 bytes) ‖ value``."""
    total = LENGTH_FIELD_LENGTH + len(value)
    if total > _U32_MAX:
        raise EncodeError(f"length-value item of {total} bytes exceeds the u32 length field")
    return _U32_BE.pack(total) + bytes(value)


def decode_length_value(
    data: BytesLike, offset: int = 0, what: str = "length-value item"
) -> tuple[bytes, int]:
    """Read a Length-Value item at ``offset``; return its value and the offset past it.

    Bytes after the item are not part of it and are left alone, as in the original.
    """
    view = memoryview(data)
    available = len(view) - offset
    if offset < 0 or available < LENGTH_FIELD_LENGTH:
        raise DecodeError(
            f"{what} truncated: need {LENGTH_FIELD_LENGTH} bytes for the length field,"
            f" have {max(available, 0)}"
        )
    (total,) = _U32_BE.unpack(view[offset : offset + LENGTH_FIELD_LENGTH])
    if total < LENGTH_FIELD_LENGTH:
        raise DecodeError(
            f"{what}: invalid length {total} (must be at least {LENGTH_FIELD_LENGTH})"
        )
    if total > available:
        raise DecodeError(f"{what} truncated: length field says {total} bytes, have {available}")
    return bytes(view[offset + LENGTH_FIELD_LENGTH : offset + total]), offset + total


def encode_local_seed_dict(seed_dict: Mapping[bytes, bytes]) -> bytes:
    """The LocalSeedDict: LV of ``sum pk (32) ‖ sealed seed (80)`` entries, mapping order."""
    parts = []
    for key, value in seed_dict.items():
        parts.append(_fixed(key, PUBLIC_KEY_LENGTH, "local seed dict key"))
        parts.append(_fixed(value, ENCRYPTED_SEED_LENGTH, "local seed dict encrypted seed"))
    return encode_length_value(b"".join(parts))


def decode_local_seed_dict(data: BytesLike, offset: int = 0) -> tuple[dict[bytes, bytes], int]:
    """Read a LocalSeedDict at ``offset``; return it and the offset past it.

    Errors as the original: fewer than 4 bytes, a length below 4 or beyond the buffer, a
    value that is not a whole number of 112-byte entries ("trailing bytes"), a duplicate key.
    """
    value, end = decode_length_value(data, offset, "local seed dictionary")
    if len(value) % LOCAL_SEED_DICT_ENTRY_LENGTH:
        raise DecodeError(
            f"invalid local seed dictionary: trailing bytes ({len(value)} bytes is not a multiple"
            f" of {LOCAL_SEED_DICT_ENTRY_LENGTH})"
        )
    result: dict[bytes, bytes] = {}
    for start in range(0, len(value), LOCAL_SEED_DICT_ENTRY_LENGTH):
        key = value[start : start + PUBLIC_KEY_LENGTH]
        if key in result:
            raise DecodeError(
                f"invalid local seed dictionary: duplicate key in entry"
                f" {start // LOCAL_SEED_DICT_ENTRY_LENGTH}"
            )
        result[key] = value[start + PUBLIC_KEY_LENGTH : start + LOCAL_SEED_DICT_ENTRY_LENGTH]
    return result, end


# ---------------------------------------------------------------------------------------------
# Payloads (section 5.3) and chunks (section 5.5)
# ---------------------------------------------------------------------------------------------


def _read_mask_object(data: BytesLike, offset: int, what: str) -> tuple[MaskObject, int]:
    try:
        return MaskObject.from_bytes(data, offset)
    except MaskObjectError as e:
        raise DecodeError(f"{what}: {e}") from None


@dataclass(frozen=True)
class SumPayload:
    """Sum (tag 1): the sum task signature and the fresh ephemeral X25519 key; 96 bytes."""

    tag: ClassVar[Tag] = Tag.Sum

    sum_signature: bytes
    ephm_pk: bytes

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "sum_signature", _fixed(self.sum_signature, SIGNATURE_LENGTH, "sum_signature")
        )
        object.__setattr__(self, "ephm_pk", _fixed(self.ephm_pk, PUBLIC_KEY_LENGTH, "ephm_pk"))

    def to_bytes(self) -> bytes:
        return self.sum_signature + self.ephm_pk

    @classmethod
    def from_bytes(cls, data: BytesLike) -> "SumPayload":
        """Trailing bytes after the 96 bytes are ignored, as in the original."""
        r = Reader(data)
        return cls(
            r.read_bytes(SIGNATURE_LENGTH, "sum payload sum_signature"),
            r.read_bytes(PUBLIC_KEY_LENGTH, "sum payload ephm_pk"),
        )


@dataclass(frozen=True)
class UpdatePayload:
    """Update (tag 2): both task signatures, the masked model and the LocalSeedDict."""

    tag: ClassVar[Tag] = Tag.Update

    sum_signature: bytes
    update_signature: bytes
    masked_model: MaskObject
    local_seed_dict: dict[bytes, bytes]

    __hash__ = None  # type: ignore[assignment]  # holds a dict and a numpy-backed object

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "sum_signature", _fixed(self.sum_signature, SIGNATURE_LENGTH, "sum_signature")
        )
        object.__setattr__(
            self,
            "update_signature",
            _fixed(self.update_signature, SIGNATURE_LENGTH, "update_signature"),
        )
        if not isinstance(self.masked_model, MaskObject):
            raise EncodeError("masked_model must be a MaskObject")
        seeds = {
            _fixed(k, PUBLIC_KEY_LENGTH, "local seed dict key"): _fixed(
                v, ENCRYPTED_SEED_LENGTH, "local seed dict encrypted seed"
            )
            for k, v in self.local_seed_dict.items()
        }
        object.__setattr__(self, "local_seed_dict", seeds)

    def to_bytes(self) -> bytes:
        # One join: the masked model's numbers are copied once (they are most of the bytes).
        return b"".join(
            [
                self.sum_signature,
                self.update_signature,
                *self.masked_model.wire_parts(),
                encode_local_seed_dict(self.local_seed_dict),
            ]
        )

    @classmethod
    def from_bytes(cls, data: BytesLike) -> "UpdatePayload":
        """Fields are read in sequence; bytes after the LocalSeedDict are ignored."""
        r = Reader(data)
        sum_signature = r.read_bytes(SIGNATURE_LENGTH, "update payload sum_signature")
        update_signature = r.read_bytes(SIGNATURE_LENGTH, "update payload update_signature")
        masked_model, end = _read_mask_object(data, r.position, "update payload masked_model")
        seeds, _ = decode_local_seed_dict(data, end)
        return cls(sum_signature, update_signature, masked_model, seeds)


@dataclass(frozen=True)
class Sum2Payload:
    """Sum2 (tag 3): the sum task signature and the aggregated mask."""

    tag: ClassVar[Tag] = Tag.Sum2

    sum_signature: bytes
    model_mask: MaskObject

    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "sum_signature", _fixed(self.sum_signature, SIGNATURE_LENGTH, "sum_signature")
        )
        if not isinstance(self.model_mask, MaskObject):
            raise EncodeError("model_mask must be a MaskObject")

    def to_bytes(self) -> bytes:
        return b"".join([self.sum_signature, *self.model_mask.wire_parts()])

    @classmethod
    def from_bytes(cls, data: BytesLike) -> "Sum2Payload":
        r = Reader(data)
        sum_signature = r.read_bytes(SIGNATURE_LENGTH, "sum2 payload sum_signature")
        model_mask, _ = _read_mask_object(data, r.position, "sum2 payload model_mask")
        return cls(sum_signature, model_mask)


@dataclass(frozen=True)
class ChunkPayload:
    """One chunk of a multipart message (section 5.5): ``id ‖ message_id ‖ flags ‖ 000000 ‖ data``.

    ``chunk_id`` and ``message_id`` are u16 BIG-endian on the wire; ``last`` is LAST_CHUNK.
    """

    chunk_id: int
    message_id: int
    last: bool
    data: bytes

    def __post_init__(self) -> None:
        for name in ("chunk_id", "message_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise EncodeError(f"chunk {name} must be an int in [0, 65535], got {value!r}")
        object.__setattr__(self, "last", bool(self.last))
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise EncodeError(f"chunk data must be bytes, got {type(self.data).__name__}")
        object.__setattr__(self, "data", bytes(self.data))

    def to_bytes(self) -> bytes:
        return (
            _U16_BE.pack(self.chunk_id)
            + _U16_BE.pack(self.message_id)
            + bytes((LAST_CHUNK if self.last else 0, 0, 0, 0))
            + self.data
        )

    @classmethod
    def from_bytes(cls, data: BytesLike) -> "ChunkPayload":
        """All bytes after the 8-byte chunk header are chunk data. Unknown flag bits are ignored."""
        view = memoryview(data)
        if len(view) < CHUNK_HEADER_LENGTH:
            raise DecodeError(
                f"chunk payload truncated: need {CHUNK_HEADER_LENGTH} bytes, have {len(view)}"
            )
        (chunk_id,) = _U16_BE.unpack(view[0:2])
        (message_id,) = _U16_BE.unpack(view[2:4])
        last = bool(view[4] & LAST_CHUNK)
        return cls(chunk_id, message_id, last, bytes(view[CHUNK_HEADER_LENGTH:]))


Payload = Union[SumPayload, UpdatePayload, Sum2Payload, ChunkPayload]

_PAYLOAD_TYPES: dict[Tag, type[Union[SumPayload, UpdatePayload, Sum2Payload]]] = {
    Tag.Sum: SumPayload,
    Tag.Update: UpdatePayload,
    Tag.Sum2: Sum2Payload,
}


def decode_payload(tag: "Tag | int", data: BytesLike, multipart: bool = False) -> Payload:
    """Parse a payload: a chunk if ``multipart``, otherwise the payload type of ``tag``.

    Also what a coordinator calls on a reassembled multipart payload.
    """
    if multipart:
        return ChunkPayload.from_bytes(data)
    return _PAYLOAD_TYPES[_to_tag(tag, DecodeError)].from_bytes(data)


# ---------------------------------------------------------------------------------------------
# The message header and whole messages (section 5.2)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageHeader:
    """The 136-byte header, checked for lengths and tag only (no signature check)."""

    signature: bytes
    participant_pk: bytes
    coordinator_pk: bytes
    length: int
    tag: Tag
    flags: int

    @property
    def is_multipart(self) -> bool:
        return bool(self.flags & MULTIPART)


def decode_header(plaintext: BytesLike) -> MessageHeader:
    """The header of a plaintext message, with the original's buffer length checks.

    Cheap: lets a coordinator filter by tag (phase) before paying for a signature check.
    """
    view = memoryview(plaintext)
    if len(view) < HEADER_LENGTH:
        raise DecodeError(f"message truncated: need {HEADER_LENGTH} header bytes, have {len(view)}")
    (length,) = _U32_BE.unpack(view[128:132])
    if length < HEADER_LENGTH:
        raise DecodeError(
            f"message length field {length} is shorter than the {HEADER_LENGTH}-byte header"
        )
    if len(view) < length:
        raise DecodeError(f"message truncated: length field says {length} bytes, have {len(view)}")
    return MessageHeader(
        signature=bytes(view[0:64]),
        participant_pk=bytes(view[64:96]),
        coordinator_pk=bytes(view[96:128]),
        length=length,
        tag=_to_tag(view[132], DecodeError),
        flags=view[133],
    )


@dataclass(frozen=True)
class Message:
    """A decoded (and, by default, signature-verified) plaintext message."""

    signature: bytes
    participant_pk: bytes
    coordinator_pk: bytes
    tag: Tag
    is_multipart: bool
    payload: Payload

    __hash__ = None  # type: ignore[assignment]


def _resolve_payload(
    payload: "Payload | BytesLike", tag: "Tag | int | None", multipart: "bool | None"
) -> tuple[bytes, Tag, bool]:
    if isinstance(payload, ChunkPayload):
        if multipart is False:
            raise EncodeError("a ChunkPayload can only be sent with the MULTIPART flag")
        if tag is None:
            raise EncodeError("a ChunkPayload needs the tag of the message it is a part of")
        return payload.to_bytes(), _to_tag(tag), True
    if isinstance(payload, (SumPayload, UpdatePayload, Sum2Payload)):
        if multipart:
            raise EncodeError(f"a {type(payload).__name__} cannot carry the MULTIPART flag")
        if tag is not None and _to_tag(tag) is not payload.tag:
            raise EncodeError(f"tag {tag!r} does not match a {type(payload).__name__}")
        return payload.to_bytes(), payload.tag, False
    if isinstance(payload, (bytes, bytearray, memoryview)):
        if tag is None:
            raise EncodeError("raw payload bytes need an explicit tag")
        return bytes(payload), _to_tag(tag), bool(multipart)
    raise EncodeError(f"cannot encode a payload of type {type(payload).__name__}")


def encode_unsigned(
    payload: "Payload | BytesLike",
    tag: "Tag | int | None",
    participant_pk: BytesLike,
    coordinator_pk: BytesLike,
    multipart: "bool | None" = None,
) -> bytearray:
    """The whole plaintext message with a zeroed signature field.

    :func:`encode_message` signs ``[64:]`` of this; it is public for tests that compare
    against vectors with placeholder signatures, and for signers that live elsewhere.
    """
    body, resolved_tag, is_multipart = _resolve_payload(payload, tag, multipart)
    length = HEADER_LENGTH + len(body)
    if length > _U32_MAX:
        raise EncodeError(f"message of {length} bytes exceeds the u32 length field")
    buf = bytearray(length)
    buf[64:96] = _fixed(participant_pk, PUBLIC_KEY_LENGTH, "participant_pk")
    buf[96:128] = _fixed(coordinator_pk, PUBLIC_KEY_LENGTH, "coordinator_pk")
    buf[128:132] = _U32_BE.pack(length)
    buf[132] = resolved_tag.value
    buf[133] = MULTIPART if is_multipart else 0
    buf[HEADER_LENGTH:] = body
    return buf


def encode_message(
    payload: "Payload | BytesLike",
    tag: "Tag | int | None",
    participant_pk: BytesLike,
    participant_sk: BytesLike,
    coordinator_pk: BytesLike,
    multipart: "bool | None" = None,
) -> bytes:
    """The signed plaintext message (header as section 5.2, signature over ``[64:length)``).

    ``payload`` is a payload object (its tag is implied; ``tag`` may be None or must agree)
    or already serialized payload bytes (``tag`` required). ``multipart`` defaults to True
    exactly for a :class:`ChunkPayload`. Ed25519 is deterministic, so equal inputs give equal
    bytes, which is what makes ``vectors/e2e_messages_wheel.json`` reproducible.
    """
    sk = _fixed(participant_sk, crypto.SECRET_SIGNING_KEY_LENGTH, "participant_sk")
    pk = _fixed(participant_pk, PUBLIC_KEY_LENGTH, "participant_pk")
    if sk[32:] != pk:
        # libsodium's secret key is seed ‖ pk: a mismatch would produce a message the
        # coordinator silently drops, so catch it here.
        raise EncodeError("participant_sk does not belong to participant_pk")
    buf = encode_unsigned(payload, tag, pk, coordinator_pk, multipart)
    buf[0:64] = crypto.sign(sk, memoryview(buf)[64:])
    return bytes(buf)


def decode_message(
    plaintext: BytesLike,
    *,
    verify: bool = True,
    expected_coordinator_pk: "BytesLike | None" = None,
) -> Message:
    """Decode a plaintext message: header checks, signature, coordinator key, payload.

    * The signature must verify under the header's participant key
      (:class:`InvalidSignatureError` otherwise). ``verify=False`` skips this, for vectors
      with placeholder signatures and for callers that verified already.
    * With ``expected_coordinator_pk`` the header's coordinator key must equal it
      (:class:`WrongCoordinatorKeyError`), the coordinator's stale-message check.
    * The payload is parsed from ``[136:length)``; a chunk payload if MULTIPART is set.
    """
    header = decode_header(plaintext)
    view = memoryview(plaintext)
    signed = view[64 : header.length]
    if verify and not crypto.verify(header.participant_pk, header.signature, signed):
        raise InvalidSignatureError(
            f"{header.tag.name} message of {header.length} bytes: signature does not verify"
            " under its participant key"
        )
    if expected_coordinator_pk is not None and header.coordinator_pk != bytes(
        expected_coordinator_pk
    ):
        raise WrongCoordinatorKeyError(
            f"{header.tag.name} message is for another coordinator key (a previous round?)"
        )
    body = view[HEADER_LENGTH : header.length]
    what = f"{header.tag.name} {'chunk ' if header.is_multipart else ''}message"
    try:
        payload = decode_payload(header.tag, body, header.is_multipart)
    except DecodeError as e:
        raise DecodeError(f"{what}: {e}") from None
    return Message(
        signature=header.signature,
        participant_pk=header.participant_pk,
        coordinator_pk=header.coordinator_pk,
        tag=header.tag,
        is_multipart=header.is_multipart,
        payload=payload,
    )
