"""Fault injection for the reliability tests: a faulty reverse proxy, counting, bounds.

* :class:`FaultProxy`: a loopback HTTP reverse proxy in front of a coordinator. Between
  :meth:`FaultProxy.set_fault` calls it relays requests faithfully, or answers them with one
  fault of :data:`FAULTS` (error statuses, empty, truncated or garbage bodies, answers slower
  than the participant's timeout, or a closed port: connection refused).
* :class:`CountingTransport`: the participant's real HTTP transport, recording every request
  it attempts (time, endpoint, outcome), so that polling can be counted even while the
  coordinator refuses connections.
* :func:`max_polls`: the most ticks the original poll backoff allows in a time window.
* :class:`LogCapture`: the ``xaynet_sdk`` log records with their time and thread, to check
  that a problem is logged once per participant rather than once per poll.
* :class:`SilentServer`: a socket that accepts connections and never answers.
* :class:`ScriptedCoordinator`: a :class:`participant_fakes.MiniCoordinator` on loopback HTTP
  whose messages can be refused (a status other than 200 before the coordinator sees them)
  and whose ``/params`` can stop answering after a number of requests, to hold a participant
  in a phase.
* :class:`HostileServer`: a raw loopback HTTP server per path: an answer that drips a byte
  at a time, one that floods (a huge announced ``Content-Length``, or an endless chunked
  body), or a fixed one; it counts what it managed to send and when the client hung up.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import random
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import urlsplit

from xaynet_sdk.transport import Reply, Transport

__all__ = [
    "FAULTS",
    "CountingTransport",
    "FaultProxy",
    "HostileServer",
    "LogCapture",
    "ScriptedCoordinator",
    "Request",
    "SilentServer",
    "free_port",
    "max_polls",
]

#: The faults a :class:`FaultProxy` can inject.
FAULTS = ("status_500", "status_404", "empty", "truncated", "garbage", "slow", "refused")


def free_port() -> int:
    """A TCP port that was free a moment ago (for servers that must be restarted on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The proxy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyRecord:
    time: float
    method: str
    path: str
    fault: Optional[str]


class _TrackingServer(ThreadingHTTPServer):
    """A threading HTTP server that can close its open connections (for "refused")."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: Any, proxy: "FaultProxy") -> None:
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and go away are the point of these tests

    def close_all(self) -> None:
        self.shutdown()
        self.server_close()
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _TrackingServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle(None)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length))

    def _handle(self, body: Optional[bytes]) -> None:
        proxy = self.server.proxy
        target = self.path
        path = urlsplit(target).path
        fault = proxy.fault_for(path)
        proxy.record(self.command, path, fault)
        if fault in ("status_500", "status_404"):
            self._reply(int(fault[-3:]), b"")
        elif fault == "empty":
            self._reply(200, b"")
        elif fault == "garbage":
            self._reply(200, proxy.garbage())
        elif fault == "slow":
            time.sleep(proxy.slow_delay)  # the client has given up by now
            self._relay(target, body)
        elif fault == "truncated":
            status, data, _ = proxy.forward(self.command, target, body)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data) + 16))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self._relay(target, body)
            if body is not None and proxy.capture_posts:
                proxy.captured(body)

    def _relay(self, target: str, body: Optional[bytes]) -> None:
        try:
            status, data, content_type = self.server.proxy.forward(self.command, target, body)
        except OSError:
            self.close_connection = True  # the coordinator is down: so is the proxied reply
            return
        try:
            self._reply(status, data, content_type)
        except OSError:
            self.close_connection = True

    def _reply(self, status: int, body: bytes, content_type: Optional[str] = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


class FaultProxy:
    """A reverse proxy on ``127.0.0.1`` in front of ``upstream`` that can inject faults.

    ``set_fault(kind)`` applies ``kind`` to every path (or to ``paths`` only) until
    ``set_fault(None)``. A faulty answer to a POST never reaches the coordinator, except for
    "truncated" and "slow", which deliver the message and break or delay the answer (the
    participant then resends it). "refused" closes the port and every open connection; the
    proxy listens on the same port again when the fault is cleared.
    """

    def __init__(self, upstream: str, *, slow_delay: float = 1.0, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname and parts.port
        self.upstream = (parts.hostname, parts.port)
        self.slow_delay = slow_delay
        self.records: list[ProxyRecord] = []
        #: With ``capture_posts``, the bodies of the POSTs relayed so far (for replays).
        self.capture_posts = False
        self.posts: list[bytes] = []
        self._lock = threading.Lock()
        self._fault: Optional[str] = None
        self._paths: Optional[frozenset[str]] = None
        self._random = random.Random(seed)
        self._server: Optional[_TrackingServer] = None
        self.port = 0
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        server = _TrackingServer(("127.0.0.1", self.port), _ProxyHandler, self)
        self.port = int(server.server_address[1])
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self._server = server

    # -- faults -------------------------------------------------------------------------------
    def set_fault(self, fault: Optional[str], paths: Optional[set[str]] = None) -> None:
        assert fault is None or fault in FAULTS, fault
        with self._lock:
            previous = self._fault
            self._fault = fault
            self._paths = frozenset(paths) if paths is not None else None
        if fault == "refused" and self._server is not None:
            self._server.close_all()
            self._server = None
        if previous == "refused" and fault != "refused":
            self._listen()

    def fault_for(self, path: str) -> Optional[str]:
        with self._lock:
            if self._paths is not None and path not in self._paths:
                return None
            return self._fault

    def garbage(self) -> bytes:
        with self._lock:
            return self._random.randbytes(self._random.choice((1, 37, 135, 137, 300)))

    def captured(self, body: bytes) -> None:
        with self._lock:
            self.posts.append(body)

    def record(self, method: str, path: str, fault: Optional[str]) -> None:
        with self._lock:
            self.records.append(ProxyRecord(time.monotonic(), method, path, fault))

    def forward(
        self, method: str, target: str, body: Optional[bytes]
    ) -> tuple[int, bytes, Optional[str]]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=10)
        try:
            headers = {"Content-Length": str(len(body))} if body is not None else {}
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type")
        finally:
            conn.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close_all()
            self._server = None

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SilentServer:
    """Accepts TCP connections (the kernel completes them) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "SilentServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Connection:
    """One request a :class:`HostileServer` served: what it sent, and when it ended."""

    path: str
    start: float
    sent: int = 0
    #: When a send failed or the client closed (None while the server is still sending).
    ended: Optional[float] = None


class HostileServer:
    """A raw HTTP/1.1 server on loopback whose answer depends on the path.

    ``routes`` maps a path (without query) to a behaviour: ``("fixed", body)``, ``("drip",
    interval)`` (200 with ``Content-Length: 136``, then one body byte per interval),
    ``("drip_headers", interval)`` (the status line, then one header byte per interval),
    ``("flood", announced)`` (``Content-Length: announced`` then zeros as fast as the
    client reads), ``("chunked", None)`` (an endless chunked body of zeros). Anything
    else answers 204. A flood stops sending after ``flood_limit`` bytes and then holds the
    connection open, so that a client that buffers everything is bounded too (and fails
    its memory check) rather than taking the machine's memory.
    """

    def __init__(self, routes: dict[str, tuple[str, Any]], flood_limit: int = 512 << 20) -> None:
        self.routes = routes
        self.flood_limit = flood_limit
        self.connections: list[Connection] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """Requests on one connection, kept alive after a fixed or empty answer."""
        with conn:
            buffer = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode("latin-1")
                record = Connection(urlsplit(target).path, time.monotonic())
                with self._lock:
                    self.connections.append(record)
                kind, arg = self.routes.get(record.path, ("none", None))
                try:
                    self._answer(conn, record, kind, arg)
                except OSError:
                    return  # the client hung up: what the tests look for
                finally:
                    record.ended = time.monotonic()
                if kind not in ("fixed", "none"):
                    return

    def _send(self, conn: socket.socket, record: Connection, data: bytes) -> None:
        conn.sendall(data)
        record.sent += len(data)

    def _answer(self, conn: socket.socket, record: Connection, kind: str, arg: Any) -> None:
        if kind == "fixed":
            body = bytes(arg)
            self._send(conn, record, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            self._send(conn, record, body)
        elif kind == "drip":
            # A plausible length (that of round parameters), delivered one byte at a time.
            self._send(conn, record, b"HTTP/1.1 200 OK\r\nContent-Length: 136\r\n\r\n")
            for _ in range(136):
                if self._stop.wait(float(arg)):
                    return
                self._send(conn, record, b"x")
            self._hold(conn)
        elif kind == "drip_headers":
            self._send(conn, record, b"HTTP/1.1 200 OK\r\n")
            for byte in itertools.cycle(b"X-Drip: 1\r\n"):
                if self._stop.wait(float(arg)):
                    return
                self._send(conn, record, bytes([byte]))
        elif kind == "flood":
            self._send(conn, record, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % arg)
            self._flood(conn, record, b"\0" * 65536)
        elif kind == "chunked":
            self._send(conn, record, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            self._flood(conn, record, b"10000\r\n" + b"\0" * 65536 + b"\r\n")
        else:
            self._send(conn, record, b"HTTP/1.1 204 No Content\r\n\r\n")

    def _flood(self, conn: socket.socket, record: Connection, block: bytes) -> None:
        while not self._stop.is_set() and record.sent < self.flood_limit:
            self._send(conn, record, block)
        self._hold(conn)

    def _hold(self, conn: socket.socket) -> None:
        """Keep the connection until the client closes it (or the server stops)."""
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue

    def on(self, path: str) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if c.path == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 30.0) -> list[Connection]:
        """The connections to ``path`` once there are ``count``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.on(path)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"{count} connections to {path} not seen within {timeout} s")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

    def __enter__(self) -> "HostileServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScriptedCoordinator:
    """A MiniCoordinator on loopback HTTP. ``post_status`` other than 200 refuses messages
    before the coordinator sees them (counted in ``refused``; the participant keeps them to
    send again); with ``params_limit`` set, ``/params`` answers 204 after that many; with
    ``tls`` (a server context) it speaks HTTPS."""

    def __init__(
        self, mini: Any, params_limit: Optional[int] = None, tls: Optional[ssl.SSLContext] = None
    ) -> None:
        from participant_fakes import reply, serve

        self.mini = mini
        self.post_status = 200
        self.refused = 0
        self.params_limit = params_limit
        self.params_served = 0

        def on_get(h: BaseHTTPRequestHandler) -> None:
            parts = urlsplit(h.path)
            if parts.path == "/params" and self.params_limit is not None:
                if self.params_served >= self.params_limit:
                    reply(h, 204)
                    return
                self.params_served += 1
            status, body = mini.get(parts.path, parts.query)
            reply(h, status, body)

        def on_post(h: BaseHTTPRequestHandler) -> None:
            body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
            if self.post_status != 200:
                self.refused += 1
                reply(h, self.post_status)
                return
            reply(h, mini.post(body))

        self.server = serve(on_get, on_post)
        self.url: str = self.server.url  # type: ignore[attr-defined]
        if tls is not None:
            # The handshake runs on accept, in the server's thread: fine for a few clients.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.url = self.url.replace("http://", "https://")

    def count(self, path: str) -> int:
        with self.mini.lock:
            return sum(1 for _, p in self.mini.requests if p == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "ScriptedCoordinator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Counting on the participant's side
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    start: float
    end: float
    method: str
    endpoint: str
    outcome: str  # the HTTP status, or the name of the exception


class CountingTransport(Transport):
    """The real transport, recording each request it attempts (``records``)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.records: list[Request] = []
        self._records_lock = threading.Lock()

    def _send(self, endpoint: str, method: str, url: str, body: Optional[bytes]) -> Reply:
        start = time.monotonic()
        outcome = "?"
        try:
            response = super()._send(endpoint, method, url, body)
            outcome = str(response.status_code)
            return response
        except Exception as e:
            outcome = type(e).__name__
            raise
        finally:
            with self._records_lock:
                self.records.append(Request(start, time.monotonic(), method, endpoint, outcome))

    def between(self, start: float, end: float) -> list[Request]:
        """The requests started within ``[start, end]``."""
        with self._records_lock:
            return [r for r in self.records if start <= r.start <= end]


def max_polls(
    window: float,
    *,
    request_time: float = 0.0,
    minimum: float = 0.1,
    factor: float = 1.2,
    maximum: float = 10.0,
) -> int:
    """The most ticks that can start within ``window`` seconds while none makes progress.

    The poll backoff of the original wrappers waits ``minimum * factor**k`` (capped) after
    the k-th idle tick, from 0 again after progress; the worst case is a reset right at the
    start of the window. ``request_time`` is a lower bound of each tick's own duration (the
    timeout, when every request times out).
    """
    ticks, elapsed, attempt = 1, 0.0, 0
    while True:
        wait = request_time + min(minimum * factor**attempt, maximum)
        if elapsed + wait > window:
            return ticks
        elapsed += wait
        ticks += 1
        attempt += 1


# ---------------------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRecord:
    time: float  # time.monotonic()
    level: int
    logger: str
    thread: str
    message: str
    has_traceback: bool


def message_kind(message: str) -> str:
    """A log message without its details: parenthesized text and numbers."""
    previous = None
    while previous != message:  # innermost parentheses first
        previous, message = message, re.sub(r"\([^()]*\)", "<…>", message)
    return re.sub(r"\d+", "N", message)


class LogCapture(logging.Handler):
    """Collects ``xaynet_sdk`` log records (INFO and above by default) while installed."""

    def __init__(self, level: int = logging.INFO, logger: str = "xaynet_sdk") -> None:
        super().__init__(level)
        self.records: list[LogRecord] = []
        self._logger = logging.getLogger(logger)
        self._previous_level = self._logger.level
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        entry = LogRecord(
            time.monotonic(),
            record.levelno,
            record.name,
            record.threadName or "",
            record.getMessage(),
            record.exc_info is not None,
        )
        with self._lock_records:
            self.records.append(entry)

    def __enter__(self) -> "LogCapture":
        self._logger.addHandler(self)
        if self._logger.level == logging.NOTSET or self._logger.level > self.level:
            self._logger.setLevel(self.level)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._previous_level)

    def participant_records(
        self, start: float = 0.0, end: float = float("inf"), level: int = logging.WARNING
    ) -> list[LogRecord]:
        """Records of the participant side (not the coordinator's) in ``[start, end]``."""
        with self._lock_records:
            return [
                r
                for r in self.records
                if start <= r.time <= end
                and r.level >= level
                and not r.logger.startswith("xaynet_sdk.coordinator")
            ]

    def repeated(
        self, start: float = 0.0, end: float = float("inf"), level: int = logging.WARNING
    ) -> dict[tuple[str, str], int]:
        """(thread, kind of message) logged more than once in the window, with the counts.

        The kind is the message without its details (parenthesized text and numbers), so
        that e.g. a decoding error logged once per poll counts as repeated even when each
        poll's garbage gives another error detail.
        """
        counts = Counter(
            (r.thread, message_kind(r.message)) for r in self.participant_records(start, end, level)
        )
        return {key: n for key, n in counts.items() if n > 1}

    def iter_messages(self, level: int = logging.WARNING) -> Iterator[str]:
        for r in self.participant_records(level=level):
            yield r.message
