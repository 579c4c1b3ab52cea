"""The local model from user values to the round's data type (docs/PROTOCOL.md 8.2), and back.

``set_model`` in the original takes a Python ``list`` and converts each element as PyO3
does: ``PyFloat_AsDouble`` for F32/F64 (anything with ``__float__`` or ``__index__``; F32 is
then rounded with Rust's ``as f32``), ``PyNumber_Index`` + ``PyLong_AsLong`` for I32/I64.
NaN or infinity after the conversion is refused. The same rules apply here, with the
same error texts (plus a hint), and without one Python call per weight when the values
are plain numbers: a list of a million floats converts in milliseconds.

Also accepted here (the original raises ``TypeError``): tuples and 1-d numpy arrays of a
numeric dtype (a float array for an integer data type is refused, like a float element).
"""

from __future__ import annotations

import operator
from typing import Any, Sequence, Union

import numpy as np
import numpy.typing as npt

from ..exceptions import LocalModelDataTypeMisMatch, LocalModelLengthMisMatch
from ..mask.config import DataType

__all__ = ["LocalModelInput", "convert_local_model", "model_to_python"]

LocalModelInput = Union[Sequence[Any], npt.NDArray[Any]]

_INCOMPATIBLE = (
    "the local model data type is incompatible with the data type of the current model"
    " configuration"
)
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_TOO_LARGE = "OverflowError: Python int too large to convert to C long"
_OUT_OF_RANGE = "OverflowError: out of range integral type conversion attempted"


def _length(model: object) -> int:
    if isinstance(model, np.ndarray):
        if model.ndim != 1:
            raise TypeError(
                f"the local model must be a 1-d array, got shape {model.shape}; flatten it"
                " (for example with .ravel()) in the order the coordinator expects"
            )
        return int(model.shape[0])
    if isinstance(model, (list, tuple)):
        return len(model)
    raise TypeError(
        f"the local model must be a list, a tuple or a 1-d numpy array, got {type(model).__name__}"
    )


def convert_local_model(
    model: LocalModelInput, data_type: DataType, model_length: int
) -> npt.NDArray[Any]:
    """``model`` as a contiguous 1-d array of ``data_type``, checked like the original.

    Raises :class:`LocalModelLengthMisMatch` if the length differs from ``model_length``,
    :class:`LocalModelDataTypeMisMatch` if a value does not convert (or converts to NaN or
    infinity), and ``TypeError`` for a container that is not a list, tuple or 1-d array.
    """
    length = _length(model)
    if length != model_length:
        if model_length == 0:
            hint = (
                "no round parameters yet: set the model once the participant has joined a"
                " round (should_set_model() or the new-global-model notifier)"
            )
        else:
            hint = f"give exactly {model_length} weights, the coordinator's model length"
        raise LocalModelLengthMisMatch(
            "the local model length is incompatible with the model length of the current"
            f" model configuration {length} != {model_length} ({hint})"
        )
    if data_type.is_float:
        out = _to_float(model, data_type)
        if not bool(np.isfinite(out).all()):
            bad = int(np.flatnonzero(~np.isfinite(out))[0])
            raise LocalModelDataTypeMisMatch(
                f"{_INCOMPATIBLE} (weight {bad} is {out[bad]} as {data_type.name}: NaN and"
                " infinite weights cannot be masked; for F32 the largest magnitude is about"
                " 3.4e38)"
            )
        return out
    return _to_int(model, data_type)


# ---------------------------------------------------------------------------------------------
# Floats
# ---------------------------------------------------------------------------------------------


