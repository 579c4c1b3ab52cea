"""Several ParticipantABCs in one process, each with its own model. Participant p sends
[p/N, p/N, p/N, p/N], so each global model is the mean of p/N over that round's update
participants.

    python examples/multiple_participants.py --participants 10
    python examples/multiple_participants.py --url http://127.0.0.1:8081 --participants 5

With ``--simulate``, hundreds of them run in seconds: ``xaynet_sdk.simulation`` runs the same
kind of participant in a few worker processes, many per thread, and reports each round
(without ``--url`` it starts a coordinator sized for them):

    python examples/multiple_participants.py --simulate --participants 300
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Optional

import _common

from xaynet_sdk import ParticipantABC, spawn_participant
from xaynet_sdk.simulation import RoundOutcome, embedded_settings, run_simulation


class Participant(ParticipantABC):
    def __init__(
        self, p_id: int, model: list[float], global_models: Optional[_common.GlobalModels]
    ) -> None:
        self.p_id = p_id
        self.model = model
        self.global_models = global_models  # only participant 1 reports the rounds

    def deserialize_training_input(self, global_model: list[float]) -> list[float]:
        return global_model

    def train_round(self, training_input: Optional[list[float]]) -> list[float]:
        _common.say(f"participant {self.p_id}: training")
        time.sleep(0.2)  # your training step here
        return self.model

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        return training_result

    def on_new_global_model(self, global_model: Optional[list[float]]) -> None:
        if self.global_models is not None:
            self.global_models.received(global_model)


class SimulatedParticipant(ParticipantABC):
    """The same participant for the simulation runner, which builds it from its index (0 to
    N-1) in a worker process: participant p = index + 1 sends [p/N] * 4, without training."""

    def __init__(self, n: int, index: int) -> None:
        self.model = [(index + 1) / n] * 4

    def deserialize_training_input(self, global_model: list[float]) -> list[float]:
        return global_model

    def train_round(self, training_input: Optional[list[float]]) -> list[float]:
        return self.model

    def serialize_training_result(self, training_result: list[float]) -> list[float]:
        return training_result


def simulate(args: argparse.Namespace) -> None:
    n = args.participants

    completed = 0

    def report(o: RoundOutcome) -> None:
        nonlocal completed
        if o.completed is False:
            # A round fails when no participant is eligible for the sum task (with about 5
            # expected among N, that is about one round in 150): the coordinator waits for
            # the Sum phase's maximum time, then starts the next round.
            _common.say(
                f"round failed ({o.sum} sum and {o.update} update participants): {o.failure}"
            )
            return
        completed += 1
        accepted = f", {o.accepted_updates} accepted" if o.accepted_updates is not None else ""
        _common.say(
            f"round {completed}/{args.rounds}: {o.sum} sum and {o.update} update participants,"
            f" {o.sent_updates} updates sent{accepted}; {o.seconds:.1f} s"
        )

    _common.say(f"simulating {n} participants" + (f" on {args.url}" if args.url else ""))
    result = run_simulation(
        functools.partial(SimulatedParticipant, n),  # picklable: a class and a number
        participants=n,
        rounds=args.rounds,
        url=args.url,
        settings=None if args.url else embedded_settings(n, 4, min_update_time=1.0),
        on_round=report,
        timeout=args.timeout,
    )
    _common.say(
        f"{n} participants ran in {result.workers} worker processes, all started"
        f" {result.startup_seconds:.2f} s after the call"
    )


def main(args: argparse.Namespace) -> None:
    if args.simulate:
        simulate(args)
        return
    n = args.participants
    # A local coordinator gets simulated participants only if there are fewer than 10 here.
    with _common.coordinator(args, simulated=max(0, 10 - n)) as url:
        global_models = _common.GlobalModels(args)
        participants = [
            spawn_participant(
                url,
                Participant,
                args=(p, [p / n] * 4, global_models if p == 1 else None),
            )
            for p in range(1, n + 1)
        ]
        _common.say(f"started {n} participants in this process")
        try:
            global_models.wait()
        finally:
            for participant in participants:
                participant.stop()


def cli() -> argparse.ArgumentParser:
    parser = _common.parser(__doc__)
    parser.add_argument(
        "--participants",
        type=_common.positive_int,
        default=10,
        help="how many participants (default: 10)",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="run them with xaynet_sdk.simulation: hundreds in seconds",
    )
    return parser


if __name__ == "__main__":
    _common.run(main, cli())
