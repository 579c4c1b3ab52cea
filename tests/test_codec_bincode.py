"""bincode layer: section 3 vectors, Reader bounds checks, RoundParameters equality."""

from __future__ import annotations

import math
import struct
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spec_vectors import load_vector

from xaynet_sdk.codec.bincode import (
    ROUND_PARAMETERS_LENGTH,
    Reader,
    RoundParameters,
    decode_sum_dict,
    decode_update_seed_dict,
    encode_bigint,
    encode_biguint,
    encode_model,
    encode_sum_dict,
    encode_update_seed_dict,
    pack_byte_string,
    pack_mask_config,
    pack_u8,
    pack_u16,
    pack_u32,
    pack_u64,
    read_mask_config,
)
from xaynet_sdk.codec.errors import DecodeError, EncodeError
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair, all_configs

BINCODE = load_vector("bincode")
E2E = load_vector("e2e_messages_wheel")

PRIME_F32 = MaskConfig.from_name("Prime/F32/B0/M3")
ALL_CONFIGS = list(all_configs())


def example_params(**changes: Any) -> RoundParameters:
    ex = BINCODE["round_parameters"]["example"]
    fields: dict[str, Any] = dict(
        pk=bytes.fromhex(ex["pk_hex"]),
        sum=ex["sum"],
        update=ex["update"],
        seed=bytes.fromhex(ex["seed_hex"]),
        mask_config=MaskConfigPair.single(MaskConfig.from_name(ex["config"])),
        model_length=ex["model_length"],
    )
    fields.update(changes)
    return RoundParameters(**fields)


# ---------------------------------------------------------------------------------------------
# Vectors
# ---------------------------------------------------------------------------------------------


def test_round_parameters_vector_decodes() -> None:
    ex = BINCODE["round_parameters"]["example"]
    raw = bytes.fromhex(ex["bincode_hex"])
    assert len(raw) == ROUND_PARAMETERS_LENGTH == BINCODE["round_parameters"]["total_length"]
    params = RoundParameters.from_bytes(raw)
    assert params.pk.hex() == ex["pk_hex"]
    assert params.sum == ex["sum"] and params.update == ex["update"]
    assert params.seed.hex() == ex["seed_hex"]
    assert params.mask_config == MaskConfigPair.single(PRIME_F32)
    assert params.model_length == ex["model_length"]
    assert params == example_params()


def test_round_parameters_vector_encodes() -> None:
    assert (
        example_params().to_bytes().hex() == BINCODE["round_parameters"]["example"]["bincode_hex"]
    )


def test_e2e_round_parameters_vector() -> None:
    rp = E2E["round_params"]
    params = RoundParameters.from_bytes(bytes.fromhex(rp["round_params_bincode_hex"]))
    assert params.pk.hex() == rp["pk"] == E2E["keys"]["coordinator_pk_hex"]
    assert params.seed.hex() == rp["seed"] == E2E["round_seed_hex"]
    assert (params.sum, params.update, params.model_length) == (rp["sum"], rp["update"], 4)
    assert params.to_bytes().hex() == rp["round_params_bincode_hex"]


def test_sum_dict_vector() -> None:
    vec = BINCODE["sum_dict"]
    raw = bytes.fromhex(vec["bincode_hex"])
    assert len(raw) == vec["length"]
    expected = {
        bytes.fromhex(e["participant_pk_hex"]): bytes.fromhex(e["ephm_pk_hex"])
        for e in vec["entries"]
    }
    assert decode_sum_dict(raw) == expected
    assert encode_sum_dict(expected) == raw


def test_update_seed_dict_vector() -> None:
    vec = BINCODE["update_seed_dict"]
    raw = bytes.fromhex(vec["bincode_hex"])
    assert len(raw) == vec["length"]
    expected = {
        bytes.fromhex(e["update_pk_hex"]): bytes.fromhex(e["encrypted_seed_hex"])
        for e in vec["entries"]
    }
    assert decode_update_seed_dict(raw) == expected
    assert encode_update_seed_dict(expected) == raw


def test_empty_dicts() -> None:
    empty = bytes.fromhex(BINCODE["empty_map_or_vec_hex"])
    assert decode_sum_dict(empty) == {} and decode_update_seed_dict(empty) == {}
    assert encode_sum_dict({}) == empty and encode_update_seed_dict({}) == empty
    assert encode_model([]) == empty


