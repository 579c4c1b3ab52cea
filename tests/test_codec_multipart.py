"""Multipart: chunking (section 5.6) and bounded server-side reassembly (section 5.7)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spec_vectors import load_vector

from xaynet_sdk.codec.crypto import EncryptKeyPair, SigningKeyPair, open_sealed, seal, verify
from xaynet_sdk.codec.errors import EncodeError, ReassemblyError
from xaynet_sdk.codec.message import (
    LAST_CHUNK,
    MULTIPART,
    ChunkPayload,
    SumPayload,
    Tag,
    UpdatePayload,
    decode_header,
    decode_message,
    encode_message,
)
from xaynet_sdk.codec.multipart import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MIN_MESSAGE_SIZE,
    MIN_USABLE_MESSAGE_SIZE,
    MessageEncoder,
    chunk_data,
    max_payload_size,
    split_payload,
)
from xaynet_sdk.coordinator.reassembly import Reassembler
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair
from xaynet_sdk.mask.objects import MaskObject

MULTI = load_vector("multipart")
KEYS = SigningKeyPair.from_seed(b"\x03" * 32)
OTHER = SigningKeyPair.from_seed(b"\x04" * 32)
COORD = EncryptKeyPair.from_seed(b"\x01" * 32)


def small_update() -> UpdatePayload:
    """helpers::update(116, 24): one seed dict entry, Integer/I32/B0/M3, one weight 0, scalar 0."""
    mask = MaskObject.from_ints(
        MaskConfigPair.single(MaskConfig.from_name("Integer/I32/B0/M3")), [0], 0
    )
    return UpdatePayload(b"\x01" * 64, b"\x02" * 64, mask, {b"\x03" * 32: b"\x04" * 80})


# ---------------------------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", MULTI["chunker"]["cases"], ids=lambda c: str(c["max_chunk_size"]))
def test_chunker_vectors(case: dict[str, Any]) -> None:
    assert chunk_data(bytes(case["data"]), case["max_chunk_size"]) == [
        bytes(c) for c in case["chunks"]
    ]


def test_constants() -> None:
    c = MULTI["encoder"]["constants"]
    assert MIN_MESSAGE_SIZE == c["MIN_MESSAGE_SIZE"] == 185
    assert DEFAULT_MAX_MESSAGE_SIZE == c["default_max_message_size"] == 3912
    assert max_payload_size(DEFAULT_MAX_MESSAGE_SIZE) == c["default_max_payload_size"] == 3728
    assert max_payload_size(None) == 0
    assert MIN_USABLE_MESSAGE_SIZE == 194


def test_small_update_sizes() -> None:
    vec = MULTI["encoder"]["small_update_message"]
    payload = small_update()
    assert len(payload.masked_model.to_bytes()) == vec["mask_obj_len"]
    assert len(payload.to_bytes()) == vec["payload_len"]
    assert len(MessageEncoder(KEYS, COORD.public, payload).message(0)) == vec["message_len"]


def test_encoder_case_single_message() -> None:
    """max_payload_size 272 (max_message_size 456): one 404-byte message, no MULTIPART."""
    enc = MessageEncoder(KEYS, COORD.public, small_update(), max_message_size=272 + 184)
    assert not enc.is_multipart and len(enc) == 1 and enc.message_id is None
    (msg,) = list(enc)
    assert len(msg) == 404 and msg[133] == 0
    assert decode_message(msg).payload == small_update()


def test_encoder_case_two_chunks() -> None:
    """max_payload_size 200: chunks of 192 + 76 data bytes, messages of 336 and 220 bytes."""
    vec = MULTI["encoder"]["cases"][1]
    max_message_size = 200 + 184
    enc = MessageEncoder(KEYS, COORD.public, small_update(), max_message_size=max_message_size)
    assert enc.is_multipart and len(enc) == 2
    msgs = list(enc)
    data = b""
    for raw, key in zip(msgs, ("chunk_0", "chunk_1")):
        expect = vec[key]
        assert len(raw) == expect["message_len"]
        assert len(seal(raw, COORD.public)) <= max_message_size
        msg = decode_message(raw, expected_coordinator_pk=COORD.public)
        assert msg.is_multipart and msg.tag is Tag.Update and raw[133] == MULTIPART
        chunk = msg.payload
        assert isinstance(chunk, ChunkPayload)
        assert (chunk.chunk_id, chunk.last, len(chunk.data)) == (
            expect["id"],
            expect["last"],
            expect["chunk_data_len"],
        )
        assert chunk.message_id == enc.message_id
        data += chunk.data
    assert data == small_update().to_bytes()


def _chunk_message(keys: SigningKeyPair, chunk: ChunkPayload, tag: Tag = Tag.Sum) -> bytes:
    return encode_message(chunk, tag, keys.public, keys.secret, COORD.public)


def test_server_reassembly_vector_out_of_order_two_participants() -> None:
    vec = MULTI["server_reassembly"]
    payload = bytes.fromhex(vec["sum_payload_96_bytes_hex"])
    chunks = [
        ChunkPayload(c["id"], vec["message_id"], c.get("last", False), bytes.fromhex(c["data_hex"]))
        for c in vec["split"]
    ]
    assert b"".join(c.data for c in chunks) == payload
    reasm = Reassembler()
    results = []
    for i in vec["arrival_order_out_of_order"]:
        for keys in (KEYS, OTHER):  # same message id, two senders: kept apart
            sealed = seal(_chunk_message(keys, chunks[i]), COORD.public)
            msg = decode_message(open_sealed(sealed, COORD.public, COORD.secret))
            results.append(reasm.add(msg))
    assert all(r is None for r in results[:-2])
    done = [r for r in results if r is not None]
    assert [r.participant_pk for r in done] == [KEYS.public, OTHER.public]
    for r in done:
        assert r.payload == payload and r.tag is Tag.Sum and r.message_id == vec["message_id"]
        assert r.coordinator_pk == COORD.public
        assert r.decode_payload() == SumPayload(payload[:64], payload[64:96])
    assert len(reasm) == 0 and reasm.buffered_bytes == 0


# ---------------------------------------------------------------------------------------------
# split_payload and MessageEncoder rules
# ---------------------------------------------------------------------------------------------


def test_split_payload_rules() -> None:
    payload = bytes(range(256)) * 4  # 1024 bytes
    assert split_payload(payload, None) == [payload]
    assert split_payload(payload, 1024 + 184) == [payload]  # fits exactly
    parts = split_payload(payload, 1023 + 184, message_id=0x1234)
    chunks = [ChunkPayload.from_bytes(p) for p in parts]
    assert [len(c.data) for c in chunks] == [1015, 9]
    assert [c.chunk_id for c in chunks] == [0, 1]
    assert [c.last for c in chunks] == [False, True]
    assert {c.message_id for c in chunks} == {0x1234}
    assert parts[1][4] == LAST_CHUNK and parts[0][4] == 0 and parts[0][5:8] == b"\x00\x00\x00"
    # the smallest usable size: max payload 10, 2 data bytes per chunk
    assert len(split_payload(b"x" * 11, MIN_USABLE_MESSAGE_SIZE)) == 6


@pytest.mark.parametrize("size", range(185, 194))
def test_unusable_sizes_rejected(size: int) -> None:
    with pytest.raises(EncodeError, match="minimum usable size is 194"):
        split_payload(b"x" * 100, size)
    with pytest.raises(EncodeError, match="194"):
        MessageEncoder(KEYS, COORD.public, b"x" * 100, Tag.Sum, max_message_size=size)


@pytest.mark.parametrize("size", [0, 123, 184])
def test_sizes_below_minimum_rejected(size: int) -> None:
    with pytest.raises(
        EncodeError, match=f"max_message_size must be at least 185 \\(got {size}\\)"
    ):
        split_payload(b"x", size)


def test_random_message_ids() -> None:
    ids = {ChunkPayload.from_bytes(split_payload(b"x" * 100, 200)[0]).message_id for _ in range(40)}
    assert len(ids) > 30


def test_encoder_misc() -> None:
    enc = MessageEncoder(KEYS, COORD.public, b"\x00" * 96, Tag.Sum)
    assert len(enc) == 1 and not enc.is_multipart
    with pytest.raises(IndexError):
        enc.message(1)
    with pytest.raises(IndexError):
        enc.chunk(0)
    with pytest.raises(EncodeError):
        MessageEncoder(KEYS, COORD.public, ChunkPayload(0, 0, True, b""), Tag.Sum)
    enc = MessageEncoder(KEYS, COORD.public, b"\x00" * 96, Tag.Sum, 194, message_id=7)
    assert len(enc) == 48 and enc.message_id == 7 and enc.chunk_size == 2
    with pytest.raises(IndexError):
        enc.chunk(48)
    with pytest.raises(EncodeError):
        MessageEncoder(KEYS, COORD.public, b"\x00" * 96, Tag.Sum, 194, message_id=65536)


def test_too_many_chunks_rejected() -> None:
    with pytest.raises(EncodeError, match="chunk ids are u16"):
        split_payload(b"\x00" * (2 * 65536 + 1), MIN_USABLE_MESSAGE_SIZE)


# ---------------------------------------------------------------------------------------------
# Reassembler bounds and consistency
# ---------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add(
    reasm: Reassembler, cid: int, mid: int, last: bool, data: bytes, pk: bytes = KEYS.public
) -> Any:
    return reasm.add_chunk(pk, COORD.public, Tag.Sum2, ChunkPayload(cid, mid, last, data))


def test_repeated_chunk_overwrites() -> None:
    reasm = Reassembler()
    assert add(reasm, 0, 1, False, b"aa") is None
    assert add(reasm, 0, 1, False, b"bbb") is None
    assert reasm.buffered_bytes == 3
    result = add(reasm, 1, 1, True, b"c")
    assert result is not None and result.payload == b"bbbc" and result.tag is Tag.Sum2


def test_single_last_chunk_zero_completes() -> None:
    assert add(Reassembler(), 0, 1, True, b"all").payload == b"all"


def test_chunks_beyond_last_rejected() -> None:
    reasm = Reassembler()
    add(reasm, 0, 1, False, b"a")
    add(reasm, 5, 1, False, b"x")
    with pytest.raises(ReassemblyError, match="last chunk 1 but chunk 5 exists"):
        add(reasm, 1, 1, True, b"b")
    assert len(reasm) == 0 and reasm.buffered_bytes == 0
    add(reasm, 2, 2, True, b"z")
    with pytest.raises(ReassemblyError, match="at or after the last chunk"):
        add(reasm, 3, 2, False, b"q")
    add(reasm, 2, 3, True, b"z")
    with pytest.raises(ReassemblyError, match="two last chunks"):
        add(reasm, 1, 3, True, b"q")
    assert len(reasm) == 0


def test_tag_and_coordinator_key_from_first_chunk() -> None:
    reasm = Reassembler()
    reasm.add_chunk(KEYS.public, b"\x0a" * 32, Tag.Update, ChunkPayload(1, 9, True, b"b"))
    result = reasm.add_chunk(KEYS.public, b"\x0b" * 32, Tag.Sum, ChunkPayload(0, 9, False, b"a"))
    assert result is not None and result.tag is Tag.Update and result.coordinator_pk == b"\x0a" * 32


def test_max_age_counts_from_latest_chunk() -> None:
    clock = FakeClock()
    reasm = Reassembler(max_age=10, clock=clock)
    add(reasm, 0, 1, False, b"a")
    clock.now += 8
    add(reasm, 1, 1, False, b"b")  # keeps message 1 alive
    add(reasm, 0, 2, False, b"x", pk=OTHER.public)
    clock.now += 8
    assert reasm.expire() == 0
    clock.now += 3
    assert reasm.expire() == 2 and len(reasm) == 0 and reasm.buffered_bytes == 0
    # an expired message starts over: the old chunks are gone
    assert add(reasm, 2, 1, True, b"c") is None


def test_max_builders_evicts_least_recently_active() -> None:
    reasm = Reassembler(max_builders=3, max_builders_per_participant=10)
    for mid in range(3):
        add(reasm, 0, mid, False, bytes([mid]))
    add(reasm, 1, 0, False, b"\x00")  # message 0 becomes the most recent
    add(reasm, 0, 99, False, b"new")  # evicts message 1, the least recently active
    assert len(reasm) == 3
    assert add(reasm, 1, 1, True, b"!") is None  # message 1 restarted: chunk 0 is missing
    assert add(reasm, 2, 0, True, b"\x02").payload == b"\x00\x00\x02"


def test_per_participant_limit() -> None:
    reasm = Reassembler(max_builders_per_participant=2)
    add(reasm, 0, 1, False, b"a")
    add(reasm, 0, 2, False, b"b")
    add(reasm, 0, 1, False, b"c", pk=OTHER.public)
    add(reasm, 0, 3, False, b"d")  # evicts this participant's oldest (message 1)
    assert len(reasm) == 3
    assert add(reasm, 1, 1, True, b"x", pk=OTHER.public).payload == b"cx"
    assert add(reasm, 1, 2, True, b"x").payload == b"bx"
    assert add(reasm, 1, 1, True, b"x") is None  # message 1 of KEYS was evicted


def test_byte_limit() -> None:
    reasm = Reassembler(max_total_bytes=10)
    add(reasm, 0, 1, False, b"12345")
    add(reasm, 0, 2, False, b"12345")
    assert reasm.buffered_bytes == 10
    add(reasm, 1, 2, False, b"678")  # evicts message 1 to make room
    assert reasm.buffered_bytes == 8 and len(reasm) == 1
    with pytest.raises(ReassemblyError, match="10-byte buffer limit"):
        add(reasm, 2, 2, False, b"abc")  # message 2 alone would need 11 bytes
    assert len(reasm) == 0 and reasm.buffered_bytes == 0


def test_max_chunks_per_message() -> None:
    reasm = Reassembler(max_chunks_per_message=4)
    add(reasm, 0, 1, False, b"a")
    with pytest.raises(ReassemblyError, match="exceeds the limit of 4 chunks"):
        add(reasm, 4, 1, True, b"b")
    assert len(reasm) == 0
    assert add(reasm, 3, 2, True, b"b") is None


def test_reset_drops_everything() -> None:
    reasm = Reassembler()
    add(reasm, 0, 1, False, b"a")
    add(reasm, 0, 2, False, b"b", pk=OTHER.public)
    reasm.reset()
    assert len(reasm) == 0 and reasm.buffered_bytes == 0
    assert add(reasm, 1, 1, True, b"b") is None


def test_add_rejects_non_chunk_messages() -> None:
    raw = encode_message(
        SumPayload(b"\x00" * 64, b"\x00" * 32), None, KEYS.public, KEYS.secret, COORD.public
    )
    with pytest.raises(ReassemblyError):
        Reassembler().add(decode_message(raw))


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        Reassembler(max_builders=0)
    with pytest.raises(ValueError):
        Reassembler(max_age=0)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.binary(min_size=1, max_size=700),
    st.integers(MIN_USABLE_MESSAGE_SIZE, 400),
    st.randoms(use_true_random=False),
    st.integers(0, 65535),
)
def test_split_and_reassemble_in_any_order(
    payload: bytes, max_message_size: int, rnd: Any, mid: int
) -> None:
    parts = split_payload(payload, max_message_size, message_id=mid)
    limit = max_message_size - 184
    if len(payload) <= limit:
        assert parts == [payload]
        return
    assert len(parts) >= 2
    assert all(8 < len(p) <= limit for p in parts)
    chunks = [ChunkPayload.from_bytes(p) for p in parts]
    assert b"".join(c.data for c in chunks) == payload
    arrival = chunks + rnd.sample(chunks, k=min(3, len(chunks)))  # with some duplicates
    rnd.shuffle(arrival)
    reasm = Reassembler()
    results = []
    for c in arrival:
        try:
            results.append(reasm.add_chunk(KEYS.public, COORD.public, Tag.Update, c))
        except ReassemblyError:  # pragma: no cover - must not happen for a faithful split
            raise
    done = [r for r in results if r is not None]
    # complete exactly when the last missing id arrives; later duplicates start a new builder
    assert done and done[0].payload == payload


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=2000), st.integers(MIN_USABLE_MESSAGE_SIZE, 600))
def test_encoder_messages_respect_size_limit(payload: bytes, max_message_size: int) -> None:
    enc = MessageEncoder(KEYS, COORD.public, payload, Tag.Update, max_message_size)
    reasm = Reassembler()
    result = None
    for raw in enc:
        if not enc.is_multipart:
            # random bytes are no Update payload: check the header and signature only
            header = decode_header(raw)
            assert header.tag is Tag.Update and not header.is_multipart
            assert verify(KEYS.public, header.signature, raw[64:]) and raw[136:] == payload
            continue
        assert len(raw) + 48 <= max_message_size
        result = reasm.add(decode_message(raw))
    if enc.is_multipart:
        assert result is not None and result.payload == payload


def test_encoder_from_multipart_state() -> None:
    data = small_update().to_bytes()
    fresh = MessageEncoder(KEYS, COORD.public, small_update(), max_message_size=384, message_id=5)
    restored = MessageEncoder.from_multipart_state(KEYS, COORD.public, data, Tag.Update, 200, 5)
    assert list(restored) == list(fresh)
    assert (restored.max_payload_size, restored.message_id) == (fresh.max_payload_size, 5)
    # a saved multipart encoder whose data fits still sends (one, last) chunk
    one = MessageEncoder.from_multipart_state(KEYS, COORD.public, data, 2, 3728, 9)
    (raw,) = list(one)
    msg = decode_message(raw)
    assert msg.is_multipart and isinstance(msg.payload, ChunkPayload) and msg.payload.last
    with pytest.raises(EncodeError):
        MessageEncoder.from_multipart_state(KEYS, COORD.public, data, 2, 9, 9)
