"""ModelLayout: models in their own form to the flat vector and back, exactly.

numpy lists and dicts run here; PyTorch and Keras run in the examples' cached venv (CPU torch
and Keras, which the main environment does not have), as a subprocess that prints what it
checked. One round through the real coordinator shows a layout's vector is what the protocol
carries and that the global model comes back in the model's form.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from test_examples import keras_python  # noqa: E402, F401 - the cached venv's fixture
from venvcache import clean_env  # noqa: E402

from xaynet_sdk import ParticipantABC, spawn_participant  # noqa: E402
from xaynet_sdk.coordinator import LocalCoordinator, Settings  # noqa: E402
from xaynet_sdk.models import Layer, ModelLayout, ModelLayoutError  # noqa: E402

REPO_ROOT = TESTS_DIR.parent

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


def odd_model() -> list[Any]:
    """Every dtype a float32 vector holds exactly, an empty layer and a scalar."""
    return [
        np.array([[1.5, -2.25, 3.0e-8], [4.0, 5.0, -6.5]], dtype=np.float32),
        np.array([65504.0, -0.000061, 1.0 / 3.0], dtype=np.float16),
        np.zeros((0, 4), dtype=np.float32),
        np.array([-128, 127, 0], dtype=np.int8),
        np.array([0, 255], dtype=np.uint8),
        np.array([-32768, 32767], dtype=np.int16),
        np.array([[True, False], [False, True]]),
        np.array(2.5, dtype=np.float32),
    ]


def assert_same_model(got: list[Any], expected: list[Any]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape, (g, e)
        assert g.tobytes() == e.tobytes(), (g, e)  # bit for bit


# -- numpy -------------------------------------------------------------------------------------


def test_a_list_of_odd_dtypes_round_trips_bit_for_bit_in_float32() -> None:
    model = odd_model()
    layout = ModelLayout.of(model)
    assert layout.kind == "list"
    assert layout.length == 6 + 3 + 0 + 3 + 2 + 2 + 4 + 1
    assert layout.dtype == np.float32 and layout.data_type == "F32" and layout.exact
    assert layout.layers[2] == Layer("[2]", (0, 4), "float32")
    assert layout.layers[6] == Layer("[6]", (2, 2), "bool")
    vector = layout.flatten(model)
    assert vector.dtype == np.float32 and vector.shape == (21,)
    assert vector[:3].tolist() == [1.5, -2.25, np.float32(3.0e-8)]
    assert vector[9:12].tolist() == [-128.0, 127.0, 0.0]
    assert vector[16:20].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert vector[20] == 2.5
    assert_same_model(layout.unflatten(vector), model)
    # The global model comes as a list of Python floats, or as float64: the same.
    assert_same_model(layout.unflatten(vector.tolist()), model)
    assert_same_model(layout.unflatten(vector.astype(np.float64)), model)


def test_wide_dtypes_make_a_float64_vector_that_round_trips() -> None:
    model = {
        "w": np.array([0.1, 1e300, -5e-324]),
        "n": np.array([2**53, -(2**53), 7], dtype=np.int64),
        "i": np.array([-(2**31), 2**31 - 1], dtype=np.int32),
        "u": np.array([2**32 - 1], dtype=np.uint32),
        "empty": np.zeros(0, dtype=np.int64),
    }
    layout = ModelLayout.of(model)
    assert layout.dtype == np.float64 and layout.data_type == "F64" and layout.exact
    assert layout.names == ["w", "n", "i", "u", "empty"]
    assert layout.length == 9
    back = layout.unflatten(layout.flatten(model))
    assert list(back) == list(model)
    assert_same_model(list(back.values()), list(model.values()))
    assert back["n"].tolist() == [2**53, -(2**53), 7]


def test_32_bit_integers_alone_make_a_float64_vector() -> None:
    """float32 holds 24 bits: 2**31 - 1 would come back as 2**31, beyond int32."""
    model = [np.array([2**31 - 1, 16_777_217], dtype=np.int32), np.ones(2, np.float32)]
    layout = ModelLayout.of(model)
    assert layout.dtype == np.float64 and layout.data_type == "F64"
    assert_same_model(layout.unflatten(layout.flatten(model)), model)


def test_a_dict_is_matched_by_name_not_order() -> None:
    model = {"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), dtype=np.float32)}
    layout = ModelLayout.of(model)
    reordered = {"a": np.full((2, 2), 9.0, dtype=np.float32), "b": np.zeros(3, np.float32)}
    assert layout.flatten(reordered).tolist() == [0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0]


def test_a_nested_model_comes_back_nested() -> None:
    """A pytree: lists, tuples and dicts nest; every other element is a layer, named by its
    path; keys that are not strings stay what they were."""
    model: dict[Any, Any] = {
        "encoder": [
            {"kernel": np.ones((2, 3), np.float32), "bias": np.zeros(3, np.float32)},
            {"kernel": np.full((3, 1), 2.0, np.float32), "bias": np.zeros(1, np.float32)},
        ],
        "scale": (np.float32(0.5), np.array([7], np.int8)),
        0: [],
    }
    layout = ModelLayout.of(model)
    assert layout.names == [
        "encoder/[0]/kernel",
        "encoder/[0]/bias",
        "encoder/[1]/kernel",
        "encoder/[1]/bias",
        "scale/[0]",
        "scale/[1]",
    ]
    assert layout.length == 6 + 3 + 3 + 1 + 1 + 1 and layout.dtype == np.float32
    back = layout.unflatten(layout.flatten(model))
    assert list(back) == ["encoder", "scale", 0] and back[0] == []
    assert isinstance(back["encoder"], list) and isinstance(back["scale"], tuple)
    assert_same_model(
        [back["encoder"][1]["kernel"], back["scale"][0], back["scale"][1]],
        [model["encoder"][1]["kernel"], np.asarray(np.float32(0.5)), model["scale"][1]],
    )
    model["encoder"][1]["bias"] = np.zeros(2, np.float32)
    with pytest.raises(ModelLayoutError, match=r"layer 'encoder/\[1\]/bias' has shape \(2,\)"):
        layout.flatten(model)
    del model["encoder"][1]["bias"]
    with pytest.raises(ModelLayoutError, match="the model has 5 layers, the layout 6"):
        layout.flatten(model)


def test_a_single_array_keeps_its_shape() -> None:
    model = np.arange(6, dtype=np.float64).reshape(2, 3)
    layout = ModelLayout.of(model)
    assert (layout.kind, layout.length, layout.dtype.name) == ("array", 6, "float64")
    back = layout.unflatten([5, 4, 3, 2, 1, 0])
    assert back.shape == (2, 3) and back.dtype == np.float64 and back[0, 0] == 5
    target = np.zeros((2, 3))
    layout.load_into(target, np.ones(6))
    assert target.sum() == 6


def test_a_global_mean_is_rounded_into_integer_and_bool_layers() -> None:
    layout = ModelLayout.of([np.array([1, 2, -3], np.int8), np.array([True, False])])
    mean = (np.array([1, 2, -3, 1, 0]) + np.array([2, 2, -4, 1, 1]) * 2) / 3  # weighted mean
    ints, flags = layout.unflatten(mean)
    assert ints.dtype == np.int8 and ints.tolist() == [2, 2, -4]
    assert flags.dtype == np.bool_ and flags.tolist() == [True, True]


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([0, 200, 0, 0, 0], r"layer '\[0\]' \(int8\): value 200\.0 at \(1,\) does not fit"),
        ([0, 0, float("nan"), 0, 0], r"layer '\[0\]' \(int8\): value nan at \(2,\)"),
        ([0, 0, 0, 0, 2], r"layer '\[1\]' \(bool\): value 2\.0 at \(1,\)"),
        ([0, 0, 0, 0], r"the vector has 4 weights, the layout 5: .*\[model\] length 5"),
        ([[0, 0, 0, 0, 0]], r"the vector must be 1-d, got shape \(1, 5\)"),
        (["a", 0, 0, 0, 0], r"not a sequence of numbers"),
    ],
)
def test_a_vector_that_does_not_fit_names_the_layer(vector: Any, message: str) -> None:
    layout = ModelLayout.of([np.array([1, 2, -3], np.int8), np.array([True, False])])
    with pytest.raises(ModelLayoutError, match=message):
        layout.unflatten(vector)


def test_a_model_that_differs_from_the_layout_names_the_layer() -> None:
    layout = ModelLayout.of({"dense/kernel": np.zeros((3, 4), np.float32), "bias": np.zeros(4)})
    with pytest.raises(ModelLayoutError, match=r"layer 'dense/kernel' has shape \(3, 5\), the"):
        layout.flatten({"dense/kernel": np.zeros((3, 5), np.float32), "bias": np.zeros(4)})
    with pytest.raises(
        ModelLayoutError, match="layer 'bias' has dtype float32, the layout float64"
    ):
        layout.flatten({"dense/kernel": np.zeros((3, 4), np.float32), "bias": np.zeros(4, "f4")})
    with pytest.raises(ModelLayoutError, match="layer 'bias' of the layout is not in the model"):
        layout.flatten({"dense/kernel": np.zeros((3, 4), np.float32), "b": np.zeros(4)})
    with pytest.raises(ModelLayoutError, match="the model has 1 layers, the layout 2"):
        layout.flatten({"dense/kernel": np.zeros((3, 4), np.float32)})
    with pytest.raises(ModelLayoutError, match="the layout is of a dict model, got a list"):
        layout.flatten([np.zeros((3, 4), np.float32), np.zeros(4)])
    listed = ModelLayout.of([np.zeros(2), np.zeros(3)])
    with pytest.raises(ModelLayoutError, match=r"layer '\[1\]' has shape \(4,\), the layout"):
        listed.flatten([np.zeros(2), np.zeros(4)])


def test_integers_a_float_vector_would_change_are_refused() -> None:
    big = {"steps": np.array([2**53 + 1], dtype=np.int64)}
    with pytest.raises(ModelLayoutError, match="layer 'steps' holds an integer beyond 2\\*\\*53"):
        ModelLayout.of(big).flatten(big)
    with pytest.raises(ModelLayoutError, match="layer 'steps' holds 64-bit integers"):
        ModelLayout.of(big, dtype=np.float32)


def test_float64_layers_in_a_forced_float32_vector_are_rounded() -> None:
    model = [np.array([0.1, 1.0])]
    layout = ModelLayout.of(model, dtype="float32")
    assert layout.data_type == "F32" and not layout.exact
    vector = layout.flatten(model)
    assert vector.dtype == np.float32
    assert layout.unflatten(vector)[0].tolist() == [float(np.float32(0.1)), 1.0]
    with pytest.raises(ValueError, match="float32 or float64, got int32"):
        ModelLayout.of(model, dtype=np.int32)


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        ([np.array([1 + 2j])], ModelLayoutError, r"layer '\[0\]' has dtype complex128"),
        ({"s": np.array(["x"])}, ModelLayoutError, "layer 's' has dtype <U1"),
        ([np.array([1.0], dtype=np.longdouble)], ModelLayoutError, "has dtype float128"),
        ("weights", TypeError, "a model must be a numpy array, a list"),
        (3.0, TypeError, "got builtins.float"),
    ],
)
def test_what_cannot_be_flattened_is_refused(model: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        ModelLayout.of(model)


def test_load_into_a_list_and_a_dict_replaces_the_arrays() -> None:
    weights = [np.zeros(2, np.float32), np.zeros((1, 2), np.float32)]
    layout = ModelLayout.of(weights)
    layout.load_into(weights, [1, 2, 3, 4])
    assert [w.tolist() for w in weights] == [[1.0, 2.0], [[3.0, 4.0]]]
    named = {"x": np.zeros(1), "y": np.zeros(1)}
    ModelLayout.of(named).load_into(named, [5, 6])
    assert named == {"x": np.array([5.0]), "y": np.array([6.0])}


# -- through a round ---------------------------------------------------------------------------


class LayeredParticipant(ParticipantABC):
    """Trains nothing: its local model is a fixed list of layers, sent through a layout."""

    def __init__(self, model: list[Any]) -> None:
        self.model = model
        self.layout = ModelLayout.of(model)
        self.global_models: list[Any] = []

    def train_round(self, training_input: Optional[Any]) -> Any:
        return self.model

    def serialize_training_result(self, training_result: Any) -> Any:
        return self.layout.flatten(training_result)

    def deserialize_training_input(self, global_model: Any) -> Any:
        return self.layout.unflatten(global_model)

    def on_new_global_model(self, global_model: Optional[Any]) -> None:
        if global_model is not None:
            self.global_models.append(global_model)


def test_layers_go_through_a_round_and_come_back_in_their_form() -> None:
    """Three participants with layered models (an int8 and an empty layer among them): the
    coordinator's length is the layout's, and the global model comes back as layers."""
    models = [
        [np.full((2, 2), v, np.float32), np.zeros(0, np.float32), np.array([v, -v], np.int8)]
        for v in (1, 2, 6)
    ]
    length = ModelLayout.of(models[0]).length
    assert length == 6
    settings = Settings.for_tests(
        model_length=length,
        sum=0.25,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        min_update_time=1.0,
        max_sum_time=5,
        max_update_time=5,
        max_sum2_time=5,
    )
    with LocalCoordinator(settings) as coordinator:
        participants = [
            spawn_participant(coordinator.url, LayeredParticipant, args=(m,), numpy=True)
            for m in models
        ] + [spawn_participant(coordinator.url, LayeredParticipant, args=(models[0],))]
        try:
            coordinator.wait_for_global_models(1, timeout=120)
            deadline = time.monotonic() + 60
            seen: list[Any] = []
            while not seen and time.monotonic() < deadline:
                seen = [g for p in participants for g in p.participant.global_models]  # type: ignore[union-attr]
                time.sleep(0.1)
        finally:
            for p in participants:
                p.stop()
    assert seen, coordinator.status()
    published = [float(w) for w in coordinator.global_models[0]]
    for global_model in seen:
        dense, empty, ints = global_model
        assert dense.shape == (2, 2) and dense.dtype == np.float32
        assert empty.shape == (0,) and empty.dtype == np.float32
        assert ints.dtype == np.int8
        assert dense.ravel().tolist() == pytest.approx(published[:4], abs=1e-6)
        assert ints.tolist() == [round(published[4]), round(published[5])]
    # Every participant updates with scalar 1: the mean of some 3 or 4 of the models.
    assert 1.0 <= published[0] <= 6.0 and published[4] == pytest.approx(-published[5], abs=1e-6)


# -- PyTorch and Keras, in the examples' venv --------------------------------------------------

_TORCH_CHECKS = r"""
import json, sys
import numpy as np
from xaynet_sdk.models import ModelLayout, ModelLayoutError
assert "torch" not in sys.modules
ModelLayout.of([np.zeros(3)]).flatten([np.ones(3)])
assert "torch" not in sys.modules, "numpy models must not import torch"
import torch
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
)
net(torch.randn(8, 5))  # training mode: the batch norm's statistics and counter move
layout = ModelLayout.of(net)
facts = {"kind": layout.kind, "length": layout.length, "dtype": layout.dtype.name,
         "names": layout.names, "dtypes": [l.dtype for l in layout.layers]}
