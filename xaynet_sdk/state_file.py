"""A state file: the participant's saved state kept on disk at every step (``state_file=``).

A participant spawned with ``state_file=path`` resumes from ``path`` when it exists and
otherwise starts fresh and creates it. From then on the driver calls :meth:`Persistence.record`
after every tick that changed the state, after ``set_model``, and before every ``POST
/message``; a record is written only if the state object changed (states are immutable
values, so identity says it).

Why a crash at any instant is safe:

* Each write goes to a temporary file in the same directory (same file system), is flushed
  and ``fsync``-ed, renamed over the state file (atomic on POSIX), and the directory is
  ``fsync``-ed so that the rename itself survives a power loss. A kill leaves the old or the
  new state, never a torn one; a leftover temporary file is removed on the next start.
* Before a message goes out, the file must hold the Sending state it comes from: the
  serialized payload and the index of the message (chunk) being sent. Signing is
  deterministic, so a participant killed after the POST resumes in that state and sends the
  very same signed message again (the coordinator then refuses it as a repeat, which the
  participant never learns: ``POST /message`` always answers 200), never a different one. A
  POST whose record could not be written is not sent (it is retried on the next tick).
* A file that exists but cannot be used (corrupted, truncated, not a state) raises
  :class:`~xaynet_sdk.exceptions.ParticipantRestore` naming the file: starting fresh would
  silently replace the participant's identity.

The file holds the private signing key: it is created with mode 0600, and an existing file
readable or writable by others is reported once (the next write replaces it with a 0600
one). One state file serves one participant at a time.
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, Optional, Union

from ._logging import get_logger
from .exceptions import ParticipantInit, ParticipantRestore
from .protocol.saved import StateInput, dump_state, load_state
from .protocol.state import ParticipantState, PostMessage, Request

__all__ = ["Persistence", "StateFile", "StatePath", "after_tick", "before_request", "open_state"]

_log = get_logger("state_file")

#: Where a participant keeps its state: a path, as a string or a path-like object.
StatePath = Union[str, os.PathLike[str]]

#: Paths whose loose permissions were already reported (once per process).
_warned_permissions: set[Path] = set()
_warned_lock = threading.Lock()


class StateFile:
    """One state file: atomic replacement, private mode, and reading with clear errors."""

    def __init__(self, path: StatePath) -> None:
        self.path = Path(os.fspath(path)).absolute()
        self._tmp_prefix = f".{self.path.name}."

    def _temporaries(self) -> list[Path]:
        try:
            return [
                p
                for p in self.path.parent.iterdir()
                if p.name.startswith(self._tmp_prefix) and p.name.endswith(".tmp")
            ]
        except OSError:
            return []

    def remove_leftovers(self) -> int:
        """Remove temporary files a killed writer left behind; how many there were."""
        removed = 0
        for tmp in self._temporaries():
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
        return removed

    def read(self) -> Optional[bytes]:
        """The file's bytes, or None if there is no file; a loose mode is reported once."""
        try:
            with open(self.path, "rb") as file:
                self._check_mode(os.fstat(file.fileno()).st_mode)
                return file.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ParticipantRestore(
                f"failed to restore participant: cannot read the state file {self.path}: {e}"
            ) from None

    def _check_mode(self, mode: int) -> None:
        if os.name != "posix" or not mode & (stat.S_IRWXG | stat.S_IRWXO):
            return
        with _warned_lock:
            if self.path in _warned_permissions:
                return
            _warned_permissions.add(self.path)
        _log.warning(
            "the state file %s has mode %04o: it holds the participant's private signing key and"
            " should be readable by its owner only (0600); it is rewritten with mode 0600 at the"
            " next step",
            self.path,
            stat.S_IMODE(mode),
        )

    def write(self, raw: bytes) -> None:
        """Replace the file's content with ``raw`` atomically and durably (OSError on failure)."""
        directory = self.path.parent
        tmp = directory / f"{self._tmp_prefix}{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise
        if os.name == "posix":
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


