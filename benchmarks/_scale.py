"""Scale benchmarks: many simulated participants, and the coordinator's growth curve.

* ``scale``: ``xaynet_sdk.simulation`` with 1,000 participants (model length 10,000, Prime/F32/
  B0/M3 sized by :func:`embedded_settings`: about 5 sum participants, update probability 0.9,
  a 2-s minimum Update phase), beside the issue's targets: every worker running within 5 s;
  at least 95 % of the update tasks accepted; CPU per round (this process, which runs the
  coordinator, plus the workers) within 3x the CPU the round's cryptography alone needs (the
  *floor*, :func:`crypto_floor`). Then 10,000 participants.
* ``growth``: a coordinator in its own process takes ``messages`` Update messages of
  ``length`` weights (10 to 10,000 messages, 1e3 to 1e6 weights, cells up to a budget of
  messages x length), POSTed over 2 connections by another process; per cell the time to take
  them all, the coordinator's CPU per message beside opening and verifying one message (one
  core), unmask and publish, and the coordinator's peak resident memory. Then the idle
  participant: requests and CPU per round of a participant with no task, run as threads
  (``spawn_participant``'s loop and backoff) and in a simulation worker.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import _rounds  # benchmarks/ is on sys.path (run.py)
import numpy as np

from xaynet_sdk.codec.bincode import RoundParameters
from xaynet_sdk.codec.crypto import (
    EncryptKeyPair,
    SigningKeyPair,
    open_sealed,
    seal,
    sum_signature,
    update_signature,
)
from xaynet_sdk.coordinator import LocalCoordinator, Settings
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair
from xaynet_sdk.mask.masking import Aggregation, mask_model, sum_masks
from xaynet_sdk.simulation import embedded_settings, run_simulation

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# The floor: what a round's cryptography alone costs
# ---------------------------------------------------------------------------------------------


def _cpu(fn: Callable[[], object], repeats: int) -> float:
    """The median CPU time (all threads of this process) of ``fn``."""
    return _rounds.median_time(fn, repeats, clock=time.process_time)


@dataclass
class Floor:
    """CPU seconds of each cryptographic operation of a round, for one model length."""

    eligibility: float  # a participant: its sum and update signatures (every participant)
    mask: float  # mask one model (seed -> masked model)
    seal_seed: float  # encrypt the mask seed for one sum participant
    sign: float  # sign one Update message
    seal: float  # seal it to the coordinator's key
    open_verify: float  # open it and verify its signature
    aggregate: float  # add one masked model to the aggregate
    derive: float  # a sum participant: derive and add one update participant's mask
    open_seed: float  # a sum participant: open one encrypted mask seed
    unmask: float  # unmask the aggregate

    def round(self, participants: int, sent: int, accepted: int, sums: int) -> float:
        """Every participant's eligibility; every update sent: built (mask, seeds for each sum
        participant, sign, seal), opened and verified; every update accepted: aggregated, its
        seed opened and its mask derived by each sum participant; one unmask."""
        per_sent = self.mask + sums * self.seal_seed + self.sign + self.seal + self.open_verify
        per_accepted = self.aggregate + sums * (self.open_seed + self.derive)
        return (
            participants * self.eligibility
            + sent * per_sent
            + accepted * per_accepted
            + self.unmask
        )


def crypto_floor(length: int, mask: str = "Prime/F32/B0/M3", repeats: int = 5) -> Floor:
    config = MaskConfigPair.single(MaskConfig.from_name(mask))
    weights = np.random.default_rng(1).uniform(-1, 1, length).astype(np.float32)
    seed = os.urandom(32)
    coordinator = EncryptKeyPair.generate()
    signer = SigningKeyPair.generate()
    params = RoundParameters(coordinator.public, 0.001, 1.0, os.urandom(32), config, length)
    masked = mask_model(seed, config, 1.0, weights)
    helper = _rounds.Helper(params, signer)
    body = helper.update_message_of(masked, {bytes(32): seal(seed, coordinator.public)})
    plain = open_sealed(body, coordinator.public, coordinator.secret)
    aggregation = Aggregation(config, length)
    seeds = 20
    sealed_seed = seal(seed, coordinator.public)
    for _ in range(seeds):
        aggregation.aggregate(masked)
    total = sum_masks([seed] * seeds, length, config)
    round_seed = os.urandom(32)
    return Floor(
        eligibility=_cpu(
            lambda: (
                sum_signature(signer.secret, round_seed),
                update_signature(signer.secret, round_seed),
            ),
            repeats,
        ),
        mask=_cpu(lambda: mask_model(seed, config, 1.0, weights), repeats),
        seal_seed=_cpu(lambda: seal(seed, coordinator.public), repeats),
        sign=_cpu(lambda: signer.sign(plain[64:]), repeats),
        seal=_cpu(lambda: seal(plain, coordinator.public), repeats),
        open_verify=_cpu(
            lambda: _rounds._open_and_verify(body, coordinator.public, coordinator.secret),
            repeats,
        ),
        aggregate=_cpu(lambda: Aggregation(config, length).aggregate(masked), repeats),
        derive=_cpu(lambda: sum_masks([seed] * seeds, length, config), repeats) / seeds,
        open_seed=_cpu(
            lambda: open_sealed(sealed_seed, coordinator.public, coordinator.secret), repeats
        ),
        unmask=_cpu(lambda: aggregation.unmask_to_bincode(total), repeats),
    )


# ---------------------------------------------------------------------------------------------
# scale
# ---------------------------------------------------------------------------------------------


def bench_scale(quick: bool, row: Callable[[list[str], list[int]], str]) -> None:
    length = 1_000 if quick else 10_000
    # (participants, rounds, minimum Update phase in seconds)
    runs = [(200, 2, 2.0)] if quick else [(1_000, 3, 2.0), (10_000, 2, 2.0), (10_000, 2, 30.0)]
    widths = [7, 6, 7, 10, 9, 9, 9, 11, 11, 7, 8]
    print(f"\n## Scale: simulated participants (xaynet_sdk.simulation), model length {length:,}")
    print(
        row(
            [
                "N",
                "phase",
                "rounds",
                "start (s)",
                "updates",
                "accepted",
                "late",
                "CPU/round",
                "floor/round",
                "ratio",
                "round (s)",
            ],
            widths,
        )
    )
    floor = crypto_floor(length)
    notes = []
    for n, rounds, phase in runs:
        settings = embedded_settings(n, length, min_update_time=phase)
        # a bigger aggregate than M3 allows needs M6: floor of that configuration
        mask = settings.mask.name
        fl = floor if mask == "Prime/F32/B0/M3" else crypto_floor(length, mask)
        try:
            result = run_simulation(
                participants=n, rounds=rounds, model_length=length, settings=settings
            )
        except (TimeoutError, RuntimeError) as e:
            cells = [f"{n:,}", f"{phase:g} s", str(rounds), "failed"] + ["-"] * 7
            print(row(cells, widths))
            notes.append(f"N = {n:,}: {e}")
            continue
        done = result.completed_rounds
        updates = sum(r.update for r in done)
        accepted = sum(r.accepted_updates or 0 for r in done)
        late = sum(r.late_updates or 0 for r in done)
        cpu = statistics.median(r.cpu_seconds for r in done)
        floors = [
            fl.round(n, r.sent_updates, r.accepted_updates or 0, r.accepted_sums or 0) for r in done
        ]
        per_floor = statistics.median(floors)
        print(
            row(
                [
                    f"{n:,}",
                    f"{phase:g} s",
                    str(len(done)),
                    f"{result.startup_seconds:.2f}",
                    f"{updates:,}",
                    f"{100 * accepted / max(1, updates):.1f}%",
                    f"{late:,}",
                    f"{cpu:.2f}",
                    f"{per_floor:.2f}",
                    f"{cpu / per_floor:.2f}x",
                    f"{statistics.median(r.seconds for r in done):.1f}",
                ],
                widths,
            )
        )
        per_n = result.requests
        notes.append(
            f"N = {n:,}: {result.workers} workers; requests {per_n}; {result.ticks:,} ticks;"
            f" {result.errors or 'no errors'}"
        )
    print("# targets: start within 5 s; accepted >= 95 % of update tasks; CPU/round <= 3x floor")
    print("# phase: the minimum Update phase (the round's Update phase ends after it as soon as")
    print("# 3 updates are in: later ones are late)")
    print("# start: call to every worker running all its participants; CPU/round: this process")
    print("# (coordinator) + workers, median; floor: per participant 2 eligibility signatures;")
    print("# per update sent: mask, seal the seed for each sum participant, sign, seal, open,")
    print("# verify; per update accepted: aggregate, per sum participant open its seed and derive")
    print("# its mask; one unmask (one core, ms at")
    print(
        f"# L = {length:,}: eligibility {fl.eligibility * 1e3:.3f}, mask {fl.mask * 1e3:.2f},"
        f" sign {fl.sign * 1e3:.3f}, seal {fl.seal * 1e3:.3f}, open+verify"
        f" {fl.open_verify * 1e3:.3f},"
    )
    print(
        f"# aggregate {fl.aggregate * 1e3:.3f}, derive {fl.derive * 1e3:.3f},"
        f" open seed {fl.open_seed * 1e3:.3f}, unmask {fl.unmask * 1e3:.2f})"
    )
    for note in notes:
        print(f"# {note}")


# ---------------------------------------------------------------------------------------------
# growth: the coordinator in its own process
# ---------------------------------------------------------------------------------------------


def _usage() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def _serve(settings: Settings, conn: Any) -> None:
    """The coordinator process: answers the parent's commands until told to stop."""
    coordinator = LocalCoordinator(settings, keep_models=1).start()
    conn.send(coordinator.url)
    while True:
        command = conn.recv()
        if command == "usage":
            conn.send(_usage())
        elif command == "state":
            history = coordinator.history
            record = history[-1] if history else None
            conn.send(
                (
                    coordinator.round_id,
                    coordinator.phase.value,
                    record.ended if record is not None else None,
                    coordinator.stats["accepted"],
                )
            )
        elif command == "keys":
            keys = coordinator._state.round.keys  # noqa: SLF001 - to open one body for the floor
            conn.send((keys.public, keys.secret))
        else:
            coordinator.stop()
            conn.send(_usage())
            return


