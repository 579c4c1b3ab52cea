"""The C core against the slow pure-Python reference, over all 240 mask configurations.

Every case draws a configuration, a seed and weights (special values included) and demands
bit-identical results: a one-byte difference would make a mixed round fail to unmask.
"""

from __future__ import annotations

import math
import os
import struct
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import (  # noqa: E402
    RefConversionError,
    RefHang,
    RefPrng,
    chacha20_keystream,
    ref_aggregate,
    ref_derive_mask,
    ref_from_primitives,
    ref_mask,
    ref_mask_object_bytes,
    ref_model_to_bincode,
    ref_ratio_to_primitive,
    ref_ratios_to_bincode,
    ref_unmask,
)

from xaynet_sdk import _native  # noqa: E402
from xaynet_sdk.mask import masking  # noqa: E402
from xaynet_sdk.mask.config import DataType, MaskConfig, MaskConfigPair, all_configs  # noqa: E402
from xaynet_sdk.mask.masking import (  # noqa: E402
    Aggregation,
    AggregationError,
    derive_mask,
    mask_model,
    sum_masks,
    unmask,
)
from xaynet_sdk.mask.objects import MaskObject, limbs_to_ints  # noqa: E402

CONFIGS = list(all_configs())
SETTINGS = settings(
    max_examples=int(os.environ.get("XAYNET_DIFF_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

seeds = st.binary(min_size=32, max_size=32)
configs = st.sampled_from(CONFIGS)

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).smallest_subnormal)
F64_MAX = sys.float_info.max
F64_TINY = 5e-324
SPECIAL_FLOATS = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1e-30,
    -1e-30,
    100.0,
    -100.0,
    1e6,
    1e7,
    F32_MAX,
    -F32_MAX,
    F32_TINY,
    -F32_TINY,
    F64_TINY,
    -F64_TINY,
    F64_MAX,
    -F64_MAX,
    1 / 3,
    2.0**-149,
    2.0**-1074,
    1e300,
    -1e300,
]
SPECIAL_SCALARS = [
    0.0,
    1.0,
    0.5,
    1 / 3,
    2.0,
    1e-300,
    5e-324,
    1e300,
    F64_MAX,
    -1.0,
    math.inf,
    -math.inf,
    math.nan,
    100.0,
    1e6,
    2.0**31,
    2.0**63,
]


def weights_for(data_type: DataType) -> st.SearchStrategy[list[float] | list[int]]:
    if data_type is DataType.F32:
        elem = st.one_of(
            st.sampled_from([x for x in SPECIAL_FLOATS if abs(x) <= F32_MAX]),
            st.floats(width=32, allow_nan=False, allow_infinity=False),
        )
    elif data_type is DataType.F64:
        elem = st.one_of(
            st.sampled_from(SPECIAL_FLOATS), st.floats(allow_nan=False, allow_infinity=False)
        )
    elif data_type is DataType.I32:
        elem = st.one_of(
            st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
        )
    else:
        elem = st.one_of(
            st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1)
        )
    return st.lists(elem, min_size=0, max_size=12)  # type: ignore[return-value]


scalars = st.one_of(st.sampled_from(SPECIAL_SCALARS), st.floats())


