"""What every example shares: the command line, a local coordinator, printing, exit codes.

Each example runs as is. Without ``--url`` it starts a coordinator inside its own process
(:func:`coordinator`), plus, where the example alone cannot fill a round, a few simulated
participants: a round needs at least one sum participant and three update participants,
and each participant draws its task at random every round. With ``--url`` it joins that
coordinator and starts nothing else.

Every example stops by itself after ``--rounds`` rounds (:class:`GlobalModels`) and exits
with 0, or with 1 on failure (:func:`run`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import numpy as np

from xaynet_sdk import InternalParticipant, ParticipantABC, XaynetError, spawn_participant
from xaynet_sdk.coordinator import LocalCoordinator, Settings
from xaynet_sdk.driver import GlobalModel

#: The model of the original examples; the simulated participants send it plus some noise.
DEMO_MODEL = (0.1, 0.2, 0.345, 0.3)

#: Phase times and selection of the local coordinator: every participant is a sum participant
#: with probability 0.35, otherwise an update participant. A phase ends once its minimum time
#: is over and its minimum count is reached (1 sum, 3 updates, 1 sum2, as in the original's
#: configuration), so a round takes about two seconds; a phase that cannot reach its count
#: fails the round after its maximum time, and the next round starts.
LOCAL_PET: dict[str, Any] = {
    "sum": 0.35,
    "update": 1.0,
    "min_sum_time": 0.5,
    "min_update_time": 1.0,
    "min_sum2_time": 0.5,
    "max_sum_time": 3.0,
    "max_update_time": 3.0,
    "max_sum2_time": 3.0,
}

_start = time.monotonic()
_print_lock = threading.Lock()


class ExampleFailed(Exception):
    """The example did not do what it should; :func:`run` prints it and exits with 1."""


def say(message: str) -> None:
    """Print one line with the seconds since the start (from any thread)."""
    with _print_lock:
        print(f"[{time.monotonic() - _start:5.1f}s] {message}", flush=True)


def show(model: Optional[GlobalModel], limit: int = 4) -> str:
    """A short text for a model: its first weights, rounded."""
    if model is None:
        return "none"
    values = ", ".join(f"{float(w):.4f}" for w in list(model[:limit]))
    more = f", ... ({len(model)} weights)" if len(model) > limit else ""
    return f"[{values}{more}]"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


# -- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, rounds: int = 3) -> None:
    """Add ``--url``, ``--rounds``, ``--timeout`` and ``--verbose`` to ``parser``."""
    parser.add_argument(
        "--url",
        help="join the coordinator at this URL (default: start a local one in this process)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=rounds,
        help=f"stop after this many rounds with a global model (default: {rounds})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="fail if they have not come after this many seconds (default: 300)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what the SDK and the local coordinator do (-vv: debug)",
    )


def parser(doc: Optional[str], rounds: int = 3) -> argparse.ArgumentParser:
    """The example's parser: its docstring as the description, plus the shared options."""
    result = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(result, rounds)
    return result


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def setup_logging(verbose: int) -> None:
    """Warnings and errors on stderr; ``-v`` adds the SDK's info messages, ``-vv`` debug."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if verbose:
        logging.getLogger("xaynet_sdk").setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
    else:  # the local coordinator's round failures are printed by coordinator() already
        logging.getLogger("xaynet_sdk.coordinator").setLevel(logging.ERROR)


def run(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Parse the command line, run ``main(args)`` and exit: 0 done, 1 failed, 130 interrupted."""
    args = parser.parse_args()
    setup_logging(args.verbose)
    try:
        main(args)
    except ExampleFailed as e:
        say(f"FAILED: {e}")
        sys.exit(1)
    except XaynetError as e:
        say(f"FAILED: {type(e).__name__}: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
    say("done")
    sys.exit(0)


# -- counting rounds ---------------------------------------------------------------------------


class GlobalModels:
    """Counts the rounds a participant sees and prints their global models.

    Call :meth:`received` with each new round's global model (``on_new_global_model`` of a
    ``ParticipantABC``, or ``get_global_model()`` of an ``AsyncParticipant``); it prints
    ``round k/N: global model [...]``. Rounds that start before any global model exists are
    not counted. :meth:`wait` blocks until N rounds came, or fails at ``--timeout``.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.wanted: int = args.rounds
        self.timeout: float = args.timeout
        self.deadline: float = time.monotonic() + args.timeout
        self.count = 0
        self.latest: Optional[GlobalModel] = None
        self._done = threading.Event()
        self._lock = threading.Lock()

    def received(self, global_model: Optional[GlobalModel], summary: Optional[str] = None) -> None:
        """A new round started with this global model (None: the coordinator has none yet).

        Prints ``summary``, or by default the model's first weights.
        """
        with self._lock:
            if global_model is None:
                say("new round: no global model yet (no round has completed so far)")
                return
            if self._done.is_set():
                return
            self.count += 1
            same = self.latest is not None and np.array_equal(self.latest, global_model)
            self.latest = global_model
            text = summary if summary is not None else f"global model {show(global_model)}"
            extra = " (unchanged)" if same else ""
            say(f"round {self.count}/{self.wanted}: {text}{extra}")
            if self.count >= self.wanted:
                self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def remaining(self) -> float:
        """Seconds left before ``--timeout``; raises :class:`ExampleFailed` when none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ExampleFailed(
                f"only {self.count} of {self.wanted} rounds after {self.timeout:g} s"
                " (is the coordinator running? -v shows what the participant does)"
            )
        return left

    def wait(self) -> None:
        """Block until ``--rounds`` rounds came; :class:`ExampleFailed` at the timeout."""
        while not self._done.wait(min(self.remaining(), 1.0)):
            pass


# -- the local coordinator ---------------------------------------------------------------------


class _Simulated(ParticipantABC):
    """A simulated participant: sends its own fixed model whenever it is an update participant,
    or, without a model, only takes sum tasks (it declines the update task)."""

    def __init__(self, model: Optional[list[float]]) -> None:
        self.model = model

    def participate_in_update_task(self) -> bool:
        return self.model is not None

    def deserialize_training_input(self, global_model: list[float]) -> list[float]:
        return global_model

    def train_round(self, training_input: Optional[list[float]]) -> Optional[list[float]]:
        return self.model

    def serialize_training_result(
        self, training_result: Optional[list[float]]
    ) -> Optional[list[float]]:
        return training_result


class _RoundReporter(threading.Thread):
    """Prints how each round of the local coordinator ended."""

    def __init__(self, coord: LocalCoordinator) -> None:
        super().__init__(daemon=True, name="example-round-reporter")
        self.coord = coord
        self.stopping = threading.Event()

    def run(self) -> None:
        reported = 0
        while not self.stopping.is_set():
            try:
                self.coord.wait_for_round(reported + 2, timeout=0.5)
            except TimeoutError:
                continue
            for record in self.coord.history:
                if record.round_id <= reported:
                    continue
                reported = record.round_id
                if record.completed:
                    say(
                        f"coordinator: round {record.round_id} completed in"
                        f" {record.duration:.1f} s: global model aggregated from"
                        f" {plural(record.update_count, 'masked update')}"
                        f" ({plural(record.sum_count, 'sum participant')})"
                    )
                else:
                    say(
                        f"coordinator: round {record.round_id} failed ({record.failure});"
                        " a new round starts"
                    )


@contextlib.contextmanager
def coordinator(
    args: argparse.Namespace,
    *,
    model_length: int = len(DEMO_MODEL),
    mask: str = "Prime/F32/B0/M3",
    simulated: int = 0,
    simulated_train: bool = True,
    **pet: Any,
) -> Iterator[str]:
    """The coordinator URL to use: ``--url``, or a local coordinator's while the block runs.

    For a local coordinator: the mask configuration and model length given, the phase times
    of :data:`LOCAL_PET` (``pet`` overrides them: any keyword of ``Settings.for_tests``), and
    ``simulated`` simulated participants, each sending :data:`DEMO_MODEL` plus noise of its
    own (or, with ``simulated_train=False``, nothing: they only take sum tasks). With
    ``--url``, none of that: the coordinator there has its own configuration.
    """
    if args.url:
        say(f"joining the coordinator at {args.url}")
        yield args.url
        return
    settings = Settings.for_tests(model_length=model_length, mask=mask, **{**LOCAL_PET, **pet})
    helpers: list[InternalParticipant] = []
    with LocalCoordinator(settings) as coord:
        say(
            f"started a local coordinator at {coord.url} ({mask}, model length"
            f" {model_length}); a round needs 1 sum and"
            f" {plural(settings.pet.min_update_count, 'update participant')}"
        )
        if settings.insecure_min_counts:
            say(
                "WARNING: insecure_min_counts: rounds complete with fewer than 3 updates,"
                " whose aggregate reveals them. For demonstrations only"
            )
        reporter = _RoundReporter(coord)
        reporter.start()
        try:
            if simulated:
                rng = np.random.default_rng(0)
                base = np.resize(np.asarray(DEMO_MODEL), model_length)
                for _ in range(simulated):
                    noisy = base + rng.uniform(-0.05, 0.05, model_length)
                    model = noisy.tolist() if simulated_train else None
                    helpers.append(spawn_participant(coord.url, _Simulated, args=(model,)))
                what = "the demo model plus noise" if simulated_train else "sum tasks only"
                say(f"started {simulated} simulated participants ({what})")
            yield coord.url
        except ExampleFailed as e:
            raise ExampleFailed(f"{e}; coordinator: {coord.status()}") from None
        finally:
            reporter.stopping.set()
            for helper in helpers:
                helper.stop()
            reporter.join()
