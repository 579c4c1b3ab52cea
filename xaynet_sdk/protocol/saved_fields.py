"""The field readers and writers of the saved state, shared by :mod:`.saved` and the phases.

Each phase module saves and loads its own fields (``dump`` and ``load`` of its
:class:`~.state.PhaseSpec`) with these; a field that is missing, of the wrong type or of
the wrong length raises :class:`InvalidState`, which :func:`.saved.load_state` reports as
``ParticipantRestore``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..codec.crypto import EncryptKeyPair
from ..exceptions import XaynetError
from ..mask.objects import MaskObject, MaskObjectError
from .state import LocalModel

__all__ = [
    "InvalidState",
    "dump_model",
    "dump_pairs",
    "ephm_keys",
    "exact",
    "field",
    "load_mask",
    "load_model",
    "pair_dict",
]

_DTYPES = ("float32", "float64", "int32", "int64")


class InvalidState(XaynetError):
    """A saved state that cannot be used; the message says where and why."""


def dump_pairs(mapping: Any) -> Optional[list[list[bytes]]]:
    """A dictionary as a list of ``[key, value]`` pairs (None stays None)."""
    return None if mapping is None else [[k, v] for k, v in mapping.items()]


def dump_model(model: Optional[LocalModel]) -> Optional[dict[str, Any]]:
    """A model as ``{"dtype", "data"}`` (little-endian bytes); None stays None."""
    if model is None:
        return None
    dtype = np.dtype(model.dtype).newbyteorder("<")
    return {"dtype": model.dtype.name, "data": np.ascontiguousarray(model, dtype=dtype).tobytes()}


def field(doc: dict[Any, Any], key: str, kind: Any, where: str, optional: bool = False) -> Any:
    """``doc[key]``, which must be a ``kind`` (or None if ``optional``)."""
    if key not in doc:
        raise InvalidState(f"{where}: field {key!r} is missing")
    value = doc[key]
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidState(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def exact(doc: dict[Any, Any], key: str, length: int, where: str, optional: bool = False) -> Any:
    """``doc[key]``: bytes of exactly ``length`` (or None if ``optional``)."""
    value = field(doc, key, bytes, where, optional)
    if value is not None and len(value) != length:
        raise InvalidState(f"{where}: field {key!r} must be {length} bytes, has {len(value)}")
    return value


def pair_dict(
    doc: dict[Any, Any], key: str, value_length: int, where: str
) -> Optional[dict[bytes, bytes]]:
    """The dictionary :func:`dump_pairs` saved: 32-byte keys, ``value_length``-byte values."""
    pairs = field(doc, key, list, where, optional=True)
    if pairs is None:
        return None
    result: dict[bytes, bytes] = {}
    for pair in pairs:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(x, bytes) for x in pair)
            or len(pair[0]) != 32
            or len(pair[1]) != value_length
        ):
            raise InvalidState(f"{where}: field {key!r} holds a malformed entry")
        result[pair[0]] = pair[1]
    return result


def load_model(value: Any, where: str) -> Optional[LocalModel]:
    """The model :func:`dump_model` saved (finite weights only)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidState(f"{where}: malformed local model")
    dtype = field(value, "dtype", str, where)
    data = field(value, "data", bytes, where)
    if dtype not in _DTYPES:
        raise InvalidState(f"{where}: unknown model dtype {dtype!r}")
    wire = np.dtype(dtype).newbyteorder("<")
    if len(data) % wire.itemsize:
        raise InvalidState(f"{where}: model data is not a whole number of {dtype} values")
    model = np.frombuffer(data, dtype=wire).astype(np.dtype(dtype))
    if model.dtype.kind == "f" and not bool(np.isfinite(model).all()):
        raise InvalidState(f"{where}: the model has NaN or infinite weights")
    return model


def load_mask(data: Optional[bytes], where: str) -> Optional[MaskObject]:
    """A mask object from its wire bytes, with nothing after it."""
    if data is None:
        return None
    try:
        mask, end = MaskObject.from_bytes(data)
    except MaskObjectError as e:
        raise InvalidState(f"{where}: malformed mask object ({e})") from None
    if end != len(data):
        raise InvalidState(f"{where}: trailing bytes after the mask object")
    return mask


def ephm_keys(doc: dict[Any, Any], where: str) -> EncryptKeyPair:
    """The ephemeral key pair saved as ``ephm_public`` and ``ephm_secret``."""
    public = exact(doc, "ephm_public", 32, where)
    secret = exact(doc, "ephm_secret", 32, where)
    return EncryptKeyPair(public, secret)
