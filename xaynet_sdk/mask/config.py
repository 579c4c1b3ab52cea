"""Mask configurations: the four enums, their two encodings, and the derived constants.

A configuration appears in two encodings on the wire, and mixing them up is the classic
interop bug: mask objects carry the enums' ``u8`` discriminants (``Bmax = 255``, ``M12 = 12``),
while bincode structures such as the round parameters carry serde *variant indices*
(``Bmax = 4``, ``M12 = 3``). Both are here, side by side, and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Iterator

from ._orders import ORDERS
from .errors import InvalidMaskConfig

__all__ = [
    "BoundType",
    "DataType",
    "GroupType",
    "InvalidMaskConfig",
    "MaskConfig",
    "MaskConfigPair",
    "ModelType",
    "all_configs",
]


class _Coded(enum.IntEnum):
    """An enum whose value is the wire discriminant and whose position is the serde index."""

    @classmethod
    def from_wire(cls, code: int) -> "_Coded":
        try:
            return cls(code)
        except ValueError:
            valid = ", ".join(f"{m.name}={m.value}" for m in cls)
            raise InvalidMaskConfig(
                f"invalid {cls.__name__} byte {code} (valid: {valid})"
            ) from None

    @classmethod
    def from_index(cls, index: int) -> "_Coded":
        members = list(cls)
        if not 0 <= index < len(members):
            raise InvalidMaskConfig(
                f"invalid {cls.__name__} variant index {index} (valid: 0..{len(members) - 1})"
            )
        return members[index]

    @classmethod
    def from_name(cls, name: str) -> "_Coded":
        try:
            return cls[name]
        except KeyError:
            valid = ", ".join(m.name for m in cls)
            raise InvalidMaskConfig(f"unknown {cls.__name__} {name!r} (valid: {valid})") from None

    @property
    def index(self) -> int:
        return list(type(self)).index(self)


class GroupType(_Coded):
    Integer = 0
    Prime = 1
    Power2 = 2


class DataType(_Coded):
    F32 = 0
    F64 = 1
    I32 = 2
    I64 = 3

    @property
    def numpy_dtype(self) -> str:
        return {"F32": "float32", "F64": "float64", "I32": "int32", "I64": "int64"}[self.name]

    @property
    def is_float(self) -> bool:
        return self in (DataType.F32, DataType.F64)


class BoundType(_Coded):
    B0 = 0
    B2 = 2
    B4 = 4
    B6 = 6
    Bmax = 255


class ModelType(_Coded):
    M3 = 3
    M6 = 6
    M9 = 9
    M12 = 12

    @property
    def max_nb_models(self) -> int:
        return int(10 ** int(self.value))


_F32_MAX = int(Fraction((2**24 - 1) * 2**104))
_F64_MAX = int(Fraction((2**53 - 1) * 2**971))

_BMAX_ADD_SHIFT = {
    DataType.F32: _F32_MAX,
    DataType.F64: _F64_MAX,
    DataType.I32: 2**31,
    DataType.I64: 2**63,
}


@dataclass(frozen=True)
class MaskConfig:
    """One of the 240 mask configurations, with the constants the masking arithmetic needs."""

    group_type: GroupType
    data_type: DataType
    bound_type: BoundType
    model_type: ModelType

    # -- names ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The catalogue name, for example ``"Prime/F32/B0/M3"``."""
        return (
            f"{self.group_type.name}/{self.data_type.name}/"
            f"{self.bound_type.name}/{self.model_type.name}"
        )

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_name(cls, name: str) -> "MaskConfig":
        """Parse ``"Prime/F32/B0/M3"``."""
        parts = name.split("/")
        if len(parts) != 4:
            raise InvalidMaskConfig(
                f"mask config name {name!r} must have four parts, like 'Prime/F32/B0/M3'"
            )
        return cls.from_names(*parts)

    @classmethod
    def from_names(cls, group: str, data: str, bound: str, model: str) -> "MaskConfig":
        """Build from the four names of coordinator config files (``"Prime"``, ``"F32"``...)."""
        return cls(
            GroupType.from_name(group),  # type: ignore[arg-type]
            DataType.from_name(data),  # type: ignore[arg-type]
            BoundType.from_name(bound),  # type: ignore[arg-type]
            ModelType.from_name(model),  # type: ignore[arg-type]
        )

    # -- the 4-byte wire form (mask objects) ------------------------------------------------
    def to_bytes(self) -> bytes:
        return bytes(
            (
                self.group_type.value,
                self.data_type.value,
                self.bound_type.value,
                self.model_type.value,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "MaskConfig":
        if len(data) < 4:
            raise InvalidMaskConfig(f"a mask config needs 4 bytes, got {len(data)}")
        return cls(
            GroupType.from_wire(data[0]),  # type: ignore[arg-type]
            DataType.from_wire(data[1]),  # type: ignore[arg-type]
            BoundType.from_wire(data[2]),  # type: ignore[arg-type]
            ModelType.from_wire(data[3]),  # type: ignore[arg-type]
        )

    # -- serde variant indices (bincode structures) -------------------------------------------
    def to_indices(self) -> tuple[int, int, int, int]:
        return (
            self.group_type.index,
            self.data_type.index,
            self.bound_type.index,
            self.model_type.index,
        )

    @classmethod
    def from_indices(cls, group: int, data: int, bound: int, model: int) -> "MaskConfig":
        return cls(
            GroupType.from_index(group),  # type: ignore[arg-type]
            DataType.from_index(data),  # type: ignore[arg-type]
            BoundType.from_index(bound),  # type: ignore[arg-type]
            ModelType.from_index(model),  # type: ignore[arg-type]
        )

    # -- constants ----------------------------------------------------------------------------
    @cached_property
    def order(self) -> int:
        """The group order: every masked number lives in ``[0, order)``."""
        return ORDERS[self.name]

    @cached_property
    def bytes_per_number(self) -> int:
        """Bytes of one serialized element: ``ceil(bit_length(order - 1) / 8)``."""
        return ((self.order - 1).bit_length() + 7) // 8

    @cached_property
    def draw_bytes(self) -> int:
        """Bytes of one rejection-sampling candidate: from the order itself, not ``order - 1``.

        The two differ for the nine power-of-two orders ``2**(8m)`` (docs/PROTOCOL.md section 10.3).
        """
        return (self.order.bit_length() + 7) // 8

    @cached_property
    def add_shift(self) -> int:
        """The bound B: weights are clamped to ``[-B, B]`` and shifted by ``+B``."""
        if self.bound_type is BoundType.Bmax:
            return _BMAX_ADD_SHIFT[self.data_type]
        return {BoundType.B0: 1, BoundType.B2: 100, BoundType.B4: 10_000, BoundType.B6: 1_000_000}[
            self.bound_type
        ]

    @cached_property
    def exp_shift(self) -> int:
        """The fixed-point scale: shifted weights are multiplied by this and truncated."""
        if self.data_type is DataType.F32:
            return 10**45 if self.bound_type is BoundType.Bmax else 10**10
        if self.data_type is DataType.F64:
            return 10**324 if self.bound_type is BoundType.Bmax else 10**20
        return 10**10

    @property
    def max_nb_models(self) -> int:
        return self.model_type.max_nb_models

    @cached_property
    def limbs(self) -> int:
        """64-bit limbs of one number in the native core's in-memory layout."""
        return (self.bytes_per_number + 7) // 8


@dataclass(frozen=True)
class MaskConfigPair:
    """The vector and unit configurations of a round (the original always uses equal ones)."""

    vect: MaskConfig
    unit: MaskConfig

    @classmethod
    def single(cls, config: MaskConfig) -> "MaskConfigPair":
        return cls(config, config)


def all_configs() -> Iterator[MaskConfig]:
    """All 240 configurations in catalogue order."""
    for g in GroupType:
        for d in DataType:
            for b in BoundType:
                for m in ModelType:
                    yield MaskConfig(g, d, b, m)  # type: ignore[arg-type]