def _element_to_float(value: object, index: int, data_type: DataType) -> float:
    """``PyFloat_AsDouble``: ``__float__``, else ``__index__``; str and others are refused."""
    kind = type(value)
    if isinstance(value, (complex, np.complexfloating)):
        # numpy's complex scalars convert to float by dropping the imaginary part.
        raise LocalModelDataTypeMisMatch(
            f"TypeError: must be real number, not {kind.__name__} (weight {index}; the round's"
            f" data type is {data_type.name}: give real numbers)"
        )
    try:
        if hasattr(kind, "__float__"):
            return float(value)  # type: ignore[arg-type]
        if hasattr(kind, "__index__"):
            return float(operator.index(value))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as e:
        raise LocalModelDataTypeMisMatch(
            f"{type(e).__name__}: {e} (weight {index}; the round's data type is {data_type.name})"
        ) from None
    raise LocalModelDataTypeMisMatch(
        f"TypeError: must be real number, not {kind.__name__} (weight {index}; the round's data"
        f" type is {data_type.name}: give floats)"
    )


def _to_float(model: LocalModelInput, data_type: DataType) -> npt.NDArray[Any]:
    target = np.dtype(data_type.numpy_dtype)
    arr = model if isinstance(model, np.ndarray) else _try_array(model)
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biuf":
        wide = arr if arr.dtype == target else arr.astype(np.float64)
    else:
        values = list(model)
        wide = np.array(
            [_element_to_float(v, i, data_type) for i, v in enumerate(values)], dtype=np.float64
        )
    with np.errstate(over="ignore", invalid="ignore"):
        # Round to nearest even; beyond the f32 range this gives inf, as Rust's `as f32`.
        return np.ascontiguousarray(wide.astype(target, copy=False)).reshape(-1)


def _try_array(model: LocalModelInput) -> "npt.NDArray[Any] | None":
    try:
        return np.array(model)
    except (ValueError, TypeError, OverflowError):
        return None


# ---------------------------------------------------------------------------------------------
# Integers
# ---------------------------------------------------------------------------------------------


def _element_to_int(value: object, index: int, data_type: DataType) -> int:
    """``PyNumber_Index`` then ``PyLong_AsLong`` (and the i32 range check for I32)."""
    hint = f" (weight {index}; the round's data type is {data_type.name}: give ints)"
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError as e:
        raise LocalModelDataTypeMisMatch(f"TypeError: {e}{hint}") from None
    if not _I64_MIN <= number <= _I64_MAX:
        raise LocalModelDataTypeMisMatch(_TOO_LARGE + hint)
    if data_type is DataType.I32 and not _I32_MIN <= number <= _I32_MAX:
        raise LocalModelDataTypeMisMatch(_OUT_OF_RANGE + hint)
    return number


def _to_int(model: LocalModelInput, data_type: DataType) -> npt.NDArray[Any]:
    target = np.dtype(data_type.numpy_dtype)
    arr = model if isinstance(model, np.ndarray) else _try_array(model)
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biu":
        if arr.size:
            low, high = int(arr.min()), int(arr.max())
            lo_lim, hi_lim = (
                (_I32_MIN, _I32_MAX) if data_type is DataType.I32 else (_I64_MIN, _I64_MAX)
            )
            if low < lo_lim or high > hi_lim:
                index = int(np.flatnonzero((arr < lo_lim) | (arr > hi_lim))[0])
                _element_to_int(int(arr[index]), index, data_type)  # raises the right error
        return np.ascontiguousarray(arr.astype(target)).reshape(-1)
    if arr is not None and arr.ndim == 1 and arr.dtype.kind == "f":
        raise LocalModelDataTypeMisMatch(
            f"TypeError: '{'float' if not isinstance(model, np.ndarray) else arr.dtype.name}'"
            " object cannot be interpreted as an integer (the round's data type is"
            f" {data_type.name}: give ints)"
        )
    values = list(model)
    return np.array(
        [_element_to_int(v, i, data_type) for i, v in enumerate(values)], dtype=target
    ).reshape(-1)


# ---------------------------------------------------------------------------------------------
# Back to Python
# ---------------------------------------------------------------------------------------------


def model_to_python(model: npt.NDArray[Any]) -> list[Any]:
    """A model array as the original returns it: a list of Python floats or ints.

    F32 values are widened to Python floats exactly (``1/3`` gives ``0.3333333432674408``).
    """
    if model.dtype == np.float32:
        return list(model.astype(np.float64).tolist())
    return list(model.tolist())
