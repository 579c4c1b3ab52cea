"""Messages: header, payloads, LocalSeedDict, Length-Value items, signing (section 5)."""

from __future__ import annotations

import struct
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from spec_vectors import load_vector

from xaynet_sdk.codec.crypto import (
    EncryptKeyPair,
    SigningKeyPair,
    open_sealed,
    seal,
    sum_signature,
)
from xaynet_sdk.codec.errors import (
    DecodeError,
    EncodeError,
    InvalidSignatureError,
    WrongCoordinatorKeyError,
)
from xaynet_sdk.codec.message import (
    HEADER_LENGTH,
    MULTIPART,
    ChunkPayload,
    Message,
    Sum2Payload,
    SumPayload,
    Tag,
    UpdatePayload,
    decode_header,
    decode_length_value,
    decode_local_seed_dict,
    decode_message,
    decode_payload,
    encode_length_value,
    encode_local_seed_dict,
    encode_message,
    encode_unsigned,
)
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair, all_configs
from xaynet_sdk.mask.objects import MaskObject

MESSAGES = load_vector("messages")
LV = load_vector("length_value")
CHUNK = load_vector("chunk")
E2E = load_vector("e2e_messages_wheel")

FIELDS = {k: bytes.fromhex(v) for k, v in MESSAGES["fields"].items()}
PRIME_F32 = MaskConfigPair.single(MaskConfig.from_name("Prime/F32/B0/M3"))
INTEGER_I32 = MaskConfigPair.single(MaskConfig.from_name("Integer/I32/B0/M3"))
VECTOR_MASK = MaskObject.from_ints(INTEGER_I32, [1, 2, 3, 4], 1)  # mask_object.json
PARTICIPANT = SigningKeyPair.from_seed(bytes(32))
COORDINATOR = EncryptKeyPair.from_seed(b"\x01" * 32)


def h(name: str) -> bytes:
    return bytes.fromhex(MESSAGES[name]["bytes_hex"])


def vector_seed_dict() -> dict[bytes, bytes]:
    return {
        bytes.fromhex(e["key_hex"]): bytes.fromhex(e["encrypted_seed_hex"])
        for e in MESSAGES["local_seed_dict"]["entries"]
    }


def vector_update_payload() -> UpdatePayload:
    return UpdatePayload(
        FIELDS["sum_task_signature"],
        FIELDS["update_task_signature"],
        VECTOR_MASK,
        vector_seed_dict(),
    )


# ---------------------------------------------------------------------------------------------
# messages.json
# ---------------------------------------------------------------------------------------------


def test_sum_payload_vector() -> None:
    payload = SumPayload(FIELDS["sum_task_signature"], FIELDS["ephm_pk"])
    assert payload.to_bytes() == h("sum_payload")
    assert len(h("sum_payload")) == MESSAGES["sum_payload"]["length"] == 96
    assert SumPayload.from_bytes(h("sum_payload")) == payload
    assert SumPayload.from_bytes(h("sum_payload") + b"trailing") == payload


def test_update_payload_vector() -> None:
    raw = h("update_payload")
    assert len(raw) == MESSAGES["update_payload"]["length"]
    decoded = UpdatePayload.from_bytes(raw)
    assert decoded == vector_update_payload()
    assert decoded.masked_model.to_bytes() == VECTOR_MASK.to_bytes()
    # HashMap order is unspecified; the vector's order is the dict's insertion order here
    assert vector_update_payload().to_bytes() == raw


def test_sum2_payload_vector() -> None:
    raw = h("sum2_payload")
    assert len(raw) == MESSAGES["sum2_payload"]["length"]
    payload = Sum2Payload(FIELDS["sum_task_signature"], VECTOR_MASK)
    assert payload.to_bytes() == raw
    assert Sum2Payload.from_bytes(raw) == payload


