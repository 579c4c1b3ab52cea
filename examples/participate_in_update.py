"""A ParticipantABC that decides whether to train when it is selected for the update task:
only when its (simulated) battery is at least --min-battery percent. While the update task
waits for a model, the SDK asks participate_in_update_task() again on every tick, so a
participant can also train later in the round, once the battery allows it.

    python examples/participate_in_update.py
    python examples/participate_in_update.py --url http://127.0.0.1:8081 --min-battery 50
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Optional

import _common

from xaynet_sdk import ParticipantABC, spawn_participant


def battery_level() -> int:
    return random.randint(1, 100)  # a real app would ask the device; here: one per round


class Participant(ParticipantABC):
    def __init__(
        self, model: list[float], min_battery: int, global_models: _common.GlobalModels
    ) -> None:
        self.model = model
        self.min_battery = min_battery
        self.global_models = global_models
        self.battery = battery_level()
        self.answered = False

    def participate_in_update_task(self) -> bool:
        # Called when selected for the update task, before train_round; False: not now.
        enough = self.battery >= self.min_battery
        if not self.answered:  # asked on every tick: say it once a round
            answer = "training" if enough else "not training this round"
            _common.say(f"selected for the update task: battery at {self.battery}%, {answer}")
            self.answered = True
        return enough

    def train_round(self, training_input: Optional[list[float]]) -> list[float]:
        time.sleep(0.2)  # your training step here
        return self.model

    def deserialize_training_input(self, global_model: list[float]) -> list[float]:
        return global_model

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        return training_result

    def on_new_global_model(self, global_model: Optional[list[float]]) -> None:
        self.global_models.received(global_model)
        self.battery, self.answered = battery_level(), False  # a new round


def main(args: argparse.Namespace) -> None:
    model = list(_common.DEMO_MODEL)
    with _common.coordinator(args, simulated=9) as url:
        global_models = _common.GlobalModels(args)
        participant = spawn_participant(
            url, Participant, args=(model, args.min_battery, global_models)
        )
        try:
            global_models.wait()
        finally:
            participant.stop()


def cli() -> argparse.ArgumentParser:
    parser = _common.parser(__doc__)
    parser.add_argument(
        "--min-battery",
        type=int,
        default=20,
        help="train only at this battery level or above, in percent (default: 20)",
    )
    return parser


if __name__ == "__main__":
    _common.run(main, cli())
