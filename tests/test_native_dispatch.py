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
