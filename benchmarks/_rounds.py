"""End-to-end rounds for the benchmarks: a local coordinator, a measured participant in its
own process, and scripted helper participants that give it the role to be measured.

The measured participant is ours (``_participant_driver.py``) or the original
(``_original_driver.py``, in the reference venv); both are ticked by the same loop
(``_driver_loop.py``) against the same coordinator with the same settings. The coordinator
runs in this process; the original participant holds the GIL during ``tick()``, so it could
not share a process with it anyway.

Roles are forced through the round probabilities. The measured participant keeps one key,
so its role follows the probabilities: ``sum=0.001`` makes it an update participant in
99.9 % of the rounds, ``sum=0.999`` a sum participant (``update=1.0`` always). The helpers
are built here per round from fresh keys searched for the other role (a few thousand
signatures), as ``tests/coordinator_fixtures.RawParticipant`` does.

* Update latency (``update`` mode): a helper sum participant sends its Sum message; the
  measured participant sets its model once it has the sum dict (``t_set``, its clock); the
  coordinator accepts its Update message (``t_accept``). Only then two helper updates (the
  protocol's minimum is 3) and the helper's Sum2 follow, so nothing else runs in the window.
* Sum2 latency (``sum`` mode): the measured participant is the only sum participant; three
  helpers send their updates; the window runs from the coordinator serving the seed dict to
  the measured participant (its first ``GET /seeds`` answered 200) to its accepting the Sum2
  message. How long the seed dict waited for that request after its publication (opening
  Sum2) depends on the polling interval, not on the participant; it is kept apart
  (:attr:`Measurement.wait`).

Both windows therefore run from the moment the participant has all it needs to the moment
the coordinator has accepted its message: they include the participant's ticks (each one
``GET /params`` first), its work, the POST and the coordinator's checks of the message.

Coordinator-side timestamps come from :class:`CoordinatorClock`, which wraps methods of the
coordinator's round state. ``LocalCoordinator`` has no per-message accept hook or log
(``stats`` only counts), so this is a benchmark-only instrument, not an API.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import queue
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from xaynet_sdk.codec.bincode import RoundParameters, decode_sum_dict, decode_update_seed_dict
from xaynet_sdk.codec.crypto import (
    EncryptKeyPair,
    SigningKeyPair,
    open_sealed,
    seal,
    sum_signature,
    update_signature,
    verify,
)
from xaynet_sdk.codec.eligibility import is_eligible
from xaynet_sdk.codec.message import (
    Payload,
    Sum2Payload,
    SumPayload,
    UpdatePayload,
    encode_message,
)
from xaynet_sdk.coordinator import LocalCoordinator, Phase, Settings
from xaynet_sdk.coordinator.settings import RedisSettings, RestoreSettings
from xaynet_sdk.mask.masking import Aggregation, mask_model, sum_masks
from xaynet_sdk.mask.objects import MaskObject

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MASK = "Prime/F32/B0/M3"
UPDATE_SUM_PROBABILITY = 0.001  # the measured participant is an update participant
SUM_SUM_PROBABILITY = 0.999  # the measured participant is a sum participant
HELPER_UPDATES = 3  # the protocol's minimum number of update participants per round


def round_settings(length: int, mode: str) -> Settings:
    """The round settings of a mode; the same for ours and the original."""
    return Settings.for_tests(
        model_length=length,
        mask=MASK,
        sum=UPDATE_SUM_PROBABILITY if mode == "update" else SUM_SUM_PROBABILITY,
        update=1.0,
        min_sum_count=1,
        min_update_count=HELPER_UPDATES,
        min_sum2_count=1,
        min_sum_time=0.05,
        min_update_time=0.05,
        min_sum2_time=0.05,
        max_sum_time=10,
        max_update_time=120,
        max_sum2_time=120,
    )


# ---------------------------------------------------------------------------------------------
# Coordinator-side timestamps
# ---------------------------------------------------------------------------------------------


class CoordinatorClock:
    """``time.monotonic()`` of accepted Update/Sum2 messages, Sum2 opening, the first seed
    dict served in a round, unmask and publication.

    Wraps the coordinator state's ``accept_update``, ``accept_sum2``, ``open_sum2``,
    ``seeds_bytes``, ``open_unmask`` and ``publish_model`` on this one instance (the calls
    still happen; the time is taken when each returns). Events: ``(kind, round_id, t)``.
    """

    def __init__(self, coordinator: LocalCoordinator) -> None:
        self.events: list[tuple[str, int, float]] = []
        self.cond = threading.Condition()
        self._seen: set[tuple[str, int]] = set()
        state = coordinator._state  # noqa: SLF001 - benchmark-only instrument, see the docstring
        self._wrap(state, "accept_update", "update", lambda a: a[0].round.round_id)
        self._wrap(state, "accept_sum2", "sum2", lambda a: a[0].round.round_id)
        self._wrap(state, "open_sum2", "seeds_published", lambda a: a[0].round_id)
        self._wrap(state, "open_unmask", "unmask", lambda a: a[0].round_id)
        self._wrap(state, "publish_model", "published", lambda a: a[0].round_id)
        seeds_bytes = state.seeds_bytes

        def served(pk: bytes) -> Optional[bytes]:  # GET /seeds: the first 200 of a round
            body = seeds_bytes(pk)
            if body is not None:
                t = time.monotonic()
                round_id = state.round.round_id
                with self.cond:
                    if ("seeds_served", round_id) not in self._seen:
                        self._seen.add(("seeds_served", round_id))
                        self.events.append(("seeds_served", round_id, t))
            return body

        setattr(state, "seeds_bytes", served)  # noqa: B010 - instance attribute on purpose

    def _wrap(
        self, obj: Any, name: str, kind: str, round_of: Callable[[tuple[Any, ...]], int]
    ) -> None:
        original = getattr(obj, name)

        def wrapper(*args: Any) -> Any:
            result = original(*args)
            t = time.monotonic()
            with self.cond:
                self.events.append((kind, round_of(args), t))
                self.cond.notify_all()
            return result

        setattr(obj, name, wrapper)

    def times(self, kind: str, round_id: int) -> list[float]:
        with self.cond:
            return [t for k, r, t in self.events if k == kind and r == round_id]

    def wait(self, kind: str, round_id: int, timeout: float, count: int = 1) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len([1 for k, r, _ in self.events if k == kind and r == round_id]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(min(remaining, 0.5))
        return True


# ---------------------------------------------------------------------------------------------
# The REST API and helper participants
# ---------------------------------------------------------------------------------------------


class Client:
    """The coordinator's REST API over one keep-alive connection."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def request(self, method: str, path: str, body: Optional[bytes] = None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                self._conn.request(method, path, body=body)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def params(self) -> RoundParameters:
        status, body = self.request("GET", "/params")
        assert status == 200, status
        return RoundParameters.from_bytes(body)

    def sums(self) -> dict[bytes, bytes]:
        status, body = self.request("GET", "/sums")
        assert status == 200, f"GET /sums: {status}"
        return decode_sum_dict(body)

    def seeds(self, pk: bytes) -> dict[bytes, bytes]:
        query = urllib.parse.urlencode({"pk": b64encode(pk).decode("ascii")})
        status, body = self.request("GET", "/seeds?" + query)
        assert status == 200, f"GET /seeds: {status}"
        return decode_update_seed_dict(body)

    def post(self, body: bytes) -> None:
        status, _ = self.request("POST", "/message", body)
        assert status == 200, f"POST /message: {status}"

    def close(self) -> None:
        self._conn.close()


