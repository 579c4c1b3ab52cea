"""Typed wrappers over the C core: the only module that touches ``ffi`` and ``lib``.

Lengths, dtypes and contiguity are checked here, before any call, so the C code only ever
sees buffers of the sizes it is told; C status codes become exceptions in ``_check``.
Calls release the GIL (cffi's default in API mode), so masks can be derived on all cores.
The only importer is ``xaynet_sdk.mask`` (and the tests and benchmarks of the C core).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..exceptions import XaynetError
from ._xaynet_native import ffi, lib

__all__ = [
    "ConversionDiverges",
    "ConversionOutOfRange",
    "Limbs",
    "MalformedInput",
    "MaskConfig",
    "NativeError",
    "NonFiniteWeight",
    "add_mod",
    "chacha20_keystream",
    "check_finite",
    "derive_masks_add",
    "draw",
    "draw_add_until",
    "draw_until",
    "encode_add",
    "first_invalid",
    "mask_vector",
    "model_from_bincode",
    "simd_lanes",
    "sub_mod",
    "unmask_to_bincode",
]

Limbs = npt.NDArray[np.uint64]


class MaskConfig(Protocol):
    """What the core needs of a mask configuration (``xaynet_sdk.mask.config.MaskConfig``).

    A protocol rather than an import, so that this layer depends on nothing above it.
    """

    @property
    def order(self) -> int: ...
    @property
    def limbs(self) -> int: ...
    @property
    def draw_bytes(self) -> int: ...
    @property
    def add_shift(self) -> int: ...
    @property
    def exp_shift(self) -> int: ...
    def __hash__(self) -> int: ...


class NativeError(XaynetError, ValueError):
    """A status code from the C core; subclasses name the cause.

    Only ``xaynet_sdk.mask`` sees these: it translates them into its own errors
    (``xaynet_sdk.mask.errors``), so that no layer above it imports this module."""

    def __init__(self, message: str, index: "int | None" = None) -> None:
        super().__init__(message)
        self.index = index


class NonFiniteWeight(NativeError):
    """A NaN or infinite weight, which the protocol cannot encode."""


class ConversionOutOfRange(NativeError):
    """A global-model weight outside the range of the target type."""


class ConversionDiverges(NativeError):
    """A global-model weight whose conversion never ends in the original (a non-finite quotient)."""


class MalformedInput(NativeError):
    """Bytes that are not a valid encoding."""


_ERRORS: dict[int, type[NativeError]] = {
    lib.XN_ERR_LENGTH: NativeError,
    lib.XN_ERR_ARGUMENT: NativeError,
    lib.XN_ERR_NONFINITE: NonFiniteWeight,
    lib.XN_ERR_RANGE: ConversionOutOfRange,
    lib.XN_ERR_MALFORMED: MalformedInput,
    lib.XN_ERR_DIVERGES: ConversionDiverges,
}

_MESSAGES = {
    lib.XN_ERR_LENGTH: "buffer length mismatch",
    lib.XN_ERR_ARGUMENT: "invalid argument",
    lib.XN_ERR_NONFINITE: "weight is NaN or infinite",
    lib.XN_ERR_RANGE: "value out of range of the data type",
    lib.XN_ERR_MALFORMED: "malformed input bytes",
    lib.XN_ERR_DIVERGES: "the quotient is not finite in the data type",
}


def _check(rc: int, what: str, index: "int | None" = None) -> None:
    if rc == lib.XN_OK:
        return
    cls = _ERRORS.get(rc, NativeError)
    where = f" at index {index}" if index is not None else ""
    raise cls(f"{what}: {_MESSAGES.get(rc, f'error {rc}')}{where}", index)


def _limbs_of(value: int, limbs: int) -> Any:
    return ffi.new("uint64_t[]", [(value >> (64 * i)) & 0xFFFFFFFFFFFFFFFF for i in range(limbs)])


def _nlimbs(value: int) -> int:
    return max(1, (value.bit_length() + 63) // 64)


@dataclass(frozen=True)
class _Native:
    """The C structs of one configuration, with the buffers they point to kept alive."""

    group: Any
    encoding: Any
    keepalive: tuple[Any, ...]


@cache
def _native(config: MaskConfig) -> _Native:
    limbs = config.limbs
    order = _limbs_of(config.order, (config.draw_bytes + 7) // 8)
    group = ffi.new("xn_group *", {"order": order, "limbs": limbs, "draw_bytes": config.draw_bytes})
    a, e = config.add_shift, config.exp_shift
    add_shift = _limbs_of(a, _nlimbs(a))
    exp_shift = _limbs_of(e, _nlimbs(e))
    zero = _limbs_of(a * e, limbs)
    top = _limbs_of(2 * a * e, limbs)
    encoding = ffi.new(
        "xn_encoding *",
        {
            "add_shift": add_shift,
            "add_shift_limbs": _nlimbs(a),
            "exp_shift": exp_shift,
            "exp_shift_limbs": _nlimbs(e),
            "shifted_zero": zero,
            "shifted_max": top,
        },
    )
    return _Native(group, encoding, (order, add_shift, exp_shift, zero, top))


def _seed(seed: bytes) -> Any:
    if len(seed) != 32:
        raise ValueError(f"a mask seed is 32 bytes, got {len(seed)}")
    return ffi.from_buffer(seed)


def _vector(array: Limbs, config: MaskConfig, name: str, writable: bool = False) -> Any:
    if array.dtype != np.uint64 or not array.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous uint64 array")
    if array.ndim != 2 or array.shape[1] != config.limbs:
        raise ValueError(
            f"{name} must have shape (n, {config.limbs}) for {config}, got {array.shape}"
        )
    if writable and not array.flags.writeable:
        raise ValueError(f"{name} must be writable")
    return ffi.from_buffer("uint64_t[]", array, require_writable=writable)


def simd_lanes() -> int:
    """The width of the vector code in use, in 32-bit lanes: 16 (AVX-512), 8 (AVX2) or 4;
    ``XAYNET_NATIVE_LANES`` narrows it (for tests of the narrower paths)."""
    lanes = ffi.new("size_t *")
    _check(lib.xn_simd_lanes(lanes), "simd_lanes")
    return int(lanes[0])


def chacha20_keystream(seed: bytes, nbytes: int, block: int = 0) -> bytes:
    """The PRNG's raw keystream; exposed for tests and benchmarks."""
    out = bytearray(nbytes)
    _check(lib.xn_chacha20_keystream(_seed(seed), block, ffi.from_buffer(out), nbytes), "keystream")
    return bytes(out)


