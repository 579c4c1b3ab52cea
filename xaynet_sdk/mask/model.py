"""The global model off the wire (bincode ``Vec<Ratio<BigInt>>``) to numbers, docs/PROTOCOL.md 8.3.

The coordinator encodes exact fractions with ``codec.bincode.encode_model``; a participant
converts them to the round's data type the way the original does, in C, without one Python
object per weight.
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from .. import _native
from .config import DataType
from .errors import GlobalModelError

__all__ = ["GlobalModelError", "decode_global_model"]


def decode_global_model(data: bytes, data_type: DataType) -> npt.NDArray[Any]:
    """The model as an array of ``data_type`` (float32, float64, int32 or int64)."""
    try:
        model, _ = _native.model_from_bincode(data, data_type.numpy_dtype)
    except _native.MalformedInput as e:
        raise GlobalModelError(f"the global model is not valid bincode: {e}", True) from None
    except _native.ConversionOutOfRange as e:
        raise GlobalModelError(
            f"weight {e.index} of the global model is out of the range of {data_type.name}",
            False,
            e.index,
        ) from None
    except _native.ConversionDiverges as e:
        raise GlobalModelError(
            f"weight {e.index} of the global model has no finite {data_type.name} value",
            False,
            e.index,
        ) from None
    return model
