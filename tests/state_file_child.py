"""One life of a participant with a state file, for ``test_state_file_kill.py`` (a subprocess).

    python state_file_child.py URL STATE_FILE JOURNAL PLAN

``PLAN`` is JSON: ``{"model": [...], "point": P, "nth": N}``. The child runs
``spawn_participant(URL, ..., state_file=STATE_FILE)`` and, when ``point`` is one of the
points below, SIGKILLs itself at its ``nth`` occurrence (the parent kills it from outside for
``"timer"``; ``"none"`` is a life that is not killed):

* ``rename``: a state record's temporary file is written and fsync-ed, not yet renamed;
* ``before-post``: a message (or chunk) is on file and about to be POSTed;
* ``after-post``: the POST was answered, before the participant could record it;
* ``train``: inside ``train_round``.

The journal gets ``start <public key hex> <phase>`` at start and ``kill <point> <phase>``
right before a self-kill (written with ``os.write``, so it survives the kill).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))

from participant_fakes import Fixed  # noqa: E402
from test_reliability_restore import phase_name  # noqa: E402

from xaynet_sdk import InternalParticipant, spawn_participant  # noqa: E402
from xaynet_sdk.transport import Transport  # noqa: E402

HANDLE: Optional[InternalParticipant] = None
JOURNAL_FD = -1


def note(line: str) -> None:
    os.write(JOURNAL_FD, (line + "\n").encode())


def phase() -> str:
    return "starting" if HANDLE is None else phase_name(HANDLE.xaynet_participant.state)


def die(point: str) -> None:
    note(f"kill {point} {phase()}")
    os.kill(os.getpid(), signal.SIGKILL)


def counting(point: str, nth: int) -> Callable[[], bool]:
    """A function true at its ``nth`` call (and never again) when ``point`` is the plan's."""
    count = [0]

    def due() -> bool:
        count[0] += 1
        return count[0] == nth

    return due


def install(point: str, nth: int) -> None:
    due = counting(point, nth)
    if point == "rename":
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            if str(src).endswith(".tmp") and due():
                die(point)
            real_replace(src, dst)

        os.replace = replace  # type: ignore[assignment]
    elif point in ("before-post", "after-post"):
        real_post = Transport.post_message

        def post_message(self: Transport, body: bytes) -> None:
            kill = due()
            if kill and point == "before-post":
                die(point)
            real_post(self, body)
            if kill:
                die(point)

        Transport.post_message = post_message  # type: ignore[method-assign]
    elif point == "train":
        real_train = Fixed.train_round

        def train_round(self: Fixed, training_input: Any) -> Any:
            if due():
                die(point)
            return real_train(self, training_input)

        Fixed.train_round = train_round  # type: ignore[method-assign]


def main() -> None:
    global HANDLE, JOURNAL_FD
    url, state_file, journal, plan_text = sys.argv[1:5]
    plan = json.loads(plan_text)
    JOURNAL_FD = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    install(plan["point"], plan["nth"])
    model = plan["model"]
    HANDLE = spawn_participant(url, Fixed, args=(model,), state_file=state_file, timeout=2.0)
    note(f"start {HANDLE.xaynet_participant.public_key.hex()} {phase()}")
    while True:  # until killed
        time.sleep(1.0)


if __name__ == "__main__":
    main()
