"""The threaded public API (spawn_participant, spawn_async_participant) over real HTTP.

A MiniCoordinator behind a loopback HTTP server advances its phases by counts; the round
seeds are chosen so that the participants' roles are known.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import wait_until  # noqa: E402
from participant_fakes import HttpCoordinator, MiniCoordinator, seed_for_roles  # noqa: E402

import xaynet_sdk  # noqa: E402
from xaynet_sdk import (  # noqa: E402
    AsyncParticipant,
    InternalParticipant,
    ParticipantABC,
    ParticipantInit,
    ParticipantRestore,
    UninitializedParticipant,
    spawn_async_participant,
    spawn_participant,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def coord() -> Iterator[tuple[MiniCoordinator, HttpCoordinator]]:
    mini = MiniCoordinator(model_length=4, auto=(1, 3, 1), paused=True)
    with HttpCoordinator(mini) as http:
        yield mini, http


class Recorder(ParticipantABC):
    """Records every callback with its thread and argument."""

    instances: list[Recorder] = []

    def __init__(
        self, model: Optional[list[float]] = None, *, tag: str = "", bad: bool = False
    ) -> None:
        self.model = model or [0.25, -0.5, 0.75, 1.0]
        self.tag = tag
        self.bad = bad
        self.calls: list[tuple[str, Any]] = []
        self.thread = threading.current_thread().name
        self.lock = threading.Lock()
        Recorder.instances.append(self)

    def _rec(self, name: str, value: Any = None) -> None:
        with self.lock:
            self.calls.append((name, value))

    def names(self) -> list[str]:
        with self.lock:
            return [c[0] for c in self.calls]

    def train_round(self, training_input: Optional[Any]) -> Any:
        self._rec("train_round", training_input)
        return {"weights": self.model}

    def serialize_training_result(self, training_result: Any) -> Any:
        self._rec("serialize_training_result", training_result)
        return training_result["weights"][:-1] if self.bad else training_result["weights"]

    def deserialize_training_input(self, global_model: Any) -> Any:
        self._rec("deserialize_training_input", global_model)
        return ("deserialized", global_model)

    def on_new_global_model(self, global_model: Optional[Any]) -> None:
        self._rec("on_new_global_model", global_model)

    def on_stop(self) -> None:
        self._rec("on_stop")


def _spawn_four(mini: MiniCoordinator, url: str, **kw: Any) -> list[InternalParticipant]:
    ps = [
        spawn_participant(
            url, Recorder, args=([0.1 * i, 0.2, -0.3, 0.4],), kwargs={"tag": str(i)}, **kw
        )
        for i in range(4)
    ]
    secrets = [p.xaynet_participant.state.shared.keys.secret for p in ps]
    mini.new_round(seed=seed_for_roles(secrets, ["sum", "update", "update", "update"], 0.5, 0.9))
    return ps


def test_two_rounds_with_callbacks_in_the_original_order(
    coord: tuple[MiniCoordinator, HttpCoordinator],
) -> None:
    mini, http = coord
    ps = _spawn_four(mini, http.url)
    try:
        users = [p.participant for p in ps]
        assert all(isinstance(u, Recorder) for u in users)
        assert [u.tag for u in users] == ["0", "1", "2", "3"]  # kwargs by keyword  # type: ignore[union-attr]
        assert all(u.thread == "xaynet-participant" for u in users)  # type: ignore[union-attr]
        wait_until(lambda: mini.phase == "done", what="round 1")
        first = mini.global_model
        assert first is not None
        expected = np.mean([[0.1 * i, 0.2, -0.3, 0.4] for i in (1, 2, 3)], axis=0)
        assert [float(w) for w in first] == pytest.approx(expected, abs=1e-6)
        secrets = [p.xaynet_participant.state.shared.keys.secret for p in ps]
        mini.new_round(
            seed=seed_for_roles(secrets, ["update", "sum", "update", "update"], 0.5, 0.9)
        )
        wait_until(lambda: mini.phase == "done" and mini.round_id == 3, what="round 2")
        u0 = users[0]
        assert isinstance(u0, Recorder)
        wait_until(lambda: "train_round" in u0.names())
        names = u0.names()
        # Round 1 (sum): the new round's fetch found no model.
        assert names[0] == "on_new_global_model" and u0.calls[0][1] is None
        # Round 2 (update): deserialize, on_new_global_model, then train on the cached model.
        i = names.index("deserialize_training_input")
        assert names[i : i + 4] == [
            "deserialize_training_input",
            "on_new_global_model",
            "train_round",
            "serialize_training_result",
        ]
        model = u0.calls[i][1]
        assert isinstance(model, list) and all(type(w) is float for w in model)
        assert model == pytest.approx(expected.tolist(), abs=1e-6)
        assert u0.calls[i + 2][1] == ("deserialized", model)
        u1 = users[1]
        assert isinstance(u1, Recorder)
        assert u1.names()[:4] == [
            "on_new_global_model",
            "train_round",
            "serialize_training_result",
            "deserialize_training_input",
        ]
        assert u1.calls[1][1] is None  # no global model yet in round 1
        assert "train_round" not in u1.names()[3:]  # sum participant in round 2
    finally:
        states = [p.stop() for p in ps]
    assert all(isinstance(s, list) for s in states)
    assert all(u.names()[-1] == "on_stop" for u in users)  # type: ignore[union-attr]


def test_spawn_validates_and_passes_constructor_errors(
    coord: tuple[MiniCoordinator, HttpCoordinator],
) -> None:
    _, http = coord

    class Broken(Recorder):
        def __init__(self) -> None:
            raise ValueError("no GPU here")

    with pytest.raises(ValueError, match="no GPU here"):
        spawn_participant(http.url, Broken)
    with pytest.raises(TypeError, match="positional"):
        spawn_participant(http.url, Recorder, args=(1, 2, 3))
    with pytest.raises(ParticipantInit, match="scheme"):
        spawn_participant("localhost:8081", Recorder)
    with pytest.raises(ParticipantInit, match="194"):
        spawn_participant(http.url, Recorder, max_message_size=100)
    with pytest.raises(ParticipantRestore):
        spawn_participant(http.url, Recorder, state=[1, 2, 3])
    with pytest.raises(TypeError, match="the class itself"):
        spawn_participant(http.url, Recorder())  # type: ignore[arg-type]


def test_constructor_error_without_spawn_is_logged_and_stops(
    coord: tuple[MiniCoordinator, HttpCoordinator], caplog: pytest.LogCaptureFixture
) -> None:
    _, http = coord

    class Broken(Recorder):
        def __init__(self) -> None:
            raise RuntimeError("boom")

    p = InternalParticipant(http.url, Broken)
    p.start()
    p.join(5)
    assert not p.is_alive()
    assert any("constructor" in r.getMessage() for r in caplog.records)
    assert isinstance(p.stop(), list)  # no on_stop: there is no instance


def test_refused_local_model_trains_once_per_round(
    coord: tuple[MiniCoordinator, HttpCoordinator], caplog: pytest.LogCaptureFixture
) -> None:
    mini, http = coord
    caplog.set_level(logging.WARNING, logger="xaynet_sdk")
    p = spawn_participant(http.url, Recorder, kwargs={"bad": True})
    secret = p.xaynet_participant.state.shared.keys.secret
    mini.new_round(seed=seed_for_roles([secret], ["update"], 0.5, 0.9))
    try:
        user = p.participant
        assert isinstance(user, Recorder)
        wait_until(lambda: "train_round" in user.names())
        time.sleep(1.0)  # several ticks
        assert user.names().count("train_round") == 1
        assert sum("failed to set local model" in r.getMessage() for r in caplog.records) == 1
        mini.new_round(seed=seed_for_roles([secret], ["update"], 0.5, 0.9))
        wait_until(lambda: user.names().count("train_round") == 2)
    finally:
        p.stop()


def test_stop_from_a_callback_and_twice(coord: tuple[MiniCoordinator, HttpCoordinator]) -> None:
    _, http = coord
    holder: dict[str, Any] = {}

    class StopsItself(Recorder):
        def on_new_global_model(self, global_model: Optional[Any]) -> None:
            holder["state"] = holder["p"].stop()

    p = spawn_participant(http.url, StopsItself)
    holder["p"] = p
    coord[0].new_round()
    wait_until(lambda: "state" in holder)
    p.join(5)
    assert not p.is_alive()
    with pytest.raises(UninitializedParticipant):
        p.stop()
    restored = spawn_participant(http.url, Recorder, state=holder["state"])
    assert restored.xaynet_participant.public_key == p.xaynet_participant.public_key
    restored.stop()


def test_numpy_option_hands_arrays_to_user_code(
    coord: tuple[MiniCoordinator, HttpCoordinator],
) -> None:
    mini, http = coord
    mini.global_model = None
    from fractions import Fraction

    mini.global_model = [Fraction(1, 2), Fraction(-1, 4), Fraction(0), Fraction(1)]
    p = spawn_participant(http.url, Recorder, numpy=True)
    mini.new_round()
    try:
        user = p.participant
        assert isinstance(user, Recorder)
        wait_until(lambda: "deserialize_training_input" in user.names())
        model = user.calls[user.names().index("deserialize_training_input")][1]
        assert isinstance(model, np.ndarray) and model.dtype == np.float32
        assert model.tolist() == [0.5, -0.25, 0.0, 1.0]
    finally:
        p.stop()


def test_a_hung_coordinator_does_not_hang_the_participant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="xaynet_sdk")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # connections complete, nobody ever answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        p = spawn_participant(url, Recorder, timeout=0.2)
        time.sleep(1.0)
        assert p.is_alive()
        start = time.monotonic()
        state = p.stop()
        assert time.monotonic() - start < 2.5  # a loaded machine
        assert isinstance(state, list)
        ap, _ = spawn_async_participant(url, timeout=0.2)
        time.sleep(0.5)
        start = time.monotonic()
        with pytest.raises(xaynet_sdk.GlobalModelUnavailable):
            ap.get_global_model()
        assert time.monotonic() - start < 5.0  # the 0.2 s timeout; without it, never
        ap.stop()
        time.sleep(0.5)  # the abandoned ticks end quietly
        assert not any("unrecoverable" in r.getMessage() for r in caplog.records)
        timeouts = [r for r in caplog.records if "did not answer" in r.getMessage()]
        assert timeouts and all(r.levelno == logging.WARNING for r in timeouts[:1])
        # Logged once per participant and endpoint, however many ticks timed out.
        params_warnings = [r for r in timeouts if "GET /params" in r.getMessage()]
        assert len([r for r in params_warnings if r.levelno == logging.WARNING]) == 2
    finally:
        silent.close()


# ----------------------------------------------------------------------------- async


def test_async_participant_round_trip(coord: tuple[MiniCoordinator, HttpCoordinator]) -> None:
    mini, http = coord
    ps: list[AsyncParticipant] = []
    events: list[threading.Event] = []
    for _ in range(4):
        p, e = spawn_async_participant(http.url)
        ps.append(p)
        events.append(e)
    try:
        assert all(isinstance(e, threading.Event) for e in events)
        secrets = [p.xaynet_participant.state.shared.keys.secret for p in ps]
        seed = seed_for_roles(secrets, ["sum", "update", "update", "update"], 0.5, 0.9)
        mini.new_round(seed=seed)
        wait_until(lambda: all(e.is_set() for e in events), what="notifiers")
        assert ps[0].get_global_model() is None and not events[0].is_set()
        wait_until(lambda: all(p.xaynet_participant.phase != "Awaiting" for p in ps))
        models = [None, [0.5, 0.5, 0.5, 0.5], np.array([0.0, 0.25, 0.5, 1.0]), (1.0, 0.0, 0.0, 0.0)]
        for p, m in zip(ps[1:], models[1:]):
            p.set_local_model(m)  # type: ignore[arg-type]
        wait_until(lambda: mini.phase == "done", what="round")
        # The cached models were consumed by the update tasks.
        assert all(p.xaynet_participant.state.local_model is None for p in ps)
        mini.new_round()
        wait_until(lambda: events[1].is_set())
        model = ps[1].get_global_model()
        assert model == pytest.approx([0.5, 0.25, 1 / 3, 0.5], abs=1e-6)
        with pytest.raises(xaynet_sdk.LocalModelLengthMisMatch):
            ps[1].set_local_model([1.0])
        ps[2].set_local_model([0.1, 0.2, 0.3, 0.4])
        state = ps[2].stop()
        restored, notifier = spawn_async_participant(http.url, state=state)
        assert restored.xaynet_participant.state.local_model is not None  # not lost
        assert restored.xaynet_participant.public_key == ps[2].xaynet_participant.public_key
        wait_until(notifier.is_set)  # restored: fetch the global model once
        restored.stop()
    finally:
        for p in ps:
            if not p.xaynet_participant.closed:
                p.stop()


def test_public_names_match_the_original_package() -> None:
    original = {
        "AsyncParticipant",
        "InternalParticipant",
        "ParticipantABC",
        "TrainingInput",
        "TrainingResult",
        "spawn_async_participant",
        "spawn_participant",
        "xaynet_sdk",
    }
    assert original <= set(dir(xaynet_sdk))
    for name in (
        "CryptoInit",
        "ParticipantInit",
        "ParticipantRestore",
        "UninitializedParticipant",
        "GlobalModelUnavailable",
        "GlobalModelDataTypeMisMatch",
        "LocalModelLengthMisMatch",
        "LocalModelDataTypeMisMatch",
    ):
        exc = getattr(xaynet_sdk, name)
        assert exc is getattr(xaynet_sdk.xaynet_sdk, name)
        assert issubclass(exc, xaynet_sdk.XaynetError) and issubclass(exc, Exception)


def test_logging_follows_xaynet_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from xaynet_sdk import _logging

    assert _logging.parse_filter("debug") == logging.DEBUG
    assert _logging.parse_filter("xaynet=debug,http=warn,info") == logging.DEBUG
    assert _logging.parse_filter("warn,xaynet_sdk=error") == logging.ERROR
    assert _logging.parse_filter("http=debug") is None
    monkeypatch.setenv("XAYNET_CLIENT", "warn")
    logger = logging.getLogger("xaynet_sdk")
    level = logger.level
    try:
        xaynet_sdk.xaynet_sdk.init_logging()
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(level)
        if _logging._handler is not None:
            logger.removeHandler(_logging._handler)
            _logging._handler = None
