"""Round logic of the local coordinator with raw participants over real HTTP.

Complete rounds for several configurations, the global model (exact fractions, ``GET /model``,
``.npy`` files), failing rounds (timeouts, ambiguous masks, zero scalars), participants that
disappear, the phase-change races the original loses messages in (docs/PROTOCOL.md section 13.3),
and a clean stop.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, TypeVar

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import (  # noqa: E402
    RawClient,
    RawParticipant,
    RoundContext,
    assert_model_close,
    local_coordinator,
    raw_round_settings,
    run_round,
)

from xaynet_sdk.codec import RoundParameters  # noqa: E402
from xaynet_sdk.codec.message import Sum2Payload  # noqa: E402
from xaynet_sdk.coordinator import Limits, LocalCoordinator, Phase  # noqa: E402
from xaynet_sdk.coordinator.pipeline import Outcome  # noqa: E402
from xaynet_sdk.coordinator.state import decode_model_fractions  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402
from xaynet_sdk.mask.model import decode_global_model  # noqa: E402
from xaynet_sdk.mask.objects import MaskObject  # noqa: E402

__all__ = ["local_coordinator"]


@pytest.mark.parametrize(
    ("mask", "length", "scalars"),
    [
        ("Prime/F32/B0/M3", 4, [1.0, 0.5, 0.25]),
        ("Integer/F64/B2/M6", 3000, [1.0, 1.0, 2.0]),
        ("Prime/F32/Bmax/M3", 16, [1.0, 3.0, 0.5]),
        ("Power2/I64/B4/M9", 8, [1.0, 1.0, 1.0]),
        ("Integer/I32/Bmax/M12", 5, [0.5, 1.0, 1.0]),
    ],
)
def test_rounds_publish_the_weighted_mean(
    local_coordinator,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    mask: str,
    length: int,
    scalars: list[float],
) -> None:
    coord = local_coordinator(
        raw_round_settings(mask=mask, model_length=length, model_dir=tmp_path)
    )
    config = MaskConfig.from_name(mask)
    integer = not config.data_type.is_float
    for round_no in range(2):
        models = [
            [
                (((i + 1) * (j + 3 + round_no) % 61) - 30) * (1 if integer else 1 / 64)
                for j in range(length)
            ]
            for i in range(3)
        ]
        run_round(coord, models=models, scalars=scalars)  # asserts the exact weighted mean
    history = coord.history
    assert [(h.round_id, h.completed, h.update_count) for h in history] == [
        (1, True, 3),
        (2, True, 3),
    ]
    # GET /model serves the latest; the .npy files hold what a participant would decode.
    client = RawClient(coord.url)
    served = client.model_bytes()
    client.close()
    assert served is not None and decode_model_fractions(served) == coord.global_model
    files = sorted(tmp_path.glob("*.npy"))
    assert [f.name for f in files] == [
        "global_model_round_000001.npy",
        "global_model_round_000002.npy",
    ]
    saved = np.load(files[-1])
    assert saved.dtype == np.dtype(config.data_type.numpy_dtype) and saved.shape == (length,)
    assert np.array_equal(saved, decode_global_model(served, config.data_type))


def test_failed_rounds_restart_and_keep_the_model(
    local_coordinator,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No sum participant: the Sum phase times out at max_sum_time, a new round starts."""
    coord = local_coordinator(raw_round_settings(max_sum_time=0.4, max_update_time=0.4))
    with caplog.at_level(logging.INFO, logger="xaynet_sdk.coordinator"):
        run_round(coord)
        start = time.monotonic()
        coord.wait_for_round(3, 5)  # round 2 fails by itself
        elapsed = time.monotonic() - start
        # Round 3: the sum participants come, the update participants do not.
        client = RawClient(coord.url)
        params = client.params()
        for _ in range(2):
            s = RawParticipant.with_role(params, "sum")
            client.post(s.sealed(params, s.sum_payload(params)))
        coord.wait_for_round(4, 5)
        client.close()
    # It failed by its own timeout (0.4 s), not at once; the upper bound is for a loaded machine.
    assert 0.3 < elapsed < 5.0
    history = coord.history
    assert [h.completed for h in history] == [True, False, False]
    assert "Sum phase timed out" in (history[1].failure or "")
    assert "Update phase timed out" in (history[2].failure or "")
    assert history[2].sum_count == 2
    stats = coord.stats
    assert stats["round_failures"] == {"sum_timeout": 1, "update_timeout": 1}
    assert stats["rounds_completed"] == 1 and stats["global_models"] == 1
    assert coord.global_model is not None  # survives failed rounds
    messages = [r.getMessage() for r in caplog.records]
    assert any("round 2 failed: the Sum phase timed out" in m for m in messages)
    assert any(
        "round 1: Sum -> Update" in m and "2 accepted (min 2, max 100)" in m for m in messages
    )
    assert any("round 1: Update -> Sum2" in m for m in messages)
    assert any("round 1: Sum2 -> Unmask" in m for m in messages)
    assert any("round 1 completed" in m for m in messages)
    run_round(coord)  # and rounds complete again


