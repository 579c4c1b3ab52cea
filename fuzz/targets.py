"""Fuzz targets: one function per decoder of bytes from the network or from a saved state.

Each ``fuzz_*`` function takes the fuzzer's bytes, runs the decoder, catches exactly the
exception types that decoder documents for bad input, and returns a short *feature* string
(the outcome, with numbers blanked) that the engine uses as cheap feedback. Anything else
propagates: an undocumented exception, an ``AssertionError`` from an oracle (a decoded value
that does not re-encode to the same bytes, a broken bound of the reassembler, a C result that
differs from the pure-Python reference), or a crash of the process.

| target          | decoder                                                | documented   |
|-----------------|--------------------------------------------------------|--------------|
| params          | ``RoundParameters.from_bytes`` (``GET /params``)        | DecodeError  |
| sum_dict        | ``decode_sum_dict`` (``GET /sums``)                     | DecodeError  |
| seed_dict       | ``decode_update_seed_dict`` (``GET /seeds``)            | DecodeError  |
| model           | ``decode_global_model`` (C, ``GET /model``), 4 dtypes  | GlobalModelError |
| mask_object     | ``MaskObject.from_bytes``                               | MaskObjectError |
| local_seed_dict | ``decode_local_seed_dict``                              | DecodeError  |
| header          | ``decode_header``                                       | DecodeError  |
| payload         | ``decode_payload`` (Sum, Update, Sum2, chunk)           | DecodeError  |
| message         | ``decode_message`` (verified and unverified)            | DecodeError  |
| multipart       | ``Reassembler.add_chunk`` + decode of the result        | DecodeError  |
| pipeline        | the coordinator's ``Pipeline.handle`` (POST /message)   | none (1)     |
| state           | ``load_state`` of our msgpack document                  | ParticipantRestore |
| state_original  | ``load_state`` of the original's bincode state          | ParticipantRestore |

(1) ``handle`` never raises; an internal error (a bug it would count and log) propagates here.

Seeds are valid encodings built with the package's own encoders from fixed keys, so a
campaign is reproducible; ``generate`` functions build fresh valid encodings with random
parameters (counts, configurations, special floats) for the engine to mutate.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import struct
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Optional

import nacl.bindings
import numpy as np

from xaynet_sdk.codec.bincode import (
    RoundParameters,
    decode_sum_dict,
    decode_update_seed_dict,
    encode_model,
    encode_sum_dict,
    encode_update_seed_dict,
    pack_byte_string,
    pack_mask_config,
)
from xaynet_sdk.codec.crypto import (
    EncryptKeyPair,
    SigningKeyPair,
    sum_signature,
    update_signature,
)
from xaynet_sdk.codec.eligibility import is_eligible
from xaynet_sdk.codec.errors import DecodeError
from xaynet_sdk.codec.message import (
    ChunkPayload,
    Message,
    Sum2Payload,
    SumPayload,
    Tag,
    UpdatePayload,
    decode_header,
    decode_local_seed_dict,
    decode_message,
    decode_payload,
    encode_local_seed_dict,
    encode_message,
)
from xaynet_sdk.codec.multipart import MessageEncoder, split_payload
from xaynet_sdk.coordinator import Limits, Settings
from xaynet_sdk.coordinator.outcomes import Reason
from xaynet_sdk.coordinator.pipeline import Outcome, Pipeline
from xaynet_sdk.coordinator.reassembly import Reassembler
from xaynet_sdk.coordinator.state import CoordinatorState, Round, Ticket
from xaynet_sdk.coordinator.stats import Stats
from xaynet_sdk.driver import _check_restored
from xaynet_sdk.exceptions import ParticipantRestore
from xaynet_sdk.mask.config import DataType, MaskConfig, MaskConfigPair, all_configs
from xaynet_sdk.mask.masking import mask_model, sum_masks
from xaynet_sdk.mask.model import GlobalModelError, decode_global_model
from xaynet_sdk.mask.objects import MaskObject, MaskObjectError, limbs_to_ints
from xaynet_sdk.protocol import machine
from xaynet_sdk.protocol.saved import dump_state, load_state
from xaynet_sdk.protocol.state import (
    Awaiting,
    NewRound,
    ParticipantState,
    Phase,
    Sending,
    SendingKind,
    SharedState,
    Sum,
    Sum2,
    Update,
)

__all__ = ["TARGETS", "Target", "all_seeds", "get_target", "seal"]


# ---------------------------------------------------------------------------------------------
# Fixed material: keys, configurations, numbers
# ---------------------------------------------------------------------------------------------


def _sha(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


PARTICIPANTS = [SigningKeyPair.from_seed(_sha(f"xaynet-fuzz participant {i}")) for i in range(8)]
_KNOWN = {keys.public: keys for keys in PARTICIPANTS}
COORDINATOR = EncryptKeyPair.from_seed(_sha("xaynet-fuzz coordinator"))
EPHEMERAL = [EncryptKeyPair.from_seed(_sha(f"xaynet-fuzz ephemeral {i}")) for i in range(8)]

_CONFIG_NAMES = (
    "Prime/F32/B0/M3",
    "Integer/F64/B2/M6",
    "Power2/I32/Bmax/M12",
    "Prime/F64/Bmax/M12",
    "Integer/I64/B6/M9",
    "Power2/F32/B4/M3",
)
CONFIGS = [MaskConfig.from_name(name) for name in _CONFIG_NAMES]
_ALL_CONFIGS = list(all_configs())

_SPECIAL_FLOATS = (
    0.0,
    -0.0,
    1.0,
    0.5,
    1e-300,
    5e-324,
    math.inf,
    -math.inf,
    math.nan,
    1.7976931348623157e308,
    -1.0,
    3.4028234663852886e38,
)


_seal_counts: dict[bytes, int] = {}


def seal(plaintext: bytes, pk: bytes) -> bytes:
    """``crypto_box_seal`` with an ephemeral key derived from its inputs, not the OS RNG.

    The same construction (``epk ‖ crypto_box(m, blake2b(epk ‖ pk), pk, esk)``), so the
    coordinator opens it like any sealed box, but the bytes of a campaign are reproducible
    whatever ran before. Sealing the same plaintext again still gives new bytes (the
    ephemeral key also depends on how often it was sealed), as a real participant's would.
    """
    key = hashlib.sha256(bytes(pk) + bytes(plaintext)).digest()
    count = _seal_counts.get(key, 0)
    _seal_counts[key] = count + 1
    esk = hashlib.sha256(b"xaynet-fuzz seal" + key + count.to_bytes(8, "little")).digest()
    epk = nacl.bindings.crypto_scalarmult_base(esk)
    nonce = hashlib.blake2b(epk + pk, digest_size=24).digest()
    return bytes(epk + nacl.bindings.crypto_box(bytes(plaintext), nonce, pk, esk))


def _random_config(rng: random.Random) -> MaskConfig:
    return rng.choice(CONFIGS) if rng.random() < 0.6 else rng.choice(_ALL_CONFIGS)


def _random_configs(rng: random.Random) -> MaskConfigPair:
    vect = _random_config(rng)
    return MaskConfigPair(vect, vect if rng.random() < 0.8 else _random_config(rng))


def _random_float(rng: random.Random) -> float:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(_SPECIAL_FLOATS)
    if roll < 0.8:
        return rng.random()
    bits = rng.getrandbits(64)
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _random_big(rng: random.Random) -> int:
    """A magnitude around the interesting sizes: small, near 2**32/2**64, f32/f64 limits."""
    roll = rng.random()
    if roll < 0.3:
        return rng.randrange(0, 1000)
    if roll < 0.5:
        bits = rng.choice((31, 32, 33, 53, 54, 63, 64, 65, 127, 128))
        return (1 << bits) + rng.randrange(-3, 4)
    if roll < 0.7:
        bits = rng.choice((104, 127, 128, 129, 971, 1023, 1024, 1025))
        return ((1 << 24) - rng.randrange(0, 3)) << (bits - 24) if bits > 24 else 1 << bits
    if roll < 0.8:
        return ((1 << 53) - 1) << 971  # f64::MAX exactly
    return rng.getrandbits(rng.randrange(1, 1200))


def _fraction_of(x: float) -> tuple[int, int]:
    f = Fraction(x)
    return f.numerator, f.denominator


# ---------------------------------------------------------------------------------------------
# The target type and the feature string
# ---------------------------------------------------------------------------------------------

_DIGITS = re.compile(r"\d+")


def _feature(error: BaseException) -> str:
    """The outcome class and message with numbers blanked: distinct code paths, roughly."""
    return f"{type(error).__name__}: {_DIGITS.sub('N', str(error))[:160]}"


@dataclass(frozen=True)
class Target:
    """One decoder to fuzz: ``run`` takes bytes and returns a feature (see the module doc)."""

    name: str
    description: str
    run: Callable[[bytes], str]
    seeds: Callable[[], list[bytes]]
    generate: Callable[[random.Random], bytes]
    #: The exceptions ``run`` catches (what the decoder documents); for the record.
    documented: tuple[type[BaseException], ...]
    #: The largest input the engine should build (bigger ones are truncated).
    max_size: int = 1 << 16
    #: Called once before fuzzing (builds lazy state such as the coordinator's rounds).
    setup: Optional[Callable[[], None]] = None


# ---------------------------------------------------------------------------------------------
# params, sum_dict, seed_dict
# ---------------------------------------------------------------------------------------------


def fuzz_params(data: bytes) -> str:
    """``RoundParameters.from_bytes``: a ``GET /params`` body."""
    try:
        params = RoundParameters.from_bytes(data)
    except DecodeError as e:
        return _feature(e)
    # oracle: the 136 bytes read re-encode to themselves (floats keep their bit patterns)
    assert params.to_bytes() == bytes(data[:136]), "RoundParameters do not re-encode"
    return "ok"


def _random_params(rng: random.Random) -> RoundParameters:
    return RoundParameters(
        rng.randbytes(32),
        _random_float(rng),
        _random_float(rng),
        rng.randbytes(32),
        _random_configs(rng),
        rng.choice((0, 1, 4, 1000, 2**32, 2**64 - 1, rng.getrandbits(64))),
    )


def _params_seeds() -> list[bytes]:
    rng = random.Random(1)
    out = [_random_params(rng).to_bytes() for _ in range(24)]
    for config in CONFIGS:
        params = RoundParameters(
            COORDINATOR.public, 0.5, 0.9, _sha("seed"), MaskConfigPair.single(config), 4
        )
        out.append(params.to_bytes())
    return out


def _gen_params(rng: random.Random) -> bytes:
    raw = _random_params(rng).to_bytes()
    return raw + rng.randbytes(rng.randrange(0, 8)) if rng.random() < 0.2 else raw


def fuzz_sum_dict(data: bytes) -> str:
    """``decode_sum_dict``: a ``GET /sums`` body."""
    try:
        result = decode_sum_dict(data)
    except DecodeError as e:
        return _feature(e)
    encoded = encode_sum_dict(result)
    assert bytes(data[: len(encoded)]) == encoded, "sum dict does not re-encode"
    return "ok"


def fuzz_seed_dict(data: bytes) -> str:
    """``decode_update_seed_dict``: a ``GET /seeds`` body."""
    try:
        result = decode_update_seed_dict(data)
    except DecodeError as e:
        return _feature(e)
    encoded = encode_update_seed_dict(result)
    assert bytes(data[: len(encoded)]) == encoded, "seed dict does not re-encode"
    return "ok"


def _random_map(rng: random.Random, value_length: int) -> dict[bytes, bytes]:
    n = rng.choice((0, 1, 2, 3, rng.randrange(0, 12)))
    return {rng.randbytes(32): rng.randbytes(value_length) for _ in range(n)}


def _gen_sum_dict(rng: random.Random) -> bytes:
    return encode_sum_dict(_random_map(rng, 32))


def _gen_seed_dict(rng: random.Random) -> bytes:
    return encode_update_seed_dict(_random_map(rng, 80))


def _sum_dict_seeds() -> list[bytes]:
    rng = random.Random(2)
    out = [_gen_sum_dict(rng) for _ in range(16)]
    out.append(encode_sum_dict({k.public: e.public for k, e in zip(PARTICIPANTS, EPHEMERAL)}))
    return out


def _seed_dict_seeds() -> list[bytes]:
    rng = random.Random(3)
    out = [_gen_seed_dict(rng) for _ in range(16)]
    sealed = {
        k.public: seal(_sha(f"mask {i}"), EPHEMERAL[0].public) for i, k in enumerate(PARTICIPANTS)
    }
    out.append(encode_update_seed_dict(sealed))
    return out


# ---------------------------------------------------------------------------------------------
# model (the C decoder)
# ---------------------------------------------------------------------------------------------

_reference: Any = None


def _load_reference() -> Any:
    """tests/reference.py, the pure-Python model of the original's conversion, if present."""
    global _reference
    if _reference is None:
        tests_dir = Path(__file__).resolve().parent.parent / "tests"
        try:
            if str(tests_dir) not in sys.path:
                sys.path.insert(0, str(tests_dir))
            import reference  # type: ignore[import-not-found]

            _reference = reference
        except ImportError:  # pragma: no cover - an installed package without tests/
            _reference = False
    return _reference


