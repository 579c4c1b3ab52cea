"""Test doubles for the participant: a byte-level mini coordinator, a fake transport, HTTP servers.

:class:`MiniCoordinator` plays the coordinator's side of one round at a time, at the level of
the REST bodies (docs/PROTOCOL.md 2 and 13), with the phases advanced by the test (or
automatically by counts): it opens sealed messages, checks signatures and the coordinator
key, reassembles chunks, builds the sum and seed dictionaries, aggregates the masked models
and unmasks them with the majority Sum2 mask. It does not check eligibility (tests choose
probabilities that make roles certain).
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from xaynet_sdk.codec.bincode import (
    RoundParameters,
    encode_model,
    encode_sum_dict,
    encode_update_seed_dict,
)
from xaynet_sdk.codec.crypto import EncryptKeyPair, open_sealed
from xaynet_sdk.codec.message import (
    ChunkPayload,
    Sum2Payload,
    SumPayload,
    UpdatePayload,
    decode_message,
)
from xaynet_sdk.coordinator.reassembly import Reassembler
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair
from xaynet_sdk.mask.masking import Aggregation
from xaynet_sdk.participant import ParticipantABC

__all__ = [
    "FakeTransport",
    "HttpCoordinator",
    "MiniCoordinator",
    "make_params",
    "reply",
    "role",
    "seed_for_roles",
    "serve",
]


def make_params(
    *,
    config: str = "Prime/F32/B0/M3",
    model_length: int = 4,
    sum_prob: float = 0.5,
    update_prob: float = 0.9,
    keys: Optional[EncryptKeyPair] = None,
    seed: Optional[bytes] = None,
) -> tuple[RoundParameters, EncryptKeyPair]:
    keys = keys or EncryptKeyPair.generate()
    configs = MaskConfigPair.single(MaskConfig.from_name(config))
    params = RoundParameters(
        keys.public, sum_prob, update_prob, seed or os.urandom(32), configs, model_length
    )
    return params, keys


@dataclass
class RoundLog:
    sums: dict[bytes, bytes] = field(default_factory=dict)
    updates: list[bytes] = field(default_factory=list)
    sum2: dict[bytes, bytes] = field(default_factory=dict)
    chunks: int = 0
    messages: int = 0
    max_body: int = 0
    rejected: list[str] = field(default_factory=list)


class MiniCoordinator:
    """One round at a time: ``phase`` is "sum", "update", "sum2" or "done"."""

    def __init__(
        self,
        *,
        config: str = "Prime/F32/B0/M3",
        model_length: int = 4,
        sum_prob: float = 0.5,
        update_prob: float = 0.9,
        auto: Optional[tuple[int, int, int]] = None,
        paused: bool = False,
    ) -> None:
        self.config = config
        self.model_length = model_length
        self.sum_prob = sum_prob
        self.update_prob = update_prob
        self.auto = auto  # (sum count, update count, sum2 count) that advance the phase
        self.lock = threading.RLock()
        self.global_model: Optional[list[Fraction]] = None
        self.model_body: Optional[bytes] = None  # overrides the /model body when set
        self.models: list[list[Fraction]] = []
        self.round_id = 0
        self.requests: list[tuple[str, str]] = []
        self.new_round()
        self.paused = paused  # /params answers 204 until the next new_round()

    # -- rounds ---------------------------------------------------------------------------------
    def new_round(self, seed: Optional[bytes] = None, **changes: Any) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(self, k, v)
            self.params, self.keys = make_params(
                config=self.config,
                model_length=self.model_length,
                sum_prob=self.sum_prob,
                update_prob=self.update_prob,
                seed=seed,
            )
            self.round_id += 1
            self.paused = False
            self.phase = "sum"
            self.log = RoundLog()
            self.seed_dict: dict[bytes, dict[bytes, bytes]] = {}
            self.aggregation = Aggregation(self.params.mask_config, self.model_length)
            self.reassembler = Reassembler()

    def advance(self) -> None:
        with self.lock:
            if self.phase == "sum":
                self.phase = "update"
                self.seed_dict = {pk: {} for pk in self.log.sums}
            elif self.phase == "update":
                self.phase = "sum2"
            elif self.phase == "sum2":
                self._unmask()
                self.phase = "done"
            else:
                self.new_round()

    def _unmask(self) -> None:
        counts = collections.Counter(self.log.sum2.values())
        if not counts or self.aggregation.nb_models == 0:
            return
        best, _ = counts.most_common(1)[0]
        from xaynet_sdk.mask.objects import MaskObject

        mask, _ = MaskObject.from_bytes(best)
        self.global_model = self.aggregation.unmask(mask)
        self.models.append(self.global_model)

    def _auto(self) -> None:
        if self.auto is None:
            return
        need_sum, need_update, need_sum2 = self.auto
        if self.phase == "sum" and len(self.log.sums) >= need_sum:
            self.advance()
        elif self.phase == "update" and len(self.log.updates) >= need_update:
            self.advance()
        elif self.phase == "sum2" and len(self.log.sum2) >= need_sum2:
            self.advance()  # unmask: "done" until the test starts the next round

    # -- REST bodies ----------------------------------------------------------------------------
    def get(self, path: str, query: str = "") -> tuple[int, bytes]:
        with self.lock:
            self.requests.append(("GET", path))
            if path == "/params":
                if self.paused:
                    return 204, b""
                return 200, self.params.to_bytes()
            if path == "/sums":
                if self.phase == "sum":
                    return 204, b""
                return 200, encode_sum_dict(self.log.sums)
            if path == "/seeds":
                pk_list = parse_qs(query).get("pk")
                if not pk_list:
                    return 500, b""
                import base64

                pk = base64.b64decode(pk_list[0])
                if self.phase not in ("sum2", "done") or pk not in self.seed_dict:
                    return 204, b""
                return 200, encode_update_seed_dict(self.seed_dict[pk])
            if path == "/model":
                if self.model_body is not None:
                    return 200, self.model_body
                if self.global_model is None:
                    return 204, b""
                return 200, encode_model((w.numerator, w.denominator) for w in self.global_model)
            return 404, b""

    def post(self, body: bytes) -> int:
        with self.lock:
            self.requests.append(("POST", "/message"))
            self.log.max_body = max(self.log.max_body, len(body))
            try:
                self._handle(body)
            except Exception as e:  # noqa: BLE001 - like the original: logged, answered 200
                self.log.rejected.append(f"{type(e).__name__}: {e}")
            self._auto()
            return 200

    def _handle(self, body: bytes) -> None:
        plaintext = open_sealed(body, self.keys.public, self.keys.secret)
        msg = decode_message(plaintext, expected_coordinator_pk=self.keys.public)
        self.log.messages += 1
        payload = msg.payload
        if isinstance(payload, ChunkPayload):
            self.log.chunks += 1
            done = self.reassembler.add(msg)
            if done is None:
                return
            payload = done.decode_payload()
        pk = msg.participant_pk
        if isinstance(payload, SumPayload):
            if self.phase != "sum" or pk in self.log.sums:
                raise ValueError("sum message refused")
            self.log.sums[pk] = payload.ephm_pk
        elif isinstance(payload, UpdatePayload):
            if self.phase != "update" or pk in self.log.updates:
                raise ValueError("update message refused")
            if set(payload.local_seed_dict) != set(self.seed_dict):
                raise ValueError("seed dict does not match the sum dict")
            self.aggregation.validate(payload.masked_model)
            for sum_pk, enc in payload.local_seed_dict.items():
                self.seed_dict[sum_pk][pk] = enc
            self.aggregation.aggregate(payload.masked_model)
            self.log.updates.append(pk)
        elif isinstance(payload, Sum2Payload):
            if self.phase != "sum2" or pk not in self.log.sums or pk in self.log.sum2:
                raise ValueError("sum2 message refused")
            self.log.sum2[pk] = payload.model_mask.to_bytes()


class FakeTransport:
    """The transport interface over a :class:`MiniCoordinator`, with injectable failures.

    ``fail`` maps an endpoint ("params", "sums", "seeds", "model", "message") to how many of
    its next calls raise a TransportError.
    """

    def __init__(self, coordinator: MiniCoordinator) -> None:
        from xaynet_sdk.transport import TransportError

        self.coordinator = coordinator
        self.fail: dict[str, int] = {}
        self.calls: list[str] = []
        self.posted: list[bytes] = []
        self.block: Optional[threading.Event] = None  # when set, every call waits for it
        self.closed = False
        self._error = TransportError

    def _maybe_fail(self, endpoint: str) -> None:
        self.calls.append(endpoint)
        if self.block is not None:
            self.block.wait(10)
        if self.fail.get(endpoint, 0) > 0:
            self.fail[endpoint] -= 1
            raise self._error(f"injected failure of {endpoint}")

    def _get(self, endpoint: str, query: str = "") -> Optional[bytes]:
        self._maybe_fail(endpoint)
        status, body = self.coordinator.get("/" + endpoint, query)
        if status == 204:
            return None
        if status != 200:
            raise self._error(f"status {status}")
        return body

    def get_params(self) -> Optional[bytes]:
        return self._get("params")

    def get_sums(self) -> Optional[bytes]:
        return self._get("sums")

    def get_seeds(self, pk: bytes) -> Optional[bytes]:
        from xaynet_sdk.transport import Transport

        return self._get("seeds", Transport.seeds_query(pk))

    def get_model(self) -> Optional[bytes]:
        return self._get("model")

    def post_message(self, body: bytes) -> None:
        self.posted.append(body)
        self._maybe_fail("message")
        self.coordinator.post(body)

    def close(self) -> None:
        self.closed = True


Handler = Callable[[BaseHTTPRequestHandler], None]


def serve(handler_get: Handler, handler_post: Optional[Handler] = None) -> ThreadingHTTPServer:
    """A loopback HTTP server calling the given functions; ``server.url`` is its base URL."""

    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            handler_get(self)

        def do_POST(self) -> None:  # noqa: N802
            (handler_post or handler_get)(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"") -> None:
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if body:
        handler.wfile.write(body)


class HttpCoordinator:
    """A :class:`MiniCoordinator` behind a real loopback HTTP server."""

    def __init__(self, coordinator: MiniCoordinator) -> None:
        self.coordinator = coordinator

        def on_get(h: BaseHTTPRequestHandler) -> None:
            parts = urlsplit(h.path)
            status, body = coordinator.get(parts.path, parts.query)
            reply(h, status, body)

        def on_post(h: BaseHTTPRequestHandler) -> None:
            body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
            if urlsplit(h.path).path != "/message":
                reply(h, 404)
                return
            reply(h, coordinator.post(body))

        self.server = serve(on_get, on_post)
        self.url: str = self.server.url  # type: ignore[attr-defined]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "HttpCoordinator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def role(secret: bytes, params: RoundParameters) -> str:
    """The task the original would pick for this key in this round: sum, update or none."""
    from xaynet_sdk.codec.crypto import sum_signature, update_signature
    from xaynet_sdk.codec.eligibility import is_eligible

    if is_eligible(sum_signature(secret, params.seed), params.sum):
        return "sum"
    if is_eligible(update_signature(secret, params.seed), params.update):
        return "update"
    return "none"


def seed_for_roles(
    secrets_: list[bytes], roles: list[str], sum_prob: float, update_prob: float, tries: int = 5000
) -> bytes:
    """A round seed that gives each key its wanted role (roles: "sum", "update", "none")."""
    configs = MaskConfigPair.single(MaskConfig.from_name("Prime/F32/B0/M3"))
    for _ in range(tries):
        seed = os.urandom(32)
        params = RoundParameters(bytes(32), sum_prob, update_prob, seed, configs, 0)
        if all(role(s, params) == r for s, r in zip(secrets_, roles)):
            return seed
    raise AssertionError(f"no seed gives roles {roles} in {tries} tries")


class Fixed(ParticipantABC):
    """A participant whose training always yields the same local model; ``seen`` records the
    global models it is given."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.seen: list[Any] = []

    def train_round(self, training_input: Optional[Any]) -> Any:
        return self.model

    def serialize_training_result(self, training_result: Any) -> Any:
        return training_result

    def deserialize_training_input(self, global_model: Any) -> Any:
        return global_model

    def on_new_global_model(self, global_model: Optional[Any]) -> None:
        if global_model is not None:
            self.seen.append(global_model)