@SETTINGS
@given(seed=seeds, block=st.integers(0, 2**32 + 5), n=st.integers(0, 3000))
def test_keystream_matches_cryptography(seed: bytes, block: int, n: int) -> None:
    # cryptography's 16-byte nonce is (32-bit counter, 96-bit nonce): below 2^32 blocks the
    # original's 64-bit counter is the same stream
    assume(block + n // 64 + 1 < 2**32)
    nonce = struct.pack("<I", block) + b"\0" * 12
    expected = Cipher(algorithms.ChaCha20(seed, nonce), None).encryptor().update(b"\0" * n)
    assert _native.chacha20_keystream(seed, n, block) == expected


def test_keystream_matches_pure_python() -> None:
    seed = bytes(range(32))
    assert _native.chacha20_keystream(seed, 1000) == chacha20_keystream(seed, 1000)


@SETTINGS
@given(seed=seeds, config=configs, n=st.integers(0, 20), start=st.integers(0, 40))
def test_draw_matches_reference(seed: bytes, config: MaskConfig, n: int, start: int) -> None:
    prng = RefPrng(seed)
    prng.word_pos = start
    expected = [prng.generate_integer(config.order) for _ in range(n)]
    got, word_pos = _native.draw(seed, start, config, n)
    assert limbs_to_ints(got) == expected if n else got.shape == (0, config.limbs)
    assert word_pos == prng.word_pos


@SETTINGS
@given(data=st.data(), seed=seeds, vect=configs, scalar=scalars)
def test_mask_matches_reference(
    data: st.DataObject, seed: bytes, vect: MaskConfig, scalar: float
) -> None:
    # the unit config usually equals the vector's, but the two are independent in the protocol
    unit = data.draw(st.one_of(st.just(vect), configs))
    weights = data.draw(weights_for(vect.data_type))
    array = np.array(weights, dtype=vect.data_type.numpy_dtype)
    exact = ref_from_primitives(array.tolist(), vect.data_type)
    expected_vect, expected_unit = ref_mask(seed, vect, unit, scalar, exact)
    got = mask_model(seed, MaskConfigPair(vect, unit), scalar, array)
    assert limbs_to_ints(got.vect.data) == expected_vect if weights else len(got.vect) == 0
    assert got.unit.value == expected_unit
    assert got.to_bytes() == ref_mask_object_bytes(expected_vect, expected_unit, vect, unit)
    assert got.is_valid()


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_config_masks_like_reference(config: MaskConfig) -> None:
    """One deterministic case per configuration, with extreme weights and a non-dyadic scalar."""
    seed = bytes([CONFIGS.index(config)]) * 32
    if config.data_type.is_float:
        limit = F32_MAX if config.data_type is DataType.F32 else F64_MAX
        weights = [0.0, -0.0, 1 / 3, -2.5, limit, -limit, 1e-40, 7.0]
    else:
        top = 2**31 - 1 if config.data_type is DataType.I32 else 2**63 - 1
        weights = [0, 1, -1, top, -top - 1, 12345]
    array = np.array(weights, dtype=config.data_type.numpy_dtype)
    pair = MaskConfigPair.single(config)
    expected = ref_mask(
        seed, config, config, 1 / 3, ref_from_primitives(array.tolist(), config.data_type)
    )
    got = mask_model(seed, pair, 1 / 3, array)
    assert (limbs_to_ints(got.vect.data), got.unit.value) == expected


# The C core's eight-wide loops (the 12-byte candidate scan, the F64 encoder for two-limb
# numbers) only run on long arrays, so these cases mask hundreds of weights.
WIDE_CONFIGS = [
    c for c in CONFIGS if 9 <= c.draw_bytes <= 12 or (c.data_type is DataType.F64 and c.limbs == 2)
]
WIDE_SCALARS = [1.0, 0.5, 2.0, 2.0**-20, 2.0**-1074, 1 / 3, 0.0, 100.0]


def _long_weights(config: MaskConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """Normal weights at the scale of the bound, with the bound, its neighbours, zeros,
    subnormals and huge values scattered in."""
    dtype = np.dtype(config.data_type.numpy_dtype).type
    if not config.data_type.is_float:
        info = np.iinfo(dtype)
        bound = min(int(config.add_shift), int(info.max))
        values = rng.integers(-bound, bound, size=n, endpoint=True).astype(dtype)
        special = [0, 1, -1, bound, -bound, info.max, info.min]
    else:
        finfo = np.finfo(dtype)
        bound = min(float(config.add_shift), float(finfo.max))
        top = float(finfo.max)
        values = (np.clip(rng.standard_normal(n), -1.4, 1.4) * (0.7 * bound)).astype(dtype)
        special = [0.0, -0.0, bound, -bound, float(finfo.smallest_subnormal), top]
        with np.errstate(over="ignore"):
            for b in (bound, -bound):
                special += [np.nextafter(dtype(b), dtype(0)), np.nextafter(dtype(b), dtype(b) * 2)]
        special = [x for x in special if math.isfinite(x)]
        special += [bound * 2.0**-60, -bound * 2.0**-70, 1 / 3]
    where = rng.integers(0, n, size=min(n, 3 * len(special)))
    values[where] = rng.choice(np.array(special, dtype=dtype), size=len(where))
    return values


@SETTINGS
@given(
    seed=seeds,
    config=st.sampled_from(WIDE_CONFIGS),
    n=st.integers(8, 700),
    scalar=st.sampled_from(WIDE_SCALARS),
    rng_seed=st.integers(0, 2**32),
)
def test_long_models_mask_like_reference(
    seed: bytes, config: MaskConfig, n: int, scalar: float, rng_seed: int
) -> None:
    array = _long_weights(config, np.random.default_rng(rng_seed), n)
    exact = ref_from_primitives(array.tolist(), config.data_type)
    expected = ref_mask(seed, config, config, scalar, exact, openssl=True)
    got = mask_model(seed, MaskConfigPair.single(config), scalar, array)
    assert (limbs_to_ints(got.vect.data), got.unit.value) == expected


@SETTINGS
@given(
    seed=seeds,
    config=st.sampled_from([c for c in CONFIGS if 9 <= c.draw_bytes <= 12]),
    n=st.integers(0, 3000),
    start=st.integers(0, 40),
)
def test_long_draws_match_reference(seed: bytes, config: MaskConfig, n: int, start: int) -> None:
    prng = RefPrng(seed, openssl=True)
    prng.word_pos = start
    expected = [prng.generate_integer(config.order) for _ in range(n)]
    got, word_pos = _native.draw(seed, start, config, n)
    assert (limbs_to_ints(got) if n else [], word_pos) == (expected, prng.word_pos)


@SETTINGS
@given(
    seed=seeds,
    config=configs,
    start=st.integers(0, 40),
    limit=st.integers(0, 600),
    n=st.integers(0, 300),
)
def test_draw_until_stops_before_the_end_word(
    seed: bytes, config: MaskConfig, start: int, limit: int, n: int
) -> None:
    """The numbers of the candidates that start before end_word, at most n, and the word
    after the last candidate read: what the two halves of a split masking rely on."""
    stride = (config.draw_bytes + 3) // 4
    end_word = start + limit
    prng = RefPrng(seed, openssl=True)
    prng.word_pos = start
    expected = []
    while len(expected) < n and prng.word_pos + stride <= end_word:  # candidate by candidate
        candidate = int.from_bytes(prng.fill_bytes(config.draw_bytes), "little")
        if candidate < config.order:
            expected.append(candidate)
    out = np.empty((n, config.limbs), dtype=np.uint64)
    drawn, word_pos = _native.draw_until(seed, start, end_word, config, out)
    assert (limbs_to_ints(out[:drawn]) if drawn else [], word_pos) == (expected, prng.word_pos)


@SETTINGS
@given(
    data=st.data(),
    seed=seeds,
    config=configs,
    scalar=st.sampled_from(WIDE_SCALARS),
    rng_seed=st.integers(0, 2**32),
)
def test_encode_add_in_place_is_mask_vector(
    data: st.DataObject, seed: bytes, config: MaskConfig, scalar: float, rng_seed: int
) -> None:
    n = data.draw(st.integers(0, 600))
    weights = _long_weights(config, np.random.default_rng(rng_seed), max(n, 1))[:n]
    pair = MaskConfigPair.single(config)
    expected = mask_model(seed, pair, scalar, weights, threads=1)
    r_unit, word_pos = _native.draw(seed, 0, config, 1)
    numbers, _ = _native.draw(seed, word_pos, config, n)
    mantissa, exponent = masking._dyadic(masking.clamp_scalar(scalar, config))
    _native.encode_add(config, mantissa, exponent, weights, numbers, numbers)  # out is r
    assert np.array_equal(numbers, expected.vect.data)


@SETTINGS
@given(
    data=st.data(),
    seed=seeds,
    config=configs,
    scalar=st.sampled_from(WIDE_SCALARS),
    rng_seed=st.integers(0, 2**32),
)
def test_split_masking_is_sequential_masking(
    data: st.DataObject, seed: bytes, config: MaskConfig, scalar: float, rng_seed: int
) -> None:
    """Masking on two threads gives the sequential result for every split: a good guess, a
    first part that overruns the split, a gap too small for its numbers, empty parts."""
    n = data.draw(st.integers(0, 800))
    weights = _long_weights(config, np.random.default_rng(rng_seed), max(n, 1))[:n]
    expected = mask_model(seed, MaskConfigPair.single(config), scalar, weights, threads=1)
    split = (
        data.draw(st.integers(0, 4 * n + 8)),
        data.draw(st.integers(-5, n + 5)),
        data.draw(st.integers(0, n + 5)),
    )
    mantissa, exponent = masking._dyadic(masking.clamp_scalar(scalar, config))
    _, word_pos = _native.draw(seed, 0, config, 1)
    got = masking._mask_vector_split(seed, word_pos, config, mantissa, exponent, weights, split)
    assert np.array_equal(got, expected.vect.data)


@SETTINGS
@given(
    seed=seeds,
    config=configs,
    start=st.integers(0, 40),
    limit=st.integers(0, 600),
    n=st.integers(0, 300),
)
def test_draw_add_until_adds_what_draw_until_draws(
    seed: bytes, config: MaskConfig, start: int, limit: int, n: int
) -> None:
    acc, _ = _native.draw(bytes(32), 0, config, n)  # some numbers below the order
    numbers = np.empty((n, config.limbs), dtype=np.uint64)
    expected_count, expected_end = _native.draw_until(seed, start, start + limit, config, numbers)
    expected = acc.copy()
    _native.add_mod(expected[:expected_count], numbers[:expected_count], config)
    count, end = _native.draw_add_until(seed, start, start + limit, config, acc)
    assert (count, end) == (expected_count, expected_end)
    assert np.array_equal(acc, expected)


@SETTINGS
@given(
    data=st.data(),
    vect=configs,
    k=st.sampled_from([1, 3, 5]),
    n=st.integers(0, 700),
)
def test_odd_masks_summed_in_halves_are_summed_in_turn(
    data: st.DataObject, vect: MaskConfig, k: int, n: int
) -> None:
    """Every split of the last mask: a good guess, none (0), past the end, in between."""
    pair = MaskConfigPair.single(vect)
    seed_list = [data.draw(seeds) for _ in range(k)]
    expected = sum_masks(seed_list, n, pair, threads=1)
    split = data.draw(st.one_of(st.integers(0, 4 * n + 8), st.just(0), st.just(10**6)))
    got = masking._sum_masks_in_halves(seed_list, n, pair, split)
    assert got == expected


def test_long_models_and_masks_alike_on_one_and_two_threads() -> None:
    """The public path, with the split guessed: a million weights, both benchmark configs."""
    rng = np.random.default_rng(7)
    for name in ("Integer/F64/B2/M6", "Prime/F32/B0/M3"):
        config = MaskConfig.from_name(name)
        n = masking.PARALLEL_MIN * 3 + 11
        weights = rng.standard_normal(n).astype(config.data_type.numpy_dtype)
        pair = MaskConfigPair.single(config)
        one = mask_model(b"\7" * 32, pair, 1.0, weights, threads=1)
        two = mask_model(b"\7" * 32, pair, 1.0, weights, threads=2)
        assert one.to_bytes() == two.to_bytes()
        seed_list = [bytes([i]) * 32 for i in range(3)]
        assert sum_masks(seed_list, n, pair, threads=2) == sum_masks(seed_list, n, pair, threads=1)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_weight_is_refused(bad: float, dtype: type) -> None:
    config = MaskConfig.from_name("Prime/F32/B0/M3")
    weights = np.array([1.0, bad, 2.0], dtype=dtype)
    with pytest.raises(_native.NonFiniteWeight) as err:
        mask_model(b"\1" * 32, MaskConfigPair.single(config), 1.0, weights)
    assert err.value.index == 1


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("where", [0, 5, -7])
def test_non_finite_weight_index_in_a_long_model(threads: int, where: int) -> None:
    """The index is the weight's in the model, whichever thread's part it falls in."""
    config = MaskConfig.from_name("Integer/F64/B2/M6")
    weights = np.zeros(masking.PARALLEL_MIN + 100)
    weights[where] = math.nan
    with pytest.raises(_native.NonFiniteWeight, match=f"at index {where % len(weights)}") as err:
        mask_model(b"\1" * 32, MaskConfigPair.single(config), 1.0, weights, threads=threads)
    assert err.value.index == where % len(weights)
    assert _native.check_finite(np.zeros(3, dtype=np.float32)) is None
    assert _native.check_finite(np.array([2**62], dtype=np.int64)) is None


@SETTINGS
@given(seed=seeds, vect=configs, n=st.integers(0, 16))
def test_derive_mask_matches_reference(seed: bytes, vect: MaskConfig, n: int) -> None:
    expected = ref_derive_mask(seed, n, vect, vect)
    got = derive_mask(seed, n, MaskConfigPair.single(vect))
    assert (limbs_to_ints(got.vect.data) if n else [], got.unit.value) == expected


@SETTINGS
@given(
    data=st.data(),
    vect=configs,
    n=st.integers(0, 10),
    k=st.integers(0, 5),
    threads=st.integers(1, 3),
)
def test_sum_masks_matches_reference(
    data: st.DataObject, vect: MaskConfig, n: int, k: int, threads: int
) -> None:
    pair = MaskConfigPair.single(vect)
    mask_seeds = [data.draw(seeds) for _ in range(k)]
    got = sum_masks(mask_seeds, n, pair, threads=threads)
    if k == 0:
        assert got == MaskObject.empty(pair)
        return
    expected = ref_aggregate([ref_derive_mask(s, n, vect, vect) for s in mask_seeds], vect, vect)
    assert (limbs_to_ints(got.vect.data) if n else [], got.unit.value) == expected


@SETTINGS
@given(data=st.data(), vect=configs, n=st.integers(1, 8), k=st.integers(1, 4))
def test_round_trip_matches_reference(
    data: st.DataObject, vect: MaskConfig, n: int, k: int
) -> None:
    """Mask k models, aggregate, unmask with the summed masks: the same exact global model."""
    pair = MaskConfigPair.single(vect)
    # small integers are exact in every data type, so the mean can be checked exactly below
    small = st.lists(st.integers(-3, 3), min_size=n, max_size=n)
    models = [np.array(data.draw(small), dtype=vect.data_type.numpy_dtype) for _ in range(k)]
    scalars_ = [data.draw(st.sampled_from([1.0, 0.5, 0.25, 1 / 3])) for _ in range(k)]
    mask_seeds = [data.draw(seeds) for _ in range(k)]
    aggregation = Aggregation(pair, n)
    ref_masked = []
    for seed, model, s in zip(mask_seeds, models, scalars_):
        masked = mask_model(seed, pair, s, model)
        aggregation.validate(masked)
        aggregation.aggregate(masked)
        ref_masked.append(
            ref_mask(seed, vect, vect, s, ref_from_primitives(model.tolist(), vect.data_type))
        )
    mask = sum_masks(mask_seeds, n, pair)
    got = aggregation.unmask(mask)
    ref_masks = [ref_derive_mask(s, n, vect, vect) for s in mask_seeds]
    expected = ref_unmask(
        ref_aggregate(ref_masked, vect, vect), ref_aggregate(ref_masks, vect, vect), k, vect, vect
    )
    assert got == expected
    # and the exact result is the scalar-weighted mean within the configuration's precision
    # (the protocol clamps each scaled weight s*w to the bound, and the scalar to the unit's)
    a = Fraction(vect.add_shift)
    clamped = [min(Fraction(s), a) for s in scalars_]
    s_total = sum(clamped)
    for j in range(n):
        mean = sum(min(max(s * int(m[j]), -a), a) for s, m in zip(clamped, models)) / s_total
        # truncation: up to 1/E per encoded weight, and 1/E per encoded scalar in the divisor
        e_n, e_1 = Fraction(1, vect.exp_shift), Fraction(1, vect.exp_shift)
        bound = (abs(mean) * k * e_1 + k * e_n) / (s_total - k * e_1)
        assert abs(got[j] - mean) <= bound


def test_aggregation_rejects_what_the_original_rejects() -> None:
    pair = MaskConfigPair.single(MaskConfig.from_name("Prime/F32/B0/M3"))
    other = MaskConfigPair.single(MaskConfig.from_name("Prime/F64/B0/M3"))
    agg = Aggregation(pair, 2)
    good = mask_model(b"\2" * 32, pair, 1.0, np.array([0.5, -0.5], dtype=np.float32))
    for bad in (
        mask_model(b"\2" * 32, pair, 1.0, np.array([0.5], dtype=np.float32)),
        mask_model(b"\2" * 32, other, 1.0, np.array([0.5, 1.0])),
        MaskObject.from_ints(pair, [pair.vect.order, 0], 0),
    ):
        with pytest.raises(AggregationError):
            agg.validate(bad)
    agg.validate(good)
    agg.aggregate(good)
    assert agg.nb_models == 1
    with pytest.raises(AggregationError):
        Aggregation(pair, 2).unmask(derive_mask(b"\2" * 32, 2, pair))


def test_unmask_refuses_zero_scalar_sum() -> None:
    pair = MaskConfigPair.single(MaskConfig.from_name("Prime/F32/B0/M3"))
    seed = b"\3" * 32
    masked = mask_model(seed, pair, 0.0, np.array([0.5], dtype=np.float32))
    with pytest.raises(AggregationError):
        unmask(masked, derive_mask(seed, 1, pair), 1)


# ---- global model conversion -------------------------------------------------------------


def _ref_convert(ratios: list[tuple[int, int]], dtype: DataType) -> list[float | int] | str:
    out: list[float | int] = []
    for num, den in ratios:
        try:
            out.append(ref_ratio_to_primitive(num, den, dtype))
        except RefHang:
            return "diverges"
        except RefConversionError:
            return "range"
    return out


bigints = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-(2**1100), 2**1100),
    st.sampled_from(
        [
            0,
            1,
            -1,
            2**24 + 1,
            2**53 + 1,
            2**64 + 2**40 + 1,
            2**128,
            2**129,
            2**1024,
            3 * (2**24 + 1),
        ]
    ),
)


