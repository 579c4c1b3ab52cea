"""Multipart messages: splitting a payload into chunks (participant) and reassembly (coordinator).

Sending (docs/PROTOCOL.md section 5.6). ``max_message_size`` bounds the *sealed* size of every
POST body, so the largest payload one message can carry is
``max_payload_size = max_message_size - 136 (header) - 48 (sealed box)``. A longer payload
is cut into chunks of ``max_payload_size - 8`` data bytes (8 = chunk header), numbered
0..N-1, the last one flagged LAST_CHUNK, all sharing one random u16 message id. ``None``
means unlimited: never split (what the original Python binding does).

Receiving (section 5.7). Chunks are verified one by one like any message, then grouped by
``(message_id, participant_pk)`` until the last chunk and all before it are present. The
original keeps incomplete groups forever; :class:`Reassembler` bounds the number of groups,
the bytes they hold, their idle age and their chunk count, so that a participant that
disappears mid-message (or a peer that never finishes on purpose) cannot grow the
coordinator's memory without limit.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .bincode import BytesLike
from .crypto import SigningKeyPair
from .errors import EncodeError, ReassemblyError
from .message import (
    CHUNK_HEADER_LENGTH,
    HEADER_LENGTH,
    SEALBYTES,
    ChunkPayload,
    Message,
    Payload,
    Tag,
    _resolve_payload,
    decode_payload,
    encode_message,
)

__all__ = [
    "CHUNK_OVERHEAD",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MIN_MESSAGE_SIZE",
    "MIN_PAYLOAD_SIZE",
    "MIN_USABLE_MESSAGE_SIZE",
    "MessageEncoder",
    "ReassembledMessage",
    "Reassembler",
    "chunk_data",
    "max_payload_size",
    "split_payload",
]

_log = logging.getLogger("xaynet_sdk.codec.multipart")

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

_MAX_CHUNKS = 0x10000  # chunk ids are u16


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
    if nchunks > _MAX_CHUNKS:
        raise EncodeError(
            f"payload of {payload_length} bytes needs {nchunks} chunks of {chunk_size} bytes;"
            f" chunk ids are u16, so at most {_MAX_CHUNKS}: raise max_message_size"
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
        if -(-len(data) // chunk_size) > _MAX_CHUNKS:
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


# ---------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReassembledMessage:
    """A complete multipart payload, with the header fields of its group's first chunk."""

    participant_pk: bytes
    coordinator_pk: bytes
    tag: Tag
    message_id: int
    payload: bytes = field(repr=False)

    def decode_payload(self) -> Payload:
        """Parse :attr:`payload` as the Sum/Update/Sum2 payload of :attr:`tag`."""
        return decode_payload(self.tag, self.payload)


@dataclass
class _Builder:
    coordinator_pk: bytes
    tag: Tag
    touched: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    last_id: "int | None" = None
    nbytes: int = 0


_Key = tuple[int, bytes]  # (message_id, participant_pk)


