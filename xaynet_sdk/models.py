"""Model adapters: a model in its own form to the protocol's flat vector, and back.

The protocol moves one flat vector of ``[model] length`` numbers; a model is a list of
per-layer arrays (Keras ``get_weights()``, Flower's ``NDArrays``), a dict of arrays, lists,
tuples and dicts nested (a pytree, such as JAX parameters converted to numpy), a PyTorch
``state_dict`` or ``nn.Module``, or a Keras model. In lists, tuples and dicts every element
that is not itself a list, tuple or dict is one layer (an array, or a number), named by its
path (``"encoder/[0]/kernel"``). :class:`ModelLayout` records a
model's layout once (layer names, shapes and dtypes), so that every participant turns its
local model into the vector the same way and the global model back into its own form::

    layout = ModelLayout.of(model)        # layout.length: the coordinator's [model] length
    vector = layout.flatten(model)        # for set_local_model / serialize_training_result
    layout.load_into(model, global_model) # or: weights = layout.unflatten(global_model)

PyTorch and Keras are supported without being imported: an object is recognised by the
modules its type comes from, and torch is imported only when such an object is passed.

Dtypes. The vector is float32 when every layer fits float32 exactly (float32, float16,
bfloat16, bool, and integers of at most 16 bits), else float64 (float64, 32-bit integers;
64-bit integers such as PyTorch's ``num_batches_tracked`` up to 2**53 in magnitude). So
``unflatten(flatten(m))`` gives ``m`` back bit for bit, in its own dtypes. The global model
is a weighted mean: for integer and bool layers it is rounded to the nearest integer (a
mean of values in range stays in range; a value beyond the dtype's range, or NaN, is an
error naming the layer). Complex and non-numeric layers are refused. Empty layers are kept
(they add nothing to the length). ``dtype=`` forces the vector's dtype (float32 to match an
F32 coordinator with float64 layers, then rounding them); the coordinator's mask data type
must be :attr:`ModelLayout.data_type` (``F32`` or ``F64``).
"""

from __future__ import annotations

import collections
import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional

import numpy as np
import numpy.typing as npt

from .exceptions import XaynetError

__all__ = ["Layer", "ModelLayout", "ModelLayoutError"]

Kind = Literal["array", "list", "dict", "torch", "keras"]
Vector = npt.NDArray[np.floating[Any]]

#: Dtypes whose every value a float32 holds exactly.
_FIT_F32 = {"float32", "float16", "bfloat16", "bool", "int8", "uint8", "int16", "uint16"}
#: Dtypes whose every value a float64 holds exactly (64-bit integers: within 2**53).
_FIT_F64 = _FIT_F32 | {"float64", "int32", "uint32"}
_INT64 = {"int64", "uint64"}
_F64_EXACT = 2**53


class ModelLayoutError(XaynetError, ValueError):
    """A model or a vector does not match the layout (the message names the layer)."""


@dataclass(frozen=True)
class Layer:
    """One layer of a layout: its name, shape and dtype (``"bfloat16"`` for torch's)."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _module_names(obj: object) -> list[str]:
    return [getattr(cls, "__module__", "") or "" for cls in type(obj).__mro__]


def _is_torch_tensor(obj: object) -> bool:
    return any(m == "torch" or m.startswith("torch.") for m in _module_names(obj)) and hasattr(
        obj, "detach"
    )


def _is_torch_module(obj: object) -> bool:
    return any(m.startswith("torch.nn") for m in _module_names(obj)) and hasattr(obj, "state_dict")


def _is_keras_model(obj: object) -> bool:
    return (
        any(m.split(".")[0] in ("keras", "tf_keras") for m in _module_names(obj))
        or any(m.startswith("tensorflow.python.keras") for m in _module_names(obj))
    ) and hasattr(obj, "get_weights")


def _kind_of(model: object) -> Kind:
    if isinstance(model, np.ndarray):
        return "array"
    if _is_keras_model(model):  # first: on the torch backend, a Keras model is an nn.Module
        return "keras"
    if _is_torch_module(model):
        return "torch"
    if isinstance(model, Mapping):
        if any(_is_torch_tensor(v) for v in model.values()):
            return "torch"
        return "dict"
    if isinstance(model, (list, tuple)):
        return "list"
    raise TypeError(
        "a model must be a numpy array, a list or tuple of arrays, a dict of arrays, a PyTorch"
        f" state_dict or nn.Module, or a Keras model; got {type(model).__module__}."
        f"{type(model).__qualname__}"
    )


def _torch() -> Any:
    """torch, imported only once a torch object was passed (so it is installed)."""
    return importlib.import_module("torch")


def _tensor_to_numpy(name: str, tensor: Any) -> npt.NDArray[Any]:
    torch = _torch()
    t = tensor.detach().cpu()
    if t.is_complex():
        raise ModelLayoutError(f"layer {name!r}: complex tensors are not supported")
    if t.dtype == torch.bfloat16:
        t = t.to(dtype=torch.float32)  # exact: every bfloat16 is a float32; numpy has none
    result: npt.NDArray[Any] = np.asarray(t.numpy())
    return result


def _layers_of(model: object, kind: Kind) -> list[tuple[str, npt.NDArray[Any], str]]:
    """(name, array, dtype name) per layer, in the model's order."""
    if kind == "array":
        arr = np.asarray(model)
        return [("array", arr, arr.dtype.name)]
    if kind in ("list", "dict"):
        leaves: list[tuple[str, object]] = []
        _tree(model, "", leaves)
        out = []
        for name, value in leaves:
            arr = _as_array(name, value)
            out.append((name, arr, arr.dtype.name))
        return out
    if kind == "torch":
        state: Any = model if isinstance(model, Mapping) else model.state_dict()  # type: ignore[attr-defined]
        out = []
        for key, value in state.items():
            name = str(key)
            if not _is_torch_tensor(value):
                raise ModelLayoutError(
                    f"layer {name!r} of the state_dict is a {type(value).__name__}, not a tensor"
                )
            dtype = str(value.dtype).removeprefix("torch.")
            out.append((name, _tensor_to_numpy(name, value), dtype))
        return out
    # keras: get_weights() is a list of numpy arrays in the variables' order
    weights = model.get_weights()  # type: ignore[attr-defined]
    variables = list(getattr(model, "weights", []))
    names = [str(getattr(v, "path", None) or getattr(v, "name", "")) for v in variables]
    if len(names) != len(weights) or len(set(names)) != len(names) or not all(names):
        names = [f"[{i}]" for i in range(len(weights))]
    out = []
    for name, w in zip(names, weights):
        arr = _as_array(name, w)
        out.append((name, arr, arr.dtype.name))
    return out


