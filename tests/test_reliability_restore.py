"""Stop and restore anywhere: participants stopped at random moments of live rounds.

Six participants (three with the pull API, whose local models the test sets, and three with
the callback API) take part in short rounds of a local coordinator over loopback HTTP. A
seeded loop stops a random participant at a random moment, :data:`N_STOPS` times, and
restores it at once from the state ``stop()`` returned. Checked at every stop and at the end:

* ``stop()`` and the restore never raise; the restored participant has the same identity;
* the local model is never lost: a model the test set is, at the stop, either still in the
  saved state or was taken by an update task (recorded by a spy on the Update phase's load
  step), and the restored participant holds exactly the saved model;
* never two different messages of one kind from one participant in one round: every Sum,
  Update and Sum2 that reached the coordinator's round state is recorded, and a participant
  may resend its message (the same one: it cannot know whether a POST cut by the stop
  arrived) but never send another;
* rounds keep completing during the storm and after it, and nothing is logged as an error;
* every global model is exact: the mean of exactly the local models that the participants
  whose updates the coordinator accepted in that round had taken (found by subset match
  among the models each took in that round, one per participant).

The seed is printed with every failure; set ``XAYNET_RESTORE_SEED`` to replay a schedule.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fault_servers import FaultProxy, LogCapture  # noqa: E402
from participant_fakes import Fixed  # noqa: E402
from round_checks import Contribution, contribution, match_subset  # noqa: E402

from xaynet_sdk import (  # noqa: E402
    AsyncParticipant,
    InternalParticipant,
    Participant,
    spawn_async_participant,
    spawn_participant,
)
from xaynet_sdk.coordinator import LocalCoordinator, Settings  # noqa: E402
from xaynet_sdk.coordinator.state import Ticket  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402
from xaynet_sdk.protocol import update as update_phase  # noqa: E402
from xaynet_sdk.protocol.saved import load_state  # noqa: E402
from xaynet_sdk.protocol.state import ParticipantState, Sending, Update  # noqa: E402

pytestmark = pytest.mark.timeout(150)

SEED = int(os.environ.get("XAYNET_RESTORE_SEED", "20240611"))
N_STOPS = 150
#: Latency of every POST (well below the timeout: slow, not failing).
POST_LATENCY = 0.15
MODEL_LENGTH = 8
TIMEOUT = 2.0

Handle = Union[AsyncParticipant, InternalParticipant]


def settings() -> Settings:
    return Settings.for_tests(
        model_length=MODEL_LENGTH,
        sum=0.35,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=0.6,
        min_update_time=1.0,
        min_sum2_time=0.5,
        max_sum_time=2.5,
        max_update_time=2.5,
        max_sum2_time=2.5,
    )


# ---------------------------------------------------------------------------------------------
# Spies
# ---------------------------------------------------------------------------------------------


class MessageSpy:
    """Records every Sum, Update and Sum2 that reaches the coordinator's round state.

    Each record is (round id, kind, participant pk, digest of what the message carries: the
    ephemeral key, the masked model, the mask) and whether it was accepted; ``seeds`` maps
    each round id to its round seed.
    """

    def __init__(self, coord: LocalCoordinator) -> None:
        self.records: list[tuple[int, str, bytes, bytes, bool]] = []
        self.seeds: dict[int, bytes] = {}
        self.lock = threading.Lock()
        state = coord._state  # the round state behind the pipeline
        for kind, name, digest in (
            ("sum", "accept_sum", lambda p: bytes(p.ephm_pk)),
            ("update", "accept_update", lambda p: _sha(p.masked_model.to_bytes())),
            ("sum2", "accept_sum2", lambda p: _sha(p.model_mask.to_bytes())),
        ):
            setattr(state, name, self._wrap(kind, getattr(state, name), digest))

    def _wrap(self, kind: str, original: Any, digest: Any) -> Any:
        def spy(ticket: Ticket, pk: bytes, payload: Any, *rest: Any) -> None:
            accepted = False
            try:
                original(ticket, pk, payload, *rest)
                accepted = True
            finally:
                with self.lock:
                    self.seeds[ticket.round.round_id] = bytes(ticket.round.params.seed)
                    self.records.append(
                        (ticket.round.round_id, kind, bytes(pk), digest(payload), accepted)
                    )

        return spy

    def check(self) -> dict[str, int]:
        """At most one distinct message per (round, kind, pk); returns counts for the report."""
        with self.lock:
            records = list(self.records)
        distinct: dict[tuple[int, str, bytes], set[bytes]] = defaultdict(set)
        accepted: Counter[tuple[int, str, bytes]] = Counter()
        for round_id, kind, pk, digest, ok in records:
            distinct[(round_id, kind, pk)].add(digest)
            accepted[(round_id, kind, pk)] += ok
        doubles = {k: len(v) for k, v in distinct.items() if len(v) > 1}
        assert not doubles, f"two different messages from one participant in a round: {doubles}"
        assert max(accepted.values(), default=0) <= 1
        return {
            "messages": len(records),
            "resent": len(records) - len(distinct),
            "accepted_updates": sum(n for (_, kind, _), n in accepted.items() if kind == "update"),
        }

    def accepted_updaters(self, round_id: int) -> list[bytes]:
        """The participants whose update was accepted in round ``round_id``."""
        with self.lock:
            return [p for r, k, p, _, ok in self.records if r == round_id and k == "update" and ok]

    def accepted_updates_from(self, pk: bytes) -> int:
        with self.lock:
            return sum(1 for _, k, p, _, ok in self.records if k == "update" and p == pk and ok)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class TakeSpy:
    """Records (participant pk, model bytes) each time an Update phase takes the local model,
    and by (pk, round seed) the models taken in each round."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.taken: set[tuple[bytes, bytes]] = set()
        self.taken_in: defaultdict[tuple[bytes, bytes], set[bytes]] = defaultdict(set)
        self.lock = threading.Lock()
        original = update_phase._load_model

        def load_model(state: ParticipantState, phase: Update) -> Any:
            transition = original(state, phase)
            model = state.local_model
            if transition.progress and model is not None:
                pk = state.shared.keys.public
                with self.lock:
                    self.taken.add((pk, model.tobytes()))
                    self.taken_in[(pk, bytes(state.round_params.seed))].add(model.tobytes())
            return transition

        monkeypatch.setattr(update_phase, "_load_model", load_model)

    def was_taken(self, pk: bytes, model: np.ndarray) -> bool:
        with self.lock:
            return (pk, model.tobytes()) in self.taken


