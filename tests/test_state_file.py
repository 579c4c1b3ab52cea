"""The state file (``state_file=``): created private, kept in step, resumed, never silently reset.

These tests drive the low-level participant over the byte-level mini coordinator, so every
tick is under the test's control; the SIGKILL storm with participants in subprocesses is
``test_state_file_kill.py``.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fault_servers import LogCapture  # noqa: E402
from participant_fakes import FakeTransport, MiniCoordinator, seed_for_roles  # noqa: E402

from xaynet_sdk import spawn_async_participant, spawn_participant  # noqa: E402
from xaynet_sdk import state_file as state_file_module  # noqa: E402
from xaynet_sdk.coordinator import LocalCoordinator, Settings  # noqa: E402
from xaynet_sdk.driver import Participant  # noqa: E402
from xaynet_sdk.exceptions import ParticipantInit, ParticipantRestore  # noqa: E402
from xaynet_sdk.protocol.saved import dump_state, load_state  # noqa: E402
from xaynet_sdk.protocol.state import Sending  # noqa: E402

URL = "http://127.0.0.1:1"
MODEL = [0.5, 1.0, -2.0, 3.0]


def participant(coord: MiniCoordinator, path: Path, **kw: Any) -> Participant:
    return Participant(URL, transport=FakeTransport(coord), state_file=path, **kw)  # type: ignore[arg-type]


def on_file(path: Path) -> bytes:
    return path.read_bytes()


def assign(coord: MiniCoordinator, ps: list[Participant], roles: list[str]) -> None:
    secrets = [p.state.shared.keys.secret for p in ps]
    coord.new_round(seed=seed_for_roles(secrets, roles, coord.sum_prob, coord.update_prob))


def posts(p: Participant) -> list[bytes]:
    transport: FakeTransport = p._transport  # type: ignore[assignment]
    return transport.posted


# ---------------------------------------------------------------------------------------------
# Creation, permissions
# ---------------------------------------------------------------------------------------------


def test_a_new_participant_creates_its_file_private_even_with_an_open_umask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.state"
    old = os.umask(0)
    try:
        p = participant(MiniCoordinator(), path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = load_state(on_file(path))
    assert saved.shared.keys.public == p.public_key
    assert on_file(path) == dump_state(p.state)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.state"]  # no temporary left


def test_a_file_that_cannot_be_created_is_an_init_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "p.state"
    with pytest.raises(ParticipantInit, match="missing-dir/p.state"):
        participant(MiniCoordinator(), path)


def test_loose_permissions_are_reported_once_and_tightened_at_the_next_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.state"
    coord = MiniCoordinator()
    participant(coord, path).save()
    path.chmod(0o644)
    with LogCapture(logging.WARNING) as logs:
        for _ in range(3):
            p = participant(coord, path)
        warnings = [r for r in logs.records if "0644" in r.message and str(path) in r.message]
    assert len(warnings) == 1, logs.records
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # nothing changed yet: nothing written
    p.tick()  # a new round: the state changed and is written, as a 0600 file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------------------------------------
# Kept in step: every changing tick, nothing for unchanged ones
# ---------------------------------------------------------------------------------------------


def test_every_tick_that_changes_the_state_is_on_file_and_others_write_nothing(
    tmp_path: Path,
) -> None:
    coord = MiniCoordinator()
    summer = Participant(URL, transport=FakeTransport(coord))  # type: ignore[arg-type]
    path = tmp_path / "p.state"
    p = participant(coord, path)
    persistence = p._persistence
    assert persistence is not None
    assign(coord, [summer, p], ["sum", "update"])
    p.tick()  # new round
    p.tick()  # update task; waits for the sum dict
    assert on_file(path) == dump_state(p.state)
    writes = persistence.writes
    for _ in range(3):  # /sums 204: nothing changes, nothing is written
        p.tick()
        assert not p.made_progress()
    assert persistence.writes == writes
    for _ in range(4):
        summer.tick()
    coord.advance()
    p.tick()  # the sum dict
    assert on_file(path) == dump_state(p.state) and persistence.writes == writes + 1
    p.set_model(MODEL)  # the local model is on file at once (training is not done twice)
    saved = load_state(on_file(path))
    assert saved.local_model is not None and list(saved.local_model) == MODEL
    p.tick()  # load, mask, seed dict, compose
    assert isinstance(p.state.phase, Sending)
    assert on_file(path) == dump_state(p.state)
    p.tick()  # the POST, then Awaiting
    assert coord.log.updates == [p.public_key]
    assert p.phase == "Awaiting" and on_file(path) == dump_state(p.state)
    writes = persistence.writes
    p.tick()
    assert persistence.writes == writes


# ---------------------------------------------------------------------------------------------
# Resume; no second, different message
# ---------------------------------------------------------------------------------------------


def test_killed_after_its_post_resumes_and_sends_the_same_message_again(tmp_path: Path) -> None:
    coord = MiniCoordinator()
    path = tmp_path / "p.state"
    p = participant(coord, path)
    assign(coord, [p], ["sum"])
    p.tick(), p.tick()
    assert isinstance(p.state.phase, Sending)
    # The POST goes out and the participant dies before it can record it: the file still
    # holds the Sending state (an abandoned object stands for the killed process).
    first = _post_without_recording(p)
    resumed = participant(coord, path)
    assert resumed.public_key == p.public_key
    assert isinstance(resumed.state.phase, Sending)
    resumed.tick()
    assert resumed.phase == "Sum2"
    (second,) = posts(resumed)
    opened = [_opened(coord, body) for body in (first, second)]
    assert opened[0] == opened[1]  # the very same signed message (only the sealing differs)
    assert list(coord.log.sums) == [p.public_key]
    assert len(coord.log.rejected) == 1 and "refused" in coord.log.rejected[0]


def _post_without_recording(p: Participant) -> bytes:
    """The participant's next POST, delivered to the coordinator, and nothing recorded."""
    from xaynet_sdk.protocol import machine

    request = machine.next_request(p.state)
    assert request is not None
    body: bytes = request.body  # type: ignore[union-attr]
    transport: FakeTransport = p._transport  # type: ignore[assignment]
    transport.coordinator.post(body)
    return body


