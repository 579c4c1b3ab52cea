"""Federated learning of handwritten digits with PyTorch and the asyncio API: each participant
trains a small network on its own part of scikit-learn's digits (8x8 images, 1,797 of them,
shipped with scikit-learn: nothing is downloaded), and the coordinator aggregates their masked
updates round by round. Every round prints the global model's error on validation digits that
no participant trains on; at the end the learning curve is drawn into a PNG.

    pip install -r examples/pytorch_digits/requirements.txt
    python examples/pytorch_digits/digits.py --participants 5 --rounds 8

Every part runs as an asyncio participant (xaynet_sdk.aio) in this process, with a local
coordinator; --part picks parts and --url joins another coordinator (its [model] length must be
the one printed at the start, its [mask] "Prime/F32/B2/M3").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import numpy.typing as npt
import torch
from sklearn.datasets import load_digits  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for examples/_common.py
import _common  # noqa: E402
import _learning_curve  # noqa: E402

from xaynet_sdk import aio  # noqa: E402
from xaynet_sdk.models import ModelLayout  # noqa: E402

#: Weights may go beyond [-1, 1]: the B2 bound allows |scalar * weight| up to 100.
MASK = "Prime/F32/B2/M3"
VALIDATION_SHARE = 0.2


@dataclass(frozen=True)
class Digits:
    x: torch.Tensor  # float32, one row of 64 pixels in [0, 1] per image
    y: torch.Tensor  # int64 labels 0..9

    def __len__(self) -> int:
        return len(self.y)


def split(parts: int, seed: int) -> tuple[Digits, list[Digits]]:
    """The validation digits and one random part of the rest per participant."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    n_validation = int(len(y) * VALIDATION_SHARE)

    def digits(index: npt.NDArray[Any]) -> Digits:
        return Digits(torch.tensor(x[index] / 16.0, dtype=torch.float32), torch.tensor(y[index]))

    rest = np.array_split(order[n_validation:], parts)
    return digits(order[:n_validation]), [digits(part) for part in rest]


def network() -> torch.nn.Module:
    """64 pixels, 32 hidden units, 10 classes; the same initial weights everywhere."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def train(net: torch.nn.Module, data: Digits, epochs: int, seed: int) -> float:
    """Adam (fresh each round) in batches of 32; the last epoch's mean training loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    total = 0.0
    for _ in range(epochs):
        total = 0.0
        for batch in torch.randperm(len(data), generator=generator).split(32):  # type: ignore[no-untyped-call]
            optimizer.zero_grad()
            loss = loss_fn(net(data.x[batch]), data.y[batch])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch)
    return total / len(data)


def evaluate(net: torch.nn.Module, data: Digits) -> tuple[float, float]:
    """The share of misclassified digits, and the mean cross-entropy."""
    net.eval()
    with torch.no_grad():
        logits = net(data.x)
    errors = float((logits.argmax(dim=1) != data.y).float().mean())
    return errors, float(torch.nn.functional.cross_entropy(logits, data.y))


def describe(errors: float, loss: float) -> str:
    return f"{errors:.1%} misclassified, cross-entropy {loss:.3f}"


async def take_part(
    participant: aio.Participant,
    part: int,
    data: Digits,
    epochs: int,
    layout: ModelLayout,
    report: Optional[tuple[_common.GlobalModels, Digits, list[float]]],
) -> None:
    """Each new round: load the global model, (report its error,) train, hand the result in."""
    net = network()
    async with participant:
        async for global_model in participant.global_models():
            if global_model is not None:
                layout.load_into(net, global_model)
            if report is not None:
                rounds, validation, curve = report
                if global_model is None:
                    rounds.received(None)
                else:
                    errors, loss = evaluate(net, validation)
                    curve.append(errors)
                    rounds.received(
                        global_model, f"global model's validation error: {describe(errors, loss)}"
                    )
            seed = participant.driver.round_serial * 1000 + part
            loss = await asyncio.to_thread(train, net, data, epochs, seed)
            _common.say(
                f"part {part} ({len(data)} digits): trained {_common.plural(epochs, 'epoch')},"
                f" training loss {loss:.4f}"
            )
            await participant.set_local_model(layout.flatten(net))