@pytest.mark.parametrize(
    "name,tag,payload",
    [
        (
            "sum_message",
            Tag.Sum,
            lambda: SumPayload(FIELDS["sum_task_signature"], FIELDS["ephm_pk"]),
        ),
        ("update_message", Tag.Update, vector_update_payload),
        ("sum2_message", Tag.Sum2, lambda: Sum2Payload(FIELDS["sum_task_signature"], VECTOR_MASK)),
    ],
)
def test_message_vectors(name: str, tag: Tag, payload: Callable[[], Any]) -> None:
    raw = h(name)
    assert len(raw) == MESSAGES[name]["length"]
    msg = decode_message(raw, verify=False)
    assert msg.signature == FIELDS["signature"]
    assert msg.participant_pk == FIELDS["participant_pk"]
    assert msg.coordinator_pk == FIELDS["coordinator_pk"]
    assert msg.tag is tag and not msg.is_multipart
    assert msg.payload == payload()
    unsigned = encode_unsigned(payload(), None, FIELDS["participant_pk"], FIELDS["coordinator_pk"])
    assert bytes(unsigned[64:]) == raw[64:]
    assert bytes(unsigned[:64]) == bytes(64)
    # the placeholder signature does not verify
    with pytest.raises(InvalidSignatureError):
        decode_message(raw)


def test_local_seed_dict_vector() -> None:
    raw = h("local_seed_dict")
    assert len(raw) == MESSAGES["local_seed_dict"]["length"] == 228
    assert raw[:4] == b"\x00\x00\x00\xe4"
    assert decode_local_seed_dict(raw) == (vector_seed_dict(), 228)
    assert encode_local_seed_dict(vector_seed_dict()) == raw
    # any entry order decodes to the same dict
    swapped = raw[:4] + raw[4 + 112 :] + raw[4 : 4 + 112]
    assert decode_local_seed_dict(swapped)[0] == vector_seed_dict()
    # bytes after the LV item are not part of it
    assert decode_local_seed_dict(raw + b"\xff" * 5) == (vector_seed_dict(), 228)


def test_invalid_update_seed_dict_vector() -> None:
    with pytest.raises(DecodeError, match="invalid local seed dictionary: trailing bytes"):
        UpdatePayload.from_bytes(h("invalid_update_seed_dict"))


def test_local_seed_dict_errors() -> None:
    raw = h("local_seed_dict")
    entry = raw[4 : 4 + 112]
    with pytest.raises(DecodeError, match="duplicate key"):
        decode_local_seed_dict(struct.pack(">I", 4 + 224) + entry + entry)
    with pytest.raises(DecodeError, match="truncated"):
        decode_local_seed_dict(raw[:3])
    with pytest.raises(DecodeError, match="invalid length 3"):
        decode_local_seed_dict(b"\x00\x00\x00\x03")
    with pytest.raises(DecodeError, match="length field says 228 bytes, have 227"):
        decode_local_seed_dict(raw[:-1])
    assert decode_local_seed_dict(b"\x00\x00\x00\x04") == ({}, 4)
    with pytest.raises(EncodeError, match="encrypted seed must be 80 bytes"):
        encode_local_seed_dict({b"\x00" * 32: b"\x00" * 48})


def test_doc_example_message() -> None:
    raw = h("doc_example_message")
    header = decode_header(raw)
    assert header.length == 200 == len(raw)
    assert header.tag is Tag.Sum and header.flags == 0 and not header.is_multipart
    assert header.signature == b"\x11" * 64
    assert header.participant_pk == b"\x22" * 32 and header.coordinator_pk == b"\x33" * 32
    assert raw[HEADER_LENGTH:] == b"\xaa" * 32 + b"\xbb" * 32
    # its 64-byte payload is too short for a real Sum payload (96 bytes)
    with pytest.raises(DecodeError, match="Sum message: sum payload ephm_pk truncated"):
        decode_message(raw, verify=False)


