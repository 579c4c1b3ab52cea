"""The narrower code paths of the C core (AVX2, SSE2/portable) give the same results.

The core picks the widest vector code the CPU runs; XAYNET_NATIVE_LANES narrows it. The
native tests are run again in a subprocess for each width, so a machine with AVX-512 still
checks the code that machines without it will run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("lanes", ["4", "8"])
def test_narrow_vector_paths_match(lanes: str) -> None:
    env = dict(os.environ, XAYNET_NATIVE_LANES=lanes, XAYNET_DIFF_EXAMPLES="25")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",  # one process: this test is one of the parallel run's
            "-x",
            str(TESTS / "test_mask_vectors.py"),
            str(TESTS / "test_native_differential.py"),
            "-k",
            "not every_config",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.parametrize("forced", [None, "4", "8"])
def test_the_forced_width_is_the_one_in_use(forced: str | None) -> None:
    """Without this, a broken XAYNET_NATIVE_LANES would leave the test above checking the widest
    path three times."""
    env = dict(os.environ)
    env.pop("XAYNET_NATIVE_LANES", None)
    if forced is not None:
        env["XAYNET_NATIVE_LANES"] = forced
    out = subprocess.run(
        [sys.executable, "-c", "from xaynet_sdk._native import simd_lanes; print(simd_lanes())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    flags = _cpu_flags()
    widest = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    expected = widest if forced is None else min(int(forced), widest)
    assert int(out) == expected
