"""Bad input from the coordinator that the original participant cannot survive (real HTTP).

* A global model whose weights have no value in the round's data type: the original's
  ``global_model()`` loops forever on an F32 ratio whose numerator and denominator both
  exceed the f32 range (docs/PROTOCOL.md 8.3). Here: ``GlobalModelDataTypeMisMatch`` at once,
  and the threaded participants log it once and retry with the poll backoff.
* Round parameters with a NaN probability: the original takes every poll for a new round
  (NaN never equals itself), so it resets its backoff and refetches the model on every poll.
  Here: logged once, no round, backoff; the round starts when the parameters are valid.
  Probabilities outside [0, 1]: the original's rule (above 1 everyone, below 0 no one),
  one warning, one round.
* A coordinator that accepts connections and never answers: the original hangs forever
  (holding the GIL). Here every call returns within the timeout, ``global_model()`` raises
  ``GlobalModelUnavailable``, and the threads poll with backoff and log once.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fault_servers import CountingTransport, LogCapture, SilentServer, max_polls  # noqa: E402
from participant_fakes import HttpCoordinator, MiniCoordinator  # noqa: E402

from xaynet_sdk import (  # noqa: E402
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    InternalParticipant,
    Participant,
    ParticipantABC,
    spawn_async_participant,
)
from xaynet_sdk.codec.bincode import encode_model  # noqa: E402

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.3
WINDOW = 1.5


class Recorder(ParticipantABC):
    def __init__(self) -> None:
        self.models: list[Any] = []
        self.trained = 0

    def train_round(self, training_input: Optional[Any]) -> Any:
        self.trained += 1
        return [0.5, 0.5, 0.5]

    def serialize_training_result(self, training_result: Any) -> Any:
        return training_result

    def deserialize_training_input(self, global_model: Any) -> Any:
        return global_model

    def on_new_global_model(self, global_model: Optional[Any]) -> None:
        self.models.append(global_model)


def spawn_counted(url: str) -> tuple[InternalParticipant, CountingTransport]:
    transport = CountingTransport(url, timeout=TIMEOUT)
    participant = InternalParticipant(url, Recorder, transport=transport)
    participant.start()
    return participant, transport


def timed(fn: Any, *args: Any) -> float:
    start = time.monotonic()
    fn(*args)
    return time.monotonic() - start


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    with LogCapture() as capture:
        yield capture


# ----------------------------------------------------------------------------- global model


UNCONVERTIBLE = [
    # (mask config, the bad ratio, what the error names); the original hangs on the first two
    pytest.param("Prime/F32/B0/M3", (2**129, 2**130), "no finite F32 value", id="f32-inf/inf"),
    pytest.param("Prime/F64/B0/M3", (2**1100, 2**1101), "no finite F64 value", id="f64-inf/inf"),
    pytest.param("Prime/F32/B0/M3", (2**200, 3), "out of the range of F32", id="f32-range"),
    pytest.param("Prime/I32/B0/M3", (2**40, 1), "out of the range of I32", id="i32-range"),
]


@pytest.mark.parametrize(("config", "ratio", "detail"), UNCONVERTIBLE)
def test_a_global_model_without_a_value_raises_at_once(
    config: str, ratio: tuple[int, int], detail: str, logs: LogCapture
) -> None:
    mini = MiniCoordinator(config=config, model_length=3, sum_prob=0.0, update_prob=0.0)
    mini.model_body = encode_model([(1, 2), ratio, (3, 4)])
    with HttpCoordinator(mini) as http:
        p = Participant(http.url, timeout=TIMEOUT)
        p.tick()
        assert p.new_global_model()
        start = time.monotonic()
        with pytest.raises(GlobalModelDataTypeMisMatch, match=detail) as e:
            p.global_model()
        assert time.monotonic() - start < 5.0  # a loaded machine
        assert "weight 1" in str(e.value)
        assert not p.new_global_model()  # it was fetched: cleared, as in the original
        p.tick()  # and the participant goes on
        assert p.round_serial == 1
        p.save()

        ap, notifier = spawn_async_participant(http.url, timeout=TIMEOUT)
        try:
            assert notifier.wait(5)
            with pytest.raises(GlobalModelDataTypeMisMatch, match=detail):
                ap.get_global_model()
            assert ap.is_alive()
        finally:
            ap.stop()

        # The callback participant logs once and refetches with the poll backoff.
        participant, transport = spawn_counted(http.url)
        try:
            time.sleep(0.3)
            start = time.monotonic()
            time.sleep(WINDOW)
            end = time.monotonic()
            fetches = [r for r in transport.between(start, end) if r.endpoint == "model"]
            assert 1 <= len(fetches) <= max_polls(end - start)
            assert participant.is_alive()
        finally:
            participant.stop()
    warnings = [r for r in logs.participant_records() if "failed to get global model" in r.message]
    assert len(warnings) == 1, warnings


# ----------------------------------------------------------------------------- round parameters


@pytest.mark.parametrize(
    ("sum_prob", "update_prob"),
    [(math.nan, 0.5), (0.5, math.nan), (math.nan, math.nan)],
    ids=["sum", "update", "both"],
)
def test_nan_probabilities_start_no_round(
    sum_prob: float, update_prob: float, logs: LogCapture
) -> None:
    mini = MiniCoordinator(model_length=3, sum_prob=sum_prob, update_prob=update_prob)
    with HttpCoordinator(mini) as http:
        p = Participant(http.url, timeout=TIMEOUT)
        for _ in range(5):
            p.tick()
            assert not p.made_progress()  # the original: progress and a new round each time
        assert p.round_serial == 0 and not p.new_global_model() and p.task() == 0

        participant, transport = spawn_counted(http.url)
        try:
            start = time.monotonic()
            time.sleep(WINDOW)
            end = time.monotonic()
            requests = transport.between(start, end)
            assert len(requests) <= max_polls(end - start), requests
            assert {r.endpoint for r in requests} == {"params"}  # no model refetch per poll
            nan_warnings = [r for r in logs.participant_records() if "NaN" in r.message]
            assert len(nan_warnings) == 2, nan_warnings  # once per participant
            # Valid parameters: the round starts, once.
            mini.new_round(sum_prob=0.5, update_prob=0.5)
            p.tick()
            assert p.made_progress() and p.round_serial == 1
            deadline = time.monotonic() + 5
            while participant.xaynet_participant.round_serial == 0:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.5)
            assert participant.xaynet_participant.round_serial == 1
        finally:
            participant.stop()
            p.save()


@pytest.mark.parametrize(
    ("sum_prob", "update_prob", "task"),
    [
        (1.5, 0.5, 1),
        (math.inf, 0.0, 1),
        (-0.5, 2.0, 2),
        (-math.inf, math.inf, 2),
        (-1.0, -1.0, 0),
    ],
)
def test_out_of_range_probabilities_follow_the_original(
    sum_prob: float, update_prob: float, task: int, logs: LogCapture
) -> None:
    mini = MiniCoordinator(model_length=3, sum_prob=sum_prob, update_prob=update_prob)
    with HttpCoordinator(mini) as http:
        p = Participant(http.url, timeout=TIMEOUT)
        for _ in range(6):
            p.tick()
        assert p.round_serial == 1  # one round, not one per poll
        assert p.task() == task
        p.save()
    warnings = [r for r in logs.participant_records() if "outside [0, 1]" in r.message]
    assert len(warnings) == 1, warnings


# ----------------------------------------------------------------------------- silence


def test_a_coordinator_that_never_answers(logs: LogCapture) -> None:
    with SilentServer() as silent:
        p = Participant(silent.url, timeout=TIMEOUT)
        # Bounded by TIMEOUT, plus slack for a loaded machine: far below the default 60 s.
        assert timed(p.tick) < TIMEOUT + 5.0
        assert not p.made_progress()
        start = time.monotonic()
        with pytest.raises(GlobalModelUnavailable, match="did not answer within the timeout"):
            p.global_model()
        assert time.monotonic() - start < TIMEOUT + 5.0
        assert isinstance(p.save(), list)

        participant, transport = spawn_counted(silent.url)
        try:
            time.sleep(0.2)
            start = time.monotonic()
            time.sleep(2 * WINDOW)
            end = time.monotonic()
            polls = transport.between(start, end)
            # Each request waits out the timeout, then the backoff waits: fewer polls still.
            assert 1 <= len(polls) <= max_polls(end - start, request_time=TIMEOUT), polls
            assert participant.is_alive()
            stop_start = time.monotonic()
            assert isinstance(participant.stop(), list)
            assert time.monotonic() - stop_start < 2.5  # never waits for the network
        finally:
            if not participant.xaynet_participant.closed:
                participant.stop()
    timeouts = [r for r in logs.participant_records() if "did not answer" in r.message]
    # Once per participant (two) and endpoint: /params, and /model for the threaded one.
    assert {r.message.split(" for ")[1].split(";")[0] for r in timeouts} <= {
        "GET /params",
        "GET /model",
    }
    assert len(timeouts) <= 3, [r.message for r in timeouts]
    assert not [r for r in logs.participant_records(level=logging.ERROR)]
