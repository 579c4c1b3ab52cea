"""A basic ParticipantABC: it trains whenever it is selected for the update task, and prints
each round's global model.

    python examples/hello_world.py                 # with a local coordinator
    python examples/hello_world.py --url http://127.0.0.1:8081 --rounds 5
"""

from __future__ import annotations

import argparse
import time
from typing import Optional

import _common

from xaynet_sdk import ParticipantABC, spawn_participant


class Participant(ParticipantABC):
    """Called by the SDK in the participant's own thread."""

    def __init__(self, model: list[float], global_models: _common.GlobalModels) -> None:
        self.model = model
        self.global_models = global_models

    def deserialize_training_input(self, global_model: list[float]) -> list[float]:
        return global_model  # a list of floats: turn it into what train_round wants

    def train_round(self, training_input: Optional[list[float]]) -> list[float]:
        # training_input is the global model, or None before the first round completed.
        _common.say("selected for the update task: training")
        time.sleep(0.2)  # your training step here
        return self.model

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        return training_result  # model_length numbers (a list or a numpy array)

    def on_new_global_model(self, global_model: Optional[list[float]]) -> None:
        self.global_models.received(global_model)  # every new round


def main(args: argparse.Namespace) -> None:
    model = list(_common.DEMO_MODEL)
    with _common.coordinator(args, model_length=len(model), simulated=9) as url:
        global_models = _common.GlobalModels(args)
        participant = spawn_participant(url, Participant, args=(model, global_models))
        try:
            global_models.wait()
        finally:
            participant.stop()  # returns the saved state; see restore.py


if __name__ == "__main__":
    _common.run(main, _common.parser(__doc__))
