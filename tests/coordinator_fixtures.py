"""Test helpers around the local coordinator, importable by any test module.

* ``local_coordinator``: a pytest fixture returning a factory of started coordinators,
  all stopped at teardown (``coord = local_coordinator(model_length=4)`` or
  ``local_coordinator(settings, limits=...)``).
* :class:`RawClient`: the coordinator's REST API over one keep-alive ``http.client``
  connection (status codes and bodies as they come; nothing is hidden).
* :class:`RawParticipant`: builds protocol messages from the codec and mask layers (keys with
  a chosen role, Sum/Update/Sum2 payloads, signing, sealing, chunking) so tests can send
  honest, malformed and hostile messages at will.
* :func:`run_round`: one scripted round with raw participants, with hooks that run while a
  phase is guaranteed to stay open (the phase's last honest message is sent after the hook).
* :func:`expected_model` / :func:`assert_model_close`: the scalar-weighted mean the global
  model must equal, within the configuration's fixed-point precision.

Import it as ``from coordinator_fixtures import local_coordinator, RawClient, ...`` (pytest
puts ``tests/`` on ``sys.path``), or add ``pytest_plugins = ["coordinator_fixtures"]`` to
``conftest.py`` to get the fixture everywhere.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.parse
from base64 import b64encode
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import pytest

from xaynet_sdk.codec.bincode import RoundParameters, decode_sum_dict, decode_update_seed_dict
from xaynet_sdk.codec.crypto import (
    EncryptKeyPair,
    SigningKeyPair,
    open_sealed,
    seal,
    sum_signature,
    update_signature,
)
from xaynet_sdk.codec.eligibility import is_eligible
from xaynet_sdk.codec.message import (
    Payload,
    Sum2Payload,
    SumPayload,
    Tag,
    UpdatePayload,
    encode_message,
)
from xaynet_sdk.codec.multipart import MessageEncoder
from xaynet_sdk.coordinator import Limits, LocalCoordinator, Phase, Settings
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair
from xaynet_sdk.mask.masking import clamp_scalar, mask_model, sum_masks

__all__ = [
    "RawClient",
    "RawParticipant",
    "RoundContext",
    "assert_model_close",
    "expected_model",
    "local_coordinator",
    "raw_round_settings",
    "run_round",
]


# ---------------------------------------------------------------------------------------------
# The fixture
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def local_coordinator() -> Iterator[Callable[..., LocalCoordinator]]:
    """A factory of started coordinators; every one is stopped at teardown.

    ``factory(settings=None, *, limits=None, keep_models=None, **for_tests_kwargs)``: without
    ``settings``, ``Settings.for_tests(**for_tests_kwargs)`` is used.
    """
    started: list[LocalCoordinator] = []

    def factory(
        settings: Optional[Settings] = None,
        *,
        limits: Optional[Limits] = None,
        keep_models: Optional[int] = None,
        **kwargs: Any,
    ) -> LocalCoordinator:
        if settings is None:
            settings = Settings.for_tests(**kwargs)
        elif kwargs:
            raise TypeError("pass either settings or Settings.for_tests keywords, not both")
        coordinator = LocalCoordinator(settings, limits=limits, keep_models=keep_models)
        started.append(coordinator)
        return coordinator.start()

    yield factory
    for coordinator in started:
        coordinator.stop()


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


class RawClient:
    """The REST API over one keep-alive connection (reconnects if the server closed it)."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        assert parsed.hostname is not None and parsed.port is not None
        self.host = parsed.hostname
        self.port = parsed.port
        self.timeout = timeout
        self._conn: Optional[http.client.HTTPConnection] = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> tuple[int, bytes, http.client.HTTPMessage]:
        """One request; returns (status, body, headers). Retries once on a stale connection."""
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data, response.headers
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the API ------------------------------------------------------------------------------
    def params(self) -> RoundParameters:
        status, body, _ = self.request("GET", "/params")
        assert status == 200, status
        return RoundParameters.from_bytes(body)

    def sums(self) -> Optional[dict[bytes, bytes]]:
        status, body, _ = self.request("GET", "/sums")
        assert status in (200, 204), status
        return decode_sum_dict(body) if status == 200 else None

    def seeds(self, pk: bytes) -> Optional[dict[bytes, bytes]]:
        status, body, _ = self.request("GET", seeds_path(pk))
        assert status in (200, 204), status
        return decode_update_seed_dict(body) if status == 200 else None

    def model_bytes(self) -> Optional[bytes]:
        status, body, _ = self.request("GET", "/model")
        assert status in (200, 204), status
        return body if status == 200 else None

    def post(self, body: bytes) -> int:
        status, data, _ = self.request("POST", "/message", body)
        assert data == b"", data
        return status


