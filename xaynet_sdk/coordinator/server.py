"""The REST API of the original coordinator, on the standard library's threading HTTP server.

Routes, status codes and bodies are those of the original (warp 0.2.5, docs/PROTOCOL.md section 2):

=================  ==========================================================================
``POST /message``  200, empty body, after the message went through the pipeline, whatever
                   the outcome (413 for a body above the size limit is an extension)
``GET /params``    200, the 136-byte round parameters, no Content-Type
``GET /sums``      204 until the Update phase opens, then 200 ``application/octet-stream``
``GET /seeds``     ``?pk=<standard base64>``: 400 if it does not decode to 32 bytes, 500 if the
                   query has no (or more than one) ``pk``, 204 until the Sum2 phase opens or
                   for a key that is not a sum participant, else 200 ``application/octet-stream``
``GET /model``     204 until the first global model, then 200 with the latest
other paths        404; a known path with another method is 500 (warp's unhandled
                   MethodNotAllowed)
=================  ==========================================================================

Error replies have empty bodies. Connections are HTTP/1.1 keep-alive (the original participant
pools them). Connections are served by :mod:`.frontend` (one selector thread and a fixed pool
of workers, with deadlines and size caps), over TLS when the settings ask for it;
:meth:`CoordinatorHTTPServer.close <FrontEnd.close>` ends every connection and joins every thread.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import ssl
import string
from http.server import BaseHTTPRequestHandler
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from .frontend import Connection, FrontEnd, RequestReader, SocketWriter
from .limits import Limits
from .pipeline import Pipeline
from .state import CoordinatorState
from .stats import Stats

__all__ = ["CoordinatorHTTPServer", "decode_seeds_pk"]

_log = logging.getLogger("xaynet_sdk.coordinator.server")

_ROUTES = {
    "/message": "POST",
    "/params": "GET",
    "/sums": "GET",
    "/seeds": "GET",
    "/model": "GET",
}
_OCTET_STREAM = "application/octet-stream"
_B64_ALPHABET = frozenset(string.ascii_letters + string.digits + "+/")
_MAX_CHUNK_LINE = 1024
_QUERY = re.compile(r"\?[^\s'\"]*")


def decode_seeds_pk(text: str) -> Optional[bytes]:
    """The ``pk`` of ``/seeds`` as the original decodes it (base64 0.13 ``decode``), or None.

    Standard alphabet (``+``, ``/``), padding optional but correct if present, and the unused
    bits of the last symbol must be zero (a non-canonical encoding is an error, as in Rust).
    """
    data = text.rstrip("=")
    pads = len(text) - len(data)
    if any(c not in _B64_ALPHABET for c in data):
        return None
    if pads and (pads > 2 or (len(data) + pads) % 4):
        return None
    if len(data) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii").rstrip("=") != data:
        return None
    return raw


class _Handler(BaseHTTPRequestHandler):
    """One request of a keep-alive connection, routed as the original's warp filters."""

    server: "CoordinatorHTTPServer"  # type: ignore[assignment]
    protocol_version = "HTTP/1.1"
    server_version = "xaynet-local-coordinator"
    sys_version = ""

    def __init__(
        self,
        server: "CoordinatorHTTPServer",
        connection: Connection,
        reader: RequestReader,
        writer: SocketWriter,
    ) -> None:
        # Not the base class's __init__: the front end hands over one request at a time.
        self.server = server  # type: ignore[assignment]
        self.request = connection.sock
        self.connection = connection.sock
        self.client_address = connection.addr
        self.rfile = reader  # type: ignore[assignment]
        self.wfile = writer  # type: ignore[assignment]
        self.close_connection = True

    # -- plumbing -----------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Errors of http.server quote the request line; its query may hold a key (/seeds).
        _log.debug("%s %s", self.address_string(), _QUERY.sub("?...", format % args))

    def log_request(self, code: "int | str" = "-", size: "int | str" = "-") -> None:
        pass  # counted in stats instead of one log line per poll

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        content_type: Optional[str] = None,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.server.stats.request(self.command, self._path_label(), status)

    def _target(self) -> tuple[str, str]:
        """(path, query) of the request target as sent.

        ``self.path`` is not used for routing: recent ``http.server`` versions collapses a
        leading ``//``, while warp matches segments as sent (``//params`` is not ``/params``).
        """
        words = self.requestline.split()
        target = words[1] if len(words) >= 2 else self.path
        if target.startswith(("http://", "https://")):  # absolute form
            split = urlsplit(target)
            return split.path or "/", split.query
        path, _, query = target.partition("?")
        return path, query

    def _path_label(self) -> str:
        path = self._target()[0]
        return path if path in _ROUTES else "other"

    def _route(self) -> Optional[str]:
        """The path if it is known and the method matches; else replies 404 or 500 itself."""
        path = self._target()[0]
        expected = _ROUTES.get(path)
        if expected is None:
            self._reply(404, close=self._has_unread_body())
            return None
        if expected != self.command:
            self._reply(500, close=self._has_unread_body())
            return None
        return path

    def _has_unread_body(self) -> bool:
        """A body we will not read; the connection must close so it is not taken as a request."""
        return bool(self.headers.get("Content-Length", "0").strip() not in ("", "0")) or (
            "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        )

    # -- methods ------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        path = self._route()
        if path is None:
            return
        state = self.server.state
        if path == "/params":
            self._reply(200, state.params_bytes())
        elif path == "/sums":
            sums = state.sums_bytes()
            if sums is None:
                self._reply(204)
            else:
                self._reply(200, sums, _OCTET_STREAM)
        elif path == "/seeds":
            self._seeds()
        else:  # /model
            model = state.model_bytes()
            if model is None:
                self._reply(204)
            else:
                self._reply(200, model)

    def _seeds(self) -> None:
        query = self._target()[1]
        values = parse_qs(query, keep_blank_values=True).get("pk", [])
        if len(values) != 1:
            # warp's query filter fails (missing or duplicate field): an unhandled rejection.
            self._reply(500)
            return
        pk = decode_seeds_pk(values[0])
        if pk is None or len(pk) != 32:
            self._reply(400)
            return
        seeds = self.server.state.seeds_bytes(pk)
        if seeds is None:
            self._reply(204)
        else:
            self._reply(200, seeds, _OCTET_STREAM)

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        if self._route() is None:
            return
        body = self._read_body()
        if body is None:
            return
        self.server.pipeline.handle(body)
        self._reply(200)

    def _read_body(self) -> Optional[bytes]:
        """The request body within the size limit; replies 413 (or 400) itself if not."""
        limit = self.server.body_limit
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw = self.headers.get("Content-Length", "0").strip() or "0"
        if not raw.isdigit():
            self._reply(400, close=True)
            return None
        length = int(raw)
        if length > limit:
            self.server.pipeline.reject_too_large(length, limit)
            self._reply(413, close=True)
            return None
        body = self.rfile.read(length)
        if len(body) != length:  # the client went away mid-body
            self.close_connection = True
            return None
        return body

    def _read_chunked(self, limit: int) -> Optional[bytes]:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_CHUNK_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._reply(400, close=True)
                return None
            if size == 0:
                while self.rfile.readline(_MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                self.server.pipeline.reject_too_large(total, limit)
                self._reply(413, close=True)
                return None
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                self.close_connection = True
                return None
            parts.append(chunk)
            self.rfile.readline(_MAX_CHUNK_LINE)  # the CRLF after the chunk

    def _other_method(self) -> None:
        self._route()

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other_method  # noqa: N815


class CoordinatorHTTPServer(FrontEnd):
    """The REST API on the bounded front end (see :mod:`.frontend`), plain or over TLS."""

    def __init__(
        self,
        host: str,
        port: int,
        state: CoordinatorState,
        pipeline: Pipeline,
        stats: Stats,
        limits: Limits,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        self.state = state
        self.pipeline = pipeline
        self.stats = stats
        super().__init__(
            host,
            port,
            limits,
            limits.body_limit(state.settings),
            ssl_context=ssl_context,
            on_event=stats.connection_event,
        )

    def handle_request(
        self, connection: Connection, reader: RequestReader, writer: SocketWriter
    ) -> bool:
        handler = _Handler(self, connection, reader, writer)
        handler.handle_one_request()
        return not handler.close_connection

    def connection_refused(self) -> None:
        self.stats.connection_refused()
