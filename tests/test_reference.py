"""The pure-Python reference (tests/reference.py) against every relevant spec vector.

The reference is the oracle of the differential tests of the native core, so it must itself be
pinned to the original's captured behaviour: ChaCha20 against RFC 8439 and the ``cryptography``
package, the PRNG against the Rust test and the partial-word vectors, masking against the 12
cases captured from the real participant, model conversion and bincode against the wheel
captures, plus a round-trip property (mask, aggregate, unmask ≈ the scalar-weighted mean).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import (
    F32_MAX,
    F64_MAX,
    RefConversionError,
    RefDecodeError,
    RefHang,
    RefPrng,
    chacha20_block,
    chacha20_keystream,
    num_rational_cmp,
    ref_aggregate,
    ref_bigint_to_float,
    ref_derive_mask,
    ref_float_to_ratio_bounded,
    ref_from_primitives,
    ref_mask,
    ref_mask_object_bytes,
    ref_model_from_bincode,
    ref_model_to_bincode,
    ref_ratio_to_primitive,
    ref_ratios_to_bincode,
    ref_unmask,
    to_f32,
)
from spec_vectors import VECTORS_DIR, load_orders, load_vector

from xaynet_sdk.mask.config import DataType, MaskConfig, all_configs

ALL_CONFIGS = list(all_configs())
SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _words_per_number(cfg: MaskConfig) -> float:
    """Expected keystream words one ``generate_integer`` consumes (rejection rate × draw size)."""
    k = cfg.draw_bytes
    return float(2 ** (8 * k) / cfg.order) * ((k + 3) // 4)


#: Configurations cheap enough for the pure-Python ChaCha inside hypothesis loops.
FAST_CONFIGS = [c for c in ALL_CONFIGS if _words_per_number(c) <= 64]


def _crypto_keystream(key: bytes, nonce16: bytes, n: int) -> bytes:
    """The ``cryptography`` ChaCha20 stream; its 16-byte nonce = LE u32 counter ‖ 96-bit nonce."""
    enc = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor()
    return enc.update(b"\0" * n) + enc.finalize()


def _float_from_json(v: Any) -> float:
    """Vectors spell non-finite floats as strings ("NaN", "inf", "-inf")."""
    return float(v)


# =============================================================================================
# vector location
# =============================================================================================


def test_every_data_file_the_protocol_names_is_in_the_repository() -> None:
    protocol = (Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md").read_text("utf-8")
    named = set(re.findall(r"vectors/([a-z0-9_]+\.json)", protocol)) | {"mask_orders.json"}
    assert len(named) >= 10
    missing = sorted(n for n in named if not (VECTORS_DIR / n).is_file())
    assert not missing, f"docs/PROTOCOL.md names files that tests/vectors lacks: {missing}"


def test_a_missing_vector_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="no_such_vector.json"):
        load_vector("no_such_vector")


def test_load_vector_accepts_suffix() -> None:
    assert load_vector("mask_object") == load_vector("mask_object.json")


# =============================================================================================
# configuration constants the reference relies on (§6, mask_config_table.json, mask_orders.json)
# =============================================================================================


def test_config_constants_match_spec_tables() -> None:
    orders = load_orders()
    table = load_vector("mask_config_table")
    assert table["count"] == len(table["configs"]) == len(orders) == len(ALL_CONFIGS) == 240
    for cfg in ALL_CONFIGS:
        row = table["configs"][cfg.name]
        assert cfg.order == orders[cfg.name], cfg.name
        assert cfg.to_bytes().hex() == row["wire_bytes_hex"], cfg.name
        assert list(cfg.to_indices()) == row["bincode_variant_indices"], cfg.name
        assert cfg.bytes_per_number == row["bytes_per_number"], cfg.name
        assert cfg.bytes_per_number == ((cfg.order - 1).bit_length() + 7) // 8
        assert cfg.add_shift == int(row["add_shift"]), cfg.name
        base, exp = row["exp_shift"].split("^")
        assert cfg.exp_shift == int(base) ** int(exp), cfg.name
        assert cfg.max_nb_models == row["max_nb_models"], cfg.name
        assert cfg.draw_bytes == (cfg.order.bit_length() + 7) // 8


def test_draw_bytes_differs_from_bpn_exactly_for_the_nine_power2_orders() -> None:
    """§10.3's table: k = bpn + 1 exactly when the order is 2**(8m)."""
    expected = {
        "Power2/F32/B4/M12": (12, 11),
        "Power2/F64/B0/M6": (12, 11),
        "Power2/F64/B2/M9": (14, 13),
        "Power2/F64/B6/M12": (17, 16),
        "Power2/F64/Bmax/M3": (265, 264),
        "Power2/I32/B4/M12": (12, 11),
        "Power2/I32/Bmax/M9": (13, 12),
        "Power2/I64/B4/M12": (12, 11),
        "Power2/I64/Bmax/M9": (17, 16),
    }
    got = {
        c.name: (c.draw_bytes, c.bytes_per_number)
        for c in ALL_CONFIGS
        if c.draw_bytes != c.bytes_per_number
    }
    assert got == expected


# =============================================================================================
# ChaCha20 (§10.1)
# =============================================================================================