# ---------------------------------------------------------------------------------------------
# Participants
# ---------------------------------------------------------------------------------------------


@dataclass
class Slot:
    """One participant identity across its stops and restores."""

    index: int
    pull: bool  # AsyncParticipant (the test sets its models) or callback participant
    handle: Handle
    pk: bytes = b""
    model: Optional[np.ndarray] = None  # the last model the test set (pull API)
    models_set: int = 0
    retired: list[Handle] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pk = self.handle.xaynet_participant.public_key


def callback_model(index: int) -> list[float]:
    return [0.1 * index, -0.5, 0.125 * index] + [0.125] * (MODEL_LENGTH - 3)


def spawn(url: str, index: int, pull: bool, state: Optional[list[int]] = None) -> Handle:
    if pull:
        participant, _ = spawn_async_participant(url, state=state, timeout=TIMEOUT)
        return participant
    return spawn_participant(
        url, Fixed, args=(callback_model(index),), state=state, timeout=TIMEOUT
    )


def phase_name(state: ParticipantState) -> str:
    phase = state.phase
    if isinstance(phase, Sending):
        return f"Sending{phase.kind.value.capitalize()}"
    if isinstance(phase, Update):
        step = (
            "seed_dict"
            if phase.has_built_seed_dict()
            else "masked"
            if phase.has_masked_model()
            else "loaded"
            if phase.has_loaded_model()
            else "sums"
            if phase.has_fetched_sum_dict()
            else "start"
        )
        return f"Update/{step}"
    return type(phase).__name__


