"""The coordinator's state in a real Redis and its global models in a real S3 (moto's server).

The coordinator runs as users run it, ``python -m xaynet_sdk.coordinator -c config.toml``, in
a subprocess that the tests kill with SIGKILL in each phase and start again with the same
file. Raw participants (:mod:`coordinator_fixtures`) drive the rounds over HTTP, each update
participant with its own model and scalar, so a global model tells which updates it averages
(:func:`round_checks.match_subset`): all of them, after any crash, or a message was lost.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import msgpack
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import (  # noqa: E402
    RawClient,
    RawParticipant,
    assert_model_close,
    local_coordinator,
    raw_round_settings,
    run_round,
    wait_until,
)
from participant_fakes import Fixed  # noqa: E402
from round_checks import contribution, match_subset  # noqa: E402
from store_servers import (  # noqa: E402
    MotoServer,
    RedisServer,
    free_port,
    redis_server,
    s3_server,
)

from xaynet_sdk import spawn_participant  # noqa: E402
from xaynet_sdk.codec.bincode import RoundParameters  # noqa: E402
from xaynet_sdk.coordinator import (  # noqa: E402
    LocalCoordinator,
    Phase,
    RestoreError,
    Settings,
    SettingsError,
    StoreError,
)
from xaynet_sdk.coordinator.settings import RedisSettings, RestoreSettings, S3Settings  # noqa: E402
from xaynet_sdk.coordinator.state import decode_model_fractions  # noqa: E402
from xaynet_sdk.coordinator.store import AGGREGATE_EVERY  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402

__all__ = ["local_coordinator", "redis_server", "s3_server"]

pytestmark = pytest.mark.slow

MASK = "Prime/F32/B0/M3"
LENGTH = 8
REPO = TESTS_DIR.parent


def config_text(
    port: int,
    redis: Optional[RedisServer],
    s3: Optional[MotoServer],
    *,
    restore: bool = True,
    mask: str = MASK,
    length: int = LENGTH,
    min_sum2_time: float = 0.05,
    min_update_count: int = 3,
) -> str:
    group, data, bound, model = mask.split("/")
    text = f"""
[api]
bind_address = "127.0.0.1:{port}"

[pet]
sum = 0.5
update = 0.9
min_sum_count = 2
min_update_count = {min_update_count}
min_sum2_count = 2
max_sum_count = 100
max_update_count = 100
max_sum2_count = 100
min_sum_time = 0.05
min_update_time = 0.05
min_sum2_time = {min_sum2_time}
max_sum_time = 300
max_update_time = 300
max_sum2_time = 300

[mask]
group_type = "{group}"
data_type = "{data}"
bound_type = "{bound}"
model_type = "{model}"

[model]
length = {length}
"""
    if redis is not None:
        text += f'\n[redis]\nurl = "{redis.url}"\n\n[restore]\nenable = {str(restore).lower()}\n'
    if s3 is not None:
        text += f"""
[s3]
access_key = "{s3.ACCESS_KEY}"
secret_access_key = "{s3.SECRET_KEY}"
region = ["{s3.REGION}", "{s3.endpoint}"]

