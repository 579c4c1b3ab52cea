"""The connection front end: one selector thread, a fixed pool of workers, bounded everything.

A thread per connection lets any client that opens connections (or keeps them open, or sends
a header one byte a second) make the coordinator create threads without bound. Here:

* One thread (the one that calls :meth:`FrontEnd.serve_forever`) accepts connections and
  reads from all of them without blocking. It completes TLS handshakes, and buffers each
  request until its header and its ``Content-Length`` body have arrived. Only a complete
  request goes to a worker, so a client that trickles never holds a worker.
* A fixed pool of ``Limits.worker_threads`` workers handles complete requests, one at a time
  per connection, then gives the connection back (keep-alive) or closes it; a worker with no
  other request waiting first looks for the connection's next request for a moment, and goes
  on with it only if it is complete. A request with a chunked body or ``Expect:
  100-continue`` goes to a worker once its header is in; the worker reads the body under the
  body deadline.
* Deadlines per connection: the TLS handshake and a request header must complete within
  ``header_timeout`` of their first byte, a body within ``body_timeout`` of its header, a
  reply must be written within ``write_timeout``, and an idle keep-alive connection is closed
  after ``keep_alive_timeout``. A header above ``max_header_bytes`` gets 431 (414 for a request
  line alone) and the connection is closed.
* At most ``max_connections`` connections; when full, the connection idle the longest is
  closed to admit the new one (an idle keep-alive connection may be closed by a server at any
  time; clients reconnect), and if none is idle the new connection is closed at once.

What a handler sees is the standard library's ``BaseHTTPRequestHandler`` interface (``rfile``
and ``wfile`` of one connection), so the REST behaviour is that of :mod:`.server`.
"""

from __future__ import annotations

import collections
import logging
import queue
import re
import select
import selectors
import socket
import ssl
import threading
import time
from typing import Any, Callable, Optional

from .limits import Limits

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

__all__ = ["Connection", "FrontEnd", "RequestReader", "SocketWriter"]

_log = logging.getLogger("xaynet_sdk.coordinator.server")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_RECV = 65536
#: Bytes read from one connection per readiness event, so that one fast sender cannot keep
#: the selector thread from the others.
_READ_BUDGET = 1024 * 1024
_FD_RESERVE = 64
_SWEEP_INTERVAL = 0.25
#: How long a worker with nothing else to do waits for the next request of the keep-alive
#: connection it just answered, before handing the connection back to the selector thread
#: (a client that sends its next request at once is then served without two thread switches).
_LINGER_MS = 2

# Connection states (what the selector waits for).
_HANDSHAKE = "handshake"
_IDLE = "idle"
_HEADER = "header"
_BODY = "body"
_BUSY = "busy"


class Connection:
    """One client connection and the bytes received from it but not yet handled."""

    __slots__ = ("addr", "buffer", "deadline", "key", "need", "sock", "state", "tls", "want_write")

    def __init__(self, sock: socket.socket, addr: Any, tls: bool) -> None:
        self.sock = sock
        self.addr = addr
        self.tls = tls
        self.buffer = bytearray()
        self.state = _HANDSHAKE if tls else _IDLE
        self.deadline = 0.0
        #: bytes of ``buffer`` that make the next complete request (header and body)
        self.need = 0
        self.want_write = False
        self.key = id(self)


class RequestReader:
    """``rfile`` of one request: the buffered bytes first, then the socket, under a deadline.

    Reads never take more from the socket than they need beyond one ``recv``; what is left in
    :attr:`buffer` after the request (a pipelined next request) goes back to the connection.
    """

    def __init__(self, sock: socket.socket, buffer: bytearray, deadline: float) -> None:
        self.sock = sock
        self.buffer = buffer
        self.deadline = deadline
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request was not received in time")
        self.sock.settimeout(remaining)
        data = self.sock.recv(_RECV)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def readline(self, limit: int = -1) -> bytes:
        start = 0
        while True:
            end = self.buffer.find(b"\n", start)
            if end >= 0 and (limit < 0 or end < limit):
                n = end + 1
                break
            if 0 <= limit <= len(self.buffer):
                n = limit
                break
            start = len(self.buffer)
            if not self._fill():
                n = len(self.buffer)
                break
        line = bytes(self.buffer[:n])
        del self.buffer[:n]
        return line

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buffer) < n) and self._fill():
            pass
        if n < 0:
            n = len(self.buffer)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


