"""Smoke tests of ``benchmarks/run.py``: every section runs and prints every row.

``--quick`` keeps it short (N up to 1e5, few repeats). The figures themselves are not
checked against targets (they depend on the machine and its load), only that each row is
there and holds positive, finite numbers.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"

#: Section title prefix -> rows printed by ``--quick``.
QUICK_ROWS = {
    "Masking": 4,  # 2 configurations x N = 1e4, 1e5
    "Sum2": 1,  # K = 10, N = 1e5
    "End to end": 2,  # update and sum2 at N = 1e5
    "Coordinator": 2,  # aggregate, unmask+publish
    "Memory": 1,  # N = 1e5
    "Persistence": 2,  # update and sum at N = 1e5
}


def run_quick(*args: str, timeout: float) -> dict[str, list[list[str]]]:
    """Run ``run.py --quick *args``; return each section's data rows as lists of cells."""
    result = subprocess.run(
        [sys.executable, str(RUN), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^# total \d+ s$", result.stdout, re.M), result.stdout
    return parse(result.stdout)


def parse(text: str) -> dict[str, list[list[str]]]:
    sections: dict[str, list[list[str]]] = {}
    rows: list[list[str]] = []
    header_next = False
    for line in text.splitlines():
        if line.startswith("## "):
            rows = sections.setdefault(line[3:], [])
            header_next = True
        elif line.strip() and not line.startswith("#") and sections:
            if header_next:
                header_next = False  # the column titles
            else:
                rows.append(line.split())
    return sections


def section(sections: dict[str, list[list[str]]], prefix: str) -> list[list[str]]:
    matches = [rows for title, rows in sections.items() if title.startswith(prefix)]
    assert len(matches) == 1, f"section {prefix!r} not printed once: {list(sections)}"
    return matches[0]


def number(cell: str) -> float:
    value = float(cell.replace(",", "").rstrip("x"))
    assert math.isfinite(value) and value > 0, cell
    return value


def check_rows(rows: list[list[str]], expected: int, numeric: list[int]) -> None:
    assert len(rows) == expected, rows
    for cells in rows:
        for i in numeric:
            number(cells[i])


@pytest.mark.timeout(300)
def test_quick_run_without_the_original_prints_every_row() -> None:
    sections = run_quick("--skip-original", timeout=240)
    assert len(sections) == len(QUICK_ROWS)
    check_rows(section(sections, "Masking"), QUICK_ROWS["Masking"], [1, 2, 3, 4, 5])
    check_rows(section(sections, "Sum2"), QUICK_ROWS["Sum2"], [1, 2, 3, 4, 5])
    e2e = section(sections, "End to end")
    check_rows(e2e, QUICK_ROWS["End to end"], [1, 2, 3])
    assert [r[0] for r in e2e] == ["update", "sum2"]
    assert all(r[4:] == ["skipped", "-"] for r in e2e), e2e
    coordinator = section(sections, "Coordinator")
    assert [r[0] for r in coordinator] == ["aggregate", "unmask+publish"]
    check_rows(coordinator[:1], 1, [1, 2, 3, 4])
    check_rows(coordinator[1:], 1, [2, 3, 4])
    memory = section(sections, "Memory")
    check_rows(memory, QUICK_ROWS["Memory"], [0, 1, 2])
    assert memory[0][3:] == ["skipped", "skipped", "-"]
    persistence = section(sections, "Persistence")
    check_rows(persistence, QUICK_ROWS["Persistence"], [1, 2, 3, 4, 5, 6])
    assert [r[0] for r in persistence] == ["update", "sum"]


@pytest.mark.original
@pytest.mark.timeout(1200)  # the first run builds .cache/refvenv
def test_quick_end_to_end_against_the_original() -> None:
    sections = run_quick("e2e", timeout=1100)
    assert len(sections) == 1, list(sections)
    rows = section(sections, "End to end")
    check_rows(rows, QUICK_ROWS["End to end"], [1, 2, 3, 4, 5])
    assert all(r[5].endswith("x") for r in rows), rows