async def run_parts(args: argparse.Namespace, url: str, parts: list[int]) -> list[float]:
    validation, data = split(args.participants, args.seed)
    layout = ModelLayout.of(network())
    rounds = _common.GlobalModels(args)
    curve = [evaluate(network(), validation)[0]]
    _common.say(
        f"the starting model's validation error: {describe(*evaluate(network(), validation))}"
    )
    total = sum(len(data[p]) for p in parts)
    participants = [aio.connect(url, scalar=len(data[p]) / total) for p in parts]
    tasks = [
        asyncio.create_task(
            take_part(
                participant,
                p,
                data[p],
                args.epochs,
                layout,
                (rounds, validation, curve) if p == parts[0] else None,
            )
        )
        for participant, p in zip(participants, parts)
    ]
    _common.say(f"started asyncio participants for parts {', '.join(map(str, parts))}")
    try:
        while not rounds.done:
            await asyncio.wait(tasks, timeout=min(rounds.remaining(), 0.5))
            failed = [t for t in tasks if t.done() and t.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
    finally:
        for participant in participants:
            await participant.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    return curve


def main(args: argparse.Namespace) -> None:
    parts = args.part if args.part else list(range(args.participants))
    if any(not 0 <= p < args.participants for p in parts):
        raise _common.ExampleFailed(f"--part must be below {args.participants}")
    torch.set_num_threads(1)  # the parts train in parallel threads already
    length = ModelLayout.of(network()).length
    _common.say(
        f"model length {length}: for your own coordinator set [model] length = {length}"
        f' and [mask] group_type = "Prime", data_type = "F32", bound_type = "B2"'
    )
    settings: dict[str, Any] = {
        "model_length": length,
        "mask": MASK,
        "sum": 0.25,
        "simulated": max(0, 12 - len(parts)),  # sum tasks only, so that most real ones train
        "simulated_train": False,
        "max_sum_time": 10.0,
        "min_update_time": 1.5,
        "max_update_time": 30.0,
        "max_sum2_time": 10.0,
    }
    if len(parts) < 8:  # too few for rounds of at least 3 updates to be likely
        settings.update(min_update_count=1, insecure_min_counts=True)
    with _common.coordinator(args, **settings) as url:
        curve = asyncio.run(run_parts(args, url, parts))
    print("round  validation error")
    for i, errors in enumerate(curve):
        print(f"{i or 'start':>5}  {errors:>16.1%}")
    path = _learning_curve.plot(
        args.plot,
        [100 * e for e in curve],
        title=f"PyTorch digits, federated: {_common.plural(len(parts), 'participant')}, {MASK}",
        ylabel="validation error (% misclassified)",
        baseline=(90.0, "guessing"),
    )
    _common.say(f"wrote the learning curve to {path}")


def cli() -> argparse.ArgumentParser:
    parser = _common.parser(__doc__, rounds=5)
    parser.add_argument(
        "--participants",
        type=_common.positive_int,
        default=5,
        help="parts of the data (default: 5)",
    )
    parser.add_argument(
        "--part",
        type=int,
        action="append",
        help="a part to run (repeatable; default: every part, each as its own participant)",
    )
    parser.add_argument(
        "--epochs", type=_common.positive_int, default=1, help="of training per round (default: 1)"
    )
    parser.add_argument("--seed", type=int, default=42, help="for the random split")
    parser.add_argument(
        "--plot",
        type=Path,
        default=Path("learning_curve.png"),
        help="write the learning curve to this PNG (default: learning_curve.png)",
    )
    return parser


if __name__ == "__main__":
    _common.run(main, cli())