@pytest.mark.parametrize("case", BINCODE["model"], ids=lambda c: str(len(c["ratios"])))
def test_model_encoder_vector(case: dict[str, Any]) -> None:
    ratios = [(int(n), int(d)) for n, d in case["ratios"]]
    assert encode_model(ratios).hex() == case["bincode_hex"]


def test_bigint_forms() -> None:
    assert encode_biguint(0) == bytes(8)
    assert encode_bigint(0) == bytes(9)
    assert encode_bigint(-1) == b"\xff" + struct.pack("<Q", 1) + struct.pack("<I", 1)
    # section 3.2 example: Ratio(1, 3)
    one_third = "01" + "0100000000000000" + "01000000" + "01" + "0100000000000000" + "03000000"
    assert encode_model([(1, 3)])[8:].hex() == one_third
    assert encode_biguint(2**32) == struct.pack("<Q", 2) + bytes(4) + struct.pack("<I", 1)
    with pytest.raises(EncodeError):
        encode_biguint(-1)


# ---------------------------------------------------------------------------------------------
# RoundParameters details
# ---------------------------------------------------------------------------------------------


def test_round_parameters_truncated_message() -> None:
    raw = example_params().to_bytes()
    with pytest.raises(DecodeError, match=r"round parameters truncated: need 136 bytes, have 40"):
        RoundParameters.from_bytes(raw[:40])


def test_round_parameters_trailing_bytes_allowed() -> None:
    raw = example_params().to_bytes()
    assert RoundParameters.from_bytes(raw + b"\x99" * 7) == example_params()


def test_round_parameters_use_variant_indices_not_wire_bytes() -> None:
    """Bmax is index 4 in bincode (255 only in mask objects); M12 is index 3."""
    config = MaskConfig.from_name("Integer/I64/Bmax/M12")
    raw = example_params(mask_config=MaskConfigPair.single(config)).to_bytes()
    assert raw[96:112] == struct.pack("<4I", 0, 3, 4, 3)
    assert RoundParameters.from_bytes(raw).mask_config.vect == config
    bad = bytearray(raw)
    bad[104:108] = struct.pack("<I", 255)  # the wire byte of Bmax, as an index
    with pytest.raises(DecodeError, match="mask_config.vect"):
        RoundParameters.from_bytes(bytes(bad))


@pytest.mark.parametrize("offset,name", [(0, "pk"), (56, "seed")])
def test_round_parameters_key_length_prefix_must_be_32(offset: int, name: str) -> None:
    bad = bytearray(example_params().to_bytes())
    bad[offset : offset + 8] = struct.pack("<Q", 31)
    with pytest.raises(DecodeError, match=f"round parameters {name}: byte string length 31"):
        RoundParameters.from_bytes(bytes(bad))


def test_round_parameters_equality_like_rust() -> None:
    a = example_params(sum=0.0)
    assert a == example_params(sum=-0.0)
    assert hash(a) == hash(example_params(sum=-0.0))
    nan = example_params(sum=math.nan)
    # NaN != NaN, even for the very same object (tuple comparison would short-cut on identity)
    assert nan != nan
    assert not (nan == nan)
    assert nan != example_params(sum=math.nan)
    assert nan.is_pathological() and not a.is_pathological()
    assert example_params() != example_params(model_length=5)
    assert example_params() != example_params(update=0.8)
    assert example_params() != example_params(seed=bytes(32))
    assert (example_params() == object()) is False


def test_round_parameters_nan_bit_pattern_preserved() -> None:
    raw = bytearray(example_params().to_bytes())
    raw[40:48] = bytes.fromhex("0100000000f8ff7f")  # a NaN with a payload
    params = RoundParameters.from_bytes(bytes(raw))
    assert math.isnan(params.sum)
    assert params.to_bytes() == bytes(raw)


def test_round_parameters_constructor_validates() -> None:
    with pytest.raises(EncodeError, match="pk must be 32 bytes"):
        example_params(pk=b"\x00" * 31)
    with pytest.raises(EncodeError):
        example_params(model_length=-1)
    with pytest.raises(EncodeError):
        example_params(model_length=2**64)
    with pytest.raises(EncodeError):
        example_params(sum="0.5")