def seeds_path(pk: bytes) -> str:
    """``/seeds?pk=...`` exactly as the original participant writes it (standard, padded)."""
    return "/seeds?" + urllib.parse.urlencode({"pk": b64encode(pk).decode("ascii")})


# ---------------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------------


@dataclass
class RawParticipant:
    """A participant reduced to message building (no state machine, no I/O)."""

    keys: SigningKeyPair = field(default_factory=SigningKeyPair.generate)
    scalar: float = 1.0
    ephemeral: Optional[EncryptKeyPair] = None
    mask_seed: Optional[bytes] = None

    @property
    def pk(self) -> bytes:
        return self.keys.public

    @classmethod
    def with_role(cls, params: RoundParameters, role: str, scalar: float = 1.0) -> "RawParticipant":
        """A fresh identity that has ``role`` ("sum", "update" or "none") in this round."""
        for _ in range(100_000):
            candidate = cls(SigningKeyPair.generate(), scalar)
            if candidate.role(params) == role:
                return candidate
        raise AssertionError(f"no key with role {role} found")

    def sum_signature(self, params: RoundParameters) -> bytes:
        return sum_signature(self.keys.secret, params.seed)

    def update_signature(self, params: RoundParameters) -> bytes:
        return update_signature(self.keys.secret, params.seed)

    def role(self, params: RoundParameters) -> str:
        if is_eligible(self.sum_signature(params), params.sum):
            return "sum"
        if is_eligible(self.update_signature(params), params.update):
            return "update"
        return "none"

    # -- payloads -------------------------------------------------------------------------------
    def sum_payload(self, params: RoundParameters) -> SumPayload:
        self.ephemeral = EncryptKeyPair.generate()
        return SumPayload(self.sum_signature(params), self.ephemeral.public)

    def update_payload(
        self,
        params: RoundParameters,
        sum_dict: dict[bytes, bytes],
        weights: Sequence[Any],
    ) -> UpdatePayload:
        configs = params.mask_config
        array = np.asarray(weights, dtype=configs.vect.data_type.numpy_dtype)
        self.mask_seed = os.urandom(32)
        masked = mask_model(self.mask_seed, configs, self.scalar, array)
        local_seeds = {pk: seal(self.mask_seed, ephm) for pk, ephm in sum_dict.items()}
        return UpdatePayload(
            self.sum_signature(params), self.update_signature(params), masked, local_seeds
        )

    def sum2_payload(self, params: RoundParameters, seeds: dict[bytes, bytes]) -> Sum2Payload:
        assert self.ephemeral is not None, "send the Sum message first"
        plain = [
            open_sealed(s, self.ephemeral.public, self.ephemeral.secret) for s in seeds.values()
        ]
        mask = sum_masks(plain, params.model_length, params.mask_config)
        return Sum2Payload(self.sum_signature(params), mask)

    # -- messages -------------------------------------------------------------------------------
    def plaintext(
        self,
        params: RoundParameters,
        payload: "Payload | bytes",
        tag: Optional[Tag] = None,
        coordinator_pk: Optional[bytes] = None,
    ) -> bytes:
        """The signed plaintext (the header names ``coordinator_pk``, default the round's)."""
        return encode_message(
            payload,
            tag,
            self.keys.public,
            self.keys.secret,
            coordinator_pk if coordinator_pk is not None else params.pk,
        )

    def sealed(self, params: RoundParameters, payload: "Payload | bytes", **kw: Any) -> bytes:
        """The POST body: the signed plaintext sealed to the round key."""
        return seal(self.plaintext(params, payload, **kw), params.pk)

    def sealed_chunks(
        self, params: RoundParameters, payload: Payload, max_message_size: int
    ) -> list[bytes]:
        """The POST bodies of a multipart message (each chunk signed and sealed)."""
        encoder = MessageEncoder(self.keys, params.pk, payload, max_message_size=max_message_size)
        assert encoder.is_multipart
        return [seal(message, params.pk) for message in encoder]


