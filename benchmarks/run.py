"""xaynet_sdk benchmarks: our figures beside a reference, and the ratio.

    python benchmarks/run.py                  # every section (builds .cache/refvenv once)
    python benchmarks/run.py mask sum2        # some sections
    python benchmarks/run.py --quick          # fewer sizes and repeats (a smoke run)
    python benchmarks/run.py --skip-original  # no reference venv: ours only in e2e/memory
    python benchmarks/run.py store            # not in the default run: needs redis-server
    python benchmarks/run.py scale growth     # only when named: 1,000 simulated participants,
                                              # the coordinator's growth curve (_scale.py)

Each figure is the median of several runs. References:
* mask: the time the `cryptography` package (OpenSSL) needs to produce the ChaCha20
  keystream bytes that the rejection sampling consumes: the physical limit of masking.
* sum2: the same derivation and aggregation on one thread (the ratio is the speed-up).
* e2e: the ORIGINAL participant (xaynet-sdk-python 0.1.0, in its own venv), driven by the
  same tick loop against the same local coordinator with the same round settings. Update:
  from set_model (once the sum dict is in) to the coordinator accepting the Update message.
  Sum2: from the coordinator serving the seed dict (GET /seeds 200) to its accepting the
  Sum2 message. See benchmarks/_rounds.py.
* coordinator: Update messages POSTed by 2 client connections, per message, against what
  any coordinator must spend on one (open the sealed box, verify the signature, one core);
  unmask and publish (Sum2 closed to model published) against the C unmask kernel alone.
* memory: peak resident memory (ru_maxrss) of the participant's process after its updates
  of N weights, against the original's.
* persist: the time state_file= adds to a sum and an update task (its records), beside the
  task's own work; see benchmarks/_persistence.py.
* store (only when named): the coordinator section's Update throughput with its state in
  Redis (``[redis]``: every accepted message written ahead, AOF with fsync every second)
  against in memory.
The last line of each section says how long it took and how much CPU other processes took
meanwhile: on a 2-core machine that load skews every figure, above all the 2-thread ones.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from xaynet_sdk import _native
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair
from xaynet_sdk.mask.masking import mask_model, sum_masks
from xaynet_sdk.mask.parallel import usable_cores

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _persistence  # noqa: E402 - benchmarks/ is not a package
import _rounds  # noqa: E402
import _scale  # noqa: E402

CONFIGS = ("Prime/F32/B0/M3", "Integer/F64/B2/M6")
SKIP_ORIGINAL = False


def median_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """The median time of each function, run in turn (a, b, a, b, ...) so that a change in
    the machine's load affects a figure and its reference alike."""
    for fn in fns:
        fn()  # warm-up: first-touch page faults, caches, CPU frequency
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def keystream(seed: bytes, nbytes: int) -> Callable[[], None]:
    """Producing ``nbytes`` of ChaCha20 keystream with OpenSSL (``cryptography``)."""
    chunk = 1 << 18
    src, dst = bytearray(chunk), bytearray(chunk + 16)

    def run() -> None:
        enc = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), None).encryptor()
        for _ in range(-(-nbytes // chunk)):
            enc.update_into(src, dst)

    return run


def row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths))