state = net.state_dict()
back = layout.unflatten(layout.flatten(net))
facts["same_keys"] = list(back) == list(state)
facts["exact"] = all(
    back[k].dtype == state[k].dtype and back[k].shape == state[k].shape
    and torch.equal(back[k], state[k]) for k in state
)
other = torch.nn.Sequential(
    torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
)
layout.load_into(other, layout.flatten(state))
facts["loaded"] = all(torch.equal(other.state_dict()[k], state[k]) for k in state)
x = torch.randn(3, 5)
net.eval(); other.eval()
facts["same_output"] = bool(torch.equal(net(x), other(x)))

odd = {"bf": torch.tensor([1.0078125, -3.5, 1e30], dtype=torch.bfloat16),
       "half": torch.tensor([[0.1, 65504.0]], dtype=torch.float16),
       "i8": torch.tensor([-128, 127], dtype=torch.int8),
       "flags": torch.tensor([True, False]),
       "empty": torch.zeros(0, 3)}
odd_layout = ModelLayout.of(odd)
odd_back = odd_layout.unflatten(odd_layout.flatten(odd))
facts["odd_dtype"] = odd_layout.dtype.name
facts["odd_exact"] = all(
    odd_back[k].dtype == odd[k].dtype and odd_back[k].shape == odd[k].shape
    and torch.equal(odd_back[k], odd[k]) for k in odd
)
try:
    layout.flatten({**state, "0.weight": torch.zeros(4, 6)})
