"""The helper threads of the mask layer: errors, waiting, forks, CPU placement."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from xaynet_sdk.mask import masking, parallel
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair


def test_an_error_on_either_side_is_raised_once_both_are_done() -> None:
    finished: list[str] = []

    def slow_ok() -> None:
        time.sleep(0.2)
        finished.append("helper")

    def failing() -> None:
        raise ValueError("here")

    with pytest.raises(ValueError, match="here"):
        parallel.in_parallel([failing, slow_ok])
    assert finished == ["helper"]  # the caller's error waited for the helper's task

    def helper_fails() -> None:
        raise KeyError("there")

    with pytest.raises(KeyError, match="there"):
        parallel.in_parallel([lambda: finished.append("caller"), helper_fails])
    assert finished == ["helper", "caller"]


def test_tasks_run_on_helper_threads_which_are_kept() -> None:
    names: list[str] = []
    record = lambda: names.append(threading.current_thread().name)  # noqa: E731
    parallel.in_parallel([record, record, record])
    first = set(names[1:])
    names.clear()
    parallel.in_parallel([record, record, record])
    assert names[0] == threading.current_thread().name
    assert set(names[1:]) == first and len(first) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_helpers() -> None:
    parallel.in_parallel([lambda: None, lambda: None])  # helpers exist in the parent
    pid = os.fork()
    if pid == 0:  # the child: the parent's helper threads do not exist here
        code = 1
        try:
            out: list[int] = []
            parallel.in_parallel([lambda: out.append(1), lambda: out.append(2)])
            code = 0 if sorted(out) == [1, 2] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.skipif(
    parallel.sched_getcpu is None or len(parallel.usable_cores_set()) < 2,
    reason="Linux with two usable CPUs",
)
def test_helpers_are_kept_off_the_callers_cpu() -> None:
    seen: list[int] = []
    caller_cpu: list[int] = []

    def here() -> None:
        assert parallel.sched_getcpu is not None
        caller_cpu.append(parallel.sched_getcpu())

    def there() -> None:
        seen.append(os.sched_getaffinity(0).__len__())
        assert parallel.sched_getcpu is not None
        seen.append(parallel.sched_getcpu())

    parallel.in_parallel([here, there])
    # the helper may run on any usable CPU but the one its caller was on when it was woken
    assert seen[0] == len(parallel.usable_cores_set()) - 1


def test_results_do_not_depend_on_the_threads() -> None:
    config = MaskConfig.from_name("Prime/F32/B0/M3")
    pair = MaskConfigPair.single(config)
    seeds = [bytes([i]) * 32 for i in range(5)]
    n = masking.PARALLEL_MIN + 3
    one = masking.sum_masks(seeds, n, pair, threads=1)
    assert all(masking.sum_masks(seeds, n, pair, threads=t) == one for t in (2, 3, 4))
    weights = np.linspace(-1, 1, n, dtype=np.float32)
    masked = [masking.mask_model(b"\1" * 32, pair, 0.5, weights, threads=t) for t in (1, 2)]
    assert masked[0] == masked[1]
