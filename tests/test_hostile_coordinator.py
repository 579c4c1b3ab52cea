"""Hostile coordinators on real loopback sockets: a drip cannot hold, a flood cannot fill.

* A coordinator that sends its headers (or its body) one byte at a time is cut at the
  request's deadline, whatever the per-read timeout; the problem is logged once and the
  participant retries with its backoff; ``stop()`` cuts a request in flight at once.
* A coordinator that announces an 8 GiB body, or streams an endless chunked one, is
  abandoned as soon as the body passes what the endpoint needs: the server side counts
  what it could send before the participant hung up, and the peak memory of a participant
  process (its ``ru_maxrss``) stays within :data:`MEMORY_BOUND` of what it used before.
* The caps never refuse what a genuine coordinator sends: the largest global model the
  protocol allows, for every mask configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from fault_servers import HostileServer, LogCapture  # noqa: E402
from participant_fakes import Fixed, make_params  # noqa: E402

from xaynet_sdk import AsyncParticipant, InternalParticipant  # noqa: E402
from xaynet_sdk.codec.bincode import RoundParameters, encode_model  # noqa: E402
from xaynet_sdk.exceptions import GlobalModelUnavailable  # noqa: E402
from xaynet_sdk.mask.config import MaskConfigPair, all_configs  # noqa: E402
from xaynet_sdk.transport import (  # noqa: E402
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BODY,
    BodyTooLarge,
    RequestTimedOut,
    Transport,
    TransportClosed,
    body_limits,
)

pytestmark = pytest.mark.timeout(180)

#: The deadline of the requests under test, and the drip interval: far below the per-read
#: timeout (so only the deadline can cut), far above nothing.
DEADLINE = 2.0
DRIP = 0.2
READ_TIMEOUT = 30.0
#: A cut must come after the deadline and well before the drip would end on its own
#: (136 bytes at DRIP = 27 s); the upper margin is generous for a loaded machine.
LATE_MARGIN = 15.0
#: The most a participant process may grow while a coordinator floods it.
MEMORY_BOUND = 64 << 20
#: The most a flooding server may get out before the participant hangs up: the cap, plus
#: what the loopback socket buffers hold.
SENT_BOUND = 32 << 20


def _params_body(model_length: int = 1000) -> bytes:
    return make_params(model_length=model_length)[0].to_bytes()


# ---------------------------------------------------------------------------------- drips


@pytest.mark.parametrize("endpoint", ["params", "sums"], ids=["body drip", "header drip"])
def test_a_dripping_answer_is_cut_at_the_deadline(endpoint: str) -> None:
    kind = "drip" if endpoint == "params" else "drip_headers"
    with HostileServer({f"/{endpoint}": (kind, DRIP)}) as server:
        transport = Transport(server.url, timeout=(5.0, READ_TIMEOUT), deadline=DEADLINE)
        start = time.monotonic()
        with pytest.raises(RequestTimedOut, match="deadline"):
            getattr(transport, f"get_{endpoint}")()
        took = time.monotonic() - start
        (conn,) = server.wait_for(f"/{endpoint}")
        assert DEADLINE - 0.1 <= took <= DEADLINE + LATE_MARGIN, took
        # The server sees the connection end soon after (its next byte fails), long
        # before the drip would have finished.
        deadline = time.monotonic() + LATE_MARGIN
        while conn.ended is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.ended is not None and conn.ended - conn.start < DEADLINE + LATE_MARGIN
        header = 40 if endpoint == "params" else 17
        assert conn.sent < header + 136, conn  # the answer never completed


def test_a_drip_is_reported_once_and_retried_with_backoff() -> None:
    with (
        HostileServer({"/params": ("drip", DRIP)}) as server,
        LogCapture() as logs,
    ):
        transport = Transport(server.url, timeout=(5.0, READ_TIMEOUT), deadline=1.0)
        participant = InternalParticipant(server.url, Fixed, ([0.0] * 4,), transport=transport)
        participant.start()
        try:
            server.wait_for("/params", 3, timeout=60)
        finally:
            participant.stop()
        participant.join(30)
        assert not participant.is_alive()
        cut = [m for m in logs.iter_messages() if "within the deadline" in m]
        assert len(cut) == 1, cut
        starts = [c.start for c in server.on("/params")]
        # Retried: each attempt only after the previous one was cut at its deadline.
        assert all(b - a >= 1.0 - 0.1 for a, b in zip(starts, starts[1:])), starts


@pytest.mark.parametrize("api", ["callback", "async"])
def test_stop_cuts_the_request_in_flight(api: str) -> None:
    """A long deadline and read timeout: only ``stop()`` can end the dripping request."""
    with HostileServer({"/params": ("drip", 0.5)}) as server, LogCapture() as logs:
        transport = Transport(server.url, timeout=(60.0, 60.0), deadline=300.0)
        participant: InternalParticipant | AsyncParticipant
        if api == "callback":
            participant = InternalParticipant(server.url, Fixed, ([0.0] * 4,), transport=transport)
        else:
            participant = AsyncParticipant(server.url, threading.Event(), transport=transport)
        participant.start()
        (conn,) = server.wait_for("/params")
        time.sleep(1.0)  # a few bytes dripped: the request is in flight
        assert conn.ended is None
        stopped = time.monotonic()
        state = participant.stop()
        assert isinstance(state, list) and state
        participant.join(20)
        assert not participant.is_alive()
        deadline = time.monotonic() + 20
        while conn.ended is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.ended is not None, "the connection is still held after stop()"
        assert conn.ended - stopped < 20  # not the 68 s of the drip, nor the deadline
        assert transport.closed
        with pytest.raises(TransportClosed):
            transport.get_params()
        # Being stopped is not a coordinator problem: nothing above DEBUG about the cut.
        assert not [m for m in logs.iter_messages() if "stopped" in m and "GET" in m]


# --------------------------------------------------------------------------------- floods


_CLIENT = textwrap.dedent(
    """
    import json, resource, sys
    from xaynet_sdk.driver import Participant
    from xaynet_sdk.exceptions import GlobalModelUnavailable
    from xaynet_sdk.transport import Transport, TransportError

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    flood_url, chunked_params_url, model_url, deadline = sys.argv[1:5]
    out = {}
    # Warm up on a genuine round: valid parameters and a 204 everywhere else.
    warm = Transport(model_url, timeout=(5, 30), deadline=float(deadline))
    assert warm.get_params() is not None
    out["model_cap"] = warm.limits.model
    out["baseline"] = peak()
    t = Transport(flood_url, timeout=(5, 30), deadline=float(deadline))
    for name, call in [
        ("params 8 GiB", t.get_params),
        ("model 8 GiB, no parameters", t.get_model),
        ("params chunked", Transport(chunked_params_url, timeout=(5, 30),
                                     deadline=float(deadline)).get_params),
        ("model chunked", warm.get_model),
    ]:
        try:
            call()
            out[name] = "returned"
        except TransportError as e:
            out[name] = type(e).__name__
    # The participant itself: it carries on after the flood of its model.
    p = Participant(model_url, transport=Transport(model_url, timeout=(5, 30),
                                                   deadline=float(deadline)))
    p.tick()
    try:
        p.global_model()
        out["participant"] = "model"
    except GlobalModelUnavailable:
        out["participant"] = "unavailable"
    p.tick()
    out["round_serial"] = p.round_serial
    out["peak"] = peak()
    print(json.dumps(out))
    """
)


def test_floods_are_abandoned_before_they_are_buffered() -> None:
    params = _params_body()
    with (
        HostileServer({"/params": ("flood", 8 << 30), "/model": ("flood", 8 << 30)}) as flood,
        HostileServer({"/params": ("chunked", None)}) as chunked,
        HostileServer({"/params": ("fixed", params), "/model": ("chunked", None)}) as model,
    ):
        run = subprocess.run(
            [sys.executable, "-c", _CLIENT, flood.url, chunked.url, model.url, "20"],
            capture_output=True,
            text=True,
            timeout=150,
            env={**os.environ, "PYTHONPATH": str(TESTS_DIR.parent)},
        )
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"\nHOSTILE-FLOOD {out} growth={(out['peak'] - out['baseline']) >> 20} MiB")
        for name in ("params 8 GiB", "model 8 GiB, no parameters", "params chunked"):
            assert out[name] == "BodyTooLarge", out
        assert out["model chunked"] == "BodyTooLarge", out
        assert out["participant"] == "unavailable" and out["round_serial"] == 1, out
        # The cap of /model for 1000 weights is far below the ceiling.
        assert out["model_cap"] < 1 << 20, out
        assert out["peak"] - out["baseline"] < MEMORY_BOUND, out
        conns = flood.connections + chunked.connections + model.on("/model")
        assert len(conns) >= 5
        for conn in conns:
            assert conn.sent < SENT_BOUND, conn


def test_a_flood_is_logged_once_per_kind_and_the_participant_carries_on() -> None:
    params = _params_body(model_length=4)
    with (
        HostileServer({"/params": ("fixed", params), "/model": ("chunked", None)}) as server,
        LogCapture() as logs,
    ):
        transport = Transport(server.url, timeout=(5.0, READ_TIMEOUT), deadline=20.0)
        participant = AsyncParticipant(server.url, threading.Event(), transport=transport)
        participant.start()
        try:
            server.wait_for("/params", 2)
            for _ in range(3):
                with pytest.raises(GlobalModelUnavailable, match="larger than"):
                    participant.get_global_model()
            assert participant.is_alive()
        finally:
            participant.stop()
        too_large = [m for m in logs.iter_messages() if "larger than" in m]
        assert len(too_large) == 1, too_large
        assert len(server.on("/model")) >= 3
        assert all(c.sent < SENT_BOUND for c in server.on("/model"))


def test_an_announced_length_beyond_the_cap_is_not_read() -> None:
    with HostileServer({"/params": ("flood", 8 << 30)}) as server:
        transport = Transport(server.url, deadline=20.0)
        with pytest.raises(BodyTooLarge, match="announced 8589934592"):
            transport.get_params()
        (conn,) = server.wait_for("/params")
        assert conn.sent < SENT_BOUND


# ------------------------------------------------------------------------------ the caps


def test_the_model_cap_holds_the_largest_model_of_every_configuration() -> None:
    """The largest numerator and denominator an unmasked weight can have (order times
    exponent shift of both configurations, unreduced): still within the cap, for all 240."""
    length = 3
    for config in all_configs():
        base, _ = make_params(model_length=length)
        params = RoundParameters(
            base.pk, base.sum, base.update, base.seed, MaskConfigPair.single(config), length
        )
        big = config.order * config.exp_shift
        body = encode_model([(-big, big)] * length)
        limits = body_limits(params)
        assert len(body) <= limits.model, (config.name, len(body), limits.model)
        assert limits.model <= DEFAULT_MAX_BODY
    # ... and a model one byte larger than the cap of a small round is refused.
    small, _ = make_params(model_length=1000)
    assert body_limits(small).model < 200_000
    assert body_limits(small, max_body=8192).model == 8192
    assert body_limits(None).model == DEFAULT_MAX_BODY


def test_a_body_one_byte_over_the_cap_is_refused_and_one_at_it_accepted() -> None:
    params = _params_body(model_length=1)
    cap = body_limits(RoundParameters.from_bytes(params)).model
    for size, ok in ((cap, True), (cap + 1, False)):
        with HostileServer({"/params": ("fixed", params), "/model": ("fixed", b"m" * size)}) as s:
            transport = Transport(s.url, deadline=20.0)
            assert transport.get_params() == params
            if ok:
                assert transport.get_model() == b"m" * size
            else:
                with pytest.raises(BodyTooLarge, match=f"larger than {cap} bytes"):
                    transport.get_model()


def test_deadline_and_max_body_are_checked() -> None:
    assert Transport("http://h:1").deadline == DEFAULT_DEADLINE == 120.0
    # Timeouts raised for a slow link are never cut shorter by the default deadline.
    assert Transport("http://h:1", timeout=(10, 300)).deadline == 310.0
    assert Transport("http://h:1", timeout=0.3, deadline=2).deadline == 2.0
    with pytest.raises(ValueError, match="deadline"):
        Transport("http://h:1", deadline=0)
    with pytest.raises(TypeError, match="deadline"):
        Transport("http://h:1", deadline=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_body"):
        Transport("http://h:1", max_body=100)