def test_round_parameters_repr_is_short() -> None:
    text = repr(example_params())
    assert "Prime/F32/B0/M3" in text and len(text) < 200


# ---------------------------------------------------------------------------------------------
# Reader and dictionaries
# ---------------------------------------------------------------------------------------------


def test_reader_integers_and_bounds() -> None:
    r = Reader(bytes.fromhex("010201040302010807060504030201ff02"))
    assert r.u8("a") == 1
    assert r.u16("b") == 0x0102
    assert r.u32("c") == 0x01020304
    assert r.u64("d") == 0x0102030405060708
    assert r.i8("e") == -1
    with pytest.raises(DecodeError, match="flag: invalid bool byte 2"):
        r.boolean("flag")
    assert r.at_end() and r.remaining == 0
    with pytest.raises(DecodeError, match=r"x truncated: need 8 bytes, have 0"):
        r.u64("x")


def test_reader_option_and_byte_string() -> None:
    r = Reader(b"\x01\x00\x02" + pack_byte_string(b"abc"))
    assert r.option("o1") is True and r.option("o2") is False
    with pytest.raises(DecodeError, match="invalid Option tag 2"):
        r.option("o3")
    assert r.byte_string("s") == b"abc"
    with pytest.raises(DecodeError, match="s truncated"):
        Reader(struct.pack("<Q", 10) + b"abc").byte_string("s")
    with pytest.raises(DecodeError):
        Reader(b"", offset=1)


def test_reader_accepts_buffers_of_other_formats() -> None:
    import array

    r = Reader(memoryview(array.array("I", [1, 2])))
    assert r.remaining == 8 and r.u32("a") == 1


def test_reader_huge_count_fails_fast() -> None:
    raw = struct.pack("<Q", 2**63) + bytes(80)
    with pytest.raises(DecodeError, match="sum dict truncated"):
        decode_sum_dict(raw)
    with pytest.raises(DecodeError, match="update seed dict truncated"):
        decode_update_seed_dict(struct.pack("<Q", 2**64 - 1))


def test_dict_count_one_more_than_present() -> None:
    raw = bytes.fromhex(BINCODE["sum_dict"]["bincode_hex"])
    bad = struct.pack("<Q", 2) + raw[8:]
    with pytest.raises(DecodeError):
        decode_sum_dict(bad)


def test_dict_duplicate_keys_rejected() -> None:
    entry = pack_byte_string(b"\x11" * 32) + pack_byte_string(b"\x22" * 32)
    with pytest.raises(DecodeError, match="sum dict: duplicate key in entry 1"):
        decode_sum_dict(struct.pack("<Q", 2) + entry + entry)


def test_dict_wrong_value_length_rejected() -> None:
    entry = pack_byte_string(b"\x11" * 32) + pack_byte_string(b"\x22" * 79) + b"\x00"
    with pytest.raises(DecodeError, match="entry 0 value: byte string length 79, expected 80"):
        decode_update_seed_dict(struct.pack("<Q", 1) + entry + bytes(40))


def test_dict_trailing_bytes_allowed() -> None:
    raw = bytes.fromhex(BINCODE["sum_dict"]["bincode_hex"])
    assert decode_sum_dict(raw + b"junk") == decode_sum_dict(raw)


def test_dict_encoder_validates() -> None:
    with pytest.raises(EncodeError, match="sum dict key must be 32 bytes"):
        encode_sum_dict({b"\x00": b"\x00" * 32})
    with pytest.raises(EncodeError, match="update seed dict value must be 80 bytes"):
        encode_update_seed_dict({b"\x00" * 32: b"\x00" * 32})


def test_packers_range_checks() -> None:
    assert pack_u8(255) == b"\xff" and pack_u16(1) == b"\x01\x00"
    assert pack_u32(1) == b"\x01\x00\x00\x00" and pack_u64(2**64 - 1) == b"\xff" * 8
    for packer, bad in ((pack_u8, 256), (pack_u16, -1), (pack_u32, 2**32), (pack_u64, 2**64)):
        with pytest.raises(EncodeError):
            packer(bad)
    with pytest.raises(EncodeError):
        pack_u8(True)


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=str)
def test_mask_config_indices_roundtrip(config: MaskConfig) -> None:
    assert read_mask_config(Reader(pack_mask_config(config)), "c") == config


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

