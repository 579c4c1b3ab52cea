"""The asyncio API: a participant for programs built on an event loop.

::

    async with xaynet_sdk.aio.connect(url, scalar=0.5) as participant:
        async for global_model in participant.global_models():
            weights = await train(global_model)          # None before the first round
            await participant.set_local_model(weights)   # taken by the next update task
    state = participant.saved_state                      # for connect(url, state=state)

It runs the same driver as the other APIs (:class:`~xaynet_sdk.driver.Participant`): a worker
thread ticks it with the original's poll backoff and, after each new round started, fetches
the global model; what the thread learns reaches the event loop through
``loop.call_soon_threadsafe``. Nothing that waits for the network or masks a model runs on
the event loop: the awaitable methods hand such work to threads.

Leaving the ``async with`` block, normally, by an exception, or because the task was
cancelled, stops the participant and saves its state (:attr:`Participant.saved_state`);
:meth:`Participant.stop` does the same and returns it. A restored participant takes part in
the round it was saved in, as with the other APIs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional

from ._logging import get_logger, init_logging
from .driver import GlobalModel, LocalModelInput, OptionFields, Options, StateInput, TickLoop
from .driver import Participant as Driver
from .exceptions import (
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    UninitializedParticipant,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Participant", "connect"]

init_logging()
LOG = get_logger("participant.aio")


class Participant:
    """An asyncio participant; get one from :func:`connect`, start it with ``async with``.

    The participant belongs to the event loop that started it: call its methods from there.
    """

    def __init__(self, driver: Driver, *, numpy: bool) -> None:
        self._driver = driver
        self._numpy = numpy
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._tick_loop = TickLoop(driver, self._on_tick, self._on_error)
        self._fetch_again = False
        # The latest new round's global model, numbered; waiters want a later number.
        self._serial = 0
        self._model: Optional[GlobalModel] = None
        self._consumed = 0
        self._waiters: set[asyncio.Future[None]] = set()
        self._failure: Optional[BaseException] = None
        self._saved: Optional[list[int]] = None
        self._stopping: Optional[asyncio.Future[list[int]]] = None

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> Participant:
        """Start the worker thread (``async with`` does it)."""
        if self._saved is not None or self._stopping is not None:
            raise UninitializedParticipant(
                "start() on a participant that was stopped: connect(url, state=...) restores it"
            )
        if self._thread is not None:
            raise RuntimeError("the participant was started already")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._tick_loop.run, daemon=True, name="xaynet-aio")
        self._thread.start()
        return self

    async def __aenter__(self) -> Participant:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.stop()

    async def stop(self) -> list[int]:
        """Stop the participant; return its saved state (a list of ints).

        Never waits for the network. A local model set before is part of the state. Calling
        it again returns the same state. The state holds the private signing key: store it
        securely.
        """
        if self._saved is not None:
            return list(self._saved)
        if self._stopping is None:
            loop = asyncio.get_running_loop()
            self._tick_loop.stop()
            self._stopping = loop.run_in_executor(None, self._save)
            self._wake()  # waiting tasks see the participant stopped
        # Shielded: a second cancellation while saving still leaves saved_state set.
        state = await asyncio.shield(self._stopping)
        return list(state)

    def _save(self) -> list[int]:
        state = self._driver.save()
        self._saved = state
        LOG.debug("participant stopped")
        if self._loop is not None:
            self._call_in_loop(self._wake)
        return state

    @property
    def saved_state(self) -> Optional[list[int]]:
        """The state saved when the participant stopped (None while it runs)."""
        return None if self._saved is None else list(self._saved)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._saved is None and self._failure is None

    # -- models -----------------------------------------------------------------------------
    async def next_global_model(self) -> Optional[GlobalModel]:
        """Wait for the next round and return its global model (None: there is none yet).

        "Next" is relative to the last one this method returned: a round that started while
        nobody waited is returned at once; of several, only the latest. A numpy array of the
        round's data type (``numpy=True``, the default) or a list.

        Raises :class:`UninitializedParticipant` once the participant stopped, and what
        ended its thread if that failed.
        """
        while True:
            self._check_alive()
            if self._serial > self._consumed:
                self._consumed = self._serial
                return self._model
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await waiter
            finally:
                self._waiters.discard(waiter)

    async def global_models(self) -> AsyncIterator[Optional[GlobalModel]]:
        """Each new round's global model, as :meth:`next_global_model`; ends at ``stop()``."""
        while True:
            try:
                model = await self.next_global_model()
            except UninitializedParticipant:
                return
            yield model

    async def set_local_model(self, local_model: LocalModelInput) -> None:
        """Hand a local model (a list, tuple or 1-d numpy array) to the next update task.

        A model set before is replaced. Raises :class:`LocalModelLengthMisMatch` or
        :class:`LocalModelDataTypeMisMatch` (the original's errors) and ``TypeError``, as
        ``AsyncParticipant.set_local_model``.
        """
        self._check_alive()
        await asyncio.get_running_loop().run_in_executor(None, self._driver.set_model, local_model)

    @property
    def update_task_waiting(self) -> bool:
        """True while this round's update task waits for a local model."""
        return not self._driver.closed and self._driver.should_set_model()

    @property
    def driver(self) -> Driver:
        """The protocol participant underneath (for diagnostics: phase, round, key)."""
        return self._driver

    # -- the worker thread ------------------------------------------------------------------
    def _on_tick(self) -> None:
        """After each tick: fetch the global model of a new round (again, until it comes)."""
        if self._driver.new_global_model() or self._fetch_again:
            self._fetch_again = not self._fetch(warn=not self._fetch_again)

    def _on_error(self, err: Exception) -> None:
        self._call_in_loop(self._fail, err)

    def _fetch(self, warn: bool) -> bool:
        """Fetch the new round's global model and hand it to the loop; False to retry."""
        try:
            model = self._driver.global_model(numpy=self._numpy)
        except (GlobalModelUnavailable, GlobalModelDataTypeMisMatch) as err:
            # (stop() cuts a fetch in flight: not a coordinator problem)
            log = LOG.warning if warn and not self._tick_loop.stopped else LOG.debug
            log("failed to get global model: %s (retrying every tick)", err)
            return False
        self._call_in_loop(self._deliver, model)
        return True

    def _call_in_loop(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            self._tick_loop.stop()

    # -- in the loop ------------------------------------------------------------------------
    def _deliver(self, model: Optional[GlobalModel]) -> None:
        self._serial += 1
        self._model = model
        self._wake()

    def _fail(self, err: BaseException) -> None:
        self._failure = err
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _check_alive(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._saved is not None or self._stopping is not None:
            raise UninitializedParticipant(
                "the participant was stopped: connect(url, state=participant.saved_state)"
                " restores it"
            )
        if self._thread is None:
            raise RuntimeError("the participant is not started: use async with, or start()")


def connect(
    url: str,
    *,
    state: Optional[StateInput] = None,
    scalar: float = 1.0,
    numpy: bool = True,
    **options: "Unpack[OptionFields]",
) -> Participant:
    """An asyncio participant of the coordinator at ``url``, started by ``async with``.

    The arguments are those of :func:`~xaynet_sdk.spawn_async_participant` (``state``
    restores a participant saved by any of the APIs, or by the original; the connection
    options are the fields of :class:`~xaynet_sdk.driver.Options`), except that global
    models are numpy arrays by default. Nothing is sent before the participant starts.

    Raises :class:`ParticipantInit` or :class:`ParticipantRestore` at once, as the others.
    """
    driver = Driver(url, scalar, state, options=Options(**options))
    return Participant(driver, numpy=numpy)
