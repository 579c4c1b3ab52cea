"""Save and restore an AsyncParticipant: stop() returns its state, and state= brings it back
with the same keys, the same round progress and any local model not sent yet.

Halfway through the rounds the participant is stopped, its state written to --state and read
back, and it is restored from it. At the end the state is saved again: run the example again
to resume that participant. The state holds the participant's private key: keep the file
private (it is written readable by its owner only).

    python examples/restore.py
    python examples/restore.py --state my_participant.json --rounds 6
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Optional

import _common

from xaynet_sdk import AsyncParticipant, spawn_async_participant

#: Next to this script, and ignored by git.
STATE = Path(__file__).resolve().with_name("participant_state.json")


def save_state(state: list[int], path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also if the file existed: it holds the private key
    with os.fdopen(fd, "w") as file:
        json.dump(state, file)


def load_state(path: Path) -> Optional[list[int]]:
    return json.loads(path.read_text()) if path.exists() else None


def describe(participant: AsyncParticipant) -> tuple[str, bytes, str]:
    """Its public key (its identity), its round (the round's seed) and its phase."""
    inner = participant.xaynet_participant
    return inner.public_key.hex()[:16], inner.round_params.seed, inner.phase


def main(args: argparse.Namespace) -> None:
    with _common.coordinator(args, simulated=9) as url:
        global_models = _common.GlobalModels(args)
        state = load_state(args.state)
        participant, new_global_model = spawn_async_participant(url, state=state)
        key, _, _ = describe(participant)
        origin = f"restored from {args.state}" if state else "a new participant"
        _common.say(f"participant {key}...: {origin}")
        restore_after = max(1, args.rounds // 2)
        restored = False
        current_round = b""
        try:
            while not global_models.done:
                if not new_global_model.wait(min(global_models.remaining(), 1.0)):
                    continue
                global_model = participant.get_global_model()
                _, seed, _ = describe(participant)
                if seed == current_round:
                    continue  # a restored participant fetches its round's model again
                current_round = seed
                global_models.received(global_model)
                participant.set_local_model(list(_common.DEMO_MODEL))
                if not restored and restore_after <= global_models.count < args.rounds:
                    participant, new_global_model = stop_and_restore(participant, url, args.state)
                    restored = True
        finally:
            if not participant.xaynet_participant.closed:  # not stopped yet
                save_state(participant.stop(), args.state)
        _common.say(f"saved the participant in {args.state}: run again to resume it")


def stop_and_restore(
    participant: AsyncParticipant, url: str, path: Path
) -> tuple[AsyncParticipant, threading.Event]:
    deadline = time.monotonic() + 1.0
    while describe(participant)[2] == "NewRound" and time.monotonic() < deadline:
        time.sleep(0.05)  # let it take up its task for this round first
    before = describe(participant)
    state = participant.stop()
    save_state(state, path)
    _common.say(f"stopped the participant in the {before[2]} phase; saved its state to {path}")
    participant, new_global_model = spawn_async_participant(url, state=load_state(path))
    after = describe(participant)
    if after[0] != before[0]:
        participant.stop()
        raise _common.ExampleFailed(f"the restored participant has a new key {after[0]}...")
    same_round = "the same round" if after[1] == before[1] else "a new round"
    _common.say(
        f"restored the participant: the same public key {after[0]}..., {same_round},"
        f" the {after[2]} phase"
    )
    return participant, new_global_model


def cli() -> argparse.ArgumentParser:
    parser = _common.parser(__doc__, rounds=4)
    parser.add_argument(
        "--state",
        type=Path,
        default=STATE,
        help=f"where to keep the state (default: {STATE})",
    )
    return parser


if __name__ == "__main__":
    _common.run(main, cli())