def test_update_plaintext_size_formula() -> None:
    """Section 5.3: Update plaintext = 280 + n*b + b + 112*k (440 for n=7, b=6, k=1)."""
    mask = MaskObject.from_ints(PRIME_F32, [0] * 7, 0)
    payload = UpdatePayload(b"\x01" * 64, b"\x02" * 64, mask, {b"\x03" * 32: b"\x04" * 80})
    msg = encode_message(
        payload, Tag.Update, PARTICIPANT.public, PARTICIPANT.secret, COORDINATOR.public
    )
    assert len(msg) == 440
    sum2 = Sum2Payload(b"\x01" * 64, MaskObject.from_ints(PRIME_F32, [0] * 4, 0))
    assert (
        len(encode_message(sum2, None, PARTICIPANT.public, PARTICIPANT.secret, COORDINATOR.public))
        == 242
    )


# ---------------------------------------------------------------------------------------------
# length_value.json and chunk.json
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", LV["decode_ok"], ids=lambda c: c["bytes_hex"])
def test_length_value_decode_ok(case: dict[str, Any]) -> None:
    value, end = decode_length_value(bytes.fromhex(case["bytes_hex"]))
    assert value.hex() == case["value_hex"] and end == case["length"]


@pytest.mark.parametrize("case", LV["decode_err"], ids=lambda c: c["why"])
def test_length_value_decode_err(case: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode_length_value(bytes.fromhex(case["bytes_hex"]))


@pytest.mark.parametrize("case", LV["encode"], ids=lambda c: str(c["set_length"]))
def test_length_value_encode(case: dict[str, Any]) -> None:
    item = encode_length_value(bytes.fromhex(case["value_hex"]))
    assert len(item) == case["set_length"]
    before = bytes.fromhex(case["buffer_before_hex"])
    assert (item + before[len(item) :]).hex() == case["buffer_after_hex"]


def test_length_value_at_offset() -> None:
    assert decode_length_value(b"\xee\xee\x00\x00\x00\x05\x01", 2) == (b"\x01", 7)
    with pytest.raises(DecodeError):
        decode_length_value(b"\x00\x00\x00\x05\x01", 4)


def test_chunk_vector() -> None:
    c = CHUNK["chunk"]
    raw = bytes.fromhex(c["bytes_hex"])
    chunk = ChunkPayload.from_bytes(raw)
    assert chunk == ChunkPayload(c["id"], c["message_id"], c["last"], bytes.fromhex(c["data_hex"]))
    assert chunk.to_bytes() == raw and len(raw) == c["length"]
    # unknown chunk flag bits are ignored; the reserved bytes are not checked
    assert ChunkPayload.from_bytes(raw[:4] + b"\xfe\x01\x02\x03" + raw[8:]).last is False
    with pytest.raises(DecodeError, match="need 8 bytes, have 7"):
        ChunkPayload.from_bytes(raw[:7])
    with pytest.raises(EncodeError):
        ChunkPayload(65536, 0, False, b"")


# ---------------------------------------------------------------------------------------------
# e2e_messages_wheel.json: real signatures
# ---------------------------------------------------------------------------------------------


def test_e2e_sum_message() -> None:
    vec = E2E["sum_message"]
    seed = bytes.fromhex(E2E["round_seed_hex"])
    coordinator_pk = bytes.fromhex(E2E["keys"]["coordinator_pk_hex"])
    ephm = EncryptKeyPair.from_seed(bytes(32))
    payload = SumPayload(sum_signature(PARTICIPANT.secret, seed), ephm.public)
    raw = encode_message(payload, Tag.Sum, PARTICIPANT.public, PARTICIPANT.secret, coordinator_pk)
    assert raw.hex() == vec["plaintext_hex"]
    assert len(raw) == vec["length"] == 232
    msg = decode_message(raw, expected_coordinator_pk=coordinator_pk)
    assert msg.tag == vec["tag"] and msg.payload == payload
    assert msg.participant_pk == PARTICIPANT.public
    # the same bytes from raw payload bytes + explicit tag
    assert (
        encode_message(
            payload.to_bytes(), 1, PARTICIPANT.public, PARTICIPANT.secret, coordinator_pk
        )
        == raw
    )


def test_e2e_sum2_message() -> None:
    vec = E2E["sum2_message"]
    seed = bytes.fromhex(E2E["round_seed_hex"])
    coordinator_pk = bytes.fromhex(E2E["keys"]["coordinator_pk_hex"])
    mask = MaskObject.from_ints(
        PRIME_F32, [int(x) for x in vec["aggregated_mask_vect"]], int(vec["aggregated_mask_unit"])
    )
    payload = Sum2Payload(sum_signature(PARTICIPANT.secret, seed), mask)
    raw = encode_message(payload, None, PARTICIPANT.public, PARTICIPANT.secret, coordinator_pk)
    assert raw.hex() == vec["plaintext_hex"]
    assert len(raw) == vec["length"] == 242
    msg = decode_message(raw)
    assert msg.tag == vec["tag"] == Tag.Sum2
    assert isinstance(msg.payload, Sum2Payload) and msg.payload.model_mask == mask
    # and the MaskObject parsed from the vector's own bytes is the same
    parsed, end = MaskObject.from_bytes(bytes.fromhex(vec["plaintext_hex"]), HEADER_LENGTH + 64)
    assert parsed == mask and end == 242


def test_e2e_envelope_roundtrip() -> None:
    coord = EncryptKeyPair.from_seed(
        bytes.fromhex(E2E["keys"]["coordinator_box_keypair_from_seed_hex"])
    )
    plaintext = bytes.fromhex(E2E["sum_message"]["plaintext_hex"])
    sealed = seal(plaintext, coord.public)
    assert len(sealed) == 280
    assert decode_message(open_sealed(sealed, coord.public, coord.secret)).tag is Tag.Sum


# ---------------------------------------------------------------------------------------------
# Header and signature handling
# ---------------------------------------------------------------------------------------------


def signed_sum(**kw: Any) -> bytes:
    payload = SumPayload(b"\x05" * 64, b"\x06" * 32)
    return encode_message(
        payload, None, PARTICIPANT.public, PARTICIPANT.secret, COORDINATOR.public, **kw
    )


def test_bad_signature_and_stale_coordinator_key() -> None:
    raw = bytearray(signed_sum())
    assert decode_message(bytes(raw), expected_coordinator_pk=COORDINATOR.public)
    with pytest.raises(WrongCoordinatorKeyError):
        decode_message(bytes(raw), expected_coordinator_pk=b"\x00" * 32)
    raw[200] ^= 1
    with pytest.raises(InvalidSignatureError, match="signature does not verify"):
        decode_message(bytes(raw))
    assert decode_message(bytes(raw), verify=False)


def test_header_errors() -> None:
    raw = signed_sum()
    with pytest.raises(DecodeError, match="need 136 header bytes, have 135"):
        decode_header(raw[:135])
    with pytest.raises(DecodeError, match="length field says 232 bytes, have 231"):
        decode_message(raw[:231])
    short = bytearray(raw)
    short[128:132] = struct.pack(">I", 100)
    with pytest.raises(DecodeError, match="shorter than the 136-byte header"):
        decode_header(bytes(short))
    for tag in (0, 4, 255):
        bad = bytearray(raw)
        bad[132] = tag
        with pytest.raises(DecodeError, match=f"invalid message tag {tag}"):
            decode_header(bytes(bad))


def test_flags_and_trailing_bytes() -> None:
    raw = signed_sum()
    assert raw[133] == 0 and raw[134:136] == b"\x00\x00"
    # bytes beyond `length` are outside the signature and ignored
    msg = decode_message(raw + b"\x99" * 10)
    assert isinstance(msg.payload, SumPayload)
    # unknown flag bits are ignored when reading (the signature covers them, so re-sign)
    unsigned = encode_unsigned(
        SumPayload(b"\x05" * 64, b"\x06" * 32), None, PARTICIPANT.public, COORDINATOR.public
    )
    unsigned[133] = 0xFE
    from xaynet_sdk.codec.crypto import sign

    unsigned[:64] = sign(PARTICIPANT.secret, bytes(unsigned[64:]))
    assert not decode_message(bytes(unsigned)).is_multipart


def test_multipart_chunk_message() -> None:
    chunk = ChunkPayload(3, 0xBEEF, True, b"chunk data")
    raw = encode_message(
        chunk, Tag.Update, PARTICIPANT.public, PARTICIPANT.secret, COORDINATOR.public
    )
    assert raw[133] == MULTIPART and raw[132] == 2
    msg = decode_message(raw)
    assert msg.is_multipart and msg.tag is Tag.Update and msg.payload == chunk
    # unsigned bytes after `length` never become chunk data
    assert decode_message(raw + b"\x99" * 5).payload == chunk
    # a chunk payload must be at least its 8-byte header
    empty = encode_message(
        b"1234567",
        Tag.Sum,
        PARTICIPANT.public,
        PARTICIPANT.secret,
        COORDINATOR.public,
        multipart=True,
    )
    with pytest.raises(DecodeError, match="chunk payload truncated"):
        decode_message(empty)


def test_encode_errors() -> None:
    pk, sk, cpk = PARTICIPANT.public, PARTICIPANT.secret, COORDINATOR.public
    sum_payload = SumPayload(b"\x05" * 64, b"\x06" * 32)
    with pytest.raises(EncodeError, match="does not match"):
        encode_message(sum_payload, Tag.Update, pk, sk, cpk)
    with pytest.raises(EncodeError, match="MULTIPART"):
        encode_message(sum_payload, None, pk, sk, cpk, multipart=True)
    with pytest.raises(EncodeError, match="needs the tag"):
        encode_message(ChunkPayload(0, 0, True, b""), None, pk, sk, cpk)
    with pytest.raises(EncodeError, match="only be sent with the MULTIPART"):
        encode_message(ChunkPayload(0, 0, True, b""), Tag.Sum, pk, sk, cpk, multipart=False)
    with pytest.raises(EncodeError, match="explicit tag"):
        encode_message(b"raw", None, pk, sk, cpk)
    with pytest.raises(EncodeError, match="invalid message tag 9"):
        encode_message(b"raw", 9, pk, sk, cpk)
    with pytest.raises(EncodeError, match="does not belong"):
        encode_message(sum_payload, None, SigningKeyPair.generate().public, sk, cpk)
    with pytest.raises(EncodeError, match="coordinator_pk must be 32 bytes"):
        encode_message(sum_payload, None, pk, sk, cpk[:5])
    with pytest.raises(EncodeError, match="ephm_pk must be 32 bytes"):
        SumPayload(b"\x05" * 64, b"\x06" * 33)
    with pytest.raises(EncodeError):
        encode_message(12345, Tag.Sum, pk, sk, cpk)  # type: ignore[arg-type]


def test_tag_indices() -> None:
    assert [t.index for t in Tag] == [0, 1, 2]
    assert Tag.from_index(2) is Tag.Sum2
    with pytest.raises(DecodeError):
        Tag.from_index(3)


def test_decode_payload_dispatch() -> None:
    assert isinstance(decode_payload(Tag.Sum, h("sum_payload")), SumPayload)
    assert isinstance(decode_payload(2, h("update_payload")), UpdatePayload)
    assert isinstance(decode_payload(Tag.Sum2, h("sum2_payload")), Sum2Payload)
    assert isinstance(decode_payload(Tag.Sum2, h("sum2_payload"), multipart=True), ChunkPayload)
    with pytest.raises(DecodeError):
        decode_payload(7, h("sum_payload"))


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

b32 = st.binary(min_size=32, max_size=32)
b64 = st.binary(min_size=64, max_size=64)
b80 = st.binary(min_size=80, max_size=80)
SMALL_CONFIGS = [c for c in all_configs() if c.bytes_per_number <= 40]


@st.composite
def mask_objects(draw: st.DrawFn) -> MaskObject:
    vect = draw(st.sampled_from(SMALL_CONFIGS))
    unit = draw(st.sampled_from(SMALL_CONFIGS))
    n = draw(st.integers(0, 6))
    values = draw(st.lists(st.integers(0, vect.order - 1), min_size=n, max_size=n))
    return MaskObject.from_ints(
        MaskConfigPair(vect, unit), values, draw(st.integers(0, unit.order - 1))
    )


@st.composite
def payloads(draw: st.DrawFn) -> SumPayload | UpdatePayload | Sum2Payload:
    kind = draw(st.sampled_from(["sum", "update", "sum2"]))
    if kind == "sum":
        return SumPayload(draw(b64), draw(b32))
    if kind == "sum2":
        return Sum2Payload(draw(b64), draw(mask_objects()))
    return UpdatePayload(
        draw(b64), draw(b64), draw(mask_objects()), draw(st.dictionaries(b32, b80, max_size=4))
    )


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), st.binary(min_size=32, max_size=32), b32)
def test_message_roundtrip(payload: Any, seed: bytes, coordinator_pk: bytes) -> None:
    keys = SigningKeyPair.from_seed(seed)
    raw = encode_message(payload, None, keys.public, keys.secret, coordinator_pk)
    assert len(raw) == HEADER_LENGTH + len(payload.to_bytes())
    msg = decode_message(raw, expected_coordinator_pk=coordinator_pk)
    assert msg == Message(raw[:64], keys.public, coordinator_pk, payload.tag, False, payload)
    assert type(payload).from_bytes(payload.to_bytes()) == payload


