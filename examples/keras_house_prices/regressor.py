"""The original example's Keras network, and its weights as one flat vector for the SDK.

Dense layers of 144, 72, 18 and 1 units (ReLU, then linear) on d input features: that is
144·d + 144 + 144·72 + 72 + 72·18 + 18 + 18 + 1 = 144·d + 11,917 weights, the model length
the coordinator must be configured with.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

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
        assert self.model.count_params() == model_length(n_features)

    def get_weights(self) -> npt.NDArray[np.float32]:
        return np.concatenate([w.ravel() for w in self.model.get_weights()]).astype(np.float32)

    def set_weights(self, flat: npt.NDArray[np.floating]) -> None:
        shapes = [w.shape for w in self.model.get_weights()]
        ends = np.cumsum([int(np.prod(shape)) for shape in shapes])
        pieces = np.split(np.asarray(flat, dtype=np.float32), ends[:-1])
        self.model.set_weights([p.reshape(shape) for p, shape in zip(pieces, shapes)])

    def train(self, x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], epochs: int) -> float:
        """Train; return the last epoch's training loss (mean squared error)."""
        history = self.model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        return float(history.history["loss"][-1])

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.asarray(self.model.predict(x, verbose=0), dtype=np.float32).ravel()