@dataclass
class Helper:
    """A scripted participant: a key with the wanted role in this round, and its messages."""

    params: RoundParameters
    keys: SigningKeyPair
    ephemeral: EncryptKeyPair = field(default_factory=EncryptKeyPair.generate)

    @classmethod
    def with_role(cls, params: RoundParameters, role: str) -> "Helper":
        for _ in range(200_000):
            keys = SigningKeyPair.generate()
            is_sum = is_eligible(sum_signature(keys.secret, params.seed), params.sum)
            if is_sum == (role == "sum"):
                if role == "sum" or is_eligible(
                    update_signature(keys.secret, params.seed), params.update
                ):
                    return cls(params, keys)
        raise RuntimeError(f"no key with the role {role} found")

    def _sealed(self, payload: Payload) -> bytes:
        keys = self.keys
        plain = encode_message(payload, None, keys.public, keys.secret, self.params.pk)
        return seal(plain, self.params.pk)

    def sum_message(self) -> bytes:
        return self._sealed(
            SumPayload(sum_signature(self.keys.secret, self.params.seed), self.ephemeral.public)
        )

    def update_message(self, sum_dict: dict[bytes, bytes], weights: np.ndarray) -> bytes:
        mask_seed = os.urandom(32)
        masked = mask_model(mask_seed, self.params.mask_config, 1.0, weights)
        local_seeds = {pk: seal(mask_seed, ephm) for pk, ephm in sum_dict.items()}
        return self.update_message_of(masked, local_seeds)

    def update_message_of(self, masked: MaskObject, local_seeds: dict[bytes, bytes]) -> bytes:
        secret, seed = self.keys.secret, self.params.seed
        return self._sealed(
            UpdatePayload(
                sum_signature(secret, seed), update_signature(secret, seed), masked, local_seeds
            )
        )

    def sum2_message(self, seeds: dict[bytes, bytes]) -> bytes:
        params = self.params
        eph = self.ephemeral
        plain = [open_sealed(s, eph.public, eph.secret) for s in seeds.values()]
        mask = sum_masks(plain, params.model_length, params.mask_config)
        return self._sealed(Sum2Payload(sum_signature(self.keys.secret, params.seed), mask))


