"""SIGKILL storm: participants in subprocesses killed at random points, resumed from state files.

Five callback participants (``tests/state_file_child.py``, one subprocess per life) take part
in short rounds of a local coordinator over loopback HTTP, each with its own state file and a
one-hot local model (so a global model names the set of updates it averages). A seeded
schedule kills one life after another with SIGKILL, :data:`N_KILLS` times at least, at one of:

* ``timer``: from outside, after a random delay (any instant: a tick, a write, a sleep);
* ``rename``: inside a state record, after its temporary file is written and fsync-ed and
  before the rename (the test checks the temporary was left behind, then removed);
* ``before-post`` / ``after-post``: right before a POST, or right after its answer and
  before the participant could record it;
* ``train``: inside ``train_round``;
* ``outside``: a life whose self-kill point did not come within :data:`MAX_LIFE` (counted
  apart from ``timer``).

Each kill is followed at once by a restart from the state file. Checked:

* every life of a participant starts with the same public key (identity survives);
* never two different messages of one kind from one key in one round, and no key twice in
  one round's accepted messages (a spy on the coordinator's round state);
* every global model is exactly the mean of a subset of the update participants' models;
* rounds complete during the storm and after it; no child writes a traceback.

The report counts kills by point and by phase: for a self-kill the phase the participant was
in, for a kill from outside the phase on file (what it resumes from; the sub-steps inside a
tick are never on file). The seed is printed with the report; ``XAYNET_KILL_SEED`` replays a
schedule.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from round_checks import contribution, match_subset  # noqa: E402
from test_reliability_restore import MessageSpy, phase_name  # noqa: E402

from xaynet_sdk.coordinator import LocalCoordinator, Settings  # noqa: E402
from xaynet_sdk.exceptions import ParticipantRestore  # noqa: E402
from xaynet_sdk.protocol.saved import load_state  # noqa: E402
from xaynet_sdk.state_file import open_state  # noqa: E402

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

SEED = int(os.environ.get("XAYNET_KILL_SEED", "20261202"))
N_KILLS = 120
N_PARTICIPANTS = 5
CHILD = TESTS_DIR / "state_file_child.py"
POINTS = ("timer", "rename", "before-post", "after-post", "train")
#: A life whose self-kill point never comes is killed from outside after this long.
MAX_LIFE = 12.0


def settings() -> Settings:
    return Settings.for_tests(
        model_length=N_PARTICIPANTS,
        sum=0.3,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=0.8,
        min_update_time=1.5,
        min_sum2_time=0.5,
        max_sum_time=4.0,
        max_update_time=4.0,
        max_sum2_time=4.0,
    )


def one_hot(index: int) -> list[float]:
    return [1.0 if j == index else 0.0 for j in range(N_PARTICIPANTS)]


@dataclass
class Life:
    proc: subprocess.Popen[bytes]
    point: str
    deadline: float  # monotonic: killed from outside then
    stderr: Path


@dataclass
class Slot:
    index: int
    state_file: Path
    journal: Path
    life: Optional[Life] = None
    lives: int = 0
    keys: set[str] = field(default_factory=set)


def start(slot: Slot, url: str, rng: random.Random, tmp: Path, point: Optional[str] = None) -> None:
    point = point or rng.choice(POINTS)
    nth = {"rename": rng.randint(1, 8), "train": 1}.get(point, rng.randint(1, 3))
    plan = {"model": one_hot(slot.index), "point": point, "nth": nth}
    delay = rng.uniform(0.3, 4.0) if point == "timer" else MAX_LIFE
    if point == "none":
        delay = float("inf")
    slot.lives += 1
    stderr = tmp / f"child{slot.index}-{slot.lives}.err"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                url,
                str(slot.state_file),
                str(slot.journal),
                json.dumps(plan),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    slot.life = Life(proc, point, time.monotonic() + delay, stderr)


def kill(life: Life) -> None:
    if life.proc.poll() is None:
        life.proc.send_signal(signal.SIGKILL)
    life.proc.wait(30)


def leftovers(slot: Slot) -> list[Path]:
    prefix = f".{slot.state_file.name}."
    return [p for p in slot.state_file.parent.iterdir() if p.name.startswith(prefix)]


def test_sigkill_storm_loses_no_identity_and_sends_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    context = f"seed={SEED} (XAYNET_KILL_SEED replays the schedule)"
    kills: Counter[str] = Counter()
    by_phase: Counter[str] = Counter()
    tmp_left = 0
    slots = [
        Slot(i, tmp_path / f"p{i}.state", tmp_path / f"p{i}.journal") for i in range(N_PARTICIPANTS)
    ]
    settings_ = settings()
    with LocalCoordinator(settings_) as coord:
        messages = MessageSpy(coord)
        url = coord.url
        try:
            for slot in slots:
                start(slot, url, rng, tmp_path)
            begin = time.monotonic()
            completed_before = coord.stats["rounds_completed"]
            while sum(kills.values()) < N_KILLS:
                time.sleep(0.05)
                assert time.monotonic() - begin < 700, f"storm too slow: {kills}; {context}"
                for slot in slots:
                    life = slot.life
                    assert life is not None
                    self_killed = life.proc.poll() is not None
                    if not self_killed and time.monotonic() < life.deadline:
                        continue
                    if self_killed:
                        assert life.proc.returncode == -signal.SIGKILL, (
                            f"participant {slot.index} exited with {life.proc.returncode}:"
                            f" {life.stderr.read_text()[-2000:]}; {context}"
                        )
                        point = life.point
                        line = journal_lines(slot)[-1]
                        assert line.startswith(f"kill {point} "), (line, context)
                        by_phase[line.split()[2]] += 1
                    else:
                        kill(life)
                        point = "timer" if life.point == "timer" else "outside"
                        by_phase[file_phase(slot)] += 1
                    kills[point] += 1
                    if point == "rename":
                        # the kill came between the fsync-ed temporary and the rename
                        assert leftovers(slot), (slot.index, context)
                        tmp_left += 1
                    check_child_log(life, context)
                    start(slot, url, rng, tmp_path)
            storm = time.monotonic() - begin
            completed_during = coord.stats["rounds_completed"] - completed_before
            # No more kills: every participant resumes once more from its file (a life whose
            # self-kill point is still to come is ended first) and finishes rounds undisturbed.
            for slot in slots:
                assert slot.life is not None
                kill(slot.life)
                start(slot, url, rng, tmp_path, point="none")
            published = coord.stats["global_models"]
            coord.wait_for_global_models(published + 2, timeout=120)
        finally:
            for slot in slots:
                if slot.life is not None:
                    kill(slot.life)
        summary = messages.check()
        config = settings_.mask
        parts = [contribution(f"p{s.index}", one_hot(s.index), 1.0, config) for s in slots]
        subsets = [match_subset(model, parts, config) for model in coord.global_models]
        stats = coord.stats
    for slot in slots:
        starts = [line.split()[1] for line in journal_lines(slot) if line.startswith("start ")]
        assert 1 <= len(starts) <= slot.lives, (slot.index, slot.lives, len(starts), context)
        assert len(set(starts)) == 1, f"participant {slot.index} changed its key; {context}"
        slot.keys = set(starts)
        # The storm ends by SIGKILLing every participant, which can itself land between a
        # write and its rename: what the next start does must leave a loadable file and no
        # temporary one.
        _, resumed, from_file = open_state(slot.state_file, None)
        assert from_file and resumed is not None, (slot.index, context)
        assert not leftovers(slot), f"temporary files left: {leftovers(slot)}"
    keys = {bytes.fromhex(k) for s in slots for k in s.keys}
    assert {r[2] for r in messages.records} <= keys
    report = {
        "seed": SEED,
        "kills": sum(kills.values()),
        "kills_by_point": dict(kills.most_common()),
        "kills_by_phase": dict(by_phase.most_common()),
        "tmp_left_by_rename_kills": tmp_left,
        "storm_s": round(storm, 1),
        "rounds_completed_during": completed_during,
        "rounds_failed": stats["rounds_failed"],
        "global_models": len(subsets),
        "update_set_sizes": dict(Counter(len(s) for s in subsets)),
        **summary,
    }
    print(f"\nKILL-REPORT {report}")
    assert sum(kills.values()) >= N_KILLS
    assert all(kills[p] >= 5 for p in POINTS), (report, context)
    assert tmp_left == kills["rename"]
    for wanted in ("Awaiting", "SendingSum", "SendingUpdate", "SendingSum2", "Sum2"):
        assert by_phase[wanted] >= 1, (wanted, report, context)
    assert sum(n for p, n in by_phase.items() if p.startswith("Update")) >= 1, report
    assert completed_during >= 3, (report, context)
    # ``resent`` (the same bytes sent again after a kill after its POST) is reported, not
    # required: it needs the restart to come before the phase closes, which a loaded machine
    # does not promise. test_state_file.py's
    # test_killed_after_its_post_resumes_and_sends_the_same_message_again proves it.


def journal_lines(slot: Slot) -> list[str]:
    return slot.journal.read_text().splitlines() if slot.journal.exists() else []


def file_phase(slot: Slot) -> str:
    """The phase on file after a kill from outside (the participant resumes from it)."""
    if not slot.state_file.exists():
        return "starting"
    try:
        return phase_name(load_state(slot.state_file.read_bytes()))
    except ParticipantRestore as e:  # pragma: no cover - the point of the test
        raise AssertionError(f"participant {slot.index}: torn state file: {e}") from None


def check_child_log(life: Life, context: str) -> None:
    text = life.stderr.read_text()
    assert "Traceback" not in text and "unrecoverable" not in text, f"{text[-3000:]}; {context}"
