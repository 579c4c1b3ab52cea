"""Eligibility: the Rust test vectors, the exact-rational rule and its edge cases (section 4.5)."""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from spec_vectors import load_vector

from xaynet_sdk.codec.crypto import SigningKeyPair, sum_signature, update_signature
from xaynet_sdk.codec.eligibility import eligibility_ratio, is_eligible

VECTORS = load_vector("eligibility")
E2E = load_vector("e2e_messages_wheel")


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: str(c["expected_eligible"]))
def test_rust_vectors(case: dict[str, Any]) -> None:
    sig = bytes.fromhex(case["signature_hex"])
    assert hashlib.sha256(sig).hexdigest() == case["derived_sha256_hex"]
    assert is_eligible(sig, case["threshold"]) is case["expected_eligible"]
    assert eligibility_ratio(sig) == pytest.approx(case["derived_ratio_hash_over_2pow256_minus_1"])


def test_big_endian_reading_would_flip_the_vectors() -> None:
    """Guard against the classic mistake the spec warns about."""
    for case in VECTORS["cases"]:
        h = int.from_bytes(hashlib.sha256(bytes.fromhex(case["signature_hex"])).digest(), "big")
        assert (Fraction(h, 2**256 - 1) <= Fraction(case["threshold"])) is not case[
            "expected_eligible"
        ]


def test_e2e_task_eligibility() -> None:
    keys = SigningKeyPair.from_seed(bytes(32))
    seed = bytes.fromhex(E2E["round_seed_hex"])
    ratios = E2E["derived_eligibility_ratios"]
    s, u = sum_signature(keys.secret, seed), update_signature(keys.secret, seed)
    assert eligibility_ratio(s) == pytest.approx(ratios["sum"])
    assert eligibility_ratio(u) == pytest.approx(ratios["update"])
    assert is_eligible(s, 0.5) and not is_eligible(s, 0.45)
    assert is_eligible(u, 0.9) and not is_eligible(u, 0.72)


def test_edge_probabilities() -> None:
    sig = bytes.fromhex(VECTORS["cases"][1]["signature_hex"])
    assert is_eligible(sig, 1.0)
    assert not is_eligible(sig, 0.0)
    assert not is_eligible(sig, -0.0)
    assert not is_eligible(sig, -1e-300)
    assert is_eligible(sig, 1.0000000000000002)
    assert is_eligible(sig, math.inf)
    assert not is_eligible(sig, -math.inf)
    # NaN: the original would panic; "not eligible" is the documented translation.
    assert not is_eligible(sig, math.nan)


def test_zero_hash_at_zero_probability() -> None:
    """p = 0.0 selects only a zero digest; emulate one by checking the boundary arithmetic."""
    sig = bytes.fromhex(VECTORS["cases"][0]["signature_hex"])
    h = int.from_bytes(hashlib.sha256(sig).digest(), "little")
    p_exact = Fraction(h, 2**256 - 1)
    below = float(p_exact)
    # the float nearest to the exact ratio decides exactly as Fraction comparison does
    assert is_eligible(sig, below) is (p_exact <= Fraction(below))
    assert is_eligible(sig, math.nextafter(below, 2.0))
    assert not is_eligible(sig, math.nextafter(below, -1.0))


@given(st.binary(min_size=64, max_size=64), st.floats(allow_nan=False))
def test_matches_fraction_reference(sig: bytes, p: float) -> None:
    if p < 0:
        expected = False
    elif p > 1:
        expected = True
    else:
        h = int.from_bytes(hashlib.sha256(sig).digest(), "little")
        expected = Fraction(h, 2**256 - 1) <= Fraction(p)
    assert is_eligible(sig, p) is expected
