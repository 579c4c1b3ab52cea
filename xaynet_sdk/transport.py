"""HTTP(S) to the coordinator's REST API (docs/PROTOCOL.md 2): timeouts, deadline, caps, TLS.

What the original participant does on the wire, and what this module keeps:

* URLs: the endpoint is pushed as one more path segment onto the base URL (``http://h:p``
  and ``http://h:p/`` give ``/params``, ``http://h:p/prefix`` gives ``/prefix/params``,
  ``http://h:p/prefix/`` gives ``/prefix//params``); an existing query string is kept and
  ``/seeds`` appends ``pk=<standard base64, form-urlencoded>``.
* Headers: GET sends only ``Accept: */*`` and ``Host``; POST adds ``Content-Length``, and
  no ``Content-Type``. Redirects are followed.
* Status codes: a GET gives its body on 200, "not available" (None) on 204, and an error
  on anything else; a POST succeeds on any 2xx or 3xx.

What it adds: timeouts (the original has none, so one coordinator that accepts a
connection and never answers hangs it forever), certificate verification with an optional
CA bundle or client certificate, and errors that are logged once per kind and endpoint
until that endpoint works again (once for all endpoints when the host cannot be reached or
TLS fails), with what to check. Nothing here retries: the caller polls again on its next
tick, with its backoff.

Bounds against a hostile or broken coordinator:

* **Deadline.** Every request, connect + send + the whole response (redirects included),
  ends within ``deadline`` seconds (:data:`DEFAULT_DEADLINE`). The per-read timeout alone
  does not bound a response that drips one byte at a time; a watchdog thread shuts the
  request's socket down when its deadline passes, which ends any blocked read or write.
  :meth:`Transport.close` does the same at once for every request in flight (``stop()``).
* **Body caps.** Bodies are streamed and abandoned, unbuffered, as soon as they pass what
  the protocol allows for the endpoint (:func:`body_limits`: ``/params`` is 136 bytes,
  ``/sums``, ``/seeds`` and ``/model`` are bounded by the round parameters), or a declared
  ``Content-Length`` already does; never more than ``max_body`` bytes
  (:data:`DEFAULT_MAX_BODY`, the ceiling a user with very large models raises). The bodies
  of redirects are never read.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Union
from urllib.parse import quote_plus, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.poolmanager import pool_classes_by_scheme as _default_pool_classes
from urllib3.util import SKIP_HEADER

from ._logging import get_logger
from .codec.bincode import RoundParameters
from .codec.errors import CodecError
from .exceptions import XaynetError

__all__ = [
    "BodyLimits",
    "BodyTooLarge",
    "ConnectFailed",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BODY",
    "DEFAULT_TIMEOUT",
    "TransportClosed",
    "HttpStatusError",
    "InvalidUrl",
    "RequestTimedOut",
    "TlsError",
    "Transport",
    "TransportError",
    "TransportLike",
    "UnexpectedResponse",
    "body_limits",
]

_log = get_logger("transport")

#: (connect, read) timeouts in seconds. The read timeout bounds every wait for bytes, not
#: the whole transfer, so a large model that keeps arriving is never cut off.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)

#: Seconds a whole request may take: connect, send, and the whole response. Generous enough
#: for a large model on a slow link; a coordinator that drips its answer is cut here.
DEFAULT_DEADLINE: float = 120.0

#: The hard ceiling of any response body, in bytes, whatever the round parameters allow.
#: The cap of a model of n weights is 63 n bytes for Prime/F32/B0/M3 (a real one takes
#: about 31 n), so the default admits about 4 million weights there; raise it for larger
#: models.
DEFAULT_MAX_BODY: int = 256 * 1024 * 1024

#: ``/params`` is 136 bytes (docs/PROTOCOL.md 3.3); trailing bytes are ignored, as bincode
#: does, so a coordinator may send a few more, not kilobytes.
PARAMS_BODY_LIMIT = 4096
#: The answer to ``POST /message`` is empty; only its status matters.
MESSAGE_BODY_LIMIT = 64 * 1024
#: Slack added to every computed cap (headers of the encodings, and margin).
_SLACK = 64 * 1024
#: Bytes read from the socket at a time while streaming a body.
_CHUNK = 64 * 1024

Timeout = Union[float, tuple[float, float]]
Verify = Union[bool, str]
Cert = Union[None, str, tuple[str, str]]


class InvalidUrl(XaynetError, ValueError):
    """The coordinator URL cannot be used (not http/https, no host, unparsable)."""


class TransportError(XaynetError):
    """A request failed; ``kind`` groups failures for logging (one line per kind)."""

    kind = "request"


class ConnectFailed(TransportError):
    kind = "connection"


class RequestTimedOut(TransportError):
    kind = "timeout"


class TlsError(TransportError):
    kind = "tls"


class BodyTooLarge(TransportError):
    """A response body passed the cap of its endpoint; it was abandoned unread."""

    kind = "too large"


class TransportClosed(TransportError):
    """The transport was closed (the participant stopped); the request was not sent or cut."""

    kind = "closed"


class HttpStatusError(TransportError):
    """The coordinator answered with an error status (4xx or 5xx)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.kind = f"http {status}"


