"""A slow, obviously-correct reference of the v0.11 masking arithmetic, for tests only.

This module is the oracle of the differential tests of the native core. It is written for
readability and fidelity to the original Rust code (xaynet v0.11.0, num-bigint 0.3.1,
num-rational 0.3.2, rand_core 0.6.1, rand_chacha 0.3.0), never for speed:

* plain Python ints and ``fractions.Fraction`` (exact, like ``Ratio<BigInt>``);
* a pure-Python ChaCha20, so that the oracle shares no code with any library under test;
* nothing from numpy and nothing from ``xaynet_sdk`` except the configuration constants of
  ``xaynet_sdk.mask.config`` (orders, shifts, byte sizes), which are checked against the spec
  tables by ``tests/test_reference.py``.

Section numbers refer to ``docs/PROTOCOL.md`` of the spec.
"""

from __future__ import annotations

import math
import operator
import struct
from fractions import Fraction
from typing import Sequence, Tuple, Union

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from xaynet_sdk.mask.config import DataType, MaskConfig

__all__ = [
    "F32_MAX",
    "F64_MAX",
    "MaskTuple",
    "RefConversionError",
    "RefDecodeError",
    "RefHang",
    "RefPrng",
    "chacha20_block",
    "chacha20_keystream",
    "num_rational_cmp",
    "ref_aggregate",
    "ref_bigint_to_float",
    "ref_derive_mask",
    "ref_float_to_ratio_bounded",
    "ref_from_primitives",
    "ref_mask",
    "ref_mask_object_bytes",
    "ref_model_from_bincode",
    "ref_model_to_bincode",
    "ref_ratio_to_primitive",
    "ref_ratios_to_bincode",
    "ref_unmask",
    "to_f32",
]

#: A mask object as plain ints: (vector elements, unit element).
MaskTuple = Tuple[list[int], int]
DataTypeLike = Union[DataType, str]

#: Exact f32::MAX and f64::MAX (the largest finite values), as integers.
F32_MAX: int = (2**24 - 1) * 2**104
F64_MAX: int = (2**53 - 1) * 2**971

_I32_RANGE = (-(2**31), 2**31 - 1)
_I64_RANGE = (-(2**63), 2**63 - 1)


class RefHang(RuntimeError):
    """The original would loop forever here (``ratio_to_float`` with a non-finite quotient, §8.3).

    The reference raises instead, so that a test can assert "the original hangs" without hanging.
    """


class RefConversionError(ValueError):
    """A model weight the original refuses to convert (out of range of the target type, §8.3)."""


class RefDecodeError(ValueError):
    """Bytes that the original's bincode deserializer rejects (§3.1, §3.2, §3.5)."""


def _data_type(data_type: DataTypeLike) -> DataType:
    """Accept ``DataType.F32`` or ``"F32"``, so that tests can pass spec strings directly."""
    if isinstance(data_type, DataType):
        return data_type
    return DataType[data_type]  # KeyError names the bad value


# =============================================================================================
# ChaCha20 (RFC 8439), pure Python (§10.1)
# =============================================================================================

_MASK32 = 0xFFFFFFFF
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"


def _rotl32(v: int, c: int) -> int:
    return ((v << c) & _MASK32) | (v >> (32 - c))