# ---------------------------------------------------------------------------------------------
# The measured participant's process
# ---------------------------------------------------------------------------------------------


class DriverError(RuntimeError):
    pass


class Driver:
    """A participant driver in a subprocess; its JSON events arrive in :attr:`events`."""

    def __init__(self, impl: str, url: str, length: int, mode: str, rounds: int, timeout: float):
        if impl == "ours":
            python = Path(sys.executable)
            script = HERE / "_participant_driver.py"
        else:
            python = original_python()
            script = HERE / "_original_driver.py"
        self.impl = impl
        cmd = [str(python), "-I", "-u", str(script), "--url", url, "--length", str(length)]
        cmd += ["--mode", mode, "--rounds", str(rounds), "--timeout", str(timeout)]
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
        }
        self.events: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(python.parent.parent) if impl == "original" else str(REPO),
            env=env,
        )
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "raw", "line": line.rstrip()})
        self.events.put({"event": "eof"})

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())
            del self._stderr[:-40]

    def next_event(self, timeout: float, *names: str) -> dict[str, Any]:
        """The next event named one of ``names`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DriverError(f"{self.impl} driver: no {names} event in {timeout:.0f} s")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event["event"] == "eof":
                self.proc.wait(timeout=5)
                tail = "\n".join(self._stderr[-15:])
                raise DriverError(
                    f"{self.impl} driver exited ({self.proc.returncode}) before {names}:\n{tail}"
                )
            if event["event"] in names:
                return event

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class OriginalUnavailable(RuntimeError):
    """The reference venv with the original participant cannot be built."""


def original_python() -> Path:
    """The reference venv's python (built on first use, see ``tests/original/refenv.py``)."""
    sys.path.insert(0, str(REPO / "tests" / "original"))
    try:
        from refenv import RefEnvError, ensure_reference_python  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    try:
        return Path(ensure_reference_python())
    except RefEnvError as e:
        raise OriginalUnavailable(str(e).splitlines()[0]) from None


