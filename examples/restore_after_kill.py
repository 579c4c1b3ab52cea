"""A participant killed mid-round comes back from its state file (``state_file=``).

On a phone the operating system ends an app with SIGKILL: no ``stop()``, no chance to save.
With ``state_file=`` the participant keeps its state (keys, round progress, local model) in a
file, written atomically at every step, and resumes from it when started again.

This script runs the participant in a child process. The first child kills itself with
SIGKILL in the middle of a round (while its message, already on file, is being sent, or while
a sum participant waits for the seeds); the script then starts a second child, which resumes
from the file with the same public key, in the same round and phase (if that round is still
on), never sends a different message in that round, and takes part in --rounds rounds. The
file may be one step behind the killed process (a step is written when its tick ends, and a
message is always on file before it is sent), so the resumed phase can be an earlier one of
the same round. Run the script again: it resumes the same participant once more. The file
holds the private key (mode 0600).

    python examples/restore_after_kill.py
    python examples/restore_after_kill.py --state my_participant.state --rounds 4
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import _common

from xaynet_sdk import InternalParticipant, ParticipantABC, spawn_participant

#: Next to this script, and ignored by git.
STATE = Path(__file__).resolve().with_name("participant.state")
#: Phases in the middle of a round, where the first child kills itself.
MID_ROUND = ("Sending", "Sum2")


class Demo(ParticipantABC):
    """Trains the demo model and reports the global models it gets."""

    def __init__(self, global_models: Optional[_common.GlobalModels]) -> None:
        self.global_models = global_models

    def deserialize_training_input(self, global_model: list[float]) -> list[float]:
        return global_model

    def train_round(self, training_input: Optional[list[float]]) -> list[float]:
        return list(_common.DEMO_MODEL)

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        return training_result

    def on_new_global_model(self, global_model: Optional[list[float]]) -> None:
        if self.global_models is not None:
            self.global_models.received(global_model)


def where(handle: InternalParticipant) -> str:
    """The participant's round (the first bytes of its seed) and phase."""
    inner = handle.xaynet_participant
    return f"round {inner.round_params.seed.hex()[:8]}, phase {inner.phase}"


def child(args: argparse.Namespace) -> None:
    """One life of the participant: ``--kill`` ends it with SIGKILL mid-round."""
    existed = args.state.exists()
    global_models = None if args.kill else _common.GlobalModels(args)
    handle = spawn_participant(args.url, Demo, args=(global_models,), state_file=args.state)
    inner = handle.xaynet_participant
    origin = f"resumed from {args.state}" if existed else f"a new participant, kept in {args.state}"
    _common.say(f"participant {inner.public_key.hex()[:16]}...: {origin}, {where(handle)}")
    if not args.kill:
        global_models.wait()  # type: ignore[union-attr]
        handle.stop()
        return
    deadline = time.monotonic() + args.timeout
    while inner.phase not in MID_ROUND:
        if time.monotonic() > deadline:
            raise _common.ExampleFailed("the participant never got to the middle of a round")
        time.sleep(0.005)
    _common.say(f"killing myself with SIGKILL: {where(handle)}")
    os.kill(os.getpid(), signal.SIGKILL)


def main(args: argparse.Namespace) -> None:
    with _common.coordinator(args, simulated=6) as url:
        first = args.state.exists()
        runs = [] if first else [["--kill"]]
        for extra in [*runs, []]:
            command = [
                sys.executable,
                __file__,
                "--child",
                "--url",
                url,
                "--state",
                str(args.state),
            ]
            command += ["--rounds", str(args.rounds), "--timeout", str(args.timeout), *extra]
            proc = subprocess.run(command, timeout=args.timeout + 30)
            if extra:
                if proc.returncode != -signal.SIGKILL:
                    raise _common.ExampleFailed(f"the first child ended with {proc.returncode}")
                _common.say(f"the participant was killed; {args.state} is what it left")
            elif proc.returncode != 0:
                raise _common.ExampleFailed(f"the resumed participant failed ({proc.returncode})")


def cli() -> argparse.ArgumentParser:
    parser = _common.parser(__doc__, rounds=2)
    parser.add_argument(
        "--state",
        type=Path,
        default=STATE,
        help=f"the participant's state file (default: {STATE})",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kill", action="store_true", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    parsed = cli().parse_args()
    _common.run(child if parsed.child else main, cli())
