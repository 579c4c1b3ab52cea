"""xaynet_sdk.aio in real rounds of the local coordinator (loopback HTTP).

* asyncio participants alone: every global model they receive is one the coordinator
  published, the scalar-weighted mean of exactly the updates it accepted;
* a participant cancelled in the middle of its update task: its saved state is that round's
  Update phase, and restored from it the participant's update still reaches that round;
* ``stop()`` wakes the tasks waiting for a model, and everything after it says why;
* mixed rounds with the ORIGINAL participant (xaynet-sdk-python 0.1.0, own process).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fault_servers import FaultProxy, LogCapture  # noqa: E402
from original.runner import OriginalParticipant  # noqa: E402
from participant_fakes import Fixed, role  # noqa: E402
from round_checks import (  # noqa: E402
    RoundWatcher,
    contribution,
    converted,
    match_subset,
    model_of_round,
)

from xaynet_sdk import (  # noqa: E402
    ParticipantInit,
    UninitializedParticipant,
    aio,
    spawn_participant,
)
from xaynet_sdk.coordinator import LocalCoordinator, Phase, Settings  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402
from xaynet_sdk.protocol.saved import load_state  # noqa: E402
from xaynet_sdk.protocol.state import Update  # noqa: E402

pytestmark = pytest.mark.timeout(240)

MASK = "Prime/F32/B0/M3"
CONFIG = MaskConfig.from_name(MASK)


def short_rounds(**overrides: Any) -> Settings:
    pet: dict[str, Any] = dict(
        model_length=4,
        mask=MASK,
        sum=0.3,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=0.5,
        min_update_time=1.0,
        min_sum2_time=0.5,
        max_sum_time=4,
        max_update_time=8,
        max_sum2_time=4,
    )
    pet.update(overrides)
    return Settings.for_tests(**pet)


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def take_part(
    participant: aio.Participant, model: list[float], seen: list[Optional[Any]]
) -> None:
    """The README's loop: each new round's global model in, a local model out."""
    async with participant:
        async for global_model in participant.global_models():
            seen.append(global_model)
            await participant.set_local_model(model)


def test_asyncio_participants_take_part_in_rounds() -> None:
    models = [[0.1, 0.2, 0.3, 0.4], [-0.5, 0.5, -0.5, 0.5], [0.9, -0.9, 0.0, 0.1], [0.7] * 4]
    scalars = [1.0, 0.5, 2.0, 1.0]
    parts = [contribution(f"aio{i}", m, s, CONFIG) for i, (m, s) in enumerate(zip(models, scalars))]

    async def main(url: str, coord: LocalCoordinator) -> tuple[list[list[Any]], list[list[int]]]:
        participants = [aio.connect(url, scalar=s) for s in scalars]
        seen: list[list[Any]] = [[] for _ in models]
        tasks = [
            asyncio.create_task(take_part(p, m, s)) for p, m, s in zip(participants, models, seen)
        ]
        await wait_until(lambda: len(coord.global_models) >= 2, 150, "two global models")
        await wait_until(lambda: all(len(s) >= 2 for s in seen), 60, "everyone's models")
        states = [await p.stop() for p in participants]
        # Stopping ends the loops: the tasks return, nothing is left waiting.
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert [p.saved_state for p in participants] == states
        assert [await p.stop() for p in participants] == states  # the same state again
        return seen, states

    with LocalCoordinator(short_rounds()) as coord:
        seen, states = asyncio.run(main(coord.url, coord))
        published = [converted(m, "F32") for m in coord.global_models]
        completed = [r for r in coord.history if r.completed]
        for record in completed:
            model = model_of_round(coord, record.round_id)
            assert match_subset(model, parts, CONFIG, size=record.update_count)
    for own in seen:
        assert own[0] is None or isinstance(own[0], np.ndarray)  # numpy by default
        received = [m.tolist() for m in own if m is not None]
        assert received and all(m in published for m in received), (received, published)
    for state, scalar in zip(states, scalars):
        assert all(isinstance(v, int) for v in state)
        assert load_state(state).shared.scalar == scalar


def test_cancelled_mid_round_then_restored_in_the_same_round() -> None:
    """The task is cancelled while the participant's update task waits for its model; the
    restored participant gets the task again, and its update is in that round's model."""
    helper_models = [[0.1, 0.2, 0.3, 0.4], [-0.5, 0.5, -0.5, 0.5], [0.9, -0.9, 0.0, 0.1]]
    ours = [0.7, -0.7, 0.25, 0.5]
    parts = [contribution(f"helper{i}", m, 1.0, CONFIG) for i, m in enumerate(helper_models)]
    parts.append(contribution("aio", ours, 1.0, CONFIG))
    # The Update phase stays open long enough to cancel, restore and update on a loaded machine.
    settings = short_rounds(min_update_time=10.0, max_update_time=30)

    async def main(coord: LocalCoordinator) -> tuple[int, str]:
        first = aio.connect(coord.url)

        async def without_a_model() -> None:  # takes part, never sets a model
            async with first:
                async for _ in first.global_models():
                    pass

        task = asyncio.create_task(without_a_model())
        # In the coordinator's Update phase (so the round has a sum participant).
        await wait_until(
            lambda: first.update_task_waiting and coord.phase is Phase.UPDATE,
            120,
            "an update task in the Update phase",
        )
        round_id = coord.round_id
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        saved = first.saved_state
        assert saved is not None and await first.stop() == saved
        restored_state = load_state(saved)
        assert isinstance(restored_state.phase, Update) and restored_state.local_model is None
        assert coord.round_id == round_id, "the round ended before the test could restore"
        with pytest.raises(UninitializedParticipant, match="connect\\(url, state="):
            await first.next_global_model()

        async with aio.connect(coord.url, state=saved) as again:
            assert again.driver.public_key == first.driver.public_key
            await wait_until(lambda: again.update_task_waiting, 20, "the same update task")
            assert coord.round_id == round_id
            await again.set_local_model(ours)
            await wait_until(
                lambda: any(r.round_id == round_id for r in coord.history), 60, "the round's end"
            )
        record = next(r for r in coord.history if r.round_id == round_id)
        assert record.completed, coord.status()
        model = model_of_round(coord, round_id)
        return round_id, ",".join(match_subset(model, parts, CONFIG, size=record.update_count))

    with LocalCoordinator(settings) as coord:
        helpers = [spawn_participant(coord.url, Fixed, args=(m,)) for m in helper_models]
        try:
            round_id, subset = asyncio.run(main(coord))
        finally:
            for helper in helpers:
                helper.stop()
    assert "aio" in subset.split(","), (round_id, subset)


