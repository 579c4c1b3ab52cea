"""Masking, mask derivation, aggregation and unmasking (docs/PROTOCOL.md sections 9 and 11).

Functions over seeds, arrays and mask objects, whose results depend on nothing else. The
per-weight work runs in the C core; what stays here is per-model: the scalar and the unit
(one number each), the checks, and how a long model or many masks are split over threads
(run by :mod:`.parallel`, which owns the threads). Errors are :mod:`.errors`' ones: the C
core's are translated at the public functions here (:func:`.errors.native_errors`).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from .. import _native
from .config import MaskConfig, MaskConfigPair
from .errors import AggregationError, AggregationErrorKind, native_errors
from .objects import MaskObject, MaskUnit, MaskVect, limbs_to_ints
from .parallel import in_parallel, usable_cores

__all__ = [
    "Aggregation",
    "AggregationError",
    "AggregationErrorKind",
    "clamp_scalar",
    "count_clamped",
    "derive_mask",
    "encode_unit",
    "mask_model",
    "sum_masks",
    "unmask",
    "unmask_to_bincode",
]

_F64_MAX = Fraction(2**1024 - 2**971)


def clamp_scalar(scalar: float, unit: MaskConfig) -> Fraction:
    """The scalar as the original uses it: NaN → 0, ±inf → ±f64::MAX, then into [0, add_shift].

    The clamp uses the *unit* configuration's bound, so with B0 scalars above 1 count as 1.
    """
    if math.isnan(scalar):
        s = Fraction(0)
    elif math.isinf(scalar):
        s = _F64_MAX if scalar > 0 else -_F64_MAX
    else:
        s = Fraction(scalar)
    return min(max(s, Fraction(0)), Fraction(unit.add_shift))


def count_clamped(weights: npt.NDArray[Any], scalar: Fraction, config: MaskConfig) -> int:
    """How many of ``scalar * w`` lie beyond ``±add_shift`` and are masked as the bound.

    The original clamps them without a word; a model then trains on a global model it cannot
    see is wrong. Float arithmetic: a weight within a rounding error of the bound may be
    counted either way, which a warning can afford."""
    if scalar <= 0 or weights.size == 0:
        return 0
    limit = config.add_shift / scalar  # exact Fraction, then one rounding
    if weights.dtype.kind in "iu":
        info = np.iinfo(weights.dtype)
        if limit >= max(-int(info.min), int(info.max)):
            return 0
        weights = weights.astype(np.float64)
    elif limit >= float(np.finfo(weights.dtype).max):
        return 0
    bound = float(limit)
    # two reductions without temporaries settle the usual case: nothing beyond the bound
    if -bound <= float(weights.min()) and float(weights.max()) <= bound:
        return 0
    return int(np.count_nonzero(np.abs(weights) > bound))


def _dyadic(value: Fraction) -> tuple[int, int]:
    """``value = mantissa * 2**exponent`` with an odd (or zero) integer mantissa."""
    num, den = value.numerator, value.denominator
    if num == 0:
        return 0, 0
    if den & (den - 1):
        raise ValueError(f"{value} is not a dyadic rational")
    exponent = -(den.bit_length() - 1)
    tz = (num & -num).bit_length() - 1
    return num >> tz, exponent + tz


def encode_unit(scalar: Fraction, unit: MaskConfig) -> int:
    """The fixed-point encoding of the (clamped) scalar: ``floor((s + A) * E)``."""
    return math.floor((scalar + unit.add_shift) * unit.exp_shift)


_WEIGHT_DTYPES = {
    np.dtype(np.float32),
    np.dtype(np.float64),
    np.dtype(np.int32),
    np.dtype(np.int64),
}


@native_errors()
def mask_model(
    seed: bytes,
    configs: MaskConfigPair,
    scalar: float,
    weights: "npt.NDArray[Any] | Sequence[float] | Sequence[int]",
    threads: "int | None" = None,
) -> MaskObject:
    """Mask a model with the PRNG of ``seed``: the unit's random number first, then one per weight.

    An array keeps its dtype (float32, float64, int32 or int64: each value is encoded exactly
    as it is); a list is converted to the configuration's data type first, as the original's
    ``set_model`` does (floats rounded to nearest for F32; out-of-range integers refused).
    From ``PARALLEL_MIN`` weights the draw is split over two threads if ``threads`` (default:
    the usable cores) allows, with the same result.
    """
    if not isinstance(weights, np.ndarray):
        with np.errstate(over="ignore"):  # an overflow to inf is refused below, by name
            weights = np.asarray(weights, dtype=configs.vect.data_type.numpy_dtype)
    if weights.dtype not in _WEIGHT_DTYPES or weights.ndim != 1:
        raise TypeError("weights must be a 1-d float32, float64, int32 or int64 array or a list")
    unit_cfg, vect_cfg = configs.unit, configs.vect
    s = clamp_scalar(scalar, unit_cfg)
    r_unit, word_pos = _native.draw(seed, 0, unit_cfg, 1)
    unit = (encode_unit(s, unit_cfg) + limbs_to_ints(r_unit)[0]) % unit_cfg.order
    mantissa, exponent = _dyadic(s)
    weights = np.ascontiguousarray(weights)
    threads = usable_cores() if threads is None else threads
    if threads < 2 or len(weights) < PARALLEL_MIN:
        vect, _ = _native.mask_vector(seed, word_pos, vect_cfg, mantissa, exponent, weights)
    else:
        vect = _mask_vector_split(seed, word_pos, vect_cfg, mantissa, exponent, weights)
    return MaskObject(MaskVect(vect_cfg, vect), MaskUnit.from_int(unit_cfg, unit))


# Below this many weights a second thread saves nothing (measured by `benchmarks/run.py
# mask`; see the README's performance section).
PARALLEL_MIN = 1 << 17


def _mask_vector_split(
    seed: bytes,
    word_pos: int,
    config: MaskConfig,
    mantissa: int,
    exponent: int,
    weights: npt.NDArray[Any],
    split: "tuple[int, int, int] | None" = None,
) -> npt.NDArray[np.uint64]:
    """``_native.mask_vector`` on two cores, with the same result.

    Masking is bound by the keystream, which is one sequence. But every candidate, accepted
    or not, takes the same number of words, so candidate c starts at a known word whatever
    came before it. The split is the candidate where about half the numbers are expected.
    This thread masks the first ``low`` weights (8 standard deviations fewer than the
    candidates before the split give), then draws the numbers of the candidates left before
    the split (the gap); the other thread draws ``n - low`` numbers from the split on, always
    enough. Joined, they are the sequential draw, and both threads encode the rest. Should the
    guess be wrong (the first part overruns the split, or the gap has more numbers than its
    room: 1 in 10^15), the rest is drawn in turn. ``split`` (candidate, low, gap room)
    overrides the guess, for tests.
    """
    _native.check_finite(weights)  # here: the parts would report indices in their slices
    n = len(weights)
    stride_words = (config.draw_bytes + 3) // 4
    if split is None:
        accept = config.order / 256**config.draw_bytes
        candidates = int(n / (2 * accept))
        spread = math.sqrt(candidates * accept * (1 - accept))
        split = (candidates, int(candidates * accept - 8 * spread) - 64, int(16 * spread) + 1024)
    split_word = word_pos + stride_words * split[0]
    low = max(0, min(n, split[1]))
    out = np.empty((n, config.limbs), dtype=np.uint64)
    # small, and only n - low in the other thread: more big arrays than the model's own
    # outgrow the allocator's reuse, and fresh pages cost as much as the drawing saves
    gap = np.empty((max(0, min(n - low, split[2])), config.limbs), dtype=np.uint64)
    second = np.empty((n - low, config.limbs), dtype=np.uint64)
    first_end = [word_pos, 0]  # word after the first part, numbers in the gap

    def first_part() -> None:
        _, first_end[0] = _native.mask_vector(
            seed, word_pos, config, mantissa, exponent, weights[:low], out[:low]
        )
        if first_end[0] <= split_word:
            first_end[1], first_end[0] = _native.draw_until(
                seed, first_end[0], split_word, config, gap
            )

    def second_part() -> None:
        _native.draw_until(seed, split_word, None, config, second)

    in_parallel([first_part, second_part])
    end, in_gap = first_end
    mid = low + in_gap
    _native.encode_add(config, mantissa, exponent, weights[low:mid], gap[:in_gap], out[low:mid])
    if end != split_word:  # the guess was wrong: the second part is of no use
        more, _ = _native.draw(seed, end, config, n - mid)
        _native.encode_add(config, mantissa, exponent, weights[mid:], more, out[mid:])
        return out
    # the rest, weights[mid:] with second[: n - mid], in two halves
    half = mid + (n - mid) // 2

    def encode_first() -> None:
        _native.encode_add(
            config, mantissa, exponent, weights[mid:half], second[: half - mid], out[mid:half]
        )

    def encode_second() -> None:
        _native.encode_add(
            config, mantissa, exponent, weights[half:], second[half - mid : n - mid], out[half:]
        )

    in_parallel([encode_first, encode_second])
    return out


@native_errors()
def derive_mask(seed: bytes, n: int, configs: MaskConfigPair) -> MaskObject:
    """The mask an update participant added with ``seed``: what a sum participant re-derives."""
    r_unit, word_pos = _native.draw(seed, 0, configs.unit, 1)
    vect, _ = _native.draw(seed, word_pos, configs.vect, n)
    return MaskObject(MaskVect(configs.vect, vect), MaskUnit(configs.unit, r_unit[0]))


@native_errors()
def sum_masks(
    seeds: Sequence[bytes], n: int, configs: MaskConfigPair, threads: "int | None" = None
) -> MaskObject:
    """The aggregate of the masks of ``seeds``: what a sum participant sends in Sum2.

    With no seeds the result is the original's empty aggregation (no numbers, unit 1).
    The seeds are split over ``threads`` (default: the usable cores); the C core runs
    without the GIL, and modular addition is commutative, so the split changes nothing.
    """
    if not seeds:
        return MaskObject.empty(configs)
    for seed in seeds:
        if len(seed) != 32:
            raise ValueError(f"a mask seed is 32 bytes, got {len(seed)}")
    if threads is None:
        threads = usable_cores()
    if threads >= 2 and len(seeds) % 2 == 1 and n >= PARALLEL_MIN:
        return _sum_masks_in_halves(seeds, n, configs)
    threads = max(1, min(threads, len(seeds)))
    parts = [b"".join(seeds[i::threads]) for i in range(threads)]
    vects = [_zeros(n, configs.vect, touch=threads > 1) for _ in parts]
    units = [np.zeros(configs.unit.limbs, dtype=np.uint64) for _ in parts]

    def work(i: int) -> Callable[[], None]:
        return lambda: _native.derive_masks_add(
            parts[i], configs.vect, configs.unit, n, vects[i], units[i]
        )

    in_parallel([work(i) for i in range(threads)])
    for i in range(1, threads):
        _native.add_mod(vects[0], vects[i], configs.vect)
        _native.add_mod(units[0].reshape(1, -1), units[i].reshape(1, -1), configs.unit)
    return MaskObject(MaskVect(configs.vect, vects[0]), MaskUnit(configs.unit, units[0]))


def _zeros(n: int, config: MaskConfig, touch: bool) -> npt.NDArray[np.uint64]:
    """An accumulator of n zeros. ``touch``: write them here, because first writes to fresh
    pages from two threads at once cost far more than from one (README, performance)."""
    if not touch:
        return np.zeros((n, config.limbs), dtype=np.uint64)
    acc = np.empty((n, config.limbs), dtype=np.uint64)
    acc.fill(0)
    return acc


def _sum_masks_in_halves(
    seeds: Sequence[bytes], n: int, configs: MaskConfigPair, split: "int | None" = None
) -> MaskObject:
    """``sum_masks`` of an odd number of seeds on two threads: each derives half of the
    others and half of the last mask (3 masks: 1.5 each, not 2 and 1).

    The last mask is split like a long model in ``mask_model``: one thread adds the
    numbers of the candidates before a split candidate straight into its accumulator, the
    other draws the numbers from the split on, a margin more than it should need; the ones
    that belong after the first part's are then added, and a shortfall (1 in 10^15) is
    drawn in turn. ``split`` (a candidate index) overrides the guess, for tests."""
    vect_cfg, unit_cfg = configs.vect, configs.unit
    *whole, last = seeds
    parts = [b"".join(whole[0::2]), b"".join(whole[1::2])]
    vects = [_zeros(n, vect_cfg, touch=True) for _ in parts]
    units = [np.zeros(unit_cfg.limbs, dtype=np.uint64) for _ in parts]
    accept = vect_cfg.order / 256**vect_cfg.draw_bytes
    candidates = int(n / (2 * accept)) if split is None else split
    spread = math.sqrt(candidates * accept * (1 - accept))
    ahead = n - max(0, min(n, int(candidates * accept - 8 * spread) - 64))
    second = _zeros(ahead, vect_cfg, touch=True)
    r_unit, start = _native.draw(last, 0, unit_cfg, 1)
    split_word = start + (vect_cfg.draw_bytes + 3) // 4 * candidates
    first_end = [0, start]
    second_end = [0, split_word]

    def first_part() -> None:
        if parts[0]:
            _native.derive_masks_add(parts[0], vect_cfg, unit_cfg, n, vects[0], units[0])
        first_end[:] = _native.draw_add_until(last, start, split_word, vect_cfg, vects[0])

    def second_part() -> None:
        if parts[1]:
            _native.derive_masks_add(parts[1], vect_cfg, unit_cfg, n, vects[1], units[1])
        second_end[:] = _native.draw_until(last, split_word, None, vect_cfg, second)

    in_parallel([first_part, second_part])
    acc, unit = vects[0], units[0].reshape(1, -1)
    _native.add_mod(unit, r_unit, unit_cfg)
    drawn = first_end[0]
    if drawn < n:  # the first part stopped at the split
        take = min(n - drawn, ahead)
        _native.add_mod(acc[drawn : drawn + take], second[:take], vect_cfg)
        if drawn + take < n:  # the second part drew too few
            more, _ = _native.draw(last, second_end[1], vect_cfg, n - drawn - take)
            _native.add_mod(acc[drawn + take :], more, vect_cfg)
    _native.add_mod(acc, vects[1], vect_cfg)
    _native.add_mod(unit, units[1].reshape(1, -1), unit_cfg)
    return MaskObject(MaskVect(vect_cfg, acc), MaskUnit(unit_cfg, units[0]))


class Aggregation:
    """A running modular sum of masked models (coordinator) or of masks (sum participant).

    Mirrors the original's ``Aggregation``: it starts as the empty object, adopts the first
    object and adds the later ones, counting them, with the same validation rules.
    """

    def __init__(self, configs: MaskConfigPair, model_length: int) -> None:
        self.configs = configs
        self.model_length = model_length
        self.nb_models = 0
        self._object = MaskObject.empty(configs)

    @property
    def object(self) -> MaskObject:
        return self._object

    def validate(self, obj: MaskObject) -> None:
        """Raise ``AggregationError`` if ``obj`` cannot be aggregated (docs/PROTOCOL.md 11.2)."""
        if obj.vect.config != self.configs.vect:
            raise AggregationError(AggregationErrorKind.MODEL_MISMATCH, "vector configuration")
        if obj.unit.config != self.configs.unit:
            raise AggregationError(AggregationErrorKind.SCALAR_MISMATCH)
        if len(obj.vect) != self.model_length:
            raise AggregationError(
                AggregationErrorKind.MODEL_MISMATCH,
                f"length {len(obj.vect)} != model length {self.model_length}",
            )
        if self.nb_models >= self.configs.vect.max_nb_models:
            raise AggregationError(AggregationErrorKind.TOO_MANY_MODELS)
        if self.nb_models >= self.configs.unit.max_nb_models:
            raise AggregationError(AggregationErrorKind.TOO_MANY_MODELS, "unit")
        if not obj.is_valid():
            raise AggregationError(AggregationErrorKind.INVALID_OBJECT)

    @native_errors()
    def aggregate(self, obj: MaskObject) -> None:
        """Add ``obj`` (validated by the caller, as in the original)."""
        if self.nb_models == 0:
            self._object = MaskObject(
                MaskVect(obj.vect.config, obj.vect.data.copy()),
                MaskUnit(obj.unit.config, obj.unit.data.copy()),
            )
        else:
            _native.add_mod(self._object.vect.data, obj.vect.data, self.configs.vect)
            _native.add_mod(
                self._object.unit.data.reshape(1, -1),
                obj.unit.data.reshape(1, -1),
                self.configs.unit,
            )
        self.nb_models += 1

    def validate_unmasking(self, mask: MaskObject) -> None:
        """Raise ``AggregationError`` unless ``mask`` can unmask this aggregation (11.5)."""
        if self.nb_models == 0:
            raise AggregationError(AggregationErrorKind.NO_MODELS)
        if self.nb_models > self.configs.vect.max_nb_models or (
            self.nb_models > self.configs.unit.max_nb_models
        ):
            raise AggregationError(AggregationErrorKind.TOO_MANY_MODELS)
        if mask.vect.config != self.configs.vect or mask.unit.config != self.configs.unit:
            raise AggregationError(AggregationErrorKind.MODEL_MISMATCH, "mask configuration")
        if len(mask.vect) != self.model_length:
            raise AggregationError(
                AggregationErrorKind.MODEL_MISMATCH,
                f"mask length {len(mask.vect)} != model length {self.model_length}",
            )
        if not mask.is_valid():
            raise AggregationError(AggregationErrorKind.INVALID_OBJECT, "mask")

    @native_errors()
    def unmask(self, mask: MaskObject) -> list[Fraction]:
        """The global model: the scalar-weighted mean of the aggregated models, exactly."""
        self.validate_unmasking(mask)
        return unmask(self._object, mask, self.nb_models)

    @native_errors()
    def unmask_to_bincode(self, mask: MaskObject) -> "bytes | None":
        """The global model's wire form via the C path, or None (then use ``unmask``)."""
        self.validate_unmasking(mask)
        return unmask_to_bincode(self._object, mask, self.nb_models)


