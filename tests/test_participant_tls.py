"""TLS from the participant's side: ``verify=`` a private CA and ``cert=`` a client certificate,
passed through ``spawn_participant`` and ``spawn_async_participant``, against an HTTPS
coordinator on loopback that requires client certificates (mutual TLS).

With the private CA and a client certificate of the CA the coordinator trusts, a sum
participant's Sum message reaches the coordinator (it is opened and recorded there under the
participant's key). Without the CA bundle, or without a client certificate, or with one of
another CA, nothing reaches it, the participant keeps running, and the TLS problem is logged
once.
"""

from __future__ import annotations

import ssl
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import wait_until  # noqa: E402
from fault_servers import LogCapture, ScriptedCoordinator  # noqa: E402
from participant_fakes import Fixed, MiniCoordinator  # noqa: E402
from tls_certs import Pki, make_pki  # noqa: E402

from xaynet_sdk import spawn_async_participant, spawn_participant  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def mtls(pki: Pki) -> Iterator[ScriptedCoordinator]:
    """A sum round (every participant sums) behind HTTPS requiring a client certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(pki.ca))
    with ScriptedCoordinator(MiniCoordinator(sum_prob=1.0, update_prob=0.0), tls=context) as s:
        yield s


@pytest.mark.parametrize("api", ["callback", "async"])
def test_private_ca_and_client_certificate(api: str, mtls: ScriptedCoordinator, pki: Pki) -> None:
    assert mtls.url.startswith("https://127.0.0.1:")
    options: dict[str, Any] = {
        "verify": str(pki.ca),
        "cert": (str(pki.client_cert), str(pki.client_key)),
    }
    if api == "callback":
        participant: Any = spawn_participant(mtls.url, Fixed, args=([0.0] * 4,), **options)
    else:
        participant, _ = spawn_async_participant(mtls.url, **options)
    key = participant.xaynet_participant.public_key
    try:
        wait_until(lambda: key in mtls.mini.log.sums, 60, "the Sum message over mutual TLS")
        assert mtls.mini.log.rejected == []
    finally:
        participant.stop()


@pytest.mark.parametrize(
    "case", ["system trust only", "no client certificate", "client certificate of another CA"]
)
def test_refused_tls_reaches_nothing_and_is_logged_once(
    case: str, mtls: ScriptedCoordinator, pki: Pki
) -> None:
    options: dict[str, Any] = {"verify": str(pki.ca), "timeout": 5}
    if case == "system trust only":
        options = {"cert": (str(pki.client_cert), str(pki.client_key)), "timeout": 5}
    elif case == "client certificate of another CA":
        options["cert"] = (str(pki.stranger_cert), str(pki.stranger_key))
    with LogCapture() as logs:
        participant = spawn_participant(mtls.url, Fixed, args=([0.0] * 4,), **options)
        try:
            wait_until(lambda: list(logs.iter_messages()), 60, "a warning about TLS")
            time.sleep(1.5)  # polling goes on, each attempt refused: still one warning
            assert participant.is_alive()
            assert participant.xaynet_participant.round_serial == 0
        finally:
            participant.stop()
    assert mtls.mini.log.messages == 0 and mtls.count("/params") == 0
    warnings = list(logs.iter_messages())
    assert len(warnings) == 1, warnings
    assert "TLS" in warnings[0] or "cannot reach" in warnings[0], warnings