def test_stop_wakes_whoever_waits_and_later_calls_say_why() -> None:
    async def main(url: str) -> None:
        participant = aio.connect(url)
        with pytest.raises(RuntimeError, match="not started"):
            await participant.next_global_model()
        async with participant:
            first = await asyncio.wait_for(participant.next_global_model(), 60)
            assert first is None  # no round has completed yet
            # A waiter that gives up does not stop the participant.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(participant.next_global_model(), 0.01)
            assert participant.running
            waiting = asyncio.create_task(participant.next_global_model())
            await asyncio.sleep(0.1)
            assert not waiting.done()
            state = await participant.stop()
            with pytest.raises(UninitializedParticipant):
                await asyncio.wait_for(waiting, 10)  # woken at once, not at the next round
        assert participant.saved_state == state and not participant.running
        # The worker thread ends by itself (it was waiting for its next tick).
        await wait_until(
            lambda: not any(t.name == "xaynet-aio" for t in threading.enumerate()),
            30,
            "the worker thread's end",
        )
        with pytest.raises(UninitializedParticipant):
            await participant.set_local_model([0.0] * 4)
        with pytest.raises(UninitializedParticipant):
            await participant.start()

    # A coordinator whose first round cannot complete: a sum participant is never selected.
    with LocalCoordinator(short_rounds(sum=1e-9, max_sum_time=60)) as coord:
        asyncio.run(main(coord.url))


def test_a_failed_model_fetch_is_retried_and_warned_once() -> None:
    """GET /model answers 500 for a while: the round's model comes once it answers again."""

    async def main(url: str, proxy: FaultProxy, logs: LogCapture) -> None:
        async with aio.connect(url) as participant:
            await wait_until(
                lambda: sum(r.path == "/model" and r.fault is not None for r in proxy.records) >= 3,
                60,
                "three failed fetches",
            )
            waiting = asyncio.create_task(participant.next_global_model())
            await asyncio.sleep(0.2)
            assert not waiting.done()  # nothing was delivered while the fetch failed
            proxy.set_fault(None)
            assert await asyncio.wait_for(waiting, 60) is None  # no round completed yet
        warned = [m for m in logs.iter_messages() if "failed to get global model" in m]
        assert len(warned) == 1, warned

    # A coordinator whose first round cannot complete: a sum participant is never selected.
    with LocalCoordinator(short_rounds(sum=1e-9, max_sum_time=60)) as coord:
        with FaultProxy(coord.url) as proxy, LogCapture() as logs:
            proxy.set_fault("status_500", paths={"/model"})
            asyncio.run(main(proxy.url, proxy, logs))


