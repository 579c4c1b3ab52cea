"""xaynet_sdk benchmarks: our figures beside a reference, and the ratio.

    python benchmarks/run.py            # every section
    python benchmarks/run.py mask sum2  # some sections
    python benchmarks/run.py --quick    # fewer sizes and repeats (a smoke run)

Each figure is the median of several runs. References:
* mask: the time the `cryptography` package (OpenSSL) needs to produce the ChaCha20
  keystream bytes that the rejection sampling consumes: the physical limit of masking.
* sum2: the same derivation and aggregation on one thread (the ratio is the speed-up).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from typing import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from xaynet_sdk import _native
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair
from xaynet_sdk.mask.masking import mask_model, sum_masks

CONFIGS = ("Prime/F32/B0/M3", "Integer/F64/B2/M6")


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-touch page faults, caches, CPU frequency
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def keystream_time(seed: bytes, nbytes: int, repeats: int) -> float:
    chunk = 1 << 18
    src, dst = bytearray(chunk), bytearray(chunk + 16)

    def run() -> None:
        enc = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), None).encryptor()
        for _ in range(-(-nbytes // chunk)):
            enc.update_into(src, dst)

    return median_time(run, repeats)


def row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths))


def bench_mask(quick: bool) -> None:
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    repeats = 3 if quick else 7
    widths = [18, 9, 12, 14, 16, 7]
    print("\n## Masking N weights (one update participant)")
    print(row(["config", "N", "ours (ms)", "keystream MB", "limit (ms)", "ratio"], widths))
    rng = np.random.default_rng(0)
    for name in CONFIGS:
        config = MaskConfig.from_name(name)
        pair = MaskConfigPair.single(config)
        for n in sizes:
            weights = rng.standard_normal(n).astype(config.data_type.numpy_dtype)
            seed = os.urandom(32)
            ours = median_time(partial(mask_model, seed, pair, 1.0, weights), repeats)
            _, words = _native.draw(seed, 0, config, n + 1)  # unit + n weights: all draws
            limit = keystream_time(seed, 4 * words, repeats)
            print(
                row(
                    [
                        name,
                        f"{n:,}",
                        f"{ours * 1e3:.2f}",
                        f"{4 * words / 1e6:.1f}",
                        f"{limit * 1e3:.2f}",
                        f"{ours / limit:.2f}",
                    ],
                    widths,
                )
            )


def bench_sum2(quick: bool) -> None:
    cases = (
        [(10, 100_000)]
        if quick
        else [(10, 100_000), (50, 100_000), (10, 1_000_000), (50, 1_000_000)]
    )
    repeats = 3 if quick else 5
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    widths = [18, 4, 11, 14, 16, 8]
    print(f"\n## Sum2: derive and aggregate K masks of N weights ({cores} cores)")
    print(row(["config", "K", "N", "1 thread (ms)", f"{cores} threads (ms)", "speed-up"], widths))
    config = MaskConfig.from_name(CONFIGS[0])
    pair = MaskConfigPair.single(config)
    for k, n in cases:
        seeds = [os.urandom(32) for _ in range(k)]
        one = median_time(partial(sum_masks, seeds, n, pair, threads=1), repeats)
        many = median_time(partial(sum_masks, seeds, n, pair, threads=cores), repeats)
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


SECTIONS = {"mask": bench_mask, "sum2": bench_sum2}


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], default=[])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = parser.parse_args(argv)
    print(f"# xaynet_sdk benchmarks (python {sys.version.split()[0]}, numpy {np.__version__})")
    for name in args.sections or list(SECTIONS):
        SECTIONS[name](args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