def test_ambiguous_masks_fail_the_round(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """Two sum participants, two different (valid) masks: a tie, no model, next round."""
    coord = local_coordinator(raw_round_settings())

    def forge(ctx: RoundContext) -> None:
        # The first summer's Sum2 is in; make the last one send a different valid mask.
        last = ctx.summers[-1]
        n = ctx.params.model_length
        other = MaskObject.from_ints(ctx.params.mask_config, [7] * n, 7)
        ctx.sent["sum2"][-1] = last.sealed(
            ctx.params, Sum2Payload(last.sum_signature(ctx.params), other)
        )

    run_round(coord, hooks={"sum2": forge}, expect_model=False)
    coord.wait_for_round(2, 10)
    (record,) = coord.history
    assert not record.completed and "ambiguous masks" in (record.failure or "")
    assert coord.stats["round_failures"] == {"ambiguous_masks": 1}
    assert coord.stats["accepted"]["Sum2"] == 2 and coord.stats["rejected"] == {}
    assert coord.global_model is None


def test_the_mask_with_most_votes_unmasks(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """Three sum participants, one of them with a different (valid) mask: masks are counted
    by value (two equal masks arrive as two distinct objects), and the majority's unmasks."""
    coord = local_coordinator(raw_round_settings(min_sum_count=3, min_sum2_count=3))

    def forge(ctx: RoundContext) -> None:
        # two honest Sum2 messages are in; the last sum participant sends another mask
        last = ctx.summers[-1]
        n = ctx.params.model_length
        other = MaskObject.from_ints(ctx.params.mask_config, [7] * n, 7)
        ctx.sent["sum2"][-1] = last.sealed(
            ctx.params, Sum2Payload(last.sum_signature(ctx.params), other)
        )

    run_round(coord, n_summers=3, hooks={"sum2": forge})  # checks the global model
    assert coord.stats["accepted"]["Sum2"] == 3 and coord.stats["rejected"] == {}
    (record,) = coord.history
    assert record.completed


def test_zero_scalars_fail_the_round_without_crashing(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """All scalars 0: the original coordinator panics (division by zero); here the round fails."""
    coord = local_coordinator(raw_round_settings())
    run_round(coord, scalars=[0.0, 0.0, 0.0], expect_model=False)
    coord.wait_for_round(2, 10)
    (record,) = coord.history
    assert not record.completed and "scalars sum to zero" in (record.failure or "")
    assert coord.stats["round_failures"] == {"unmask_failed": 1}
    run_round(coord)  # the coordinator carries on
    assert coord.stats["rounds_completed"] == 1


def test_a_sum_participant_that_disappears(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """One of two summers never sends Sum2: the other's mask suffices (min_sum2_count 1).
    The only summer disappearing: Sum2 times out at max_sum2_time, and the next round runs."""
    coord = local_coordinator(raw_round_settings(min_sum2_count=1, max_sum2_time=0.5))
    vanished = RawParticipant()

    def at_sum(ctx: RoundContext) -> None:
        nonlocal vanished
        vanished = RawParticipant.with_role(ctx.params, "sum")
        assert ctx.client.post(vanished.sealed(ctx.params, vanished.sum_payload(ctx.params))) == 200

    run_round(coord, hooks={"sum": at_sum})  # 3 summers registered, 2 send Sum2
    assert coord.history[-1].sum_count == 3 and coord.history[-1].sum2_count == 2

    # Round 2: the only summer vanishes after Sum.
    coord.wait_for_round(2, 10)
    client = RawClient(coord.url)
    params = client.params()
    summer = RawParticipant.with_role(params, "sum")
    other = RawParticipant.with_role(params, "sum")
    for s in (summer, other):
        client.post(s.sealed(params, s.sum_payload(params)))
    coord.wait_for_phase(Phase.UPDATE, 10, 2)
    sum_dict = client.sums()
    assert sum_dict is not None
    for _ in range(3):
        u = RawParticipant.with_role(params, "update")
        client.post(u.sealed(params, u.update_payload(params, sum_dict, [0.5] * 4)))
    coord.wait_for_phase(Phase.SUM2, 10, 2)
    start = time.monotonic()
    coord.wait_for_round(3, 10)
    assert time.monotonic() - start < 0.5 + 5.0  # max_sum2_time, plus a loaded machine's slack
    assert "Sum2 phase timed out" in (coord.history[-1].failure or "")
    client.close()
    run_round(coord)


# ----------------------------------------------------------------------------- the races of 13.3


T = TypeVar("T")


def _spin(fetch: Callable[[], Optional[T]], timeout: float = 30.0) -> T:
    """``fetch()`` again and again without sleeping until it gives something; fails after
    ``timeout`` seconds (a coordinator that never publishes must not hang the suite)."""
    deadline = time.monotonic() + timeout
    while (value := fetch()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing published within {timeout} s")
    return value


def test_no_update_or_sum2_is_lost_at_publication(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """Participants that poll /sums (/seeds) as fast as they can and post the instant it
    returns 200 are always accepted: the dictionary is published in the same critical
    section that opens the phase. The original drops messages in that window."""
    coord = local_coordinator(
        raw_round_settings(min_sum_count=1, min_update_count=6, min_sum2_count=1, min_sum_time=0.2)
    )
    rounds = 3
    for _ in range(rounds):
        round_id = coord.wait_for_phase(Phase.SUM, 10)
        client = RawClient(coord.url)
        params = client.params()
        summer = RawParticipant.with_role(params, "sum")
        updaters = [RawParticipant.with_role(params, "update") for _ in range(6)]
        errors: list[BaseException] = []

        def update_racer(
            u: RawParticipant, params: RoundParameters, errors: list[BaseException]
        ) -> None:
            try:
                c = RawClient(coord.url)
                sums = _spin(c.sums)  # no sleep: hit the publication as early as possible
                assert c.post(u.sealed(params, u.update_payload(params, sums, [0.25] * 4))) == 200
                c.close()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [
            threading.Thread(target=update_racer, args=(u, params, errors)) for u in updaters
        ]
        for t in threads:
            t.start()
        assert client.post(summer.sealed(params, summer.sum_payload(params))) == 200
        for t in threads:
            t.join(20)
        seeds = _spin(functools.partial(client.seeds, summer.pk))
        assert client.post(summer.sealed(params, summer.sum2_payload(params, seeds))) == 200
        coord.wait_for_round(round_id + 1, 10)
        client.close()
        assert not errors, errors
    stats = coord.stats
    assert stats["rejected"] == {}
    assert stats["accepted"] == {"Sum": rounds, "Update": 6 * rounds, "Sum2": rounds}
    assert stats["rounds_completed"] == rounds


def test_a_message_in_flight_when_the_phase_ends_is_still_accepted(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """A message whose body arrived while its phase was open is judged in that phase, even if
    its processing outlasts the phase's end condition (here: paused inside the pipeline)."""
    coord = local_coordinator(raw_round_settings(), limits=Limits(inflight_grace=10))
    pipeline = coord._pipeline  # internal: pause one message between arrival and processing
    original = pipeline._process
    paused = threading.Event()
    release = threading.Event()
    target: dict[str, bytes] = {}

    def slow_process(ticket, body):  # type: ignore[no-untyped-def]
        if body == target.get("body"):
            paused.set()
            assert release.wait(10)
        return original(ticket, body)

    pipeline._process = slow_process  # type: ignore[method-assign]
    outcomes: list[Outcome] = []
    phases_while_paused: list[Phase] = []

    def at_update(ctx: RoundContext) -> None:
        extra = RawParticipant.with_role(ctx.params, "update")
        body = extra.sealed(
            ctx.params, extra.update_payload(ctx.params, ctx.sum_dict, ctx.models[0])
        )
        target["body"] = body
        t = threading.Thread(target=lambda: outcomes.append(pipeline.handle(body)))
        t.start()
        assert paused.wait(10)

        def later() -> None:
            # The phase's count (3) is met after the last honest update; it must not end
            # while the paused message is in flight.
            time.sleep(0.4)
            phases_while_paused.append(coord.phase)
            release.set()
            t.join(10)

        threading.Thread(target=later).start()

    ctx = run_round(coord, hooks={"update": at_update}, expect_model=False)
    coord.wait_for_global_models(1, 10)
    assert phases_while_paused == [Phase.UPDATE]
    assert outcomes == [Outcome.ACCEPTED]
    assert coord.history[-1].update_count == 4
    # the model is the mean of four updates: three honest ones plus the extra (= model 0)
    expected_models = ctx.models + [ctx.models[0]]
    assert_model_close(
        coord.global_model or [], ctx.params.mask_config.vect, expected_models, [1.0] * 4
    )


def test_unmask_does_not_block_params(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """The unmask of a Bmax model (exact fractions in Python) runs outside the lock."""
    coord = local_coordinator(raw_round_settings(mask="Prime/F32/Bmax/M3", model_length=30_000))
    client = RawClient(coord.url)
    served_during_unmask = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal served_during_unmask
        c = RawClient(coord.url)
        while not stop.is_set():
            if coord.phase is Phase.UNMASK:
                start = time.monotonic()
                c.params()
                if coord.phase is Phase.UNMASK and time.monotonic() - start < 0.5:
                    served_during_unmask += 1
        c.close()

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        run_round(coord, models=[[1.5] * 30_000, [-2.0] * 30_000, [0.25] * 30_000])
    finally:
        stop.set()
        poller.join(10)
        client.close()
    assert served_during_unmask > 0
    assert coord.global_model is not None and coord.global_model[0] == Fraction(-1, 12)


# ----------------------------------------------------------------------------- lifecycle


def _coordinator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("xaynet-coordinator")]


def test_stop_joins_every_thread_and_frees_the_port() -> None:
    before = len(_coordinator_threads())
    coord = LocalCoordinator(raw_round_settings()).start()
    port = coord.port
    clients = [RawClient(coord.url) for _ in range(5)]
    for c in clients:
        c.params()  # five open keep-alive connections, each with its thread
    assert len(_coordinator_threads()) >= before + 7
    start = time.monotonic()
    coord.stop()
    coord.stop()  # idempotent
    assert time.monotonic() - start < 10
    assert len(_coordinator_threads()) == before
    assert coord.phase is Phase.STOPPED
    with pytest.raises(RuntimeError):
        coord.start()
    for c in clients:
        c.close()
    again = LocalCoordinator(raw_round_settings(bind_address=f"127.0.0.1:{port}")).start()
    assert again.port == port  # the port is free again
    again.stop()


def test_wait_for_global_models_times_out_with_a_summary(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator()
    with pytest.raises(TimeoutError) as info:
        coord.wait_for_global_models(1, timeout=0.2)
    message = str(info.value)
    assert "waited 0.2 s for 1 global models" in message
    assert "round 1 in the Sum phase" in message and "0 rounds completed" in message


def test_context_manager_and_properties() -> None:
    settings = raw_round_settings()
    with LocalCoordinator(settings) as coord:
        assert coord.url == f"http://127.0.0.1:{coord.port}"
        assert coord.round_id == 1 and coord.phase is Phase.SUM
        assert coord.global_model is None and coord.global_models == []
        assert coord.wait_for_global_models(0, 1) == []
        run_round(coord)
        assert len(coord.wait_for_global_models(1, 1)) == 1
    assert not coord.running


def test_keep_models_bounds_memory(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(raw_round_settings(), keep_models=1)
    run_round(coord)
    run_round(coord)
    assert coord.stats["global_models"] == 2
    assert len(coord.global_models) == 1
    assert len(coord.wait_for_global_models(2, 1)) == 1  # the first was dropped
