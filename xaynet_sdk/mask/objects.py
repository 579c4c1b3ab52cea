"""Mask objects: masked models, masks and their aggregates, and their wire form.

In memory a vector of group elements is a ``uint64`` array of shape ``(n, limbs)``: each
number as little-endian 64-bit limbs, ``limbs = ceil(bytes_per_number / 8)``. That is the
layout the native core computes on; the wire form (``bytes_per_number`` little-endian bytes
per number) differs only by dropping the zero padding, so converting is a strided copy.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _native
from .config import MaskConfig, MaskConfigPair
from .errors import InvalidMaskConfig, MaskObjectError

__all__ = [
    "MaskObject",
    "MaskObjectError",
    "MaskUnit",
    "MaskVect",
    "ints_to_limbs",
    "limbs_to_ints",
]

Limbs = npt.NDArray[np.uint64]


def ints_to_limbs(values: "list[int] | tuple[int, ...]", limbs: int) -> Limbs:
    """Python ints to the ``(n, limbs)`` layout. Slow; for tests, units and small inputs."""
    nbytes = 8 * limbs
    raw = b"".join(int(v).to_bytes(nbytes, "little") for v in values)
    return np.frombuffer(raw, dtype="<u8").reshape(len(values), limbs).astype(np.uint64)


def limbs_to_ints(array: Limbs) -> list[int]:
    """The ``(n, limbs)`` layout back to Python ints. Slow; for tests and small inputs."""
    a = np.ascontiguousarray(array, dtype="<u8")
    if a.ndim == 1:
        a = a.reshape(1, -1)
    row = a.shape[1] * 8
    raw = a.tobytes()
    return [int.from_bytes(raw[i : i + row], "little") for i in range(0, len(raw), row)]


@functools.cache
def _wire_views(bpn: int, limbs: int) -> tuple[np.dtype[np.void], np.dtype[np.void]]:
    """Structured dtypes over the limb layout (``8 * limbs`` bytes a number) and the wire
    layout (``bpn`` bytes), with the same fields: the low ``bpn`` bytes in as few, as wide
    little-endian integers as possible (6 bytes: a u32 and a u16).

    Copying field by field between the two views converts a whole vector in a few strided
    passes of wide elements; a byte-wise strided copy (``[:, :bpn]``) is several times slower.
    """
    names: list[str] = []
    formats: list[str] = []
    offsets: list[int] = []
    offset = 0
    for size in (8, 4, 2, 1):
        while bpn - offset >= size:
            names.append(f"b{offset}")
            formats.append(f"<u{size}")
            offsets.append(offset)
            offset += size
    make: Any = np.dtype  # numpy's stubs have no overload for the dict form
    fields = {"names": names, "formats": formats, "offsets": offsets}
    return make({**fields, "itemsize": 8 * limbs}), make({**fields, "itemsize": bpn})


def _limbs_to_wire(array: Limbs, bpn: int) -> npt.NDArray[np.uint8]:
    """The wire bytes of a ``(n, limbs)`` array, as a flat ``uint8`` array (a buffer)."""
    a = np.ascontiguousarray(array, dtype="<u8")
    n, limbs = a.shape
    flat = a.reshape(-1).view(np.uint8)
    if bpn == 8 * limbs:
        return flat
    limb_view, wire_view = _wire_views(bpn, limbs)
    src = flat.view(limb_view)
    out = np.empty(n, dtype=wire_view)
    for name in limb_view.names or ():
        out[name] = src[name]
    return out.view(np.uint8)


def _wire_to_limbs(data: "bytes | memoryview", n: int, bpn: int, limbs: int) -> Limbs:
    """A fresh, writable ``(n, limbs)`` array of the ``n * bpn`` wire bytes in ``data``."""
    wire = np.frombuffer(data, dtype=np.uint8, count=n * bpn)
    if bpn == 8 * limbs:
        return wire.view("<u8").reshape(n, limbs).astype(np.uint64)
    out = np.zeros((n, limbs), dtype="<u8")
    if n:
        limb_view, wire_view = _wire_views(bpn, limbs)
        dst = out.reshape(-1).view(np.uint8).view(limb_view)
        src = wire.view(wire_view)
        for name in limb_view.names or ():
            dst[name] = src[name]
    return out.astype(np.uint64, copy=False)


@dataclass(frozen=True, eq=False)
class MaskVect:
    config: MaskConfig
    data: Limbs  # shape (n, config.limbs)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MaskVect)
            and self.config == other.config
            and self.data.shape == other.data.shape
            and bool(np.array_equal(self.data, other.data))
        )

    __hash__ = None  # type: ignore[assignment]

    def is_valid(self) -> bool:
        return _native.first_invalid(self.data, self.config) == len(self)

    def to_bytes(self) -> bytes:
        return b"".join(self.wire_parts())

    def wire_parts(self) -> "list[bytes | memoryview]":
        """:meth:`to_bytes` as buffers to join, so that a caller can add its own parts
        around them and copy the (large) numbers once."""
        return [
            self.config.to_bytes(),
            struct.pack(">I", len(self)),
            _limbs_to_wire(self.data, self.config.bytes_per_number).data,
        ]


@dataclass(frozen=True, eq=False)
class MaskUnit:
    config: MaskConfig
    data: Limbs  # shape (config.limbs,)

    @property
    def value(self) -> int:
        return limbs_to_ints(self.data)[0]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, MaskUnit)
            and self.config == other.config
            and bool(np.array_equal(self.data, other.data))
        )

    __hash__ = None  # type: ignore[assignment]

    def is_valid(self) -> bool:
        return _native.first_invalid(self.data.reshape(1, -1), self.config) == 1

    def to_bytes(self) -> bytes:
        return b"".join(self.wire_parts())

    def wire_parts(self) -> "list[bytes | memoryview]":
        return [
            self.config.to_bytes(),
            _limbs_to_wire(self.data.reshape(1, -1), self.config.bytes_per_number).data,
        ]

    @classmethod
    def from_int(cls, config: MaskConfig, value: int) -> "MaskUnit":
        return cls(config, ints_to_limbs([value], config.limbs)[0])


@dataclass(frozen=True, eq=False)
class MaskObject:
    """A masked model, a mask, or an aggregate of either: a vector part and a unit (scalar) part."""

    vect: MaskVect
    unit: MaskUnit

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaskObject) and self.vect == other.vect and self.unit == other.unit

    __hash__ = None  # type: ignore[assignment]

    @property
    def configs(self) -> MaskConfigPair:
        return MaskConfigPair(self.vect.config, self.unit.config)

    def is_valid(self) -> bool:
        """Every number below its order: what the coordinator checks before aggregating."""
        return self.vect.is_valid() and self.unit.is_valid()

    @classmethod
    def empty(cls, configs: MaskConfigPair) -> "MaskObject":
        """The start of an aggregation in the original: an empty vector and a unit of 1."""
        return cls(
            MaskVect(configs.vect, np.zeros((0, configs.vect.limbs), dtype=np.uint64)),
            MaskUnit.from_int(configs.unit, 1),
        )

    @classmethod
    def from_ints(cls, configs: MaskConfigPair, vect: "list[int]", unit: int) -> "MaskObject":
        return cls(
            MaskVect(configs.vect, ints_to_limbs(vect, configs.vect.limbs)),
            MaskUnit.from_int(configs.unit, unit),
        )

    def to_bytes(self) -> bytes:
        """``config ‖ count (u32 BE) ‖ elements`` then ``config ‖ unit`` (docs/PROTOCOL.md 7)."""
        return b"".join(self.wire_parts())

    def wire_parts(self) -> "list[bytes | memoryview]":
        """:meth:`to_bytes` as buffers to join (see :meth:`MaskVect.wire_parts`)."""
        return self.vect.wire_parts() + self.unit.wire_parts()

    @property
    def byte_length(self) -> int:
        return (
            8
            + len(self.vect) * self.vect.config.bytes_per_number
            + 4
            + self.unit.config.bytes_per_number
        )

    @classmethod
    def from_bytes(
        cls, data: "bytes | bytearray | memoryview", offset: int = 0
    ) -> "tuple[MaskObject, int]":
        """Parse a mask object at ``offset``; return it and the offset just past it.

        Like the original, only lengths and config codes are checked here, not that numbers
        are below the order: that is ``is_valid``, which the receiver decides when to call.
        """
        view = memoryview(data)[offset:]
        if len(view) < 8:
            raise MaskObjectError(
                f"mask object truncated: need 8 bytes for the vector header, have {len(view)}"
            )
        try:
            vect_config = MaskConfig.from_bytes(bytes(view[0:4]))
        except InvalidMaskConfig as e:
            raise MaskObjectError(f"mask vector config: {e}") from None
        (count,) = struct.unpack(">I", view[4:8])
        bpn = vect_config.bytes_per_number
        end = 8 + count * bpn
        if len(view) < end:
            raise MaskObjectError(
                f"mask vector truncated: {count} numbers of {bpn} bytes need {count * bpn} bytes,"
                f" have {len(view) - 8}"
            )
        vect = MaskVect(vect_config, _wire_to_limbs(view[8:end], count, bpn, vect_config.limbs))
        if len(view) < end + 4:
            raise MaskObjectError("mask unit truncated: missing its 4-byte config")
        try:
            unit_config = MaskConfig.from_bytes(bytes(view[end : end + 4]))
        except InvalidMaskConfig as e:
            raise MaskObjectError(f"mask unit config: {e}") from None
        ubpn = unit_config.bytes_per_number
        if len(view) < end + 4 + ubpn:
            raise MaskObjectError(
                f"mask unit truncated: need {ubpn} bytes, have {len(view) - end - 4}"
            )
        unit = MaskUnit(
            unit_config,
            _wire_to_limbs(view[end + 4 : end + 4 + ubpn], 1, ubpn, unit_config.limbs)[0],
        )
        return cls(vect, unit), offset + end + 4 + ubpn
