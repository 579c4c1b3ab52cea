"""No secret in any log line, at any level: signing keys, mask seeds, ephemeral keys, states.

Full rounds against the local coordinator (sum and update roles both taken), a save and a
restore of every participant, and more rounds, with every logger at DEBUG (the root logger,
``xaynet_sdk.*``, and ``XAYNET_CLIENT=debug``, which the SDK reads to attach its own stderr
handler). The secrets are recorded where they are made, by wrapping the generators:

* ``SigningKeyPair.generate``: each participant's 64-byte secret key and its 32-byte seed;
* ``EncryptKeyPair.generate``: each sum participant's ephemeral secret key, and each of the
  coordinator's round secret keys (told apart by the calling module);
* ``secrets.token_bytes`` as the Update phase calls it: every mask seed;
* every state ``stop()`` returned.

Each captured line (message, traceback, and the raw arguments) is searched for each secret in
hex (either case), in base64 (standard and URL-safe, at every byte alignment, so a secret
inside a longer encoded blob is found too), as a list of ints (``[12, 34, ...]``) and as a
``bytes`` repr; for the 32-byte secrets (signing seeds, ephemeral and round keys, mask seeds)
also every 8-byte window in hex and as a list, so that a prefix or fragment is caught too.
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from xaynet_sdk import ParticipantABC, _logging, spawn_participant  # noqa: E402
from xaynet_sdk.codec.crypto import EncryptKeyPair, SigningKeyPair  # noqa: E402
from xaynet_sdk.coordinator import LocalCoordinator, Settings  # noqa: E402
from xaynet_sdk.protocol import update as update_phase  # noqa: E402
from xaynet_sdk.protocol.saved import load_state  # noqa: E402

pytestmark = pytest.mark.timeout(300)

WINDOW = 8


# ---------------------------------------------------------------------------------------------
# Recording secrets where they are made
# ---------------------------------------------------------------------------------------------


@dataclass
class Secrets:
    """Secret byte strings by kind, recorded as the SDK and the coordinator create them."""

    items: dict[str, list[bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, value: bytes) -> None:
        with self.lock:
            self.items.setdefault(kind, []).append(bytes(value))

    def count(self, kind: str) -> int:
        with self.lock:
            return len(self.items.get(kind, []))

    def all(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return [(kind, v) for kind, values in self.items.items() for v in values]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Secrets:
    found = Secrets()
    sign_generate = SigningKeyPair.generate.__func__  # type: ignore[attr-defined]
    box_generate = EncryptKeyPair.generate.__func__  # type: ignore[attr-defined]
    token_bytes = secrets.token_bytes

    def signing_generate(cls: type[SigningKeyPair]) -> SigningKeyPair:
        pair: SigningKeyPair = sign_generate(cls)
        found.add("participant secret signing key", pair.secret)
        found.add("participant signing seed", pair.seed)
        return pair

    def encrypt_generate(cls: type[EncryptKeyPair]) -> EncryptKeyPair:
        pair: EncryptKeyPair = box_generate(cls)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        kind = "coordinator round secret key" if ".coordinator" in caller else "ephemeral secret"
        found.add(kind, pair.secret)
        return pair

    def recorded_token_bytes(n: Optional[int] = None) -> bytes:
        value = token_bytes(n)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller == update_phase.__name__:
            found.add("mask seed", value)
        return value

    monkeypatch.setattr(SigningKeyPair, "generate", classmethod(signing_generate))
    monkeypatch.setattr(EncryptKeyPair, "generate", classmethod(encrypt_generate))
    monkeypatch.setattr(secrets, "token_bytes", recorded_token_bytes)  # update.py's secrets
    return found


# ---------------------------------------------------------------------------------------------
# Capturing every log line
# ---------------------------------------------------------------------------------------------


class _Capture(logging.Handler):
    """Keeps every record formatted (with traceback) plus the repr of its raw arguments."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.names: set[str] = set()
        self.levels: set[int] = set()
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception as e:  # noqa: BLE001 - a broken log call is itself worth seeing
            text = f"UNFORMATTABLE {record.msg!r} {e!r}"
        extra = f" args={record.args!r}" if record.args else ""
        with self._lock:
            self.lines.append(text + extra)
            self.names.add(record.name)
            self.levels.add(record.levelno)


