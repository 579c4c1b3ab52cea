"""The errors of the mask layer, and where the C core's errors become them.

Everything ``mask/`` raises on purpose derives from :class:`MaskError` (a
:class:`~xaynet_sdk.exceptions.XaynetError` and a ``ValueError``). The C core's status codes
(:class:`xaynet_sdk._native.NativeError`) are translated here, once, by
:func:`native_errors`, so that no layer above ``mask/`` imports ``_native``: it catches a
``MaskError``. The translated classes also derive from the native class they replace, so a
handler written against the C layer keeps working.
"""

from __future__ import annotations

import enum
from contextlib import contextmanager
from typing import Iterator

from .. import _native
from ..exceptions import XaynetError

__all__ = [
    "AggregationError",
    "AggregationErrorKind",
    "GlobalModelError",
    "InvalidMaskConfig",
    "MaskError",
    "MaskObjectError",
    "NativeCallError",
    "NonFiniteWeight",
    "native_errors",
]


class MaskError(XaynetError, ValueError):
    """Base class of every error raised by :mod:`xaynet_sdk.mask`."""


class InvalidMaskConfig(MaskError):
    """A mask configuration code or name that the protocol does not define."""


class MaskObjectError(MaskError):
    """Malformed mask object bytes, or a mask object that does not fit its configuration."""


class GlobalModelError(MaskError):
    """The global model cannot be decoded, or does not fit the data type.

    ``malformed`` is True for bytes that are not a model at all (the original raises
    ``GlobalModelUnavailable``), False for a weight that does not convert (the original
    raises ``GlobalModelDataTypeMisMatch``, or loops forever where the quotient is infinite).
    """

    def __init__(self, message: str, malformed: bool, index: "int | None" = None) -> None:
        super().__init__(message)
        self.malformed = malformed
        self.index = index


class AggregationErrorKind(enum.Enum):
    MODEL_MISMATCH = "the vector's configuration or length differs from the aggregation's"
    SCALAR_MISMATCH = "the unit's configuration differs from the aggregation's"
    TOO_MANY_MODELS = "the configuration's model type allows no more models"
    INVALID_OBJECT = "a number is not below the group order"
    NO_MODELS = "nothing was aggregated"


class AggregationError(MaskError):
    """A mask object that cannot be aggregated, or an aggregation that cannot be unmasked."""

    def __init__(self, kind: AggregationErrorKind, detail: str = "") -> None:
        super().__init__(kind.value + (f": {detail}" if detail else ""))
        self.kind = kind


class NonFiniteWeight(MaskError, _native.NonFiniteWeight):
    """A NaN or infinite weight, which the protocol cannot encode; ``index`` says which."""


class NativeCallError(MaskError, _native.NativeError):
    """The C core refused a call (buffer lengths, arguments): a bug in the mask layer."""


@contextmanager
def native_errors() -> Iterator[None]:
    """Translate the C core's errors into this layer's (also usable as a decorator)."""
    try:
        yield
    except _native.NonFiniteWeight as e:
        raise NonFiniteWeight(str(e), e.index) from e
    except _native.NativeError as e:
        if isinstance(e, MaskError):  # already translated (a nested call)
            raise
        raise NativeCallError(str(e), e.index) from e
