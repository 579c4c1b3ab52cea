"""End-to-end rounds of this package's participants against the local coordinator, over real
HTTP on loopback: global models, scalars, multipart messages, save and restore mid-run."""

from __future__ import annotations

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

from reference import ref_ratio_to_primitive  # noqa: E402
from round_checks import contribution, match_subset  # noqa: E402

from xaynet_sdk import InternalParticipant, ParticipantABC, spawn_participant  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402

coordinator = pytest.importorskip("xaynet_sdk.coordinator")
LocalCoordinator = coordinator.LocalCoordinator
Settings = coordinator.Settings

pytestmark = pytest.mark.timeout(120)


def _settings(**kw: Any) -> Any:
    """Short phases; a round without enough participants fails fast and the next one starts."""
    base = dict(
        sum=0.3,
        update=0.9,
        min_sum_time=0.5,
        min_update_time=1.0,
        min_sum2_time=0.5,
        max_sum_time=5,
        max_update_time=5,
        max_sum2_time=5,
    )
    base.update(kw)
    return Settings.for_tests(**base)


class Fixed(ParticipantABC):
    """Trains to a fixed local model; records the global models it was given."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.seen: list[Any] = []
        self.trained = 0
        self.lock = threading.Lock()

    def train_round(self, training_input: Optional[Any]) -> Any:
        with self.lock:
            self.trained += 1
        return self.model

    def serialize_training_result(self, training_result: Any) -> Any:
        return training_result

    def deserialize_training_input(self, global_model: Any) -> Any:
        return global_model

    def on_new_global_model(self, global_model: Optional[Any]) -> None:
        if global_model is not None:
            with self.lock:
                self.seen.append(global_model)


def _check_models(coord: Any, parts: list[Any], config: MaskConfig, n: int) -> list[list[str]]:
    models = coord.wait_for_global_models(n, timeout=90)
    completed = [r for r in coord.history if r.completed]
    subsets = []
    for model, record in zip(models, completed):
        subsets.append(match_subset(model, parts, config, size=record.update_count))
    return subsets


def test_three_rounds_with_scalars() -> None:
    config = MaskConfig.from_name("Prime/F32/B0/M3")
    settings = _settings(model_length=4)
    rng = np.random.default_rng(7)
    locals_ = [rng.uniform(-1, 1, 4).astype(np.float32) for _ in range(6)]
    scalars = [1.0, 0.5, 0.25, 0.75, 1.0, 0.125]
    parts = [contribution(f"p{i}", m, s, config) for i, (m, s) in enumerate(zip(locals_, scalars))]
    with LocalCoordinator(settings) as coord:
        ps: list[InternalParticipant] = [
            spawn_participant(coord.url, Fixed, args=(m,), scalar=s)
            for m, s in zip(locals_, scalars)
        ]
        try:
            subsets = _check_models(coord, parts, config, 3)
        finally:
            states = [p.stop() for p in ps]
    assert all(len(s) >= 3 for s in subsets)
    assert all(isinstance(s, list) for s in states)
    # Every participant that saw a model saw it as the original would: f32 values as floats.
    published = [
        [ref_ratio_to_primitive(w.numerator, w.denominator, "F32") for w in m]
        for m in coord.global_models
    ]
    for p in ps:
        user = p.participant
        assert isinstance(user, Fixed)
        for seen in user.seen:
            assert isinstance(seen, list) and seen in published


def test_integer_and_bmax_configurations() -> None:
    for name, values in (
        ("Integer/F64/B2/M6", lambda r: r.uniform(-20, 20, 5)),  # |scalar * w| <= 100
        ("Prime/I32/Bmax/M3", lambda r: r.integers(-(10**6), 10**6, 5)),
    ):
        config = MaskConfig.from_name(name)
        settings = _settings(
            model_length=5, mask=name, min_update_count=1, insecure_min_counts=True
        )
        rng = np.random.default_rng(3)
        locals_ = [values(rng) for _ in range(5)]
        scalars = [1.0, 2.0, 0.5, 1.5, 4.0]
        parts = [
            contribution(f"p{i}", m, s, config) for i, (m, s) in enumerate(zip(locals_, scalars))
        ]
        with LocalCoordinator(settings) as coord:
            ps = [
                spawn_participant(coord.url, Fixed, args=(m.tolist(),), scalar=s)
                for m, s in zip(locals_, scalars)
            ]
            try:
                _check_models(coord, parts, config, 1)
            finally:
                for p in ps:
                    p.stop()


def test_multipart_round_with_a_large_model() -> None:
    n = 20_000
    config = MaskConfig.from_name("Prime/F32/B0/M3")
    settings = _settings(model_length=n, min_update_count=1, insecure_min_counts=True)
    rng = np.random.default_rng(11)
    locals_ = [rng.uniform(-1, 1, n).astype(np.float32) for _ in range(5)]
    parts = [contribution(f"p{i}", m, 1.0, config) for i, m in enumerate(locals_)]
    with LocalCoordinator(settings) as coord:
        ps = [
            spawn_participant(coord.url, Fixed, args=(m,), max_message_size=16384, numpy=True)
            for m in locals_
        ]
        try:
            _check_models(coord, parts, config, 1)
            deadline = time.monotonic() + 20  # the model is fetched when the next round starts
            while time.monotonic() < deadline and not any(
                p.participant.seen
                for p in ps  # type: ignore[union-attr]
            ):
                time.sleep(0.05)
            stats = coord.stats
        finally:
            for p in ps:
                p.stop()
    # Every message went in chunks of at most 16 KiB: an update is 20000 * 6 bytes.
    post_statuses = stats["http"].get("POST /message", {})
    assert sum(post_statuses.values()) >= 3 * (n * 6 // 16000)
    seen = [p.participant.seen for p in ps if p.participant.seen]  # type: ignore[union-attr]
    assert seen and all(isinstance(s[0], np.ndarray) for s in seen)


def test_stop_and_restore_keeps_identity_and_takes_part_again() -> None:
    """The restored participant trains a model of its own ("p0 restored"), distinct from every
    other: a later global model that is exactly the mean of a subset containing it proves
    that an update signed with the restored key was accepted and aggregated."""
    config = MaskConfig.from_name("Prime/F32/B0/M3")
    settings = _settings(model_length=4, min_update_count=1, insecure_min_counts=True)
    # Random models: no two subsets share a mean (an arithmetic series would: {0, 2, 4} and
    # {1, 2, 3}).
    rng = np.random.default_rng(19)
    locals_ = [rng.uniform(-1, 1, 4).astype(np.float32).tolist() for _ in range(5)]
    restored_model = rng.uniform(-1, 1, 4).astype(np.float32).tolist()
    parts = [contribution(f"p{i}", m, 1.0, config) for i, m in enumerate(locals_)]
    parts.append(contribution("p0 restored", restored_model, 1.0, config))
    with LocalCoordinator(settings) as coord:
        ps = [spawn_participant(coord.url, Fixed, args=(m,)) for m in locals_]
        try:
            coord.wait_for_global_models(1, timeout=60)
            key = ps[0].xaynet_participant.public_key
            state = ps[0].stop()
            time.sleep(0.3)
            ps[0] = spawn_participant(coord.url, Fixed, args=(restored_model,), state=state)
            assert ps[0].xaynet_participant.public_key == key
            restored_at = time.monotonic()
            # p0 is an update participant of a round with probability 0.63: 20 rounds
            # without it happen once in 10^8 runs.
            found: list[str] = []
            for n in range(2, 22):
                coord.wait_for_global_models(n, timeout=60)
                models = coord.global_models
                completed = [r for r in coord.history if r.completed]
                for model, record in zip(models, completed):
                    if record.started > restored_at:
                        found = match_subset(model, parts, config, size=record.update_count)
                        if "p0 restored" in found:
                            break
                if "p0 restored" in found:
                    break
        finally:
            for p in ps:
                p.stop()
    assert "p0 restored" in found, "no global model after the restore contains its update"
