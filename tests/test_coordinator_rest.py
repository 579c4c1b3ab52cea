"""The REST API of the local coordinator over real HTTP: routes, status codes, bodies, headers.

The expected behaviour is the original's (warp 0.2.5, docs/PROTOCOL.md section 2).
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from base64 import b64encode
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import (  # noqa: E402
    RawClient,
    RawParticipant,
    local_coordinator,
    raw_round_settings,
    run_round,
    seeds_path,
)
from spec_vectors import load_vector  # noqa: E402

from xaynet_sdk.codec import RoundParameters, decode_update_seed_dict  # noqa: E402
from xaynet_sdk.codec.crypto import EncryptKeyPair, open_sealed  # noqa: E402
from xaynet_sdk.coordinator import Limits, Phase, derive_round_seed  # noqa: E402
from xaynet_sdk.coordinator.server import decode_seeds_pk  # noqa: E402
from xaynet_sdk.coordinator.state import decode_model_fractions  # noqa: E402

__all__ = ["local_coordinator"]  # the fixture, imported for pytest


def test_params_sums_model_before_the_first_round_ends(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(model_length=7, mask="Integer/F64/B2/M6", sum=0.25, update=0.75)
    client = RawClient(coord.url)
    status, body, headers = client.request("GET", "/params")
    assert status == 200 and len(body) == 136
    assert headers.get("Content-Type") is None  # warp sends none for params
    assert headers["Content-Length"] == "136"
    params = RoundParameters.from_bytes(body)
    assert (params.sum, params.update, params.model_length) == (0.25, 0.75, 7)
    assert params.mask_config.vect.name == "Integer/F64/B2/M6" == params.mask_config.unit.name
    assert body[96:112] == bytes.fromhex("00000000010000000100000001000000")  # variant indices
    for path in ("/sums", "/model"):
        status, body, headers = client.request("GET", path)
        assert (status, body) == (204, b""), path
        assert headers.get("Content-Type") is None
    status, body, _ = client.request("GET", seeds_path(bytes(32)))
    assert (status, body) == (204, b"")
    client.close()


def test_keep_alive_one_connection_for_many_requests(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator()
    conn = http.client.HTTPConnection("127.0.0.1", coord.port, timeout=10)
    conn.connect()
    sock = conn.sock
    for path in ("/params", "/sums", "/model", "/params", "/nothing", "/params"):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert not response.will_close and response.version == 11
    conn.request("POST", "/message", body=b"x" * 100)
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"")
    assert conn.sock is sock  # still the same TCP connection
    conn.close()


def test_unknown_paths_are_404_and_wrong_methods_500(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator()
    client = RawClient(coord.url)
    for method, path, expected in [
        ("GET", "/", 404),
        ("GET", "/nothing", 404),
        ("GET", "/params/", 404),
        ("GET", "/prefix/params", 404),
        ("GET", "//params", 404),
        ("POST", "/nothing", 404),
        ("GET", "/params?anything=1", 200),  # the query is ignored
        ("GET", "/message", 500),  # warp's MethodNotAllowed is not handled: 500
        ("POST", "/params", 500),
        ("PUT", "/sums", 500),
        ("DELETE", "/model", 500),
        ("HEAD", "/params", 500),
        ("POST", "/seeds?pk=AAAA", 500),
    ]:
        status, body, _ = client.request(method, path, b"" if method == "POST" else None)
        assert status == expected, (method, path, status)
        if expected != 200:
            assert body == b"", (method, path)
    client.close()
    http_stats = coord.stats["http"]
    assert http_stats["GET other"] == {"404": 5}
    assert http_stats["GET /message"] == {"500": 1}


def test_seeds_query_decoding(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """400 for a pk that is not standard base64 of 32 bytes, 500 without exactly one pk."""
    coord = local_coordinator()
    client = RawClient(coord.url)
    pk = bytes(range(200, 232))  # its base64 has both '+' and '/'
    standard = b64encode(pk).decode()
    assert "+" in standard and "/" in standard and standard.endswith("=")
    for query, expected in [
        ("", 500),
        ("?", 500),
        ("?other=1", 500),
        (f"?pk={standard}&pk={standard}", 500),  # serde_urlencoded: duplicate field
        ("?pk=", 400),
        ("?pk=!!!!", 400),
        ("?pk=" + standard.replace("+", "-").replace("/", "_"), 400),  # URL-safe alphabet
        ("?pk=" + standard, 400),  # a raw '+' is form-decoded to a space
        ("?pk=" + b64encode(pk[:31]).decode().replace("+", "%2B").replace("/", "%2F"), 400),
        ("?pk=AAAAB", 400),  # a length that is 1 mod 4
        ("?pk=" + "A" * 42 + "B=", 400),  # a non-canonical last symbol
        (seeds_path(pk)[len("/seeds") :], 204),  # the original client's form
        ("?pk=" + standard.rstrip("=").replace("+", "%2B").replace("/", "%2F"), 204),  # no padding
        (seeds_path(pk)[len("/seeds") :] + "&extra=1", 204),  # other fields are ignored
    ]:
        status, body, _ = client.request("GET", "/seeds" + query)
        assert (status, body) == (expected, b""), query
    client.close()


def test_decode_seeds_pk_rules() -> None:
    assert decode_seeds_pk("AAAA") == bytes(3)
    assert decode_seeds_pk("AA") == bytes(1) == decode_seeds_pk("AA==")
    assert decode_seeds_pk("AAA=") == bytes(2)
    for bad in ("AA=", "AA===", "A", "AB==", "A=AA", "AA AA", "AA-_", "AAAA===="):
        assert decode_seeds_pk(bad) is None, bad


def test_dictionaries_and_model_over_a_round(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """/sums from the Update phase on, /seeds per sum participant from Sum2 on, /model after."""
    coord = local_coordinator(raw_round_settings())
    client = RawClient(coord.url)
    observed: dict[str, object] = {}

    def at_update(ctx) -> None:  # type: ignore[no-untyped-def]
        status, body, headers = client.request("GET", "/sums")
        observed["sums"] = (status, headers.get("Content-Type"), len(body))
        observed["seeds_in_update"] = client.request("GET", seeds_path(ctx.summers[0].pk))[0]

    def at_sum2(ctx) -> None:  # type: ignore[no-untyped-def]
        summer = ctx.summers[0]
        status, body, headers = client.request("GET", seeds_path(summer.pk))
        seeds = decode_update_seed_dict(body)
        assert status == 200 and headers["Content-Type"] == "application/octet-stream"
        assert set(seeds) == {u.pk for u in ctx.updaters} and len(body) == 8 + 128 * 3
        for updater in ctx.updaters:
            assert summer.ephemeral is not None
            mask_seed = open_sealed(
                seeds[updater.pk], summer.ephemeral.public, summer.ephemeral.secret
            )
            assert mask_seed == updater.mask_seed
        # not a sum participant (an update participant, a stranger): 204
        observed["seeds_updater"] = client.request("GET", seeds_path(ctx.updaters[0].pk))[0]
        observed["seeds_stranger"] = client.request("GET", seeds_path(bytes(32)))[0]

    ctx = run_round(coord, hooks={"update": at_update, "sum2": at_sum2})
    assert observed["sums"] == (200, "application/octet-stream", 8 + 80 * 2)
    assert observed["seeds_in_update"] == 204
    assert observed["seeds_updater"] == observed["seeds_stranger"] == 204
    status, body, headers = client.request("GET", "/model")
    assert status == 200 and headers.get("Content-Type") is None
    assert decode_model_fractions(body) == coord.global_model
    # Next round: dictionaries are gone, the model stays.
    coord.wait_for_phase(Phase.SUM, 10, ctx.params and coord.round_id)
    assert client.request("GET", "/sums")[0] == 204
    assert client.request("GET", seeds_path(ctx.summers[0].pk))[0] == 204
    assert client.request("GET", "/model")[1] == body
    client.close()


def test_a_new_round_has_new_keys_and_seed(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(raw_round_settings())
    client = RawClient(coord.url)
    first = client.params()
    run_round(coord)
    coord.wait_for_round(2, 10)
    second = client.params()
    assert coord.round_id == 2
    assert first.pk != second.pk and first.seed != second.seed
    assert (first.sum, first.update, first.mask_config) == (
        second.sum,
        second.update,
        second.mask_config,
    )
    client.close()


def test_round_seed_derivation_vector() -> None:
    vector = load_vector("round_seed_derivation.json")["example"]
    secret = bytes.fromhex(vector["coordinator_box_secret_key_hex"])
    keys = EncryptKeyPair(bytes(32), secret)  # only the secret key is used
    seed = derive_round_seed(
        bytes.fromhex(vector["prev_seed_hex"]), keys, vector["sum"], vector["update"]
    )
    assert seed.hex() == vector["new_seed_hex"]


def test_round_seeds_chain_from_zero(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(raw_round_settings())
    state = coord._state  # internal: the secret key is needed to check the chain
    first = state.round
    assert first.seed == derive_round_seed(bytes(32), first.keys, 0.5, 0.9)
    run_round(coord)
    coord.wait_for_round(2, 10)
    second = state.round
    assert second.seed == derive_round_seed(first.seed, second.keys, 0.5, 0.9)


def test_post_body_limit_is_413_and_closes(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(limits=Limits(max_body_size=1000))
    with socket.create_connection(("127.0.0.1", coord.port), timeout=10) as sock:
        # Announce a large body but never send it: the reply must not wait for it.
        sock.sendall(b"POST /message HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        reply = b""
        while True:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    head = reply.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 413")
    assert "Connection: close" in head
    client = RawClient(coord.url)
    assert client.request("POST", "/message", b"x" * 1000)[0] == 200  # at the limit: fine
    client.close()
    stats = coord.stats
    assert stats["rejected"]["too_large"] == 1
    assert stats["rejected"]["decrypt"] == 1


def test_default_body_limit_fits_the_largest_update(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(model_length=1000, max_sum_count=10, max_sum2_count=10)
    limit = coord._server.body_limit  # internal
    # 136 header + 128 signatures + (8 + 1000·6 + 4 + 6) mask object + 4 + 112·10 seeds + 48
    assert limit == 136 + 128 + 6018 + 4 + 1120 + 48 + 4096


def test_chunked_transfer_encoding_is_read(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(limits=Limits(max_body_size=100))
    with socket.create_connection(("127.0.0.1", coord.port), timeout=10) as sock:
        sock.sendall(
            b"POST /message HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET /params HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        reply = b""
        while reply.count(b"HTTP/1.1 ") < 2 or len(reply.split(b"\r\n\r\n")[-1]) < 136:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 200") and reply.count(b"HTTP/1.1 200") == 2
    assert coord.stats["rejected"] == {"decrypt": 1}


def test_stats_are_json(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(raw_round_settings())
    run_round(coord)
    stats = json.loads(json.dumps(coord.stats))
    assert stats["rounds_completed"] == 1 and stats["global_models"] == 1
    assert stats["accepted"] == {"Sum": 2, "Update": 3, "Sum2": 2}


def test_a_raw_participant_can_see_its_role(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator()
    client = RawClient(coord.url)
    params = client.params()
    assert RawParticipant.with_role(params, "sum").role(params) == "sum"
    assert RawParticipant.with_role(params, "update").role(params) == "update"
    assert RawParticipant.with_role(params, "none").role(params) == "none"
    client.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_binds_ipv4_and_ipv6(local_coordinator, host: str) -> None:  # type: ignore[no-untyped-def]
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        coord = local_coordinator(bind_address=f"[{host}]:0" if ":" in host else f"{host}:0")
    except OSError as e:
        pytest.skip(f"cannot bind {host}: {e}")
    assert coord.url == (
        f"http://[{host}]:{coord.port}" if ":" in host else f"http://{host}:{coord.port}"
    )
    assert RawClient(coord.url).params().model_length == 4