def test_stop_and_restore_at_random_moments(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(SEED)
    context = f"seed={SEED} (XAYNET_RESTORE_SEED replays the schedule)"
    takes = TakeSpy(monkeypatch)
    phases: Counter[str] = Counter()
    with (
        LogCapture() as logs,
        LocalCoordinator(settings()) as coord,
        FaultProxy(coord.url, slow_delay=POST_LATENCY) as proxy,
    ):
        # Every POST takes a while, so that many stops cut one: the restored participant
        # cannot know whether its message arrived and must send the same one again.
        proxy.set_fault("slow", {"/message"})
        url = proxy.url
        messages = MessageSpy(coord)
        slots = [Slot(i, i < 3, spawn(url, i, i < 3)) for i in range(6)]
        stops = 0
        try:
            coord.wait_for_global_models(1, timeout=30)
            for slot in slots:
                if slot.pull:  # it joined a round: the model length is known
                    assert slot.handle.xaynet_participant.round_params.model_length > 0
                    set_new_model(slot)
            start = time.monotonic()
            completed_before = coord.stats["rounds_completed"]
            while stops < N_STOPS:
                time.sleep(rng.uniform(0.0, 0.25))
                slot = slots[rng.randrange(len(slots))]
                if slot.pull and (
                    slot.model is None or takes.was_taken(slot.pk, slot.model) or rng.random() < 0.2
                ):
                    set_new_model(slot)
                try:
                    phases[stop_and_restore(slot, url, takes)] += 1
                except AssertionError as e:
                    raise AssertionError(f"stop {stops + 1}: {e}; {context}") from None
                stops += 1
            storm = time.monotonic() - start
            completed_during = coord.stats["rounds_completed"] - completed_before
            # With no more stops the rounds go on (each one needs a summer and an update).
            published = coord.stats["global_models"]
            coord.wait_for_global_models(published + 2, timeout=30)
            summary = messages.check()
            summary["models_checked"] = check_every_model(coord, messages, takes)
        except AssertionError as e:
            raise AssertionError(f"{e}; {context}") from None
        finally:
            for slot in slots:
                if not slot.handle.xaynet_participant.closed:
                    slot.handle.stop()
        report = {
            "seed": SEED,
            "stops": stops,
            "restores": stops,
            "storm_s": round(storm, 1),
            "rounds_completed_during": completed_during,
            "rounds_failed": coord.stats["rounds_failed"],
            **summary,
            "models_set": sum(s.models_set for s in slots),
            "phases_at_stop": dict(phases.most_common()),
            "rejected": coord.stats["rejected"],
            "posts": sum(1 for r in proxy.records if r.method == "POST"),
        }
        print(f"\nRESTORE-REPORT {report}")
        assert completed_during >= 3, f"rounds stalled during the storm: {report}; {context}"
        assert summary["models_checked"] >= completed_during, report
        for slot in slots:
            if slot.pull:
                # Each pull participant's models reached the coordinator at least once.
                assert messages.accepted_updates_from(slot.pk) >= 1, (slot.index, context)
        for slot in slots:
            for old in slot.retired:
                old.join(TIMEOUT + 2)
                assert not old.is_alive(), "a stopped participant's thread did not end"
        bad = [
            r
            for r in logs.participant_records(level=logging.ERROR)
            if r.has_traceback or "unrecoverable" in r.message
        ]
        assert not bad, f"{bad}; {context}"


def set_new_model(slot: Slot) -> None:
    """The pull API's training loop: a new local model (unique values) for the next update."""
    slot.models_set += 1
    model = np.array(
        [0.1 * slot.index, 0.001 * slot.models_set, 0.5]
        + [0.125 * slot.index] * (MODEL_LENGTH - 3),
        dtype=np.float32,
    )
    handle = slot.handle
    assert isinstance(handle, AsyncParticipant)
    handle.set_local_model(model)
    slot.model = model


def stop_and_restore(slot: Slot, url: str, takes: TakeSpy) -> str:
    """Stop the slot's participant, check the saved state, restore it; the phase at the stop."""
    state = slot.handle.stop()
    saved = load_state(state)
    assert saved.shared.keys.public == slot.pk
    held = saved.local_model
    if slot.pull and slot.model is not None:
        kept = held is not None and np.array_equal(held, slot.model)
        assert kept or takes.was_taken(slot.pk, slot.model), (
            f"participant {slot.index}: the local model was lost (saved in phase"
            f" {phase_name(saved)}, holding {held})"
        )
        if not kept:
            slot.model = None  # taken by an update task: the next one needs a new model
    # What a restore from this state holds, before any tick could take the model.
    probe = Participant(url, state=state)
    probe_model = probe.state.local_model
    probe.save()
    if held is None:
        assert probe_model is None
    else:
        assert probe_model is not None and np.array_equal(probe_model, held), (
            f"participant {slot.index}: the restored local model differs from the saved one"
        )
    slot.retired.append(slot.handle)
    slot.handle = spawn(url, slot.index, slot.pull, state)
    assert slot.handle.xaynet_participant.public_key == slot.pk
    return phase_name(saved)


def check_every_model(coord: LocalCoordinator, messages: MessageSpy, takes: TakeSpy) -> int:
    """Each global model is the mean of one model taken by each accepted update participant
    of its round (scalars 1); returns how many models were checked."""
    config = MaskConfig.from_name("Prime/F32/B0/M3")
    completed = [r for r in coord.history if r.completed]
    models = coord.global_models
    assert len(models) == len(completed), (len(models), len(completed))
    for record, model in zip(completed, models):
        updaters = messages.accepted_updaters(record.round_id)
        assert len(updaters) == record.update_count, (record, len(updaters))
        seed = messages.seeds[record.round_id]
        candidates: list[Contribution] = []
        for pk in updaters:
            taken = takes.taken_in.get((pk, seed), set())
            assert taken, f"round {record.round_id}: an accepted update whose model none took"
            for i, raw in enumerate(sorted(taken)):
                values = np.frombuffer(raw, dtype=np.float32).tolist()
                candidates.append(contribution(f"{pk.hex()}/{i}", values, 1.0, config))
        names = match_subset(model, candidates, config, size=len(updaters))
        assert sorted(n.split("/")[0] for n in names) == sorted(pk.hex() for pk in updaters), (
            f"round {record.round_id}: the global model is not one model of each updater"
        )
    return len(models)