class Persistence:
    """Keeps a :class:`StateFile` in step with a participant's state; thread-safe.

    ``writes``, ``bytes_written`` and ``seconds`` count what the records cost (the benchmark
    reads them); ``skipped`` counts records that found the state unchanged.
    """

    def __init__(self, file: StateFile, written: Optional[ParticipantState] = None) -> None:
        self.file = file
        self._written = written
        self._lock = threading.Lock()
        self._failing = False
        self.writes = 0
        self.skipped = 0
        self.bytes_written = 0
        self.seconds = 0.0

    @property
    def path(self) -> Path:
        return self.file.path

    def attach(self, state: ParticipantState, from_file: bool) -> None:
        """The participant's first state: already on file if it was read from it, else
        written now (a file that cannot be created is an error, not a warning)."""
        if from_file:
            self._written = state
            return
        try:
            self._write(state)
        except OSError as e:
            raise ParticipantInit(
                f"failed to initialize participant: cannot write the state file {self.path}: {e}"
            ) from None

    def record(self, current: Callable[[], ParticipantState]) -> bool:
        """Write the state ``current()`` returns if it is not the one on file; False if the
        write failed (logged once until a write succeeds; the next record tries again).

        ``current`` is called under this object's lock, so that of two concurrent records
        the later one writes the later state.
        """
        with self._lock:
            state = current()
            if state is self._written:
                self.skipped += 1
                return True
            try:
                self._write(state)
            except OSError as e:
                if not self._failing:
                    self._failing = True
                    _log.error(
                        "cannot write the state file %s (%s): a kill now would resume from an"
                        " older state; messages are held back until it can be written",
                        self.path,
                        e,
                    )
                return False
            if self._failing:
                self._failing = False
                _log.warning("the state file %s is written again", self.path)
            return True

    def _write(self, state: ParticipantState) -> None:
        start = time.perf_counter()
        raw = dump_state(state)
        self.file.write(raw)
        self.seconds += time.perf_counter() - start
        self.writes += 1
        self.bytes_written += len(raw)
        self._written = state


def open_state(
    path: StatePath, state: Optional[StateInput]
) -> tuple[Persistence, Optional[StateInput], bool]:
    """The persistence of ``path``, the state to start from, and whether it came from the file.

    If the file exists its state is used (``state`` must then be None); else ``state`` (None
    for a new participant), which becomes the file's first content once the participant is
    built (:meth:`Persistence.attach`).
    """
    file = StateFile(path)
    leftovers = file.remove_leftovers()
    if leftovers:
        _log.info(
            "removed %d temporary file(s) of an interrupted write of %s", leftovers, file.path
        )
    raw = file.read()
    if raw is None:
        return Persistence(file), state, False
    if state is not None:
        raise ParticipantRestore(
            f"failed to restore participant: both state= and state_file= were given, and the"
            f" state file {file.path} exists: pass only one (the file is the participant's"
            " latest state)"
        )
    try:
        load_state(raw)
    except ParticipantRestore as e:
        reason = str(e).removeprefix("failed to restore participant: ")
        raise ParticipantRestore(
            f"failed to restore participant from the state file {file.path}: {reason}. The file"
            " was left as it is; it holds the participant's identity, so nothing starts afresh"
            " on its own: restore it from a backup, or move it away to start a new participant"
            " (new keys)"
        ) from None
    return Persistence(file), raw, True


class _AfterTick:
    __slots__ = ("_current", "_persistence")

    def __init__(
        self, persistence: Optional[Persistence], current: Callable[[], ParticipantState]
    ) -> None:
        self._persistence = persistence
        self._current = current

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._persistence is not None:
            self._persistence.record(self._current)


def after_tick(
    persistence: Optional[Persistence], current: Callable[[], ParticipantState]
) -> _AfterTick:
    """A context around a tick that records the state it leaves (if it changed)."""
    return _AfterTick(persistence, current)


def before_request(
    persistence: Optional[Persistence], state: ParticipantState, request: Request
) -> bool:
    """Whether ``request`` may go out: a POST only once the file holds the state it comes from."""
    if persistence is None or not isinstance(request, PostMessage):
        return True
    return persistence.record(lambda: state)
