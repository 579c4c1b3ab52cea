"""A ParticipantABC that only downloads the global model: it never trains (it declines the
update task) and keeps the latest global model, optionally in a JSON file (--save).

    python examples/download_global_model.py --save global_model.json
    python examples/download_global_model.py --url http://127.0.0.1:8081
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import _common

from xaynet_sdk import ParticipantABC, spawn_participant


class Participant(ParticipantABC):
    def __init__(self, global_models: _common.GlobalModels, save: Optional[Path]) -> None:
        self.global_models = global_models
        self.save = save

    def participate_in_update_task(self) -> bool:
        # Asked when selected for the update task: False, so train_round and
        # serialize_training_result are never called.
        _common.say("selected for the update task: declined (this participant only downloads)")
        return False

    def train_round(self, training_input: Optional[list[float]]) -> list[float]:
        raise NotImplementedError

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        raise NotImplementedError

    def deserialize_training_input(self, global_model: list[float]) -> list[float]:
        return global_model

    def on_new_global_model(self, global_model: Optional[list[float]]) -> None:
        if global_model is not None and self.save is not None:
            self.save.write_text(json.dumps(global_model))
        self.global_models.received(global_model)


def main(args: argparse.Namespace) -> None:
    with _common.coordinator(args, simulated=9) as url:
        global_models = _common.GlobalModels(args)
        participant = spawn_participant(url, Participant, args=(global_models, args.save))
        try:
            global_models.wait()
        finally:
            participant.stop()
    if args.save is not None:
        _common.say(f"the latest global model is in {args.save}")


def cli() -> argparse.ArgumentParser:
    parser = _common.parser(__doc__)
    parser.add_argument("--save", type=Path, help="write each global model to this JSON file")
    return parser


if __name__ == "__main__":
    _common.run(main, cli())