except ModelLayoutError as e:
    facts["mismatch"] = str(e)
try:
    ModelLayout.of({"c": torch.zeros(2, dtype=torch.complex64)})
except ModelLayoutError as e:
    facts["complex"] = str(e)
try:
    ModelLayout.of([torch.zeros(2)])
except ModelLayoutError as e:
    facts["tensor_in_list"] = str(e)
print(json.dumps(facts))
"""

_KERAS_CHECKS = r"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np
from xaynet_sdk.models import ModelLayout, ModelLayoutError
assert "keras" not in sys.modules
import keras
def build(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model
model = build(1)
model.fit(np.random.default_rng(0).normal(size=(16, 3)), np.ones(16), epochs=1, verbose=0)
layout = ModelLayout.of(model)
facts = {"kind": layout.kind, "length": layout.length, "dtype": layout.dtype.name,
         "count_params": int(model.count_params()), "names": layout.names}
weights = model.get_weights()
vector = layout.flatten(model)
facts["same_as_list"] = bool(np.array_equal(vector, layout.flatten(weights)))
back = layout.unflatten(vector)
facts["exact"] = all(b.dtype == w.dtype and b.shape == w.shape and b.tobytes() == w.tobytes()
                     for b, w in zip(back, weights)) and len(back) == len(weights)
other = build(2)
layout.load_into(other, vector)
x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
same = np.array_equal(model.predict(x, verbose=0), other.predict(x, verbose=0))
facts["same_output"] = bool(same)
# another instance: other auto-numbered names (dense_2/kernel), matched by position
facts["other_instance"] = bool(np.array_equal(layout.flatten(other), vector))
wider = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5), keras.layers.Dense(1)])
try:
    ModelLayout.of(keras.Sequential([keras.Input((3,)), keras.layers.Dense(4),
                                     keras.layers.Dense(1)])).flatten(wider)
except ModelLayoutError as e:
    facts["mismatch"] = str(e)
print(json.dumps(facts))
"""


