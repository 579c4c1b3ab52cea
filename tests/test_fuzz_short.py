"""A short run of every fuzz target (fuzz/targets.py), plus checks of the fuzz engine itself.

CI runs each target for a few thousand inputs (about 10 s in total); the full campaign is
``python fuzz/run.py`` (100,000 inputs per target, each target in its own process). The
run is deterministic: the inputs come from one seeded RNG per target.

Environment: ``XAYNET_FUZZ_INPUTS`` (inputs per target, e.g. 100000 for a campaign under
``scripts/run_sanitizers.sh tests/test_fuzz_short.py``), ``XAYNET_FUZZ_SEED``,
``XAYNET_FUZZ_TIME_LIMIT`` (seconds before an input counts as a hang; 2 s here, a little
above the campaign's 1 s so that a loaded CI machine does not turn a pause into a failure)
and ``XAYNET_FUZZ_CRASH_DIR`` (where failing inputs go; a temporary directory by default).
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.mutate import Mutator  # noqa: E402
from fuzz.run import Result, decoded, format_table, fuzz_target  # noqa: E402
from fuzz.targets import TARGETS, Target, all_seeds  # noqa: E402

#: Inputs per target by default; the pipeline target (sealing, signing and a coordinator
#: per input) is the slowest by far and gets fewer.
DEFAULT_INPUTS = 3000
SLOW_TARGETS = {"pipeline": 2000}


def _inputs(name: str) -> int:
    configured = os.environ.get("XAYNET_FUZZ_INPUTS")
    if configured:
        return int(configured)
    return SLOW_TARGETS.get(name, DEFAULT_INPUTS)


@pytest.fixture
def quiet_sdk_logs() -> Iterator[None]:
    """The coordinator and the reassembler log every rejection: not worth formatting here."""
    logger = logging.getLogger("xaynet_sdk")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _crash_dir(tmp_path: Path) -> Path:
    configured = os.environ.get("XAYNET_FUZZ_CRASH_DIR")
    return Path(configured) if configured else tmp_path / "crashes"


def _explain(result: Result) -> str:
    lines = [format_table([result])]
    for finding in result.findings:
        trace = Path(finding.path).with_suffix(".txt")
        if trace.is_file():
            lines.append(trace.read_text()[-4000:])
    return "\n".join(lines)


@pytest.mark.timeout(0)  # the time budget is the inputs count; XAYNET_FUZZ_INPUTS may be large
@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_target_short_run(name: str, tmp_path: Path, quiet_sdk_logs: None) -> None:
    target = TARGETS[name]
    inputs = _inputs(name)
    result = fuzz_target(
        target,
        inputs,
        seed=int(os.environ.get("XAYNET_FUZZ_SEED", "0")),
        time_limit=float(os.environ.get("XAYNET_FUZZ_TIME_LIMIT", "2.0")),
        hard_limit=300.0,
        crash_dir=_crash_dir(tmp_path),
    )
    print(format_table([result]))
    assert result.inputs == inputs
    assert not result.failed, _explain(result)
    # the inputs reach past the first checks: some decode, some are rejected
    assert result.decoded > 0 and result.rejected > 0, _explain(result)


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_seed_is_a_valid_encoding(name: str, quiet_sdk_logs: None) -> None:
    """The seeds are what the mutations start from: each must decode (or be accepted)."""
    target = TARGETS[name]
    if target.setup is not None:
        target.setup()
    seeds = all_seeds(target)
    assert seeds
    outcomes = [target.run(seed) for seed in seeds]
    # a few seeds are deliberately invalid (regressions, duplicates, bad tags): most decode
    assert sum(map(decoded, outcomes)) >= len(seeds) * 0.6, outcomes


# ---------------------------------------------------------------------------------------------
# The engine finds what it is meant to find
# ---------------------------------------------------------------------------------------------


def _toy(run: object, name: str = "toy") -> Target:
    return Target(
        name,
        "a toy decoder",
        run,  # type: ignore[arg-type]
        lambda: [b"\x00" * 16],
        lambda rng: rng.randbytes(16),
        (ValueError,),
        max_size=64,
    )


def test_an_undocumented_exception_is_a_crash_with_its_input_saved(tmp_path: Path) -> None:
    def run(data: bytes) -> str:
        if data[:1] == b"\xff":
            raise IndexError("a decoder bug")
        try:
            if data[:1] == b"\x01":
                raise ValueError("documented")
        except ValueError:
            return "ValueError"
        return "ok"

    result = fuzz_target(_toy(run), 3000, crash_dir=tmp_path)
    assert result.crashes > 0 and result.failed
    crash = next(f for f in result.findings if f.kind == "crash")
    assert "IndexError" in crash.summary
    saved = Path(crash.path)
    assert saved.read_bytes()[:1] == b"\xff"
    assert "a decoder bug" in saved.with_suffix(".txt").read_text()


def test_a_slow_input_is_a_hang_with_its_input_saved(tmp_path: Path) -> None:
    def run(data: bytes) -> str:
        if data[:1] == b"\x07":
            time.sleep(0.3)
        return "ok"

    seeds = Target("slow", "slow", run, lambda: [b"\x07slow"], lambda rng: b"\x00", ())
    result = fuzz_target(seeds, 5, time_limit=0.1, crash_dir=tmp_path)
    assert result.hangs >= 1 and result.failed
    hang = next(f for f in result.findings if f.kind == "hang")
    assert Path(hang.path).read_bytes() == b"\x07slow"


def test_the_mutator_is_deterministic_and_bounded() -> None:
    corpus = [bytes(range(200)), b"\x08\x00\x00\x00\x00\x00\x00\x00abcdefgh"]

    def stream(seed: int) -> list[bytes]:
        mutator = Mutator(random.Random(seed), max_size=300)
        return [mutator.mutate(corpus[i % 2], corpus) for i in range(500)]

    first = stream(1)
    assert first == stream(1)
    assert first != stream(2)
    assert all(len(x) <= 300 for x in first)
    assert len(set(first)) > 400


@pytest.mark.parametrize("how", ["segv", "gil-hang"])
def test_a_worker_that_dies_or_hangs_in_c_is_caught(how: str, tmp_path: Path) -> None:
    """The campaign runs each target in a worker process: a segfault in C, or a hang that
    never gives the GIL back, ends only the worker, and the parent saves the input."""
    from fuzz.run import main

    argv = ["--inputs", "100", "--hard-limit", "2", "--crash-dir", str(tmp_path)]
    assert main([*argv, "--selftest", how, "params"]) == 1
    kind = "fatal" if how == "segv" else "hang"
    saved = list(tmp_path.glob(f"params-{kind}-*.bin"))
    assert saved, list(tmp_path.iterdir())
    if how == "segv":
        assert "Segmentation fault" in saved[0].with_suffix(".txt").read_text()