# ---------------------------------------------------------------------------------------------
# Rounds
# ---------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One measured task: its latency (s), the driver's peak RSS then (KiB), the round, and
    for Sum2 how long the seed dict was published before the participant fetched it (s)."""

    latency: float
    maxrss_kb: int
    round_id: int
    wait: float = 0.0


@dataclass
class Session:
    """A coordinator for one (length, mode) and the rounds run on it."""

    length: int
    mode: str
    coordinator: LocalCoordinator = field(init=False)
    clock: CoordinatorClock = field(init=False)
    ready_kb: dict[str, int] = field(default_factory=dict)
    _last_round: int = 0

    def __post_init__(self) -> None:
        self.coordinator = LocalCoordinator(round_settings(self.length, self.mode), keep_models=1)
        self.clock = CoordinatorClock(self.coordinator)
        self.coordinator.start()
        self.client = Client(self.coordinator.url)
        rng = np.random.default_rng(1)
        self.weights = rng.uniform(-1, 1, self.length).astype(np.float32)

    def close(self) -> None:
        self.client.close()
        self.coordinator.stop()

    def measure(self, impl: str, rounds: int, timeout: float) -> list[Measurement]:
        """``rounds`` measured tasks of ``impl``'s participant, one per round.

        The driver's resident memory once it is ready (model built, participant created,
        before the first tick) goes to ``ready_kb[impl]``.
        """
        driver = Driver(impl, self.coordinator.url, self.length, self.mode, rounds, timeout)
        deadline = time.monotonic() + timeout
        results: list[Measurement] = []
        try:
            self.ready_kb[impl] = int(driver.next_event(60, "ready")["rss_kb"])
            while len(results) < rounds:
                if time.monotonic() > deadline:
                    raise DriverError(f"{impl}: {len(results)} of {rounds} rounds in {timeout} s")
                run = self._update_round if self.mode == "update" else self._sum_round
                result = run(driver, deadline)
                if result is not None:
                    results.append(result)
        finally:
            driver.stop()
        return results

    def _reached(self, phase: Phase, round_id: int, deadline: float) -> bool:
        """Wait until round ``round_id`` is in ``phase`` or later: False if it ended first."""
        coord = self.coordinator
        while time.monotonic() < deadline:
            current, now = coord.round_id, coord.phase
            if current != round_id:
                return False
            if now in _PHASES and _PHASES.index(now) >= _PHASES.index(phase):
                return True
            time.sleep(0.002)
        raise DriverError(f"round {round_id}: the {phase.value} phase did not come in time")

    def _next_round(self, deadline: float) -> int:
        """The Sum phase of a round after the last one handled."""
        coord = self.coordinator
        while time.monotonic() < deadline:
            round_id = coord.round_id
            if round_id > self._last_round and coord.phase is Phase.SUM:
                self._last_round = round_id
                return round_id
            time.sleep(0.002)
        raise DriverError("no new round in time")

    def _finish_round(
        self,
        round_id: int,
        helpers: list[Helper],
        sum_dict: dict[bytes, bytes],
        summer: Optional[Helper],
        deadline: float,
    ) -> bool:
        """Helper updates, the helper's Sum2 (if any), the model; False if the round failed."""
        client = self.client
        for helper in helpers:
            client.post(helper.update_message(sum_dict, self.weights))
        if not self._reached(Phase.SUM2, round_id, deadline):
            return False
        if summer is not None:
            client.post(summer.sum2_message(client.seeds(summer.keys.public)))
        return self.clock.wait("published", round_id, max(0.0, deadline - time.monotonic()))

    def _update_round(self, driver: Driver, deadline: float) -> Optional[Measurement]:
        client, clock = self.client, self.clock
        round_id = self._next_round(deadline)
        params = client.params()
        summer = Helper.with_role(params, "sum")
        client.post(summer.sum_message())
        if not self._reached(Phase.UPDATE, round_id, deadline):
            return None
        sum_dict = client.sums()
        if len(sum_dict) != 1:  # the measured participant is a sum participant this time
            helpers = [Helper.with_role(params, "update") for _ in range(HELPER_UPDATES)]
            self._finish_round(round_id, helpers, sum_dict, summer, deadline)
            return None
        if not clock.wait("update", round_id, max(0.0, deadline - time.monotonic())):
            raise DriverError(f"{driver.impl}: no update accepted in round {round_id}")
        (t_accept,) = clock.times("update", round_id)
        event = driver.next_event(60, "update")
        helpers = [Helper.with_role(params, "update") for _ in range(HELPER_UPDATES - 1)]
        self._finish_round(round_id, helpers, sum_dict, summer, deadline)
        return Measurement(t_accept - event["t_set"], event["maxrss_kb"], round_id)

    def _sum_round(self, driver: Driver, deadline: float) -> Optional[Measurement]:
        client, clock = self.client, self.clock
        round_id = self._next_round(deadline)
        params = client.params()
        helpers = [Helper.with_role(params, "update") for _ in range(HELPER_UPDATES)]
        if not self._reached(Phase.UPDATE, round_id, deadline):
            return None  # no Sum message: the measured participant had another role
        sum_dict = client.sums()
        if not self._finish_round(round_id, helpers, sum_dict, None, deadline):
            return None
        (published,) = clock.times("seeds_published", round_id)
        served = clock.times("seeds_served", round_id)
        accepted = clock.times("sum2", round_id)
        event = driver.next_event(60, "sum")
        latency = accepted[0] - served[0]
        return Measurement(latency, event["maxrss_kb"], round_id, served[0] - published)