_DATA_TYPES = (DataType.F32, DataType.F64, DataType.I32, DataType.I64)


def _same_number(got: Any, expected: Any) -> bool:
    if isinstance(expected, float):
        same_sign = math.copysign(1.0, float(got)) == math.copysign(1.0, expected)
        return bool(got == expected) and same_sign
    return bool(int(got) == expected)


#: How often the range check of the reference (num-rational's comparison, quirks included)
#: and the exact one of the C decoder disagreed; see :func:`_reference_weight`.
range_check_deviations = 0


def _reference_weight(ref: Any, numer: int, denom: int, dt: DataType) -> Any:
    """``ref_ratio_to_primitive``, except for the range check of a float type, which is exact.

    The original compares with num-rational's ``Ord``, whose "equal numerators" shortcut is
    wrong for a negative denominator (``MAX/-607 > MAX/1``); the reference reproduces that,
    the C decoder compares exactly (a deliberate difference: only a ratio with a negative
    denominator and a numerator of exactly ±F::MAX, which no faithful coordinator sends,
    can tell them apart). Where the two disagree, expect the exact behaviour.
    """
    global range_check_deviations
    if dt.is_float:
        fmax = ref.F32_MAX if dt is DataType.F32 else ref.F64_MAX
        exact_out = abs(Fraction(numer, denom)) > fmax
        quirky_out = (
            ref.num_rational_cmp(numer, denom, -fmax, 1) < 0
            or ref.num_rational_cmp(numer, denom, fmax, 1) > 0
        )
        if exact_out != quirky_out:
            range_check_deviations += 1
            if exact_out:
                raise ref.RefConversionError("out of range (exact comparison)")
            n = ref.ref_bigint_to_float(numer, dt)
            d = ref.ref_bigint_to_float(denom, dt)
            if n == 0 or d == 0:
                return 0.0
            quotient = n / d
            if dt is DataType.F32:
                quotient = ref.to_f32(quotient)
            if math.isfinite(quotient):
                return quotient
            raise ref.RefHang("non-finite quotient")
    return ref.ref_ratio_to_primitive(numer, denom, dt)