[s3.buckets]
global_models = "global-models"
"""
    return text


class CoordinatorProcess:
    """``python -m xaynet_sdk.coordinator -c <file>``, its stderr in a file."""

    def __init__(self, directory: Path, text: str, port: int) -> None:
        self.directory = directory
        self.config = directory / "config.toml"
        self.config.write_text(text)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log_path: Optional[Path] = None
        self.starts = 0

    def start(self, *, expect_listening: bool = True) -> "CoordinatorProcess":
        self.starts += 1
        self.log_path = self.directory / f"coordinator-{self.starts}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xaynet_sdk.coordinator", "-c", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            env={k: v for k, v in os.environ.items() if not k.lower().startswith("xaynet_")},
        )
        log.close()
        if expect_listening:
            self.wait_log("listening on", 60)
        return self

    def log(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            log = self.log()
            for line in log.splitlines():
                if text in line:
                    return line
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the coordinator exited ({self.proc.returncode}): {log}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in {timeout} s: {log}")
            time.sleep(0.02)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def coordinators(tmp_path: Path) -> Iterator[Callable[..., CoordinatorProcess]]:
    started: list[CoordinatorProcess] = []

    def factory(text_for_port: Callable[[int], str], name: str = "c") -> CoordinatorProcess:
        port = free_port()
        directory = tmp_path / name
        directory.mkdir()
        coordinator = CoordinatorProcess(directory, text_for_port(port), port)
        started.append(coordinator)
        return coordinator

    yield factory
    for coordinator in started:
        coordinator.stop()


def stored_state(redis: RedisServer) -> dict[str, Any]:
    client = redis.client()
    try:
        raw = client.get("xaynet_sdk:coordinator_state")
        assert raw is not None, "no coordinator state in Redis"
        state: dict[str, Any] = msgpack.unpackb(raw)
        phase = client.get("xaynet_sdk:phase")
        state["phase"] = phase.decode() if phase is not None else None
        latest = client.get("xaynet_sdk:latest_global_model_id")
        state["latest_global_model_id"] = latest.decode() if latest is not None else None
        return state
    finally:
        client.close()


@dataclass
class Crash:
    """Kill -9 and restart; remember how long the coordinator was away."""

    coordinator: CoordinatorProcess
    cycles: list[float]

    def __call__(self) -> str:
        start = time.monotonic()
        self.coordinator.kill9()
        self.coordinator.start()
        client = RawClient(self.coordinator.url)
        try:
            client.params()
        finally:
            client.close()
        self.cycles.append(time.monotonic() - start)
        return self.coordinator.wait_log("restored from Redis", 5)


def run_crashing_round(
    coordinator: CoordinatorProcess,
    crash: Crash,
    crash_phase: Optional[str],
    *,
    pause_s3: Optional[MotoServer] = None,
    redis: Optional[RedisServer] = None,
    shift: int = 1,
) -> tuple[RoundParameters, bytes]:
    """One round with 2 sum and 3 update participants, killed once in ``crash_phase``."""
    client = RawClient(coordinator.url)
    try:
        previous = client.model_bytes()
        params = client.params()
        config = MaskConfig.from_name(MASK)
        summers = [RawParticipant.with_role(params, "sum") for _ in range(2)]
        scalars = [1.0, 0.5, 0.25]
        updaters = [RawParticipant.with_role(params, "update", s) for s in scalars]
        # Each round its own models (a round with the same ones would repeat the model).
        models = [[(i + 1) * (j - 3 + shift) / 16 for j in range(LENGTH)] for i in range(3)]

        def restarted_same_round(phase: str) -> None:
            line = crash()
            assert f"in the {phase} phase" in line, line
            assert client.params() == params  # the same round: id, keys, seed

        assert client.post(summers[0].sealed(params, summers[0].sum_payload(params))) == 200
        if crash_phase == "Sum":
            restarted_same_round("Sum")
        assert client.post(summers[1].sealed(params, summers[1].sum_payload(params))) == 200
        sum_dict = wait_until(client.sums, 60, "the sum dict")
        assert set(sum_dict) == {s.pk for s in summers}

        updates = [
            u.sealed(params, u.update_payload(params, sum_dict, m))
            for u, m in zip(updaters, models)
        ]
        for body in updates[:2]:
            assert client.post(body) == 200
        if crash_phase == "Update":
            restarted_same_round("Update")
            assert client.sums() == sum_dict
        assert client.post(updates[2]) == 200
        seeds = [wait_until(partial(client.seeds, s.pk), 60, "the seed dict") for s in summers]
        assert all(set(s) == {u.pk for u in updaters} for s in seeds)  # no update lost

        sum2 = [s.sealed(params, s.sum2_payload(params, d)) for s, d in zip(summers, seeds)]
        assert client.post(sum2[0]) == 200
        if crash_phase == "Sum2":
            restarted_same_round("Sum2")
            assert client.seeds(summers[1].pk) == seeds[1]
        if crash_phase == "Unmask":
            # The S3 server stops answering: the coordinator's round end waits in its upload,
            # after it stored the Unmask phase and before it stored the next round.
            assert pause_s3 is not None and pause_s3.proc is not None and redis is not None
            os.kill(pause_s3.proc.pid, signal.SIGSTOP)
            try:
                assert client.post(sum2[1]) == 200
                round_id = stored_state(redis)["round_id"]
                wait_until(
                    lambda: stored_state(redis)["phase"] == f"{round_id}:Unmask", 60, "Unmask"
                )
                time.sleep(0.3)
                assert stored_state(redis)["round_id"] == round_id
                coordinator.kill9()
            finally:
                os.kill(pause_s3.proc.pid, signal.SIGCONT)
            start = time.monotonic()
            coordinator.start()
            line = coordinator.wait_log("restored from Redis", 5)
            assert "in the Unmask phase" in line, line
            crash.cycles.append(time.monotonic() - start)
        else:
            assert client.post(sum2[1]) == 200

        model = wait_until(
            lambda: m if (m := client.model_bytes()) != previous else None, 60, "the global model"
        )
        fractions = decode_model_fractions(model)
        parts = [
            contribution(f"u{i}", m, s, config) for i, (m, s) in enumerate(zip(models, scalars))
        ]
        assert match_subset(fractions, parts, config) == ["u0", "u1", "u2"]
        assert_model_close(fractions, config, models, scalars)
        return params, model
    finally:
        client.close()


@pytest.mark.parametrize("crash_phase", ["Sum", "Update", "Sum2", "Unmask"])
def test_kill_9_in_each_phase_loses_no_accepted_message(
    crash_phase: str,
    redis_server: RedisServer,
    s3_server: MotoServer,
    coordinators: Callable[..., CoordinatorProcess],
) -> None:
    coordinator = coordinators(lambda port: config_text(port, redis_server, s3_server)).start()
    first = coordinator.wait_log("listening on", 1)
    assert "round 1: Sum phase" in first, first
    cycles: list[float] = []
    crash = Crash(coordinator, cycles)
    params, model = run_crashing_round(
        coordinator, crash, crash_phase, pause_s3=s3_server, redis=redis_server
    )

    # The model is in the bucket under the original's id, and its id in Redis.
    model_id = f"1_{params.seed.hex()}"
    s3 = s3_server.client()
    stored = s3.get_object(Bucket="global-models", Key=model_id)["Body"].read()
    assert stored == model
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="global-models")["Contents"]] == [model_id]
    state = wait_until(
        lambda: (s := stored_state(redis_server))["round_id"] == 2 and s, 60, "round 2 stored"
    )
    assert state["latest_global_model_id"] == model_id

    # A crash in round 2: the latest model is served at once, round ids go on.
    line = crash()
    assert "round 2 in the Sum phase" in line and model_id in line, line
    client = RawClient(coordinator.url)
    try:
        assert client.model_bytes() == model
        params2 = client.params()
        assert params2.pk != params.pk
        params3, model3 = run_crashing_round(coordinator, crash, None, shift=2)
        assert params3 == params2
        assert stored_state(redis_server)["latest_global_model_id"] == f"2_{params2.seed.hex()}"
    finally:
        client.close()
    assert len(cycles) == 2
    print(f"crash-restart cycles (kill -9 to /params served): {[f'{c:.2f}' for c in cycles]}")


# ---------------------------------------------------------------------------------------------
# Operations: Redis unreachable, Redis restarts, SIGTERM, settings that do not fit
# ---------------------------------------------------------------------------------------------


def store_settings(redis: RedisServer, **overrides: Any) -> Settings:
    restore = overrides.pop("restore", True)
    s3 = overrides.pop("s3", None)
    return dataclasses.replace(
        raw_round_settings(**overrides),
        redis=RedisSettings(redis.url),
        restore=RestoreSettings(restore),
        s3=s3,
    )


def test_redis_unreachable_at_start_is_a_clear_error(
    coordinators: Callable[..., CoordinatorProcess], tmp_path: Path
) -> None:
    nobody = RedisServer(tmp_path / "never-started")  # a free port, nothing listening
    nobody.port = free_port()
    text = config_text(0, nobody, None).replace(
        f"redis://127.0.0.1:{nobody.port}/0", f"redis://:pa55word@127.0.0.1:{nobody.port}/0"
    )
    coordinator = coordinators(lambda port: text).start(expect_listening=False)
    assert coordinator.proc is not None
    assert coordinator.proc.wait(60) == 1
    log = coordinator.log()
    assert f"xaynet-coordinator: cannot reach Redis at redis://***@127.0.0.1:{nobody.port}/0" in (
        log
    ), log
    assert "pa55word" not in log


def test_sigterm_then_restart_resumes_the_round(
    redis_server: RedisServer, coordinators: Callable[..., CoordinatorProcess]
) -> None:
    coordinator = coordinators(lambda port: config_text(port, redis_server, None)).start()
    client = RawClient(coordinator.url)
    try:
        params = client.params()
        summer = RawParticipant.with_role(params, "sum")
        assert client.post(summer.sealed(params, summer.sum_payload(params))) == 200
        client.close()
        assert coordinator.terminate() == 0
        assert "shutting down" in coordinator.log()
        coordinator.start()
        line = coordinator.wait_log("restored from Redis", 5)
        assert "round 1 in the Sum phase (accepted: 1 sum, 0 update, 0 sum2)" in line, line
        assert client.params() == params
    finally:
        client.close()


def test_redis_down_during_a_round_rejects_reports_once_and_recovers(
    redis_server: RedisServer,
    local_coordinator: Callable[..., LocalCoordinator],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While Redis is down, messages are rejected (they could not be recorded), everything
    else is served, the outage is logged once; once Redis is back, the round goes on."""
    caplog.set_level(logging.INFO, logger="xaynet_sdk.coordinator")
    coordinator = local_coordinator(store_settings(redis_server))
    client = RawClient(coordinator.url)
    try:
        params = client.params()
        summers = [RawParticipant.with_role(params, "sum") for _ in range(2)]
        bodies = [s.sealed(params, s.sum_payload(params)) for s in summers]
        assert client.post(bodies[0]) == 200
        redis_server.stop()
        for _ in range(3):
            assert client.post(bodies[1]) == 200
        assert coordinator.stats["rejected"] == {"storage_unavailable": 3}
        assert client.params() == params and client.sums() is None
        assert client.model_bytes() is None
        assert coordinator.phase is Phase.SUM
        outages = [r for r in caplog.records if "failed" in r.getMessage() and "Redis" in r.msg]
        assert len(outages) == 1 and outages[0].levelno == logging.WARNING

        redis_server.start()  # same port, same data
        assert client.post(bodies[1]) == 200
        assert coordinator.stats["accepted"]["Sum"] == 2
        back = [r for r in caplog.records if "reachable again" in r.getMessage()]
        assert len(back) == 1
        # The round was already 1 Sum message further in Redis than in the failed writes.
        stored = stored_state(redis_server)
        assert stored["round_id"] == coordinator.round_id
        assert redis_server.client().llen("xaynet_sdk:messages:sum") == 2
    finally:
        client.close()


