"""The pull API: :func:`spawn_async_participant` ticks in a thread, the caller sets and gets models.

As in the original: the thread only runs the protocol and sets the returned
``threading.Event`` when a new round started (a new global model may be there);
:meth:`AsyncParticipant.get_global_model` clears it and fetches the model;
:meth:`AsyncParticipant.set_local_model` caches a local model, which the next update task
takes (and so empties the cache); :meth:`AsyncParticipant.stop` returns the saved state.
"""

from __future__ import annotations

import threading
from typing import Optional

from ._logging import get_logger, init_logging
from .core import GlobalModel, Participant
from .exceptions import UninitializedParticipant
from .participant import new_backoff
from .protocol.local_model import LocalModelInput
from .protocol.saved import StateInput
from .state_file import StatePath
from .transport import DEFAULT_TIMEOUT, Cert, Timeout, TransportLike, Verify

__all__ = ["AsyncParticipant", "spawn_async_participant"]

init_logging()
LOG = get_logger("participant")


class AsyncParticipant(threading.Thread):
    """A participant thread whose models are set and fetched by the caller."""

    def __init__(
        self,
        coordinator_url: str,
        notifier: threading.Event,
        state: Optional[StateInput] = None,
        scalar: float = 1.0,
        *,
        numpy: bool = False,
        max_message_size: Optional[int] = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        verify: Verify = True,
        cert: Cert = None,
        transport: Optional[TransportLike] = None,
        state_file: Optional[StatePath] = None,
    ) -> None:
        self._xaynet_participant = Participant(
            coordinator_url,
            scalar,
            state,
            max_message_size=max_message_size,
            timeout=timeout,
            verify=verify,
            cert=cert,
            transport=transport,
            state_file=state_file,
        )
        self._exit_event = threading.Event()
        self._poll_period = new_backoff()
        self._notifier = notifier
        self._numpy = bool(numpy)
        super().__init__(daemon=True, name="xaynet-async-participant")

    def run(self) -> None:
        try:
            self._run()
        except UninitializedParticipant:
            pass  # stopped while a tick was in flight
        except Exception as err:  # noqa: BLE001
            LOG.error("unrecoverable error, participant shut down: %s", err, exc_info=err)
        finally:
            self._exit_event.set()

    def _notify(self) -> None:
        if not self._notifier.is_set():
            LOG.debug("notify that a new global model is available")
            self._notifier.set()

    def _run(self) -> None:
        participant = self._xaynet_participant
        while not self._exit_event.is_set():
            participant.tick()
            new_global_model = participant.new_global_model()
            made_progress = participant.made_progress()
            if self._exit_event.is_set():
                break
            if new_global_model:
                self._notify()
            if made_progress:
                self._poll_period.reset()
            self._exit_event.wait(timeout=self._poll_period.duration())

    def get_global_model(self) -> Optional[GlobalModel]:
        """Fetch the current global model; None if there is none yet.

        Clears the notifier first. The model is a list of floats or ints in the round's
        data type (a numpy array if spawned with ``numpy=True``).

        Raises:
            GlobalModelUnavailable: The model could not be fetched (the coordinator is
                unreachable, answered an error, or sent something that is not a model).
            GlobalModelDataTypeMisMatch: A weight does not convert to the round's data type.
        """
        LOG.debug("get global model")
        self._notifier.clear()
        return self._xaynet_participant.global_model(numpy=self._numpy)

    def set_local_model(self, local_model: LocalModelInput) -> None:
        """Cache a local model (a list, tuple or 1-d numpy array) for the next update task.

        A model already cached is replaced. The next update task takes the cached model (the
        cache is then empty); an update task that finds the cache empty waits for a model
        until the round ends.

        Raises:
            LocalModelLengthMisMatch: The length differs from the round's model length.
            LocalModelDataTypeMisMatch: A value does not fit the round's data type (not a
                number, NaN or infinite, out of range).
            TypeError: The model is not a list, a tuple or a 1-d numpy array.
        """
        LOG.debug("set local model in model store")
        self._xaynet_participant.set_model(local_model)

    def stop(self) -> list[int]:
        """Stop the participant and return its saved state (a list of ints).

        Every later call raises :class:`UninitializedParticipant`.

        Note:
            The state contains the participant's **private signing key** unencrypted: store
            it securely (it is the participant's identity).
        """
        LOG.debug("stop participant")
        self._exit_event.set()
        self._notifier.clear()
        return self._xaynet_participant.save()

    @property
    def xaynet_participant(self) -> Participant:
        """The underlying protocol participant (for diagnostics)."""
        return self._xaynet_participant


def spawn_async_participant(
    coordinator_url: str,
    state: Optional[StateInput] = None,
    scalar: float = 1.0,
    *,
    numpy: bool = False,
    max_message_size: Optional[int] = None,
    timeout: Timeout = DEFAULT_TIMEOUT,
    verify: Verify = True,
    cert: Cert = None,
    state_file: Optional[StatePath] = None,
) -> tuple[AsyncParticipant, threading.Event]:
    """Start an :class:`AsyncParticipant`; return it and its new-global-model notifier.

    Args and raises as :func:`~xaynet_sdk.participant.spawn_participant` (without the
    class, its args and kwargs).
    """
    notifier = threading.Event()
    participant = AsyncParticipant(
        coordinator_url,
        notifier,
        state,
        scalar,
        numpy=numpy,
        max_message_size=max_message_size,
        timeout=timeout,
        verify=verify,
        cert=cert,
        state_file=state_file,
    )
    participant.start()
    return participant, notifier
