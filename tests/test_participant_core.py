"""The synchronous participant (``xaynet_sdk.driver.Participant``) over a fake transport.

Request order (docs/PROTOCOL.md 1.4), flags and events (12.3), retries, round changes, the
global model conversion (8.3), the local model (8.2), save and restore, and thread safety.
"""

from __future__ import annotations

import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from participant_fakes import FakeTransport, MiniCoordinator, role, seed_for_roles  # noqa: E402

from xaynet_sdk import xaynet_sdk as compat  # noqa: E402
from xaynet_sdk.codec.bincode import encode_model  # noqa: E402
from xaynet_sdk.driver import Participant, Task  # noqa: E402
from xaynet_sdk.exceptions import (  # noqa: E402
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    LocalModelLengthMisMatch,
    ParticipantInit,
    ParticipantRestore,
    UninitializedParticipant,
    XaynetError,
)

URL = "http://127.0.0.1:1"


def _participants(coord: MiniCoordinator, n: int, **kw: object) -> list[Participant]:
    return [Participant(URL, transport=FakeTransport(coord), **kw) for _ in range(n)]  # type: ignore[arg-type]


def _assign(coord: MiniCoordinator, ps: list[Participant], roles: list[str]) -> None:
    secrets = [p.state.shared.keys.secret for p in ps]
    coord.new_round(seed=seed_for_roles(secrets, roles, coord.sum_prob, coord.update_prob))


def _tick_and_record(p: Participant) -> list[str]:
    t: FakeTransport = p._transport  # type: ignore[assignment]
    before = len(t.calls)
    p.tick()
    return t.calls[before:]


def test_fresh_participant_flags() -> None:
    coord = MiniCoordinator()
    (p,) = _participants(coord, 1)
    assert p.made_progress() is True
    assert p.should_set_model() is False and p.new_global_model() is False
    assert p.task() == 0 and p.phase == "Awaiting"
    assert p.round_params.model_length == 0
    p.set_model([])  # before the first params the model length is 0, as in the original


def test_update_participant_request_order() -> None:
    coord = MiniCoordinator()
    ps = _participants(coord, 2)
    _assign(coord, ps, ["sum", "update"])
    summer, p = ps
    assert _tick_and_record(p) == ["params"] and p.made_progress()
    assert p.new_global_model() and not p.should_set_model()
    assert p.task() == 0  # the task is unchanged by new_round until the NewRound step
    assert _tick_and_record(p) == ["params"]
    assert p.task() == Task.UPDATE and p.should_set_model()
    for _ in range(3):  # /sums is 204 during the sum phase: no progress
        assert _tick_and_record(p) == ["params", "sums"] and not p.made_progress()
    summer.tick(), summer.tick(), summer.tick(), summer.tick()
    coord.advance()
    assert _tick_and_record(p) == ["params", "sums"] and p.made_progress()
    assert _tick_and_record(p) == ["params"] and not p.made_progress()  # no model yet
    p.set_model([0.5, 1.0, -2.0, 3.0])
    assert not p.should_set_model()
    # load, mask, seed dict, compose: local sub-steps, one tick (the original: four)
    assert _tick_and_record(p) == ["params"] and p.made_progress()
    assert p.phase == "Sending"
    # the POST, then leaving the phase (local) in the same tick
    assert _tick_and_record(p) == ["params", "message"] and p.made_progress()
    assert coord.log.updates == [p.public_key]
    assert p.task() == Task.NONE and p.phase == "Awaiting"
    assert _tick_and_record(p) == ["params"] and not p.made_progress()


def test_sum_participant_request_order() -> None:
    coord = MiniCoordinator()
    (p,) = _participants(coord, 1)
    _assign(coord, [p], ["sum"])
    assert _tick_and_record(p) == ["params"]  # new round
    # the role, then composing the Sum message: local sub-steps, one tick
    assert _tick_and_record(p) == ["params"] and p.task() == Task.SUM
    assert p.phase == "Sending"
    # the POST, then on to Sum2 (local) in the same tick
    assert _tick_and_record(p) == ["params", "message"] and p.phase == "Sum2"
    assert _tick_and_record(p) == ["params", "seeds"] and not p.made_progress()
    coord.advance(), coord.advance()
    # the seed dict, then decrypt, aggregate, compose in the same tick (the original: four)
    assert _tick_and_record(p) == ["params", "seeds"] and p.made_progress()
    assert p.phase == "Sending"
    assert _tick_and_record(p) == ["params", "message"] and p.task() == Task.NONE
    assert list(coord.log.sum2) == [p.public_key]