class _CoordinatorProcess:
    def __init__(self, settings: Settings) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(settings, child), daemon=True)
        self.process.start()
        self.url: str = self.conn.recv()

    def ask(self, command: str) -> Any:
        self.conn.send(command)
        return self.conn.recv()

    def wait_phase(self, round_id: int, phase: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rid, current, _, accepted = self.ask("state")
            if rid == round_id and current == phase:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited for {phase} of round {round_id}: {rid} {current}")
            time.sleep(0.01)

    def close(self) -> tuple[float, int]:
        usage: tuple[float, int] = self.ask("stop")
        self.process.join(30)
        return usage


@dataclass
class GrowthCell:
    messages: int
    length: int
    post_seconds: float
    cpu_per_message: float
    open_verify: float
    unmask_seconds: float
    rss_start_mb: float
    rss_peak_mb: float


def growth_cell(messages: int, length: int) -> GrowthCell:
    """One round: a sum participant, ``messages`` Update messages, its Sum2, publication."""
    mask = "Prime/F32/B0/M3" if messages <= 1_000 else "Prime/F32/B0/M6"
    settings = Settings.for_tests(
        model_length=length,
        mask=mask,
        sum=_rounds.UPDATE_SUM_PROBABILITY,
        update=1.0,
        min_update_count=messages,
        min_sum_time=0.05,
        min_update_time=0.05,
        min_sum2_time=0.0,  # the round ends with the one Sum2 message: unmask is measured
        max_sum_time=300,
        max_update_time=600,
        max_sum2_time=300,
        max_update_count=max(messages, 100),
    )
    coordinator = _CoordinatorProcess(settings)
    client = _rounds.Client(coordinator.url, timeout=300)
    try:
        _, rss_start = coordinator.ask("usage")
        coordinator.wait_phase(1, "Sum", 60)
        params = client.params()
        summer = _rounds.Helper.with_role(params, "sum")
        client.post(summer.sum_message())
        coordinator.wait_phase(1, "Update", 60)
        sum_dict = client.sums()
        weights = np.random.default_rng(2).uniform(-1, 1, length).astype(np.float32)
        mask_seed = os.urandom(32)
        masked = mask_model(mask_seed, params.mask_config, 1.0, weights)
        local_seeds = {pk: seal(mask_seed, ephm) for pk, ephm in sum_dict.items()}
        with tempfile.TemporaryDirectory(prefix="xaynet-growth-") as tmp:
            path = Path(tmp) / "bodies"
            first = b""
            with open(path, "wb") as f:
                for _ in range(messages):
                    body = _rounds.Helper.with_role(params, "update").update_message_of(
                        masked, local_seeds
                    )
                    first = first or body
                    f.write(struct.pack(">I", len(body)) + body)
            pk, sk = coordinator.ask("keys")
            cpu_before, _ = coordinator.ask("usage")
            out = subprocess.run(
                [sys.executable, "-I", str(HERE / "_post_client.py"), coordinator.url, str(path)]
                + ["2"],
                capture_output=True,
                text=True,
                timeout=1800,
                check=True,
            )
            post_seconds = json.loads(out.stdout)["elapsed"]
        cpu_after, _ = coordinator.ask("usage")
        coordinator.wait_phase(1, "Sum2", 120)
        _, _, _, accepted = coordinator.ask("state")
        if accepted["Update"] != messages:
            raise RuntimeError(f"{accepted['Update']} of {messages} updates accepted")
        sum2 = summer.sum2_message(client.seeds(summer.keys.public))
        start = time.monotonic()
        client.post(sum2)
        deadline = start + 600
        while True:
            rid, _, ended, _ = coordinator.ask("state")
            if rid >= 2 and ended is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no global model")
            time.sleep(0.005)
        unmask = ended - start  # CLOCK_MONOTONIC is shared by the processes
    finally:
        client.close()
        _, rss_peak = coordinator.close()
    floor = _cpu(lambda: _rounds._open_and_verify(first, pk, sk), 5)
    return GrowthCell(
        messages,
        length,
        post_seconds,
        (cpu_after - cpu_before) / messages,
        floor,
        unmask,
        rss_start / 1024,
        rss_peak / 1024,
    )


_IDLE_JOB = """
import json, resource, sys, threading, time
from xaynet_sdk.simulation._engine import Engine, WorkerSpec
from xaynet_sdk.simulation import ConstantModel
from xaynet_sdk.participant import new_backoff
from xaynet_sdk.xaynet_sdk import Participant

mode, url, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
stop = threading.Event()
if mode == "threads":
    def loop():
        p, backoff = Participant(url), new_backoff()
        while not stop.is_set():
            p.tick()
            if p.made_progress():
                backoff.reset()
            stop.wait(backoff.duration())
    threads = [threading.Thread(target=loop) for _ in range(n)]
    for t in threads:
        t.start()
else:
    engine = Engine(url, WorkerSpec(0, n, model=ConstantModel(4)))
    threads = [threading.Thread(target=engine.run)]
    threads[0].start()
cpu0 = time.process_time()
time.sleep(seconds)
cpu = time.process_time() - cpu0
stop.set()
if mode != "threads":
    engine.stop()
for t in threads:
    t.join()
print(json.dumps({"cpu": cpu}))
"""


def idle_cost(mode: str, n: int, seconds: float, round_seconds: float) -> tuple[float, float]:
    """Requests and CPU seconds per idle participant per round (rounds of ``round_seconds``
    in which nobody is selected: they fail at ``max_sum_time`` and the next one starts)."""
    settings = Settings.for_tests(
        model_length=4,
        sum=1e-12,
        update=1e-12,
        min_sum_time=0.05,
        max_sum_time=round_seconds,
    )
    with LocalCoordinator(settings, keep_models=1) as coordinator:
        proc = subprocess.run(
            [sys.executable, "-c", _IDLE_JOB, mode, coordinator.url, str(n), str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=True,
        )
        cpu = json.loads(proc.stdout.strip().splitlines()[-1])["cpu"]
        http = coordinator.stats["http"]
        requests = sum(sum(codes.values()) for codes in http.values())
        rounds = max(1, coordinator.round_id - 1)
    return requests / n / rounds, cpu / n / rounds


def bench_growth(quick: bool, row: Callable[[list[str], list[int]], str]) -> None:
    budget = 1_000_000 if quick else 100_000_000
    counts = [10, 100, 1_000] if quick else [10, 100, 1_000, 10_000]
    lengths = [1_000, 10_000, 100_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    print(
        "\n## Growth: the coordinator (own process) taking N Update messages of L weights,"
        " POSTed over 2 connections"
    )
    widths = [7, 10, 9, 11, 12, 12, 7, 11, 10]
    print(
        row(
            [
                "N",
                "L",
                "take (s)",
                "per msg ms",
                "CPU/msg ms",
                "open+verify",
                "ratio",
                "unmask ms",
                "peak MB",
            ],
            widths,
        )
    )
    cells: list[GrowthCell] = []
    for length in lengths:
        for messages in counts:
            if messages * length > budget:
                continue
            cell = growth_cell(messages, length)
            cells.append(cell)
            print(
                row(
                    [
                        f"{messages:,}",
                        f"{length:,}",
                        f"{cell.post_seconds:.2f}",
                        f"{cell.post_seconds / messages * 1e3:.2f}",
                        f"{cell.cpu_per_message * 1e3:.2f}",
                        f"{cell.open_verify * 1e3:.3f}",
                        f"{cell.cpu_per_message / cell.open_verify:.1f}x",
                        f"{cell.unmask_seconds * 1e3:.0f}",
                        f"{cell.rss_peak_mb:.0f}",
                    ],
                    widths,
                ),
                flush=True,
            )
    print(f"# cells up to N x L = {budget:,}; take: first POST to last response (client);")
    print("# CPU/msg: the coordinator process's CPU while taking them / N; open+verify: one")
    print("# message, one core; unmask: Sum2 POSTed -> next round started (model published);")
    print("# peak: the coordinator process's ru_maxrss (it starts at about", end=" ")
    print(f"{min(c.rss_start_mb for c in cells):.0f} MB)" if cells else "? MB)")
    seconds, round_seconds = (6.0, 1.0) if quick else (20.0, 2.0)
    n = 50 if quick else 200
    print(f"\n## Idle participant: requests and CPU per round with no task ({n} participants)")
    widths = [34, 16, 14]
    print(row(["run as", "requests/round", "CPU ms/round"], widths))
    for mode, label in (("threads", "threads (spawn_participant loop)"), ("engine", "sim")):
        requests, cpu = idle_cost(mode, n, seconds, round_seconds)
        name = label if mode == "threads" else "one simulation worker"
        print(row([name, f"{requests:.2f}", f"{cpu * 1e3:.3f}"], widths))
    print(
        f"# rounds of {round_seconds:g} s with nobody selected (they fail at max_sum_time),"
        f" over {seconds:g} s;"
    )
    print("# requests counted by the coordinator, CPU of the participants' process; poll backoff")
    print("# 0.1 s x1.2 up to 10 s (threads), up to 1 s for the worker's shared GET /params")
