"""Mixed rounds: the ORIGINAL participant (xaynet-sdk-python 0.1.0, in its own process) and
this package's participants in the same rounds of the local coordinator.

For each configuration the rounds go on until both directions of interoperation were seen
in completed rounds: one where a Sum2 mask of ours unmasked updates of original participants,
and one where an original's Sum2 mask unmasked updates of ours (every Sum2 mask accepted in
that round identical, so the one the coordinator used was that participant's; the Sum2
senders are recorded by a spy on the coordinator's round state). Every published global
model must be the scalar-weighted mean of exactly the update participants the coordinator
accepted (identified by their distinct local models), and both kinds of participant must
have fetched the same values for it.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from original.runner import OriginalParticipant  # noqa: E402
from participant_fakes import Fixed  # noqa: E402
from round_checks import contribution, converted, match_subset, model_of_round  # noqa: E402

from xaynet_sdk import (  # noqa: E402
    GlobalModelUnavailable,
    InternalParticipant,
    UninitializedParticipant,
    spawn_async_participant,
    spawn_participant,
)
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402

coordinator = pytest.importorskip("xaynet_sdk.coordinator")
LocalCoordinator = coordinator.LocalCoordinator
Settings = coordinator.Settings

pytestmark = [pytest.mark.original, pytest.mark.timeout(240)]

N_OURS = 3
N_ORIGINAL = 2


class PullFeeder:
    """The pull API as an application drives it: an AsyncParticipant with ``numpy=True``,
    and a thread that on each notification fetches the global model (a numpy array,
    recorded in ``seen`` as a list) and sets the local model for the round."""

    def __init__(
        self, url: str, model: Any, scalar: float, max_message_size: Optional[int]
    ) -> None:
        self.participant, self.notifier = spawn_async_participant(
            url, scalar=scalar, numpy=True, max_message_size=max_message_size
        )
        self.xaynet_participant = self.participant.xaynet_participant
        self.model = np.asarray(model)
        self.seen: list[list[Any]] = []
        self.arrays: list[np.ndarray] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while not self._stop.is_set():
            if not self.notifier.wait(0.1):
                continue
            try:
                model = self.participant.get_global_model()
                if model is not None:
                    assert isinstance(model, np.ndarray)
                    self.arrays.append(model)
                    self.seen.append(model.tolist())
                if self.xaynet_participant.round_params.model_length:
                    self.participant.set_local_model(self.model)
            except (GlobalModelUnavailable, UninitializedParticipant):
                pass

    def stop(self) -> list[int]:
        self._stop.set()
        state = self.participant.stop()
        self._thread.join(10)
        return state


def seen_by(p: Union[InternalParticipant, PullFeeder]) -> list[Any]:
    if isinstance(p, PullFeeder):
        return p.seen
    user = p.participant
    assert isinstance(user, Fixed)
    return user.seen


class Sum2Spy:
    """Records (round id, sender pk, mask bytes) of every Sum2 the coordinator accepts."""

    def __init__(self, coord: Any) -> None:
        self.records: list[tuple[int, bytes, bytes]] = []
        self.lock = threading.Lock()
        state = coord._state  # the round state behind the pipeline
        original = state.accept_sum2

        def spy(ticket: Any, pk: bytes, payload: Any, *rest: Any) -> None:
            original(ticket, pk, payload, *rest)  # raises if not accepted
            with self.lock:
                self.records.append(
                    (ticket.round.round_id, bytes(pk), payload.model_mask.to_bytes())
                )

        state.accept_sum2 = spy

    def unmaskers(self, round_id: int) -> tuple[set[bytes], int]:
        """The Sum2 senders of a round, and how many distinct masks they sent."""
        with self.lock:
            found = [(pk, mask) for r, pk, mask in self.records if r == round_id]
        return {pk for pk, _ in found}, len({mask for _, mask in found})


@dataclass
class Outcome:
    rounds: int = 0
    completed: int = 0
    #: Completed rounds in which a Sum2 mask of ours unmasked updates of originals (every
    #: mask of the round identical), and the converse.
    ours_unmask_theirs: int = 0
    theirs_unmask_ours: int = 0
    ours_update_rounds: int = 0
    ours0_mixed_rounds: int = 0
    subsets: list[list[str]] = field(default_factory=list)


def run_mixed(
    name: str,
    make_values: Callable[[np.random.Generator], Any],
    scalars: list[float],
    *,
    model_length: int = 4,
    max_message_size: Optional[int] = None,
    max_rounds: int = 20,
    min_completed: int = 2,
    seed: int = 0,
    pull: bool = False,
) -> Outcome:
    """With ``pull``, ours0 is an AsyncParticipant (``numpy=True``) fed by :class:`PullFeeder`,
    and one of its updates must be in a model with updates of originals."""
    config = MaskConfig.from_name(name)
    settings = Settings.for_tests(
        model_length=model_length,
        mask=name,
        sum=0.3,
        update=0.9,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=1.0,
        min_update_time=2.0,
        min_sum2_time=1.0,
        max_sum_time=6,
        max_update_time=8,
        max_sum2_time=6,
    )
    rng = np.random.default_rng(seed)
    values = [make_values(rng) for _ in range(N_OURS + N_ORIGINAL)]
    names = [f"ours{i}" for i in range(N_OURS)] + [f"orig{i}" for i in range(N_ORIGINAL)]
    parts = [contribution(n, v, s, config) for n, v, s in zip(names, values, scalars)]
    outcome = Outcome()
    with LocalCoordinator(settings) as coord:
        sum2 = Sum2Spy(coord)
        originals = [
            OriginalParticipant(
                coord.url,
                scalar=scalars[N_OURS + i],
                model=np.asarray(values[N_OURS + i]).tolist(),
                timeout=200,
            )
            for i in range(N_ORIGINAL)
        ]
        ours: list[Union[InternalParticipant, PullFeeder]] = []
        try:
            for op in originals:
                op.wait_for_event("started", timeout=30)
            ours = [
                PullFeeder(coord.url, values[i], scalars[i], max_message_size)
                if pull and i == 0
                else spawn_participant(
                    coord.url,
                    Fixed,
                    args=(values[i],),
                    scalar=scalars[i],
                    max_message_size=max_message_size,
                )
                for i in range(N_OURS)
            ]
            our_pks = {p.xaynet_participant.public_key for p in ours}
            deadline = time.monotonic() + 200
            checked = 0
            while time.monotonic() < deadline:
                history = list(coord.history)
                completed = [r for r in history if r.completed]
                while checked < len(completed):
                    record = completed[checked]
                    checked += 1
                    model = model_of_round(coord, record.round_id)
                    subset = match_subset(model, parts, config, size=record.update_count)
                    outcome.subsets.append(subset)
                    senders, masks = sum2.unmaskers(record.round_id)
                    assert senders and masks == 1, (record, len(senders), masks)
                    originals_in = any(n.startswith("orig") for n in subset)
                    ours_in = any(n.startswith("ours") for n in subset)
                    if senders & our_pks and originals_in:
                        outcome.ours_unmask_theirs += 1
                    if senders - our_pks and ours_in:
                        outcome.theirs_unmask_ours += 1
                    if ours_in and originals_in:
                        outcome.ours_update_rounds += 1
                    if "ours0" in subset and originals_in:
                        outcome.ours0_mixed_rounds += 1
                outcome.rounds = len(history)
                outcome.completed = len(completed)
                covered = outcome.ours_unmask_theirs and outcome.theirs_unmask_ours
                covered = covered and (outcome.ours0_mixed_rounds or not pull)
                if (covered and outcome.completed >= min_completed) or len(history) >= max_rounds:
                    break
                time.sleep(0.2)
            assert outcome.completed >= min_completed, f"{name}: {outcome} {coord.status()}"
            assert outcome.ours_unmask_theirs and outcome.theirs_unmask_ours, (
                f"{name}: coverage not reached: {outcome} {coord.status()}"
            )
            if pull:
                assert outcome.ours0_mixed_rounds, f"the async participant: {outcome}"
                feeder = ours[0]
                assert isinstance(feeder, PullFeeder) and feeder.arrays
                dtype = np.dtype(config.data_type.numpy_dtype)
                assert all(a.dtype == dtype and a.shape == (model_length,) for a in feeder.arrays)
            time.sleep(1.0)  # let everyone fetch the last model
            published = [converted(m, config.data_type.name) for m in coord.global_models]
            for op in originals:
                fetched = op.global_models()
                assert fetched, op.describe()
                for m in fetched:
                    assert m in published, f"original fetched a model nobody published: {m}"
            for p in ours:
                assert seen_by(p)
                for m in seen_by(p):
                    assert m in published
            shared = {tuple(m) for op in originals for m in op.global_models()} & {
                tuple(m) for p in ours for m in seen_by(p)
            }
            assert shared, "no global model was seen by both kinds of participant"
            for op in originals:
                assert not [e for e in op.errors() if e.get("fatal")], op.describe()
        finally:
            for p in ours:
                p.stop()
            for op in originals:
                op.stop()
    return outcome


def test_mixed_prime_f32_b0_m3_multipart() -> None:
    """A model of 6000 weights: our updates and sum2 masks (36 kB) go in 8 kB chunks."""
    outcome = run_mixed(
        "Prime/F32/B0/M3",
        lambda r: r.uniform(-1, 1, 6000).astype(np.float32),
        [1.0, 0.5, 0.25, 0.75, 1.0],
        model_length=6000,
        max_message_size=8192,
    )
    print(f"Prime/F32/B0/M3 (6000 weights, multipart): {outcome}")


def test_mixed_with_an_async_numpy_participant() -> None:
    """ours0 uses the pull API with numpy arrays: its updates are aggregated with the
    originals', and the arrays it fetched are the published models in its data type."""
    outcome = run_mixed(
        "Prime/F32/B0/M3",
        lambda r: r.uniform(-1, 1, 4).astype(np.float32),
        [1.0, 0.5, 0.25, 0.75, 1.0],
        seed=3,
        pull=True,
    )
    print(f"Prime/F32/B0/M3 with a pull participant: {outcome}")