def draw(seed: bytes, word_pos: int, config: MaskConfig, n: int) -> tuple[Limbs, int]:
    """``n`` numbers by the original's rejection sampling from ``word_pos``; the new position."""
    out = np.zeros((n, config.limbs), dtype=np.uint64)
    pos = ffi.new("uint64_t *", word_pos)
    _check(
        lib.xn_draw(_seed(seed), pos, _native(config).group, ffi.from_buffer("uint64_t[]", out), n),
        "draw",
    )
    return out, int(pos[0])


_DTYPE_CODES = {
    np.dtype(np.float32): lib.XN_DTYPE_F32,
    np.dtype(np.float64): lib.XN_DTYPE_F64,
    np.dtype(np.int32): lib.XN_DTYPE_I32,
    np.dtype(np.int64): lib.XN_DTYPE_I64,
}


def _weights(weights: npt.NDArray[Any], scalar_mantissa: int) -> tuple[int, int]:
    """The dtype code and length of weights the C core takes, checked with the scalar."""
    code = _DTYPE_CODES.get(weights.dtype)
    if code is None or weights.ndim != 1 or not weights.flags.c_contiguous:
        raise TypeError("weights must be a 1-d C-contiguous float32/float64/int32/int64 array")
    if not 0 <= scalar_mantissa <= 2**53:
        raise ValueError("scalar mantissa out of range")
    return code, int(weights.shape[0])


def check_finite(weights: npt.NDArray[Any]) -> None:
    """Raise ``NonFiniteWeight`` (with its index) if a weight is NaN or infinite."""
    code, n = _weights(weights, 0)
    index = int(lib.xn_first_nonfinite(ffi.from_buffer(weights), code, n))
    if index < n:
        _check(lib.XN_ERR_NONFINITE, "masking", index)


