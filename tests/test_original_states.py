"""States saved by the ORIGINAL participant (the 0.1.0 wheel) in every phase restore into ours.

The original is driven in its own process against a scripted coordinator
(:class:`fault_servers.ScriptedCoordinator`: a MiniCoordinator on loopback HTTP whose
``POST /message`` can be made to fail) until it sits in the wanted phase, then stopped: its
``save()`` bytes are the wheel's own, not bytes built from our reading of the layout. Each
state is restored into this package's participant, which must be in the same phase with the
same identity and finish what the original started, checked on the coordinator's side:

* Awaiting: the same round parameters, no task, nothing sent;
* Sum and SendingSum: a Sum message under the original's key reaches the coordinator;
* Sum2: ours fetches the seeds under the original's key and sends the Sum2 message;
* SendingSum2: the Sum2 mask the coordinator receives is exactly the mask of the seed the
  coordinator sealed to the original's ephemeral key;
* SendingUpdate: the Update under the original's key reaches the coordinator and the
  aggregation validates its masked model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import wait_until  # noqa: E402
from fault_servers import ScriptedCoordinator as Scripted  # noqa: E402
from original.runner import OriginalParticipant  # noqa: E402
from participant_fakes import MiniCoordinator  # noqa: E402

from xaynet_sdk.codec.crypto import EncryptKeyPair, SigningKeyPair, seal  # noqa: E402
from xaynet_sdk.driver import Participant, Task  # noqa: E402
from xaynet_sdk.mask.masking import sum_masks  # noqa: E402
from xaynet_sdk.protocol.saved import load_state  # noqa: E402
from xaynet_sdk.protocol.state import ParticipantState, Sending  # noqa: E402
from xaynet_sdk.transport import Transport  # noqa: E402

pytestmark = [pytest.mark.original, pytest.mark.timeout(240)]

MODEL = [0.5, -0.25, 1.0, 0.125]
TASK_NAMES = {0: "none", 1: "sum", 2: "update"}


def phase_name(state: ParticipantState) -> str:
    phase = state.phase
    if isinstance(phase, Sending):
        return f"Sending{phase.kind.value.capitalize()}"
    return type(phase).__name__


def capture(
    scripted: Scripted,
    reached: Callable[[], bool],
    what: str,
    max_ticks: int | None = None,
) -> list[int]:
    """Run the original until ``reached()`` (or ``max_ticks`` ticks), stop it; its saved
    state, which the driver reports in phase ``what``."""
    with OriginalParticipant(
        scripted.url, model=MODEL, timeout=120, save_state=True, max_ticks=max_ticks
    ) as op:
        op.wait_for_event("started", timeout=60)
        if max_ticks is not None:
            assert op.wait_exit(60) == 0, op.describe()
        else:
            wait_until(reached, 60, what)
            assert op.stop() == 0, op.describe()
    state = op.saved_state()
    assert state, op.describe()
    (saved,) = op.events("saved")
    assert saved["phase"] == what, (saved, op.describe())
    return state


def restore(scripted: Scripted, state: list[int]) -> Participant:
    """Ours restored from ``state``, with the task the original reports after restoring the
    same state (the phase's entry event, before any tick)."""
    with OriginalParticipant(
        "http://127.0.0.1:9", state=state, max_ticks=0, model=MODEL, timeout=60
    ) as op:
        assert op.wait_exit(60) == 0, op.describe()
    tasks = op.tasks()
    ours = Participant(scripted.url, state=state, transport=Transport(scripted.url, timeout=5))
    assert TASK_NAMES[ours.task()] == (tasks[-1] if tasks else "none"), (tasks, ours.phase)
    return ours


def tick_until(p: Participant, predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within 60 s (phase {p.phase})")
        p.tick()
        time.sleep(0.02)


def test_awaiting() -> None:
    mini = MiniCoordinator(sum_prob=0.0, update_prob=0.0)
    scripted = Scripted(mini)
    try:
        state = capture(scripted, lambda: scripted.count("/params") >= 4, "Awaiting")
        restored = load_state(state)
        assert phase_name(restored) == "Awaiting"
        assert restored.round_params == mini.params
        ours = restore(scripted, state)
        for _ in range(3):
            ours.tick()
        assert ours.phase == "Awaiting" and ours.task() == Task.NONE
        assert ours.round_serial == 0  # the same round: no new one
        assert mini.log.messages == 0
        ours.save()
    finally:
        scripted.close()


@pytest.mark.parametrize("wanted", ["Sum", "SendingSum"])
def test_sum_and_sending_sum(wanted: str) -> None:
    """Sum: two ticks after the start (new round, then the sum task). SendingSum: every
    POST refused."""
    mini = MiniCoordinator(sum_prob=1.0, update_prob=0.0)
    scripted = Scripted(mini)
    try:
        if wanted == "Sum":
            state = capture(scripted, lambda: True, wanted, max_ticks=2)
        else:
            scripted.post_status = 500
            state = capture(scripted, lambda: scripted.refused >= 2, wanted)
        restored = load_state(state)
        assert phase_name(restored) == wanted
        assert mini.log.sums == {}
        ours = restore(scripted, state)
        scripted.post_status = 200
        pk = restored.shared.keys.public
        tick_until(ours, lambda: pk in mini.log.sums, f"{wanted}: the Sum message")
        assert mini.log.rejected == []
        assert ours.phase == "Sum2"
        ours.save()
    finally:
        scripted.close()


def _summed_original(mini: MiniCoordinator, scripted: Scripted) -> tuple[bytes, bytes]:
    """After the original's Sum: seeds for it (one fabricated update), the Sum2 phase open.
    Returns (the original's pk, the mask seed sealed to its ephemeral key)."""
    ((pk, ephm_pk),) = mini.log.sums.items()
    mask_seed = bytes(range(32))
    with mini.lock:
        mini.advance()  # update
        mini.seed_dict[pk][SigningKeyPair.generate().public] = seal(mask_seed, ephm_pk)
        mini.advance()  # sum2
    return pk, mask_seed


@pytest.mark.parametrize("wanted", ["Sum2", "SendingSum2"])
def test_sum2_and_sending_sum2(wanted: str) -> None:
    mini = MiniCoordinator(sum_prob=1.0, update_prob=0.0)
    scripted = Scripted(mini)
    try:
        if wanted == "Sum2":
            # The Sum went through; the seeds are not published (204): it waits in Sum2.
            state = capture(scripted, lambda: scripted.count("/seeds") >= 2, wanted)
            pk, mask_seed = _summed_original(mini, scripted)
        else:

            def sum2_refused() -> bool:
                if mini.phase == "sum" and mini.log.sums:
                    _summed_original(mini, scripted)
                    scripted.post_status = 500  # the Sum2 message will be refused
                return scripted.refused >= 2

            state = capture(scripted, sum2_refused, wanted)
            ((pk, _),) = mini.log.sums.items()
            mask_seed = bytes(range(32))
        restored = load_state(state)
        assert phase_name(restored) == wanted
        assert restored.shared.keys.public == pk
        assert mini.log.sum2 == {}
        ours = restore(scripted, state)
        scripted.post_status = 200
        tick_until(ours, lambda: pk in mini.log.sum2, f"{wanted}: the Sum2 message")
        expected = sum_masks([mask_seed], mini.model_length, mini.params.mask_config)
        assert mini.log.sum2[pk] == expected.to_bytes()
        assert mini.log.rejected == []
        ours.save()
    finally:
        scripted.close()


def test_sending_update() -> None:
    mini = MiniCoordinator(sum_prob=0.0, update_prob=1.0)
    scripted = Scripted(mini)
    try:
        with mini.lock:
            mini.log.sums[SigningKeyPair.generate().public] = EncryptKeyPair.generate().public
            mini.advance()  # update: the sum dict is published
        scripted.post_status = 500
        state = capture(scripted, lambda: scripted.refused >= 2, "SendingUpdate")
        restored = load_state(state)
        assert phase_name(restored) == "SendingUpdate"
        assert mini.log.updates == []
        ours = restore(scripted, state)
        scripted.post_status = 200
        pk = restored.shared.keys.public
        tick_until(ours, lambda: pk in mini.log.updates, "the Update message")
        assert mini.log.rejected == [] and mini.aggregation.nb_models == 1
        assert ours.phase == "Awaiting"
        ours.save()
    finally:
        scripted.close()
