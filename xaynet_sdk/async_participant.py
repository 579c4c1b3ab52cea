"""The pull API: :func:`spawn_async_participant` ticks in a thread, the caller sets and gets models.

As in the original: the thread only runs the protocol and sets the returned
``threading.Event`` when a new round started (a new global model may be there);
:meth:`AsyncParticipant.get_global_model` clears it and fetches the model;
:meth:`AsyncParticipant.set_local_model` caches a local model, which the next update task
takes (and so empties the cache); :meth:`AsyncParticipant.stop` returns the saved state.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional

from ._logging import get_logger, init_logging
from .driver import (
    GlobalModel,
    LocalModelInput,
    OptionFields,
    Options,
    Participant,
    StateInput,
    TickLoop,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AsyncParticipant", "spawn_async_participant"]

init_logging()
LOG = get_logger("participant")


class AsyncParticipant(threading.Thread):
    """A participant thread whose models are set and fetched by the caller.

    The connection options come as in :class:`~xaynet_sdk.driver.Participant`.
    """

    def __init__(
        self,
        coordinator_url: str,
        notifier: threading.Event,
        state: Optional[StateInput] = None,
        scalar: float = 1.0,
        *,
        numpy: bool = False,
        options: Optional[Options] = None,
        **fields: "Unpack[OptionFields]",
    ) -> None:
        self._xaynet_participant = Participant(
            coordinator_url, scalar, state, options=options, **fields
        )
        self._loop = TickLoop(self._xaynet_participant, self._after_tick)
        self._notifier = notifier
        self._numpy = bool(numpy)
        super().__init__(daemon=True, name="xaynet-async-participant")

    def run(self) -> None:
        self._loop.run()

    def _after_tick(self) -> None:
        if self._xaynet_participant.new_global_model() and not self._notifier.is_set():
            LOG.debug("notify that a new global model is available")
            self._notifier.set()

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
        self._loop.stop()
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
    **options: "Unpack[OptionFields]",
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
        options=Options(**options),
    )
    participant.start()
    return participant, notifier