def test_keystream_zero_key_first_bytes() -> None:
    expected = load_vector("prng_partial_words")["keystream_zero_key_first_16_bytes_hex"]
    assert chacha20_keystream(bytes(32), 16).hex() == expected
    assert expected.startswith("76b8e0ada0f13d90")  # §10.1


def test_chacha20_block_rfc8439_2_3_2() -> None:
    """The block function test vector of RFC 8439 section 2.3.2 (counter 1, nonzero nonce)."""
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a00000000")
    expected = bytes.fromhex(
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )
    assert chacha20_block(key, 1, nonce) == expected


@SLOW
@given(key=st.binary(min_size=32, max_size=32), nbytes=st.integers(0, 300))
def test_keystream_matches_cryptography(key: bytes, nbytes: int) -> None:
    assert chacha20_keystream(key, nbytes) == _crypto_keystream(key, bytes(16), nbytes)


@SLOW
@given(
    key=st.binary(min_size=32, max_size=32),
    counter=st.integers(0, 2**32 - 1),
    nonce=st.binary(min_size=12, max_size=12),
)
def test_block_matches_cryptography(key: bytes, counter: int, nonce: bytes) -> None:
    nonce16 = struct.pack("<I", counter) + nonce
    assert chacha20_block(key, counter, nonce) == _crypto_keystream(key, nonce16, 64)


def test_chacha20_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        chacha20_block(bytes(31), 0)
    with pytest.raises(ValueError):
        chacha20_block(bytes(32), 0, bytes(8))
    with pytest.raises(ValueError):
        chacha20_block(bytes(32), 2**32)


# =============================================================================================
# PRNG (§10.2, §10.3)
# =============================================================================================


def test_generate_integer_rust_vector() -> None:
    v = load_vector("generate_integer")
    max_int = int(v["max_int"])
    assert max_int == (2**128 - 1) ** 2
    assert (max_int.bit_length() + 7) // 8 == v["max_int_byte_length"]
    prng = RefPrng(bytes.fromhex(v["seed_hex"]))
    assert [prng.generate_integer(max_int) for _ in range(5)] == [
        int(x) for x in v["expected_outputs"]
    ]
    assert prng.word_pos == v["derived_words_consumed_after_5_calls"]


@pytest.mark.parametrize(
    "case", load_vector("prng_partial_words")["cases"], ids=["6-byte", "3-byte"]
)
def test_prng_partial_words(case: dict[str, Any]) -> None:
    prng = RefPrng(bytes.fromhex(case["seed_hex"]))
    max_int = int(case["max_int"])
    for out in case["successive_outputs"]:
        assert prng.word_pos == out["word_pos_before"]
        draws_before = prng.draws
        assert prng.generate_integer(max_int) == int(out["value"])
        assert prng.draws - draws_before == out["draws"]
        assert prng.word_pos == out["word_pos_after"]


def test_generate_integer_zero_and_one() -> None:
    prng = RefPrng(bytes(32))
    assert prng.generate_integer(0) == 0
    assert prng.word_pos == 0 and prng.draws == 0
    assert prng.generate_integer(1) == 0  # 1-byte candidates until one is 0
    assert prng.word_pos == prng.draws  # one whole word per 1-byte draw
    with pytest.raises(ValueError):
        prng.generate_integer(-1)