@SETTINGS
@given(
    ratios=st.lists(st.tuples(bigints, bigints.filter(lambda d: d != 0)), max_size=6),
    dtype=st.sampled_from(list(DataType)),
)
def test_model_conversion_matches_reference(ratios: list[tuple[int, int]], dtype: DataType) -> None:
    data = ref_ratios_to_bincode(ratios) + b"trailing"
    expected = _ref_convert(ratios, dtype)
    try:
        got, consumed = _native.model_from_bincode(data, dtype.numpy_dtype)
    except _native.ConversionDiverges:
        assert expected == "diverges"
        return
    except _native.ConversionOutOfRange:
        assert expected == "range"
        return
    assert consumed == len(data) - len(b"trailing")
    assert isinstance(expected, list)
    assert len(got) == len(expected)
    for g, e in zip(got.tolist(), expected):
        assert g == e and math.copysign(1, g) == math.copysign(1, e), (g, e)


@SETTINGS
@given(model=st.lists(st.fractions(), max_size=8))
def test_model_round_trip_through_bincode(model: list[Fraction]) -> None:
    expected = _ref_convert([(f.numerator, f.denominator) for f in model], DataType.F64)
    if expected == "range":  # a weight beyond f64::MAX: the documented error, as the original
        with pytest.raises(_native.ConversionOutOfRange):
            _native.model_from_bincode(ref_model_to_bincode(model), np.float64)
        return
    got, _ = _native.model_from_bincode(ref_model_to_bincode(model), np.float64)
    assert got.tolist() == expected


