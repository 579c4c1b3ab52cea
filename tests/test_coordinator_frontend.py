"""The coordinator's connection front end: bounded threads and connections, deadlines for slow
clients, header size caps; idle and trickling connections cannot stop honest rounds.

Every connection here goes to loopback, and every flood is bounded in count and duration.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from coordinator_fixtures import (
    RawClient,
    local_coordinator,
    raw_round_settings,
    run_round,
    wait_until,
)

from xaynet_sdk.coordinator import Limits, LocalCoordinator

pytestmark = pytest.mark.timeout(300)

__all__ = ["local_coordinator"]  # the fixture, imported for pytest


def coordinator_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("xaynet-coordinator"))


def closed_by_peer(sock: socket.socket, timeout: float) -> bytes:
    """Read until the server closes; return what it sent. Fails if it stays open."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"still open after {timeout} s") from None
        if not data:
            return received
        received += data


class Flood:
    """``idle`` connections that send nothing, ``trickling`` ones that send a request header
    one byte every ``interval`` seconds, and ``body_trickling`` ones that send a header and
    then their body byte by byte; all from one thread, stopped by :meth:`close`."""

    def __init__(
        self, port: int, idle: int, trickling: int, body_trickling: int, interval: float
    ) -> None:
        self.idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(idle)]
        self.trickling = [
            socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(trickling)
        ]
        self.body = [
            socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(body_trickling)
        ]
        for sock in self.body:
            sock.sendall(b"POST /message HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
        self.header = b"POST /message HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10000
        self.sent_bytes = 0
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="test-flood", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        live = list(self.trickling) + list(self.body)
        step = 0
        deadline = time.monotonic() + 240  # bounded, whatever happens
        while live and not self._stop.is_set() and time.monotonic() < deadline:
            still = []
            for sock in live:
                byte = self.header[step : step + 1] if sock in self.trickling else b"x"
                try:
                    sock.send(byte or b"a")
                    self.sent_bytes += 1
                    still.append(sock)
                except OSError:
                    self.closed_by_server += 1
            live = still
            step += 1
            self._stop.wait(self._interval)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in self.idle + self.trickling + self.body:
            sock.close()


def test_idle_and_trickling_connections_leave_rounds_completing() -> None:
    """2,000 idle + 200 header-trickling + 50 body-trickling connections: the thread count
    does not move, an honest round completes with the right model, tricklers are cut off."""
    limits = Limits(header_timeout=6.0, body_timeout=6.0, keep_alive_timeout=300.0)
    coord = LocalCoordinator(raw_round_settings(), limits=limits).start()
    flood = None
    try:
        run_round(coord)  # warm: the first round without load
        before = coordinator_threads()
        flood = Flood(coord.port, idle=2000, trickling=200, body_trickling=50, interval=0.5)
        server = coord._server  # internal: the open connection count
        assert server is not None
        wait_until(lambda: server.open_connections >= 2250, 60, "2,250 open connections")
        during = coordinator_threads()
        started = time.monotonic()
        run_round(coord)  # honest participants, exact model checked inside
        took = time.monotonic() - started
        wait_until(lambda: flood is not None and flood.closed_by_server >= 250, 60, "tricklers cut")
        closed = coord.stats["connections_closed"]
        print(
            f"\nthreads before {len(before)}, during {len(during)};"
            f" open connections {server.open_connections};"
            f" round under load {took:.2f} s; closed {closed}"
        )
        assert during == before
        assert len(during) == 1 + limits.worker_threads + 1  # selector, workers, round driver
        assert closed.get("timeout_header") == 200
        assert closed.get("timeout_body") == 50
        assert server.open_connections >= 2000  # the idle ones are within keep_alive_timeout
        assert coord.stats["connections_refused"] == 0
        assert coord.stats["rounds_completed"] == 2
    finally:
        if flood is not None:
            flood.close()
        coord.stop()
    assert coordinator_threads() == []  # every thread joined


def test_a_slow_body_does_not_hold_the_only_worker(local_coordinator: Any) -> None:
    coord = local_coordinator(limits=Limits(worker_threads=1, body_timeout=3.0))
    with socket.create_connection(("127.0.0.1", coord.port), timeout=30) as slow:
        slow.sendall(b"POST /message HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabc")
        client = RawClient(coord.url, timeout=10)
        try:
            for _ in range(5):  # answered while the slow body is pending
                assert client.request("GET", "/params")[0] == 200
        finally:
            client.close()
        assert closed_by_peer(slow, 30) == b""
    assert coord.stats["connections_closed"] == {"timeout_body": 1}
    assert "POST /message" not in coord.stats["http"]


def test_a_slow_header_does_not_hold_the_only_worker(local_coordinator: Any) -> None:
    coord = local_coordinator(limits=Limits(worker_threads=1, header_timeout=2.0))
    with socket.create_connection(("127.0.0.1", coord.port), timeout=30) as slow:
        slow.sendall(b"GET /params HTTP/1.1\r\nHost:")
        client = RawClient(coord.url, timeout=10)
        try:
            assert client.request("GET", "/params")[0] == 200
        finally:
            client.close()
        assert closed_by_peer(slow, 30) == b""
    assert coord.stats["connections_closed"] == {"timeout_header": 1}


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /params HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000, b"431"),
        (b"GET /" + b"a" * 70000, b"414"),
    ],
)
def test_oversized_headers_are_refused(
    local_coordinator: Any, request_bytes: bytes, status: bytes
) -> None:
    coord = local_coordinator()
    with socket.create_connection(("127.0.0.1", coord.port), timeout=30) as sock:
        sock.sendall(request_bytes)
        reply = closed_by_peer(sock, 30)
    assert reply.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"Connection: close" in reply
    assert coord.stats["connections_closed"] == {"header_too_large": 1}


