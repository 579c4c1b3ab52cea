"""Load: 200 participants polling over keep-alive connections while rounds complete.

The pollers are raw ``http.client`` threads (what a participant does between its tasks:
``/params``, ``/sums``, ``/model`` and ``/seeds``), all connected at once; the test is bounded
in time and checks that every request got a correct reply.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from collections import Counter
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import (  # noqa: E402
    local_coordinator,
    raw_round_settings,
    run_round,
    seeds_path,
)

from xaynet_sdk.codec import RoundParameters  # noqa: E402

__all__ = ["local_coordinator"]

PARTICIPANTS = 200
POLLS = 8
PATHS = ("/params", "/sums", "/model", seeds_path(bytes(range(32))))


def test_200_polling_participants_and_rounds(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(raw_round_settings())
    host, port = "127.0.0.1", coord.port
    statuses: Counter[tuple[str, int]] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    connected = threading.Barrier(PARTICIPANTS + 1, timeout=60)

    def participant(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        local: Counter[tuple[str, int]] = Counter()
        try:
            conn.connect()
            connected.wait()
            for poll in range(POLLS):
                for path in PATHS:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    body = response.read()
                    if path == "/params":
                        RoundParameters.from_bytes(body)  # a complete, valid body
                    elif response.status == 204 and body:
                        raise AssertionError("a 204 with a body")
                    local[(path.split("?")[0], response.status)] += 1
                time.sleep(0.02 * (1 + (index + poll) % 5))
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(f"participant {index}: {type(e).__name__}: {e}")
        finally:
            conn.close()
            with lock:
                statuses.update(local)

    threads = [threading.Thread(target=participant, args=(i,)) for i in range(PARTICIPANTS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    connected.wait()  # 200 connections open at the same time
    run_round(coord, timeout=60)  # rounds go on under the load
    run_round(coord, timeout=60)
    for t in threads:
        t.join(max(1.0, 90 - (time.monotonic() - start)))
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads), "pollers still running"
    assert errors == []
    total = sum(statuses.values())
    assert total == PARTICIPANTS * POLLS * len(PATHS)
    assert {status for (_, status) in statuses} <= {200, 204}
    assert statuses[("/params", 200)] == PARTICIPANTS * POLLS
    assert statuses[("/seeds", 204)] == PARTICIPANTS * POLLS  # not a sum participant
    stats = coord.stats
    assert stats["connections_refused"] == 0
    assert stats["rounds_completed"] == 2 and stats["rejected"] == {}
    assert elapsed < 90