_PHASES = [Phase.SUM, Phase.UPDATE, Phase.SUM2, Phase.UNMASK]


# ---------------------------------------------------------------------------------------------
# The coordinator under load
# ---------------------------------------------------------------------------------------------


@dataclass
class CoordinatorFigures:
    """Per round: seconds per accepted Update message, and from Sum2's end to publication;
    one-core references: open + verify one message, the C unmask kernel alone."""

    per_model: list[float]
    unmask: list[float]
    floor: float
    kernel: float


def coordinator_figures(
    length: int,
    rounds: int,
    per_round: int,
    connections: int,
    repeats: int,
    redis_url: Optional[str] = None,
) -> CoordinatorFigures:
    """``rounds`` rounds of ``per_round`` Update messages POSTed by a client process.

    The messages are prepared first (distinct update participants, one masked model), then
    sent over ``connections`` keep-alive connections while the Update phase waits for all of
    them (``min_update_count``); a helper sum participant completes each round. With
    ``redis_url`` the coordinator keeps its state there (``[redis]``).
    """
    settings = Settings.for_tests(
        model_length=length,
        mask=MASK,
        sum=UPDATE_SUM_PROBABILITY,
        update=1.0,
        min_sum_count=1,
        min_update_count=per_round,
        min_sum2_count=1,
        min_sum_time=0.05,
        min_update_time=0.05,
        min_sum2_time=0.05,
        max_sum_time=120,
        max_update_time=120,
        max_sum2_time=120,
    )
    if redis_url is not None:
        settings = dataclasses.replace(
            settings, redis=RedisSettings(redis_url), restore=RestoreSettings(False)
        )
    coord = LocalCoordinator(settings, keep_models=1)
    clock = CoordinatorClock(coord)
    coord.start()
    client = Client(coord.url)
    weights = np.random.default_rng(2).uniform(-1, 1, length).astype(np.float32)
    per_model: list[float] = []
    unmask: list[float] = []
    body = b""
    masked: Optional[MaskObject] = None
    mask_seed = b""
    try:
        with tempfile.TemporaryDirectory(prefix="xaynet-bench-") as tmp:
            path = Path(tmp) / "bodies"
            for round_id in range(1, rounds + 1):
                deadline = time.monotonic() + 120
                while not (coord.round_id == round_id and coord.phase is Phase.SUM):
                    if time.monotonic() > deadline:
                        raise DriverError(f"round {round_id} did not start: {coord.status()}")
                    time.sleep(0.002)
                params = client.params()
                summer = Helper.with_role(params, "sum")
                client.post(summer.sum_message())
                coord.wait_for_phase(Phase.UPDATE, 60, round_id)
                sum_dict = client.sums()
                mask_seed = os.urandom(32)
                masked = mask_model(mask_seed, params.mask_config, 1.0, weights)
                local_seeds = {pk: seal(mask_seed, ephm) for pk, ephm in sum_dict.items()}
                bodies = [
                    Helper.with_role(params, "update").update_message_of(masked, local_seeds)
                    for _ in range(per_round)
                ]
                body = bodies[0]
                keys = coord._state.round.keys  # noqa: SLF001 - to open ``body`` for the floor
                path.write_bytes(b"".join(struct.pack(">I", len(b)) + b for b in bodies))
                script = HERE / "_post_client.py"
                out = subprocess.run(
                    [sys.executable, "-I", str(script), coord.url, str(path), str(connections)],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=True,
                )
                elapsed = json.loads(out.stdout)["elapsed"]
                accepted = len(clock.times("update", round_id))
                if accepted != per_round:
                    raise DriverError(f"{accepted}/{per_round} updates accepted: {coord.status()}")
                per_model.append(elapsed / per_round)
                coord.wait_for_phase(Phase.SUM2, 60, round_id)
                client.post(summer.sum2_message(client.seeds(summer.keys.public)))
                if not clock.wait("published", round_id, 60):
                    raise DriverError(f"round {round_id}: no global model: {coord.status()}")
                (t_unmask,) = clock.times("unmask", round_id)
                (t_published,) = clock.times("published", round_id)
                unmask.append(t_published - t_unmask)
    finally:
        client.close()
        coord.stop()
    assert masked is not None
    floor = median_time(lambda: _open_and_verify(body, keys.public, keys.secret), repeats)
    aggregation = Aggregation(masked.configs, length)
    for _ in range(per_round):
        aggregation.aggregate(masked)
    mask = sum_masks([mask_seed] * per_round, length, masked.configs)
    kernel = median_time(lambda: aggregation.unmask_to_bincode(mask), repeats)
    return CoordinatorFigures(per_model, unmask, floor, kernel)