def test_a_full_server_evicts_the_longest_idle_connection(local_coordinator: Any) -> None:
    coord = local_coordinator(limits=Limits(max_connections=8))
    idle = [socket.create_connection(("127.0.0.1", coord.port), timeout=30) for _ in range(8)]
    try:
        wait_until(lambda: coord._server.open_connections == 8, 30, "8 connections")
        client = RawClient(coord.url, timeout=10)
        assert client.request("GET", "/params")[0] == 200
        client.close()
        assert closed_by_peer(idle[0], 30) == b""  # the first one, idle the longest
        assert coord.stats["connections_closed"] == {"evicted": 1}
        server = coord._server  # internal: its table of idle connections
        wait_until(lambda: server.open_connections == 7, 30, "the client's close")
        # When no connection is idle (all mid-header), a new one is closed at once.
        idle.append(socket.create_connection(("127.0.0.1", coord.port), timeout=30))
        for sock in idle[1:]:
            sock.sendall(b"GET /params HTTP/1.1\r\n")
        wait_until(lambda: server.open_connections == 8 and not server._idle, 30, "8 mid-header")
        with socket.create_connection(("127.0.0.1", coord.port), timeout=30) as extra:
            assert closed_by_peer(extra, 30) == b""
        assert coord.stats["connections_refused"] == 1
        assert coord.stats["connections_closed"] == {"evicted": 1}
    finally:
        for sock in idle:
            sock.close()


def test_idle_keep_alive_connections_time_out(local_coordinator: Any) -> None:
    coord = local_coordinator(limits=Limits(keep_alive_timeout=1.0))
    client = RawClient(coord.url, timeout=10)
    assert client.request("GET", "/params")[0] == 200
    sock = client._connection().sock
    assert sock is not None
    assert closed_by_peer(sock, 30) == b""
    client.close()
    assert coord.stats["connections_closed"] == {"timeout_idle": 1}


def test_pipelined_requests_and_expect_continue(local_coordinator: Any) -> None:
    coord = local_coordinator()
    with socket.create_connection(("127.0.0.1", coord.port), timeout=30) as sock:
        sock.sendall(b"GET /params HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        reply = b""
        one = 0  # the length of one response: its header, then the 136 bytes of params
        while not one or len(reply) < 3 * one:
            data = sock.recv(65536)
            assert data, reply
            reply += data
            if not one and b"\r\n\r\n" in reply:
                one = reply.index(b"\r\n\r\n") + 4 + 136
        assert len(reply) == 3 * one
        assert [reply[i * one : i * one + 15] for i in range(3)] == [b"HTTP/1.1 200 OK"] * 3
        # curl's way of sending a body: wait for 100 Continue first.
        sock.sendall(
            b"POST /message HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        final = sock.recv(65536)
        assert final.startswith(b"HTTP/1.1 200 OK\r\n")
    assert coord.stats["rejected"] == {"decrypt": 1}


def test_stop_joins_every_thread() -> None:
    coord = LocalCoordinator(raw_round_settings()).start()
    assert len(coordinator_threads()) == 1 + Limits().worker_threads + 1
    socks: Iterator[socket.socket] = iter(
        [socket.create_connection(("127.0.0.1", coord.port), timeout=30) for _ in range(20)]
    )
    coord.stop()
    assert coordinator_threads() == []
    for sock in socks:
        assert closed_by_peer(sock, 30) == b""
        sock.close()