# ---------------------------------------------------------------------------------------------
# Expected models
# ---------------------------------------------------------------------------------------------


def expected_model(
    config: MaskConfig, models: Sequence[Sequence[Any]], scalars: Sequence[float]
) -> list[Fraction]:
    """Σ s_i·w_i / Σ s_i exactly, with weights and scalars as the masking sees them.

    Weights are converted to the configuration's data type first (float32 rounding), scalars
    are clamped like the original (to [0, add_shift] of the unit configuration).
    """
    dtype = config.data_type.numpy_dtype
    clamped = [clamp_scalar(float(s), config) for s in scalars]
    total = sum(clamped, Fraction(0))
    bound = Fraction(config.add_shift)
    columns = np.stack([np.asarray(m, dtype=dtype) for m in models], axis=1)
    memo: dict[tuple[Any, ...], Fraction] = {}  # weights repeat a lot in tests
    out = []
    for row in columns.tolist():
        key = tuple(row)
        value = memo.get(key)
        if value is None:
            acc = Fraction(0)
            for s, w in zip(clamped, row):
                acc += min(max(s * Fraction(w), -bound), bound)
            value = memo[key] = acc / total
        out.append(value)
    return out


def model_tolerance(config: MaskConfig, n: int, scalar_sum: Fraction) -> Fraction:
    """How far the global model may be from the exact mean: each model's fixed-point
    encoding truncates below 1/exp_shift, and the sum of scalars comes out exact for the
    scalars tests use (multiples of 1/exp_shift), so the error is below n / (E · Σs)."""
    return Fraction(n, config.exp_shift) / scalar_sum


def assert_model_close(
    model: Sequence[Fraction],
    config: MaskConfig,
    models: Sequence[Sequence[Any]],
    scalars: Sequence[float],
) -> None:
    expected = expected_model(config, models, scalars)
    assert len(model) == len(expected)
    scalar_sum = sum((clamp_scalar(float(s), config) for s in scalars), Fraction(0))
    tolerance = model_tolerance(config, len(models), scalar_sum)
    worst = max((abs(a - b) for a, b in zip(model, expected)), default=Fraction(0))
    assert worst <= tolerance, f"global model off by {float(worst)} > {float(tolerance)}"


# ---------------------------------------------------------------------------------------------
# Scripted rounds with raw participants
# ---------------------------------------------------------------------------------------------


def raw_round_settings(**overrides: Any) -> Settings:
    """Settings for :func:`run_round`'s default script: 2 sum, 3 update participants.

    The minimum counts equal the script's participant counts, so a phase can only end after
    the script's last honest message of that phase, which is sent after the phase's hook.
    """
    values: dict[str, Any] = dict(
        model_length=4,
        sum=0.5,
        update=0.9,
        min_sum_count=2,
        min_update_count=3,
        min_sum2_count=2,
        min_sum_time=0.05,
        min_update_time=0.05,
        min_sum2_time=0.05,
        max_sum_time=20,
        max_update_time=20,
        max_sum2_time=20,
    )
    values.update(overrides)
    return Settings.for_tests(**values)


@dataclass
class RoundContext:
    """What hooks see: the round's parameters, participants, and what was fetched so far."""

    coordinator: LocalCoordinator
    client: RawClient
    params: RoundParameters
    summers: list[RawParticipant]
    updaters: list[RawParticipant]
    models: list[list[Any]]
    sum_dict: dict[bytes, bytes] = field(default_factory=dict)
    seeds: dict[bytes, dict[bytes, bytes]] = field(default_factory=dict)
    sent: dict[str, list[bytes]] = field(default_factory=dict)


Hook = Callable[[RoundContext], None]
T = TypeVar("T")