def _scalar_sum(masked: MaskObject, mask: MaskObject, nb_models: int) -> Fraction:
    """The sum of the (clamped, encoded) scalars: the divisor of the weighted mean."""
    unit_cfg = masked.unit.config
    n_unit = (masked.unit.value - mask.unit.value) % unit_cfg.order
    scalar_sum = Fraction(n_unit, unit_cfg.exp_shift) - nb_models * unit_cfg.add_shift
    if scalar_sum == 0:
        raise AggregationError(AggregationErrorKind.NO_MODELS, "the scalars sum to zero")
    return scalar_sum


@native_errors()
def unmask_to_bincode(masked: MaskObject, mask: MaskObject, nb_models: int) -> "bytes | None":
    """The global model straight to its wire form, in C, or None where that path does not apply.

    Equal to encoding ``unmask(...)`` (reduced fractions, positive denominators) whenever every
    quantity fits 127 bits, which holds for the B0 to B6 configurations of F32 and I32 with
    realistic counts; the caller falls back to ``unmask`` otherwise.
    """
    vect_cfg = masked.vect.config
    if vect_cfg.limbs > 2 or vect_cfg.order.bit_length() > 127:
        return None
    scalar_sum = _scalar_sum(masked, mask, nb_models)
    shifted = _native.sub_mod(masked.vect.data, mask.vect.data, vect_cfg)
    # W_j = (n_j - N*A*E) / E / S = (n_j - N*A*E) * S.den / (E * S.num)
    den = vect_cfg.exp_shift * scalar_sum.numerator
    mul = scalar_sum.denominator if den > 0 else -scalar_sum.denominator
    offset = nb_models * vect_cfg.add_shift * vect_cfg.exp_shift
    try:
        return _native.unmask_to_bincode(shifted, offset, mul, abs(den))
    except _native.ConversionOutOfRange:
        return None


@native_errors()
def unmask(masked: MaskObject, mask: MaskObject, nb_models: int) -> list[Fraction]:
    """``(masked - mask) mod order``, unshifted, unscaled and divided by the scalar sum.

    A zero scalar sum is an ``AggregationError``; the original coordinator panics there.
    """
    vect_cfg = masked.vect.config
    scalar_sum = _scalar_sum(masked, mask, nb_models)
    shifted = limbs_to_ints(_native.sub_mod(masked.vect.data, mask.vect.data, vect_cfg))
    offset = nb_models * vect_cfg.add_shift * vect_cfg.exp_shift
    # W_j = ((n_j - N*A*E) / E) / S; Fraction reduces to the canonical form the original sends.
    denominator = scalar_sum * vect_cfg.exp_shift
    return [Fraction(n - offset) / denominator for n in shifted]
