"""HTTP(S) to the coordinator's REST API (docs/PROTOCOL.md 2), with timeouts and TLS options.

What the original participant does on the wire, and what this module keeps:

* URLs: the endpoint is pushed as one more path segment onto the base URL (``http://h:p``
  and ``http://h:p/`` give ``/params``, ``http://h:p/prefix`` gives ``/prefix/params``,
  ``http://h:p/prefix/`` gives ``/prefix//params``); an existing query string is kept and
  ``/seeds`` appends ``pk=<standard base64, form-urlencoded>``.
* Headers: GET sends only ``Accept: */*`` and ``Host``; POST adds ``Content-Length``, and
  no ``Content-Type``. Redirects are followed.
* Status codes: a GET gives its body on 200, "not available" (None) on 204, and an error
  on anything else; a POST succeeds on any 2xx or 3xx.

What it adds: a timeout on every request (the original has none, so one coordinator that
accepts a connection and never answers hangs it forever), certificate verification with
an optional CA bundle or client certificate, and errors that are logged once per kind and
endpoint until that endpoint works again (once for all endpoints when the host cannot be
reached or TLS fails), with what to check. Nothing here retries: the caller polls again on
its next tick.
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Optional, Union
from urllib.parse import quote_plus, urlsplit, urlunsplit

import requests
from urllib3.util import SKIP_HEADER

from ._logging import get_logger
from .exceptions import XaynetError

__all__ = [
    "ConnectFailed",
    "DEFAULT_TIMEOUT",
    "HttpStatusError",
    "InvalidUrl",
    "RequestTimedOut",
    "TlsError",
    "Transport",
    "TransportError",
    "TransportLike",
    "UnexpectedResponse",
]

_log = get_logger("transport")

#: (connect, read) timeouts in seconds. The read timeout bounds every wait for bytes, not
#: the whole transfer, so a large model that keeps arriving is never cut off.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)

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

    ``timeout`` is seconds, or ``(connect, read)`` seconds; ``verify`` is True (system/certifi
    trust), False (no verification: only for tests), or the path of a CA bundle file or
    directory (for a coordinator with a private CA); ``cert`` is a client certificate (a
    PEM path, or ``(cert, key)`` paths) for coordinators that require one. Thread-safe as
    far as ``requests`` sessions are: the participant and the user's thread may both call it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: Verify = True,
        cert: Cert = None,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.base_url = check_url(base_url)
        self.timeout = _check_timeout(timeout)
        self._parts = urlsplit(self.base_url)
        self.session = session if session is not None else requests.Session()
        # Exactly the original's request headers: no User-Agent, no Accept-Encoding, no
        # Connection header (urllib3 adds its defaults unless told to skip them).
        self.session.headers.clear()
        self.session.headers.update(
            {"Accept": "*/*", "User-Agent": SKIP_HEADER, "Accept-Encoding": SKIP_HEADER}
        )
        # The environment (proxies, CA bundle) is read once, here: requests would otherwise
        # scan os.environ and look for a .netrc on every request, which took 0.6 of the
        # 1.1 ms of a GET /params on loopback. Same settings as requests would derive:
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
        return self._get("params")

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
        self.session.close()

    # -- internals --------------------------------------------------------------------------
    def _get(self, endpoint: str, extra_query: str = "") -> Optional[bytes]:
        url = self.url(endpoint, extra_query)
        response = self._send(endpoint, "GET", url, None)
        status = response.status_code
        if status == 200:
            self._succeeded(endpoint)
            return bytes(response.content)
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

    def _send(
        self, endpoint: str, method: str, url: str, body: Optional[bytes]
    ) -> requests.Response:
        try:
            response = self.session.request(
                method,
                url,
                data=body,
                timeout=self.timeout,
                verify=self.verify,
                cert=self.cert,
                proxies=self.proxies,
            )
            # Read the whole body inside the try: a stalled body is a read timeout too.
            _ = response.content
            return response
        except requests.exceptions.SSLError as e:
            raise self._fail(
                endpoint,
                TlsError(
                    f"TLS with the coordinator at {self.base_url} failed ({_reason(e)}). Check"
                    " that its certificate is valid for this host name; for a private CA pass"
                    " verify='<path to the CA bundle>'"
                ),
            ) from None
        except requests.exceptions.Timeout as e:
            what = (
                "did not accept the connection"
                if isinstance(e, requests.exceptions.ConnectTimeout)
                else "did not answer"
            )
            raise self._fail(
                endpoint,
                RequestTimedOut(
                    f"the coordinator at {self.base_url} {what} within the timeout"
                    f" ({self.timeout} s) for {method} /{endpoint}; retrying. If it is just"
                    " slow, raise the timeout"
                ),
            ) from None
        except requests.exceptions.ConnectionError as e:
            raise self._fail(
                endpoint,
                ConnectFailed(
                    f"cannot reach the coordinator at {self.base_url} ({_reason(e)}). Is it"
                    " running, and are the host and port right? Retrying with backoff"
                ),
            ) from None
        except requests.exceptions.RequestException as e:
            raise self._fail(
                endpoint, TransportError(f"{method} /{endpoint} failed: {_reason(e)}")
            ) from None

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