@SETTINGS
@given(data=st.binary(max_size=200), dtype=st.sampled_from(list(DataType)))
def test_model_decoder_never_crashes(data: bytes, dtype: DataType) -> None:
    try:
        _native.model_from_bincode(data, dtype.numpy_dtype)
    except (_native.MalformedInput, _native.ConversionOutOfRange, _native.ConversionDiverges):
        pass


def test_model_decoder_rejects_zero_denominator_and_bad_sign() -> None:
    good = ref_ratios_to_bincode([(1, 2)])
    one = b"\x01" + (1).to_bytes(8, "little") + (1).to_bytes(4, "little")
    zero_den = (1).to_bytes(8, "little") + one + b"\x00" + (0).to_bytes(8, "little")
    with pytest.raises(_native.MalformedInput):
        _native.model_from_bincode(zero_den, np.float32)
    bad_sign = good[:8] + b"\x02" + good[9:]
    with pytest.raises(_native.MalformedInput):
        _native.model_from_bincode(bad_sign, np.float32)
    with pytest.raises(_native.MalformedInput):
        _native.model_from_bincode(good[:-1], np.float32)


@SETTINGS
@given(data=st.data(), vect=configs, n=st.integers(0, 8), k=st.integers(1, 4))
def test_unmask_to_bincode_equals_the_exact_path(
    data: st.DataObject, vect: MaskConfig, n: int, k: int
) -> None:
    from xaynet_sdk.codec.bincode import encode_model

    pair = MaskConfigPair.single(vect)
    aggregation = Aggregation(pair, n)
    mask_seeds = [data.draw(seeds) for _ in range(k)]
    for seed in mask_seeds:
        weights = data.draw(weights_for(vect.data_type).filter(lambda w: len(w) >= n))[:n]
        scalar = data.draw(st.sampled_from([1.0, 0.5, 1 / 3, 1e-3, 0.0]))
        aggregation.aggregate(mask_model(seed, pair, scalar, weights))
    mask = sum_masks(mask_seeds, n, pair)
    try:
        exact = aggregation.unmask(mask)
    except AggregationError:  # every scalar was zero
        return
    fast = aggregation.unmask_to_bincode(mask)
    if fast is not None:  # None: a quantity exceeds 127 bits, the caller takes the exact path
        assert fast == encode_model((f.numerator, f.denominator) for f in exact)
    if vect.name == "Prime/F32/B0/M3" and k == 1:
        assert fast is not None  # the common case must take the fast path