@SLOW
@given(
    seed=st.binary(min_size=32, max_size=32),
    sizes=st.lists(st.integers(0, 40), max_size=12),
)
def test_fill_bytes_discards_partial_words(seed: bytes, sizes: list[int]) -> None:
    """Each fill_bytes(n) starts at a word boundary and skips ceil(n/4) words (§10.2)."""
    total_words = sum((n + 3) // 4 for n in sizes)
    stream = chacha20_keystream(seed, 4 * total_words)
    prng = RefPrng(seed)
    for n in sizes:
        start = 4 * prng.word_pos
        assert prng.fill_bytes(n) == stream[start : start + n]
    assert prng.word_pos == total_words


# =============================================================================================
# Model conversion (§8): model_conversion.json, global_model_conversion_wheel.json
# =============================================================================================

MODEL_CONVERSION = load_vector("model_conversion")


@pytest.mark.parametrize("case", MODEL_CONVERSION["from_primitives"], ids=lambda c: str(c["dtype"]))
def test_from_primitives_and_back(case: dict[str, Any]) -> None:
    model = ref_from_primitives(case["input"], case["dtype"])
    assert model == [Fraction(int(n), int(d)) for n, d in case["model"]]
    back = [ref_ratio_to_primitive(w.numerator, w.denominator, case["dtype"]) for w in model]
    assert back == case["roundtrip"]
    assert all(type(a) is type(b) for a, b in zip(back, case["roundtrip"]))


@pytest.mark.parametrize(
    "case", MODEL_CONVERSION["weird_floats"], ids=lambda c: f"{c['dtype']}-{c['input']}"
)
def test_weird_floats(case: dict[str, Any]) -> None:
    x = _float_from_json(case["input"])
    assert case["from_primitives"] == "error"
    with pytest.raises(ValueError):
        ref_from_primitives([x], case["dtype"])
    n, d = (int(v) for v in case["from_primitives_bounded"])
    assert ref_float_to_ratio_bounded(x, case["dtype"]) == Fraction(n, d)


@pytest.mark.parametrize(
    "case", MODEL_CONVERSION["ratio_to_float"], ids=lambda c: f"{c['dtype']}-{c['ratio'][1]}"
)
def test_ratio_to_float_vectors(case: dict[str, Any]) -> None:
    n, d = (int(v) for v in case["ratio"])
    if "expected_f32_of" in case:
        expected = to_f32(case["expected_f32_of"])
    else:
        expected = case["expected"]
    got = ref_ratio_to_primitive(n, d, case["dtype"])
    assert got == expected and isinstance(got, float)


def test_from_primitives_rejections() -> None:
    with pytest.raises(ValueError):
        ref_from_primitives([1e39], "F32")  # finite f64, inf as f32 (§8.2 step 3)
    assert ref_from_primitives([3.4028235e38], "F32") == [Fraction(F32_MAX)]  # rounds to MAX
    with pytest.raises(ValueError):
        ref_from_primitives([math.nan], "F64")
    with pytest.raises(ValueError):
        ref_from_primitives([1.0], "I32")
    with pytest.raises(ValueError):
        ref_from_primitives([2**31], "I32")
    with pytest.raises(ValueError):
        ref_from_primitives([-(2**63) - 1], "I64")
    assert ref_from_primitives([2**31 - 1, -(2**31)], DataType.I32) == [2**31 - 1, -(2**31)]
    assert ref_from_primitives([0.1], "F32") == [Fraction(13421773, 134217728)]
    assert ref_from_primitives([0.1], "F64") == [Fraction(0.1)]
    assert ref_from_primitives([True, 3], "F64") == [1, 3]  # anything with __float__


def test_float_to_ratio_bounded_scalar() -> None:
    assert ref_float_to_ratio_bounded(math.nan) == 0
    assert ref_float_to_ratio_bounded(math.inf) == F64_MAX
    assert ref_float_to_ratio_bounded(-math.inf) == -F64_MAX
    assert ref_float_to_ratio_bounded(1 / 3) == Fraction(6004799503160661, 2**54)
    assert ref_float_to_ratio_bounded(-0.0) == 0


GLOBAL_MODEL_CASES = load_vector("global_model_conversion_wheel")["cases"]


def _global_model_id(case: dict[str, Any]) -> str:
    return str(case.get("note") or case.get("ratios") or case.get("http_status"))[:40]


@pytest.mark.parametrize("case", GLOBAL_MODEL_CASES, ids=_global_model_id)
def test_global_model_conversion_wheel(case: dict[str, Any]) -> None:
    """Decode the body, then convert weight by weight in order, as ``global_model()`` does."""
    pairs_in: list[tuple[int, int]] | None = None
    if "ratios" in case:
        pairs_in = [(int(n), int(d)) for n, d in case["ratios"]]
        body = ref_ratios_to_bincode(pairs_in)
        if case.get("trailing_garbage"):
            body += b"\xde\xad\xbe\xef"
    elif "raw_hex" in case:
        body = bytes.fromhex(case["raw_hex"])
    else:
        assert set(case) <= {"http_status", "result", "note"} and case["http_status"] != 200
        pytest.skip("HTTP-status case: transport behaviour, nothing to convert")

    expected = case["result"]
    if expected == "GlobalModelUnavailable":
        with pytest.raises(RefDecodeError):
            ref_model_from_bincode(body)
        return
    pairs = ref_model_from_bincode(body)
    if pairs_in is not None:
        assert pairs == pairs_in  # unreduced, signs as sent
    if expected == "HANG":
        with pytest.raises(RefHang):
            for n, d in pairs:
                ref_ratio_to_primitive(n, d, case["dtype"])
    elif expected == "GlobalModelDataTypeMisMatch":
        with pytest.raises(RefConversionError):
            for n, d in pairs:
                ref_ratio_to_primitive(n, d, case["dtype"])
    else:
        got = [ref_ratio_to_primitive(n, d, case["dtype"]) for n, d in pairs]
        assert got == expected
        kind = int if case["dtype"] in ("I32", "I64") else float
        assert all(type(x) is kind for x in got)


def test_global_model_wheel_covers_all_outcomes() -> None:
    results = {str(c["result"]) for c in GLOBAL_MODEL_CASES}
    assert {"HANG", "GlobalModelDataTypeMisMatch", "GlobalModelUnavailable"} <= results
    assert len(GLOBAL_MODEL_CASES) == 22


def test_bigint_to_float_truncates_then_rounds() -> None:
    # §8.3: top 64 bits truncated, then round-half-even (not correctly rounded above 2**64)
    assert ref_bigint_to_float(2**64 + 2**40 + 1, "F32") == 2.0**64
    # rounding the 64-bit mantissa straight to 24 bits, not via f64 (double rounding differs)
    m = 2**62 + 2**38 + 1
    assert ref_bigint_to_float(m, "F32") == 2**62 + 2**39
    assert to_f32(float(m)) == 2.0**62
    assert ref_bigint_to_float(-m, "F32") == -(2**62 + 2**39)
    assert ref_bigint_to_float(0, "F32") == 0.0
    assert ref_bigint_to_float(16777217, "F32") == 16777216.0
    assert ref_bigint_to_float(50331651, "F32") == 50331652.0
    # range: exact MAX converts, 2**128 - 1 rounds up to 2**128 -> inf, huge exponent -> inf
    assert ref_bigint_to_float(F32_MAX, "F32") == float(F32_MAX)
    assert ref_bigint_to_float(2**128 - 1, "F32") == math.inf
    assert ref_bigint_to_float(-(2**300), "F32") == -math.inf
    assert ref_bigint_to_float(F64_MAX, "F64") == float(F64_MAX)
    assert ref_bigint_to_float(2**1024 - 1, "F64") == math.inf
    assert ref_bigint_to_float(3 * 2**1100, DataType.F64) == math.inf
    with pytest.raises(ValueError):
        ref_bigint_to_float(1, "I32")


@given(st.integers(-(2**64), 2**64))
def test_bigint_to_f64_is_correct_below_2_64(x: int) -> None:
    """Below 2**64 nothing is truncated: one correct rounding, like Python's int -> float."""
    assert ref_bigint_to_float(x, "F64") == float(x)


@given(st.integers(0, 2**200), st.integers(0, 2**200), st.sampled_from(["F32", "F64"]))
def test_bigint_to_float_is_monotone(a: int, b: int, dtype: str) -> None:
    lo, hi = min(a, b), max(a, b)
    assert ref_bigint_to_float(lo, dtype) <= ref_bigint_to_float(hi, dtype)


@given(
    st.integers(-(2**53), 2**53),
    st.integers(-(2**53), 2**53).filter(lambda d: d != 0),
)
def test_ratio_to_f64_small_parts_is_the_exact_quotient_rounded(n: int, d: int) -> None:
    """Parts exact in f64: one IEEE division, i.e. the correctly rounded quotient."""
    got = ref_ratio_to_primitive(n, d, "F64")
    assert got == (0.0 if n == 0 else n / d)


@given(
    st.integers(-(2**24), 2**24),
    st.integers(1, 2**24),
)
def test_ratio_to_f32_small_parts_is_the_exact_quotient_rounded(n: int, d: int) -> None:
    got = ref_ratio_to_primitive(n, d, "F32")
    assert got == to_f32(n / d)


def test_ratio_to_primitive_edge_cases() -> None:
    # integers: truncation toward zero, also with a negative denominator; range checks
    assert ref_ratio_to_primitive(7, -2, "I32") == -3
    assert ref_ratio_to_primitive(-7, -2, "I64") == 3
    assert ref_ratio_to_primitive(-(2**31), 1, "I32") == -(2**31)
    assert ref_ratio_to_primitive(2**32 - 1, 2, "I32") == 2**31 - 1
    with pytest.raises(RefConversionError):
        ref_ratio_to_primitive(-(2**31) - 1, 1, "I32")
    with pytest.raises(RefConversionError):
        ref_ratio_to_primitive(2**63, 1, "I64")
    # floats: exact bounds are in range, one past is not
    assert ref_ratio_to_primitive(F32_MAX, 1, "F32") == float(F32_MAX)
    assert ref_ratio_to_primitive(-F64_MAX, 1, "F64") == -float(F64_MAX)
    with pytest.raises(RefConversionError):
        ref_ratio_to_primitive(2 * F32_MAX + 1, 2, "F32")
    # zero numerator (any denominator sign) gives +0.0; tiny negative gives -0.0
    assert math.copysign(1, ref_ratio_to_primitive(0, -5, "F32")) == 1
    tiny = ref_ratio_to_primitive(-3, 2**130, "F32")
    assert tiny == 0 and math.copysign(1, tiny) == -1
    # f32 quotient overflow of in-range ratios: inf -> the original loops
    with pytest.raises(RefHang):
        ref_ratio_to_primitive(2**129, 2**130, "F32")
    with pytest.raises(RefConversionError):
        ref_ratio_to_primitive(1, 0, "F64")


def test_range_check_uses_num_rational_comparison() -> None:
    """num-rational 0.3.2 compares ``MAX/-1`` as GREATER than ``MAX/1`` (equal-numerator
    shortcut ignores the denominators' signs), so ratio_to_float rejects that weight although
    its value, -MAX, is in range. A derived consequence of the source, not a wheel capture."""
    assert num_rational_cmp(F32_MAX, -1, F32_MAX, 1) == 1
    with pytest.raises(RefConversionError):
        ref_ratio_to_primitive(F32_MAX, -1, "F32")
    with pytest.raises(RefConversionError):
        ref_ratio_to_primitive(-F64_MAX, -2, "F64")  # = MAX/2, but "< MIN" for num-rational
    assert ref_ratio_to_primitive(-F32_MAX, 1, "F32") == -float(F32_MAX)
    assert ref_ratio_to_primitive(F32_MAX - 1, -1, "F32") == -float(F32_MAX)


@given(
    st.integers(-(10**30), 10**30),
    st.integers(1, 10**30),
    st.integers(-(10**30), 10**30),
    st.integers(1, 10**30),
)
def test_num_rational_cmp_positive_denominators(an: int, ad: int, bn: int, bd: int) -> None:
    expected = (Fraction(an, ad) > Fraction(bn, bd)) - (Fraction(an, ad) < Fraction(bn, bd))
    assert num_rational_cmp(an, ad, bn, bd) == expected


@given(
    st.integers(-1000, 1000),
    st.integers(-1000, 1000).filter(lambda d: d != 0),
    st.integers(-1000, 1000),
    st.integers(-1000, 1000).filter(lambda d: d != 0),
)
def test_num_rational_cmp_any_signs(an: int, ad: int, bn: int, bd: int) -> None:
    """Exact unless the top-level equal-numerator shortcut meets denominators of both signs."""
    a, b = Fraction(an, ad), Fraction(bn, bd)
    got = num_rational_cmp(an, ad, bn, bd)
    if ad != bd and an == bn and an != 0 and (ad < 0) != (bd < 0):
        # the shortcut orders by the denominators alone, as if both were positive
        by_denom = (ad > bd) - (ad < bd)
        assert got == (by_denom if an < 0 else -by_denom)
    else:
        assert got == (a > b) - (a < b)


def test_num_rational_cmp_deep_recursion() -> None:
    """Consecutive Fibonacci ratios make the longest reciprocal chains: no recursion limit."""
    fib = [1, 1]
    while len(fib) < 3000:
        fib.append(fib[-1] + fib[-2])
    a, b = (fib[-1], fib[-2]), (fib[-3], fib[-4])
    expected = (Fraction(*a) > Fraction(*b)) - (Fraction(*a) < Fraction(*b))
    assert num_rational_cmp(*a, *b) == expected


# =============================================================================================
# bincode of the model (§3.2, §3.5)
# =============================================================================================


@pytest.mark.parametrize("case", load_vector("bincode")["model"], ids=["thirds", "2^64+5"])
def test_bincode_model_vectors(case: dict[str, Any]) -> None:
    """Encode and decode the raw pairs; reduced examples also via ``ref_model_to_bincode``.

    Note: (2**64 + 5) / 7 is NOT reduced (2**64 + 5 = 7 * 2635249153387078803), so that
    example is an encoding of raw pairs; a Fraction would reduce it.
    """
    pairs = [(int(n), int(d)) for n, d in case["ratios"]]
    assert ref_ratios_to_bincode(pairs).hex() == case["bincode_hex"]
    assert ref_model_from_bincode(bytes.fromhex(case["bincode_hex"])) == pairs
    model = [Fraction(n, d) for n, d in pairs]
    if all((w.numerator, w.denominator) == p for w, p in zip(model, pairs)):
        assert ref_model_to_bincode(model).hex() == case["bincode_hex"]


def test_bincode_ratio_example_and_empty() -> None:
    # §3.2: Ratio(1,3) = 01 0100000000000000 01000000 + 01 0100000000000000 03000000
    body = ref_model_to_bincode([Fraction(1, 3)])
    one_third = ["01", "0100000000000000", "01000000", "01", "0100000000000000", "03000000"]
    assert body[8:].hex() == "".join(one_third)
    assert ref_model_to_bincode([]) == bytes.fromhex(load_vector("bincode")["empty_map_or_vec_hex"])
    assert ref_model_from_bincode(bytes(8)) == []
    # zero is sign 0 with an empty magnitude
    assert ref_model_to_bincode([Fraction(0)])[8:17] == bytes(9)


def _bigint_raw(sign: int, digits: list[int]) -> bytes:
    return struct.pack("<bQ", sign, len(digits)) + b"".join(struct.pack("<I", d) for d in digits)


def test_bincode_decoder_normalizations_and_rejections() -> None:
    one = _bigint_raw(1, [1])

    def model(*weights: bytes) -> bytes:
        return struct.pack("<Q", len(weights)) + b"".join(weights)

    # extra zero digits are accepted and vanish; -1 with empty magnitude is zero
    assert ref_model_from_bincode(model(_bigint_raw(1, [5, 0, 0]) + one)) == [(5, 1)]
    assert ref_model_from_bincode(model(_bigint_raw(-1, []) + one)) == [(0, 1)]
    # sign 0 forces zero whatever the magnitude (BigInt::from_biguint)
    assert ref_model_from_bincode(model(_bigint_raw(0, [7]) + one)) == [(0, 1)]
    # negative denominators are kept as sent
    assert ref_model_from_bincode(model(one + _bigint_raw(-1, [2]))) == [(1, -2)]
    for bad_sign in (2, -2, 127):
        with pytest.raises(RefDecodeError):
            ref_model_from_bincode(model(_bigint_raw(bad_sign, [1]) + one))
    for zero_denom in (_bigint_raw(0, []), _bigint_raw(1, [0]), _bigint_raw(0, [3])):
        with pytest.raises(RefDecodeError):
            ref_model_from_bincode(model(one + zero_denom))
    # every strict prefix of a valid body is truncated; trailing bytes are fine
    body = ref_model_to_bincode([Fraction(-(2**70) - 3, 7), Fraction(1, 2**40)])
    for cut in range(len(body)):
        with pytest.raises(RefDecodeError):
            ref_model_from_bincode(body[:cut])
    assert ref_model_from_bincode(body + b"\x01\x02") == [(-(2**70) - 3, 7), (1, 2**40)]
    # an absurd count fails on truncation, without trying to allocate
    with pytest.raises(RefDecodeError):
        ref_model_from_bincode(struct.pack("<Q", 2**64 - 1))
    with pytest.raises(RefDecodeError):
        ref_model_from_bincode(model(struct.pack("<bQ", 1, 2**62) + one))


@given(
    st.lists(
        st.fractions(max_denominator=2**100)
        | st.builds(Fraction, st.integers(-(2**300), 2**300), st.integers(1, 2**300)),
        max_size=8,
    )
)
def test_bincode_model_roundtrip(model: list[Fraction]) -> None:
    body = ref_model_to_bincode(model)
    assert ref_model_from_bincode(body) == [(w.numerator, w.denominator) for w in model]


# =============================================================================================
# MaskObject serialization (§7): mask_object.json
# =============================================================================================


def test_mask_object_vector() -> None:
    v = load_vector("mask_object")
    cfg = MaskConfig.from_name("Integer/I32/B0/M3")
    assert cfg.order == 20000000000001 and cfg.bytes_per_number == 6
    data = [int(x) for x in v["mask_vect"]["data"]]
    unit = int(v["mask_unit"]["data"])
    obj = ref_mask_object_bytes(data, unit, cfg, cfg)
    assert obj.hex() == v["mask_object"]["bytes_hex"]
    assert len(obj) == v["mask_object"]["length"] == 8 + 4 * 6 + 4 + 6
    vect_len = v["mask_vect"]["length"]
    assert obj[:vect_len].hex() == v["mask_vect"]["bytes_hex"]
    assert obj[vect_len:].hex() == v["mask_unit"]["bytes_hex"]
    assert len(obj[vect_len:]) == v["mask_unit"]["length"]


def test_mask_object_bytes_edges() -> None:
    cfg = MaskConfig.from_name("Prime/F32/B0/M3")
    # empty vector (MaskObject::empty: count 0, unit 1)
    expected = "01000003" + "00000000" + "01000003" + "010000000000"
    assert ref_mask_object_bytes([], 1, cfg, cfg).hex() == expected
    # values are not checked against the order, only against the byte width
    assert ref_mask_object_bytes([2**48 - 1], 0, cfg, cfg)[8:14] == b"\xff" * 6
    with pytest.raises(ValueError):
        ref_mask_object_bytes([2**48], 0, cfg, cfg)
    with pytest.raises(ValueError):
        ref_mask_object_bytes([], -1, cfg, cfg)


# =============================================================================================
# Masking (§9): masking_wheel.json, all 12 captured cases
# =============================================================================================

MASKING_CASES = load_vector("masking_wheel")["cases"]


def _wheel_inputs(case: dict[str, Any]) -> tuple[MaskConfig, bytes, float, list[Fraction]]:
    cfg = MaskConfig.from_name(case["config"])
    seed = bytes.fromhex(case["mask_seed_hex"])
    scalar = _float_from_json(case["scalar"])
    # F32: each Python float is first rounded to f32, as the binding's ``as f32`` does
    weights = ref_from_primitives(case["weights_python"], cfg.data_type)
    return cfg, seed, scalar, weights


def test_masking_wheel_has_12_cases() -> None:
    assert len(MASKING_CASES) == 12


@pytest.mark.parametrize(
    "case",
    MASKING_CASES,
    ids=[f"{i}-{c['config']}-{c['scalar']}" for i, c in enumerate(MASKING_CASES)],
)
def test_masking_wheel(case: dict[str, Any]) -> None:
    cfg, seed, scalar, weights = _wheel_inputs(case)
    vect, unit = ref_mask(seed, cfg, cfg, scalar, weights)
    assert vect == [int(x) for x in case["expected_masked_vect"]]
    assert unit == int(case["expected_masked_unit"])
    assert (
        ref_mask_object_bytes(vect, unit, cfg, cfg).hex() == case["expected_mask_object_bytes_hex"]
    )

    # the mask derived from the same seed removes the randomness (§11.1)
    mask = ref_derive_mask(seed, len(weights), cfg, cfg)
    assert all(0 <= x < cfg.order for x in mask[0]) and 0 <= mask[1] < cfg.order
    s = min(max(ref_float_to_ratio_bounded(scalar), Fraction(0)), Fraction(cfg.add_shift))
    a = Fraction(cfg.add_shift)
    for m, k, w in zip(vect, mask[0], weights):
        shifted = (m - k) % cfg.order
        assert shifted == math.floor((min(max(s * w, -a), a) + a) * cfg.exp_shift)
    assert (unit - mask[1]) % cfg.order == math.floor((s + a) * cfg.exp_shift)

    if s == 0:  # scalars 0, NaN and -1: the unmasked scalar sum is 0, the coordinator panics
        with pytest.raises(ZeroDivisionError):
            ref_unmask((vect, unit), mask, 1, cfg, cfg)
        return
    unmasked = ref_unmask((vect, unit), mask, 1, cfg, cfg)
    _assert_close_to_weighted_mean(unmasked, [s], [weights], cfg, cfg)


def test_masking_wheel_needs_f32_rounding() -> None:
    """Masking the unrounded f64 weights does NOT reproduce an F32 capture with 0.1 in it."""
    case = next(
        c for c in MASKING_CASES if c["config"] == "Prime/F32/B0/M3" and 0.1 in c["weights_python"]
    )
    cfg, seed, scalar, _ = _wheel_inputs(case)
    raw = [Fraction(w) for w in case["weights_python"]]
    vect, _ = ref_mask(seed, cfg, cfg, scalar, raw)
    assert vect != [int(x) for x in case["expected_masked_vect"]]


def test_masking_draws_unit_first() -> None:
    """The unit's random integer is the first draw; the vector's follow in order (§9)."""
    cfg = MaskConfig.from_name("Prime/F32/B0/M3")
    seed = bytes(range(32))
    prng = RefPrng(seed)
    r_unit = prng.generate_integer(cfg.order)
    r_vect = [prng.generate_integer(cfg.order) for _ in range(3)]
    assert ref_derive_mask(seed, 3, cfg, cfg) == (r_vect, r_unit)
    # a zero scalar and zero weights: shifted = add_shift * exp_shift, unit shifted the same
    vect, unit = ref_mask(seed, cfg, cfg, 0.0, [Fraction(0)] * 3)
    base = cfg.add_shift * cfg.exp_shift
    assert vect == [(base + r) % cfg.order for r in r_vect]
    assert unit == (base + r_unit) % cfg.order


def test_masking_scalar_clamped_with_unit_config() -> None:
    """With different vect/unit configs the scalar bound is the UNIT's add_shift."""
    vect_cfg = MaskConfig.from_name("Prime/F64/B2/M3")
    unit_cfg = MaskConfig.from_name("Prime/F64/B0/M3")
    seed = bytes([7]) * 32
    w = [Fraction(1)]
    # scalar 50 clamps to 1 (unit B0), so the result equals masking with scalar 1
    assert ref_mask(seed, vect_cfg, unit_cfg, 50.0, w) == ref_mask(seed, vect_cfg, unit_cfg, 1.0, w)
    # the weight bound is the VECTOR's add_shift: 150 clamps to 100
    assert ref_mask(seed, vect_cfg, unit_cfg, 1.0, [Fraction(150)]) == ref_mask(
        seed, vect_cfg, unit_cfg, 1.0, [Fraction(100)]
    )


# =============================================================================================
# Aggregation and unmasking (§11)
# =============================================================================================


def _assert_close_to_weighted_mean(
    unmasked: list[Fraction],
    scalars: list[Fraction],
    models: list[list[Fraction]],
    vect_cfg: MaskConfig,
    unit_cfg: MaskConfig,
) -> None:
    """|W_j - Σ s_i c_ij / Σ s_i| <= (|mean|·N/E_1 + N/E_n) / (Σ s_i - N/E_1), exactly.

    c_ij = clamp(s_i w_ij, ±add_shift_n). Each truncation loses less than 1/exp_shift per
    model, in the numerator (n_j) and in the scalar sum (S); the bound follows from
    W = (T - δ) / (Σs - ε) with 0 <= δ < N/E_n and 0 <= ε < N/E_1.
    """
    n_models = len(models)
    a_n = Fraction(vect_cfg.add_shift)
    total_s = sum(scalars, Fraction(0))
    eps_1 = Fraction(n_models, unit_cfg.exp_shift)
    eps_n = Fraction(n_models, vect_cfg.exp_shift)
    assert total_s > eps_1
    assert len(unmasked) == len(models[0])
    for j, w_j in enumerate(unmasked):
        t = sum((min(max(s * m[j], -a_n), a_n) for s, m in zip(scalars, models)), Fraction(0))
        mean = t / total_s
        tolerance = (abs(mean) * eps_1 + eps_n) / (total_s - eps_1)
        assert abs(w_j - mean) <= tolerance, (j, float(w_j), float(mean))


def _run_round(
    vect_cfg: MaskConfig,
    unit_cfg: MaskConfig,
    scalars: list[float],
    models: list[list[Fraction]],
    seeds: list[bytes],
) -> list[Fraction]:
    """One PET round in the reference: mask, aggregate both sides, unmask."""
    n = len(models[0])
    masked = [ref_mask(sd, vect_cfg, unit_cfg, sc, m) for sd, sc, m in zip(seeds, scalars, models)]
    masks = [ref_derive_mask(sd, n, vect_cfg, unit_cfg) for sd in seeds]
    for v, u in masked + masks:
        assert len(v) == n and all(0 <= x < vect_cfg.order for x in v) and 0 <= u < unit_cfg.order
    agg_masked = ref_aggregate(masked, vect_cfg, unit_cfg)
    agg_mask = ref_aggregate(masks, vect_cfg, unit_cfg)
    return ref_unmask(agg_masked, agg_mask, len(models), vect_cfg, unit_cfg)


def _weights_strategy(cfg: MaskConfig) -> st.SearchStrategy[Any]:
    """Python primitives of the config's data type within ±add_shift (no clamping needed)."""
    a = cfg.add_shift
    if cfg.data_type is DataType.F32:
        bound = float(min(a, F32_MAX))
        return st.floats(-bound, bound, width=32)
    if cfg.data_type is DataType.F64:
        return st.floats(-float(a), float(a))
    lo, hi = (-(2**31), 2**31 - 1) if cfg.data_type is DataType.I32 else (-(2**63), 2**63 - 1)
    return st.integers(max(lo, -a), min(hi, a))


RoundInputs = Tuple[MaskConfig, List[float], List[List[Fraction]], List[bytes]]


@st.composite
def _round_inputs(draw: st.DrawFn) -> RoundInputs:
    cfg = draw(st.sampled_from(FAST_CONFIGS))
    n_models = draw(st.integers(1, 3))
    n = draw(st.integers(0, 4))
    scalars = draw(st.lists(st.floats(2**-10, 1.0), min_size=n_models, max_size=n_models))
    raw = draw(
        st.lists(
            st.lists(_weights_strategy(cfg), min_size=n, max_size=n),
            min_size=n_models,
            max_size=n_models,
        )
    )
    seeds = draw(
        st.lists(
            st.binary(min_size=32, max_size=32), min_size=n_models, max_size=n_models, unique=True
        )
    )
    return cfg, scalars, [ref_from_primitives(m, cfg.data_type) for m in raw], seeds


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(_round_inputs())
def test_roundtrip_is_the_weighted_mean(
    inputs: RoundInputs,
) -> None:
    cfg, scalars, models, seeds = inputs
    unmasked = _run_round(cfg, cfg, scalars, models, seeds)
    _assert_close_to_weighted_mean(unmasked, [Fraction(s) for s in scalars], models, cfg, cfg)


def _deterministic_weights(cfg: MaskConfig) -> list[float | int]:
    """Boundary weights for one config: ±add_shift, beyond it (clamped), zero and a fraction."""
    a = cfg.add_shift
    if cfg.data_type.is_float:
        fmax = F32_MAX if cfg.data_type is DataType.F32 else F64_MAX
        beyond = float(min(2 * a, fmax))
        return [float(a), -beyond, 0.0, -0.3]
    hi = 2**31 - 1 if cfg.data_type is DataType.I32 else 2**63 - 1
    return [min(a, hi), -a, min(2 * a, hi), 0]


@pytest.mark.parametrize("cfg", ALL_CONFIGS, ids=[c.name for c in ALL_CONFIGS])
def test_roundtrip_every_config(cfg: MaskConfig) -> None:
    """Two models on every one of the 240 configs, with bound and out-of-bound weights."""
    weights = ref_from_primitives(_deterministic_weights(cfg), cfg.data_type)
    models = [weights, [-w for w in weights]]
    scalars = [1.0, 0.5]
    seeds = [hashlib.sha256(f"{cfg.name}/{i}".encode()).digest() for i in range(2)]
    unmasked = _run_round(cfg, cfg, scalars, models, seeds)
    _assert_close_to_weighted_mean(unmasked, [Fraction(s) for s in scalars], models, cfg, cfg)


def test_aggregate_rules() -> None:
    cfg = MaskConfig.from_name("Integer/I32/B0/M3")
    o = cfg.order
    assert ref_aggregate([], cfg, cfg) == ([], 1)  # MaskObject::empty
    assert ref_aggregate([([1, 2], 3)], cfg, cfg) == ([1, 2], 3)
    assert ref_aggregate([([o - 1, 2], o - 1), ([5, o - 2], 2)], cfg, cfg) == ([4, 0], 1)
    with pytest.raises(ValueError):
        ref_aggregate([([1, 2], 3), ([1], 3)], cfg, cfg)
    with pytest.raises(ValueError):
        ref_aggregate([([o], 3)], cfg, cfg)
    with pytest.raises(ValueError):
        ref_aggregate([([1], o)], cfg, cfg)
    with pytest.raises(ValueError):
        ref_aggregate([([0], 0)] * 1001, cfg, cfg)  # M3: at most 1000 models
    assert ref_aggregate([([o], o), ([1], 1)], cfg, cfg, check=False) == ([1], 1)


def test_unmask_validation() -> None:
    cfg = MaskConfig.from_name("Integer/I32/B0/M3")
    obj = ([1, 2], 3)
    with pytest.raises(ValueError):
        ref_unmask(obj, obj, 0, cfg, cfg)
    with pytest.raises(ValueError):
        ref_unmask(obj, obj, 1001, cfg, cfg)
    with pytest.raises(ValueError):
        ref_unmask(obj, ([1], 3), 1, cfg, cfg)
    with pytest.raises(ValueError):
        ref_unmask(obj, ([1, cfg.order], 3), 1, cfg, cfg)
    # an empty model never divides, even with a zero scalar sum
    shifted_1 = cfg.add_shift * cfg.exp_shift
    assert ref_unmask(([], shifted_1), ([], 0), 1, cfg, cfg) == []


@settings(max_examples=20, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    start=st.integers(0, 5000),
    sizes=st.lists(st.integers(1, 300), max_size=40),
)
def test_openssl_prng_reads_the_same_words(key: bytes, start: int, sizes: list[int]) -> None:
    pure, fast = RefPrng(key), RefPrng(key, openssl=True)
    pure.word_pos = fast.word_pos = start
    assert [pure.fill_bytes(n) for n in sizes] == [fast.fill_bytes(n) for n in sizes]
    assert pure.word_pos == fast.word_pos