def test_redis_restart_between_rounds_and_restore_in_process(
    redis_server: RedisServer,
    local_coordinator: Callable[..., LocalCoordinator],
) -> None:
    settings = store_settings(redis_server)
    coordinator = local_coordinator(settings)
    run_round(coordinator)
    redis_server.stop()
    redis_server.start()
    run_round(coordinator, models=[[0.5, -0.25, 1.0, 2.0]] * 3, scalars=[1.0, 0.5, 0.25])
    assert "storage_unavailable" not in coordinator.stats["rejected"]
    model = coordinator.global_model_bytes
    round_id = coordinator.round_id
    coordinator.stop()

    again = local_coordinator(settings)
    assert again.round_id == round_id == 3
    assert again.global_model_bytes == model
    run_round(again)
    assert again.round_id == 4


def test_restore_refuses_other_model_settings_and_enable_false_clears(
    redis_server: RedisServer, local_coordinator: Callable[..., LocalCoordinator]
) -> None:
    coordinator = local_coordinator(store_settings(redis_server))
    run_round(coordinator)
    coordinator.stop()
    with pytest.raises(RestoreError, match="model length 4.*settings say Prime/F32/B0/M3 and 6"):
        LocalCoordinator(store_settings(redis_server, model_length=6)).start()
    with pytest.raises(RestoreError, match="mask Prime/F32/B0/M3.*Integer/F64/B2/M6"):
        LocalCoordinator(store_settings(redis_server, mask="Integer/F64/B2/M6")).start()
    assert stored_state(redis_server)["round_id"] == 2  # refused, left as it was

    fresh = local_coordinator(store_settings(redis_server, model_length=6, restore=False))
    assert fresh.round_id == 1 and fresh.global_model_bytes is None
    assert stored_state(redis_server)["latest_global_model_id"] is None


