"""The HTTP transport: URL building, headers on the wire, status codes, timeouts, TLS, logging."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from participant_fakes import reply, serve  # noqa: E402
from tls_certs import make_pki  # noqa: E402

from xaynet_sdk.transport import (  # noqa: E402
    ConnectFailed,
    HttpStatusError,
    InvalidUrl,
    RequestTimedOut,
    TlsError,
    Transport,
    UnexpectedResponse,
    check_url,
)

PK = bytes.fromhex("b56f9f8c9a349373a1cef943fb13abc90a667c9bc6f2b9aa0a6f444623e7f6f7")


# ----------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "base,expected",
    [
        ("http://h:1", "http://h:1/params"),
        ("http://h:1/", "http://h:1/params"),
        ("http://h:1/prefix", "http://h:1/prefix/params"),
        ("http://h:1/prefix/", "http://h:1/prefix//params"),
        ("http://h:1/a?x=1", "http://h:1/a/params?x=1"),
        ("https://h/", "https://h/params"),
    ],
)
def test_url_joining_like_the_original(base: str, expected: str) -> None:
    assert Transport(base).url("params") == expected


def test_seeds_query_is_form_urlencoded_standard_base64() -> None:
    t = Transport("http://h:1/a?x=1")
    q = t.seeds_query(PK)
    assert q == "pk=tW%2BfjJo0k3OhzvlD%2BxOryQpmfJvG8rmqCm9ERiPn9vc%3D"  # docs/PROTOCOL.md 2
    assert t.url("seeds", q) == f"http://h:1/a/seeds?x=1&{q}"


@pytest.mark.parametrize(
    "url,match",
    [
        ("data:text/plain,x", "http or https"),
        ("ftp://x", "http or https"),
        ("http://", "no host"),
        ("127.0.0.1:8081", "http or https"),
        ("http://h:99999", "invalid coordinator URL"),
        (b"http://h", "must be a str"),
    ],
)
def test_unusable_urls_are_refused_at_construction(url: object, match: str) -> None:
    with pytest.raises(InvalidUrl, match=match):
        check_url(url)


# ----------------------------------------------------------------------------- the wire


class RawServer:
    """Accepts connections, records the raw request head and body, answers a fixed response."""

    def __init__(self, response: bytes | None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.response = response
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(head)
            if self.response is None:
                time.sleep(30)  # accept, read, never answer
                return
            conn.sendall(self.response)
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _headers(head: bytes) -> list[str]:
    return [line.split(b":")[0].decode().lower() for line in head.split(b"\r\n")[1:]]


def test_request_headers_are_the_originals() -> None:
    server = RawServer(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    try:
        t = Transport(server.url)
        assert t.get_seeds(PK) is None
        t.post_message(b"sealed body")
        get, post = server.requests
        assert get.split(b"\r\n")[0] == (
            b"GET /seeds?pk=tW%2BfjJo0k3OhzvlD%2BxOryQpmfJvG8rmqCm9ERiPn9vc%3D HTTP/1.1"
        )
        assert sorted(_headers(get)) == ["accept", "host"]
        assert b"Accept: */*" in get
        assert post.split(b"\r\n")[0] == b"POST /message HTTP/1.1"
        assert sorted(_headers(post)) == ["accept", "content-length", "host"]
        assert b"Content-Length: 11" in post
    finally:
        server.close()


@pytest.fixture
def status_server() -> Iterator[tuple[str, dict[str, int]]]:
    statuses: dict[str, int] = {}

    def handle(h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0].strip("/")
        if h.command == "POST":
            h.rfile.read(int(h.headers.get("Content-Length") or 0))
        status = statuses.get(path, 200)
        if status in (301, 302, 307):
            h.send_response(status)
            h.send_header("Location", "/params")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        reply(h, status, b"body:" + path.encode() if status == 200 else b"")

    server = serve(handle)
    yield server.url, statuses  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_status_codes(status_server: tuple[str, dict[str, int]]) -> None:
    url, statuses = status_server
    t = Transport(url)
    assert t.get_params() == b"body:params"
    statuses["sums"] = 204
    assert t.get_sums() is None
    statuses["model"] = 201
    with pytest.raises(UnexpectedResponse) as e:
        t.get_model()
    assert e.value.status == 201
    for status in (400, 404, 500, 503):
        statuses["model"] = status
        with pytest.raises(HttpStatusError) as e2:
            t.get_model()
        assert e2.value.status == status
    statuses["model"] = 302
    assert t.get_model() == b"body:params"  # redirects are followed
    for status in (200, 202, 204):
        statuses["message"] = status
        t.post_message(b"x")
    for status in (400, 500):
        statuses["message"] = status
        with pytest.raises(HttpStatusError):
            t.post_message(b"x")


def test_a_coordinator_that_never_answers_times_out() -> None:
    server = RawServer(None)
    try:
        t = Transport(server.url, timeout=0.3)
        start = time.monotonic()
        with pytest.raises(RequestTimedOut, match="did not answer"):
            t.get_params()
        with pytest.raises(RequestTimedOut):
            t.post_message(b"x" * 1000)
        assert time.monotonic() - start < 3
    finally:
        server.close()


def test_a_listener_that_never_accepts_times_out() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    fillers: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        t = Transport(url, timeout=(0.3, 0.3))
        start = time.monotonic()
        with pytest.raises(RequestTimedOut):
            t.get_params()
        assert time.monotonic() - start < 3
    finally:
        for f in fillers:
            f.close()
        sock.close()


def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectFailed, match="Is it running"):
        Transport(f"http://127.0.0.1:{port}", timeout=1).get_params()


def test_timeout_validation() -> None:
    with pytest.raises(ValueError):
        Transport("http://h", timeout=0)
    with pytest.raises(TypeError):
        Transport("http://h", timeout="1")  # type: ignore[arg-type]
    assert Transport("http://h", timeout=(1, 2)).timeout == (1.0, 2.0)


def test_errors_are_logged_once_per_kind_until_success(
    status_server: tuple[str, dict[str, int]], caplog: pytest.LogCaptureFixture
) -> None:
    url, statuses = status_server
    t = Transport(url)
    caplog.set_level(logging.INFO, logger="xaynet_sdk")
    statuses["params"] = 500
    for _ in range(5):
        with pytest.raises(HttpStatusError):
            t.get_params()
    statuses["params"] = 404
    with pytest.raises(HttpStatusError):
        t.get_params()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "500" in warnings[0].getMessage()
    assert "404" in warnings[1].getMessage() and "base URL" in warnings[1].getMessage()
    statuses["params"] = 200
    t.get_params()
    assert any("works again" in r.getMessage() for r in caplog.records)
    statuses["params"] = 500
    with pytest.raises(HttpStatusError):
        t.get_params()
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3


# ----------------------------------------------------------------------------- TLS


def _make_ca_and_server_cert(tmp: Path) -> tuple[Path, Path, Path]:
    pki = make_pki(tmp)
    return pki.ca, pki.server_cert, pki.server_key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server answering 200 "tls params", with a certificate of a private CA: its URL
    and the CA bundle."""
    ca, cert, key = _make_ca_and_server_cert(tmp_path)

    def handle(h: BaseHTTPRequestHandler) -> None:
        reply(h, 200, b"tls params")

    server = serve(handle)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_with_a_ca_bundle(tls_server: tuple[str, Path]) -> None:
    url, ca = tls_server
    with pytest.raises(TlsError, match="CA bundle"):
        Transport(url, timeout=5).get_params()  # the system trust store does not know it
    assert Transport(url, timeout=5, verify=str(ca)).get_params() == b"tls params"
    assert Transport(url.replace("127.0.0.1", "localhost"), verify=str(ca)).get_params()
    assert Transport(url, timeout=5, verify=False).get_params() == b"tls params"


def test_the_environment_proxy_is_used_and_no_proxy_is_respected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The environment is read once, at construction, with the rules requests applies."""
    proxy = RawServer(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    try:
        via_proxy = Transport("http://coordinator.invalid:8081", timeout=5)
        assert via_proxy.get_params() is None
        (head,) = proxy.requests
        assert head.split(b"\r\n")[0] == b"GET http://coordinator.invalid:8081/params HTTP/1.1"
        monkeypatch.setenv("NO_PROXY", "coordinator.invalid")
        direct = Transport("http://coordinator.invalid:8081", timeout=5)
        with pytest.raises(ConnectFailed):
            direct.get_params()  # straight to a host that does not resolve
        assert len(proxy.requests) == 1
    finally:
        proxy.close()


def test_requests_ca_bundle_applies_to_the_default_verify(
    tls_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = tls_server
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    assert Transport(url, timeout=5).get_params() == b"tls params"
    other = tmp_path / "other"
    other.mkdir()
    other_ca, _, _ = _make_ca_and_server_cert(other)
    with pytest.raises(TlsError):  # an explicit verify= wins over the environment
        Transport(url, timeout=5, verify=str(other_ca)).get_params()