@given(st.dictionaries(b32, b80, max_size=6))
def test_local_seed_dict_roundtrip(d: dict[bytes, bytes]) -> None:
    raw = encode_local_seed_dict(d)
    assert len(raw) == 4 + 112 * len(d)
    assert decode_local_seed_dict(raw) == (d, len(raw))


@given(st.integers(0, 65535), st.integers(0, 65535), st.booleans(), st.binary(max_size=50))
def test_chunk_roundtrip(cid: int, mid: int, last: bool, data: bytes) -> None:
    chunk = ChunkPayload(cid, mid, last, data)
    assert ChunkPayload.from_bytes(chunk.to_bytes()) == chunk


DECODERS: dict[str, Callable[[bytes], object]] = {
    "sum": SumPayload.from_bytes,
    "update": UpdatePayload.from_bytes,
    "sum2": Sum2Payload.from_bytes,
    "chunk": ChunkPayload.from_bytes,
    "local_seed_dict": decode_local_seed_dict,
    "length_value": decode_length_value,
    "header": decode_header,
    "message": decode_message,
    "message_unverified": lambda b: decode_message(b, verify=False),
}


def _only_decode_errors(decoder: Callable[[bytes], object], data: bytes) -> None:
    try:
        decoder(data)
    except DecodeError:
        pass


