"""The callback API: subclass :class:`ParticipantABC`, run it with :func:`spawn_participant`.

The same API as the original ``xaynet_sdk`` 0.1.0, and the same behaviour: a daemon thread
ticks the protocol with the original's poll backoff (justbackoff, 0.1 s growing by 1.2x
up to 10 s, reset after progress); after each tick it fetches the global model when a new
round started (or the last fetch failed) and calls ``deserialize_training_input`` and
``on_new_global_model``; when an update task waits for a local model and
``participate_in_update_task()`` agrees, it calls ``train_round`` and
``serialize_training_result`` and hands the result to the protocol. ``stop()`` returns the
saved state, which ``spawn_participant(..., state=...)`` resumes.

Fixed here (docs/PROTOCOL.md 12.6): ``kwargs`` reach the constructor as keyword arguments; an
exception in the constructor reaches the caller of ``spawn_participant``; a local model that
is refused (length or data type) does not make ``train_round`` run again on every tick, only
in the next round; exceptions in callbacks are logged with their traceback and do not kill
the participant; ``stop()`` never races a tick; no request can hang the thread.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from ._logging import get_logger, init_logging
from .driver import GlobalModel, OptionFields, Options, Participant, StateInput, TickLoop
from .exceptions import (
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
    UninitializedParticipant,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "InternalParticipant",
    "ParticipantABC",
    "TrainingInput",
    "TrainingResult",
    "spawn_participant",
]

init_logging()
LOG = get_logger("participant")

#: The names of the original's type variables (the callbacks take and return any type).
TrainingResult = TypeVar("TrainingResult")
TrainingInput = TypeVar("TrainingInput")


class ParticipantABC(ABC):
    """What a federated-learning participant implements; see each method.

    The class is instantiated in the participant's thread (ML frameworks often care), by
    :func:`spawn_participant`, with the ``args`` and ``kwargs`` given there.
    """

    @abstractmethod
    def train_round(self, training_input: Optional[Any]) -> Any:
        """Train on the (deserialized) global model and return the local model.

        ``training_input`` is None when there is no global model yet (usually the first
        round): initialize the weights then. Called only in rounds where this participant
        was selected for the update task and :meth:`participate_in_update_task` is true.
        """
        raise NotImplementedError()

    @abstractmethod
    def serialize_training_result(self, training_result: Any) -> Any:
        """The result of :meth:`train_round` as a list (or 1-d numpy array) of numbers.

        The values must fit the data type of the coordinator's mask configuration (floats
        for F32/F64, ints for I32/I64) and the list must have the round's model length.
        """
        raise NotImplementedError()

    @abstractmethod
    def deserialize_training_input(self, global_model: Any) -> Any:
        """The global model (a list of floats or ints; a numpy array if the participant was
        spawned with ``numpy=True``) in the form :meth:`train_round` wants. Not called when
        there is no global model."""
        raise NotImplementedError()

    def participate_in_update_task(self) -> bool:
        """Whether to train when selected for the update task (default True)."""
        return True

    def on_new_global_model(self, global_model: Optional[Any]) -> None:  # noqa: B027
        """Called after each new round's global model fetch (the deserialized model, or None
        when there is none yet). It fires on every new round, even if the model is unchanged."""

    def on_stop(self) -> None:  # noqa: B027
        """Called by :meth:`InternalParticipant.stop` (in the caller's thread) after saving."""


class InternalParticipant(threading.Thread):
    """The thread that runs a :class:`ParticipantABC`; returned by :func:`spawn_participant`.

    The protocol participant is built in the caller's thread (so ``ParticipantInit`` and
    ``ParticipantRestore`` reach the caller); the user class is built in this thread. The
    connection options come as in :class:`~xaynet_sdk.driver.Participant`.
    """

    def __init__(
        self,
        coordinator_url: str,
        participant: Callable[..., ParticipantABC],
        p_args: Any = (),
        p_kwargs: Optional[dict[str, Any]] = None,
        state: Optional[StateInput] = None,
        scalar: float = 1.0,
        *,
        numpy: bool = False,
        options: Optional[Options] = None,
        **fields: "Unpack[OptionFields]",
    ) -> None:
        if not callable(participant):
            raise TypeError(
                "participant must be a class implementing ParticipantABC (the class itself,"
                f" not an instance), got {type(participant).__name__}"
            )
        self._xaynet_participant = Participant(
            coordinator_url, scalar, state, options=options, **fields
        )
        self._loop = TickLoop(self._xaynet_participant, self._after_tick)
        self._participant_class = participant
        self._participant: Optional[ParticipantABC] = None
        self._p_args = tuple(p_args)
        self._p_kwargs = dict(p_kwargs or {})
        self._numpy = bool(numpy)

        self._ready = threading.Event()
        self._init_error: Optional[BaseException] = None
        self._report_init_error = True

        # global model cache
        self._global_model: Optional[Any] = None
        self._error_on_fetch_global_model = False
        self._train_failed_round: Optional[int] = None

        # Held while user callbacks run; stop() takes it before saving, so a model being
        # trained is cached before the state is saved. Reentrant: stop() may be called from
        # inside a callback.
        self._callback_lock = threading.RLock()

        super().__init__(daemon=True, name="xaynet-participant")

    # -- thread -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._participant = self._participant_class(*self._p_args, **self._p_kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to spawn_participant's caller
            self._init_error = err
            self._loop.stop()
            if self._report_init_error:
                LOG.error(
                    "the participant class raised in its constructor, participant not started:"
                    " %s: %s",
                    type(err).__name__,
                    err,
                    exc_info=err,
                )
            return
        finally:
            self._ready.set()
        self._loop.run()

    def _after_tick(self) -> None:
        participant = self._xaynet_participant
        if participant.new_global_model() or self._error_on_fetch_global_model:
            self._fetch_global_model()
        if (
            participant.should_set_model()
            and not self._error_on_fetch_global_model
            and self._train_failed_round != participant.round_serial
        ):
            with self._callback_lock:
                if self._loop.stopped:
                    return
                assert self._participant is not None
                wants = self._participant.participate_in_update_task
                if self._call("participate_in_update_task", wants):
                    self._train()

    # -- steps --------------------------------------------------------------------------------
    def _call(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run a user callback; an exception is logged with its traceback and gives None."""
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - user code must not kill the participant
            LOG.error("%s raised %s: %s", name, type(err).__name__, err, exc_info=err)
            return None

    def _fetch_global_model(self) -> None:
        LOG.debug("fetch global model")
        try:
            global_model = self._xaynet_participant.global_model(numpy=self._numpy)
        except (GlobalModelUnavailable, GlobalModelDataTypeMisMatch) as err:
            if not self._error_on_fetch_global_model and not self._loop.stopped:
                # (stop() cuts a fetch in flight: not a coordinator problem)
                LOG.warning("failed to get global model: %s (retrying every tick)", err)
            self._error_on_fetch_global_model = True
            return
        self._error_on_fetch_global_model = False
        with self._callback_lock:
            if self._loop.stopped:
                return
            assert self._participant is not None
            user = self._participant
            if global_model is not None:
                ok, value = self._deserialize(user, global_model)
                if not ok:
                    return
                self._global_model = value
            else:
                self._global_model = None
            self._call("on_new_global_model", lambda: user.on_new_global_model(self._global_model))

    @staticmethod
    def _deserialize(user: ParticipantABC, model: GlobalModel) -> tuple[bool, Any]:
        try:
            return True, user.deserialize_training_input(model)
        except Exception as err:  # noqa: BLE001
            LOG.error(
                "deserialize_training_input raised %s: %s; keeping the previous global model",
                type(err).__name__,
                err,
                exc_info=err,
            )
            return False, None

    def _train(self) -> None:
        LOG.debug("train model")
        participant = self._xaynet_participant
        round_serial = participant.round_serial
        assert self._participant is not None
        user = self._participant
        try:
            data = user.train_round(self._global_model)
            local_model = user.serialize_training_result(data)
        except Exception as err:  # noqa: BLE001
            LOG.error(
                "train_round/serialize_training_result raised %s: %s; no update this round",
                type(err).__name__,
                err,
                exc_info=err,
            )
            self._train_failed_round = round_serial
            return
        try:
            participant.set_model(local_model)
        except (LocalModelLengthMisMatch, LocalModelDataTypeMisMatch, TypeError) as err:
            LOG.warning(
                "failed to set local model: %s; train_round is called again next round", err
            )
            self._train_failed_round = round_serial
        except UninitializedParticipant:
            pass  # stop() was called from inside train_round

    # -- public -------------------------------------------------------------------------------
    def stop(self) -> list[int]:
        """Stop the participant and return its saved state (a list of ints).

        Waits for a running callback (such as ``train_round``) to finish, so that its local
        model is part of the state; never waits for the network. Then calls ``on_stop()``.
        Every later call raises :class:`UninitializedParticipant`.

        Note:
            The state contains the participant's **private signing key** unencrypted: store
            it securely (it is the participant's identity).
        """
        LOG.debug("stopping participant")
        self._loop.stop()
        with self._callback_lock:
            state = self._xaynet_participant.save()
        LOG.debug("participant stopped")
        if self._participant is not None:
            self._participant.on_stop()
        return state

    @property
    def participant(self) -> Optional[ParticipantABC]:
        """The instance of the user class (None until it was constructed)."""
        return self._participant

    @property
    def xaynet_participant(self) -> Participant:
        """The underlying protocol participant (for diagnostics)."""
        return self._xaynet_participant


def spawn_participant(
    coordinator_url: str,
    participant: Callable[..., ParticipantABC],
    args: Any = (),
    kwargs: Optional[dict[str, Any]] = None,
    state: Optional[StateInput] = None,
    scalar: float = 1.0,
    *,
    numpy: bool = False,
    **options: "Unpack[OptionFields]",
) -> InternalParticipant:
    """Start a participant thread running ``participant(*args, **kwargs)``; return its handle.

    With ``state`` (from ``stop()``, or from the original participant) the participant is
    restored: same keys, same round progress while that round runs, its cached local model;
    ``scalar`` and ``max_message_size`` then come from the state.

    Args:
        coordinator_url: The coordinator's base URL (``http://`` or ``https://``).
        participant: A class implementing :class:`ParticipantABC`.
        args: Positional arguments of the class's constructor.
        kwargs: Keyword arguments of the class's constructor.
        state: A saved state to resume. Defaults to None (a new participant, new keys).
        scalar: The weight of this participant's updates in the aggregation (for example
            its number of training samples over the total): a finite number above 0.
            Defaults to 1.0.
        numpy: Give the global model to ``deserialize_training_input`` as a numpy array
            instead of a list. Defaults to False (as the original).
        max_message_size: The largest sealed message in bytes; larger messages are sent in
            chunks. None (the default) sends every message whole, as the original Python
            participant does; at least 194.
        timeout: Seconds, or ``(connect, read)`` seconds, for every request.
        verify: Verify the coordinator's TLS certificate (True), not (False), or against this
            CA bundle (a path).
        cert: A client certificate for TLS: a PEM path, or ``(cert, key)`` paths.
        state_file: A path. If the file exists the participant resumes from it (``state``
            must then be None), else it starts from ``state`` (or fresh) and creates it
            (mode 0600: it holds the private key). The file is kept up to date at every step,
            atomically, so a participant killed at any moment resumes from it with its keys
            and round progress and never sends two different messages in one round. See
            :mod:`xaynet_sdk.state_file`.
        deadline: Seconds a whole request may take, response included (default 120, or the
            timeouts' sum if larger); a coordinator that drips its answer is cut there.
        max_body: The ceiling in bytes of any response body (default 256 MiB).
        **options: The options above from ``max_message_size`` on are the fields of
            :class:`~xaynet_sdk.driver.Options`, built once here and shared by the
            participant and its transport.

    Raises:
        ParticipantInit: The URL, the scalar or an option is invalid.
        ParticipantRestore: The state cannot be restored (it says why), or the state file
            exists but is unusable (it names the file).
        Exception: Whatever the class's constructor raised (it runs in the new thread; this
            call waits for it).
    """
    internal = InternalParticipant(
        coordinator_url,
        participant,
        args,
        kwargs,
        state,
        scalar,
        numpy=numpy,
        options=Options(**options),
    )
    internal._report_init_error = False
    internal.start()
    internal._ready.wait()
    if internal._init_error is not None:
        internal.join()
        raise internal._init_error
    return internal