keys32 = st.binary(min_size=32, max_size=32)
configs = st.sampled_from(ALL_CONFIGS)


@st.composite
def round_parameters(draw: st.DrawFn) -> RoundParameters:
    return RoundParameters(
        pk=draw(keys32),
        sum=draw(st.floats(allow_nan=False)),
        update=draw(st.floats(allow_nan=False)),
        seed=draw(keys32),
        mask_config=MaskConfigPair(draw(configs), draw(configs)),
        model_length=draw(st.integers(0, 2**64 - 1)),
    )


@given(round_parameters(), st.binary(max_size=16))
def test_round_parameters_roundtrip(params: RoundParameters, trailing: bytes) -> None:
    raw = params.to_bytes()
    assert len(raw) == ROUND_PARAMETERS_LENGTH
    decoded = RoundParameters.from_bytes(raw + trailing)
    assert decoded == params and hash(decoded) == hash(params)
    assert decoded.to_bytes() == raw


@given(st.dictionaries(keys32, keys32, max_size=8))
def test_sum_dict_roundtrip(d: dict[bytes, bytes]) -> None:
    raw = encode_sum_dict(d)
    assert len(raw) == 8 + 80 * len(d)
    assert decode_sum_dict(raw) == d


@given(st.dictionaries(keys32, st.binary(min_size=80, max_size=80), max_size=8))
def test_update_seed_dict_roundtrip(d: dict[bytes, bytes]) -> None:
    raw = encode_update_seed_dict(d)
    assert len(raw) == 8 + 128 * len(d)
    assert decode_update_seed_dict(raw) == d


@given(st.lists(st.tuples(st.integers(), st.integers(min_value=1)), max_size=5))
def test_model_encoder_layout(ratios: list[tuple[int, int]]) -> None:
    """Re-read the encoding with the Reader: count, then (sign, digits) pairs."""
    r = Reader(encode_model(ratios))
    assert r.count("model", 18) == len(ratios)
    for numer, denom in ratios:
        for value in (numer, denom):
            sign = r.i8("sign")
            ndigits = r.u64("digits")
            magnitude = int.from_bytes(r.read_bytes(4 * ndigits, "mag"), "little")
            assert sign * magnitude == value
            assert ndigits == 0 or magnitude >> (32 * (ndigits - 1)) != 0  # minimal
    assert r.at_end()


DECODERS: dict[str, Callable[[bytes], object]] = {
    "round_parameters": RoundParameters.from_bytes,
    "sum_dict": decode_sum_dict,
    "update_seed_dict": decode_update_seed_dict,
}


def _only_decode_errors(decoder: Callable[[bytes], object], data: bytes) -> None:
    try:
        decoder(data)
    except DecodeError:
        pass


@settings(max_examples=300)
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=400))
def test_decoders_on_random_bytes_raise_only_decode_error(name: str, data: bytes) -> None:
    _only_decode_errors(DECODERS[name], data)


@given(round_parameters(), st.data())
def test_round_parameters_truncated_raise_decode_error(
    params: RoundParameters, data: st.DataObject
) -> None:
    raw = params.to_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        RoundParameters.from_bytes(raw[:cut])


@given(
    st.dictionaries(keys32, st.binary(min_size=80, max_size=80), min_size=1, max_size=4), st.data()
)
def test_seed_dict_truncated_or_mutated(d: dict[bytes, bytes], data: st.DataObject) -> None:
    raw = encode_update_seed_dict(d)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        decode_update_seed_dict(raw[:cut])
    mutated = bytearray(raw)
    pos = data.draw(st.integers(0, len(raw) - 1))
    mutated[pos] ^= data.draw(st.integers(1, 255))
    _only_decode_errors(decode_update_seed_dict, bytes(mutated))


@given(st.binary(max_size=64), st.lists(st.sampled_from(["u8", "u16", "u32", "u64", "f64", "i8"])))
def test_reader_never_raises_other_errors(data: bytes, ops: list[str]) -> None:
    r = Reader(data)
    try:
        for op in ops:
            getattr(r, op)("field")
        r.byte_string("tail")
    except DecodeError:
        pass