def _quarter_round(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & _MASK32
    s[d] = _rotl32(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _MASK32
    s[b] = _rotl32(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & _MASK32
    s[d] = _rotl32(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _MASK32
    s[b] = _rotl32(s[b] ^ s[c], 7)


def chacha20_block(key: bytes, counter: int, nonce: bytes = b"\0" * 12) -> bytes:
    """One 64-byte ChaCha20 block (RFC 8439 §2.3): 32-bit block counter, 96-bit nonce.

    rand_chacha's ChaCha20Rng uses a 64-bit counter and a 64-bit stream id instead; with stream
    id 0 and fewer than 2**32 blocks the two layouts give the same words (§10.1).
    """
    if len(key) != 32:
        raise ValueError(f"ChaCha20 key must be 32 bytes, got {len(key)}")
    if len(nonce) != 12:
        raise ValueError(f"ChaCha20 nonce must be 12 bytes, got {len(nonce)}")
    if not 0 <= counter <= _MASK32:
        raise ValueError(f"ChaCha20 block counter {counter} out of the 32-bit range")
    init = [
        *_SIGMA,
        *struct.unpack("<8I", key),
        counter,
        *struct.unpack("<3I", nonce),
    ]
    s = list(init)
    for _ in range(10):  # 20 rounds = 10 double rounds
        _quarter_round(s, 0, 4, 8, 12)
        _quarter_round(s, 1, 5, 9, 13)
        _quarter_round(s, 2, 6, 10, 14)
        _quarter_round(s, 3, 7, 11, 15)
        _quarter_round(s, 0, 5, 10, 15)
        _quarter_round(s, 1, 6, 11, 12)
        _quarter_round(s, 2, 7, 8, 13)
        _quarter_round(s, 3, 4, 9, 14)
    return struct.pack("<16I", *((x + y) & _MASK32 for x, y in zip(s, init)))


def chacha20_keystream(key: bytes, nbytes: int) -> bytes:
    """The first ``nbytes`` keystream bytes for ``key``, zero nonce, counter from 0 (§10.1)."""
    nblocks = (nbytes + 63) // 64
    return b"".join(chacha20_block(key, i) for i in range(nblocks))[:nbytes]


# =============================================================================================
# PRNG: rand_core 0.6.1 BlockRng word semantics and rejection sampling (§10.2, §10.3)
# =============================================================================================


class RefPrng:
    """ChaCha20Rng as the masking code consumes it: a stream of 32-bit words.

    ``word_pos`` counts the words consumed so far; ``draws`` counts rejection-sampling
    candidates read by ``generate_integer`` (both for the partial-word vectors).
    """

    def __init__(self, seed: bytes, openssl: bool = False) -> None:
        """``openssl``: take the keystream from OpenSSL, an independent ChaCha20 checked
        against ``chacha20_block`` in the tests, for models too long for the pure-Python one."""
        if len(seed) != 32:
            raise ValueError(f"a PRNG seed must be 32 bytes, got {len(seed)}")
        self._key = bytes(seed)
        self._chunk = 4096 if openssl else 64
        self.word_pos = 0
        self.draws = 0
        self._cached_index = -1
        self._cached_block = b""

    def _keystream(self, start: int, n: int) -> bytes:
        """Keystream bytes ``[start, start + n)``; one cached block suffices: reads only advance."""
        out = bytearray()
        pos, end = start, start + n
        while pos < end:
            index, offset = divmod(pos, self._chunk)
            if index != self._cached_index:
                self._cached_block = self._block(index)
                self._cached_index = index
            take = min(self._chunk - offset, end - pos)
            out += self._cached_block[offset : offset + take]
            pos += take
        return bytes(out)

    def _block(self, index: int) -> bytes:
        if self._chunk == 64:
            return chacha20_block(self._key, index)
        # OpenSSL's 16-byte IV is state words 12..15: rand_chacha's 64-bit counter, stream 0
        iv = struct.pack("<QQ", index * self._chunk // 64, 0)
        encryptor = Cipher(algorithms.ChaCha20(self._key, iv), None).encryptor()
        return encryptor.update(bytes(self._chunk))

    def fill_bytes(self, n: int) -> bytes:
        """The next ``n`` bytes; a partially used last word is discarded, never returned later.

        rand_core 0.6.1 ``fill_via_u32_chunks`` consumes ``ceil(n / 4)`` words (§10.2).
        """
        if n < 0:
            raise ValueError("cannot fill a negative number of bytes")
        out = self._keystream(4 * self.word_pos, n)
        self.word_pos += (n + 3) // 4
        return out

    def generate_integer(self, max_int: int) -> int:
        """Uniform in ``[0, max_int)`` by rejection sampling, as xaynet's ``generate_integer``.

        The candidate length is the minimal little-endian length of ``max_int`` itself (not of
        ``max_int - 1``) and the top bits are not masked (§10.3). ``max_int == 0`` returns 0
        without consuming anything.
        """
        if max_int < 0:
            raise ValueError("generate_integer needs a non-negative bound")
        if max_int == 0:
            return 0
        k = (max_int.bit_length() + 7) // 8
        while True:
            candidate = int.from_bytes(self.fill_bytes(k), "little")
            self.draws += 1
            if candidate < max_int:
                return candidate


# =============================================================================================
# Floats and rationals (§8.1)
# =============================================================================================


def to_f32(x: float) -> float:
    """Round an f64 to f32 (round-half-even), as Rust ``as f32``: overflow gives ±inf.

    ``struct`` does the single correct rounding but raises on overflow instead of returning inf.
    """
    try:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def ref_float_to_ratio_bounded(x: float, data_type: DataTypeLike = DataType.F64) -> Fraction:
    """``float_to_ratio_bounded``: NaN -> 0, ±inf -> ±MAX of the float type, else exact (§8.1).

    The masking scalar uses the f64 version (the default). With ``data_type=F32`` the input is
    first rounded to f32 (``from_primitives_bounded::<f32>``, not used by the Python binding).
    """
    dt = _data_type(data_type)
    if dt is DataType.F32:
        x, fmax = to_f32(x), F32_MAX
    elif dt is DataType.F64:
        fmax = F64_MAX
    else:
        raise ValueError(f"float_to_ratio_bounded needs F32 or F64, not {dt.name}")
    if math.isnan(x):
        return Fraction(0)
    if math.isinf(x):
        return Fraction(fmax if x > 0 else -fmax)
    return Fraction(x)


def ref_from_primitives(values: Sequence[float | int], data_type: DataTypeLike) -> list[Fraction]:
    """``Model::from_primitives`` after the Python binding's extraction (§8.1, §8.2).

    F32 inputs are first rounded to f32 (``as f32``), F64 taken as is, I32/I64 need an exact
    in-range integer. Anything the original rejects (NaN, ±inf, also after the f32 rounding,
    non-integers for I32/I64, out-of-range integers) raises ``ValueError``.
    """
    dt = _data_type(data_type)
    out: list[Fraction] = []
    for i, v in enumerate(values):
        if dt.is_float:
            try:
                f = float(v)
            except (OverflowError, TypeError) as e:
                raise ValueError(f"weight {i}: {v!r} is not an f64: {e}") from None
            if dt is DataType.F32:
                f = to_f32(f)
            if not math.isfinite(f):
                raise ValueError(f"weight {i}: {v!r} is not finite as {dt.name}")
            out.append(Fraction(f))
        else:
            if isinstance(v, float):
                raise ValueError(f"weight {i}: float {v!r} given for integer type {dt.name}")
            try:
                n = operator.index(v)
            except TypeError as e:
                raise ValueError(f"weight {i}: {v!r} is not an integer: {e}") from None
            lo, hi = _I32_RANGE if dt is DataType.I32 else _I64_RANGE
            if not lo <= n <= hi:
                raise ValueError(f"weight {i}: {n} out of range for {dt.name}")
            out.append(Fraction(n))
    return out


def _clamp(x: Fraction, lo: Fraction, hi: Fraction) -> Fraction:
    """``num::clamp``: lo if x < lo, hi if x > hi, else x."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def _trunc(x: Fraction) -> int:
    """``Ratio::to_integer``: the quotient rounded toward zero."""
    q = abs(x.numerator) // x.denominator
    return q if x.numerator >= 0 else -q


# =============================================================================================
# Masking, masks, aggregation, unmasking (§9, §11)
# =============================================================================================


def ref_mask(
    seed: bytes,
    vect_cfg: MaskConfig,
    unit_cfg: MaskConfig,
    scalar: float,
    weights: Sequence[Fraction],
    openssl: bool = False,
) -> MaskTuple:
    """``Masker::mask``: the masked model (vector, unit) of ``weights`` scaled by ``scalar`` (§9).

    The unit's random integer is drawn FIRST, then one per weight. The scalar is clamped to
    ``[0, add_shift]`` of the UNIT config; each scaled weight is clamped to ``±add_shift`` of
    the vector config, shifted, scaled by ``exp_shift`` and truncated, all in exact rationals.
    """
    prng = RefPrng(seed, openssl)
    order_1 = unit_cfg.order
    rand_1 = prng.generate_integer(order_1)

    add_shift_1 = Fraction(unit_cfg.add_shift)
    s = _clamp(ref_float_to_ratio_bounded(scalar), Fraction(0), add_shift_1)

    order_n = vect_cfg.order
    add_shift_n = Fraction(vect_cfg.add_shift)
    exp_shift_n = vect_cfg.exp_shift
    vect: list[int] = []
    for w in weights:
        rand = prng.generate_integer(order_n)
        scaled = _clamp(s * Fraction(w), -add_shift_n, add_shift_n)
        shifted = _trunc((scaled + add_shift_n) * exp_shift_n)
        assert shifted >= 0
        vect.append((shifted + rand) % order_n)

    shifted_1 = _trunc((s + add_shift_1) * unit_cfg.exp_shift)
    unit = (shifted_1 + rand_1) % order_1
    return vect, unit


def ref_derive_mask(seed: bytes, n: int, vect_cfg: MaskConfig, unit_cfg: MaskConfig) -> MaskTuple:
    """``MaskSeed::derive_mask``: the same draws as ``ref_mask``, unit first (§11.1)."""
    prng = RefPrng(seed)
    unit = prng.generate_integer(unit_cfg.order)
    vect = [prng.generate_integer(vect_cfg.order) for _ in range(n)]
    return vect, unit


def ref_aggregate(
    objs: Sequence[MaskTuple],
    vect_cfg: MaskConfig,
    unit_cfg: MaskConfig,
    *,
    check: bool = True,
) -> MaskTuple:
    """``Aggregation``: element-wise sum modulo the order, vector and unit separately (§11.2).

    The first object is adopted as is; no objects gives ``MaskObject::empty`` (empty vector,
    unit 1). With ``check`` each object is validated like ``validate_aggregation`` (equal
    lengths, every number below its order, fewer than ``max_nb_models`` objects before it) and
    a failure raises ``ValueError``; ``check=False`` only does the arithmetic.
    """
    if not objs:
        return [], 1
    order_n, order_1 = vect_cfg.order, unit_cfg.order
    n = len(objs[0][0])
    max_nb = min(vect_cfg.max_nb_models, unit_cfg.max_nb_models)
    acc_vect: list[int] = []
    acc_unit = 0
    for i, (vect, unit) in enumerate(objs):
        if check:
            if len(vect) != n:
                raise ValueError(f"object {i} has {len(vect)} numbers, expected {n}")
            if i >= max_nb:
                raise ValueError(f"object {i}: too many models (max {max_nb})")
            if any(not 0 <= x < order_n for x in vect) or not 0 <= unit < order_1:
                raise ValueError(f"object {i} is invalid: a number is not below its order")
        if i == 0:
            acc_vect, acc_unit = list(vect), unit
        else:
            acc_vect = [(a + b) % order_n for a, b in zip(acc_vect, vect)]
            acc_unit = (acc_unit + unit) % order_1
    return acc_vect, acc_unit


def ref_unmask(
    masked: MaskTuple,
    mask: MaskTuple,
    nb_models: int,
    vect_cfg: MaskConfig,
    unit_cfg: MaskConfig,
) -> list[Fraction]:
    """``Aggregation::unmask``: the scalar-weighted mean of the aggregated models (§11.5).

    Validation as ``validate_unmasking`` raises ``ValueError``. When the unmasked scalar sum is
    0 (all scalars 0) and the model is not empty, ``ZeroDivisionError`` is raised where the
    Rust coordinator panics.
    """
    masked_vect, masked_unit = masked
    mask_vect, mask_unit = mask
    order_n, order_1 = vect_cfg.order, unit_cfg.order
    if nb_models == 0:
        raise ValueError("no model to unmask")
    if nb_models > vect_cfg.max_nb_models or nb_models > unit_cfg.max_nb_models:
        raise ValueError(f"too many models: {nb_models}")
    if len(mask_vect) != len(masked_vect):
        raise ValueError(f"mask has {len(mask_vect)} numbers, masked model {len(masked_vect)}")
    if any(not 0 <= x < order_n for x in mask_vect) or not 0 <= mask_unit < order_1:
        raise ValueError("the mask is invalid: a number is not below its order")

    n_1 = (masked_unit + order_1 - mask_unit) % order_1
    scalar_sum = Fraction(n_1, unit_cfg.exp_shift) - nb_models * unit_cfg.add_shift

    exp_shift_n = vect_cfg.exp_shift
    scaled_add_shift_n = nb_models * vect_cfg.add_shift
    out: list[Fraction] = []
    for m, k in zip(masked_vect, mask_vect):
        n_j = (m + order_n - k) % order_n
        unmasked = Fraction(n_j, exp_shift_n) - scaled_add_shift_n
        out.append(unmasked / scalar_sum)
    return out


# =============================================================================================
# Model -> primitives (§8.3)
# =============================================================================================


def _round_half_even_bits(m: int, bits: int) -> int:
    """``m >= 0`` rounded to ``bits`` significant bits, ties to even: Rust's ``u64 as f32/f64``.

    Done on integers in one step: going through a Python float first would round twice.
    """
    extra = m.bit_length() - bits
    if extra <= 0:
        return m
    q = m >> extra
    rem = m - (q << extra)
    half = 1 << (extra - 1)
    if rem > half or (rem == half and q & 1):
        q += 1
    return q << extra


def ref_bigint_to_float(x: int, data_type: DataTypeLike) -> float:
    """num-bigint 0.3.1 ``to_f32``/``to_f64``: NOT correctly rounded above 2**64.

    The magnitude is truncated to its top 64 bits, that mantissa is rounded half-even to the
    float precision and scaled back; an exponent above ``MAX_EXP`` or an overflow gives ±inf
    (never ``None``). An f32 result is returned widened (exactly) to a Python float.
    """
    dt = _data_type(data_type)
    if dt is DataType.F32:
        precision, max_exp, fmax = 24, 128, F32_MAX
    elif dt is DataType.F64:
        precision, max_exp, fmax = 53, 1024, F64_MAX
    else:
        raise ValueError(f"bigint_to_float needs F32 or F64, not {dt.name}")
    m = abs(x)
    length = m.bit_length()
    if length <= 64:
        mantissa, exponent = m, 0
    else:
        exponent = length - 64
        mantissa = m >> exponent  # truncation, no sticky bit
    if exponent > max_exp:
        magnitude = math.inf
    else:
        value = _round_half_even_bits(mantissa, precision) << exponent
        magnitude = math.inf if value > fmax else float(value)
    return -magnitude if x < 0 else magnitude


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def num_rational_cmp(a_numer: int, a_denom: int, b_numer: int, b_denom: int) -> int:
    """``Ord for Ratio<BigInt>`` of num-rational 0.3.2 on raw (unreduced) ratios: -1, 0 or 1.

    It equals the mathematical comparison when both denominators are positive. With a
    negative denominator its "equal numerators" shortcut can be wrong, for example
    ``MAX/-1 > MAX/1``; ``ratio_to_float`` inherits that, so the reference does too. The
    recursion on reciprocals of the remainders is written as a loop (it can be deep).
    """
    flip = 1
    an, ad, bn, bd = a_numer, a_denom, b_numer, b_denom
    while True:
        if ad == bd:
            ordering = _sign(an - bn)
            return flip * (-ordering if ad < 0 else ordering)
        if an == bn:
            if an == 0:
                return 0
            ordering = _sign(ad - bd)
            return flip * (ordering if an < 0 else -ordering)
        a_int, a_rem = divmod(an, ad)  # floored, remainder has the divisor's sign: div_mod_floor
        b_int, b_rem = divmod(bn, bd)
        if a_int != b_int:
            return flip * _sign(a_int - b_int)
        if a_rem == 0 and b_rem == 0:
            return 0
        if a_rem == 0:
            return -flip
        if b_rem == 0:
            return flip
        # compare the reciprocals of the remaining fractions, in reverse
        an, ad, bn, bd = ad, a_rem, bd, b_rem
        flip = -flip


def ref_ratio_to_primitive(numer: int, denom: int, data_type: DataTypeLike) -> float | int:
    """One weight of ``Model::into_primitives`` on the ratio exactly as received (§8.3).

    * I32/I64: ``to_integer`` (truncation toward zero) then a range check.
    * F32/F64: ``ratio_to_float``: range check against exact ``F::MIN``/``F::MAX`` (with
      num-rational's comparison), then ``bigint_to_float`` of the UNREDUCED numerator and
      denominator, one IEEE division in the target precision; zero if either part is zero.
      A non-finite quotient makes the original loop forever: ``RefHang``.

    Conversion failures raise ``RefConversionError``. ``denom == 0`` cannot come from the wire
    (bincode rejects it) and also raises ``RefConversionError``.
    """
    dt = _data_type(data_type)
    if denom == 0:
        raise RefConversionError("zero denominator")
    if not dt.is_float:
        q = abs(numer) // abs(denom)
        if (numer < 0) != (denom < 0):
            q = -q
        lo, hi = _I32_RANGE if dt is DataType.I32 else _I64_RANGE
        if not lo <= q <= hi:
            raise RefConversionError(f"{numer}/{denom} truncates to {q}, out of range of {dt.name}")
        return q

    fmax = F32_MAX if dt is DataType.F32 else F64_MAX
    if num_rational_cmp(numer, denom, -fmax, 1) < 0 or num_rational_cmp(numer, denom, fmax, 1) > 0:
        raise RefConversionError(f"{numer}/{denom} out of the range of {dt.name}")
    n = ref_bigint_to_float(numer, dt)
    d = ref_bigint_to_float(denom, dt)
    if n == 0 or d == 0:
        return 0.0
    quotient = n / d  # IEEE f64 division; inf/inf is nan, finite/inf is ±0
    if dt is DataType.F32:
        # an f64 quotient of two f32 values, rounded once to f32, is the f32 quotient
        quotient = to_f32(quotient)
    if math.isfinite(quotient):
        return quotient
    raise RefHang(
        f"ratio_to_float loops forever on {numer}/{denom} ({dt.name}: {n} / {d} = {quotient})"
    )


# =============================================================================================
# bincode of the global model (§3.2, §3.5)
# =============================================================================================


def _biguint_to_bincode(m: int) -> bytes:
    """Minimal u32 digits, least significant first, after a u64 count (0 -> empty)."""
    digits: list[int] = []
    while m:
        digits.append(m & _MASK32)
        m >>= 32
    return struct.pack("<Q", len(digits)) + b"".join(struct.pack("<I", d) for d in digits)


def _bigint_to_bincode(x: int) -> bytes:
    return struct.pack("<b", _sign(x)) + _biguint_to_bincode(abs(x))


def ref_ratios_to_bincode(ratios: Sequence[tuple[int, int]]) -> bytes:
    """A ``Model`` from raw (numer, denom) pairs, unreduced and unchecked (even denom 0).

    For tests that feed a decoder what a non-canonical coordinator could send.
    """
    out = [struct.pack("<Q", len(ratios))]
    for numer, denom in ratios:
        out.append(_bigint_to_bincode(numer))
        out.append(_bigint_to_bincode(denom))
    return b"".join(out)


def ref_model_to_bincode(model: Sequence[Fraction]) -> bytes:
    """The body of ``GET /model``: reduced fractions with positive denominators (§3.5)."""
    return ref_ratios_to_bincode([(w.numerator, w.denominator) for w in model])


class _Reader:
    """Sequential bincode reads; running out of bytes is a ``RefDecodeError``."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if len(self.data) - self.pos < n:
            have = len(self.data) - self.pos
            raise RefDecodeError(
                f"truncated {what}: need {n} bytes at offset {self.pos}, have {have}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u64(self, what: str) -> int:
        return int(struct.unpack("<Q", self.take(8, what))[0])

    def biguint(self, what: str) -> int:
        count = self.u64(f"{what} digit count")
        if count * 4 > len(self.data) - self.pos:
            raise RefDecodeError(f"truncated {what}: {count} u32 digits do not fit")
        digits = struct.unpack(f"<{count}I", self.take(4 * count, f"{what} digits"))
        return sum(d << (32 * i) for i, d in enumerate(digits))  # extra zero digits vanish

    def bigint(self, what: str) -> int:
        sign = int(struct.unpack("<b", self.take(1, f"{what} sign"))[0])
        if sign not in (-1, 0, 1):
            raise RefDecodeError(f"invalid {what} sign byte {sign} (must be -1, 0 or 1)")
        magnitude = self.biguint(f"{what} magnitude")
        # BigInt::from_biguint: NoSign forces zero; a zero magnitude forces NoSign
        return sign * magnitude


def ref_model_from_bincode(data: bytes) -> list[tuple[int, int]]:
    """Decode a ``Model`` into raw (numer, denom) pairs, NOT reduced, signs as sent (§3.2).

    Rejects sign bytes other than -1/0/1, a zero denominator and truncation; trailing bytes
    are allowed, like ``bincode::deserialize``. Errors raise ``RefDecodeError``.
    """
    r = _Reader(data)
    count = r.u64("model length")
    out: list[tuple[int, int]] = []
    for i in range(count):
        if len(r.data) - r.pos < 2 * 9:  # every ratio needs at least 18 bytes
            raise RefDecodeError(f"truncated model: weight {i} of {count} missing")
        numer = r.bigint(f"weight {i} numer")
        denom = r.bigint(f"weight {i} denom")
        if denom == 0:
            raise RefDecodeError(f"weight {i}: zero denominator")
        out.append((numer, denom))
    return out


# =============================================================================================
# MaskObject serialization (§7)
# =============================================================================================


def _element_bytes(x: int, cfg: MaskConfig, what: str) -> bytes:
    bpn = cfg.bytes_per_number
    if x < 0 or x.bit_length() > 8 * bpn:
        raise ValueError(f"{what} {x} does not fit in {bpn} bytes ({cfg.name})")
    return x.to_bytes(bpn, "little")


def ref_mask_object_bytes(
    vect: Sequence[int], unit: int, vect_cfg: MaskConfig, unit_cfg: MaskConfig
) -> bytes:
    """``config ‖ count (u32 BE) ‖ elements (LE, bytes_per_number each) ‖ config ‖ unit (LE)``.

    Values are not checked against the order (serialization does not); a value that does not
    fit in ``bytes_per_number`` bytes raises ``ValueError``.
    """
    parts = [vect_cfg.to_bytes(), struct.pack(">I", len(vect))]
    parts += [_element_bytes(x, vect_cfg, f"element {i}") for i, x in enumerate(vect)]
    parts += [unit_cfg.to_bytes(), _element_bytes(unit, unit_cfg, "unit")]
    return b"".join(parts)