class SocketWriter:
    """``wfile`` of one request: every write completes within the write deadline."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the reply was not taken in time")
            self.sock.settimeout(remaining)
            sent = self.sock.send(view)
            view = view[sent:]
        return len(data)

    def flush(self) -> None:
        pass


def _raise_fd_limit(wanted: int) -> int:
    """Raise the soft limit of open files towards ``wanted``; return the usable connections."""
    if resource is None:  # pragma: no cover - not on Windows
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted - _FD_RESERVE
    return max(1, min(wanted, soft) - _FD_RESERVE)


class FrontEnd:
    """Accepts, reads and frames requests on one thread; runs complete ones on a worker pool.

    Subclasses implement :meth:`handle_request`. ``ssl_context`` (a server context) serves TLS.
    """

    def __init__(
        self,
        host: str,
        port: int,
        limits: Limits,
        body_limit: int,
        ssl_context: Optional[ssl.SSLContext] = None,
        on_event: Optional[Callable[[str], None]] = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.limits = limits
        self.body_limit = body_limit
        self.ssl_context = ssl_context
        self._on_event = on_event
        self.max_connections = limits.max_connections
        usable = _raise_fd_limit(limits.max_connections + _FD_RESERVE)
        if usable < self.max_connections:
            _log.warning(
                "max_connections lowered from %d to %d by the limit of open files",
                self.max_connections,
                usable,
            )
            self.max_connections = usable
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            # Hundreds of participants may connect at once (the default backlog makes the
            # excess wait for SYN retransmissions).
            self.socket.listen(1024)
            self.socket.setblocking(False)
        except OSError:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._connections: dict[int, Connection] = {}
        #: idle connections, the one idle the longest first (eviction order)
        self._idle: collections.OrderedDict[int, Connection] = collections.OrderedDict()
        self._returned: queue.SimpleQueue[tuple[Connection, bool]] = queue.SimpleQueue()
        self._jobs: queue.SimpleQueue[Optional[Connection]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._work, name=f"xaynet-coordinator-worker-{i}", daemon=True)
            for i in range(limits.worker_threads)
        ]
        for worker in self._workers:
            worker.start()

    # -- what subclasses implement ------------------------------------------------------------
    def handle_request(
        self, connection: Connection, reader: RequestReader, writer: SocketWriter
    ) -> bool:
        """Handle one request; return whether the connection stays open."""
        raise NotImplementedError

    def connection_refused(self) -> None:
        """Called when a connection is closed at once because the server is full."""

    # -- reading ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # -- the selector thread ------------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """Serve until :meth:`shutdown`. Runs on the caller's thread."""
        selector = self._selector
        self._serving.set()
        selector.register(self.socket, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        next_sweep = time.monotonic() + _SWEEP_INTERVAL
        try:
            while not self._stop.is_set():
                for key, _events in selector.select(min(poll_interval, _SWEEP_INTERVAL)):
                    if key.fileobj is self.socket:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    else:
                        self._ready(key.data)
                self._take_back()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + _SWEEP_INTERVAL
        finally:
            self._stopped.set()

    def _event(self, name: str) -> None:
        if self._on_event is not None:
            self._on_event(name)

    def _accept(self) -> None:
        for _ in range(256):
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                _log.debug("accept failed", exc_info=True)
                return
            if len(self._connections) >= self.max_connections and not self._evict():
                self.connection_refused()
                sock.close()
                continue
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.ssl_context is not None:
                    sock = self.ssl_context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
            except OSError:
                sock.close()
                continue
            conn = Connection(sock, addr, self.ssl_context is not None)
            self._connections[conn.key] = conn
            if conn.tls:
                conn.deadline = time.monotonic() + self.limits.header_timeout
            else:
                self._to_idle(conn)
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _evict(self) -> bool:
        """Close the connection idle the longest to make room; False if none is idle."""
        if not self._idle:
            return False
        _, conn = self._idle.popitem(last=False)
        self._event("evicted")
        self._close(conn)
        return True

    def _to_idle(self, conn: Connection) -> None:
        conn.state = _IDLE
        conn.deadline = time.monotonic() + self.limits.keep_alive_timeout
        self._idle[conn.key] = conn

    def _leave_idle(self, conn: Connection) -> None:
        self._idle.pop(conn.key, None)

    def _ready(self, conn: Connection) -> None:
        if conn.state == _HANDSHAKE:
            self._handshake(conn)
            return
        if conn.state == _BUSY:
            return
        received = 0
        try:
            while received < _READ_BUDGET:
                data = conn.sock.recv(_RECV)
                if not data:
                    self._close(conn)
                    return
                received += len(data)
                conn.buffer += data
                if conn.tls:
                    pending = conn.sock.pending()  # type: ignore[attr-defined]
                    if pending:
                        conn.buffer += conn.sock.recv(pending)
        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
            pass
        except ssl.SSLWantWriteError:
            pass
        except OSError:
            self._close(conn)
            return
        self._advance(conn)

    def _handshake(self, conn: Connection) -> None:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, write=False)
            return
        except ssl.SSLWantWriteError:
            self._want(conn, write=True)
            return
        except (ssl.SSLError, OSError) as e:
            # Plain HTTP to the TLS port, an untrusted client certificate, a reset.
            _log.debug("TLS handshake with %s failed: %s", conn.addr[0], e)
            self._event("tls_handshake_failed")
            self._close(conn)
            return
        self._want(conn, write=False)
        self._to_idle(conn)
        try:
            pending = sock.pending()
            if pending:
                conn.buffer += sock.recv(pending)
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        except OSError:
            self._close(conn)
            return
        self._advance(conn)

    def _want(self, conn: Connection, write: bool) -> None:
        if conn.want_write != write:
            conn.want_write = write
            events = selectors.EVENT_WRITE if write else selectors.EVENT_READ
            self._selector.modify(conn.sock, events, conn)

    def _advance(self, conn: Connection) -> None:
        """Dispatch the connection if a complete request is buffered; else keep waiting."""
        buffer = conn.buffer
        if not buffer:
            return
        now = time.monotonic()
        if conn.state == _IDLE:
            self._leave_idle(conn)
            conn.state = _HEADER
            conn.deadline = now + self.limits.header_timeout
        if conn.state == _HEADER:
            if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":
                self._dispatch(conn)  # an empty request line: the handler closes
                return
            match = _HEADER_END.search(buffer, 0, self.limits.max_header_bytes + 4)
            if match is None:
                if len(buffer) > self.limits.max_header_bytes:
                    self._refuse_header(conn)
                return
            header_end = match.end()
            length = self._body_length(bytes(buffer[:header_end]))
            if length is None:
                self._dispatch(conn)  # the worker reads the body (or refuses it)
                return
            conn.need = header_end + length
            conn.state = _BODY
            conn.deadline = now + self.limits.body_timeout
        if conn.state == _BODY and len(buffer) >= conn.need:
            self._dispatch(conn)

    def _complete(self, buffer: bytearray) -> bool:
        """Whether ``buffer`` holds a request that :meth:`_advance` would dispatch now."""
        if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":
            return True
        match = _HEADER_END.search(buffer, 0, self.limits.max_header_bytes + 4)
        if match is None:
            return False
        length = self._body_length(bytes(buffer[: match.end()]))
        return length is None or len(buffer) >= match.end() + length

    def _body_length(self, header: bytes) -> Optional[int]:
        """The body length to buffer, or None when a worker must see the header first.

        None for chunked bodies, ``Expect: 100-continue``, a body above the limit (refused
        without reading it) and lengths the handler will refuse anyway.
        """
        length: Optional[bytes] = None
        for line in header.split(b"\n")[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip().lower()
            if name == b"content-length":
                if length is None:
                    length = value.strip()
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                return None
            elif name == b"expect":
                return None
        if length is None or length == b"":
            return 0
        if not length.isdigit() or int(length) > self.body_limit:
            return None
        return int(length)

    def _refuse_header(self, conn: Connection) -> None:
        if b"\n" in conn.buffer[: self.limits.max_header_bytes]:
            status = b"431 Request Header Fields Too Large"
        else:
            status = b"414 Request-URI Too Long"
        self._event("header_too_large")
        try:
            conn.sock.send(
                b"HTTP/1.1 " + status + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )
        except (OSError, ssl.SSLError):
            pass
        self._close(conn)

    def _dispatch(self, conn: Connection) -> None:
        conn.state = _BUSY
        self._selector.unregister(conn.sock)
        self._jobs.put(conn)

    def _take_back(self) -> None:
        """Connections the workers are done with: keep-alive ones wait for their next request."""
        while True:
            try:
                conn, keep = self._returned.get_nowait()
            except queue.Empty:
                return
            if not keep or self._closed:
                self._close(conn)
                continue
            try:
                conn.sock.setblocking(False)
                self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            except (OSError, ValueError):
                self._close(conn)
                continue
            conn.want_write = False
            self._to_idle(conn)
            self._advance(conn)

    def _sweep(self, now: float) -> None:
        expired = [c for c in self._connections.values() if c.state != _BUSY and c.deadline <= now]
        for conn in expired:
            self._event(f"timeout_{conn.state}")
            self._close(conn)

    def _close(self, conn: Connection) -> None:
        if self._connections.pop(conn.key, None) is None:
            return
        self._leave_idle(conn)
        if conn.state != _BUSY:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        try:
            # As socketserver does: the reply already written is sent before the close.
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            conn.sock.close()
        except OSError:
            pass

    # -- the workers --------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            conn = self._jobs.get()
            if conn is None:
                return
            keep = False
            try:
                while True:
                    conn.sock.setblocking(True)
                    deadline = time.monotonic() + self.limits.body_timeout
                    reader = RequestReader(conn.sock, conn.buffer, deadline)
                    writer = SocketWriter(conn.sock, self.limits.write_timeout)
                    keep = self.handle_request(conn, reader, writer) and not reader.eof
                    if keep and conn.tls:
                        pending = conn.sock.pending()  # type: ignore[attr-defined]
                        if pending:
                            conn.buffer += conn.sock.recv(pending)
                    if not keep:
                        break
                    following = self._next_request(conn)
                    if following is None:
                        keep = False
                    if not following:
                        break
            except Exception:  # noqa: BLE001 - a client's fault must not end the worker
                _log.debug("error on a connection", exc_info=True)
                keep = False
            self._returned.put((conn, keep))
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass

    def _next_request(self, conn: Connection) -> Optional[bool]:
        """After a reply: True if the next request is complete already (the worker goes on),
        False to hand the connection back, None if the client closed it.

        Only a worker with no other request waiting lingers, and for at most ``_LINGER_MS``;
        it takes nothing but a complete request, so a slow client never holds it longer.
        """
        if self._closed or not self._jobs.empty():
            return False
        sock = conn.sock
        if not conn.buffer and not (conn.tls and sock.pending()):  # type: ignore[attr-defined]
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            if not poller.poll(_LINGER_MS):
                return False
        sock.setblocking(False)
        try:
            while len(conn.buffer) < _READ_BUDGET:
                data = sock.recv(_RECV)
                if not data:
                    return None
                conn.buffer += data
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, InterruptedError):
            pass
        return self._complete(conn.buffer)

    # -- stopping -----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Make :meth:`serve_forever` return (and wait for it, if it runs)."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, end every open connection and join the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._serving.is_set():
            self._stopped.wait(timeout)
        try:
            self.socket.close()
        except OSError:
            pass
        for conn in list(self._connections.values()):
            if conn.state == _BUSY:
                try:  # wakes a worker blocked on this connection
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            else:
                self._close(conn)
        for _ in self._workers:
            self._jobs.put(None)
        for worker in self._workers:
            worker.join(timeout)
        while True:
            try:
                conn, _ = self._returned.get_nowait()
            except queue.Empty:
                break
            self._close(conn)
        for conn in list(self._connections.values()):
            self._close(conn)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
