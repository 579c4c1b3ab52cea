"""Tests of the harness that drives the ORIGINAL participant in a separate venv/process.

The original (xaynet-sdk-python 0.1.0) holds the GIL in tick(), so the fake
coordinator below may live in this process only because the original runs in
another one.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # makes `original` importable in any pytest import mode
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import wait_until  # noqa: E402
from original.refenv import REPO_ROOT, ensure_reference_python, venv_dir  # noqa: E402
from original.runner import DRIVER, OriginalHarnessError, OriginalParticipant  # noqa: E402

pytestmark = pytest.mark.original

MODEL_LENGTH = 4


# ----------------------------------------------------------------------------- helpers


def round_params(
    sum_prob: float = 0.0, update_prob: float = 1.0, model_length: int = MODEL_LENGTH
) -> bytes:
    """136-byte bincode RoundParameters (§3.3); Prime/F32/B0/M3 as variant indices."""
    try:
        from nacl.public import PrivateKey

        pk = PrivateKey.generate().public_key.encode()
    except ImportError:  # any 32 bytes are a usable X25519 public key
        pk = os.urandom(32)
    seed = os.urandom(32)
    config = struct.pack("<4I", 1, 0, 0, 0)  # group Prime, data F32, bound B0, model M3
    body = (
        struct.pack("<Q", 32)
        + pk
        + struct.pack("<dd", sum_prob, update_prob)
        + struct.pack("<Q", 32)
        + seed
        + config
        + config
        + struct.pack("<Q", model_length)
    )
    assert len(body) == 136
    return body


class FakeCoordinator:
    """Minimal coordinator: fixed /params, 204 on /sums, /seeds and /model, 200 on POST."""

    def __init__(self, params: bytes) -> None:
        self.params = params
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> str:
                path = self.path.split("?", 1)[0]
                with outer._lock:
                    outer.requests.append((self.command, path))
                return path

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                path = self._record()
                if path == "/params":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(outer.params)))
                    self.end_headers()
                    self.wfile.write(outer.params)
                elif path in ("/sums", "/seeds", "/model"):
                    self.send_response(204)
                    self.end_headers()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                self._record()
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path: str, method: str = "GET") -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if m == method and p == path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _driver_children() -> list[int]:
    """PIDs of live driver processes that are children of this test process."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == os.getpid() and str(DRIVER) in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def ref_python() -> Path:
    return ensure_reference_python()


@pytest.fixture(autouse=True)
def no_orphans() -> Iterator[None]:
    """Every test must leave no driver process behind."""
    yield
    assert _driver_children() == []


@pytest.fixture
def coordinator() -> Iterator[FakeCoordinator]:
    coord = FakeCoordinator(round_params())
    yield coord
    coord.close()


# ----------------------------------------------------------------------------- (a) the venv