class UnexpectedResponse(TransportError):
    """A GET answered with a status that is neither 200 nor 204 nor an error (e.g. 201)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.kind = f"unexpected {status}"


@dataclass(frozen=True)
class BodyLimits:
    """The largest body accepted from each endpoint, in bytes."""

    params: int
    sums: int
    seeds: int
    model: int
    message: int

    def for_endpoint(self, endpoint: str) -> int:
        limit: int = getattr(self, endpoint)
        return limit


def body_limits(params: Optional[RoundParameters], max_body: int = DEFAULT_MAX_BODY) -> BodyLimits:
    """What the protocol allows each endpoint to send in the round of ``params``, with margin.

    * ``/sums`` is 80 bytes per sum participant and ``/seeds`` 128 bytes per update
      participant (docs/PROTOCOL.md 3.4). The coordinator aggregates at most
      ``max_nb_models`` updates (the mask configuration's model type, 11.5), which bounds
      ``/seeds``; the number of sum participants is bounded by nothing the participant
      sees, so ``/sums`` gets four times that (at least 10,000 entries).
    * ``/model`` is ``model_length`` ratios (3.5, 11.5): each numerator and denominator
      has at most the bits of an order and an exponent shift; one and a half times the
      largest such model is allowed.

    Without round parameters (before the first ``/params``) only ``max_body`` applies.
    Every cap is at most ``max_body``.
    """
    if params is None:
        return BodyLimits(
            min(PARAMS_BODY_LIMIT, max_body),
            max_body,
            max_body,
            max_body,
            min(MESSAGE_BODY_LIMIT, max_body),
        )
    vect, unit = params.mask_config.vect, params.mask_config.unit
    counts = max(vect.max_nb_models, unit.max_nb_models)
    sums = 8 + 80 * max(4 * counts, 10_000) + _SLACK
    seeds = 8 + 128 * 2 * counts + _SLACK
    # An unmasked weight is (n_j - N A E) E' / (E (n' - N A' E')) (docs/PROTOCOL.md 11.5):
    # numerator and denominator each have at most the bits of an order and an exponent
    # shift. Half as much again is allowed.
    bits = max(vect.order.bit_length(), unit.order.bit_length()) + max(
        vect.exp_shift.bit_length(), unit.exp_shift.bit_length()
    )
    per_weight = 2 * (9 + 4 * (bits // 32 + 1))
    model = 8 + per_weight * params.model_length * 3 // 2 + _SLACK
    return BodyLimits(
        params=min(PARAMS_BODY_LIMIT, max_body),
        sums=min(sums, max_body),
        seeds=min(seeds, max_body),
        model=min(model, max_body),
        message=min(MESSAGE_BODY_LIMIT, max_body),
    )


class _InFlight:
    """One request in flight: its deadline and the connections it uses."""

    __slots__ = ("deadline", "conns", "expired", "cancelled", "done", "lock")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conns: list[Any] = []
        self.expired = False
        self.cancelled = False
        self.done = False
        self.lock = threading.Lock()

    def attach(self, conn: Any) -> None:
        with self.lock:
            self.conns.append(conn)
            cut = self.expired or self.cancelled
        if cut:
            _shut(conn)

    def cut(self, *, expired: bool) -> None:
        """Shut down the request's sockets (from another thread): its reads and writes end."""
        with self.lock:
            if self.done:
                return
            if expired:
                self.expired = True
            else:
                self.cancelled = True
            conns = list(self.conns)
        for conn in conns:
            _shut(conn)

    def finish(self) -> None:
        with self.lock:
            self.done = True
            self.conns = []  # the watchdog's heap keeps the record until its deadline


def _shut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return  # still connecting: the connect timeout (at most the deadline) bounds it
    try:
        # The plain socket's shutdown, also for a TLS socket: ``SSLSocket.shutdown`` would
        # first drop its TLS state under the feet of the thread reading it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class _Watchdog:
    """One daemon thread for all transports, cutting each request at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _InFlight]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def watch(self, record: _InFlight) -> None:
        with self._cond:
            heapq.heappush(self._heap, (record.deadline, next(self._seq), record))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="xaynet-transport-deadline", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is record:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)  # finished in time: forget it
                if not self._heap:
                    self._cond.wait(30.0)
                    if not self._heap:
                        self._thread = None
                        return  # idle: the next request starts a new thread
                    continue
                now = time.monotonic()
                deadline, _, record = self._heap[0]
                if deadline > now:
                    self._cond.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
            record.cut(expired=True)


_watchdog = _Watchdog()
#: The request the current thread is making (read by the connection pools below).
_current = threading.local()


class _TrackedPool(HTTPConnectionPool):
    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        conn = super()._get_conn(timeout)
        record: Optional[_InFlight] = getattr(_current, "record", None)
        if record is not None:
            record.attach(conn)
        return conn


class _TrackedHTTPSPool(HTTPSConnectionPool):
    def _get_conn(self, timeout: Optional[float] = None) -> Any:
        conn = super()._get_conn(timeout)
        record: Optional[_InFlight] = getattr(_current, "record", None)
        if record is not None:
            record.attach(conn)
        return conn


_TRACKED_POOLS = {"http": _TrackedPool, "https": _TrackedHTTPSPool}


class _Adapter(HTTPAdapter):
    """Connection pools whose connections the deadline watchdog and ``close()`` can shut,
    and redirects whose bodies are dropped unread (requests would read them whole)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _TRACKED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is _default_pool_classes:  # not SOCKS
            manager.pool_classes_by_scheme = _TRACKED_POOLS
        return manager

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().send(request, *args, **kwargs)
        if response.is_redirect:
            response.close()  # closes the connection: the body is never read
            response._content = b""
            response._content_consumed = True
        return response


class Reply(NamedTuple):
    """A response read within its deadline and cap."""

    status_code: int
    content: bytes


class TransportLike:
    """The interface the participant core needs (a fake one is enough for tests)."""

    def get_params(self) -> Optional[bytes]:
        raise NotImplementedError

    def get_sums(self) -> Optional[bytes]:
        raise NotImplementedError

    def get_seeds(self, pk: bytes) -> Optional[bytes]:
        raise NotImplementedError

    def get_model(self) -> Optional[bytes]:
        raise NotImplementedError

    def post_message(self, body: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (optional)."""


def check_url(url: object) -> str:
    """The URL if it can be a coordinator base URL, else :class:`InvalidUrl` saying why."""
    if not isinstance(url, str):
        raise InvalidUrl(
            f"the coordinator URL must be a str (for example http://127.0.0.1:8081), got"
            f" {type(url).__name__}"
        )
    if any(c.isspace() or not c.isprintable() for c in url.strip()):
        raise InvalidUrl(
            f"invalid coordinator URL {url!r}: it contains white space or control characters"
            " (for example http://127.0.0.1:8081)"
        )
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError for a malformed port
    except ValueError as e:
        raise InvalidUrl(
            f"invalid coordinator URL {url!r}: {e} (for example http://127.0.0.1:8081)"
        ) from None
    if parts.scheme not in ("http", "https"):
        raise InvalidUrl(
            f"invalid coordinator URL {url!r}: the scheme must be http or https (for example"
            " http://127.0.0.1:8081)"
        )
    if not parts.hostname:
        raise InvalidUrl(
            f"invalid coordinator URL {url!r}: no host (for example http://127.0.0.1:8081)"
        )
    del port
    return url.strip()


class Transport(TransportLike):
    """A ``requests.Session`` bound to one coordinator base URL.

    ``timeout`` is seconds, or ``(connect, read)`` seconds: the connect timeout and the
    longest wait for any bytes. ``deadline`` is seconds for a whole request (connect, send
    and the whole response; by default :data:`DEFAULT_DEADLINE`, or the two timeouts
    together if that is longer). ``max_body`` is the most bytes any
    response body may have (:data:`DEFAULT_MAX_BODY`); below it each endpoint has the cap of
    :func:`body_limits` for the last round parameters seen. ``verify`` is True
    (system/certifi trust), False (no verification: only for tests), or the path of a CA
    bundle file or directory (for a coordinator with a private CA); ``cert`` is a client
    certificate (a PEM path, or ``(cert, key)`` paths) for coordinators that require one.
    Thread-safe as far as ``requests`` sessions are: the participant and the user's thread
    may both call it, and :meth:`close` may be called from any thread.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        deadline: Optional[float] = None,
        max_body: int = DEFAULT_MAX_BODY,
        verify: Verify = True,
        cert: Cert = None,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.base_url = check_url(base_url)
        self.timeout = _check_timeout(timeout)
        if deadline is None:
            # A user who raised the timeouts for a slow link must not be cut shorter.
            connect, read = self.timeout if isinstance(self.timeout, tuple) else (self.timeout,) * 2
            deadline = max(DEFAULT_DEADLINE, connect + read)
        self.deadline = _check_deadline(deadline)
        self.max_body = _check_max_body(max_body)
        self._parts = urlsplit(self.base_url)
        self.session = session if session is not None else requests.Session()
        adapter = _Adapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # Exactly the original's request headers: no User-Agent, no Accept-Encoding, no
        # Connection header (urllib3 adds its defaults unless told to skip them).
        self.session.headers.clear()
        self.session.headers.update(
            {"Accept": "*/*", "User-Agent": SKIP_HEADER, "Accept-Encoding": SKIP_HEADER}
        )
        # The environment (proxies, CA bundle) is read once, here: requests would otherwise
        # scan os.environ and look for a .netrc on every request, more than half the cost of
        # a GET /params on loopback (README, performance). Same settings as requests derives:
        # HTTP(S)_PROXY / NO_PROXY, and REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE for verify=True.
        self.session.trust_env = False
        self.proxies = requests.utils.get_environ_proxies(self.base_url)
        if verify is True:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            verify = bundle or True
        self.verify: Verify = verify
        self.cert: Cert = cert
        if verify is False:
            _log.warning(
                "TLS certificate verification is disabled for %s: use only for tests",
                self.base_url,
            )
        self._lock = threading.Lock()
        self._failing: dict[str, set[str]] = {}
        self._inflight: set[_InFlight] = set()
        self._closed = False
        self._params_body: Optional[bytes] = None
        self.limits = body_limits(None, self.max_body)

    # -- URLs -------------------------------------------------------------------------------
    def url(self, segment: str, extra_query: str = "") -> str:
        """The URL of an endpoint, built like the original's ``Url::path_segments_mut().push``."""
        parts = self._parts
        path = parts.path
        path = "/" + segment if path in ("", "/") else path + "/" + segment
        query = parts.query
        if extra_query:
            query = f"{query}&{extra_query}" if query else extra_query
        return urlunsplit((parts.scheme, parts.netloc, path, query, ""))

    @staticmethod
    def seeds_query(pk: bytes) -> str:
        """``pk=<standard padded base64>``, form-urlencoded (``+/=`` → ``%2B %2F %3D``)."""
        return "pk=" + quote_plus(base64.b64encode(pk).decode("ascii"))

    # -- the endpoints ----------------------------------------------------------------------
    def get_params(self) -> Optional[bytes]:
        body = self._get("params")
        if body is not None and body != self._params_body:
            self.set_round_parameters(body)
        return body

    def set_round_parameters(self, body: bytes) -> None:
        """Size the caps of ``/sums``, ``/seeds`` and ``/model`` for the round of ``body``
        (a ``/params`` body); :meth:`get_params` does it, so only a driver that gets the
        parameters another way needs to. An undecodable body changes nothing."""
        try:
            params = RoundParameters.from_bytes(body)
        except (CodecError, ValueError):
            return
        self.limits = body_limits(params, self.max_body)
        self._params_body = bytes(body)

    def get_sums(self) -> Optional[bytes]:
        return self._get("sums")

    def get_seeds(self, pk: bytes) -> Optional[bytes]:
        return self._get("seeds", self.seeds_query(pk))

    def get_model(self) -> Optional[bytes]:
        return self._get("model")

    def post_message(self, body: bytes) -> None:
        url = self.url("message")
        response = self._send("message", "POST", url, body)
        status = response.status_code
        if status >= 400:
            raise self._fail("message", _status_error(status, "POST", url))
        self._succeeded("message")

    def close(self) -> None:
        """Cut every request in flight now (from any thread), and refuse new ones.

        The threads making them get :class:`TransportClosed` at once, whatever they were
        waiting for; ``stop()`` calls this through ``save()``.
        """
        with self._lock:
            self._closed = True
            inflight = list(self._inflight)
        for record in inflight:
            record.cut(expired=False)
        self.session.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- internals --------------------------------------------------------------------------
    def _get(self, endpoint: str, extra_query: str = "") -> Optional[bytes]:
        url = self.url(endpoint, extra_query)
        response = self._send(endpoint, "GET", url, None)
        status = response.status_code
        if status == 200:
            self._succeeded(endpoint)
            return response.content
        if status == 204:
            self._succeeded(endpoint)
            return None
        if status >= 400:
            raise self._fail(endpoint, _status_error(status, "GET", url))
        raise self._fail(
            endpoint,
            UnexpectedResponse(
                f"GET {_redact(url)} answered {status}; a coordinator answers 200 or 204 here."
                " Is the URL that of a Xaynet coordinator?",
                status,
            ),
        )

    def _send(self, endpoint: str, method: str, url: str, body: Optional[bytes]) -> Reply:
        start = time.monotonic()
        record = _InFlight(start + self.deadline)
        with self._lock:
            if self._closed:
                raise TransportClosed(f"{method} /{endpoint}: the participant was stopped")
            self._inflight.add(record)
        _watchdog.watch(record)
        cap = self.limits.for_endpoint(endpoint)
        _current.record = record
        try:
            reply = self._exchange(endpoint, method, url, body, cap)
            if record.expired or record.cancelled:
                # A cut can look like a complete answer: an end of file ends the headers,
                # and a body without a length.
                raise requests.exceptions.ConnectionError("cut")
            return reply
        except BodyTooLarge as e:
            raise self._fail(endpoint, e) from None
        except (requests.exceptions.RequestException, OSError) as e:
            if record.cancelled:
                _log.debug("%s /%s cut: the participant was stopped", method, endpoint)
                raise TransportClosed(
                    f"{method} /{endpoint}: the participant was stopped"
                ) from None
            if record.expired:
                raise self._fail(
                    endpoint,
                    RequestTimedOut(
                        f"{method} /{endpoint} to the coordinator at {self.base_url} did not"
                        f" complete within the deadline ({self.deadline:g} s for the whole"
                        " request); cut, retrying with backoff. If the coordinator is just"
                        " slow, raise the deadline"
                    ),
                ) from None
            raise self._translate(endpoint, method, e) from None
        finally:
            _current.record = None
            record.finish()
            with self._lock:
                self._inflight.discard(record)

    def _exchange(
        self, endpoint: str, method: str, url: str, body: Optional[bytes], cap: int
    ) -> Reply:
        """The request, and its body streamed up to ``cap`` bytes."""
        remaining = self.deadline
        connect, read = self.timeout if isinstance(self.timeout, tuple) else (self.timeout,) * 2
        response = self.session.request(
            method,
            url,
            data=body,
            timeout=(min(connect, remaining), min(read, remaining)),
            verify=self.verify,
            cert=self.cert,
            proxies=self.proxies,
            stream=True,
        )
        try:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.strip().isdigit() and int(declared) > cap:
                if method == "POST":
                    return Reply(response.status_code, b"")  # only the status matters
                raise self._too_large(endpoint, method, cap, f"it announced {int(declared)}")
            data = bytearray()
            for chunk in response.iter_content(_CHUNK):
                data += chunk
                if len(data) > cap:
                    if method == "POST":
                        return Reply(response.status_code, b"")
                    raise self._too_large(endpoint, method, cap, "it sent more")
            return Reply(response.status_code, bytes(data))
        finally:
            response.close()  # a body not read to its end closes the connection

    def _too_large(self, endpoint: str, method: str, cap: int, what: str) -> BodyTooLarge:
        return BodyTooLarge(
            f"the coordinator at {self.base_url} answered {method} /{endpoint} with a body"
            f" larger than {cap} bytes, the most this round's parameters need ({what});"
            " abandoned unread, retrying. If the coordinator is genuine and the model very"
            " large, raise max_body"
        )

    def _translate(self, endpoint: str, method: str, e: BaseException) -> TransportError:
        if isinstance(e, requests.exceptions.SSLError):
            return self._fail(
                endpoint,
                TlsError(
                    f"TLS with the coordinator at {self.base_url} failed ({_reason(e)}). Check"
                    " that its certificate is valid for this host name; for a private CA pass"
                    " verify='<path to the CA bundle>'; a coordinator that requires a client"
                    " certificate needs cert='<PEM path>' or ('<cert>', '<key>')"
                ),
            )
        if isinstance(e, requests.exceptions.Timeout) or _is_read_timeout(e):
            what = (
                "did not accept the connection"
                if isinstance(e, requests.exceptions.ConnectTimeout)
                else "did not answer"
            )
            return self._fail(
                endpoint,
                RequestTimedOut(
                    f"the coordinator at {self.base_url} {what} within the timeout"
                    f" ({self.timeout} s) for {method} /{endpoint}; retrying. If it is just"
                    " slow, raise the timeout"
                ),
            )
        if isinstance(e, (requests.exceptions.ConnectionError, OSError)):
            return self._fail(
                endpoint,
                ConnectFailed(
                    f"cannot reach the coordinator at {self.base_url} ({_reason(e)}). Is it"
                    " running, and are the host and port right? Retrying with backoff"
                ),
            )
        return self._fail(endpoint, TransportError(f"{method} /{endpoint} failed: {_reason(e)}"))

    def _fail(self, endpoint: str, error: TransportError) -> TransportError:
        with self._lock:
            kinds = self._failing.setdefault(endpoint, set())
            if error.kind in _HOST_KINDS:
                # The same for every endpoint (and its message names none): once for all.
                first = not any(error.kind in k for k in self._failing.values())
            else:
                first = error.kind not in kinds
            kinds.add(error.kind)
        if first:
            _log.warning("%s", error)
        else:
            _log.debug("%s", error)
        return error

    def _succeeded(self, endpoint: str) -> None:
        if not self._failing.get(endpoint):
            return
        with self._lock:
            kinds = self._failing.pop(endpoint, set())
        if kinds:
            _log.info("/%s works again (after: %s)", endpoint, ", ".join(sorted(kinds)))


#: Failures of the host rather than of an endpoint: logged once whatever the endpoint.
_HOST_KINDS = frozenset({ConnectFailed.kind, TlsError.kind})


def _status_error(status: int, method: str, url: str) -> HttpStatusError:
    if status == 404:
        hint = "is the base URL right (path prefix)?"
    elif status < 500:
        hint = "the coordinator refused the request"
    else:
        hint = "the coordinator failed internally; retrying"
    return HttpStatusError(f"{method} {_redact(url)} answered {status}: {hint}", status)


def _redact(url: str) -> str:
    """The URL without its query (which for /seeds is only a public key, but is long)."""
    return url.split("?", 1)[0]


def _reason(error: BaseException) -> str:
    """The innermost useful text of a requests/urllib3 error chain."""
    text = str(error)
    inner = error.__context__ or error.__cause__
    while inner is not None and str(inner):
        text = str(inner)
        inner = inner.__context__ or inner.__cause__
    return text[:300]


def _check_timeout(timeout: object) -> Timeout:
    if isinstance(timeout, bool):
        raise TypeError("timeout must be seconds (a number) or (connect, read) seconds")
    if isinstance(timeout, (int, float)):
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        return float(timeout)
    if (
        isinstance(timeout, tuple)
        and len(timeout) == 2
        and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in timeout)
    ):
        connect, read = float(timeout[0]), float(timeout[1])
        if not (connect > 0 and read > 0):
            raise ValueError(f"timeouts must be positive, got {timeout}")
        return (connect, read)
    raise TypeError("timeout must be seconds (a number) or (connect, read) seconds")


def _is_read_timeout(error: BaseException) -> bool:
    """A read timeout while streaming the body (requests reports it as a ConnectionError)."""
    inner: Optional[BaseException] = error
    while inner is not None:
        if isinstance(inner, (ReadTimeoutError, TimeoutError)):
            return True
        inner = inner.__context__ or inner.__cause__
    return False


def _check_deadline(deadline: object) -> float:
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise TypeError("deadline must be seconds (a number)")
    if not deadline > 0:
        raise ValueError(f"deadline must be positive, got {deadline}")
    return float(deadline)


def _check_max_body(max_body: object) -> int:
    if isinstance(max_body, bool) or not isinstance(max_body, int):
        raise TypeError("max_body must be bytes (an int)")
    if max_body < PARAMS_BODY_LIMIT:
        raise ValueError(f"max_body must be at least {PARAMS_BODY_LIMIT} bytes, got {max_body}")
    return max_body
