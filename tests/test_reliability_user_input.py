"""Bad input from the user: the documented exception at the call, a message that says what to
do, and a participant that keeps running (real HTTP, local coordinator or fake one)."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fault_servers import LogCapture  # noqa: E402
from participant_fakes import HttpCoordinator, MiniCoordinator  # noqa: E402

from xaynet_sdk import (  # noqa: E402
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
    Participant,
    ParticipantABC,
    ParticipantInit,
    ParticipantRestore,
    UninitializedParticipant,
    spawn_async_participant,
    spawn_participant,
)
from xaynet_sdk.coordinator import LocalCoordinator, Settings  # noqa: E402

pytestmark = pytest.mark.timeout(90)

F32_CASES: list[tuple[str, Any, type[Exception], str]] = [
    ("too short", [0.5, 0.5, 0.5], LocalModelLengthMisMatch, "give exactly 4 weights"),
    ("too long", np.zeros(5, np.float32), LocalModelLengthMisMatch, "5 != 4 .give exactly 4"),
    ("NaN", [0.5, math.nan, 0.5, 0.5], LocalModelDataTypeMisMatch, "weight 1 is nan"),
    ("infinity", np.array([0.5, 0.5, -np.inf, 0.5]), LocalModelDataTypeMisMatch, "weight 2"),
    ("beyond f32", [0.5, 1e39, 0.5, 0.5], LocalModelDataTypeMisMatch, "3.4e38"),
    ("huge int", [0.5, 10**400, 0.5, 0.5], LocalModelDataTypeMisMatch, "weight 1"),
    ("strings", ["0.5"] * 4, LocalModelDataTypeMisMatch, "not str.*give floats"),
    ("string array", np.array(["a"] * 4), LocalModelDataTypeMisMatch, "weight 0"),
    ("None", [0.5, None, 0.5, 0.5], LocalModelDataTypeMisMatch, "not NoneType"),
    ("nested", [[0.5]] * 4, LocalModelDataTypeMisMatch, "not list"),
    ("complex", np.array([0.5 + 1j] * 4), LocalModelDataTypeMisMatch, "give real numbers"),
    ("objects", [object()] * 4, LocalModelDataTypeMisMatch, "not object"),
    ("2-d array", np.zeros((2, 2)), TypeError, "flatten it"),
    ("dict", {"w": [0.5] * 4}, TypeError, "a list, a tuple or a 1-d numpy array"),
    ("str", "0.5,0.5", TypeError, "a list, a tuple or a 1-d numpy array"),
    ("None model", None, TypeError, "a list, a tuple or a 1-d numpy array"),
]

I32_CASES: list[tuple[str, Any, type[Exception], str]] = [
    ("floats", [1.0, 2.0, 3.0, 4.0], LocalModelDataTypeMisMatch, "give ints"),
    ("float array", np.ones(4), LocalModelDataTypeMisMatch, "give ints"),
    ("beyond i32", [1, 2**31, 3, 4], LocalModelDataTypeMisMatch, "out of range"),
    ("beyond i64", np.array([1, 2, 3, 2**70], dtype=object), LocalModelDataTypeMisMatch, "large"),
]


@pytest.fixture(params=[("Prime/F32/B0/M3", F32_CASES), ("Prime/I32/B0/M3", I32_CASES)])
def joined(request: pytest.FixtureRequest) -> Iterator[tuple[Participant, Any, list[Any]]]:
    """A core participant and a pull participant that joined a round of a fake coordinator."""
    config, cases = request.param
    mini = MiniCoordinator(config=config, model_length=4, sum_prob=0.0, update_prob=1.0)
    with HttpCoordinator(mini) as http:
        p = Participant(http.url, timeout=2.0)
        p.tick()
        p.tick()  # NewRound -> Update
        assert p.should_set_model()
        ap, notifier = spawn_async_participant(http.url, timeout=2.0)
        assert notifier.wait(5)
        yield p, ap, cases
        p.save()
        ap.stop()


def test_bad_local_models_raise_at_the_call(joined: tuple[Participant, Any, list[Any]]) -> None:
    p, ap, cases = joined
    for name, value, error, hint in cases:
        for set_model in (p.set_model, ap.set_local_model):
            with pytest.raises(error, match=hint) as e:
                set_model(value)
            assert len(str(e.value)) > 40, (name, str(e.value))  # says what, and what to do
            assert p.should_set_model()  # still waiting for a model
    # The participants go on and take a good model afterwards.
    good = [1, 2, 3, 4]
    p.set_model(good)
    ap.set_local_model(good)
    assert not p.should_set_model()
    p.tick()
    assert ap.is_alive() and ap.xaynet_participant.state.local_model is not None


def test_a_model_before_the_first_round_says_to_wait() -> None:
    with HttpCoordinator(MiniCoordinator(model_length=4, paused=True)) as http:
        ap, _ = spawn_async_participant(http.url)
        try:
            with pytest.raises(LocalModelLengthMisMatch, match="no round parameters yet"):
                ap.set_local_model([0.5] * 4)
            assert ap.is_alive()
        finally:
            ap.stop()
        with pytest.raises(UninitializedParticipant, match="restore a new one"):
            ap.set_local_model([0.5] * 4)


# ----------------------------------------------------------------------------- live rounds


class Fixed(ParticipantABC):
    def __init__(self, model: Any) -> None:
        self.model = model
        self.trained = 0

    def train_round(self, training_input: Optional[Any]) -> Any:
        self.trained += 1
        return self.model

    def serialize_training_result(self, training_result: Any) -> Any:
        return training_result

    def deserialize_training_input(self, global_model: Any) -> Any:
        return global_model


class Broken(Fixed):
    """Returns a different kind of bad local model every round."""

    BAD = ([0.5, 0.5], [math.nan] * 4, ["x"] * 4, np.full(4, np.inf), None)

    def serialize_training_result(self, training_result: Any) -> Any:
        return self.BAD[(self.trained - 1) % len(self.BAD)]


def settings() -> Settings:
    return Settings.for_tests(
        model_length=4,
        sum=0.3,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=0.3,
        min_update_time=0.8,
        min_sum2_time=0.3,
        max_sum_time=3.0,
        max_update_time=3.0,
        max_sum2_time=3.0,
    )


def test_bad_models_in_live_rounds_do_not_stop_anyone() -> None:
    """A pull participant given bad models, then a good one, takes part; a callback
    participant that always produces bad models keeps running and logs once per round."""
    with LogCapture() as logs, LocalCoordinator(settings()) as coord:
        accepted: list[bytes] = []
        state = coord._state
        accept_update = state.accept_update

        def spy(ticket: Any, pk: bytes, payload: Any, *rest: Any) -> None:
            accept_update(ticket, pk, payload, *rest)
            accepted.append(bytes(pk))

        state.accept_update = spy  # type: ignore[method-assign]
        honest = [spawn_participant(coord.url, Fixed, args=([0.1 * i] * 4,)) for i in range(4)]
        broken = spawn_participant(coord.url, Broken, args=([0.0] * 4,))
        broken.name = "broken-participant"
        ap, notifier = spawn_async_participant(coord.url)
        try:
            assert notifier.wait(10)
            for bad in ([0.5] * 3, [math.nan] * 4, ["x"] * 4, np.zeros((2, 2))):
                with pytest.raises(
                    (LocalModelLengthMisMatch, LocalModelDataTypeMisMatch, TypeError)
                ):
                    ap.set_local_model(bad)
            ap.set_local_model(np.array([0.25, -0.25, 0.5, -0.5], dtype=np.float32))
            pk = ap.xaynet_participant.public_key
            deadline = time.monotonic() + 40
            while pk not in accepted:  # it takes part as soon as it has the update task
                assert time.monotonic() < deadline, coord.status()
                time.sleep(0.05)
            published = coord.stats["global_models"]
            coord.wait_for_global_models(published + 1, timeout=30)
            user = broken.participant
            assert isinstance(user, Broken)
            deadline = time.monotonic() + 30
            while user.trained < 3:  # three rounds of bad results
                assert time.monotonic() < deadline, coord.status()
                time.sleep(0.05)
            assert broken.is_alive() and ap.is_alive() and all(p.is_alive() for p in honest)
            assert broken.xaynet_participant.public_key not in accepted
        finally:
            for p in [*honest, broken]:
                p.stop()
            ap.stop()
    refused = [
        r
        for r in logs.participant_records()
        if r.thread == "broken-participant" and "failed to set local model" in r.message
    ]
    assert len(refused) == user.trained  # once per round: never once per tick
    assert not logs.participant_records(level=logging.ERROR)


# ----------------------------------------------------------------------------- construction


BAD_SCALARS = [0, 0.0, -1.0, -0.0, math.nan, math.inf, -math.inf, 10**400, np.float64("nan")]


@pytest.mark.parametrize("scalar", BAD_SCALARS, ids=repr)
def test_bad_scalars_are_refused_at_the_call(scalar: Any) -> None:
    url = "http://127.0.0.1:9"  # never contacted: construction fails first
    for make in (
        lambda: Participant(url, scalar),
        lambda: spawn_async_participant(url, scalar=scalar),
        lambda: spawn_participant(url, Fixed, args=([0.0] * 4,), scalar=scalar),
    ):
        with pytest.raises(ParticipantInit, match="finite number above 0.*weight"):
            make()
    with pytest.raises(TypeError, match="scalar must be a float"):
        Participant(url, "1.0")  # type: ignore[arg-type]


def test_scalar_is_ignored_when_restoring() -> None:
    state = Participant("http://127.0.0.1:9", 0.5).save()
    restored = Participant("http://127.0.0.1:9", 0.0, state)  # as the original: from the state
    assert restored.state.shared.scalar == 0.5
    restored.save()


BAD_URLS = [
    "localhost:8081",
    "127.0.0.1:8081",
    "http://",
    "http://:8081",
    "http://host:99999",
    "http://host:80a",
    "http://[::1",
    "ftp://host",
    "data:text/plain,x",
    "",
    "   ",
    "http://exa mple.com",
    "http://host\n:8081",
    None,
    8081,
    b"http://host",
]


@pytest.mark.parametrize("url", BAD_URLS, ids=repr)
def test_malformed_urls_are_refused_at_the_call(url: Any) -> None:
    for make in (
        lambda: Participant(url),
        lambda: spawn_async_participant(url),
        lambda: spawn_participant(url, Fixed, args=([0.0] * 4,)),
    ):
        with pytest.raises(ParticipantInit, match="for example http://127.0.0.1:8081"):
            make()
    state = Participant("http://127.0.0.1:9").save()
    with pytest.raises(ParticipantRestore, match="for example http://127.0.0.1:8081"):
        Participant(url, state=state)


def test_bad_options_are_refused_at_the_call() -> None:
    url = "http://127.0.0.1:9"
    for kwargs, match in (
        ({"timeout": 0}, "timeout must be positive"),
        ({"timeout": -1.0}, "timeout must be positive"),
        ({"timeout": (1.0, 0.0)}, "timeouts must be positive"),
        ({"max_message_size": 100}, "too small.*Use at least"),
    ):
        with pytest.raises(ParticipantInit, match=match):
            Participant(url, **kwargs)