def test_new_probabilities_abandon_the_stored_round(
    redis_server: RedisServer, local_coordinator: Callable[..., LocalCoordinator]
) -> None:
    coordinator = local_coordinator(store_settings(redis_server))
    run_round(coordinator)
    model = coordinator.global_model_bytes
    coordinator.stop()
    again = local_coordinator(store_settings(redis_server, sum=0.4))
    assert again.round_id == 3 and again.global_model_bytes == model
    assert RawClient(again.url).params().sum == 0.4


def test_a_missing_model_in_the_bucket_stops_the_restore(
    redis_server: RedisServer,
    s3_server: MotoServer,
    local_coordinator: Callable[..., LocalCoordinator],
) -> None:
    s3 = S3Settings(
        MotoServer.ACCESS_KEY, MotoServer.SECRET_KEY, MotoServer.REGION, s3_server.endpoint
    )
    settings = store_settings(redis_server, s3=s3)
    coordinator = local_coordinator(settings)
    ctx = run_round(coordinator)
    coordinator.stop()
    model_id = f"1_{ctx.params.seed.hex()}"
    bucket = s3_server.client()
    assert bucket.get_object(Bucket="global-models", Key=model_id)["Body"].read() == (
        coordinator.global_model_bytes
    )
    # Without S3 the bytes would be in Redis; with it, only the id is.
    assert redis_server.client().get("xaynet_sdk:global_model") is None
    bucket.delete_object(Bucket="global-models", Key=model_id)
    with pytest.raises(RestoreError, match=f"global model {model_id} is missing from S3 bucket"):
        LocalCoordinator(settings).start()