def run_in_venv(python: Path, code: str) -> dict[str, Any]:
    env = clean_env()
    env["PYTHONPATH"] = str(REPO_ROOT)  # this checkout, whichever checkout built the venv
    proc = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=str(REPO_ROOT),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    facts: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return facts


def test_a_torch_module_and_state_dict_round_trip(keras_python: Path) -> None:  # noqa: F811
    facts = run_in_venv(keras_python, _TORCH_CHECKS)
    # Linear(5, 4): 20 + 4; BatchNorm1d(4): weight, bias, running mean and var, the counter;
    # Linear(4, 2): 8 + 2.
    assert facts["length"] == 24 + 4 * 4 + 1 + 10
    assert facts["names"] == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "3.weight",
        "3.bias",
    ]
    assert facts["dtypes"][6] == "int64" and facts["dtype"] == "float64"  # for the counter
    assert facts["kind"] == "torch"
    assert facts["same_keys"] and facts["exact"] and facts["loaded"] and facts["same_output"]
    assert facts["odd_dtype"] == "float32" and facts["odd_exact"]
    assert facts["mismatch"] == "layer '0.weight' has shape (4, 6), the layout (4, 5)"
    assert "layer 'c': complex tensors are not supported" in facts["complex"]
    assert facts["tensor_in_list"].startswith("layer '[0]' is a torch tensor inside a list")


def test_a_keras_model_round_trips(keras_python: Path) -> None:  # noqa: F811
    facts = run_in_venv(keras_python, _KERAS_CHECKS)
    # Dense(3 -> 4): 16; BatchNormalization(4): gamma, beta, moving mean and var; Dense(4 -> 1): 5
    assert facts["length"] == facts["count_params"] == 16 + 16 + 5
    assert facts["kind"] == "keras" and facts["dtype"] == "float32"
    assert len(facts["names"]) == 8 and facts["names"][0].endswith("kernel")
    assert facts["same_as_list"] and facts["exact"] and facts["same_output"]
    assert facts["other_instance"]
    assert facts["mismatch"].endswith("has shape (3, 5), the layout (3, 4)")
    assert facts["mismatch"].startswith("layer '")
