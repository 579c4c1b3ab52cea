"""Federated learning of house prices with Keras: each participant trains the original
example's regression network on its own part of the Ames housing data, and the coordinator
aggregates their masked updates round by round. Every round prints the global model's error
on validation houses that no participant trains on; at the end the learning curve is drawn
into a PNG (--plot, default learning_curve.png in the data directory).

    pip install -r examples/keras_house_prices/requirements.txt
    python examples/keras_house_prices/house_prices.py split-data --number-of-participants 10
    python examples/keras_house_prices/house_prices.py run-participant --rounds 10

run-participant runs every part in this process, with a local coordinator; --part picks parts
and --url joins another coordinator (its [model] length must be the one split-data prints, and
its [mask] bound_type "B2").
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, Optional

import data
import numpy as np
import numpy.typing as npt
from regressor import Regressor, model_length

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for examples/_common.py
import _common  # noqa: E402
import _learning_curve  # noqa: E402

from xaynet_sdk import InternalParticipant, ParticipantABC, spawn_participant  # noqa: E402

#: Weights go beyond [-1, 1]: the B2 bound allows |scalar * weight| up to 100.
MASK = "Prime/F32/B2/M3"
#: Where split-data writes and run-participant reads by default (ignored by git).
DATA = Path(__file__).resolve().with_name("data")

Weights = npt.NDArray[np.float32]


class Participant(ParticipantABC):
    """One part of the data and a Keras network, built in the participant's thread."""

    def __init__(
        self,
        directory: Path,
        part: int,
        epochs: int,
        global_models: Optional[_common.GlobalModels],
        curve: list[tuple[float, float]],
    ) -> None:
        self.part = part
        self.epochs = epochs
        self.meta = data.load_meta(directory)
        self.houses = data.load(directory, f"part_{part}", self.meta)
        self.regressor = Regressor(len(self.meta.features))
        # The reporting participant evaluates each global model on the validation houses.
        self.global_models = global_models
        self.curve = curve
        self.validation = data.load(directory, "validation", self.meta) if global_models else None
        if self.validation is not None:
            rmse, mae = self.evaluate()
            _common.say(f"the starting model's validation error: {describe(rmse, mae)}")
            self.curve.append((rmse, mae))

    def evaluate(self) -> tuple[float, float]:
        """The network's RMSE of log prices, and mean absolute error in dollars."""
        assert self.validation is not None
        predicted = self.regressor.predict(self.validation.x)
        rmse = float(np.sqrt(np.mean((predicted - self.validation.y) ** 2)) * self.meta.target_std)
        prices = self.meta.price(self.validation.y)
        mae = float(np.mean(np.abs(self.meta.price(predicted) - prices)))
        return rmse, mae

    def deserialize_training_input(self, global_model: Weights) -> Weights:
        return global_model  # spawned with numpy=True: already a float32 array

    def train_round(self, training_input: Optional[Weights]) -> Weights:
        if training_input is not None:  # None before the first round: the common start
            self.regressor.set_weights(training_input)
        loss = self.regressor.train(self.houses.x, self.houses.y, self.epochs)
        _common.say(
            f"part {self.part} ({len(self.houses)} houses): trained"
            f" {_common.plural(self.epochs, 'epoch')},"
            f" training loss {loss:.4f}"
        )
        return self.regressor.get_weights()

    def serialize_training_result(self, training_result: Weights) -> Weights:
        return training_result

    def on_new_global_model(self, global_model: Optional[Weights]) -> None:
        if self.global_models is None:
            return
        if global_model is None or self.validation is None:
            self.global_models.received(global_model)
            return
        self.regressor.set_weights(global_model)
        rmse, mae = self.evaluate()
        self.curve.append((rmse, mae))
        self.global_models.received(
            global_model, f"global model's validation error: {describe(rmse, mae)}"
        )


def describe(rmse: float, mae: float) -> str:
    return f"RMSE {rmse:.4f} of log(price), mean absolute error ${mae:,.0f}"


def split_data(args: argparse.Namespace) -> None:
    meta = data.split(args.data_directory, args.number_of_participants, args.by_price, args.seed)
    n, length = len(meta.features), model_length(len(meta.features))
    _common.say(
        f"{args.data_directory}: {len(meta.part_sizes)} parts of {min(meta.part_sizes)} to"
        f" {max(meta.part_sizes)} houses, and the validation houses; {n} features"
    )
    _common.say(
        f"model length 144 * {n} + 11917 = {length}: for your own coordinator set"
        f' [model] length = {length} and [mask] bound_type = "B2"'
    )