# ---------------------------------------------------------------------------------------------
# The ORIGINAL participant (xaynet-sdk-python 0.1.0) across a coordinator crash
# ---------------------------------------------------------------------------------------------


def _original_config(port: int, redis: RedisServer) -> str:
    text = config_text(port, redis, None, min_sum2_time=1.0)
    # Random roles with 8 participants; an update participant needs about 1 s to send. Long
    # enough maximum times for the participants to come back after the crash (their backoff
    # grows to 10 s); fewer than 3 update participants in a round is then the only way a
    # round fails (below 1%).
    for old, new in (
        ("sum = 0.5", "sum = 0.25"),
        ("update = 0.9", "update = 0.95"),
        ("min_sum_count = 2", "min_sum_count = 1"),
        ("min_sum2_count = 2", "min_sum2_count = 1"),
        ("min_sum_time = 0.05", "min_sum_time = 1.0"),
        ("min_update_time = 0.05", "min_update_time = 2.0"),
        ("max_sum_time = 300", "max_sum_time = 10"),
        ("max_update_time = 300", "max_update_time = 60"),
        ("max_sum2_time = 300", "max_sum2_time = 60"),
    ):
        assert old in text
        text = text.replace(old, new)
    return text


def _records(redis: RedisServer, phase: str) -> list[bytes]:
    client = redis.client()
    try:
        return list(client.lrange(f"xaynet_sdk:messages:{phase}", 0, -1))
    finally:
        client.close()


def _record_pk(record: bytes) -> bytes:
    return record[8 + 48 : 8 + 48 + 32]  # after the round id and the sealed box id


def _update_snapshot(redis: RedisServer) -> Optional[dict[str, Any]]:
    client = redis.client()
    try:
        raw = client.get("xaynet_sdk:update_snapshot")
        return msgpack.unpackb(raw, strict_map_key=False) if raw is not None else None
    finally:
        client.close()


