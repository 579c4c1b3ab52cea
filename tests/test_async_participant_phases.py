"""The pull API (``spawn_async_participant``) stopped and restored in every phase it rests in.

A scripted coordinator (:class:`fault_servers.ScriptedCoordinator`) holds the participant in
one phase (by refusing its messages, withholding a dictionary, or no longer answering
``/params``); the test stops it there, checks the saved state's phase and identity, restores
it with ``spawn_async_participant(state=...)`` and checks on the coordinator's side that the
restored participant finishes what the stopped one started, under the same key. The local
model set before the stop is the one the restored participant's update carries (the masked
model unmasks to it exactly), and ``numpy=True`` gives the global model as a numpy array of
the round's data type.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import wait_until  # noqa: E402
from fault_servers import ScriptedCoordinator  # noqa: E402
from participant_fakes import MiniCoordinator  # noqa: E402
from round_checks import contribution, match_subset  # noqa: E402

from xaynet_sdk import AsyncParticipant, spawn_async_participant  # noqa: E402
from xaynet_sdk.codec.crypto import EncryptKeyPair, SigningKeyPair, open_sealed, seal  # noqa: E402
from xaynet_sdk.mask.masking import sum_masks  # noqa: E402
from xaynet_sdk.protocol.saved import load_state  # noqa: E402
from xaynet_sdk.protocol.state import ParticipantState, Sending, Update  # noqa: E402

pytestmark = pytest.mark.timeout(120)

MODEL = np.array([0.5, -0.25, 1.0, 0.125], dtype=np.float32)
MASK_SEED = bytes(range(32))


def phase_name(state: ParticipantState) -> str:
    phase = state.phase
    if isinstance(phase, Sending):
        return f"Sending{phase.kind.value.capitalize()}"
    return type(phase).__name__


def current(p: AsyncParticipant) -> str:
    return phase_name(p.xaynet_participant.state)


def spawn(url: str, state: list[int] | None = None) -> AsyncParticipant:
    participant, _ = spawn_async_participant(url, state=state, numpy=True, timeout=5)
    return participant


def open_update_phase(mini: MiniCoordinator) -> EncryptKeyPair:
    """A sum dictionary with one (fabricated) sum participant: the Update phase opens.
    Returns the sum participant's ephemeral key pair (to open the mask seeds sealed to it)."""
    ephm = EncryptKeyPair.generate()
    with mini.lock:
        mini.log.sums[SigningKeyPair.generate().public] = ephm.public
        mini.advance()
    return ephm


def open_sum2_phase(mini: MiniCoordinator) -> bytes:
    """After the participant's Sum: its seeds (one fabricated update), the Sum2 phase open."""
    ((pk, ephm_pk),) = mini.log.sums.items()
    with mini.lock:
        mini.advance()
        mini.seed_dict[pk][SigningKeyPair.generate().public] = seal(MASK_SEED, ephm_pk)
        mini.advance()
    return pk


def stop_in(p: AsyncParticipant, wanted: str) -> list[int]:
    wait_until(lambda: current(p) == wanted, 30, f"phase {wanted} (now {current(p)})")
    state = p.stop()
    assert phase_name(load_state(state)) == wanted
    p.join(20)
    assert not p.is_alive()
    return state


def test_new_round_and_awaiting() -> None:
    # NewRound: the round's parameters came once, then /params answers 204.
    mini = MiniCoordinator(sum_prob=0.0, update_prob=0.0)
    with ScriptedCoordinator(mini, params_limit=1) as scripted:
        p = spawn(scripted.url)
        key = p.xaynet_participant.public_key
        state = stop_in(p, "NewRound")
        scripted.params_limit = None
        restored = spawn(scripted.url, state)
        assert restored.xaynet_participant.public_key == key
        # The round goes on: no task, so it waits in Awaiting, where it is stopped again.
        state = stop_in(restored, "Awaiting")
        again = spawn(scripted.url, state)
        assert again.xaynet_participant.round_params == mini.params
        assert again.xaynet_participant.task() == 0
        again.stop()
        assert mini.log.messages == 0