def bench_mask(quick: bool) -> None:
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    widths = [18, 9, 11, 14, 12, 10, 7, 9]
    load = CpuLoad()
    cores = usable_cores()
    print("\n## Masking N weights (one update participant)")
    print(
        "# ours: as mask_model runs by default (from 2^17 weights the draw is split over "
        f"{cores} cores, same result); 1 thread: threads=1"
    )
    print(
        row(
            [
                "config",
                "N",
                "ours (ms)",
                "1 thread (ms)",
                "keystream MB",
                "limit (ms)",
                "ratio",
                "1 thread",
            ],
            widths,
        )
    )
    rng = np.random.default_rng(0)
    for name in CONFIGS:
        config = MaskConfig.from_name(name)
        pair = MaskConfigPair.single(config)
        for n in sizes:
            weights = rng.standard_normal(n).astype(config.data_type.numpy_dtype)
            seed = os.urandom(32)
            _, words = _native.draw(seed, 0, config, n + 1)  # unit + n weights: all draws
            repeats = 3 if quick else (21 if n <= 100_000 else 7)
            ours, single, limit = median_times(
                [
                    partial(mask_model, seed, pair, 1.0, weights),
                    partial(mask_model, seed, pair, 1.0, weights, threads=1),
                    keystream(seed, 4 * words),
                ],
                repeats,
            )
            print(
                row(
                    [
                        name,
                        f"{n:,}",
                        f"{ours * 1e3:.2f}",
                        f"{single * 1e3:.2f}",
                        f"{4 * words / 1e6:.1f}",
                        f"{limit * 1e3:.2f}",
                        f"{ours / limit:.2f}",
                        f"{single / limit:.2f}",
                    ],
                    widths,
                )
            )
    print(f"# {load.report()}")


def bench_sum2(quick: bool) -> None:
    cases = (
        [(10, 100_000)]
        if quick
        else [(10, 100_000), (50, 100_000), (10, 1_000_000), (50, 1_000_000)]
    )
    cores = usable_cores()
    widths = [18, 4, 11, 14, 16, 8]
    load = CpuLoad()
    print(f"\n## Sum2: derive and aggregate K masks of N weights ({cores} cores)")
    print(row(["config", "K", "N", "1 thread (ms)", f"{cores} threads (ms)", "speed-up"], widths))
    config = MaskConfig.from_name(CONFIGS[0])
    pair = MaskConfigPair.single(config)
    for k, n in cases:
        seeds = [os.urandom(32) for _ in range(k)]
        repeats = 3 if quick else (15 if n * k <= 5_000_000 else 5)
        one, many = median_times(
            [
                partial(sum_masks, seeds, n, pair, threads=1),
                partial(sum_masks, seeds, n, pair, threads=cores),
            ],
            repeats,
        )
        print(
            row(
                [
                    CONFIGS[0],
                    str(k),
                    f"{n:,}",
                    f"{one * 1e3:.1f}",
                    f"{many * 1e3:.1f}",
                    f"{one / many:.2f}",
                ],
                widths,
            )
        )
    print(f"# {load.report()}")


class CpuLoad:
    """CPU seconds used by other processes (all of /proc/stat minus this process and its
    reaped children) between construction and :meth:`report`."""

    def __init__(self) -> None:
        self.start = (self._busy(), self._ours(), time.monotonic())

    @staticmethod
    def _busy() -> float:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return 0.0
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ours() -> float:
        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    def report(self) -> str:
        busy, ours, t0 = self.start
        wall = time.monotonic() - t0
        if wall < 1.0:  # /proc/stat counts in 10 ms ticks
            return f"{wall:.1f} s"
        others = max(0.0, (self._busy() - busy) - (self._ours() - ours)) / wall
        return f"{wall:.0f} s; meanwhile other processes used {others:.2f} of the CPUs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


@dataclass
class E2E:
    """Measured tasks of ours and of the original (empty if skipped) on one coordinator."""

    ours: list[_rounds.Measurement]
    original: list[_rounds.Measurement]
    ready_kb: dict[str, int]
    why_skipped: str = ""


_E2E_CACHE: dict[tuple[str, int], E2E] = {}


def e2e_runs(mode: str, n: int, runs: int) -> E2E:
    """``runs`` measured tasks of ours, then of the original, on one coordinator (cached)."""
    key = (mode, n)
    if key not in _E2E_CACHE:
        session = _rounds.Session(n, mode)
        try:
            timeout = 120 + runs * n / 20_000  # the original needs ~9 s per update of 1e6
            ours = session.measure("ours", runs, timeout)
            original: list[_rounds.Measurement] = []
            why = "--skip-original" if SKIP_ORIGINAL else ""
            if not why:
                try:
                    original = session.measure("original", runs, timeout)
                except _rounds.OriginalUnavailable as e:
                    why = f"the original is unavailable: {e}"
        finally:
            session.close()
        _E2E_CACHE[key] = E2E(ours, original, dict(session.ready_kb), why)
    return _E2E_CACHE[key]


