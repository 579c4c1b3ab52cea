"""A basic AsyncParticipant: your own loop fetches each new global model, trains, and sets the
local model, which the participant sends when it is next selected for the update task.

    python examples/hello_world_async.py           # with a local coordinator
    python examples/hello_world_async.py --url http://127.0.0.1:8081 --rounds 5
"""

from __future__ import annotations

import argparse
import time
from typing import Optional

import _common

from xaynet_sdk import spawn_async_participant
from xaynet_sdk.driver import GlobalModel


def train(global_model: Optional[GlobalModel]) -> list[float]:
    time.sleep(0.2)  # your training step here
    _common.say("trained: the local model waits for the next update task")
    return list(_common.DEMO_MODEL)


def main(args: argparse.Namespace) -> None:
    with _common.coordinator(args, simulated=9) as url:
        global_models = _common.GlobalModels(args)
        participant, new_global_model = spawn_async_participant(url)
        try:
            while not global_models.done:
                # Set by the participant when a new round starts; get_global_model() clears it.
                if not new_global_model.wait(min(global_models.remaining(), 1.0)):
                    continue
                global_model = participant.get_global_model()  # None before the first round
                global_models.received(global_model)
                participant.set_local_model(train(global_model))
        finally:
            participant.stop()


if __name__ == "__main__":
    _common.run(main, _common.parser(__doc__))