def mask_vector(
    seed: bytes,
    word_pos: int,
    config: MaskConfig,
    scalar_mantissa: int,
    scalar_exponent: int,
    weights: npt.NDArray[Any],
    out: "Limbs | None" = None,
) -> tuple[Limbs, int]:
    """Encode and mask every weight (into ``out`` if given); see ``xn_mask_vector``."""
    code, n = _weights(weights, scalar_mantissa)
    native = _native(config)
    if out is None:
        out = np.empty((n, config.limbs), dtype=np.uint64)
    elif out.shape != (n, config.limbs):
        raise ValueError(f"{n} weights need {n} outputs")
    pos = ffi.new("uint64_t *", word_pos)
    bad = ffi.new("size_t *", 0)
    rc = lib.xn_mask_vector(
        _seed(seed),
        pos,
        native.group,
        native.encoding,
        scalar_mantissa,
        scalar_exponent,
        ffi.from_buffer(weights),
        code,
        n,
        _vector(out, config, "out", writable=True),
        bad,
    )
    _check(rc, "masking", int(bad[0]) if rc == lib.XN_ERR_NONFINITE else None)
    return out, int(pos[0])


def draw_until(
    seed: bytes, word_pos: int, end_word: "int | None", config: MaskConfig, out: Limbs
) -> tuple[int, int]:
    """Draw into ``out`` (up to ``len(out)`` numbers) from the candidates that start before
    ``end_word`` (None: no limit); how many were drawn and the new word position. See
    ``xn_draw_until`` in the header."""
    return _until(lib.xn_draw_until, seed, word_pos, end_word, config, out)


def draw_add_until(
    seed: bytes, word_pos: int, end_word: "int | None", config: MaskConfig, acc: Limbs
) -> tuple[int, int]:
    """``draw_until``, adding the numbers into ``acc`` (all below the order) instead."""
    return _until(lib.xn_draw_add_until, seed, word_pos, end_word, config, acc)


def _until(
    fn: Any, seed: bytes, word_pos: int, end_word: "int | None", config: MaskConfig, out: Limbs
) -> tuple[int, int]:
    pos = ffi.new("uint64_t *", word_pos)
    drawn = ffi.new("size_t *", 0)
    end = 2**64 - 1 if end_word is None else end_word
    vector = _vector(out, config, "out", writable=True)
    _check(fn(_seed(seed), pos, end, _native(config).group, vector, out.shape[0], drawn), "draw")
    return int(drawn[0]), int(pos[0])


def encode_add(
    config: MaskConfig,
    scalar_mantissa: int,
    scalar_exponent: int,
    weights: npt.NDArray[Any],
    r: Limbs,
    out: Limbs,
) -> None:
    """``out = (encode(scalar * weights) + r) mod order``; ``out`` may be ``r``. See
    ``xn_encode_add`` in the header."""
    code, n = _weights(weights, scalar_mantissa)
    if r.shape != (n, config.limbs) or out.shape != (n, config.limbs):
        raise ValueError(f"{n} weights need {n} random numbers and {n} outputs")
    native = _native(config)
    bad = ffi.new("size_t *", 0)
    rc = lib.xn_encode_add(
        native.group,
        native.encoding,
        scalar_mantissa,
        scalar_exponent,
        ffi.from_buffer(weights),
        code,
        n,
        _vector(r, config, "r"),
        _vector(out, config, "out", writable=True),
        bad,
    )
    _check(rc, "masking", int(bad[0]) if rc == lib.XN_ERR_NONFINITE else None)


def add_mod(acc: Limbs, x: Limbs, config: MaskConfig) -> None:
    """``acc = (acc + x) mod order`` in place; both below the order."""
    if acc.shape != x.shape:
        raise ValueError(f"cannot add vectors of shapes {acc.shape} and {x.shape}")
    _check(
        lib.xn_add_mod(
            _vector(acc, config, "acc", writable=True),
            _vector(x, config, "x"),
            acc.shape[0],
            _native(config).group,
        ),
        "add_mod",
    )


def sub_mod(a: Limbs, b: Limbs, config: MaskConfig) -> Limbs:
    """``(a - b) mod order``; both below the order."""
    if a.shape != b.shape:
        raise ValueError(f"cannot subtract vectors of shapes {a.shape} and {b.shape}")
    out = np.empty_like(a)
    _check(
        lib.xn_sub_mod(
            _vector(a, config, "a"),
            _vector(b, config, "b"),
            _vector(out, config, "out", writable=True),
            a.shape[0],
            _native(config).group,
        ),
        "sub_mod",
    )
    return out


