"""The saved state (msgpack, versioned, validated), the original's bincode state, and the
local model conversion of docs/PROTOCOL.md 8.2."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from participant_fakes import make_params  # noqa: E402

from xaynet_sdk.codec.bincode import encode_model, pack_byte_string, pack_mask_config  # noqa: E402
from xaynet_sdk.codec.crypto import EncryptKeyPair, SigningKeyPair  # noqa: E402
from xaynet_sdk.codec.message import encode_message  # noqa: E402
from xaynet_sdk.exceptions import (  # noqa: E402
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
    ParticipantRestore,
)
from xaynet_sdk.mask.config import DataType  # noqa: E402
from xaynet_sdk.mask.masking import mask_model  # noqa: E402
from xaynet_sdk.protocol.local_model import convert_local_model, model_to_python  # noqa: E402
from xaynet_sdk.protocol.saved import FORMAT, dump_state, load_state  # noqa: E402
from xaynet_sdk.protocol.state import (  # noqa: E402
    Awaiting,
    NewRound,
    ParticipantState,
    Sending,
    SendingKind,
    SharedState,
    Sum,
    Sum2,
    Update,
)

# ----------------------------------------------------------------------------- msgpack state


def _shared(max_message_size: int | None = None) -> SharedState:
    params, _ = make_params(config="Integer/F64/B2/M6", model_length=3)
    return SharedState(SigningKeyPair.generate(), 0.25, max_message_size, params)


def _phases() -> list[object]:
    shared = _shared()
    configs = shared.round_params.mask_config
    masked = mask_model(b"\x01" * 32, configs, 1.0, np.array([1.0, 2.0, 3.0]))
    sum2 = Sum2(EncryptKeyPair.generate(), b"s" * 64, {b"u" * 32: b"e" * 80}, None, None)
    return [
        NewRound(),
        Awaiting(),
        Sum(EncryptKeyPair.generate(), b"s" * 64),
        Update(b"s" * 64, b"u" * 64, {b"a" * 32: b"b" * 32}),
        Update(b"s" * 64, b"u" * 64, None, np.array([1.0, 2.0, 3.0])),
        Update(b"s" * 64, b"u" * 64, None, None, (b"\x01" * 32, masked), {b"a" * 32: b"e" * 80}),
        sum2,
        Sum2(EncryptKeyPair.generate(), b"s" * 64, None, (b"\x02" * 32,), None),
        Sum2(EncryptKeyPair.generate(), b"s" * 64, None, None, masked),
        Sending(SendingKind.SUM, b"payload", 0, None, 0, None, sum2),
        Sending(SendingKind.UPDATE, b"x" * 900, 300, 4242, 2, b"sealed", None),
        Sending(SendingKind.SUM2, b"p", 0, None, 1, None, None),
    ]


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b)
        )
    if hasattr(a, "__dataclass_fields__") and type(a) is type(b):
        return all(_same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("index", range(12))
@pytest.mark.parametrize("cached", [False, True])
def test_every_phase_round_trips(index: int, cached: bool) -> None:
    phase = _phases()[index]
    model = np.array([4.0, 5.0, 6.0]) if cached else None
    state = ParticipantState(_shared(512), phase, model)  # type: ignore[arg-type]
    raw = dump_state(state)
    for form in (raw, list(raw), bytearray(raw), tuple(raw)):
        back = load_state(form)
        assert back.shared.keys == state.shared.keys
        assert back.shared.scalar == 0.25 and back.shared.max_message_size == 512
        assert back.round_params == state.round_params
        assert _same(back.phase, state.phase)
        assert _same(back.local_model, state.local_model)


def _doc(**changes: object) -> bytes:
    state = ParticipantState(_shared(), Awaiting())
    doc = msgpack.unpackb(dump_state(state))
    doc.update(changes)
    return bytes(msgpack.packb(doc, use_bin_type=True))


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"", "empty"),
        (b"\x92\x01\x02", "no format marker"),
        (msgpack.packb({"hello": 1}), "no format marker"),
        (b"not msgpack at all \xc1", "not a participant state"),
    ],
)
def test_garbage_is_refused_with_a_reason(raw: bytes, match: str) -> None:
    with pytest.raises(ParticipantRestore, match=match):
        load_state(raw)


def test_truncation_unknown_version_and_corruption_are_explained() -> None:
    raw = dump_state(ParticipantState(_shared(), Awaiting()))
    for cut in (1, 10, len(raw) // 2, len(raw) - 1):
        with pytest.raises(ParticipantRestore, match="truncated"):
            load_state(raw[:cut])
    with pytest.raises(ParticipantRestore, match="trailing bytes"):
        load_state(raw + b"\x00")
    with pytest.raises(ParticipantRestore, match="version 2.*newer"):
        load_state(_doc(version=2))
    secret = bytearray(msgpack.unpackb(raw)["secret_key"])
    secret[40] ^= 1
    with pytest.raises(ParticipantRestore, match="signing key is corrupted"):
        load_state(_doc(secret_key=bytes(secret)))
    with pytest.raises(ParticipantRestore, match="round parameters"):
        load_state(_doc(round_params=b"\x00" * 136))
    with pytest.raises(ParticipantRestore, match="unknown phase"):
        load_state(_doc(phase={"name": "dancing"}))
    with pytest.raises(ParticipantRestore, match="'scalar' has the wrong type"):
        load_state(_doc(scalar="one"))
    with pytest.raises(ParticipantRestore, match="byte values"):
        load_state([1, 2, 300])
    with pytest.raises(TypeError, match="not str"):
        load_state("[1, 2, 3]")


def test_the_document_is_marked_and_versioned() -> None:
    doc = msgpack.unpackb(dump_state(ParticipantState(_shared(), Awaiting())))
    assert doc["format"] == FORMAT and doc["version"] == 1
    assert set(doc) == {
        "format",
        "version",
        "secret_key",
        "scalar",
        "max_message_size",
        "round_params",
        "phase",
        "local_model",
    }


# ----------------------------------------------------------------------------- original state


def _shared_bincode(
    keys: SigningKeyPair, scalar: float, size: int | None, params_raw: bytes
) -> bytes:
    option = b"\x00" if size is None else b"\x01" + struct.pack("<Q", size)
    return (
        pack_byte_string(keys.public)
        + pack_byte_string(keys.secret)
        + struct.pack("<d", scalar)
        + option
        + params_raw
    )


def _mask_object_serde(masked: object) -> bytes:
    from xaynet_sdk.mask.objects import MaskObject, limbs_to_ints

    assert isinstance(masked, MaskObject)

    def biguint(v: int) -> bytes:
        n = (v.bit_length() + 31) // 32
        return struct.pack("<Q", n) + v.to_bytes(4 * n, "little")

    values = limbs_to_ints(masked.vect.data)
    return (
        struct.pack("<Q", len(values))
        + b"".join(biguint(v) for v in values)
        + pack_mask_config(masked.vect.config)
        + biguint(masked.unit.value)
        + pack_mask_config(masked.unit.config)
    )


def test_restore_original_awaiting_sum_and_sum2_states() -> None:
    params, _ = make_params()
    keys = SigningKeyPair.generate()
    shared = _shared_bincode(keys, 0.75, None, params.to_bytes())
    state = load_state(struct.pack("<I", 1) + shared)
    assert isinstance(state.phase, Awaiting) and state.shared.keys == keys
    assert state.shared.scalar == 0.75 and state.shared.max_message_size is None
    assert state.round_params == params

    ephm = EncryptKeyPair.generate()
    private = pack_byte_string(ephm.public) + pack_byte_string(ephm.secret)
    private += pack_byte_string(b"s" * 64)
    state = load_state(struct.pack("<I", 2) + private + shared)
    assert isinstance(state.phase, Sum) and state.phase.ephm_keys == ephm

    sum2 = private + b"\x01" + struct.pack("<Q", 1) + pack_byte_string(b"u" * 32)
    sum2 += pack_byte_string(b"e" * 80) + b"\x00\x00"
    state = load_state(struct.pack("<I", 4) + sum2 + shared)
    assert isinstance(state.phase, Sum2) and state.phase.seed_dict == {b"u" * 32: b"e" * 80}


def test_restore_original_update_with_model_and_mask() -> None:
    params, _ = make_params(model_length=3)
    keys = SigningKeyPair.generate()
    shared = _shared_bincode(keys, 1.0, 3912, params.to_bytes())
    model = encode_model([(1, 2), (-3, 4), (5, 1)])
    private = pack_byte_string(b"s" * 64) + pack_byte_string(b"u" * 64)
    private += b"\x00" + b"\x00" + b"\x01" + model + b"\x00"
    state = load_state(struct.pack("<I", 3) + private + shared)
    assert isinstance(state.phase, Update) and state.shared.max_message_size == 3912
    assert state.phase.model is not None
    assert state.phase.model.dtype == np.float32
    assert state.phase.model.tolist() == [0.5, -0.75, 5.0]

    masked = mask_model(b"\x03" * 32, params.mask_config, 1.0, np.array([0.5, 0, 1], np.float32))
    private = pack_byte_string(b"s" * 64) + pack_byte_string(b"u" * 64)
    private += b"\x00" + b"\x00" + b"\x00" + b"\x01" + pack_byte_string(b"\x03" * 32)
    private += _mask_object_serde(masked)
    state = load_state(struct.pack("<I", 3) + private + shared)
    assert isinstance(state.phase, Update) and state.phase.mask is not None
    assert state.phase.mask[1] == masked


def test_restore_original_sending_states() -> None:
    params, _ = make_params()
    keys = SigningKeyPair.generate()
    shared = _shared_bincode(keys, 1.0, None, params.to_bytes())
    payload = b"s" * 64 + b"p" * 32
    message = encode_message(payload, 1, keys.public, keys.secret, params.pk)
    ephm = EncryptKeyPair.generate()
    sum2 = pack_byte_string(ephm.public) + pack_byte_string(ephm.secret)
    sum2 += pack_byte_string(b"s" * 64) + b"\x00\x00\x00"
    simple = struct.pack("<I", 0) + b"\x01" + pack_byte_string(message)
    state = load_state(struct.pack("<I", 5) + simple + b"\x00" + sum2 + shared)
    phase = state.phase
    assert isinstance(phase, Sending) and phase.kind is SendingKind.SUM
    assert phase.data == payload and phase.next_index == 0 and phase.then is not None

    multipart = struct.pack("<I", 1) + pack_byte_string(keys.public) + pack_byte_string(keys.secret)
    multipart += pack_byte_string(params.pk) + pack_byte_string(b"d" * 1000)
    multipart += struct.pack("<H", 2) + struct.pack("<I", 1) + struct.pack("<Q", 300)
    multipart += struct.pack("<H", 777)
    failed = b"\x01" + pack_byte_string(b"f" * 348)
    state = load_state(struct.pack("<I", 6) + multipart + failed + shared)
    phase = state.phase
    assert isinstance(phase, Sending) and phase.kind is SendingKind.UPDATE
    assert (phase.payload_size, phase.message_id, phase.next_index) == (300, 777, 2)
    assert phase.failed == b"f" * 348


def test_original_state_errors() -> None:
    params, _ = make_params()
    keys = SigningKeyPair.generate()
    shared = _shared_bincode(keys, 1.0, 184, params.to_bytes())
    with pytest.raises(ParticipantRestore, match="at least 185 .got 184."):
        load_state(struct.pack("<I", 1) + shared)
    shared = _shared_bincode(keys, 1.0, None, params.to_bytes())
    with pytest.raises(ParticipantRestore, match="truncated"):
        load_state((struct.pack("<I", 1) + shared)[:-10])
    with pytest.raises(ParticipantRestore, match="invalid phase variant 8"):
        load_state(struct.pack("<I", 8) + shared)


# ----------------------------------------------------------------------------- local model


def test_length_mismatch_message_is_the_originals() -> None:
    with pytest.raises(LocalModelLengthMisMatch) as e:
        convert_local_model([1.0, 2.0], DataType.F32, 3)
    assert str(e.value).startswith(
        "the local model length is incompatible with the model length of the current model"
        " configuration 2 != 3 ("  # the original's text, then what to do
    )
    assert "give exactly 3 weights" in str(e.value)
    assert convert_local_model([], DataType.F32, 0).shape == (0,)


def test_f32_rounds_like_rust_and_refuses_overflow() -> None:
    out = convert_local_model([1 / 3, 1, True, np.float64(0.1)], DataType.F32, 4)
    assert out.dtype == np.float32
    assert out.tolist() == [np.float32(1 / 3), 1.0, 1.0, np.float32(0.1)]
    with pytest.raises(
        LocalModelDataTypeMisMatch, match="^the local model data type is incompatible"
    ):
        convert_local_model([1e39], DataType.F32, 1)
    with pytest.raises(LocalModelDataTypeMisMatch, match="incompatible"):
        convert_local_model([float("nan")], DataType.F64, 1)
    assert convert_local_model([3.4028235e38], DataType.F32, 1)[0] == np.finfo(np.float32).max


def test_float_element_errors() -> None:
    with pytest.raises(
        LocalModelDataTypeMisMatch, match="^TypeError: must be real number, not str"
    ):
        convert_local_model([1.0, "2.0"], DataType.F32, 2)
    with pytest.raises(LocalModelDataTypeMisMatch, match="not NoneType"):
        convert_local_model([None], DataType.F64, 1)
    from fractions import Fraction

    assert convert_local_model([Fraction(1, 4)], DataType.F64, 1).tolist() == [0.25]
    with pytest.raises(LocalModelDataTypeMisMatch, match="OverflowError"):
        convert_local_model([10**400], DataType.F64, 1)


def test_int_conversion_and_errors() -> None:
    out = convert_local_model([1, -2, True, 2**31 - 1], DataType.I32, 4)
    assert out.dtype == np.int32 and out.tolist() == [1, -2, 1, 2**31 - 1]
    with pytest.raises(
        LocalModelDataTypeMisMatch,
        match="^TypeError: 'float' object cannot be interpreted as an integer",
    ):
        convert_local_model([1, 2.0], DataType.I64, 2)
    with pytest.raises(
        LocalModelDataTypeMisMatch, match="^OverflowError: out of range integral type conversion"
    ):
        convert_local_model([2**31], DataType.I32, 1)
    with pytest.raises(
        LocalModelDataTypeMisMatch,
        match="^OverflowError: Python int too large to convert to C long",
    ):
        convert_local_model([2**63], DataType.I64, 1)
    with pytest.raises(LocalModelDataTypeMisMatch, match="too large"):
        convert_local_model([-(2**70)], DataType.I32, 1)
    assert convert_local_model([2**63 - 1], DataType.I64, 1).tolist() == [2**63 - 1]


def test_numpy_and_tuples_are_accepted() -> None:
    arr = np.arange(5, dtype=np.float64) / 3
    out = convert_local_model(arr, DataType.F32, 5)
    assert out.dtype == np.float32 and np.array_equal(out, arr.astype(np.float32))
    assert convert_local_model((1, 2), DataType.I64, 2).tolist() == [1, 2]
    assert convert_local_model(np.arange(3, dtype=np.uint8), DataType.I32, 3).tolist() == [0, 1, 2]
    with pytest.raises(LocalModelDataTypeMisMatch, match="cannot be interpreted as an integer"):
        convert_local_model(np.zeros(2), DataType.I32, 2)
    with pytest.raises(LocalModelDataTypeMisMatch, match="out of range"):
        convert_local_model(np.array([2**40]), DataType.I32, 1)
    with pytest.raises(TypeError, match="1-d"):
        convert_local_model(np.zeros((2, 2)), DataType.F32, 2)
    with pytest.raises(TypeError, match="list, a tuple or a 1-d numpy array"):
        convert_local_model({1.0, 2.0}, DataType.F32, 2)  # type: ignore[arg-type]


def test_a_million_floats_convert_quickly() -> None:
    import time

    values = [float(i) / 7 for i in range(1_000_000)]
    start = time.perf_counter()
    out = convert_local_model(values, DataType.F32, 1_000_000)
    assert time.perf_counter() - start < 1.0
    assert out[7] == 1.0


def test_model_to_python_widens_f32_exactly() -> None:
    values = model_to_python(np.array([1 / 3], dtype=np.float32))
    assert values == [0.3333333432674408] and type(values[0]) is float
    ints = model_to_python(np.array([1, -2], dtype=np.int64))
    assert ints == [1, -2] and type(ints[0]) is int
