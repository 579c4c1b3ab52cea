"""ORIGINAL participants (the ``xaynet-sdk-python`` 0.1.0 wheel, each in its own process)
complete rounds on the local coordinator, and the global model is the right one.

Roles are random per round (sum 0.3, update 0.95 with 8 participants: a round has at least one
sum and three update participants with probability 0.92; the others fail by timeout and are
retried, as in the original). Every participant has its own constant model and scalar, so the
set of participants a global model averages is recovered by trying every subset of the size
the coordinator reports; exactly one subset must match, within the configuration's precision.
Each such participant must have had the update task in that round (the events of the driver,
timestamped when they arrive, are placed in the coordinator's round intervals), and no Update
message may have been rejected (all update participants that sent are in the model). The
participants' own decoded global models must equal ours, converted as the original does.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import expected_model, local_coordinator, model_tolerance  # noqa: E402
from original.runner import OriginalParticipant  # noqa: E402

from xaynet_sdk.codec.bincode import encode_model  # noqa: E402
from xaynet_sdk.coordinator import LocalCoordinator, RoundRecord, Settings  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402
from xaynet_sdk.mask.masking import clamp_scalar  # noqa: E402
from xaynet_sdk.mask.model import decode_global_model  # noqa: E402

pytestmark = pytest.mark.original
__all__ = ["local_coordinator"]

PARTICIPANTS = 8


def _settings(mask: str, length: int) -> Settings:
    return Settings.for_tests(
        mask=mask,
        model_length=length,
        sum=0.3,
        update=0.95,
        min_sum_count=1,
        min_update_count=3,
        min_sum2_count=1,
        # An update participant needs about 1 s from the opening of the Update phase to its
        # POST (poll backoff plus one tick per step); 2 s let every one of them in.
        min_sum_time=1.0,
        min_update_time=2.0,
        min_sum2_time=1.0,
        max_sum_time=3.0,
        max_update_time=4.0,
        max_sum2_time=4.0,
    )


def _model(index: int, length: int) -> list[float]:
    """Participant ``index``'s model: distinct, exactly representable in f32 and within B0."""
    model = [(((index + 1) * (j + 3)) % 61 - 30) / 64 for j in range(length)]
    model[0] = 2.0 ** -(index + 2)
    return model


@dataclass
class Tracked:
    """An original participant and its events, timestamped on arrival (``time.monotonic``)."""

    participant: OriginalParticipant
    model: list[float]
    scalar: float
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    thread: Optional[threading.Thread] = None

    def start(self) -> None:
        def pump() -> None:
            while True:
                try:
                    event = self.participant.queue.get(timeout=0.2)
                except queue.Empty:
                    if not self.participant.running():
                        return
                    continue
                self.events.append((time.monotonic(), event))

        self.thread = threading.Thread(target=pump, daemon=True)
        self.thread.start()

    def update_in(self, record: RoundRecord) -> bool:
        """Did the participant have the update task in this round?

        Its task event comes shortly after it saw the round's parameters. A participant that
        had the update task in the previous round and never got to send it (that round failed
        early) gets the task again without a new event (the driver reports changes only); its
        first event in this round is then the "none" after sending.
        """
        tasks = [(t, e["task"]) for t, e in list(self.events) if e.get("event") == "task"]
        during = [task for t, task in tasks if record.started <= t < record.ended]
        before = [task for t, task in tasks if t < record.started]
        carried = bool(before) and before[-1] == "update"
        return "update" in during or (carried and (not during or during[0] == "none"))


def _start(coord: LocalCoordinator, length: int, scalars: list[float]) -> list[Tracked]:
    tracked = []
    for i, scalar in enumerate(scalars):
        model = _model(i, length)
        participant = OriginalParticipant(coord.url, model=model, scalar=scalar, timeout=120)
        t = Tracked(participant, model, scalar)
        t.start()
        tracked.append(t)
    return tracked


def _stop(tracked: list[Tracked]) -> None:
    for t in tracked:
        t.participant.stop()
    for t in tracked:
        if t.thread is not None:
            t.thread.join(5)


def _who_is_in(
    model: list[Fraction], config: MaskConfig, tracked: list[Tracked], count: int
) -> list[int]:
    """The one subset of ``count`` participants whose weighted mean ``model`` is."""
    matches = []
    for subset in itertools.combinations(range(len(tracked)), count):
        scalars = [tracked[i].scalar for i in subset]
        total = sum((clamp_scalar(s, config) for s in scalars), Fraction(0))
        tolerance = model_tolerance(config, count, total)
        # coordinate 0 separates the subsets (distinct powers of two); then check everything
        first = expected_model(config, [tracked[i].model[:1] for i in subset], scalars)[0]
        if abs(first - model[0]) > tolerance:
            continue
        expected = expected_model(config, [tracked[i].model for i in subset], scalars)
        if all(abs(a - b) <= tolerance for a, b in zip(model, expected)):
            matches.append(list(subset))
    assert len(matches) == 1, f"{len(matches)} subsets of {count} participants match"
    return matches[0]