def run_participant(args: argparse.Namespace) -> None:
    meta = data.load_meta(args.data_directory)
    parts = args.part if args.part else list(range(len(meta.part_sizes)))
    if any(not 0 <= p < len(meta.part_sizes) for p in parts):
        raise _common.ExampleFailed(f"--part must be below {len(meta.part_sizes)}")
    import keras  # noqa: F401 - it takes seconds: import it before the rounds start
    import torch

    if len(parts) > 1:
        torch.set_num_threads(1)  # the parts train in parallel threads already
    total = sum(meta.part_sizes)
    batches = sum(math.ceil(meta.part_sizes[p] / 32) for p in parts)
    settings = local_settings(meta, len(parts), batches * args.epochs)
    with _common.coordinator(args, **settings) as url:
        global_models = _common.GlobalModels(args)
        curve: list[tuple[float, float]] = []
        participants: list[InternalParticipant] = []
        try:
            for p in parts:
                reporter = global_models if p == parts[0] else None
                participants.append(
                    spawn_participant(
                        url,
                        Participant,
                        args=(args.data_directory, p, args.epochs, reporter, curve),
                        scalar=meta.part_sizes[p] / total,  # weighted by number of houses
                        numpy=True,
                    )
                )
            _common.say(f"started participants for parts {', '.join(map(str, parts))}")
            global_models.wait()
        finally:
            for participant in participants:
                participant.stop()
    print("round  validation RMSE of log(price)  mean absolute error")
    for i, (rmse, mae) in enumerate(curve):
        print(f"{i or 'start':>5}  {rmse:>29.4f}  {f'${mae:,.0f}':>19}")
    if curve:
        path = _learning_curve.plot(
            args.plot or args.data_directory / "learning_curve.png",
            [rmse for rmse, _ in curve],
            title=f"Keras house prices, federated: {_common.plural(len(parts), 'participant')},"
            f" {MASK}",
            ylabel="validation RMSE of log(price)",
            baseline=(meta.target_std, "predicting the mean price"),
        )
        _common.say(f"wrote the learning curve to {path}")


def local_settings(meta: data.Meta, participants: int, steps: int) -> dict[str, Any]:
    """How this example's local coordinator is configured for its participants."""
    settings: dict[str, Any] = {
        "model_length": model_length(len(meta.features)),
        "mask": MASK,
        "sum": 0.25,
        # Simulated participants that take sum tasks only, so that most real ones train.
        "simulated": max(0, 15 - participants),
        "simulated_train": False,
        # Participants idle through long rounds poll less often (up to every 10 s): give the
        # Sum phase time. The Update phase waits for everyone's training: all parts' batches
        # take 4 to 10 ms each here (they share the interpreter).
        "max_sum_time": 10.0,
        "min_update_time": 2.0 + 0.01 * steps,
        "max_update_time": 30.0 + 0.02 * steps,
        "max_sum2_time": 10.0,
    }
    if participants < 8:  # too few for rounds of at least 3 updates to be likely
        settings.update(min_update_count=1, insecure_min_counts=True)
    return settings


def cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split-data", help="prepare the data: one part per participant")
    split.add_argument("--data-directory", type=Path, default=DATA, help=f"default: {DATA}")
    split.add_argument("--number-of-participants", type=_common.positive_int, default=10)
    split.add_argument(
        "--by-price",
        action="store_true",
        help="give each participant one price range (default: random houses)",
    )
    split.add_argument("--seed", type=int, default=42, help="for the random split")
    split.set_defaults(verbose=0, main=split_data)
    run = commands.add_parser("run-participant", help="train federated, round by round")
    run.add_argument("--data-directory", type=Path, default=DATA, help=f"default: {DATA}")
    run.add_argument(
        "--part",
        type=int,
        action="append",
        help="a part to run (repeatable; default: every part, each as its own participant)",
    )
    run.add_argument(
        "--epochs", type=_common.positive_int, default=1, help="of training per round (default: 1)"
    )
    run.add_argument(
        "--plot",
        type=Path,
        help="write the learning curve to this PNG (default: learning_curve.png in the data"
        " directory)",
    )
    _common.add_arguments(run, rounds=5)
    run.set_defaults(main=run_participant)
    return parser


if __name__ == "__main__":
    _common.run(lambda args: args.main(args), cli())