class _Ours:
    """Our participant behind the two calls the crash test makes of the original's runner."""

    def __init__(self, url: str, model: list[float], scalar: float) -> None:
        self.instance = Fixed(model)
        self.handle = spawn_participant(url, lambda: self.instance, scalar=scalar)

    def global_models(self) -> list[None]:
        return [None] * len(self.instance.seen)

    def stop(self) -> None:
        self.handle.stop()


@pytest.mark.parametrize(
    "kind", [pytest.param("original", marks=pytest.mark.original), pytest.param("ours")]
)
@pytest.mark.parametrize("crash_phase", ["Sum", "Update", "Sum2"])
def test_participants_across_a_coordinator_crash(
    crash_phase: str,
    kind: str,
    redis_server: RedisServer,
    coordinators: Callable[..., CoordinatorProcess],
) -> None:
    """Original participants (the reference wheel, each in its process) or ours (threads of
    this process) in rounds of a coordinator process that is killed in a phase."""
    from original.runner import OriginalParticipant

    coordinator = coordinators(lambda port: _original_config(port, redis_server)).start()
    config = MaskConfig.from_name(MASK)
    scalars = [1.0, 0.5, 0.25, 1.0, 0.75, 1.0, 0.5, 1.0]
    models = [
        [2.0 ** -(i + 2)] + [(((i + 1) * (j + 3)) % 61 - 30) / 64 for j in range(1, LENGTH)]
        for i in range(len(scalars))
    ]
    participants: list[Any] = [
        OriginalParticipant(coordinator.url, model=m, scalar=s, timeout=240)
        if kind == "original"
        else _Ours(coordinator.url, m, s)
        for m, s in zip(models, scalars)
    ]
    phase_key = {"Sum": "sum", "Update": "update", "Sum2": "sum2"}[crash_phase]
    try:
        # The first round in which a message of the phase is stored: kill -9 right then.
        def reached() -> Optional[tuple[int, list[bytes]]]:
            state = stored_state(redis_server)
            records = _records(redis_server, phase_key)
            if state["phase"] == f"{state['round_id']}:{crash_phase}" and records:
                return state["round_id"], records
            return None

        # What Redis holds once the process is dead is what must come back. The phase may
        # have ended between the check and the kill: then try again in a later round.
        for _ in range(5):
            wait_until(reached, 150, f"a stored {crash_phase} message")
            coordinator.kill9()
            hit = reached()
            if hit is not None:
                break
            coordinator.start()
        else:
            raise AssertionError(f"the {crash_phase} phase ended before each kill")
        round_id, before = hit
        snapshot = _update_snapshot(redis_server) if crash_phase == "Sum2" else None
        coordinator.start()
        line = coordinator.wait_log("restored from Redis", 5)
        assert f"round {round_id} in the {crash_phase} phase" in line, line

        if crash_phase == "Sum":
            client = RawClient(coordinator.url)
            try:
                sums = wait_until(client.sums, 60, "the sum dict of the restored round")
            finally:
                client.close()
            assert {_record_pk(r) for r in before} <= set(sums)
        if crash_phase in ("Sum", "Update"):
            snapshot = wait_until(lambda: _update_snapshot(redis_server), 120, "Sum2")
        assert snapshot is not None
        updaters = {bytes(pk) for pk in snapshot["update_pks"]}
        if crash_phase == "Update":
            assert {_record_pk(r) for r in before} <= updaters
        # The round completes, its model averages every update it accepted.
        model_id = wait_until(
            lambda: (
                (m := stored_state(redis_server)["latest_global_model_id"])
                and m.startswith(f"{round_id}_")
                and m
            ),
            180,
            f"the global model of round {round_id}",
        )
        # The new round and the model are stored first, then served (durable before
        # visible): GET /model may still answer the previous model for a moment.
        stored = redis_server.client()
        try:
            model_bytes = stored.get("xaynet_sdk:global_model")
        finally:
            stored.close()
        assert model_bytes, "the model of the round is not in Redis beside its id"
        client = RawClient(coordinator.url)
        try:
            wait_until(lambda: client.model_bytes() == model_bytes, 30, "GET /model to serve it")
        finally:
            client.close()
        model = decode_model_fractions(model_bytes)
        parts = [
            contribution(str(i), m, s, config) for i, (m, s) in enumerate(zip(models, scalars))
        ]
        assert len(match_subset(model, parts, config, size=len(updaters))) == len(updaters)
        assert snapshot["nb_models"] == len(updaters)
        assert model_id == stored_state(redis_server)["latest_global_model_id"]
        # The participants fetch and decode that model.
        wait_until(
            lambda: any(p.global_models() for p in participants), 60, "a participant's model"
        )
    finally:
        for p in participants:
            p.stop()