@dataclass
class Logs:
    handler: _Capture
    sdk_stream: io.StringIO

    def lines(self) -> list[str]:
        """Every captured line: the records, and what the SDK's own handler printed."""
        return list(self.handler.lines) + self.sdk_stream.getvalue().splitlines()


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    handler = _Capture()
    root = logging.getLogger()
    sdk = logging.getLogger(_logging.LOGGER_NAME)
    saved_levels = {logger: logger.level for logger in (root, sdk)}
    # XAYNET_CLIENT=debug, as a user would set it; the SDK then attaches its own handler
    monkeypatch.setenv(_logging.ENV_VAR, "debug")
    monkeypatch.setattr(_logging, "_handler", None)
    before = list(sdk.handlers)
    _logging.init_logging()
    assert sdk.level == logging.DEBUG
    added = [h for h in sdk.handlers if h not in before]
    stream = io.StringIO()
    for h in added:
        assert isinstance(h, logging.StreamHandler)
        h.setStream(stream)
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    sdk.addHandler(handler)  # in case something below stops propagation
    try:
        yield Logs(handler, stream)
    finally:
        root.removeHandler(handler)
        sdk.removeHandler(handler)
        for h in added:
            sdk.removeHandler(h)
        for logger, level in saved_levels.items():
            logger.setLevel(level)


# ---------------------------------------------------------------------------------------------
# Searching
# ---------------------------------------------------------------------------------------------


def _list_form(data: bytes, sep: str) -> str:
    return sep.join(str(b) for b in data)


def _b64_forms(data: bytes) -> list[str]:
    """The part of the base64 of ``data`` that does not depend on its neighbours, at each of
    the three byte alignments it can have inside a longer encoded buffer."""
    forms = []
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(bytes(pad) + data).decode()
            middle = text[4:-4]
            if len(middle) >= 12:
                forms.append(middle)
    return forms


def needles(secret: bytes, windows: bool) -> list[str]:
    """Every textual form of ``secret`` searched for (see the module docstring)."""
    forms = [
        secret.hex(),
        secret.hex().upper(),
        _list_form(secret, ", "),
        _list_form(secret, ","),
        repr(secret)[2:-1],
        *_b64_forms(secret),
    ]
    if windows:
        for i in range(len(secret) - WINDOW + 1):
            part = secret[i : i + WINDOW]
            forms += [part.hex(), part.hex().upper(), _list_form(part, ", ")]
    return [f for f in forms if len(f) >= 12]


def find_secrets(lines: list[str], found: list[tuple[str, bytes]]) -> list[str]:
    """Descriptions of every (secret, line) pair where the line contains a form of it."""
    text = "\n".join(lines)
    hits = []
    for kind, secret in found:
        # Fragments only of the 32-byte secrets: a state or a 64-byte signing key (seed ‖
        # public key) also holds public bytes, which may legitimately be logged; their
        # secret parts are searched as the recorded seeds and keys.
        for needle in needles(secret, windows=len(secret) == 32):
            if needle in text:
                line = next(line for line in lines if needle in line)
                hits.append(f"{kind} ({needle[:24]}...) in: {line[:300]}")
                break
    return hits


def test_the_search_finds_secrets_in_every_form() -> None:
    """The search itself: a secret shows up hex, base64 (inside a longer blob), as a list."""
    secret = bytes(range(100, 132))
    blob = b"\x01\x02" + secret + b"\x03"
    lines = [
        f"key {secret.hex()}",
        f"blob {base64.b64encode(blob).decode()}",
        f"state {list(b'xy' + secret)}",
        f"prefix {secret[:10].hex()}",
        f"urlsafe {base64.urlsafe_b64encode(bytes(1) + secret).decode()}",
        f"bytes {secret!r}",
    ]
    for line in lines:
        assert find_secrets([line], [("test", secret)]), line
    assert not find_secrets(["nothing secret here " + bytes(32).hex()], [("test", secret)])


# ---------------------------------------------------------------------------------------------
# The rounds
# ---------------------------------------------------------------------------------------------