def _check_model_against_reference(data: bytes, outcomes: list[Any]) -> None:
    """Differential oracle: the C decoder against tests/reference.py, weight by weight."""
    ref = _load_reference()
    if not ref:
        return
    try:
        ratios = ref.ref_model_from_bincode(data)
    except ref.RefDecodeError as e:
        for dt, got in zip(_DATA_TYPES, outcomes):
            assert isinstance(got, GlobalModelError) and got.malformed, (
                f"{dt.name}: the reference rejects the model ({e}), C gives {got!r}"
            )
        return
    for dt, got in zip(_DATA_TYPES, outcomes):
        expected_error: Optional[tuple[int, str]] = None
        values: list[Any] = []
        for i, (numer, denom) in enumerate(ratios):
            try:
                values.append(_reference_weight(ref, numer, denom, dt))
            except ref.RefHang:
                expected_error = (i, "diverges")
                break
            except ref.RefConversionError:
                expected_error = (i, "range")
                break
        if expected_error is not None:
            index, kind = expected_error
            assert isinstance(got, GlobalModelError) and not got.malformed, (
                f"{dt.name}: weight {index} {kind} in the reference, C gives {got!r}"
            )
            assert got.index == index, f"{dt.name}: error at {got.index}, reference {index}"
            assert ("no finite" in str(got)) == (kind == "diverges"), (
                f"{dt.name}: weight {index}: reference {kind}, C says {got}"
            )
            continue
        assert isinstance(got, np.ndarray), f"{dt.name}: the reference decodes, C gives {got!r}"
        assert len(got) == len(values), f"{dt.name}: {len(got)} weights, reference {len(values)}"
        for i, (g, want) in enumerate(zip(got.tolist(), values)):
            assert _same_number(g, want), f"{dt.name}: weight {i} is {g!r}, reference {want!r}"


def fuzz_model(data: bytes) -> str:
    """``decode_global_model`` (the C decoder, GIL released) for each of the four dtypes."""
    outcomes: list[Any] = []
    features = []
    for dt in _DATA_TYPES:
        try:
            model = decode_global_model(data, dt)
        except GlobalModelError as e:
            outcomes.append(e)
            features.append(_feature(e))
            continue
        assert model.dtype == np.dtype(dt.numpy_dtype) and model.ndim == 1
        outcomes.append(model)
        features.append("ok")
    if len(data) <= 4096:
        _check_model_against_reference(data, outcomes)
    return " | ".join(features)


def _bigint_raw(sign: int, magnitude: int, extra_digits: int = 0) -> bytes:
    digits = (magnitude.bit_length() + 31) // 32 + extra_digits
    return struct.pack("<bQ", sign, digits) + magnitude.to_bytes(4 * digits, "little")


def _random_ratio_raw(rng: random.Random) -> bytes:
    """A ratio as bytes, including the non-canonical forms a hostile coordinator can send."""
    parts = []
    for is_denom in (False, True):
        magnitude = _random_big(rng)
        if is_denom and magnitude == 0 and rng.random() < 0.9:
            magnitude = 1
        roll = rng.random()
        if roll < 0.75:
            sign = 0 if magnitude == 0 else rng.choice((1, 1, -1))
        elif roll < 0.9:
            sign = rng.choice((0, 1, -1))  # NoSign with a magnitude, Minus with zero...
        else:
            sign = rng.choice((2, -2, 127, -128))
        extra = rng.choice((0, 0, 0, 1, 2))
        parts.append(_bigint_raw(sign, magnitude, extra))
    return b"".join(parts)


