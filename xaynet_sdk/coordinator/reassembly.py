"""Multipart reassembly (docs/PROTOCOL.md section 5.7): the coordinator's side of multipart.

Chunks are verified one by one like any message, then grouped by
``(message_id, participant_pk)`` until the last chunk and all before it are present. The
original keeps incomplete groups forever; :class:`Reassembler` bounds the number of groups,
the bytes they hold, their idle age and their chunk count, so that a participant that
disappears mid-message (or a peer that never finishes on purpose) cannot grow the
coordinator's memory without limit. Splitting is :mod:`xaynet_sdk.codec.multipart`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from ..codec.errors import ReassemblyError
from ..codec.message import ChunkPayload, Message, Payload, Tag, decode_payload
from ..codec.multipart import MAX_CHUNKS

__all__ = ["ReassembledMessage", "Reassembler"]

_log = logging.getLogger("xaynet_sdk.coordinator.reassembly")


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
        max_chunks_per_message: int = MAX_CHUNKS,
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
        self.max_chunks_per_message = min(max_chunks_per_message, MAX_CHUNKS)
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