class Trainer(ParticipantABC):
    """A fixed local model; the very first training of all (``failed`` unset) raises, so
    that the log also holds a traceback (with the participant's frames)."""

    failed = threading.Event()

    def __init__(self, value: float) -> None:
        self.value = value

    def train_round(self, training_input: Optional[Any]) -> Any:
        if not Trainer.failed.is_set():
            Trainer.failed.set()
            raise RuntimeError("training failed (on purpose, to log a traceback)")
        return [self.value, -self.value, 0.5, 0.0]

    def serialize_training_result(self, training_result: Any) -> Any:
        return training_result

    def deserialize_training_input(self, global_model: Any) -> Any:
        return global_model


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.1)


def _settings() -> Settings:
    # sum 0.5 / update 1.0: every participant that is not a sum participant updates. One
    # update suffices (insecure_min_counts, tests only), so a round fails only when no
    # participant or every participant is selected for sum (2/64 with six), and fails fast.
    return Settings.for_tests(
        model_length=4,
        sum=0.5,
        update=1.0,
        min_update_count=1,
        insecure_min_counts=True,
        min_sum_time=0.3,
        min_update_time=0.3,
        min_sum2_time=0.3,
        max_sum_time=4,
        max_update_time=4,
        max_sum2_time=4,
    )


def test_no_secret_in_any_log_line(recorded: Secrets, logs: Logs) -> None:
    n = 6
    Trainer.failed.clear()
    with LocalCoordinator(_settings()) as coordinator:
        participants = [
            spawn_participant(coordinator.url, Trainer, args=(0.1 * i,)) for i in range(n)
        ]
        # rounds until both roles were taken at least once (and two models were published)
        _wait_for(
            lambda: (
                coordinator.stats["global_models"] >= 2
                and recorded.count("ephemeral secret") > 0
                and recorded.count("mask seed") > 0
            ),
            120,
            "two global models with sum and update participants",
        )
        states = [p.stop() for p in participants]
        for i, state in enumerate(states):
            recorded.add(f"saved state {i}", bytes(state))
            # the participant's identity survives the restore: its keys are the recorded ones
            keys = load_state(state).shared.keys
            assert keys.secret in recorded.items["participant secret signing key"]

        published = coordinator.stats["global_models"]
        restored = [
            spawn_participant(coordinator.url, Trainer, args=(0.2,), state=state)
            for state in states
        ]
        _wait_for(
            lambda: coordinator.stats["global_models"] >= published + 2,
            120,
            "two more global models after the restore",
        )
        stats = coordinator.stats
    # the coordinator is gone: the participants log their failing requests (backoff <= 10 s)
    _wait_for(lambda: "xaynet_sdk.transport" in logs.handler.names, 30, "a transport warning")
    for i, p in enumerate(restored):
        recorded.add(f"saved state {n + i} (after restore)", bytes(p.stop()))

    lines = logs.lines()
    found = recorded.all()
    summary = {kind: recorded.count(kind) for kind in recorded.items if "state" not in kind}
    print(f"loggers: {sorted(logs.handler.names)}")
    print(
        f"searched {len(lines)} log lines from {len(logs.handler.names)} loggers for"
        f" {len(found)} secrets: {summary} and {2 * n} saved states;"
        f" coordinator: {stats['rounds_completed']} rounds completed,"
        f" {stats['rounds_failed']} failed"
    )

    # the capture works: DEBUG lines of the participant, the coordinator and the HTTP layer
    assert logging.DEBUG in logs.handler.levels
    assert any(name.startswith("xaynet_sdk.coordinator") for name in logs.handler.names)
    assert {"xaynet_sdk.participant", "xaynet_sdk.transport"} <= logs.handler.names
    assert any("Traceback" in line and "on purpose" in line for line in lines)
    assert any("fetch global model" in line for line in logs.sdk_stream.getvalue().splitlines())
    assert len(lines) > 100
    # every kind of secret was actually made
    assert recorded.count("participant secret signing key") == n
    assert recorded.count("coordinator round secret key") >= 4
    assert recorded.count("ephemeral secret") >= 1 and recorded.count("mask seed") >= 1
    assert sum(kind.startswith("saved state") for kind, _ in found) == 2 * n

    hits = find_secrets(lines, found)
    assert not hits, "secrets in the logs:\n" + "\n".join(hits)