def _check_rounds(coord: LocalCoordinator, tracked: list[Tracked], config: MaskConfig) -> int:
    """Check every published model against the participants' tasks; return how many."""
    models = coord.global_models
    completed = [h for h in coord.history if h.completed]
    assert len(models) == len(completed) >= 2
    for record, model in zip(completed, models):
        members = _who_is_in(model, config, tracked, record.update_count)
        for i in members:
            assert tracked[i].update_in(record), (
                f"participant {i} is in round {record.round_id}'s model without the update task"
            )
    # No Update message was rejected: every update participant that sent is in a model.
    assert coord.stats["rejected_by_message"].get("Update", {}) == {}
    return len(models)


def _check_participant_models(
    coord: LocalCoordinator, tracked: list[Tracked], config: MaskConfig
) -> None:
    """What the original participants decoded is our model, converted as the original does."""
    ours = [
        decode_global_model(encode_model((f.numerator, f.denominator) for f in m), config.data_type)
        for m in coord.global_models
    ]
    fetched = 0
    for t in tracked:
        for model in t.participant.global_models():
            theirs = np.asarray(model, dtype=np.float64)
            assert any(np.array_equal(theirs, o.astype(np.float64)) for o in ours)
            fetched += 1
    assert fetched >= 1


@pytest.mark.parametrize(
    ("mask", "length", "scalars"),
    [
        pytest.param(
            "Prime/F32/B0/M3", 4, [1.0, 0.5, 0.25, 1.0, 0.75, 1.0, 0.5, 1.0], id="Prime-F32-B0-M3"
        ),
        pytest.param("Integer/F64/B2/M6", 3000, [1.0] * PARTICIPANTS, id="Integer-F64-B2-M6-3000"),
        pytest.param(
            "Prime/F32/Bmax/M3",
            16,
            [1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 1.0, 0.25],
            id="Prime-F32-Bmax-M3",
        ),
    ],
)
def test_original_participants_complete_rounds(
    local_coordinator,  # type: ignore[no-untyped-def]
    mask: str,
    length: int,
    scalars: list[float],
) -> None:
    coord = local_coordinator(_settings(mask, length))
    config = MaskConfig.from_name(mask)
    tracked = _start(coord, length, scalars)
    try:
        coord.wait_for_global_models(2, timeout=90)
        # Let the participants fetch the second model (they do at the next round's start).
        coord.wait_for_round(coord.history[-1].round_id + 1, 10)
        time.sleep(1.5)
    finally:
        _stop(tracked)
        coord.stop()
    for t in tracked:
        assert t.participant.errors() == [], t.participant.describe()
    _check_rounds(coord, tracked, config)
    _check_participant_models(coord, tracked, config)


def test_participants_that_disappear_do_not_stall_the_coordinator(
    local_coordinator,  # type: ignore[no-untyped-def]
) -> None:
    """A sum and an update participant are SIGKILLed right after they get their tasks; the
    round ends (with the others, or by timeout at the max times) and later rounds complete."""
    settings = _settings("Prime/F32/B0/M3", 4)
    coord = local_coordinator(settings)
    tracked = _start(coord, 4, [1.0] * PARTICIPANTS)
    killed: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        while len(killed) < 2 and time.monotonic() < deadline:
            for i, t in enumerate(tracked):
                if i in killed.values() or not t.participant.running():
                    continue
                tasks = [e["task"] for _, e in list(t.events) if e.get("event") == "task"]
                if tasks and tasks[-1] in ("sum", "update") and tasks[-1] not in killed:
                    os.kill(t.participant.pid or 0, signal.SIGKILL)
                    killed[tasks[-1]] = i
            time.sleep(0.01)
        assert set(killed) == {"sum", "update"}, killed
        kill_round = coord.round_id
        pet = settings.pet
        bound = pet.max_sum_time + pet.max_update_time + pet.max_sum2_time + 2.0
        start = time.monotonic()
        coord.wait_for_round(kill_round + 1, timeout=bound)
        assert time.monotonic() - start <= bound
        published = coord.stats["global_models"]
        coord.wait_for_global_models(published + 1, timeout=60)  # the survivors go on
    finally:
        _stop(tracked)
        coord.stop()
    ended = [h for h in coord.history if h.round_id == kill_round]
    assert ended and ended[0].duration <= bound
