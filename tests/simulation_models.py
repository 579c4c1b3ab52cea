"""The participants of tests/test_simulation.py, in a module of their own so that simulation
workers (spawned processes, Ray actors in another venv) can import them by name."""

from __future__ import annotations

from typing import Any, Optional

from xaynet_sdk import ParticipantABC

#: Participants per test; the model has one position per participant and a round marker.
N = 24


def one_hot(index: int, marker: float) -> list[float]:
    """Participant ``index``'s model: ``(index + 1) / 32`` at ``index``, 0 elsewhere, ``marker``
    last (all exact in binary and within the B0 bound [-1, 1])."""
    model = [0.0] * (N + 1)
    model[index] = (index + 1) / 32
    model[N] = marker
    return model


def scalar_of(index: int) -> float:
    """1, 2 or 3: the global model is a scalar-weighted mean, not a plain one."""
    return float(1 + index % 3)


class OneHot(ParticipantABC):
    """Sends :func:`one_hot` with marker 1/8 without a global model, else the global model's
    marker + 1/8: the k-th global model has marker k/8 only if every update participant of its
    round was handed the previous one."""

    def __init__(self, index: int) -> None:
        self.index = index

    def deserialize_training_input(self, global_model: Any) -> list[float]:
        return [float(w) for w in global_model]

    def train_round(self, training_input: Optional[list[float]]) -> list[float]:
        marker = 0.125 if training_input is None else (round(training_input[N] * 8) + 1) / 8
        return one_hot(self.index, marker)

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        return training_result