def _opened(coord: MiniCoordinator, body: bytes) -> bytes:
    from xaynet_sdk.codec.crypto import open_sealed

    return open_sealed(body, coord.keys.public, coord.keys.secret)


def test_no_post_goes_out_before_its_state_is_on_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    coord = MiniCoordinator()
    path = tmp_path / "p.state"
    p = participant(coord, path)
    assign(coord, [p], ["sum"])
    p.tick()  # new round (on file)
    real_write = state_file_module.StateFile.write
    broken = {"on": True}

    def write(self: Any, raw: bytes) -> None:
        if broken["on"]:
            raise OSError(28, "No space left on device")
        real_write(self, raw)

    monkeypatch.setattr(state_file_module.StateFile, "write", write)
    with LogCapture(logging.WARNING) as logs:
        p.tick()  # composes the Sum message; the record fails
        assert isinstance(p.state.phase, Sending)
        for _ in range(3):
            p.tick()  # the message may not go out: the file holds an older state
            assert not p.made_progress()
        assert posts(p) == [] and coord.log.sums == {}
        errors = [r for r in logs.records if r.level == logging.ERROR]
        assert len(errors) == 1 and str(path) in errors[0].message
        broken["on"] = False
        p.tick()
    assert list(coord.log.sums) == [p.public_key] and len(posts(p)) == 1
    assert p.phase == "Sum2" and on_file(path) == dump_state(p.state)


def test_resume_keeps_identity_round_and_local_model(tmp_path: Path) -> None:
    coord = MiniCoordinator()
    summer = Participant(URL, transport=FakeTransport(coord))  # type: ignore[arg-type]
    path = tmp_path / "p.state"
    p = participant(coord, path)
    assign(coord, [summer, p], ["sum", "update"])
    p.tick(), p.tick()
    p.set_model(MODEL)
    resumed = participant(coord, path)  # p is abandoned: killed
    assert resumed.public_key == p.public_key
    assert resumed.round_params == coord.params and resumed.phase == "Update"
    assert resumed.should_set_model() is False  # the model survived: no second training
    assert resumed.state.local_model is not None
    assert list(resumed.state.local_model) == MODEL
    for _ in range(4):
        summer.tick()
    coord.advance()
    for _ in range(3):
        resumed.tick()
    assert coord.log.updates == [p.public_key]


def test_a_given_state_seeds_a_missing_file_and_both_with_an_existing_file_is_refused(
    tmp_path: Path,
) -> None:
    coord = MiniCoordinator()
    state = Participant(URL, transport=FakeTransport(coord)).save()  # type: ignore[arg-type]
    path = tmp_path / "p.state"
    p = participant(coord, path, state=state)
    assert p.public_key == load_state(state).shared.keys.public
    assert on_file(path) == bytes(state)
    with pytest.raises(ParticipantRestore, match="both state= and state_file="):
        participant(coord, path, state=state)