def _tree(value: object, name: str, leaves: list[tuple[str, object]]) -> Any:
    """The nesting of lists, tuples and dicts under ``value``, each leaf replaced by its index
    in ``leaves``, where ``(path, leaf)`` is appended; paths join keys and ``[i]`` by ``/``."""
    if isinstance(value, Mapping):
        return {k: _tree(v, _join(name, str(k)), leaves) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        children = [_tree(v, _join(name, f"[{i}]"), leaves) for i, v in enumerate(value)]
        return tuple(children) if isinstance(value, tuple) else children
    leaves.append((name, value))
    return len(leaves) - 1


def _join(prefix: str, part: str) -> str:
    return f"{prefix}/{part}" if prefix else part


def _rebuild(tree: Any, arrays: list[npt.NDArray[Any]]) -> Any:
    if isinstance(tree, dict):
        return {k: _rebuild(v, arrays) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        children = [_rebuild(v, arrays) for v in tree]
        return tuple(children) if isinstance(tree, tuple) else children
    return arrays[tree]


def _as_array(name: str, value: object) -> npt.NDArray[Any]:
    if _is_torch_tensor(value):
        raise ModelLayoutError(
            f"layer {name!r} is a torch tensor inside a list or dict: pass the module or its"
            " state_dict (a flat dict of tensors) instead"
        )
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ModelLayoutError(
            f"layer {name!r} has dtype {arr.dtype} ({type(value).__name__}): only bool, integer"
            " and real floating-point layers can be flattened"
        )
    return arr


def _vector_dtype_for(layers: Sequence[Layer]) -> np.dtype[Any]:
    if all(layer.dtype in _FIT_F32 for layer in layers):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


class ModelLayout:
    """The layout of a model: layer names, shapes and dtypes, and the flat vector's dtype.

    Build it with :meth:`of`. It is immutable and may be shared between threads.
    """

    def __init__(
        self,
        kind: Kind,
        layers: Sequence[Layer],
        dtype: Optional[npt.DTypeLike] = None,
        tree: Any = None,
    ) -> None:
        self._kind: Kind = kind
        self._layers = tuple(layers)
        # How a list or dict model nests (see _tree); None: flat, in the layers' order.
        self._nesting = tree
        self._dtype = _vector_dtype_for(self._layers) if dtype is None else np.dtype(dtype)
        if self._dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"the vector's dtype must be float32 or float64, got {self._dtype}")
        names = [layer.name for layer in self._layers]
        if len(set(names)) != len(names):
            raise ModelLayoutError(f"two layers have the same name: {names}")
        self._ends = np.cumsum([0, *(layer.size for layer in self._layers)])

    @classmethod
    def of(cls, model: object, *, dtype: Optional[npt.DTypeLike] = None) -> ModelLayout:
        """The layout of ``model``. ``dtype`` forces the vector's dtype (float32, float64).

        Raises ``TypeError`` for a kind of model not supported, :class:`ModelLayoutError`
        for a layer that cannot be flattened (complex, non-numeric), and for a 64-bit
        integer layer when float32 is forced.
        """
        kind = _kind_of(model)
        found = _layers_of(model, kind)
        for name, _, dt in found:
            if dt not in _FIT_F64 and dt not in _INT64:
                raise ModelLayoutError(
                    f"layer {name!r} has dtype {dt}: only bool, integers and float16, bfloat16,"
                    " float32 and float64 layers can be flattened"
                )
        tree = _tree(model, "", []) if kind in ("list", "dict") else None
        layers = [Layer(name, tuple(arr.shape), dt) for name, arr, dt in found]
        layout = cls(kind, layers, dtype, tree)
        if layout.dtype == np.float32:
            wide = [layer.name for layer in layout.layers if layer.dtype in _INT64]
            if wide:
                raise ModelLayoutError(
                    f"layer {wide[0]!r} holds 64-bit integers, which a float32 vector would"
                    " change: use dtype=float64 (and an F64 mask configuration)"
                )
        return layout

    # -- what the layout tells --------------------------------------------------------------
    @property
    def length(self) -> int:
        """The number of weights: the coordinator's ``[model] length``."""
        return int(self._ends[-1])

    @property
    def dtype(self) -> np.dtype[Any]:
        """The flat vector's dtype: float32 or float64."""
        return self._dtype

    @property
    def data_type(self) -> str:
        """The data type of the coordinator's mask configuration: ``"F32"`` or ``"F64"``."""
        return "F32" if self._dtype == np.float32 else "F64"

    @property
    def exact(self) -> bool:
        """Whether every layer's values survive the vector's dtype unchanged."""
        fit = _FIT_F32 if self._dtype == np.float32 else _FIT_F64 | _INT64
        return all(layer.dtype in fit for layer in self._layers)

    @property
    def kind(self) -> Kind:
        """The model's form: ``array``, ``list``, ``dict``, ``torch`` or ``keras``."""
        return self._kind

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self._layers

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self._layers]

    def __repr__(self) -> str:
        return (
            f"ModelLayout(kind={self._kind!r}, layers={len(self._layers)},"
            f" length={self.length}, dtype={self._dtype.name})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelLayout):
            return NotImplemented
        return (self._kind, self._layers, self._dtype, self._nesting) == (
            other._kind,
            other._layers,
            other._dtype,
            other._nesting,
        )

    def __hash__(self) -> int:
        return hash((self._kind, self._layers, self._dtype.name))

    # -- model to vector --------------------------------------------------------------------
    def flatten(self, model: object) -> Vector:
        """The model as one contiguous 1-d vector of :attr:`dtype`, layer after layer.

        ``model`` has the layout's form (a Keras layout also takes ``get_weights()``'s list;
        a torch layout takes a state_dict or the module). Raises :class:`ModelLayoutError`
        naming the first layer whose name, shape or dtype differs, or whose 64-bit integers
        a float64 does not hold exactly.
        """
        found = self._matching_layers(model)
        out = np.empty(self.length, dtype=self._dtype)
        for layer, (name, arr, dt), start in zip(self._layers, found, self._ends[:-1]):
            if tuple(arr.shape) != layer.shape:
                raise ModelLayoutError(
                    f"layer {name!r} has shape {tuple(arr.shape)}, the layout {layer.shape}"
                )
            if dt != layer.dtype:
                raise ModelLayoutError(f"layer {name!r} has dtype {dt}, the layout {layer.dtype}")
            if dt in _INT64 and arr.size and int(np.abs(arr).max()) > _F64_EXACT:
                raise ModelLayoutError(
                    f"layer {name!r} holds an integer beyond 2**53, which a float64 changes"
                )
            out[start : start + layer.size] = arr.ravel()
        return out

    def _matching_layers(self, model: object) -> list[tuple[str, npt.NDArray[Any], str]]:
        kind = _kind_of(model)
        # Keras names variables after auto-numbered layers (dense_4/kernel), different in each
        # instance of the same network: Keras weights match by position, as set_weights does.
        positional = "keras" in (kind, self._kind) and {kind, self._kind} <= {"list", "keras"}
        if kind != self._kind and not positional:
            raise ModelLayoutError(
                f"the layout is of a {self._kind} model, got a {kind} model"
                f" ({type(model).__qualname__})"
            )
        found = _layers_of(model, kind)
        if len(found) != len(self._layers):
            raise ModelLayoutError(
                f"the model has {len(found)} layers, the layout {len(self._layers)}"
                f" ({', '.join(self.names[:8])}{', ...' if len(self._layers) > 8 else ''})"
            )
        if positional:
            return [
                (name if kind == "keras" else layer.name, arr, dt)
                for layer, (name, arr, dt) in zip(self._layers, found)
            ]
        by_name = {name: (name, arr, dt) for name, arr, dt in found}
        missing = [name for name in self.names if name not in by_name]
        if missing:
            extra = [name for name in by_name if name not in set(self.names)]
            raise ModelLayoutError(
                f"layer {missing[0]!r} of the layout is not in the model"
                + (f" (the model has {extra[0]!r} instead)" if extra else "")
            )
        return [by_name[name] for name in self.names]

    # -- vector to model --------------------------------------------------------------------
    def unflatten(self, vector: object) -> Any:
        """The vector (a global model) in the model's form and dtypes.

        A list of arrays for a list or Keras layout (what ``set_weights`` takes), a dict of
        arrays for a dict layout, a state_dict of CPU tensors for a torch layout, an array for
        an array layout. Integer and bool layers are rounded to the nearest integer. Raises
        :class:`ModelLayoutError` for a vector of another length, and naming the layer whose
        values do not fit its integer dtype.
        """
        flat = self._as_vector(vector)
        arrays = [
            self._layer_values(layer, flat[start : start + layer.size])
            for layer, start in zip(self._layers, self._ends[:-1])
        ]
        if self._kind == "array":
            return arrays[0]
        if self._kind in ("list", "dict") and self._nesting is not None:
            return _rebuild(self._nesting, arrays)
        if self._kind in ("list", "keras"):
            return arrays
        if self._kind == "dict":
            return {layer.name: arr for layer, arr in zip(self._layers, arrays)}
        return self._torch_state(arrays)

    def load_into(self, model: object, vector: object) -> None:
        """Set ``model``'s weights to the vector: ``set_weights`` for Keras,
        ``load_state_dict`` for a torch module, item assignment for a list or dict (arrays
        are replaced, not written into), in place for a numpy array or a state_dict's tensors.
        """
        weights = self.unflatten(vector)
        if _is_keras_model(model):
            model.set_weights(weights)  # type: ignore[attr-defined]
        elif _is_torch_module(model):
            model.load_state_dict(weights)  # type: ignore[attr-defined]
        elif isinstance(model, np.ndarray):
            if model.shape != weights.shape:
                raise ModelLayoutError(
                    f"the array has shape {model.shape}, the layout {weights.shape}"
                )
            model[...] = weights
        elif isinstance(model, Mapping) and self._kind == "torch":
            with _torch().no_grad():
                for name, tensor in weights.items():
                    model[name].copy_(tensor)
        elif isinstance(model, dict):
            model.update(weights)
        elif isinstance(model, list) and len(model) == len(weights):
            model[:] = weights
        else:
            raise TypeError(
                f"cannot load weights into a {type(model).__qualname__}: use unflatten()"
            )

    def _as_vector(self, vector: object) -> npt.NDArray[np.float64]:
        try:
            flat = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ModelLayoutError(f"the vector is not a sequence of numbers: {e}") from None
        if flat.ndim != 1:
            raise ModelLayoutError(f"the vector must be 1-d, got shape {flat.shape}")
        if flat.shape[0] != self.length:
            raise ModelLayoutError(
                f"the vector has {flat.shape[0]} weights, the layout {self.length}: is the"
                f" coordinator's [model] length {self.length}?"
            )
        return flat

    @staticmethod
    def _layer_values(layer: Layer, values: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        dt = "float32" if layer.dtype == "bfloat16" else layer.dtype
        target = np.dtype(dt)
        if target.kind == "f":
            return values.astype(target).reshape(layer.shape)
        rounded = np.rint(values)
        if target.kind == "b":
            low, high = 0, 1
        elif layer.dtype in _INT64:  # every value came from within 2**53
            low, high = (0 if target.kind == "u" else -_F64_EXACT), _F64_EXACT
        else:
            info = np.iinfo(target)
            low, high = int(info.min), int(info.max)
        bad = ~np.isfinite(rounded) | (rounded < low) | (rounded > high)
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise ModelLayoutError(
                f"layer {layer.name!r} ({layer.dtype}): value {float(values[index])!r} at"
                f" {tuple(int(i) for i in np.unravel_index(index, layer.shape))} does not fit"
            )
        if target.kind == "b":
            result: npt.NDArray[Any] = (rounded != 0).reshape(layer.shape)
            return result
        result = rounded.astype(target).reshape(layer.shape)
        return result

    def _torch_state(self, arrays: list[npt.NDArray[Any]]) -> dict[str, Any]:
        torch = _torch()
        state: dict[str, Any] = collections.OrderedDict()
        for layer, arr in zip(self._layers, arrays):
            tensor = torch.from_numpy(np.array(arr, order="C"))  # keeps 0-d arrays 0-d
            if layer.dtype == "bfloat16":
                tensor = tensor.to(torch.bfloat16)
            state[layer.name] = tensor
        return state