def _open_and_verify(body: bytes, pk: bytes, sk: bytes) -> None:
    """What any coordinator must do with a message: open the box, check the signature."""
    plain = open_sealed(body, pk, sk)
    if not verify(plain[64:96], plain[:64], memoryview(plain)[64:]):
        raise DriverError("the reference message does not verify")


def median_time(
    fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """The median of ``repeats`` timings of ``fn`` by ``clock``, after one warm-up call
    (``time.process_time``: the CPU of every thread of this process)."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def restore_seconds(redis_url: str, length: int, updates: int) -> float:
    """Seconds a coordinator takes to start from Redis in an Update phase that had accepted
    ``updates`` messages of ``length`` weights (replayed from their write-ahead records)."""
    settings = Settings.for_tests(
        model_length=length,
        mask=MASK,
        sum=UPDATE_SUM_PROBABILITY,
        update=1.0,
        min_update_count=updates + 1,  # the phase stays open
        min_sum_time=0.05,
        max_sum_time=600,
        max_update_time=600,
    )
    settings = dataclasses.replace(
        settings, redis=RedisSettings(redis_url), restore=RestoreSettings(False)
    )
    coord = LocalCoordinator(settings).start()
    client = Client(coord.url)
    try:
        params = client.params()
        client.post(Helper.with_role(params, "sum").sum_message())
        coord.wait_for_phase(Phase.UPDATE, 60)
        sum_dict = client.sums()
        weights = np.random.default_rng(3).uniform(-1, 1, length).astype(np.float32)
        mask_seed = os.urandom(32)
        masked = mask_model(mask_seed, params.mask_config, 1.0, weights)
        local_seeds = {pk: seal(mask_seed, ephm) for pk, ephm in sum_dict.items()}
        for _ in range(updates):
            client.post(Helper.with_role(params, "update").update_message_of(masked, local_seeds))
        if coord.stats["accepted"].get("Update") != updates:
            raise DriverError(f"updates not accepted: {coord.status()}")
    finally:
        client.close()
        coord.stop()
    start = time.perf_counter()
    again = LocalCoordinator(dataclasses.replace(settings, restore=RestoreSettings(True)))
    again.start()
    elapsed = time.perf_counter() - start
    try:
        if again.phase is not Phase.UPDATE or again.status().count(f"{updates} update") != 1:
            raise DriverError(f"not restored as expected: {again.status()}")
    finally:
        again.stop()
    return elapsed