def test_leftover_temporaries_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "p.state"
    coord = MiniCoordinator()
    key = participant(coord, path).public_key
    leftover = tmp_path / ".p.state.0123456789ab.tmp"
    leftover.write_bytes(b"half a state")
    other = tmp_path / ".other.state.0123456789ab.tmp"
    other.write_bytes(b"another participant's")
    assert participant(coord, path).public_key == key
    assert not leftover.exists() and other.exists()


# ---------------------------------------------------------------------------------------------
# Unusable files: a clear error naming the file, never a fresh start
# ---------------------------------------------------------------------------------------------


def _corruptions(raw: bytes) -> dict[str, bytes]:
    flipped = bytearray(raw)
    flipped[raw.index(b"secret_key") + 20] ^= 0xFF  # inside the signing key
    return {
        "truncated": raw[: len(raw) // 2],
        "truncated by one byte": raw[:-1],
        "empty": b"",
        "key corrupted": bytes(flipped),
        "trailing bytes": raw + b"\x00",
        "not a state": b"\x93\x01\x02\x03",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "truncated",
        "truncated by one byte",
        "empty",
        "key corrupted",
        "trailing bytes",
        "not a state",
    ],
)
def test_an_unusable_file_is_an_error_naming_it_and_is_left_alone(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "p.state"
    coord = MiniCoordinator()
    participant(coord, path)
    bad = _corruptions(on_file(path))[kind]
    path.write_bytes(bad)
    with pytest.raises(ParticipantRestore) as info:
        participant(coord, path)
    message = str(info.value)
    assert str(path) in message and "nothing starts afresh" in message, message
    assert on_file(path) == bad
    with pytest.raises(ParticipantRestore, match=str(path)):
        spawn_participant(URL, object, state_file=path)  # type: ignore[arg-type]
    with pytest.raises(ParticipantRestore, match=str(path)):
        spawn_async_participant(URL, state_file=path)
    assert on_file(path) == bad


def test_a_truncated_file_says_truncated(tmp_path: Path) -> None:
    path = tmp_path / "p.state"
    participant(MiniCoordinator(), path)
    path.write_bytes(on_file(path)[:-3])
    with pytest.raises(ParticipantRestore, match="truncated"):
        participant(MiniCoordinator(), path)


# ---------------------------------------------------------------------------------------------
# The threaded APIs over a real coordinator
# ---------------------------------------------------------------------------------------------


def test_async_participant_file_matches_stop_and_resumes_with_the_same_key(
    tmp_path: Path,
) -> None:
    settings = Settings.for_tests(
        model_length=4,
        sum=0.5,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=0.3,
        min_update_time=0.3,
        min_sum2_time=0.2,
        max_sum_time=5.0,
        max_update_time=5.0,
        max_sum2_time=5.0,
    )
    path = tmp_path / "p.state"
    with LocalCoordinator(settings) as coord:
        handles = [spawn_async_participant(coord.url, timeout=2.0)[0] for _ in range(2)]
        first, notifier = spawn_async_participant(coord.url, state_file=path, timeout=2.0)
        try:
            assert notifier.wait(30)
            first.set_local_model([0.25, 0.5, 0.75, 1.0])
            for handle in handles:
                handle.set_local_model([0.0, 0.0, 0.0, 0.0])
            coord.wait_for_global_models(1, timeout=60)
        finally:
            for handle in handles:
                handle.stop()
        key = first.xaynet_participant.public_key
        state = first.stop()
        first.join(10)
        assert bytes(state) == on_file(path)
        again, _ = spawn_async_participant(coord.url, state_file=path, timeout=2.0)
        assert again.xaynet_participant.public_key == key
        assert bytes(again.stop()) == on_file(path)


def test_a_state_file_that_cannot_be_read_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "a-directory"
    path.mkdir()
    with pytest.raises(ParticipantRestore, match=f"cannot read the state file {path}"):
        participant(MiniCoordinator(), path)


def test_a_state_of_the_original_participant_moves_into_a_state_file(tmp_path: Path) -> None:
    import struct

    from test_protocol_state import _shared_bincode

    from xaynet_sdk.codec.crypto import SigningKeyPair
    from xaynet_sdk.protocol.saved import FORMAT

    coord = MiniCoordinator()
    keys = SigningKeyPair.generate()
    original = struct.pack("<I", 1) + _shared_bincode(keys, 0.5, None, coord.params.to_bytes())
    path = tmp_path / "p.state"
    p = participant(coord, path, state=original)
    assert p.public_key == keys.public
    assert FORMAT.encode() in on_file(path)  # converted: our versioned msgpack document
    resumed = participant(coord, path)
    assert resumed.public_key == keys.public and resumed.state.shared.scalar == 0.5