def e2e_count(quick: bool, n: int) -> int:
    """Measured rounds per participant: the original needs ~9 s per update of 1e6 weights."""
    return 2 if quick else (5 if n <= 100_000 else 3)


def bench_e2e(quick: bool) -> None:
    sizes = [100_000] if quick else [100_000, 1_000_000]
    widths = [6, 11, 5, 11, 15, 9]
    load = CpuLoad()
    notes: set[str] = set()
    print(f"\n## End to end on the local coordinator ({_rounds.MASK}): ours vs the original")
    print(row(["task", "N", "runs", "ours (ms)", "original (ms)", "speed-up"], widths))
    for mode, label in (("update", "update"), ("sum", "sum2")):
        for n in sizes:
            runs = e2e_count(quick, n)
            result = e2e_runs(mode, n, runs)
            ours = statistics.median(m.latency for m in result.ours)
            cells = [label, f"{n:,}", str(runs), ms(ours)]
            if result.original:
                original = statistics.median(m.latency for m in result.original)
                cells += [ms(original), f"{original / ours:.1f}x"]
            else:
                cells += ["skipped", "-"]
                notes.add(result.why_skipped)
            print(row(cells, widths))
    print("# update: set_model (sum dict in) -> Update accepted; sum2: GET /seeds 200 -> Sum2")
    print("# accepted; one measured participant per round, tick loop benchmarks/_driver_loop.py")
    for n in sizes:
        result = e2e_runs("sum", n, e2e_count(quick, n))
        waits = [
            f"{name} {ms(statistics.median(m.wait for m in runs))} ms"
            for name, runs in (("ours", result.ours), ("original", result.original))
            if runs
        ]
        print(f"# sum2, N = {n:,}: seed dict fetched after publication (not counted): ", end="")
        print(", ".join(waits))
    for note in sorted(notes):
        print(f"# original skipped: {note}")
    print(f"# {load.report()}")


def bench_coordinator(quick: bool) -> None:
    n = 100_000
    rounds, per_round = (2, 20) if quick else (5, 40)
    connections = 2
    load = CpuLoad()
    figures = _rounds.coordinator_figures(n, rounds, per_round, connections, 5 if quick else 9)
    per_model = statistics.median(figures.per_model)
    unmask = statistics.median(figures.unmask)
    widths = [14, 12, 10, 15, 7]
    print(
        f"\n## Coordinator ({_rounds.MASK}, N = {n:,}): {rounds} rounds of {per_round} Update"
        f" messages over {connections} connections"
    )
    print(row(["", "ours (/s)", "ours (ms)", "reference (ms)", "ratio"], widths))
    print(
        row(
            [
                "aggregate",
                f"{1 / per_model:.0f}",
                f"{per_model * 1e3:.2f}",
                f"{figures.floor * 1e3:.2f}",
                f"{per_model / figures.floor:.2f}",
            ],
            widths,
        )
    )
    print(
        row(
            [
                "unmask+publish",
                "-",
                f"{unmask * 1e3:.2f}",
                f"{figures.kernel * 1e3:.2f}",
                f"{unmask / figures.kernel:.2f}",
            ],
            widths,
        )
    )
    print("# aggregate: POST to accepted, per Update message; reference: open its sealed box and")
    print("# verify its signature (one core). unmask+publish: Sum2 closed -> global model served;")
    print("# reference: the C unmask kernel alone on the same aggregate")
    print(f"# {load.report()}")