class Reassembler:
    """Bounded reassembly of multipart messages (section 5.7), keyed by (message id, sender).

    Semantics kept from the original: the tag and coordinator key come from the first chunk
    seen for a key; a repeated chunk id overwrites (a resent chunk); the payload is the
    concatenation in id order.

    Tightened, which changes nothing for a faithful sender:

    * Complete means the last chunk (id ``L``) *and every id 0..L* are present, and a chunk
      with an id above a known ``L`` (or a second, different last chunk) discards the group.
      The original only counts chunks, so ids above ``L`` could stand in for missing ones.
    * Limits, all constructor parameters: ``max_builders`` incomplete groups in total and
      ``max_builders_per_participant`` per sender (a faithful participant has one message in
      flight), ``max_total_bytes`` of buffered chunk data, ``max_chunks_per_message`` chunk
      ids (0 .. limit-1), and ``max_age`` seconds since a group last received a chunk.
      Age counts from the *latest* chunk so that a slow but live sender (one chunk per poll)
      is never cut off. When a new group or new bytes need room, the least recently active
      groups are evicted; a chunk that can never fit raises :class:`ReassemblyError`.

    Not thread-safe: the coordinator serializes access (its state machine is single-threaded).
    Call :meth:`reset` at every new round: chunks of an old round can never complete usefully.
    """

    def __init__(
        self,
        *,
        max_builders: int = 1024,
        max_builders_per_participant: int = 4,
        max_total_bytes: int = 256 * 1024 * 1024,
        max_age: float = 600.0,
        max_chunks_per_message: int = _MAX_CHUNKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_builders < 1 or max_builders_per_participant < 1:
            raise ValueError("max_builders and max_builders_per_participant must be at least 1")
        if max_total_bytes < 1 or max_age <= 0 or max_chunks_per_message < 1:
            raise ValueError("max_total_bytes, max_age and max_chunks_per_message must be positive")
        self.max_builders = max_builders
        self.max_builders_per_participant = max_builders_per_participant
        self.max_total_bytes = max_total_bytes
        self.max_age = float(max_age)
        self.max_chunks_per_message = min(max_chunks_per_message, _MAX_CHUNKS)
        self._clock = clock
        # Least recently active first: eviction and expiry pop from the front.
        self._builders: OrderedDict[_Key, _Builder] = OrderedDict()
        self._per_participant: dict[bytes, int] = {}
        self._total_bytes = 0
        #: Incomplete messages evicted to make room, since construction.
        self.evictions = 0

    # -- inspection ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of incomplete messages being buffered."""
        return len(self._builders)

    @property
    def buffered_bytes(self) -> int:
        return self._total_bytes

    # -- housekeeping -------------------------------------------------------------------------
    def reset(self) -> None:
        """Drop every incomplete message (call at each new round)."""
        if self._builders:
            _log.debug("dropping %d incomplete multipart messages", len(self._builders))
        self._builders.clear()
        self._per_participant.clear()
        self._total_bytes = 0

    def expire(self, now: "float | None" = None) -> int:
        """Drop groups idle for longer than ``max_age``; return how many were dropped."""
        now = self._clock() if now is None else now
        dropped = 0
        while self._builders:
            key, builder = next(iter(self._builders.items()))
            if now - builder.touched <= self.max_age:
                break
            self._discard(key)
            dropped += 1
        if dropped:
            _log.info("expired %d idle incomplete multipart messages", dropped)
        return dropped

    def _discard(self, key: _Key) -> None:
        builder = self._builders.pop(key, None)
        if builder is None:
            return
        self._total_bytes -= builder.nbytes
        pk = key[1]
        remaining = self._per_participant[pk] - 1
        if remaining:
            self._per_participant[pk] = remaining
        else:
            del self._per_participant[pk]

    def _evict_oldest(self, exclude: "_Key | None", participant: "bytes | None" = None) -> bool:
        for key in self._builders:
            if key != exclude and (participant is None or key[1] == participant):
                self._discard(key)
                self.evictions += 1
                # A flood evicts once per hostile chunk: warn at 1, 10, 100... evictions.
                count = self.evictions
                level = logging.WARNING if count == 10 ** (len(str(count)) - 1) else logging.DEBUG
                _log.log(
                    level,
                    "evicted an incomplete multipart message to make room (%d so far: the"
                    " reassembly limits are reached, which a flood of chunks can cause)",
                    count,
                )
                return True
        return False

    def _reject(self, key: _Key, reason: str) -> ReassemblyError:
        self._discard(key)
        _log.info("dropping multipart message %d: %s", key[0], reason)
        return ReassemblyError(f"multipart message {key[0]}: {reason}")

    # -- the work -----------------------------------------------------------------------------
    def add(self, message: Message) -> "ReassembledMessage | None":
        """Add a decoded (signature-verified) chunk message.

        Returns the reassembled message once complete, else None. Raises
        :class:`ReassemblyError` if the chunk is refused; its group is then discarded.
        """
        if not message.is_multipart or not isinstance(message.payload, ChunkPayload):
            raise ReassemblyError("not a multipart chunk message")
        return self.add_chunk(
            message.participant_pk, message.coordinator_pk, message.tag, message.payload
        )

    def add_chunk(
        self,
        participant_pk: bytes,
        coordinator_pk: bytes,
        tag: Tag,
        chunk: ChunkPayload,
    ) -> "ReassembledMessage | None":
        """Like :meth:`add`, from the header fields and the chunk payload."""
        now = self._clock()
        self.expire(now)
        pk = bytes(participant_pk)
        key: _Key = (chunk.message_id, pk)
        cid = chunk.chunk_id

        if cid >= self.max_chunks_per_message:
            raise self._reject(
                key, f"chunk id {cid} exceeds the limit of {self.max_chunks_per_message} chunks"
            )

        builder = self._builders.get(key)
        if builder is None:
            while self._per_participant.get(pk, 0) >= self.max_builders_per_participant:
                if not self._evict_oldest(None, pk):  # pragma: no cover - counts are exact
                    break
            while len(self._builders) >= self.max_builders:
                if not self._evict_oldest(None):  # pragma: no cover
                    break
            builder = _Builder(coordinator_pk=bytes(coordinator_pk), tag=Tag(tag), touched=now)
            self._builders[key] = builder
            self._per_participant[pk] = self._per_participant.get(pk, 0) + 1

        # Consistency of the LAST_CHUNK marker.
        if chunk.last:
            if builder.last_id is not None and builder.last_id != cid:
                raise self._reject(key, f"two last chunks ({builder.last_id} and {cid})")
            if builder.chunks and max(builder.chunks) > cid:
                raise self._reject(key, f"last chunk {cid} but chunk {max(builder.chunks)} exists")
            builder.last_id = cid
        elif builder.last_id is not None and cid >= builder.last_id:
            raise self._reject(key, f"chunk {cid} at or after the last chunk {builder.last_id}")

        # Byte budget.
        old = builder.chunks.get(cid)
        delta = len(chunk.data) - (len(old) if old is not None else 0)
        if builder.nbytes + delta > self.max_total_bytes:
            raise self._reject(key, f"message exceeds the {self.max_total_bytes}-byte buffer limit")
        while self._total_bytes + delta > self.max_total_bytes:
            if not self._evict_oldest(key):  # pragma: no cover - others must hold the excess
                break

        builder.chunks[cid] = chunk.data
        builder.nbytes += delta
        self._total_bytes += delta
        builder.touched = now
        self._builders.move_to_end(key)

        if builder.last_id is not None and len(builder.chunks) == builder.last_id + 1:
            # Ids are unique and all <= last_id, so this count means 0..last_id are present.
            payload = b"".join(builder.chunks[i] for i in range(builder.last_id + 1))
            self._discard(key)
            return ReassembledMessage(
                pk, builder.coordinator_pk, builder.tag, chunk.message_id, payload
            )
        return None
