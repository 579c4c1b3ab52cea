"""The coordinator as a service: the sample production configuration
(``examples/coordinator-production.toml``) started as ``python -m xaynet_sdk.coordinator`` with
TLS, client authentication and Prometheus metrics; rounds of our participants over HTTPS; the
metrics endpoint follows the rounds; SIGTERM stops it cleanly. Also ``[log] filter``, and what
the ORIGINAL participant does with a private CA."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from test_participant_e2e import Fixed  # noqa: E402
from tls_certs import Pki, make_pki  # noqa: E402

from xaynet_sdk import spawn_participant  # noqa: E402
from xaynet_sdk.coordinator import LocalCoordinator, Settings, SettingsError  # noqa: E402
from xaynet_sdk.coordinator.logfilter import parse_log_filter  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SAMPLE = TESTS_DIR.parent / "examples" / "coordinator-production.toml"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_the_sample_production_config_loads_as_documented() -> None:
    settings = Settings.from_toml(SAMPLE, environ={})
    assert settings.ignored == ()
    assert (settings.api.host, settings.api.port) == ("0.0.0.0", 8081)
    assert settings.api.tls_certificate == Path("/etc/xaynet/tls/server.pem")
    assert settings.api.tls_key == Path("/etc/xaynet/tls/server.key")
    assert settings.api.tls_client_auth == Path("/etc/xaynet/tls/participants-ca.pem")
    assert settings.metrics.prometheus_host == "127.0.0.1"
    assert settings.metrics.prometheus_port == 9100
    assert settings.metrics.influxdb_url is None
    log_filter = settings.log.filter
    assert log_filter is not None
    assert log_filter.default == logging.INFO
    assert dict(log_filter.levels) == {
        "xaynet_sdk": logging.INFO,
        "xaynet_sdk.coordinator.server": logging.WARNING,
    }
    assert settings.model.save_dir == Path("/var/lib/xaynet/models")
    guide = (TESTS_DIR.parent / "docs" / "guides" / "coordinator-service.md").read_text()
    assert SAMPLE.read_text().split("\n[api]", 1)[1] in guide  # the service guide shows it


class Service:
    """``python -m xaynet_sdk.coordinator -c SAMPLE`` with environment overrides; its stderr is
    collected by a thread so that the pipe never fills."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xaynet_sdk.coordinator", "-c", str(SAMPLE)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = compiled.search(line)
                if match:
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.lines[-30:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def scrape(url: str) -> dict[str, float]:
    """Unlabelled samples and ``name{labels}`` keys of a Prometheus text page."""
    with urllib.request.urlopen(url, timeout=15) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def test_production_service_over_tls_with_client_auth_and_metrics(pki: Pki, tmp_path: Path) -> None:
    models = tmp_path / "models"
    env = {
        "XAYNET_API__BIND_ADDRESS": "127.0.0.1:0",
        "XAYNET_API__TLS_CERTIFICATE": str(pki.server_cert),
        "XAYNET_API__TLS_KEY": str(pki.server_key),
        "XAYNET_API__TLS_CLIENT_AUTH": str(pki.ca),
        "XAYNET_METRICS__PROMETHEUS__BIND_ADDRESS": "127.0.0.1:0",
        "XAYNET_MODEL__LENGTH": "4",
        "XAYNET_MODEL__SAVE_DIR": str(models),
        # Small rounds for a test: 6 participants, short phases.
        "XAYNET_PET__SUM": "0.3",
        "XAYNET_PET__UPDATE": "0.9",
        "XAYNET_PET__MIN_SUM_COUNT": "1",
        "XAYNET_PET__MIN_UPDATE_COUNT": "3",
        "XAYNET_PET__MIN_SUM2_COUNT": "1",
        "XAYNET_PET__MAX_SUM2_COUNT": "100",
        "XAYNET_PET__MIN_SUM_TIME": "1",
        "XAYNET_PET__MIN_UPDATE_TIME": "1",
        "XAYNET_PET__MIN_SUM2_TIME": "1",
        "XAYNET_PET__MAX_SUM_TIME": "10",
        "XAYNET_PET__MAX_UPDATE_TIME": "10",
        "XAYNET_PET__MAX_SUM2_TIME": "10",
    }
    service = Service(env)
    participants: list[Any] = []
    try:
        url = service.wait_for_line(r"listening on (https://\S+)").group(1)
        metrics = service.wait_for_line(r"Prometheus metrics on (http://\S+)").group(1)
        first = scrape(metrics)
        assert first["xaynet_round_id"] == 1 and first["xaynet_global_models_total"] == 0
        rng = np.random.default_rng(5)
        for _ in range(6):
            participants.append(
                spawn_participant(
                    url,
                    Fixed,
                    args=(rng.uniform(-1, 1, 4).astype(np.float32),),
                    verify=str(pki.ca),
                    cert=(str(pki.client_cert), str(pki.client_key)),
                )
            )
        deadline = time.monotonic() + 180
        seen_rounds = []
        while time.monotonic() < deadline:
            samples = scrape(metrics)
            seen_rounds.append(samples["xaynet_round_id"])
            if samples["xaynet_global_models_total"] >= 2:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("no 2 global models:\n" + "\n".join(service.lines[-30:]))
        assert seen_rounds == sorted(seen_rounds) and seen_rounds[-1] >= 3 > seen_rounds[0]
        assert samples['xaynet_messages_accepted_total{phase="Update"}'] >= 6
        assert samples["xaynet_round_duration_seconds_count"] >= 2
        assert len(list(models.glob("global_model_round_*.npy"))) >= 2
    finally:
        for p in participants:
            p.stop()
    try:
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(60) == 0
        service._reader.join(30)
        text = "\n".join(service.lines)
        assert "received SIGTERM, shutting down" in text
        assert re.search(r"coordinator on https://\S+ stopped", text)
        # [log] filter "xaynet=info,http=warn,info": no DEBUG line of ours.
        assert " DEBUG xaynet_sdk" not in text
    finally:
        service.stop()


def test_log_filter_directives() -> None:
    f = parse_log_filter("xaynet=debug,http=warn,info")
    assert f.default == logging.INFO
    assert dict(f.levels) == {
        "xaynet_sdk": logging.DEBUG,
        "xaynet_sdk.coordinator.server": logging.WARNING,
    }
    f = parse_log_filter(
        "warn, xaynet_server::services=trace, xaynet_sdk::coordinator::rounds=ERROR,"
        " hyper=off, xaynet[run_phase{phase=Sum}]=info, tokio"
    )
    assert f.default == logging.WARNING
    assert dict(f.levels) == {
        "xaynet_sdk": logging.INFO,
        "xaynet_sdk.coordinator.pipeline": logging.DEBUG,
        "xaynet_sdk.coordinator.rounds": logging.ERROR,
    }
    assert f.unmapped == ("hyper", "tokio")
    with pytest.raises(ValueError, match="invalid directive 'xaynet=loud'"):
        parse_log_filter("info,xaynet=loud")


def test_log_filter_applies_and_is_validated(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(SAMPLE.read_text())
    with pytest.raises(SettingsError, match="log.filter: invalid directive 'http=chatty'"):
        Settings.from_toml(config, environ={"XAYNET_LOG__FILTER": "info,http=chatty"})
    settings = Settings.from_toml(config, environ={"XAYNET_LOG__FILTER": "error,http=debug"})
    assert settings.log.filter is not None
    root = logging.getLogger("test-log-filter-root")
    server = logging.getLogger("xaynet_sdk.coordinator.server")
    saved = server.level
    try:
        settings.log.filter.apply(root)
        assert root.level == logging.ERROR
        assert server.level == logging.DEBUG
    finally:
        server.setLevel(saved)


@pytest.mark.original
def test_the_original_participant_cannot_trust_a_private_ca(pki: Pki) -> None:
    """The original wheel's HTTP client is reqwest with rustls and the compiled-in webpki
    roots; its Python API has no trust anchor option, and SSL_CERT_FILE is not read. So it
    can reach a TLS coordinator only with a publicly trusted certificate (and never with
    client authentication: it has no client certificate option either)."""
    from original.runner import OriginalParticipant

    base = Settings.for_tests()
    api = dataclasses.replace(base.api, tls_certificate=pki.server_cert, tls_key=pki.server_key)
    settings = dataclasses.replace(base, api=api)
    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(pki.ca)
    try:
        with LocalCoordinator(settings) as coord:
            url = coord.url.replace("127.0.0.1", "localhost")
            participant = OriginalParticipant(url, model=[0.1] * 4, timeout=60, rust_log="warn")
            try:
                deadline = time.monotonic() + 60
                while coord.stats["connections_closed"].get("tls_handshake_failed", 0) < 3:
                    assert time.monotonic() < deadline, participant.stderr_tail()
                    time.sleep(0.2)
                raw = " ".join(str(e) for e in participant.events("raw"))
            finally:
                participant.stop()
            assert coord.stats["http"] == {}  # not one request got through
        assert "UnknownIssuer" in raw
    finally:
        if saved is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved
