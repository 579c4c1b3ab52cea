"""The mask layer and C core against data captured from the original implementation."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference import RefConversionError, ref_ratio_to_primitive, ref_ratios_to_bincode  # noqa: E402
from spec_vectors import load_orders, load_vector  # noqa: E402

from xaynet_sdk import _native  # noqa: E402
from xaynet_sdk.mask.config import (  # noqa: E402
    DataType,
    InvalidMaskConfig,
    MaskConfig,
    MaskConfigPair,
    all_configs,
)
from xaynet_sdk.mask.masking import derive_mask, mask_model  # noqa: E402
from xaynet_sdk.mask.objects import MaskObject, MaskObjectError, limbs_to_ints  # noqa: E402

WHEEL = load_vector("masking_wheel")["cases"]


@pytest.mark.parametrize("case", WHEEL, ids=lambda c: f"{c['config']}-{c['scalar']}")
def test_masking_matches_the_original(case: dict) -> None:
    config = MaskConfig.from_name(case["config"])
    scalar = float(case["scalar"])
    weights = np.array(case["weights_python"], dtype=config.data_type.numpy_dtype)
    seed = bytes.fromhex(case["mask_seed_hex"])
    masked = mask_model(seed, MaskConfigPair.single(config), scalar, weights)
    assert [str(v) for v in limbs_to_ints(masked.vect.data)] == case["expected_masked_vect"]
    assert str(masked.unit.value) == case["expected_masked_unit"]
    assert masked.to_bytes().hex() == case["expected_mask_object_bytes_hex"]
    parsed, end = MaskObject.from_bytes(bytes.fromhex(case["expected_mask_object_bytes_hex"]))
    assert parsed == masked and end == len(masked.to_bytes())
    # the sum participant's view: masked minus derived mask is the encoding of the weights
    mask = derive_mask(seed, len(weights), MaskConfigPair.single(config))
    diff = _native.sub_mod(masked.vect.data, mask.vect.data, config)
    assert all(0 <= v <= 2 * config.add_shift * config.exp_shift for v in limbs_to_ints(diff))


@dataclass(frozen=True)
class _Group:
    """A bare group for draws outside the catalogue (the Rust PRNG test's 32-byte bound)."""

    order: int
    add_shift: int = 1
    exp_shift: int = 1

    @property
    def draw_bytes(self) -> int:
        return (self.order.bit_length() + 7) // 8

    @property
    def limbs(self) -> int:
        return ((self.order - 1).bit_length() + 63) // 64


def test_generate_integer_vector() -> None:
    v = load_vector("generate_integer")
    group = _Group(int(v["max_int"]))
    got, word_pos = _native.draw(bytes.fromhex(v["seed_hex"]), 0, group, 5)
    assert [str(x) for x in limbs_to_ints(got)] == v["expected_outputs"]
    assert word_pos == v["derived_words_consumed_after_5_calls"]


@pytest.mark.parametrize("case", load_vector("prng_partial_words")["cases"], ids=str)
def test_partial_word_draws(case: dict) -> None:
    group = _Group(int(case["max_int"]))
    seed = bytes.fromhex(case["seed_hex"])
    pos = 0
    for out in case["successive_outputs"]:
        assert pos == out["word_pos_before"]
        got, pos = _native.draw(seed, pos, group, 1)
        assert limbs_to_ints(got) == [int(out["value"])]
        assert pos == out["word_pos_after"]


def test_keystream_vector() -> None:
    v = load_vector("prng_partial_words")
    assert (
        _native.chacha20_keystream(bytes(32), 16).hex()
        == v["keystream_zero_key_first_16_bytes_hex"]
    )


def test_mask_object_vector() -> None:
    v = load_vector("mask_object")
    config = MaskConfig.from_name("Integer/I32/B0/M3")
    obj = MaskObject.from_ints(MaskConfigPair.single(config), [1, 2, 3, 4], 1)
    assert obj.vect.to_bytes().hex() == v["mask_vect"]["bytes_hex"]
    assert obj.unit.to_bytes().hex() == v["mask_unit"]["bytes_hex"]
    assert obj.to_bytes().hex() == v["mask_object"]["bytes_hex"]
    assert MaskObject.from_bytes(bytes.fromhex(v["mask_object"]["bytes_hex"]))[0] == obj


def test_mask_object_parse_errors_name_the_problem() -> None:
    data = bytes.fromhex(load_vector("mask_object")["mask_object"]["bytes_hex"])
    for cut in range(len(data)):
        with pytest.raises(MaskObjectError):
            MaskObject.from_bytes(data[:cut])
    with pytest.raises(MaskObjectError, match="config"):
        MaskObject.from_bytes(b"\x07" + data[1:])
    # a count that would need more bytes than there are fails on length, never allocates
    with pytest.raises(MaskObjectError, match="truncated"):
        MaskObject.from_bytes(data[:4] + b"\xff\xff\xff\xff" + data[8:])


def test_mask_configs_match_the_catalogue() -> None:
    table = load_vector("mask_config_table")["configs"]
    orders = load_orders()
    configs = list(all_configs())
    assert len(configs) == 240 == len(table) == len(orders)
    for config in configs:
        entry = table[config.name]
        assert config.order == orders[config.name]
        assert config.to_bytes().hex() == entry["wire_bytes_hex"]
        assert list(config.to_indices()) == entry["bincode_variant_indices"]
        assert config.bytes_per_number == entry["bytes_per_number"]
        assert str(config.add_shift) == entry["add_shift"]
        assert config.exp_shift == 10 ** int(entry["exp_shift"].split("^")[1])
        assert config.max_nb_models == entry["max_nb_models"]
        assert MaskConfig.from_bytes(config.to_bytes()) == config
        assert MaskConfig.from_indices(*config.to_indices()) == config
        assert MaskConfig.from_name(config.name) == config


def test_mask_config_vectors() -> None:
    v = load_vector("mask_config")
    for case in v["cases"]:
        assert MaskConfig.from_name(case["config"]).to_bytes().hex() == case["bytes_hex"]
    for case in v["bincode_serde_form"]["cases"]:
        indices = bytes.fromhex(case["bincode_hex"])
        parsed = MaskConfig.from_indices(
            *(int.from_bytes(indices[i : i + 4], "little") for i in range(0, 16, 4))
        )
        assert parsed.name == case["config"]


@pytest.mark.parametrize(
    "bad",
    [
        b"\x03\x00\x00\x03",
        b"\x00\x04\x00\x03",
        b"\x00\x00\x01\x03",
        b"\x00\x00\x00\x04",
        b"\x00\x00\x00",
    ],
)
def test_unknown_config_bytes_are_refused(bad: bytes) -> None:
    with pytest.raises(InvalidMaskConfig):
        MaskConfig.from_bytes(bad)


@pytest.mark.parametrize(
    "bad",
    ["Prime/F32/B0", "Prime/F16/B0/M3", "prime/F32/B0/M3", "Prime/F32/B1/M3", "Prime/F32/B0/M4"],
)
def test_unknown_config_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidMaskConfig, match="valid|four parts"):
        MaskConfig.from_name(bad)


def test_bmax_index_is_4_not_255() -> None:
    with pytest.raises(InvalidMaskConfig):
        MaskConfig.from_indices(1, 0, 255, 0)
    assert MaskConfig.from_indices(1, 0, 4, 3).name == "Prime/F32/Bmax/M12"


# ---- global model conversion, as captured from the original participant ------------------


def _wheel_cases() -> list[dict]:
    return [
        c
        for c in load_vector("global_model_conversion_wheel")["cases"]
        if "dtype" in c and ("ratios" in c or c.get("raw_hex"))
    ]


@pytest.mark.parametrize("case", _wheel_cases(), ids=lambda c: f"{c['dtype']}-{c['result']}")
def test_global_model_conversion_matches_the_original(case: dict) -> None:
    dtype = DataType.from_name(case["dtype"])
    if "ratios" in case:
        data = ref_ratios_to_bincode([(int(n), int(d)) for n, d in case["ratios"]])
        if case.get("trailing_garbage"):
            data += b"\xde\xad\xbe\xef"
    else:
        data = bytes.fromhex(case["raw_hex"])
    result = case["result"]
    if result == "HANG":  # the original never returns; we refuse promptly
        with pytest.raises(_native.ConversionDiverges):
            _native.model_from_bincode(data, dtype.numpy_dtype)
    elif result == "GlobalModelDataTypeMisMatch":
        with pytest.raises((_native.ConversionOutOfRange, _native.ConversionDiverges)):
            _native.model_from_bincode(data, dtype.numpy_dtype)
    elif result == "GlobalModelUnavailable":
        with pytest.raises(_native.MalformedInput):
            _native.model_from_bincode(data, dtype.numpy_dtype)
    else:
        got, _ = _native.model_from_bincode(data, dtype.numpy_dtype)
        assert got.tolist() == result
        assert [math.copysign(1, x) for x in got.tolist()] == [math.copysign(1, x) for x in result]


def test_model_conversion_vectors() -> None:
    for case in load_vector("model_conversion")["ratio_to_float"]:
        dtype = DataType.from_name(case["dtype"])
        data = ref_ratios_to_bincode([(int(case["ratio"][0]), int(case["ratio"][1]))])
        got = _native.model_from_bincode(data, dtype.numpy_dtype)[0].tolist()[0]
        expected = case.get("expected", case.get("expected_f32_of"))
        if "expected_f32_of" in case:
            expected = float(np.float32(expected))
        assert got == expected


def test_negative_denominator_at_the_bound_is_accepted_unlike_the_original() -> None:
    """The original's num-rational comparison ignores the denominators' signs when the
    numerators are equal, so it rejects MAX/-1 (= -MAX, inside the range). We compare values."""
    f32_max = int(np.finfo(np.float32).max)
    with pytest.raises(RefConversionError):
        ref_ratio_to_primitive(f32_max, -1, DataType.F32)
    data = ref_ratios_to_bincode([(f32_max, -1)])
    assert _native.model_from_bincode(data, np.float32)[0].tolist() == [-float(f32_max)]


def test_lists_are_converted_like_the_originals_set_model() -> None:
    f32 = MaskConfigPair.single(MaskConfig.from_name("Prime/F32/B0/M3"))
    as_list = mask_model(b"\1" * 32, f32, 1.0, [0.1, -0.7, 1e-3])
    as_array = mask_model(b"\1" * 32, f32, 1.0, np.array([0.1, -0.7, 1e-3], dtype=np.float32))
    assert as_list == as_array
    i32 = MaskConfigPair.single(MaskConfig.from_name("Prime/I32/B0/M3"))
    with pytest.raises(OverflowError):
        mask_model(b"\1" * 32, i32, 1.0, [2**40])
    with pytest.raises(_native.NonFiniteWeight):  # 1e39 overflows f32 to inf, as in the original
        mask_model(b"\1" * 32, f32, 1.0, [1e39])


@pytest.mark.parametrize("config", list(all_configs()), ids=lambda c: c.name)
def test_wire_conversion_matches_a_bytewise_copy(config: MaskConfig) -> None:
    """The structured-view conversion between limbs and wire bytes, for every configuration
    (every bytes-per-number and limb count), empty and odd lengths included."""
    from xaynet_sdk.mask.objects import MaskVect, _limbs_to_wire, _wire_to_limbs

    bpn, limbs = config.bytes_per_number, config.limbs
    rng = np.random.default_rng(bpn)
    for n in (0, 1, 3, 1001):
        wire = rng.integers(0, 256, n * bpn, dtype=np.uint8).tobytes()
        expected = np.zeros((n, 8 * limbs), dtype=np.uint8)
        expected[:, :bpn] = np.frombuffer(wire, dtype=np.uint8).reshape(n, bpn)
        expected_limbs = expected.view("<u8").reshape(n, limbs)
        got = _wire_to_limbs(memoryview(b"?" + wire)[1:], n, bpn, limbs)
        assert got.dtype == np.uint64 and got.flags.writeable
        assert np.array_equal(got, expected_limbs)
        assert _limbs_to_wire(got, bpn).tobytes() == wire
        vect = MaskVect(config, got)
        assert MaskVect(config, got[::-1].copy()[::-1]).to_bytes() == vect.to_bytes()
        assert vect.to_bytes() == b"".join(bytes(p) for p in vect.wire_parts())