def _run_round(
    coord: MiniCoordinator, ps: list[Participant], models: dict[int, object], max_ticks: int = 60
) -> None:
    """Tick everyone and advance the coordinator by counts until the round is done."""
    roles = [role(p.state.shared.keys.secret, coord.params) for p in ps]
    for _ in range(max_ticks):
        for i, p in enumerate(ps):
            p.tick()
            if p.should_set_model() and i in models:
                p.set_model(models[i])  # type: ignore[arg-type]
        n_sum = roles.count("sum")
        n_update = roles.count("update")
        if coord.phase == "sum" and len(coord.log.sums) == n_sum and n_sum:
            coord.advance()
        elif coord.phase == "update" and len(coord.log.updates) == n_update:
            coord.advance()
        elif coord.phase == "sum2" and len(coord.log.sum2) == n_sum:
            coord.advance()
        if coord.phase == "done":
            return
    raise AssertionError(f"round did not finish: {coord.phase} {coord.log}")


def test_full_round_and_global_model_conversion() -> None:
    coord = MiniCoordinator(model_length=4)
    ps = _participants(coord, 4)
    _assign(coord, ps, ["sum", "update", "update", "update"])
    models = {1: [0.1, 0.2, 0.3, 0.4], 2: np.array([0.5, 0.5, 0.5, 0.5]), 3: (1.0, -1.0, 0.0, 0.25)}
    _run_round(coord, ps, models)
    assert coord.log.rejected == []
    expected = np.mean([np.asarray(m, dtype=np.float32) for m in models.values()], axis=0)
    model = ps[1].global_model()
    assert isinstance(model, list) and all(type(w) is float for w in model)
    assert model == pytest.approx(expected.tolist(), abs=1e-6)
    assert not ps[1].new_global_model()
    arr = ps[2].global_model(numpy=True)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32


def test_global_model_absent_clears_the_flag() -> None:
    coord = MiniCoordinator()
    (p,) = _participants(coord, 1)
    p.tick()
    assert p.new_global_model()
    assert p.global_model() is None
    assert not p.new_global_model()


def test_global_model_errors() -> None:
    coord = MiniCoordinator(config="Integer/I32/B0/M3", model_length=2)
    (p,) = _participants(coord, 1)
    p.tick()
    coord.model_body = encode_model([(7, 2), (-7, 2)])
    assert p.global_model() == [3, -3]  # truncation toward zero, as the original
    coord.model_body = encode_model([(2**40, 1), (0, 1)])
    with pytest.raises(GlobalModelDataTypeMisMatch, match="^the global model data type is"):
        p.global_model()
    coord.model_body = b"\x05\x00"
    with pytest.raises(GlobalModelUnavailable, match="^failed to fetch global model"):
        p.global_model()
    assert not p.new_global_model()  # fetched and decoded: cleared, as in the original
    coord.new_round()
    p.tick()
    assert p.new_global_model()
    p._transport.fail["model"] = 1  # type: ignore[attr-defined]
    with pytest.raises(GlobalModelUnavailable):
        p.global_model()
    with pytest.raises(GlobalModelUnavailable):
        coord.model_body = b"\x05\x00"
        p.global_model()
    assert p.new_global_model()  # failed fetches keep the flag


def test_global_model_f32_values_are_the_originals() -> None:
    coord = MiniCoordinator(config="Prime/F32/B0/M3", model_length=3)
    (p,) = _participants(coord, 1)
    p.tick()
    coord.model_body = encode_model([(1, 3), (3 * (2**24 + 1), 3), (3, 2**130)])
    # docs/PROTOCOL.md 8.3 consequences: f32(1/3), the unreduced ratio, a denominator that is inf.
    assert p.global_model() == [0.3333333432674408, 16777218.0, 0.0]


def test_transport_failures_never_raise_and_posts_resend_the_same_bytes() -> None:
    coord = MiniCoordinator()
    (p,) = _participants(coord, 1)
    transport: FakeTransport = p._transport  # type: ignore[assignment]
    transport.fail["params"] = 3
    for _ in range(3):
        p.tick()
        assert not p.made_progress()
    _assign(coord, [p], ["sum"])
    p.tick(), p.tick()  # the new round; the role and the composed Sum message
    assert p.phase == "Sending"
    transport.fail["message"] = 2
    p.tick()
    p.tick()
    assert not p.made_progress()
    p.tick()
    assert p.made_progress()
    assert len(transport.posted) == 3 and len(set(transport.posted)) == 1
    assert list(coord.log.sums) == [p.public_key]


def test_round_change_while_waiting_for_seeds_keeps_the_keys() -> None:
    coord = MiniCoordinator()
    (p,) = _participants(coord, 1)
    key = p.public_key
    _assign(coord, [p], ["sum"])
    for _ in range(6):
        p.tick()
    assert p.phase == "Sum2" and p.task() == Task.SUM
    _assign(coord, [p], ["update"])
    p.tick()
    assert p.phase == "NewRound" and p.new_global_model() and p.task() == Task.SUM
    p.tick()
    assert p.phase == "Update" and p.task() == Task.UPDATE and p.public_key == key


def test_multipart_messages_with_max_message_size() -> None:
    coord = MiniCoordinator(model_length=2000)
    ps = _participants(coord, 4, max_message_size=1024)
    _assign(coord, ps, ["sum", "update", "update", "update"])
    rng = np.random.default_rng(1)
    models = {i: rng.uniform(-1, 1, 2000).astype(np.float32) for i in (1, 2, 3)}
    _run_round(coord, ps, models, max_ticks=200)
    assert coord.log.rejected == [] and coord.log.chunks > 3 * 11
    assert coord.log.max_body <= 1024
    expected = np.mean(list(models.values()), axis=0)
    model = ps[0].global_model(numpy=True)
    assert model is not None and np.allclose(model, expected, atol=1e-6)