def test_bad_arguments_fail_at_connect() -> None:
    with pytest.raises(ParticipantInit, match="failed to initialize participant"):
        aio.connect("not a url")
    with pytest.raises(ParticipantInit, match="scalar must be a finite number above 0"):
        aio.connect("http://127.0.0.1:1", scalar=0.0)


# -- mixed rounds with the original participant ------------------------------------------------


@pytest.mark.original
def test_asyncio_participants_in_mixed_rounds_with_the_original() -> None:
    """Rounds go on until an asyncio participant was a sum participant of a completed round
    that aggregated an original participant's update, and until a completed round aggregated
    updates of both kinds; both kinds fetch the same global models."""
    values = [[0.1, 0.2, 0.3, 0.4], [-0.5, 0.5, -0.5, 0.5], [0.9, -0.9, 0.0, 0.1]]
    values += [[0.7, 0.6, -0.2, -0.8], [0.05, -0.3, 0.8, -0.6]]
    scalars = [1.0, 0.5, 0.25, 0.75, 1.0]
    names = ["aio0", "aio1", "aio2", "orig0", "orig1"]
    parts = [contribution(n, v, s, CONFIG) for n, v, s in zip(names, values, scalars)]
    settings = short_rounds(min_update_time=2.0, max_sum_time=6, max_update_time=8)

    async def main(
        coord: LocalCoordinator, watcher: RoundWatcher, originals: list[OriginalParticipant]
    ) -> dict[str, int]:
        participants = [aio.connect(coord.url, scalar=s) for s in scalars[:3]]
        seen: list[list[Any]] = [[], [], []]
        tasks = [
            asyncio.create_task(take_part(p, v, s))
            for p, v, s in zip(participants, values[:3], seen)
        ]
        await asyncio.sleep(0.5)  # the participants start their threads
        secrets = [p.driver.state.shared.keys.secret for p in participants]
        counts = {"aio_sum": 0, "both_update": 0, "completed": 0}
        checked = 0
        deadline = time.monotonic() + 180
        try:
            while time.monotonic() < deadline and len(coord.history) < 14:
                completed = [r for r in coord.history if r.completed]
                for record in completed[checked:]:
                    subset = match_subset(
                        model_of_round(coord, record.round_id),
                        parts,
                        CONFIG,
                        size=record.update_count,
                    )
                    params = watcher.params.get(record.round_id)
                    assert params is not None, f"round {record.round_id} parameters not seen"
                    originals_in = any(n.startswith("orig") for n in subset)
                    if originals_in and "sum" in [role(s, params) for s in secrets]:
                        counts["aio_sum"] += 1
                    if originals_in and any(n.startswith("aio") for n in subset):
                        counts["both_update"] += 1
                checked = len(completed)
                counts["completed"] = checked
                if counts["aio_sum"] and counts["both_update"]:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # everyone fetches the last model
        finally:
            for p in participants:
                await p.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        published = [converted(m, "F32") for m in coord.global_models]
        for own in seen:
            assert all(m.tolist() in published for m in own if m is not None)
        shared = {tuple(m) for op in originals for m in op.global_models()} & {
            tuple(m.tolist()) for own in seen for m in own if m is not None
        }
        assert shared, "no global model was seen by both kinds of participant"
        return counts

    with LocalCoordinator(settings) as coord, RoundWatcher(coord) as watcher:
        originals = [
            OriginalParticipant(coord.url, scalar=scalars[i], model=values[i], timeout=220)
            for i in (3, 4)
        ]
        try:
            for op in originals:
                op.wait_for_event("started", timeout=30)
            counts = asyncio.run(main(coord, watcher, originals))
            for op in originals:
                assert not [e for e in op.errors() if e.get("fatal")], op.describe()
        finally:
            for op in originals:
                op.stop()
    print(f"mixed rounds with asyncio participants: {counts}")
    assert counts["aio_sum"] and counts["both_update"], (counts, coord.status())