def test_sending_sum_and_sum2() -> None:
    mini = MiniCoordinator(sum_prob=1.0, update_prob=0.0)
    with ScriptedCoordinator(mini) as scripted:
        scripted.post_status = 500
        p = spawn(scripted.url)
        key = p.xaynet_participant.public_key
        wait_until(lambda: scripted.refused >= 1, 60, "a refused Sum message")
        state = stop_in(p, "SendingSum")
        scripted.post_status = 200
        restored = spawn(scripted.url, state)
        wait_until(lambda: key in mini.log.sums, 60, "the Sum message of the restored participant")
        # The seeds are not published yet: it waits in Sum2, where it is stopped again.
        state = stop_in(restored, "Sum2")
        open_sum2_phase(mini)
        again = spawn(scripted.url, state)
        wait_until(lambda: key in mini.log.sum2, 60, "the Sum2 message")
        again.stop()
        expected = sum_masks([MASK_SEED], mini.model_length, mini.params.mask_config)
        assert mini.log.sum2[key] == expected.to_bytes()
        assert mini.log.rejected == []


def test_sending_sum2() -> None:
    mini = MiniCoordinator(sum_prob=1.0, update_prob=0.0)
    with ScriptedCoordinator(mini) as scripted:
        p = spawn(scripted.url)
        key = p.xaynet_participant.public_key
        wait_until(lambda: key in mini.log.sums, 60, "the Sum message")
        scripted.post_status = 500
        open_sum2_phase(mini)
        wait_until(lambda: scripted.refused >= 1, 60, "a refused Sum2 message")
        state = stop_in(p, "SendingSum2")
        scripted.post_status = 200
        restored = spawn(scripted.url, state)
        wait_until(lambda: key in mini.log.sum2, 60, "the Sum2 message of the restored participant")
        restored.stop()
        expected = sum_masks([MASK_SEED], mini.model_length, mini.params.mask_config)
        assert mini.log.sum2[key] == expected.to_bytes()


def test_update_waiting_for_sums_then_for_a_model_then_sending() -> None:
    """Stopped in Update twice (before the sum dictionary, then waiting for the local
    model), then in SendingUpdate: the model set before the last stop is the update."""
    mini = MiniCoordinator(sum_prob=0.0, update_prob=1.0)
    with ScriptedCoordinator(mini) as scripted:
        p = spawn(scripted.url)
        key = p.xaynet_participant.public_key
        wait_until(lambda: scripted.count("/sums") >= 2, 60, "polls of /sums")
        state = stop_in(p, "Update")
        phase = load_state(state).phase
        assert isinstance(phase, Update) and not phase.has_fetched_sum_dict()
        ephm = open_update_phase(mini)
        restored = spawn(scripted.url, state)
        assert restored.xaynet_participant.should_set_model()  # restored into Update

        def fetched() -> bool:
            phase = restored.xaynet_participant.state.phase
            return isinstance(phase, Update) and phase.has_fetched_sum_dict()

        wait_until(fetched, 60, "the sum dictionary, then a wait for the local model")
        state = stop_in(restored, "Update")
        phase = load_state(state).phase
        assert isinstance(phase, Update) and phase.has_fetched_sum_dict()
        scripted.post_status = 500
        again = spawn(scripted.url, state)
        again.set_local_model(MODEL)
        wait_until(lambda: scripted.refused >= 1, 60, "a refused Update message")
        state = stop_in(again, "SendingUpdate")
        scripted.post_status = 200
        last = spawn(scripted.url, state)
        wait_until(lambda: key in mini.log.updates, 60, "the Update of the restored participant")
        wait_until(lambda: current(last) == "Awaiting", 60, "Awaiting after the update")
        last.stop()
        # The one update, unmasked with the mask of the seed it sealed to the sum
        # participant, is exactly the model that was set before the stops.
        ((_, seeds),) = mini.seed_dict.items()
        assert list(seeds) == [key] and mini.aggregation.nb_models == 1
        mask_seed = open_sealed(seeds[key], ephm.public, ephm.secret)
        mask = sum_masks([mask_seed], mini.model_length, mini.params.mask_config)
        config = mini.params.mask_config.vect
        global_model = mini.aggregation.unmask(mask)
        assert match_subset(
            global_model, [contribution("set", MODEL.tolist(), 1.0, config)], config
        ) == ["set"]


def test_numpy_global_model_of_the_round_data_type() -> None:
    mini = MiniCoordinator(config="Prime/F64/B0/M3", sum_prob=0.0, update_prob=0.0)
    mini.global_model = [Fraction(1, 3), Fraction(-1, 2), Fraction(0), Fraction(7, 8)]
    with ScriptedCoordinator(mini) as scripted:
        p, notifier = spawn_async_participant(scripted.url, numpy=True, timeout=5)
        try:
            assert notifier.wait(30)
            model = p.get_global_model()
            assert isinstance(model, np.ndarray) and model.dtype == np.float64
            assert model.tolist() == [1 / 3, -0.5, 0.0, 0.875]
            assert not notifier.is_set()  # get_global_model cleared it
        finally:
            p.stop()