def first_invalid(x: Limbs, config: MaskConfig) -> int:
    """Index of the first number not below the order, or ``len(x)`` if all are valid."""
    return int(lib.xn_first_invalid(_vector(x, config, "x"), x.shape[0], _native(config).group))


def derive_masks_add(
    seeds: bytes,
    vect_config: MaskConfig,
    unit_config: MaskConfig,
    n: int,
    acc_vect: Limbs,
    acc_unit: Limbs,
) -> None:
    """Derive the masks of ``len(seeds) // 32`` seeds and add them into the accumulators."""
    if len(seeds) % 32:
        raise ValueError("seeds must be a concatenation of 32-byte mask seeds")
    if acc_vect.shape != (n, vect_config.limbs):
        raise ValueError(f"acc_vect must have shape ({n}, {vect_config.limbs})")
    _check(
        lib.xn_derive_masks_add(
            ffi.from_buffer(seeds),
            len(seeds) // 32,
            _native(vect_config).group,
            _native(unit_config).group,
            n,
            _vector(acc_vect, vect_config, "acc_vect", writable=True),
            _vector(acc_unit.reshape(1, -1), unit_config, "acc_unit", writable=True),
        ),
        "mask derivation",
    )


def model_from_bincode(data: bytes, dtype: "npt.DTypeLike") -> tuple[npt.NDArray[Any], int]:
    """Decode a bincode ``Vec<Ratio<BigInt>>`` straight into an array of ``dtype``.

    Returns the array and the number of bytes read (bincode allows trailing bytes).
    """
    if len(data) < 8:
        raise MalformedInput(
            f"global model truncated: need 8 bytes for its length, have {len(data)}"
        )
    declared = int.from_bytes(data[:8], "little")
    if declared > (len(data) - 8) // 18:
        raise MalformedInput(
            f"global model truncated: {declared} weights need at least {declared * 18} bytes,"
            f" have {len(data) - 8}"
        )
    out = np.empty(declared, dtype=np.dtype(dtype))
    code = _DTYPE_CODES.get(out.dtype)
    if code is None:
        raise TypeError(f"unsupported model dtype {out.dtype}")
    count = ffi.new("size_t *", 0)
    consumed = ffi.new("size_t *", 0)
    bad = ffi.new("size_t *", 0)
    scratch = ffi.new("uint32_t[]", len(data) // 4 + 8)
    rc = lib.xn_model_from_bincode(
        ffi.from_buffer(data),
        len(data),
        code,
        ffi.from_buffer(out, require_writable=True),
        declared,
        count,
        consumed,
        bad,
        scratch,
        len(data) // 4 + 8,
    )
    _check(rc, "global model", int(bad[0]) if rc != lib.XN_ERR_LENGTH else None)
    return out, int(consumed[0])


def unmask_to_bincode(x: Limbs, offset: int, mul: int, den: int) -> bytes:
    """``(x_j - offset) * mul / den`` for every j, reduced, as a bincode model.

    Only for 128-bit quantities: raises ``ConversionOutOfRange`` when any does not fit.
    """
    if x.dtype != np.uint64 or x.ndim != 2 or not x.flags.c_contiguous:
        raise TypeError("x must be a C-contiguous (n, limbs) uint64 array")
    n, limbs = x.shape
    if not 1 <= limbs <= 2 or den <= 0 or mul == 0:
        raise ValueError("unmask_to_bincode needs 1 or 2 limbs, a positive den and a nonzero mul")
    if max(offset, abs(mul), den).bit_length() > 127:
        raise ConversionOutOfRange("unmask constants exceed 127 bits")
    out = bytearray(8 + 50 * n)
    written = ffi.new("size_t *", 0)
    rc = lib.xn_unmask_to_bincode(
        ffi.from_buffer("uint64_t[]", x),
        n,
        limbs,
        _limbs_of(offset, 2),
        _limbs_of(abs(mul), 2),
        1 if mul < 0 else 0,
        _limbs_of(den, 2),
        ffi.from_buffer(out),
        len(out),
        written,
    )
    _check(rc, "unmask")
    return bytes(out[: written[0]])