def _gen_model(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.4:
        # what a faithful coordinator sends: reduced fractions of floats or ints
        n = rng.randrange(0, 12)
        values = []
        for _ in range(n):
            if rng.random() < 0.5:
                x = _random_float(rng)
                if not math.isfinite(x):
                    x = 0.0
                values.append(_fraction_of(x))
            else:
                values.append((rng.randrange(-(2**64), 2**64), rng.choice((1, 3, 7, 2**40))))
        return encode_model(values)
    n = rng.randrange(0, 8)
    return struct.pack("<Q", n) + b"".join(_random_ratio_raw(rng) for _ in range(n))


def _model_seeds() -> list[bytes]:
    rng = random.Random(4)
    f32_max = ((1 << 24) - 1) << 104
    f64_max = ((1 << 53) - 1) << 971
    out = [
        encode_model([]),
        encode_model([(1, 3), (-1, 2), (0, 1), (5, 1)]),
        encode_model([_fraction_of(0.1), _fraction_of(-2.5e-8), _fraction_of(1e300)]),
        encode_model([(f32_max, 1), (-f32_max, 1), (f32_max + 1, 1), (f64_max, 1)]),
        encode_model([(f64_max, 1), (f64_max + 1, 1), (1, f64_max), (f64_max, f64_max)]),
        encode_model([(2**31 - 1, 1), (-(2**31), 1), (2**31, 1), (2**63 - 1, 1), (-(2**63), 1)]),
        encode_model([(1, -2), (-3, -4), (7, 2**100), (2**100, 3)]),
        encode_model([(2**1100, 2**1099), (1, 2**1100)]),
        struct.pack("<Q", 1) + _bigint_raw(1, 5, 2) + _bigint_raw(1, 2, 1),
        struct.pack("<Q", 1) + _bigint_raw(-1, 0) + _bigint_raw(1, 1),
        # regressions: NoSign with a magnitude is zero (numerator: 0.0; denominator: malformed)
        struct.pack("<Q", 2) + _bigint_raw(0, 5) + _bigint_raw(1, 3) + _bigint_raw(1, 1) * 2,
        struct.pack("<Q", 1) + _bigint_raw(1, 5) + _bigint_raw(0, 3),
        # regression: a malformed weight after one that does not convert is still malformed
        struct.pack("<Q", 2)
        + encode_model([(f64_max * 4, 1)])[8:]
        + _bigint_raw(7, 1)
        + _bigint_raw(1, 1),
        # the num-rational comparison quirk: numerator exactly F::MAX, negative denominator
        encode_model([(f64_max, -607), (f32_max, -3), (-f32_max, -1)]),
    ]
    out.extend(_gen_model(rng) for _ in range(24))
    return out


# ---------------------------------------------------------------------------------------------
# mask objects, local seed dict, header, payloads, messages
# ---------------------------------------------------------------------------------------------


def fuzz_mask_object(data: bytes) -> str:
    """``MaskObject.from_bytes`` (then ``is_valid``, in C, on what was parsed)."""
    try:
        obj, end = MaskObject.from_bytes(data)
    except MaskObjectError as e:
        return _feature(e)
    assert obj.to_bytes() == bytes(data[:end]), "mask object does not re-encode"
    return "ok valid" if obj.is_valid() else "ok invalid"


def _random_mask_object(rng: random.Random) -> MaskObject:
    configs = _random_configs(rng)
    n = rng.choice((0, 1, 2, 5, rng.randrange(0, 40)))

    def number(config: MaskConfig) -> int:
        roll = rng.random()
        top = 1 << (8 * config.bytes_per_number)
        if roll < 0.8:
            return rng.randrange(config.order)
        if roll < 0.9 or config.order >= top:
            return config.order - 1
        # beyond the order, still within the wire width: valid bytes, invalid number
        return rng.randrange(config.order, top)

    return MaskObject.from_ints(
        configs, [number(configs.vect) for _ in range(n)], number(configs.unit)
    )


def _gen_mask_object(rng: random.Random) -> bytes:
    raw = _random_mask_object(rng).to_bytes()
    return raw + rng.randbytes(rng.randrange(0, 16)) if rng.random() < 0.2 else raw


def _mask_object_seeds() -> list[bytes]:
    rng = random.Random(5)
    out = []
    for config in CONFIGS:
        configs = MaskConfigPair.single(config)
        out.append(MaskObject.empty(configs).to_bytes())
        weights = np.array([0.5, -1.0, 0.25], dtype=config.data_type.numpy_dtype)
        out.append(mask_model(_sha("mask"), configs, 1.0, weights).to_bytes())
    out.extend(_gen_mask_object(rng) for _ in range(16))
    return out


def fuzz_local_seed_dict(data: bytes) -> str:
    """``decode_local_seed_dict``: the Length-Value dictionary inside an Update payload."""
    try:
        result, end = decode_local_seed_dict(data)
    except DecodeError as e:
        return _feature(e)
    assert encode_local_seed_dict(result) == bytes(data[:end]), "seed dict does not re-encode"
    return "ok"


def _gen_local_seed_dict(rng: random.Random) -> bytes:
    return encode_local_seed_dict(_random_map(rng, 80))


def _local_seed_dict_seeds() -> list[bytes]:
    rng = random.Random(6)
    return [_gen_local_seed_dict(rng) for _ in range(16)]


def fuzz_header(data: bytes) -> str:
    """``decode_header``: the 136-byte plaintext header, before any signature check."""
    try:
        header = decode_header(data)
    except DecodeError as e:
        return _feature(e)
    assert 136 <= header.length <= len(data)
    return f"ok {header.tag.name} {header.flags & 1}"


def fuzz_payload(data: bytes) -> str:
    """``decode_payload``: byte 0 picks the decoder (Sum, Update, Sum2, chunk, or a bad tag)."""
    if not data:
        return "empty"
    selector, body = data[0], data[1:]
    kind = selector % 5
    try:
        if kind == 3:
            payload = decode_payload(Tag.Sum, body, multipart=True)
        elif kind == 4:
            payload = decode_payload(selector, body)  # mostly an invalid tag
        else:
            payload = decode_payload(Tag(kind + 1), body)
    except DecodeError as e:
        return _feature(e)
    # oracle: the decoded payload encodes to bytes that decode to an equal payload
    again = type(payload).from_bytes(payload.to_bytes())
    assert _payload_equal(payload, again), f"{type(payload).__name__} does not round-trip"
    return f"ok {type(payload).__name__}"


def _payload_equal(a: Any, b: Any) -> bool:
    if isinstance(a, (Sum2Payload, UpdatePayload)):
        return bool(a.to_bytes() == b.to_bytes())
    return bool(a == b)


@dataclass
class _Material:
    """Valid payloads and messages of one round, from fixed keys (built once, lazily)."""

    params: RoundParameters
    summers: list[int]
    updaters: list[int]
    mask_seeds: list[bytes]
    sum_payloads: dict[int, SumPayload]
    update_payloads: dict[int, UpdatePayload]
    sum2_payloads: dict[int, Sum2Payload]
    settings: Settings


_material: Optional[_Material] = None


def _round_seed_with_roles(sum_prob: float) -> tuple[bytes, list[int], list[int]]:
    """A round seed under which the fixed participants give >= 2 summers and >= 3 updaters."""
    for attempt in range(1000):
        seed = _sha(f"xaynet-fuzz round seed {attempt}")
        summers = [
            i
            for i, keys in enumerate(PARTICIPANTS)
            if is_eligible(sum_signature(keys.secret, seed), sum_prob)
        ]
        updaters = [i for i in range(len(PARTICIPANTS)) if i not in summers]
        if len(summers) >= 2 and len(updaters) >= 3:
            return seed, summers[:2], updaters[:3]
    raise RuntimeError("no round seed gives the roles the fuzz targets need")  # pragma: no cover


def material() -> _Material:
    """The shared round: Prime/F32/B0/M3, model length 4, sum 0.5, update 1.0."""
    global _material
    if _material is None:
        settings = Settings.for_tests(model_length=4, mask="Prime/F32/B0/M3", sum=0.5, update=1.0)
        seed, summers, updaters = _round_seed_with_roles(settings.pet.sum)
        configs = settings.mask_config
        params = RoundParameters(COORDINATOR.public, 0.5, 1.0, seed, configs, 4)
        sums = {
            i: SumPayload(sum_signature(PARTICIPANTS[i].secret, seed), EPHEMERAL[i].public)
            for i in summers
        }
        mask_seeds = [_sha(f"xaynet-fuzz mask seed {i}") for i in updaters]
        updates = {}
        for i, mask_seed in zip(updaters, mask_seeds):
            keys = PARTICIPANTS[i]
            weights = np.array([0.25 * i, -0.5, 1.0, 0.0], dtype=np.float32)
            masked = mask_model(mask_seed, configs, 1.0, weights)
            local = {PARTICIPANTS[s].public: seal(mask_seed, EPHEMERAL[s].public) for s in summers}
            updates[i] = UpdatePayload(
                sum_signature(keys.secret, seed), update_signature(keys.secret, seed), masked, local
            )
        mask = sum_masks(mask_seeds, 4, configs)
        sum2s = {i: Sum2Payload(sum_signature(PARTICIPANTS[i].secret, seed), mask) for i in summers}
        _material = _Material(params, summers, updaters, mask_seeds, sums, updates, sum2s, settings)
    return _material


def _all_payloads() -> list[tuple[Tag, int, bytes]]:
    """(tag, sender index, payload bytes) of every valid payload of the shared round."""
    m = material()
    out: list[tuple[Tag, int, bytes]] = []
    out += [(Tag.Sum, i, p.to_bytes()) for i, p in m.sum_payloads.items()]
    out += [(Tag.Update, i, p.to_bytes()) for i, p in m.update_payloads.items()]
    out += [(Tag.Sum2, i, p.to_bytes()) for i, p in m.sum2_payloads.items()]
    return out


def _payload_seeds() -> list[bytes]:
    out = []
    for tag, _, raw in _all_payloads():
        out.append(bytes([tag.value - 1]) + raw)
    update = material().update_payloads[material().updaters[0]].to_bytes()
    for chunk in split_payload(update, 300, message_id=41):
        out.append(b"\x03" + chunk)
    out.append(b"\x04" + b"\x00" * 100)
    return out


def _gen_payload(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return b"\x00" + SumPayload(rng.randbytes(64), rng.randbytes(32)).to_bytes()
    if kind == 1:
        local = _random_map(rng, 80)
        obj = _random_mask_object(rng)
        return b"\x01" + UpdatePayload(rng.randbytes(64), rng.randbytes(64), obj, local).to_bytes()
    if kind == 2:
        return b"\x02" + Sum2Payload(rng.randbytes(64), _random_mask_object(rng)).to_bytes()
    chunk = ChunkPayload(
        rng.randrange(65536), rng.randrange(65536), rng.random() < 0.5, rng.randbytes(40)
    )
    return b"\x03" + chunk.to_bytes()


def _resign(plaintext: bytes) -> bytes:
    """Sign ``[64:length)`` again with the header's participant key, if it is one of ours.

    Without this almost every mutation would stop at the signature check and the payload
    decoders behind it would never see the mutated bytes.
    """
    if len(plaintext) < 136:
        return plaintext
    keys = _KNOWN.get(bytes(plaintext[64:96]))
    if keys is None:
        return plaintext
    (length,) = struct.unpack(">I", plaintext[128:132])
    if not 136 <= length <= len(plaintext):
        return plaintext
    signature = keys.sign(plaintext[64:length])
    return signature + plaintext[64:]


def fuzz_message(data: bytes) -> str:
    """``decode_message``: unverified, then verified with the expected coordinator key."""
    features = []
    try:
        message = decode_message(data, verify=False)
        features.append(f"ok {message.tag.name}")
    except DecodeError as e:
        features.append(_feature(e))
    try:
        verified = decode_message(
            _resign(data), verify=True, expected_coordinator_pk=COORDINATOR.public
        )
    except DecodeError as e:
        features.append(_feature(e))
    else:
        _check_message(verified)
        features.append(f"verified {verified.tag.name}")
    return " | ".join(features)


def _check_message(message: Message) -> None:
    """Oracle: a decoded message re-encodes (signed with the same key) and decodes equal."""
    keys = _KNOWN.get(message.participant_pk)
    if keys is None:
        return
    again = decode_message(
        encode_message(
            message.payload,
            message.tag,
            keys.public,
            keys.secret,
            message.coordinator_pk,
            message.is_multipart,
        )
    )
    assert again.tag is message.tag and again.is_multipart == message.is_multipart
    assert _payload_equal(again.payload, message.payload), "message does not round-trip"


def _message_seeds() -> list[bytes]:
    m = material()
    out = []
    for tag, i, raw in _all_payloads():
        signer = PARTICIPANTS[i]
        out.append(encode_message(raw, tag, signer.public, signer.secret, COORDINATOR.public))
    updater = m.updaters[0]
    enc = MessageEncoder(
        PARTICIPANTS[updater],
        COORDINATOR.public,
        m.update_payloads[updater],
        max_message_size=300,
        message_id=42,
    )
    out.extend(enc)
    return out


def _gen_message(rng: random.Random) -> bytes:
    keys = rng.choice(PARTICIPANTS)
    body = _gen_payload(rng)
    kind = body[0]
    multipart = kind == 3
    tag = Tag(rng.randrange(1, 4)) if multipart else Tag(kind + 1)
    coordinator = COORDINATOR.public if rng.random() < 0.9 else rng.randbytes(32)
    return encode_message(body[1:], tag, keys.public, keys.secret, coordinator, multipart)


def _header_seeds() -> list[bytes]:
    return _message_seeds()


# ---------------------------------------------------------------------------------------------
# multipart reassembly (the coordinator's Reassembler)
# ---------------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _records(data: bytes) -> list[tuple[int, int, bytes]]:
    """``sender (u8) ‖ tag/time (u8) ‖ length (u16 BE) ‖ bytes``, repeated."""
    out = []
    pos = 0
    while len(data) - pos >= 4:
        sender, control = data[pos], data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 4
        out.append((sender, control, bytes(data[pos : pos + length])))
        pos += length
    return out


def _record(sender: int, control: int, raw: bytes) -> bytes:
    return bytes((sender, control)) + struct.pack(">H", len(raw)) + raw


def _check_reassembler(r: Reassembler) -> None:
    """Oracle: every bound and every counter of the reassembler holds after each chunk."""
    builders = r._builders  # noqa: SLF001 - the fuzz oracle checks the internals on purpose
    assert len(builders) <= r.max_builders, "too many incomplete messages"
    total = 0
    per: dict[bytes, int] = {}
    for (_, pk), builder in builders.items():
        per[pk] = per.get(pk, 0) + 1
        assert builder.nbytes == sum(len(c) for c in builder.chunks.values()), "byte count"
        assert all(cid < r.max_chunks_per_message for cid in builder.chunks), "chunk id bound"
        if builder.last_id is not None:
            assert all(cid <= builder.last_id for cid in builder.chunks), "chunk after last"
        total += builder.nbytes
    assert total == r.buffered_bytes, "buffered byte count is off"
    assert r.buffered_bytes <= r.max_total_bytes, "byte limit exceeded"
    assert per == r._per_participant, "per-participant counts are off"  # noqa: SLF001
    assert all(v <= r.max_builders_per_participant for v in per.values()), "per-sender bound"


def fuzz_multipart(data: bytes) -> str:
    """Chunks through a small :class:`Reassembler` (time passes), then the rebuilt payloads."""
    clock = _Clock()
    r = Reassembler(
        max_builders=4,
        max_builders_per_participant=2,
        max_total_bytes=3000,
        max_age=20.0,
        max_chunks_per_message=48,
        clock=clock,
    )
    features = set()
    for sender, control, raw in _records(data):
        clock.now += control >> 4
        try:
            chunk = ChunkPayload.from_bytes(raw)
        except DecodeError as e:
            features.add(_feature(e))
            continue
        tag = Tag((control & 3) % 3 + 1)
        pk = PARTICIPANTS[sender % 4].public
        try:
            rebuilt = r.add_chunk(pk, COORDINATOR.public, tag, chunk)
        except DecodeError as e:  # ReassemblyError
            features.add(_feature(e))
            rebuilt = None
        _check_reassembler(r)
        if rebuilt is None:
            continue
        try:
            payload = rebuilt.decode_payload()
        except DecodeError as e:
            features.add("rebuilt " + _feature(e))
        else:
            features.add(f"rebuilt {type(payload).__name__}")
    r.expire(clock.now + 1000)
    assert len(r) == 0 and r.buffered_bytes == 0, "expire left messages behind"
    return " | ".join(sorted(features))


def _multipart_seeds() -> list[bytes]:
    out = []
    for index, (tag, _, raw) in enumerate(_all_payloads()):
        chunks = split_payload(raw, 200 + 40 * index, message_id=index)
        control = tag.value - 1
        if len(chunks) == 1:
            chunks = [ChunkPayload(0, index, True, raw).to_bytes()]
        in_order = b"".join(_record(index, control, c) for c in chunks)
        out.append(in_order)
        out.append(b"".join(_record(index, control, c) for c in reversed(chunks)))
        out.append(in_order + in_order)  # resent chunks
    # two senders interleaved, one of them never finishing
    a = split_payload(_all_payloads()[2][2], 220, message_id=7)
    b = split_payload(_all_payloads()[3][2], 220, message_id=7)
    mixed = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            mixed.append(_record(1, 1, a[i]))
        if i < len(b) - 1:
            mixed.append(_record(2, 0x11, b[i]))
    out.append(b"".join(mixed))
    return out


def _gen_multipart(rng: random.Random) -> bytes:
    records: list[bytes] = []
    for _ in range(rng.randrange(1, 6)):
        size = rng.randrange(0, 400)
        payload = rng.randbytes(size)
        message_id = rng.randrange(4)
        pieces = split_payload(payload, 194 + rng.randrange(0, 100), message_id=message_id)
        if len(pieces) == 1:
            pieces = [ChunkPayload(0, message_id, True, payload).to_bytes()]
        sender = rng.randrange(6)
        control = rng.randrange(256) if rng.random() < 0.2 else rng.randrange(3)
        if rng.random() < 0.3:
            rng.shuffle(pieces)
        records.extend(_record(sender, control, p) for p in pieces)
    return b"".join(records)


# ---------------------------------------------------------------------------------------------
# the coordinator's message pipeline (POST /message)
# ---------------------------------------------------------------------------------------------


class _StrictPipeline(Pipeline):
    """The real pipeline, except that an internal error propagates instead of being counted."""

    def _reject(
        self, ticket: Ticket, reason: Reason, detail: str, tag: "Tag | None" = None
    ) -> None:
        if reason is Reason.INTERNAL:
            # Called from Pipeline.handle's ``except Exception`` block: re-raise the bug.
            exc = sys.exc_info()[1]
            if exc is not None:
                raise exc
            raise AssertionError(f"internal error without an exception: {detail}")
        super()._reject(ticket, reason, detail, tag)


@dataclass
class _Coordinators:
    """One coordinator state per phase (Sum, Update, Sum2) with its pipeline, fixed keys."""

    pipelines: dict[Tag, _StrictPipeline]
    used: int = 0


_coordinators: Optional[_Coordinators] = None
_RESET_EVERY = 200


def _new_state(m: _Material) -> tuple[CoordinatorState, _StrictPipeline]:
    state = CoordinatorState(m.settings, Limits(multipart_max_bytes=1 << 20))
    with state.lock:
        state.begin_round()
        # the fixed round key and seed of the seeds (begin_round draws random ones)
        state._round = Round(1, COORDINATOR, m.params.seed, m.settings, time.monotonic())  # noqa: SLF001
    return state, _StrictPipeline(state, Stats())


def _send_valid(pipeline: Pipeline, keys: SigningKeyPair, payload: Any) -> None:
    plain = encode_message(payload, None, keys.public, keys.secret, COORDINATOR.public)
    outcome = pipeline.handle(seal(plain, COORDINATOR.public))
    assert outcome is Outcome.ACCEPTED, f"a valid {type(payload).__name__} was {outcome}"


def _build_coordinators() -> _Coordinators:
    m = material()
    sum_state, sum_pipe = _new_state(m)
    update_state, update_pipe = _new_state(m)
    sum2_state, sum2_pipe = _new_state(m)
    for state, pipe in ((update_state, update_pipe), (sum2_state, sum2_pipe)):
        for i in m.summers:
            _send_valid(pipe, PARTICIPANTS[i], m.sum_payloads[i])
        with state.lock:
            state.open_update(state.round)
    for i in m.updaters:
        _send_valid(sum2_pipe, PARTICIPANTS[i], m.update_payloads[i])
    with sum2_state.lock:
        sum2_state.open_sum2(sum2_state.round)
    return _Coordinators({Tag.Sum: sum_pipe, Tag.Update: update_pipe, Tag.Sum2: sum2_pipe})


def _setup_pipeline() -> None:
    global _coordinators
    if _coordinators is None:
        _coordinators = _build_coordinators()


def fuzz_pipeline(data: bytes) -> str:
    """POST bodies through the coordinator's pipeline, as records (see :func:`_records`).

    Record byte 0 is the mode: ``& 7`` 0..5 seal after re-signing, 6 seal as is, 7 the raw
    bytes as the body. The plaintext's tag byte picks the coordinator in that phase.
    """
    global _coordinators
    _setup_pipeline()
    assert _coordinators is not None
    _coordinators.used += 1
    if _coordinators.used > _RESET_EVERY:
        _coordinators = _build_coordinators()
    features = []
    for mode, _, plaintext in _records(data)[:8]:
        how = mode & 7
        if how == 7:
            body = plaintext
        else:
            body = seal(_resign(plaintext) if how < 6 else plaintext, COORDINATOR.public)
        tag_byte = plaintext[132] if len(plaintext) > 132 else 1
        tag = Tag(tag_byte) if 1 <= tag_byte <= 3 else Tag(1 + mode % 3)
        pipeline = _coordinators.pipelines[tag]
        outcome = pipeline.handle(body)  # an internal error raises (_StrictPipeline)
        assert isinstance(outcome, Outcome)
        # belt and braces, should Pipeline.handle stop going through _reject
        internal = pipeline.stats.snapshot()["rejected"].get(Reason.INTERNAL.value, 0)
        assert not internal, "the pipeline counted an internal error"
        features.append(outcome.value)
    return " ".join(features)


def _pipeline_seeds() -> list[bytes]:
    out = [_record(0, 0, plain) for plain in _message_seeds()]
    m = material()
    # a whole multipart Update (all chunks) and a Sum followed by its duplicate
    updater = m.updaters[1]
    enc = MessageEncoder(
        PARTICIPANTS[updater],
        COORDINATOR.public,
        m.update_payloads[updater],
        max_message_size=260,
        message_id=43,
    )
    out.append(b"".join(_record(0, 0, plain) for plain in enc))
    summer = m.summers[0]
    sum_plain = encode_message(
        m.sum_payloads[summer],
        None,
        PARTICIPANTS[summer].public,
        PARTICIPANTS[summer].secret,
        COORDINATOR.public,
    )
    out.append(_record(0, 0, sum_plain) + _record(0, 0, sum_plain))
    out.append(_record(7, 0, seal(sum_plain, COORDINATOR.public)))
    return out


def _gen_pipeline(rng: random.Random) -> bytes:
    return b"".join(
        _record(rng.randrange(8), 0, _gen_message(rng)) for _ in range(rng.randrange(1, 4))
    )


# ---------------------------------------------------------------------------------------------
# saved states: ours (msgpack) and the original's (bincode)
# ---------------------------------------------------------------------------------------------


def _check_restorable(state: ParticipantState) -> None:
    """Oracle: what load_state accepts can be used: entered, saved again, restored again."""
    machine.entry_events(state)
    again = load_state(dump_state(state))
    assert type(again.phase) is type(state.phase), "the state does not survive save/restore"


def _restore(data: bytes) -> str:
    try:
        state = load_state(data, _check_restored)
    except ParticipantRestore as e:
        return _feature(e)
    _check_restorable(state)
    return f"ok {type(state.phase).__name__}"


def fuzz_state(data: bytes) -> str:
    """``load_state`` of our msgpack state document (with the core's own check)."""
    return _restore(data)


def fuzz_state_original(data: bytes) -> str:
    """``load_state`` of the original participant's bincode state."""
    return _restore(data)


def _shared(rng: random.Random) -> SharedState:
    m = material()
    params = m.params if rng.random() < 0.5 else _random_params(rng)
    size = rng.choice((None, None, 194, 300, 4096, 2**40))
    return SharedState(rng.choice(PARTICIPANTS), _random_float(rng), size, params)


def _local_model(rng: random.Random) -> Any:
    if rng.random() < 0.4:
        return None
    dtype = rng.choice(("float32", "float64", "int32", "int64"))
    n = rng.randrange(0, 6)
    if dtype.startswith("float"):
        return np.array([rng.uniform(-2, 2) for _ in range(n)], dtype=dtype)
    return np.array([rng.randrange(-1000, 1000) for _ in range(n)], dtype=dtype)


def _random_sum2(rng: random.Random) -> Sum2:
    m = material()
    step = rng.randrange(4)
    seed_dict = _random_map(rng, 80) if step >= 1 else None
    seeds = tuple(rng.randbytes(32) for _ in range(rng.randrange(4))) if step >= 2 else None
    mask = _random_mask_object(rng) if step >= 3 else None
    if step == 3 and rng.random() < 0.5:
        mask = sum_masks(list(m.mask_seeds), 4, m.params.mask_config)
    return Sum2(rng.choice(EPHEMERAL), rng.randbytes(64), seed_dict, seeds, mask)


def _random_phase(rng: random.Random) -> Phase:
    m = material()
    kind = rng.randrange(6)
    if kind == 0:
        return NewRound()
    if kind == 1:
        return Awaiting()
    if kind == 2:
        return Sum(rng.choice(EPHEMERAL), rng.randbytes(64))
    if kind == 3:
        step = rng.randrange(5)
        updater = m.update_payloads[m.updaters[0]]
        sum_dict = _random_map(rng, 32) if step == 1 else None
        model = np.array([0.5, 1.0, -1.0, 0.0], dtype=np.float32) if step == 2 else None
        mask = (m.mask_seeds[0], updater.masked_model) if step == 3 else None
        seed_dict = dict(updater.local_seed_dict) if step == 4 else None
        if step == 4:
            mask = (m.mask_seeds[0], updater.masked_model)
        return Update(rng.randbytes(64), rng.randbytes(64), sum_dict, model, mask, seed_dict)
    if kind == 4:
        return _random_sum2(rng)
    sending_kind = rng.choice(list(SendingKind))
    then = _random_sum2(rng) if sending_kind is SendingKind.SUM else None
    data = rng.randbytes(rng.randrange(0, 600))
    if rng.random() < 0.5:
        return Sending(sending_kind, data, then=then, next_index=rng.randrange(2))
    return Sending(
        sending_kind,
        data,
        payload_size=rng.choice((10, 100, 300)),
        message_id=rng.randrange(65536),
        next_index=rng.randrange(5),
        failed=rng.randbytes(rng.randrange(0, 300)) if rng.random() < 0.5 else None,
        then=then,
    )


def _gen_state(rng: random.Random) -> bytes:
    state = ParticipantState(_shared(rng), _random_phase(rng), _local_model(rng))
    return dump_state(state)


def _state_seeds() -> list[bytes]:
    rng = random.Random(7)
    return [_gen_state(rng) for _ in range(40)]


def _original_mask_object(obj: MaskObject) -> bytes:
    def biguint(v: int) -> bytes:
        n = (v.bit_length() + 31) // 32
        return struct.pack("<Q", n) + v.to_bytes(4 * n, "little")

    values = limbs_to_ints(obj.vect.data)
    return (
        struct.pack("<Q", len(values))
        + b"".join(biguint(v) for v in values)
        + pack_mask_config(obj.vect.config)
        + biguint(obj.unit.value)
        + pack_mask_config(obj.unit.config)
    )


def _option(value: Optional[bytes]) -> bytes:
    return b"\x00" if value is None else b"\x01" + value


def _original_sum2(rng: random.Random) -> bytes:
    sum2 = _random_sum2(rng)
    out = pack_byte_string(sum2.ephm_keys.public) + pack_byte_string(sum2.ephm_keys.secret)
    out += pack_byte_string(sum2.sum_signature)
    seed_dict = None
    if sum2.seed_dict is not None:
        seed_dict = encode_update_seed_dict(sum2.seed_dict)
    out += _option(seed_dict)
    seeds = None
    if sum2.seeds is not None:
        seeds = struct.pack("<Q", len(sum2.seeds)) + b"".join(
            pack_byte_string(s) for s in sum2.seeds
        )
    out += _option(seeds)
    out += _option(None if sum2.mask is None else _original_mask_object(sum2.mask))
    return out


def _gen_state_original(rng: random.Random) -> bytes:
    """A state in the original's layout (original_state.py documents it)."""
    m = material()
    keys = rng.choice(PARTICIPANTS)
    size = rng.choice((None, None, 185, 194, 4096))
    params = m.params if rng.random() < 0.5 else _random_params(rng)
    shared = (
        pack_byte_string(keys.public)
        + pack_byte_string(keys.secret)
        + struct.pack("<d", _random_float(rng))
        + _option(None if size is None else struct.pack("<Q", size))
        + params.to_bytes()
    )
    variant = rng.randrange(8)
    if variant <= 1:
        private = b""
    elif variant == 2:
        ephm = rng.choice(EPHEMERAL)
        private = pack_byte_string(ephm.public) + pack_byte_string(ephm.secret)
        private += pack_byte_string(rng.randbytes(64))
    elif variant == 3:
        private = pack_byte_string(rng.randbytes(64)) + pack_byte_string(rng.randbytes(64))
        private += _option(encode_sum_dict(_random_map(rng, 32)) if rng.random() < 0.5 else None)
        private += _option(
            encode_update_seed_dict(_random_map(rng, 80)) if rng.random() < 0.3 else None
        )
        ratios = None
        roll = rng.random()
        if roll < 0.3:
            ratios = encode_model([_fraction_of(rng.uniform(-2, 2)) for _ in range(4)])
        elif roll < 0.5:  # what a corrupted state can hold: huge, unreduced, signed oddly
            ratios = struct.pack("<Q", 4) + b"".join(_random_ratio_raw(rng) for _ in range(4))
        private += _option(ratios)
        mask = None
        if rng.random() < 0.5:
            mask = pack_byte_string(rng.randbytes(32)) + _original_mask_object(
                _random_mask_object(rng)
            )
        private += _option(mask)
    elif variant == 4:
        private = _original_sum2(rng)
    else:
        kind = {5: SendingKind.SUM, 6: SendingKind.UPDATE, 7: SendingKind.SUM2}[variant]
        payload = rng.randbytes(rng.randrange(0, 300))
        failed = _option(pack_byte_string(rng.randbytes(200)) if rng.random() < 0.3 else None)
        if rng.random() < 0.5:
            message = encode_message(payload, kind.tag, keys.public, keys.secret, params.pk)
            private = struct.pack("<I", 0) + _option(pack_byte_string(message)) + failed
        else:
            private = struct.pack("<I", 1) + pack_byte_string(keys.public)
            private += pack_byte_string(keys.secret) + pack_byte_string(params.pk)
            private += pack_byte_string(payload) + struct.pack("<H", rng.randrange(4))
            private += struct.pack("<I", kind.tag.index) + struct.pack("<Q", rng.choice((10, 300)))
            private += struct.pack("<H", rng.randrange(65536)) + failed
        if kind is SendingKind.SUM:
            private += _original_sum2(rng)
    return struct.pack("<I", variant) + private + shared


def _state_original_seeds() -> list[bytes]:
    rng = random.Random(8)
    return [_gen_state_original(rng) for _ in range(40)]


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "params",
            "RoundParameters.from_bytes (GET /params)",
            fuzz_params,
            _params_seeds,
            _gen_params,
            (DecodeError,),
            max_size=1024,
        ),
        Target(
            "sum_dict",
            "decode_sum_dict (GET /sums)",
            fuzz_sum_dict,
            _sum_dict_seeds,
            _gen_sum_dict,
            (DecodeError,),
            max_size=4096,
        ),
        Target(
            "seed_dict",
            "decode_update_seed_dict (GET /seeds)",
            fuzz_seed_dict,
            _seed_dict_seeds,
            _gen_seed_dict,
            (DecodeError,),
            max_size=4096,
        ),
        Target(
            "model",
            "decode_global_model, C (GET /model), F32/F64/I32/I64 + reference",
            fuzz_model,
            _model_seeds,
            _gen_model,
            (GlobalModelError,),
            max_size=8192,
        ),
        Target(
            "mask_object",
            "MaskObject.from_bytes + is_valid (C)",
            fuzz_mask_object,
            _mask_object_seeds,
            _gen_mask_object,
            (MaskObjectError,),
            max_size=8192,
        ),
        Target(
            "local_seed_dict",
            "decode_local_seed_dict",
            fuzz_local_seed_dict,
            _local_seed_dict_seeds,
            _gen_local_seed_dict,
            (DecodeError,),
            max_size=4096,
        ),
        Target(
            "header",
            "decode_header",
            fuzz_header,
            _header_seeds,
            _gen_message,
            (DecodeError,),
            max_size=4096,
        ),
        Target(
            "payload",
            "decode_payload (Sum, Update, Sum2, chunk)",
            fuzz_payload,
            _payload_seeds,
            _gen_payload,
            (DecodeError,),
            max_size=8192,
        ),
        Target(
            "message",
            "decode_message (unverified; re-signed and verified)",
            fuzz_message,
            _message_seeds,
            _gen_message,
            (DecodeError,),
            max_size=8192,
        ),
        Target(
            "multipart",
            "Reassembler.add_chunk + reassembled payload decode",
            fuzz_multipart,
            _multipart_seeds,
            _gen_multipart,
            (DecodeError,),
            max_size=16384,
        ),
        Target(
            "pipeline",
            "coordinator Pipeline.handle (POST /message), re-signed and sealed",
            fuzz_pipeline,
            _pipeline_seeds,
            _gen_pipeline,
            (),
            max_size=16384,
            setup=_setup_pipeline,
        ),
        Target(
            "state",
            "load_state, msgpack document (+ save/restore round trip)",
            fuzz_state,
            _state_seeds,
            _gen_state,
            (ParticipantRestore,),
            max_size=16384,
        ),
        Target(
            "state_original",
            "load_state, the original's bincode state",
            fuzz_state_original,
            _state_original_seeds,
            _gen_state_original,
            (ParticipantRestore,),
            max_size=16384,
        ),
    )
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise KeyError(f"unknown fuzz target {name!r} (known: {', '.join(TARGETS)})") from None


def all_seeds(target: Target) -> list[bytes]:
    """The target's seeds, truncated to its maximum input size."""
    return [s[: target.max_size] for s in target.seeds()]
