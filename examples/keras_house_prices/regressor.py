"""The original example's Keras network, and its weights as one flat vector for the SDK.

Dense layers of 144, 72, 18 and 1 units (ReLU, then linear) on d input features: that is
144·d + 144 + 144·72 + 72 + 72·18 + 18 + 18 + 1 = 144·d + 11,917 weights, the model length
the coordinator must be configured with. :class:`xaynet_sdk.models.ModelLayout` turns the
network's weights into that vector and back.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from xaynet_sdk.models import ModelLayout

os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported; the CPU build suffices

LAYERS = (144, 72, 18)


def model_length(n_features: int) -> int:
    """The number of weights of the network for ``n_features`` inputs."""
    return 144 * n_features + 11_917


class Regressor:
    """The network, with its weights as one flat float32 vector (what the SDK sends)."""

    def __init__(self, n_features: int, seed: int = 42) -> None:
        import keras  # here, not at the top: it takes seconds, and split-data needs none of it

        # Fixed seeds: every participant starts from the same weights.
        layers: list[Any] = [keras.Input((n_features,))]
        for i, units in enumerate((*LAYERS, 1)):
            layers.append(
                keras.layers.Dense(
                    units,
                    activation="relu" if units != 1 else None,
                    kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i),
                )
            )
        self.model = keras.Sequential(layers)
        self.model.compile(optimizer="adam", loss="mean_squared_error")
        # The network's layout (8 float32 layers): the vector is float32, for an F32 mask.
        self.layout = ModelLayout.of(self.model)
        assert self.layout.length == model_length(n_features) and self.layout.data_type == "F32"

    def get_weights(self) -> npt.NDArray[np.float32]:
        return self.layout.flatten(self.model)  # type: ignore[return-value]

    def set_weights(self, flat: npt.NDArray[np.floating]) -> None:
        self.layout.load_into(self.model, flat)

    def train(self, x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], epochs: int) -> float:
        """Train; return the last epoch's training loss (mean squared error)."""
        history = self.model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        return float(history.history["loss"][-1])

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(self.model.predict(x, verbose=0), dtype=np.float32).ravel()
