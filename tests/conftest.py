"""Shared pytest configuration: markers, and the hypothesis profile.

The ``ci`` profile (the default) makes the property tests reproducible and free of
wall-clock failures on a loaded machine: no per-example deadline (the 200 ms default fails
on a busy 2-core runner), derandomized (each test's examples come from a seed fixed by the
test itself, so every run checks the same cases), no example database, and the blob to
reproduce a failure printed. ``XAYNET_HYPOTHESIS_PROFILE=dev`` explores: one random seed for
the run (or ``XAYNET_HYPOTHESIS_SEED``), printed in the header of the run so that a failure
can be replayed, still without deadline.

The suite runs in parallel (pytest-xdist, ``-n 4 --dist loadfile`` in pyproject.toml: one test
file per worker at a time, so module fixtures are built once). Most tests wait on rounds and
servers rather than compute, hence more workers than a 2-core runner has. The files marked
``slow`` are handed out first, so that the run does not end on one of them alone.
"""

import os
import random

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
HYPOTHESIS_PROFILE = os.environ.get("XAYNET_HYPOTHESIS_PROFILE", "ci")
settings.load_profile(HYPOTHESIS_PROFILE)
HYPOTHESIS_SEED = int(os.environ.get("XAYNET_HYPOTHESIS_SEED") or random.randrange(2**32))


def pytest_configure(config: pytest.Config) -> None:
    """Register markers so `-m original` / `-m "not original"` work without warnings."""
    config.addinivalue_line(
        "markers",
        "original: drives the ORIGINAL xaynet-sdk-python 0.1.0 participant "
        "(builds .cache/refvenv from PyPI on first use; runs it in a subprocess)",
    )
    if (
        not settings.get_profile(HYPOTHESIS_PROFILE).derandomize
        and config.getoption("hypothesis_seed", None) is None
    ):
        from hypothesis import core

        core.global_force_seed = HYPOTHESIS_SEED  # type: ignore[assignment]  # as --hypothesis-seed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked ``slow`` first, each group in collection order (a stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_report_header(config: pytest.Config) -> str:
    current = settings.get_profile(HYPOTHESIS_PROFILE)
    if current.derandomize:
        seed = "derandomized: each test's seed is fixed by the test (the same cases every run)"
    else:
        forced = config.getoption("hypothesis_seed", None)
        seed = f"seed {forced if forced is not None else HYPOTHESIS_SEED}"
    return (
        f"hypothesis profile {HYPOTHESIS_PROFILE!r}: deadline={current.deadline},"
        f" {seed}; XAYNET_HYPOTHESIS_PROFILE=dev explores"
    )
