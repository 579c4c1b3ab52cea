"""Multipart messages: splitting a payload into chunks (the sending side).

Sending (docs/PROTOCOL.md section 5.6). ``max_message_size`` bounds the *sealed* size of every
POST body, so the largest payload one message can carry is
``max_payload_size = max_message_size - 136 (header) - 48 (sealed box)``. A longer payload
is cut into chunks of ``max_payload_size - 8`` data bytes (8 = chunk header), numbered
0..N-1, the last one flagged LAST_CHUNK, all sharing one random u16 message id. ``None``
means unlimited: never split (what the original Python binding does).

Receiving (section 5.7) is the coordinator's: :mod:`xaynet_sdk.coordinator.reassembly`.
"""

from __future__ import annotations

import secrets
from typing import Iterator

from .bincode import BytesLike
from .crypto import SigningKeyPair
from .errors import EncodeError
from .message import (
    CHUNK_HEADER_LENGTH,
    HEADER_LENGTH,
    SEALBYTES,
    ChunkPayload,
    Payload,
    Tag,
    _resolve_payload,
    encode_message,
)

__all__ = [
    "CHUNK_OVERHEAD",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MIN_MESSAGE_SIZE",
    "MIN_PAYLOAD_SIZE",
    "MAX_CHUNKS",
    "MIN_USABLE_MESSAGE_SIZE",
    "MessageEncoder",
    "chunk_data",
    "max_payload_size",
    "split_payload",
]


CHUNK_OVERHEAD = CHUNK_HEADER_LENGTH  # 8
#: The smallest size the original accepts in a saved state: 136 + 48 + 1.
MIN_MESSAGE_SIZE = HEADER_LENGTH + SEALBYTES + 1  # 185
#: ``MaxMessageSize::default()``: 4096 - 136 - 48.
DEFAULT_MAX_MESSAGE_SIZE = 4096 - HEADER_LENGTH - SEALBYTES  # 3912
#: Max payload sizes up to this are rejected by the encoder (no room for chunk data).
MIN_PAYLOAD_SIZE = 9
#: The smallest max_message_size with which a message can actually be composed.
MIN_USABLE_MESSAGE_SIZE = HEADER_LENGTH + SEALBYTES + MIN_PAYLOAD_SIZE + 1  # 194
#: The original chunker's fallback for a max chunk size of 0 (unreachable from the encoder).
DEFAULT_CHUNK_SIZE = 4096

#: Chunk ids are u16.
MAX_CHUNKS = 0x10000


def max_payload_size(max_message_size: "int | None") -> int:
    """``max_message_size - 184``, or 0 for ``None`` (unlimited: never split).

    Sizes below :data:`MIN_MESSAGE_SIZE` are rejected with the original's wording.
    """
    if max_message_size is None:
        return 0
    if isinstance(max_message_size, bool) or not isinstance(max_message_size, int):
        raise EncodeError(f"max_message_size must be an int or None, got {max_message_size!r}")
    if max_message_size < MIN_MESSAGE_SIZE:
        raise EncodeError(
            f"max_message_size must be at least {MIN_MESSAGE_SIZE} (got {max_message_size})"
        )
    return max_message_size - HEADER_LENGTH - SEALBYTES


def _usable_payload_size(max_message_size: "int | None") -> int:
    size = max_payload_size(max_message_size)
    if 0 < size <= MIN_PAYLOAD_SIZE:
        # The original accepts these sizes in a saved state and then panics when composing a
        # message; refusing them up front is the only sensible translation.
        raise EncodeError(
            f"max_message_size {max_message_size} leaves {size} payload bytes per message, too"
            f" few to carry a chunk; the minimum usable size is {MIN_USABLE_MESSAGE_SIZE}"
        )
    return size


def chunk_data(data: BytesLike, max_chunk_size: int) -> list[bytes]:
    """The original ``Chunker``: consecutive slices of at most ``max_chunk_size`` bytes.

    Empty data gives no chunks; a size of 0 means :data:`DEFAULT_CHUNK_SIZE`.
    """
    if max_chunk_size < 0:
        raise EncodeError(f"max_chunk_size must not be negative, got {max_chunk_size}")
    size = max_chunk_size or DEFAULT_CHUNK_SIZE
    view = memoryview(data)
    return [bytes(view[i : i + size]) for i in range(0, len(view), size)]


def _random_message_id() -> int:
    # The original uses rand::random::<u16>() (a CSPRNG); ids only need to differ between
    # one participant's concurrent messages, but unpredictable ids cost nothing.
    return secrets.randbits(16)


