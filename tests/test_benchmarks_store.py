"""Smoke test of ``benchmarks/run.py store`` (not in the default run: it needs redis-server).

Only that the section runs and prints its rows with positive, finite numbers; the figures
depend on the machine and its load.
"""

from __future__ import annotations

import pytest
from test_benchmarks import check_rows, run_quick, section


@pytest.mark.timeout(400)
def test_quick_store_section_prints_memory_and_redis() -> None:
    sections = run_quick("store", timeout=360)
    assert len(sections) == 1, list(sections)
    rows = section(sections, "Coordinator state")
    assert [r[0] for r in rows] == ["memory", "redis"]
    check_rows(rows, 2, [1, 2, 3])
    assert rows[0][3] == "1.00"