# ------------------------------------------------------------------------------------------
# Once per configuration, deterministic: derivation, summing, unmasking and the round trip
# over all 240 configurations (the property tests above sample about 60 of them per run).
# ------------------------------------------------------------------------------------------

#: Weights exact in every data type, within every bound (B0 = 1 after the scalar).
_EVERY_N = 5
_EVERY_SCALARS = (1.0, 0.5, 1 / 3)


def _every_case(config: MaskConfig) -> tuple[list[bytes], list[np.ndarray]]:
    """Three mask seeds and three local models, fixed by the configuration's index."""
    index = CONFIGS.index(config)
    mask_seeds = [bytes([index & 0xFF, j, 0x5A]) * 10 + bytes([j, index >> 8]) for j in range(3)]
    if config.data_type.is_float:
        rows = [
            [0.5, -0.25, 1.0, -1.0, 0.0],
            [-0.75, 0.125, 0.0, 1.0, -0.5],
            [1.0, 1.0, -1.0, 0.25, 0.0],
        ]
    else:
        rows = [[1, -1, 0, 1, 0], [0, 1, -1, -1, 1], [1, 0, 1, 0, -1]]
    models = [np.array(r, dtype=config.data_type.numpy_dtype) for r in rows]
    return mask_seeds, models


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_config_derives_masks_like_reference(config: MaskConfig) -> None:
    mask_seeds, _ = _every_case(config)
    pair = MaskConfigPair.single(config)
    for seed in mask_seeds:
        got = derive_mask(seed, _EVERY_N, pair)
        assert (limbs_to_ints(got.vect.data), got.unit.value) == ref_derive_mask(
            seed, _EVERY_N, config, config
        )


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_config_sums_masks_like_reference(config: MaskConfig) -> None:
    mask_seeds, _ = _every_case(config)
    pair = MaskConfigPair.single(config)
    expected = ref_aggregate(
        [ref_derive_mask(s, _EVERY_N, config, config) for s in mask_seeds], config, config
    )
    for threads in (1, 2):
        got = sum_masks(mask_seeds, _EVERY_N, pair, threads=threads)
        assert (limbs_to_ints(got.vect.data), got.unit.value) == expected


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_config_round_trips_and_unmasks_like_reference(config: MaskConfig) -> None:
    """Mask three models, aggregate, unmask with the summed masks: the reference's exact
    global model, the scalar-weighted mean within the configuration's precision, and the
    same bytes on the fast bincode path when it applies."""
    from xaynet_sdk.codec.bincode import encode_model

    mask_seeds, models = _every_case(config)
    pair = MaskConfigPair.single(config)
    aggregation = Aggregation(pair, _EVERY_N)
    ref_masked = []
    for seed, model, s in zip(mask_seeds, models, _EVERY_SCALARS):
        masked = mask_model(seed, pair, s, model)
        aggregation.validate(masked)
        aggregation.aggregate(masked)
        ref_masked.append(
            ref_mask(seed, config, config, s, ref_from_primitives(model.tolist(), config.data_type))
        )
    mask = sum_masks(mask_seeds, _EVERY_N, pair)
    got = aggregation.unmask(mask)
    ref_masks = [ref_derive_mask(s, _EVERY_N, config, config) for s in mask_seeds]
    k = len(mask_seeds)
    expected = ref_unmask(
        ref_aggregate(ref_masked, config, config),
        ref_aggregate(ref_masks, config, config),
        k,
        config,
        config,
    )
    assert got == expected
    a = Fraction(config.add_shift)
    clamped = [min(Fraction(s), a) for s in _EVERY_SCALARS]
    s_total = sum(clamped, Fraction(0))
    e = Fraction(1, config.exp_shift)
    for j in range(_EVERY_N):
        weighted = (min(max(s * Fraction(float(m[j])), -a), a) for s, m in zip(clamped, models))
        mean = sum(weighted, Fraction(0)) / s_total
        assert abs(got[j] - mean) <= (abs(mean) * k * e + k * e) / (s_total - k * e)
    fast = aggregation.unmask_to_bincode(mask)
    if fast is not None:
        assert fast == encode_model((f.numerator, f.denominator) for f in got)