def test_mixed_integer_f64_b2_m6() -> None:
    outcome = run_mixed(
        "Integer/F64/B2/M6",
        lambda r: r.uniform(-20, 20, 4),  # |scalar * weight| stays within B2 = 100
        [1.0, 2.0, 0.5, 4.0, 1.5],
        seed=1,
    )
    print(f"Integer/F64/B2/M6: {outcome}")


def test_mixed_prime_i32_bmax_m3() -> None:
    outcome = run_mixed(
        "Prime/I32/Bmax/M3",
        lambda r: r.integers(-(10**6), 10**6, 4).tolist(),
        [1.0, 3.0, 0.5, 2.0, 1.0],
        seed=2,
    )
    print(f"Prime/I32/Bmax/M3: {outcome}")


def test_migrate_a_live_original_participant() -> None:
    """Stop an original participant mid-round, restore its state in ours: same identity and
    scalar, and its updates keep reaching the global models."""
    from xaynet_sdk.protocol.saved import load_state

    config = MaskConfig.from_name("Prime/F32/B0/M3")
    settings = Settings.for_tests(
        model_length=4,
        sum=0.3,
        update=0.9,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=1.0,
        min_update_time=1.5,
        min_sum2_time=0.5,
        max_sum_time=5,
        max_update_time=5,
        max_sum2_time=5,
    )
    values = [
        [0.1, 0.2, 0.3, 0.4],
        [-0.5, 0.5, -0.5, 0.5],
        [0.9, -0.9, 0.0, 0.1],
        [0.7, 0.6, -0.2, -0.8],
    ]
    parts = [contribution(f"ours{i}", values[i], 1.0, config) for i in range(3)]
    parts.append(contribution("migrated", values[3], 0.5, config))
    with LocalCoordinator(settings) as coord:
        ours = [spawn_participant(coord.url, Fixed, args=(values[i],)) for i in range(3)]
        migrated: Optional[InternalParticipant] = None
        try:
            with OriginalParticipant(
                coord.url, scalar=0.5, model=values[3], timeout=120, save_state=True
            ) as op:
                op.wait_for_event("task", task="update", timeout=90)
            state = op.saved_state()
            assert state is not None, op.describe()
            restored = load_state(state)
            assert restored.shared.scalar == 0.5 and restored.shared.max_message_size is None
            migrated = spawn_participant(coord.url, Fixed, args=(values[3],), state=state)
            assert migrated.xaynet_participant.public_key == restored.shared.keys.public
            start_round = coord.round_id
            deadline = time.monotonic() + 90
            found = False
            while time.monotonic() < deadline and not found:
                for record in [r for r in coord.history if r.completed]:
                    if record.round_id < start_round:
                        continue
                    model = model_of_round(coord, record.round_id)
                    subset = match_subset(model, parts, config, size=record.update_count)
                    found = found or "migrated" in subset
                time.sleep(0.2)
            assert found, coord.status()
        finally:
            for p in ours:
                p.stop()
            if migrated is not None:
                migrated.stop()