@settings(max_examples=400)
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=600))
def test_decoders_on_random_bytes_raise_only_decode_error(name: str, data: bytes) -> None:
    _only_decode_errors(DECODERS[name], data)


@st.composite
def plausible_messages(draw: st.DrawFn) -> bytes:
    """Random bytes behind a header whose length and tag are right, to reach the payload parsers."""
    body = draw(st.binary(max_size=400))
    tag = draw(st.integers(1, 3))
    flags = draw(st.integers(0, 255))
    header = bytes(128) + struct.pack(">I", HEADER_LENGTH + len(body)) + bytes((tag, flags, 0, 0))
    return header + body


@settings(max_examples=300)
@given(plausible_messages())
def test_plausible_garbage_messages_raise_only_decode_error(raw: bytes) -> None:
    _only_decode_errors(lambda b: decode_message(b, verify=False), raw)


VALID = {
    "sum": (SumPayload.from_bytes, h("sum_payload")),
    "update": (UpdatePayload.from_bytes, h("update_payload")),
    "sum2": (Sum2Payload.from_bytes, h("sum2_payload")),
    "message": (lambda b: decode_message(b, verify=False), h("update_message")),
    "local_seed_dict": (decode_local_seed_dict, h("local_seed_dict")),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_truncation_raises_decode_error(name: str) -> None:
    decoder, raw = VALID[name]
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            decoder(raw[:cut])


@settings(max_examples=400)
@given(st.sampled_from(sorted(VALID)), st.data())
def test_mutated_valid_inputs_raise_only_decode_error(name: str, data: st.DataObject) -> None:
    decoder, raw = VALID[name]
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    assume(bytes(mutated) != raw)
    _only_decode_errors(decoder, bytes(mutated))
