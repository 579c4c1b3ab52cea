"""The coordinator over TLS, configured as the original: ``[api] tls_certificate``, ``tls_key``,
``tls_client_auth``; rounds of our participants over HTTPS with a private CA, with and without
client certificates; a configuration that asks for TLS never serves plain HTTP."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from coordinator_fixtures import wait_until  # noqa: E402
from fault_servers import free_port  # noqa: E402
from round_checks import contribution, match_subset  # noqa: E402
from test_participant_e2e import Fixed  # noqa: E402
from tls_certs import Pki, make_pki  # noqa: E402

from xaynet_sdk import spawn_participant  # noqa: E402
from xaynet_sdk.coordinator import Limits, LocalCoordinator, Settings, SettingsError  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig  # noqa: E402
from xaynet_sdk.transport import TlsError, Transport, TransportError  # noqa: E402

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

_MINIMAL: dict[str, Any] = {
    "api": {"bind_address": "127.0.0.1:0"},
    "pet": {
        "sum": 0.5,
        "update": 0.9,
        "min_sum_count": 1,
        "min_update_count": 3,
        "min_sum2_count": 1,
        "max_sum_count": 100,
        "max_update_count": 10000,
        "max_sum2_count": 100,
        "min_sum_time": 1,
        "min_update_time": 1,
        "min_sum2_time": 1,
        "max_sum_time": 30,
        "max_update_time": 30,
        "max_sum2_time": 30,
    },
    "mask": {"group_type": "Prime", "data_type": "F32", "bound_type": "B0", "model_type": "M3"},
    "model": {"length": 4},
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _tls(
    settings: Settings,
    pki: Pki,
    *,
    client_auth: bool = False,
    cert: Optional[Path] = None,
    key: Optional[Path] = None,
) -> Settings:
    api = dataclasses.replace(
        settings.api,
        tls_certificate=cert or pki.server_cert,
        tls_key=key or pki.server_key,
        tls_client_auth=pki.ca if client_auth else None,
    )
    return dataclasses.replace(settings, api=api)


def _round_settings() -> Settings:
    return Settings.for_tests(
        model_length=4,
        sum=0.3,
        update=0.9,
        min_sum_time=0.5,
        min_update_time=1.0,
        min_sum2_time=0.5,
        max_sum_time=10,
        max_update_time=10,
        max_sum2_time=10,
    )


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("cert", "key", "client_auth", "valid"),
    [
        (True, True, True, True),
        (True, True, False, True),
        (False, False, False, True),  # plain HTTP (the original without its tls feature)
        (True, False, True, False),
        (False, True, True, False),
        (True, False, False, False),
        (False, True, False, False),
        # Valid for the original's validator, but its server then refuses to start
        # ("invalid TLS configuration was provided"); here it fails at validation.
        (False, False, True, False),
    ],
)
def test_the_original_tls_validation_rule(
    cert: bool, key: bool, client_auth: bool, valid: bool
) -> None:
    data = {**_MINIMAL, "api": dict(_MINIMAL["api"])}
    if cert:
        data["api"]["tls_certificate"] = "cert.pem"
    if key:
        data["api"]["tls_key"] = "key.pem"
    if client_auth:
        data["api"]["tls_client_auth"] = "anchor.pem"
    if valid:
        settings = Settings.from_dict(data)
        assert settings.api.tls is cert
        assert settings.ignored == ()
    else:
        with pytest.raises(SettingsError, match="validation failed: api: invalid tls settings"):
            Settings.from_dict(data)


def test_environment_overrides_set_the_tls_paths(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[api]\nbind_address = "127.0.0.1:0"\n' + _pet_mask_model_toml())
    settings = Settings.from_toml(
        config,
        environ={
            "XAYNET_API__TLS_CERTIFICATE": str(pki.server_cert),
            "XAYNET_API__TLS_KEY": str(pki.server_key),
            "XAYNET_API__TLS_CLIENT_AUTH": str(pki.ca),
        },
    )
    assert settings.api.tls_certificate == pki.server_cert
    assert settings.api.tls_key == pki.server_key
    assert settings.api.tls_client_auth == pki.ca
    with pytest.raises(SettingsError, match="invalid tls settings"):
        Settings.from_toml(config, environ={"XAYNET_API__TLS_KEY": str(pki.server_key)})


def _pet_mask_model_toml() -> str:
    lines = ["[pet]"] + [f"{k} = {v}" for k, v in _MINIMAL["pet"].items()]
    lines += ["[mask]"] + [f'{k} = "{v}"' for k, v in _MINIMAL["mask"].items()]
    lines += ["[model]", "length = 4", ""]
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing_key", "cannot read the private key (api.tls_key) {missing}"),
        ("missing_cert", "cannot read the certificate (api.tls_certificate) {missing}"),
        ("garbage_cert", "the certificate (api.tls_certificate) {garbage} holds no PEM"),
        ("garbage_key", "the private key (api.tls_key) {garbage} is not an unencrypted PEM"),
        ("other_key", "do not go together"),
        ("garbage_anchor", "the trust anchor (api.tls_client_auth) {garbage} holds no PEM"),
    ],
)
def test_unusable_tls_files_stop_the_start(
    tmp_path: Path, pki: Pki, problem: str, message: str
) -> None:
    """Named in the error, and nothing listens: a TLS configuration never serves plain HTTP."""
    missing, garbage = tmp_path / "missing.pem", tmp_path / "garbage.pem"
    garbage.write_text("not a PEM file\n")
    port = free_port()
    base = Settings.for_tests(bind_address=f"127.0.0.1:{port}")
    cert, key, anchor = pki.server_cert, pki.server_key, pki.ca
    if problem == "missing_key":
        key = missing
    elif problem == "missing_cert":
        cert = missing
    elif problem == "garbage_cert":
        cert = garbage
    elif problem == "garbage_key":
        key = garbage
    elif problem == "other_key":
        key = pki.client_key
    else:
        anchor = garbage
    settings = _tls(base, pki, client_auth=True, cert=cert, key=key)
    settings = dataclasses.replace(
        settings, api=dataclasses.replace(settings.api, tls_client_auth=anchor)
    )
    coordinator = LocalCoordinator(settings)
    with pytest.raises(SettingsError) as raised:
        coordinator.start()
    assert message.format(missing=missing, garbage=garbage) in str(raised.value)
    assert not coordinator.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


# ------------------------------------------------------------------------------ serving


def _run_rounds(coord: LocalCoordinator, n_rounds: int, **participant_kw: Any) -> None:
    """Six of our participants over HTTPS until ``n_rounds`` models; each is a true mean."""
    config = MaskConfig.from_name("Prime/F32/B0/M3")
    rng = np.random.default_rng(13)
    locals_ = [rng.uniform(-1, 1, 4).astype(np.float32) for _ in range(6)]
    parts = [contribution(f"p{i}", m.tolist(), 1.0, config) for i, m in enumerate(locals_)]
    ps = [spawn_participant(coord.url, Fixed, args=(m,), **participant_kw) for m in locals_]
    try:
        models = coord.wait_for_global_models(n_rounds, timeout=150)
    finally:
        for p in ps:
            p.stop()
    completed = [r for r in coord.history if r.completed]
    for model, record in zip(models, completed):
        assert len(match_subset(model, parts, config, size=record.update_count)) >= 3


def test_rounds_over_https_with_a_private_ca(pki: Pki) -> None:
    with LocalCoordinator(_tls(_round_settings(), pki)) as coord:
        assert coord.url.startswith("https://127.0.0.1:")
        with pytest.raises(TlsError):  # the system's trust store does not know the CA
            Transport(coord.url, timeout=10).get_params()
        _run_rounds(coord, 2, verify=str(pki.ca))
        http = coord.stats["http"]
        assert http["POST /message"]["200"] >= 2 * (1 + 3 + 1)


def test_client_authentication(pki: Pki) -> None:
    """With tls_client_auth, only clients with a certificate of that CA are served."""
    settings = _tls(_round_settings(), pki, client_auth=True)
    with LocalCoordinator(settings) as coord:
        for cert in (None, (str(pki.stranger_cert), str(pki.stranger_key))):
            with pytest.raises(TransportError):
                Transport(coord.url, timeout=10, verify=str(pki.ca), cert=cert).get_params()
        # Counted once the server is done with the handshake, maybe after the client gave up.
        wait_until(
            lambda: coord.stats["connections_closed"].get("tls_handshake_failed", 0) >= 2,
            30,
            "two refused handshakes",
        )
        refused = coord.stats["connections_closed"]["tls_handshake_failed"]
        assert "GET /params" not in coord.stats["http"]
        # A participant without a certificate never takes part; the others complete rounds.
        outsider = spawn_participant(coord.url, Fixed, args=([0.5] * 4,), verify=str(pki.ca))
        try:
            _run_rounds(
                coord,
                2,
                verify=str(pki.ca),
                cert=(str(pki.client_cert), str(pki.client_key)),
            )
        finally:
            outsider.stop()
        participant = outsider.participant
        assert isinstance(participant, Fixed)
        assert participant.trained == 0
        assert coord.stats["connections_closed"]["tls_handshake_failed"] > refused


def test_plain_http_to_the_tls_port_gets_no_answer(pki: Pki) -> None:
    with LocalCoordinator(_tls(Settings.for_tests(), pki)) as coord:
        with socket.create_connection(("127.0.0.1", coord.port), timeout=15) as sock:
            sock.sendall(b"GET /params HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received = b""
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:  # closed with our request unread: a reset
                    break
                if not data:
                    break
                received += data
            else:
                raise AssertionError("the connection stayed open")
        assert b"HTTP/" not in received
        assert received == b""
        assert coord.stats["connections_closed"]["tls_handshake_failed"] == 1
        assert coord.stats["http"] == {}
        # The same port serves HTTPS.
        context = ssl.create_default_context(cafile=str(pki.ca))
        with socket.create_connection(("127.0.0.1", coord.port), timeout=15) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /params HTTP/1.1\r\nHost: localhost\r\n\r\n")
                head = tls.recv(4096)
        assert head.startswith(b"HTTP/1.1 200 ")


def test_a_silent_tls_client_is_closed_at_the_handshake_deadline(pki: Pki) -> None:
    """Connecting and never sending a ClientHello holds no thread and ends at header_timeout."""
    limits = Limits(header_timeout=1.5, worker_threads=1)
    with LocalCoordinator(_tls(Settings.for_tests(), pki), limits=limits) as coord:
        with socket.create_connection(("127.0.0.1", coord.port), timeout=30) as silent:
            # Meanwhile an honest client is served by the only worker.
            assert Transport(coord.url, timeout=10, verify=str(pki.ca)).get_params() is not None
            silent.settimeout(30)
            try:
                assert silent.recv(4096) == b""
            except ConnectionResetError:
                pass
        assert coord.stats["connections_closed"] == {"timeout_handshake": 1}