def test_set_model_validation() -> None:
    coord = MiniCoordinator(model_length=3)
    (p,) = _participants(coord, 1)
    p.tick()
    with pytest.raises(LocalModelLengthMisMatch, match="2 != 3"):
        p.set_model([1.0, 2.0])
    with pytest.raises(compat.LocalModelDataTypeMisMatch):
        p.set_model([1.0, 2.0, "x"])
    p.set_model(np.zeros(3))


def test_constructor_errors() -> None:
    with pytest.raises(ParticipantInit, match="^failed to initialize participant: .*scheme"):
        Participant("ftp://x")
    with pytest.raises(ParticipantInit, match="at least 194"):
        Participant(URL, max_message_size=193)
    with pytest.raises(ParticipantInit):
        Participant(URL, timeout=-1)
    Participant(URL, max_message_size=194)
    state = Participant(URL).save()
    with pytest.raises(ParticipantRestore, match="^failed to restore participant: .*scheme"):
        Participant("data:x", state=state)
    with pytest.raises(ParticipantRestore, match="truncated"):
        Participant(URL, state=state[:50])
    assert issubclass(ParticipantRestore, XaynetError)


def test_save_consumes_the_participant() -> None:
    (p,) = _participants(MiniCoordinator(), 1)
    state = p.save()
    assert isinstance(state, list) and all(isinstance(b, int) for b in state)
    for call in (p.tick, p.save, p.made_progress, p.task, p.global_model):
        with pytest.raises(UninitializedParticipant, match="restore a new one"):
            call()
    with pytest.raises(UninitializedParticipant):
        p.set_model([])


def test_save_and_restore_mid_round_continues_the_round() -> None:
    coord = MiniCoordinator()
    ps = _participants(coord, 4)
    _assign(coord, ps, ["sum", "update", "update", "update"])
    for _ in range(2):  # the new round; the roles (and the sum participant's Sum message)
        for p in ps:
            p.tick()
    # The sum participant has composed its Sum message: save it and restore it elsewhere.
    summer = ps[0]
    key = summer.public_key
    assert summer.phase == "Sending"
    ps[0] = Participant(URL, state=summer.save(), transport=FakeTransport(coord))
    assert ps[0].public_key == key and ps[0].phase == "Sending"
    assert ps[0].new_global_model()  # restored: fetch the model once
    # An update participant with its model cached, saved and restored: the model survives.
    ps[1].set_model([0.1, 0.2, 0.3, 0.4])
    ps[1] = Participant(URL, state=ps[1].save(), transport=FakeTransport(coord))
    assert ps[1].task() == Task.UPDATE and not ps[1].should_set_model()
    _run_round(coord, ps, {2: [0.0] * 4, 3: [0.5] * 4})
    assert coord.log.rejected == [] and len(coord.log.updates) == 3
    model = ps[3].global_model()
    assert model == pytest.approx([0.2, 0.7 / 3, 0.8 / 3, 0.3], abs=1e-6)
    assert coord.global_model is not None
    assert abs(coord.global_model[3] - Fraction(3, 10)) < Fraction(1, 10**8)


def test_save_while_a_tick_is_blocked_returns_at_once() -> None:
    coord = MiniCoordinator()
    (p,) = _participants(coord, 1)
    transport: FakeTransport = p._transport  # type: ignore[assignment]
    release = threading.Event()
    transport.block = release
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            p.tick()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    thread = threading.Thread(target=tick)
    thread.start()
    time.sleep(0.1)
    start = time.monotonic()
    state = p.save()
    assert time.monotonic() - start < 5.0  # the blocked tick never returns by itself
    release.set()
    thread.join(5)
    assert len(errors) == 1 and isinstance(errors[0], UninitializedParticipant)
    restored = Participant(URL, state=state, transport=FakeTransport(coord))
    assert restored.phase == "Awaiting"


def test_restored_update_phase_asks_for_a_model_unless_one_is_cached() -> None:
    coord = MiniCoordinator()
    (p,) = _participants(coord, 1)
    _assign(coord, [p], ["update"])
    p.tick(), p.tick()
    r = Participant(URL, state=p.save(), transport=FakeTransport(coord))
    assert r.task() == Task.UPDATE and r.should_set_model()


def test_compat_module_exports() -> None:
    for name in (
        "CryptoInit",
        "GlobalModelDataTypeMisMatch",
        "GlobalModelUnavailable",
        "LocalModelDataTypeMisMatch",
        "LocalModelLengthMisMatch",
        "Participant",
        "ParticipantInit",
        "ParticipantRestore",
        "UninitializedParticipant",
        "init_logging",
    ):
        assert hasattr(compat, name)
    assert compat.Participant is Participant