def wait_until(predicate: Callable[[], Optional[T]], timeout: float = 60.0, what: str = "") -> T:
    """Poll ``predicate()`` until it returns a true value, and return that value.

    The tests' one way to wait for something another thread or process does: outcomes are
    asserted, not durations, so ``timeout`` is a generous bound after which an AssertionError
    names ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.005)


def run_round(
    coordinator: LocalCoordinator,
    *,
    n_summers: int = 2,
    n_updaters: int = 3,
    models: Optional[list[list[Any]]] = None,
    scalars: Optional[Sequence[float]] = None,
    hooks: Optional[dict[str, Hook]] = None,
    multipart: Optional[int] = None,
    expect_model: bool = True,
    timeout: float = 20.0,
) -> RoundContext:
    """Run one round with raw participants; check the global model; return the context.

    Hooks run at "sum", "update" and "sum2": after all but the last honest message of that
    phase, so the phase is still open (the settings' minimum counts must equal the numbers of
    participants, as :func:`raw_round_settings` makes them). The last message is then taken
    from ``ctx.sent[phase][-1]``, so a hook may replace it. ``multipart`` sends the first
    update as chunks of at most that many bytes.
    """
    hooks = hooks or {}
    client = RawClient(coordinator.url)
    try:
        round_id = coordinator.wait_for_phase(Phase.SUM, timeout)
        published = coordinator.stats["global_models"]
        params = client.params()
        length = params.model_length
        if models is None:
            models = [
                [((i + 1) * (j + 3) % 61 - 30) / 64 for j in range(length)]
                for i in range(n_updaters)
            ]
        if scalars is None:
            scalars = [1.0] * n_updaters
        ctx = RoundContext(
            coordinator,
            client,
            params,
            [RawParticipant.with_role(params, "sum") for _ in range(n_summers)],
            [RawParticipant.with_role(params, "update", s) for s in scalars],
            models,
        )

        # Sum: all but the last summer, the hook, the last summer.
        sums = [s.sealed(params, s.sum_payload(params)) for s in ctx.summers]
        ctx.sent["sum"] = sums
        for body in sums[:-1]:
            assert client.post(body) == 200
        if "sum" in hooks:
            hooks["sum"](ctx)
        assert client.post(ctx.sent["sum"][-1]) == 200  # a hook may have replaced it

        coordinator.wait_for_phase(Phase.UPDATE, timeout, round_id)
        sum_dict = client.sums()
        assert sum_dict is not None
        ctx.sum_dict = sum_dict
        updates: list[list[bytes]] = []
        for k, (u, model) in enumerate(zip(ctx.updaters, models)):
            payload = u.update_payload(params, sum_dict, model)
            if multipart is not None and k == 0:
                updates.append(u.sealed_chunks(params, payload, multipart))
            else:
                updates.append([u.sealed(params, payload)])
        ctx.sent["update"] = [b for bodies in updates for b in bodies]
        for bodies in updates[:-1]:
            for body in bodies:
                assert client.post(body) == 200
        if "update" in hooks:
            hooks["update"](ctx)
        for body in ctx.sent["update"][-len(updates[-1]) :]:
            assert client.post(body) == 200

        coordinator.wait_for_phase(Phase.SUM2, timeout, round_id)
        sum2s = []
        for s in ctx.summers:
            seeds = client.seeds(s.pk)
            assert seeds is not None
            ctx.seeds[s.pk] = seeds
            sum2s.append(s.sealed(params, s.sum2_payload(params, seeds)))
        ctx.sent["sum2"] = sum2s
        for body in sum2s[:-1]:
            assert client.post(body) == 200
        if "sum2" in hooks:
            hooks["sum2"](ctx)
        assert client.post(ctx.sent["sum2"][-1]) == 200

        if expect_model:
            coordinator.wait_for_global_models(published + 1, timeout)
            model = coordinator.global_models[-1]
            assert_model_close(model, params.mask_config.vect, models, scalars)
        return ctx
    finally:
        client.close()


def single_config(name: str) -> MaskConfigPair:
    return MaskConfigPair.single(MaskConfig.from_name(name))