# ---------------------------------------------------------------------------------------------
# The [redis], [restore] and [s3] settings
# ---------------------------------------------------------------------------------------------

STORE_SECTIONS = """
[redis]
url = "redis://:secret-pw@127.0.0.1:6390/2"

[s3]
access_key = "minio"
secret_access_key = "minio123"
region = ["minio", "http://localhost:9000"]

[s3.buckets]
global_models = "my-models"

[restore]
enable = true
"""


def test_store_settings_parse_like_the_original(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config_text(8081, None, None) + STORE_SECTIONS)
    settings = Settings.from_toml(path, environ={})
    assert settings.redis == RedisSettings("redis://:secret-pw@127.0.0.1:6390/2")
    assert settings.restore == RestoreSettings(True)
    assert settings.s3 == S3Settings(
        "minio", "minio123", "minio", "http://localhost:9000", "my-models"
    )
    assert "secret-pw" not in repr(settings) and "minio123" not in repr(settings)
    assert settings.ignored == ()

    env = {"XAYNET_RESTORE__ENABLE": "false", "XAYNET_S3__REGION": "eu http://127.0.0.1:9"}
    overridden = Settings.from_toml(path, environ=env)
    assert overridden.restore == RestoreSettings(False)
    assert overridden.s3 is not None
    assert (overridden.s3.region_name, overridden.s3.endpoint) == ("eu", "http://127.0.0.1:9")

    default = Settings.for_tests()  # in memory; [restore] alone would mean enable = true
    assert default.redis is None and default.s3 is None and default.restore.enable


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('url = "redis://', 'url = "http://'), "redis.url must be a redis://"),
        (("enable = true", 'enable = "maybe"'), "restore.enable must be true or false"),
        (('global_models = "my-models"', 'global_models = "My_Models"'), "not a valid bucket"),
        (('region = ["minio", "http://localhost:9000"]', "region = []"), "s3.region must be"),
        (('access_key = "minio"', "access_key = 1"), "s3.access_key must be a string"),
    ],
)
def test_store_settings_errors_name_the_key(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = tmp_path / "config.toml"
    text = config_text(8081, None, None) + STORE_SECTIONS
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(SettingsError, match=message):
        Settings.from_toml(path, environ={})


def test_redis_down_at_the_round_end_waits_then_publishes(
    redis_server: RedisServer,
    local_coordinator: Callable[..., LocalCoordinator],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The round's end is stored with the next round's start: while Redis is down the
    coordinator stays in Unmask, serving; once it is back, the model is published."""
    caplog.set_level(logging.INFO, logger="xaynet_sdk.coordinator")
    coordinator = local_coordinator(store_settings(redis_server, min_sum2_time=2.0))
    ctx = run_round(coordinator, expect_model=False)  # returns after the last Sum2 message
    redis_server.stop()
    coordinator.wait_for_phase(Phase.UNMASK, 30)
    time.sleep(2.5)  # several retries of the round's end
    client = RawClient(coordinator.url)
    try:
        assert coordinator.phase is Phase.UNMASK and coordinator.round_id == 1
        assert client.params() == ctx.params and client.model_bytes() is None
    finally:
        client.close()
    outages = [r for r in caplog.records if "failed" in r.getMessage() and "Redis" in r.msg]
    assert len(outages) == 1, [r.getMessage() for r in outages]

    redis_server.start()
    (model,) = coordinator.wait_for_global_models(1, 30)
    assert_model_close(model, ctx.params.mask_config.vect, ctx.models, [1.0] * 3)
    coordinator.wait_for_round(2, 30)
    state = stored_state(redis_server)
    assert state["round_id"] == 2
    assert state["latest_global_model_id"] == f"1_{ctx.params.seed.hex()}"


def test_an_existing_object_is_never_overwritten(s3_server: MotoServer) -> None:
    from xaynet_sdk.coordinator.s3 import S3ModelStore
    from xaynet_sdk.coordinator.store import StoreError

    s3 = S3Settings(
        MotoServer.ACCESS_KEY, MotoServer.SECRET_KEY, MotoServer.REGION, s3_server.endpoint
    )
    models = S3ModelStore(s3).connect()
    models.put("7_00ff", b"model bytes")
    models.put("7_00ff", b"model bytes")  # the same bytes again (a restarted Unmask): done
    with pytest.raises(StoreError, match="already exists with other bytes"):
        models.put("7_00ff", b"other bytes")
    assert models.get("7_00ff") == b"model bytes" and models.get("8_00ff") is None
    assert S3ModelStore(s3).connect().get("7_00ff") == b"model bytes"  # bucket exists: fine


def test_kill_9_after_many_updates_restores_the_aggregate_snapshot(
    redis_server: RedisServer, coordinators: Callable[..., CoordinatorProcess]
) -> None:
    """More Update messages than AGGREGATE_EVERY: Redis holds the aggregate of the first ones
    and only the masked models after it; the restored round has every one of them."""
    n = AGGREGATE_EVERY + 9
    coordinator = coordinators(
        lambda port: config_text(port, redis_server, None, min_update_count=n)
    ).start()
    crash = Crash(coordinator, [])
    client = RawClient(coordinator.url)
    try:
        params = client.params()
        summers = [RawParticipant.with_role(params, "sum") for _ in range(2)]
        for s in summers:
            assert client.post(s.sealed(params, s.sum_payload(params))) == 200
        sum_dict = wait_until(client.sums, 60, "the sum dict")
        scalars = [1.0 + (i % 4) / 4 for i in range(n)]
        models = [[(i * 7 + j * 3) % 23 / 8 - 1.25 for j in range(LENGTH)] for i in range(n)]
        updaters = [RawParticipant.with_role(params, "update", s) for s in scalars]
        for u, m in zip(updaters[:-1], models[:-1]):
            assert client.post(u.sealed(params, u.update_payload(params, sum_dict, m))) == 200
        redis = redis_server.client()
        assert redis.llen("xaynet_sdk:messages:update") == n - 1  # every update's seeds
        assert redis.llen("xaynet_sdk:models:update") == n - 1 - AGGREGATE_EVERY
        aggregate = msgpack.unpackb(redis.get("xaynet_sdk:update_aggregate"))
        assert aggregate["nb_models"] == AGGREGATE_EVERY and aggregate["round_id"] == 1
        redis.close()

        line = crash()
        assert f"round 1 in the Update phase (accepted: 2 sum, {n - 1} update" in line, line
        last = updaters[-1]
        body = last.sealed(params, last.update_payload(params, sum_dict, models[-1]))
        assert client.post(body) == 200
        seeds = [wait_until(partial(client.seeds, s.pk), 60, "the seed dict") for s in summers]
        assert all(set(d) == {u.pk for u in updaters} for d in seeds)
        for s, d in zip(summers, seeds):
            assert client.post(s.sealed(params, s.sum2_payload(params, d))) == 200
        model = wait_until(client.model_bytes, 60, "the global model")
        assert_model_close(
            decode_model_fractions(model), MaskConfig.from_name(MASK), models, scalars
        )
    finally:
        client.close()


def test_s3_unreachable_at_start_is_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    s3 = S3Settings("key", "secret-key", "us-east-1", f"http://127.0.0.1:{port}")
    settings = dataclasses.replace(raw_round_settings(), s3=s3)
    coordinator = LocalCoordinator(settings)
    with pytest.raises(StoreError, match=f"cannot reach S3 bucket 'global-models' at .*:{port}"):
        coordinator.start()
    assert not coordinator.running