def _chunk_size_for(payload_length: int, max_message_size: "int | None") -> int:
    """0 if the payload goes as one message, else the data bytes per chunk."""
    size = _usable_payload_size(max_message_size)
    if size == 0 or payload_length <= size:
        return 0
    chunk_size = size - CHUNK_OVERHEAD
    nchunks = -(-payload_length // chunk_size)
    if nchunks > MAX_CHUNKS:
        raise EncodeError(
            f"payload of {payload_length} bytes needs {nchunks} chunks of {chunk_size} bytes;"
            f" chunk ids are u16, so at most {MAX_CHUNKS}: raise max_message_size"
        )
    return chunk_size


def split_payload(
    payload: BytesLike, max_message_size: "int | None", message_id: "int | None" = None
) -> list[bytes]:
    """Serialized chunk payloads for ``payload``, or ``[payload]`` if it fits in one message.

    A split always yields at least two chunks (the payload is longer than a whole message's
    payload, each chunk carries 8 bytes less), so a one-element list means "send as is,
    without the MULTIPART flag". ``message_id`` defaults to a random u16.
    """
    chunk_size = _chunk_size_for(len(payload), max_message_size)
    if chunk_size == 0:
        return [bytes(payload)]
    mid = _random_message_id() if message_id is None else message_id
    pieces = chunk_data(payload, chunk_size)
    last = len(pieces) - 1
    return [ChunkPayload(i, mid, i == last, piece).to_bytes() for i, piece in enumerate(pieces)]


class MessageEncoder:
    """The signed plaintext messages for one payload: one message, or one per chunk.

    Messages are built on demand (``message(i)`` or iteration), so a large update is never
    held twice as a list of signed chunks. Each returned plaintext still has to be sealed to
    the coordinator key before it is POSTed; the sealed bytes, not these, are what must be
    resent verbatim after a failed POST.

    Attributes mirror the original's saved ``MultipartEncoder`` (section 12.7): ``data`` (the
    serialized payload), ``tag``, ``max_payload_size`` (its ``payload_size``) and
    ``message_id``; the next chunk id to send is the caller's bookkeeping.
    """

    def __init__(
        self,
        keys: SigningKeyPair,
        coordinator_pk: BytesLike,
        payload: "Payload | BytesLike",
        tag: "Tag | int | None" = None,
        max_message_size: "int | None" = None,
        message_id: "int | None" = None,
    ) -> None:
        if isinstance(payload, ChunkPayload):
            raise EncodeError("MessageEncoder takes a whole payload, not a chunk")
        data, resolved_tag, _ = _resolve_payload(payload, tag, False)
        self.keys = keys
        self.coordinator_pk = bytes(coordinator_pk)
        self.tag: Tag = resolved_tag
        self.data: bytes = data
        self.max_message_size = max_message_size
        self.max_payload_size: int = _usable_payload_size(max_message_size)
        #: Data bytes per chunk; 0 when the payload goes as a single message.
        self.chunk_size: int = _chunk_size_for(len(data), max_message_size)
        self.message_id: "int | None" = None
        if self.chunk_size:
            self.message_id = _random_message_id() if message_id is None else message_id
            ChunkPayload(0, self.message_id, False, b"")  # validates the id range early

    @classmethod
    def from_multipart_state(
        cls,
        keys: SigningKeyPair,
        coordinator_pk: BytesLike,
        data: BytesLike,
        tag: "Tag | int",
        payload_size: int,
        message_id: int,
    ) -> "MessageEncoder":
        """Rebuild a multipart encoder from the fields of a saved original state.

        Unlike the normal constructor this does not decide whether to split: a saved
        ``Multipart`` encoder always sends chunks of ``payload_size - 8`` bytes, even if
        the data would fit in one message (it then sends a single, last, chunk).
        """
        if payload_size <= MIN_PAYLOAD_SIZE:
            raise EncodeError(
                f"payload_size {payload_size} is too small to carry a chunk (must exceed"
                f" {MIN_PAYLOAD_SIZE})"
            )
        chunk_size = payload_size - CHUNK_OVERHEAD
        if -(-len(data) // chunk_size) > MAX_CHUNKS:
            raise EncodeError(f"{len(data)} bytes in chunks of {chunk_size} exceed u16 chunk ids")
        ChunkPayload(0, message_id, False, b"")  # validates the id range
        enc = cls.__new__(cls)
        enc.keys = keys
        enc.coordinator_pk = bytes(coordinator_pk)
        enc.tag = Tag(tag)
        enc.data = bytes(data)
        enc.max_message_size = payload_size + HEADER_LENGTH + SEALBYTES
        enc.max_payload_size = payload_size
        enc.chunk_size = chunk_size
        enc.message_id = message_id
        return enc

    @property
    def is_multipart(self) -> bool:
        return self.chunk_size != 0

    def __len__(self) -> int:
        if not self.chunk_size:
            return 1
        return -(-len(self.data) // self.chunk_size)

    def chunk(self, index: int) -> ChunkPayload:
        """The ``index``-th chunk payload (multipart encoders only)."""
        if not self.chunk_size or self.message_id is None:
            raise IndexError("a single-message encoder has no chunks")
        count = len(self)
        if not 0 <= index < count:
            raise IndexError(f"chunk index {index} out of range 0..{count - 1}")
        start = index * self.chunk_size
        return ChunkPayload(
            index, self.message_id, index == count - 1, self.data[start : start + self.chunk_size]
        )

    def message(self, index: int) -> bytes:
        """The ``index``-th signed plaintext message."""
        if not self.chunk_size:
            if index != 0:
                raise IndexError(f"message index {index} out of range 0..0")
            return encode_message(
                self.data, self.tag, self.keys.public, self.keys.secret, self.coordinator_pk, False
            )
        keys = self.keys
        return encode_message(
            self.chunk(index), self.tag, keys.public, keys.secret, self.coordinator_pk, True
        )

    def __iter__(self) -> Iterator[bytes]:
        for i in range(len(self)):
            yield self.message(i)