def test_reference_venv_imports_the_original(ref_python: Path) -> None:
    assert ref_python == venv_dir() / "bin" / "python"
    out = subprocess.run(
        [
            str(ref_python),
            "-I",
            "-c",
            "import json, importlib.metadata as md, xaynet_sdk.xaynet_sdk as x; "
            "print(json.dumps([x.__file__, md.version('xaynet-sdk-python'), "
            "md.version('justbackoff'), hasattr(x, 'Participant')]))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd="/",
    ).stdout
    native, version, backoff, has_participant = json.loads(out)
    assert Path(native).resolve().is_relative_to(venv_dir().resolve())
    assert (version, backoff, has_participant) == ("0.1.0", "0.6.0", True)
    # Idempotent and fast the second time (a rebuild takes a minute or more).
    start = time.monotonic()
    assert ensure_reference_python() == ref_python
    assert time.monotonic() - start < 10.0


def test_concurrent_setup_builds_once(tmp_path: Path) -> None:
    """Two processes racing on an empty location: the lock makes one build, both succeed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["XAYNET_REFVENV"] = str(tmp_path / "venv")
    script = str(TESTS_DIR / "original" / "refenv.py")
    procs = [
        subprocess.Popen(
            [sys.executable, script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        assert out.strip() == str(tmp_path / "venv" / "bin" / "python")
    assert (tmp_path / "venv" / ".xaynet-refenv-ok").exists()


# ----------------------------------------------------------------------------- (b) no shadowing


def _check_import(
    python: str, env_extra: dict[str, str], cwd: Path, isolated: bool
) -> tuple[int, list[dict]]:
    """Run the driver's --check-import; return its exit code and events."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | env_extra
    cmd = [python, *(["-I"] if isolated else []), str(DRIVER), "--check-import"]
    proc = subprocess.run(cmd, env=env, cwd=str(cwd), capture_output=True, text=True, timeout=60)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_driver_refuses_a_shadowing_xaynet_sdk(ref_python: Path, tmp_path: Path) -> None:
    """A path entry that would load the repo's package (here via a symlink) aborts the driver."""
    (tmp_path / "xaynet_sdk").symlink_to(REPO_ROOT / "xaynet_sdk", target_is_directory=True)
    code, events = _check_import(str(ref_python), {"PYTHONPATH": str(tmp_path)}, tmp_path, False)
    assert code == 3
    assert events[0]["event"] == "error" and events[0]["kind"] == "shadowed"
    assert not any(e["event"] == "import_ok" for e in events)


def test_driver_refuses_a_non_venv_python(tmp_path: Path) -> None:
    # the interpreter behind any venv the tests themselves may run in (CI uses one)
    base_python = getattr(sys, "_base_executable", sys.executable)
    code, events = _check_import(base_python, {}, tmp_path, True)
    assert code == 3
    assert events[0]["kind"] == "not_in_venv"


def test_driver_drops_the_repo_root_from_sys_path(ref_python: Path) -> None:
    """Even with the repo root on PYTHONPATH and as cwd, the original is what imports."""
    code, events = _check_import(str(ref_python), {"PYTHONPATH": str(REPO_ROOT)}, REPO_ROOT, False)
    assert code == 0, events
    (ok,) = events
    assert ok["event"] == "import_ok"
    assert Path(ok["file"]).resolve().is_relative_to(venv_dir().resolve())
    assert str(REPO_ROOT) in ok["dropped"]


# ----------------------------------------------------------------------------- (c) a live run


def test_update_participant_against_fake_coordinator(coordinator: FakeCoordinator) -> None:
    with OriginalParticipant(
        coordinator.url, model=[0.5, 1.0, -2.0, 3.0], timeout=60, save_state=True
    ) as op:
        op.wait_for_event("started", timeout=20)
        op.wait_for_event("task", task="update", timeout=10)
        op.wait_for_event("set_model", ok=True, timeout=10)
        wait_until(lambda: coordinator.count("/sums") >= 3, 60, f"3 polls: {coordinator.requests}")
        assert op.running()
        start = time.monotonic()
        code = op.stop()
        assert time.monotonic() - start < 5
    assert code == 0, op.describe()  # SIGTERM between ticks is handled gracefully
    assert not op.running()
    with pytest.raises(ProcessLookupError):
        os.kill(op.pid, 0)  # type: ignore[arg-type]

    assert coordinator.count("/params") >= 4
    assert coordinator.count("/model") >= 1  # fetched once on the new round (wrapper order)
    assert coordinator.count("/message", "POST") == 0  # stuck waiting for the sum dict
    assert op.tasks() == ["none", "update"]
    assert op.global_models() == []
    assert op.events("no_global_model")
    assert op.errors() == []
    assert op.events("new_round")[0]["round"] == 1
    (done,) = op.events("done")
    assert done["reason"] == "signal"
    (saved,) = op.events("saved")
    assert saved["phase"] == "Update"
    state = op.saved_state()
    assert state is not None and state[:4] == [3, 0, 0, 0]


def test_restore_from_saved_state(coordinator: FakeCoordinator) -> None:
    """A state saved in Update restores with task update and asks for the model again."""
    with OriginalParticipant(coordinator.url, timeout=60, save_state=True) as first:
        first.wait_for_event("task", task="update", timeout=20)
    state = first.saved_state()
    assert state is not None
    with OriginalParticipant(
        "http://127.0.0.1:9", state=state, max_ticks=0, model=[0.0] * 4, timeout=30
    ) as op:
        assert op.wait_exit(20) == 0
    assert op.events("started")[0]["restored"] is True
    assert op.tasks() == ["update"]  # restore emits the phase's role event before any tick
    assert op.events("should_set_model") and op.events("set_model")


def test_invalid_url_is_reported(ref_python: Path) -> None:
    with OriginalParticipant("data:text/plain,x", timeout=30) as op:
        with pytest.raises(OriginalHarnessError, match="exited"):
            op.wait_for_event("started", timeout=20)
        assert op.wait_exit(10) == 4
    (err,) = op.errors()
    assert err["kind"] == "ParticipantInit"


def test_hung_coordinator_is_killed_by_the_parent(ref_python: Path) -> None:
    """tick() blocks forever holding the GIL on a silent server: only SIGKILL ends it."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accepted: connect succeeds, no answer ever comes
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        op = OriginalParticipant(url, timeout=2.0, kill_grace=1.0)
        op.wait_for_event("started", timeout=20)
        wait_until(lambda: not op.running(), 14, "the watchdog's kill (timeout 2 s, grace 1 s)")
        assert op.killed_by_watchdog
        assert op.stop() == -9
        assert not op.events("done")

        op2 = OriginalParticipant(url, timeout=60)
        op2.wait_for_event("started", timeout=20)
        time.sleep(0.5)
        start = time.monotonic()
        assert op2.stop(grace=1.0) == -9  # SIGTERM cannot be handled while tick() hangs
        assert time.monotonic() - start < 20  # the grace, then SIGKILL: never the 60 s timeout
    finally:
        silent.close()