def bench_memory(quick: bool) -> None:
    n = 100_000 if quick else 1_000_000
    runs = e2e_count(quick, n)
    load = CpuLoad()
    result = e2e_runs("update", n, runs)
    widths = [11, 12, 11, 16, 15, 7]
    print(f"\n## Memory: resident set of the participant process, {runs} updates of N weights")
    print(row(["N", "ours ready", "ours peak", "original ready", "original peak", "ratio"], widths))
    ours = max(m.maxrss_kb for m in result.ours) / 1024
    cells = [f"{n:,}", f"{result.ready_kb['ours'] / 1024:.1f}", f"{ours:.1f}"]
    if result.original:
        original = max(m.maxrss_kb for m in result.original) / 1024
        ready = result.ready_kb["original"] / 1024
        cells += [f"{ready:.1f}", f"{original:.1f}", f"{ours / original:.2f}"]
    else:
        cells += ["skipped", "skipped", "-"]
    print(row(cells, widths))
    print("# MB; ready: model built, participant created; peak: ru_maxrss after the updates;")
    print("# the original's model is a list of floats (its only input), ours a numpy array")
    print(f"# {load.report()}")


def bench_persist(quick: bool) -> None:
    _persistence.bench(quick, row, CpuLoad())


def bench_store(quick: bool) -> None:
    """Update messages per second, state in Redis vs in memory (interleaved runs)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import tempfile

    from store_servers import RedisServer  # type: ignore[import-not-found]  # tests/ helper

    n = 100_000
    rounds, per_round = (1, 20) if quick else (3, 40)
    load = CpuLoad()
    per: dict[str, list[float]] = {"memory": [], "redis": []}
    with tempfile.TemporaryDirectory(prefix="xaynet-bench-redis-") as tmp:
        redis = RedisServer(Path(tmp), appendfsync="everysec").start()
        try:
            for _ in range(2 if quick else 3):
                for name, url in (("memory", None), ("redis", redis.url)):
                    figures = _rounds.coordinator_figures(n, rounds, per_round, 2, 1, url)
                    per[name] += figures.per_model
            stored = 10 if quick else 40
            restore = _rounds.restore_seconds(redis.url, n, stored)
        finally:
            redis.stop()
    memory, in_redis = (statistics.median(per[k]) for k in ("memory", "redis"))
    widths = [10, 12, 10, 7]
    print(
        f"\n## Coordinator state ({_rounds.MASK}, N = {n:,}): Update messages over 2"
        f" connections, {len(per['redis'])} rounds of {per_round} each"
    )
    print(row(["state", "Update/s", "ms", "ratio"], widths))
    print(row(["memory", f"{1 / memory:.0f}", f"{memory * 1e3:.2f}", "1.00"], widths))
    print(
        row(
            ["redis", f"{1 / in_redis:.0f}", f"{in_redis * 1e3:.2f}", f"{in_redis / memory:.2f}"],
            widths,
        )
    )
    print(f"# restore: a coordinator starting in an Update phase with {stored} stored messages:")
    print(f"# {restore:.2f} s in process (a new process adds Python's start and imports)")
    print("# ratio: time per message with Redis / in memory; Redis: a local redis-server,")
    print("# append-only file, fsync every second; one RPUSH of each accepted message")
    print(f"# {load.report()}")


SECTIONS = {
    "mask": bench_mask,
    "sum2": bench_sum2,
    "e2e": bench_e2e,
    "coordinator": bench_coordinator,
    "memory": bench_memory,
    "persist": bench_persist,
}
#: Run only when named: they need a component the default run does not (store: a
#: redis-server), or take minutes (scale, growth: benchmarks/_scale.py).
EXTRA_SECTIONS = {
    "store": bench_store,
    "scale": partial(_scale.bench_scale, row=row),
    "growth": partial(_scale.bench_growth, row=row),
}


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, *EXTRA_SECTIONS, []], default=[])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument(
        "--skip-original", action="store_true", help="do not run the original participant"
    )
    args = parser.parse_args(argv)
    global SKIP_ORIGINAL
    SKIP_ORIGINAL = args.skip_original
    start = time.monotonic()
    print(f"# xaynet_sdk benchmarks (python {sys.version.split()[0]}, numpy {np.__version__})")
    for name in args.sections or list(SECTIONS):
        {**SECTIONS, **EXTRA_SECTIONS}[name](args.quick)
    print(f"\n# total {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
