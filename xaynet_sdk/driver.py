"""The participant's I/O driver: the state machine run over the transport, tick by tick.

Layer: above :mod:`.protocol` (pure steps, no I/O) and :mod:`.transport` (HTTP), below the
public APIs (:mod:`.participant`, :mod:`.async_participant`), which both run on what is here:

* :class:`Options`: the connection options (``max_message_size``, ``timeout``, ``verify``,
  ``cert``, ``transport``), one frozen value built once by ``spawn_*``. A new option is one
  field of :class:`Options`, one key of :class:`OptionFields` and, if the transport takes
  it, one argument in :meth:`Options.connect`; every API then accepts it as a keyword.
* :class:`Participant`: one tick at a time (``GET /params``, then at most one request the
  phase needs), turning the state machine's events into the original's flags;
* :class:`TickLoop`: the poll loop of both thread APIs, with the original's backoff
  (:func:`new_backoff`), stopped by :meth:`TickLoop.stop`.

:class:`Participant` is this package's version of the original's low-level
``xaynet_sdk.xaynet_sdk.Participant`` (the Rust participant behind PyO3): ``tick()``,
``set_model()``, ``made_progress()``, ``should_set_model()``, ``task()``,
``new_global_model()``, ``global_model()`` and ``save()``, with the same meaning, flags and
exceptions (docs/PROTOCOL.md 12.3 and 12.5). The threaded wrappers
(:class:`~xaynet_sdk.participant.InternalParticipant`,
:class:`~xaynet_sdk.async_participant.AsyncParticipant`) are built on it, as the original's
are on the Rust one.

Differences that matter to callers: every request has a timeout, so ``tick()`` always
returns; nothing holds the GIL while waiting for the network; ``save()`` may be called from
another thread while a tick is in flight (that tick is then abandoned, and the state saved is
the one before it); numpy arrays are accepted and, on request, returned.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Optional, TypedDict, Union

import numpy as np
import numpy.typing as npt
from justbackoff import Backoff

from ._logging import get_logger
from .codec.bincode import RoundParameters
from .codec.crypto import SigningKeyPair
from .codec.errors import CodecError
from .codec.multipart import MIN_USABLE_MESSAGE_SIZE
from .exceptions import (
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    ParticipantInit,
    ParticipantRestore,
    UninitializedParticipant,
)
from .mask.model import GlobalModelError, decode_global_model
from .protocol import machine
from .protocol.local_model import LocalModelInput, convert_local_model, model_to_python
from .protocol.saved import StateInput, dump_state, load_state
from .protocol.state import (
    Event,
    FetchSeeds,
    FetchSums,
    ParticipantState,
    PostMessage,
    Request,
    Response,
    Transition,
)
from .state_file import StatePath, after_tick, before_request, open_state
from .transport import (
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEOUT,
    Cert,
    InvalidUrl,
    Timeout,
    Transport,
    TransportError,
    TransportLike,
    Verify,
    check_url,
)

if TYPE_CHECKING:  # only annotations use it: no run-time dependency on typing_extensions
    from typing_extensions import Unpack

__all__ = [
    "GlobalModel",
    "LocalModelInput",
    "OptionFields",
    "Options",
    "Participant",
    "StateInput",
    "Task",
    "TickLoop",
    "check_max_message_size",
    "new_backoff",
]

_log = get_logger("participant")

GlobalModel = Union[list[Any], npt.NDArray[Any]]


# More local sub-steps than a phase has (a guard, not a limit anything reaches).
_LOCAL_STEPS_PER_TICK = 16


class OptionFields(TypedDict, total=False):
    """The fields of :class:`Options` as keyword arguments (``**options`` of the APIs)."""

    max_message_size: Optional[int]
    timeout: Timeout
    verify: Verify
    cert: Cert
    transport: Optional[TransportLike]
    state_file: Optional[StatePath]
    deadline: Optional[float]
    max_body: int


@dataclass(frozen=True)
class Options:
    """The options of a participant (its connection, and its state file), checked when the
    participant is built.

    ``max_message_size``: bytes of a sealed message; None sends every message whole, a
    number splits larger messages into chunks as the Rust participant does (ignored on
    restore: the state has its own). ``timeout``: seconds, or ``(connect, read)``, for every
    request. ``verify``: check the coordinator's TLS certificate (True), not (False), or
    against this CA bundle (a path). ``cert``: a client certificate, a PEM path or
    ``(cert, key)`` paths. ``transport``: a replacement for the HTTP transport (tests).
    ``state_file``: a path; the participant resumes from it if it exists (``state`` must then
    be None) and keeps it up to date at every step (:mod:`xaynet_sdk.state_file`).
    ``deadline``: seconds a whole request may take, response included (None:
    :data:`~xaynet_sdk.transport.DEFAULT_DEADLINE`, or the timeouts' sum if larger).
    ``max_body``: the ceiling in bytes of any response body, whatever the round allows
    (:data:`~xaynet_sdk.transport.DEFAULT_MAX_BODY`; raise it for models of millions of weights).
    """

    max_message_size: Optional[int] = None
    timeout: Timeout = DEFAULT_TIMEOUT
    verify: Verify = True
    cert: Cert = None
    transport: Optional[TransportLike] = None
    state_file: Optional[StatePath] = None
    deadline: Optional[float] = None
    max_body: int = DEFAULT_MAX_BODY

    @classmethod
    def of(cls, options: "Optional[Options]", fields: OptionFields) -> "Options":
        """``options`` (default: all defaults) with ``fields`` replaced."""
        base = cls() if options is None else options
        return replace(base, **fields) if fields else base

    def connect(self, url: str) -> TransportLike:
        """The transport to ``url``: the given one, else HTTP(S) with these options.

        Raises :class:`InvalidUrl`, ``TypeError`` or ``ValueError`` for unusable options."""
        if self.transport is not None:
            return self.transport
        return Transport(
            url,
            timeout=self.timeout,
            deadline=self.deadline,
            max_body=self.max_body,
            verify=self.verify,
            cert=self.cert,
        )


class Task(enum.IntEnum):
    """The participant's task in the current round, as ``task()`` returns it (0, 1, 2)."""

    NONE = 0
    SUM = 1
    UPDATE = 2


def check_max_message_size(value: object) -> Optional[int]:
    """None, or an int large enough to carry a chunk; else ``ValueError`` saying the minimum."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_message_size must be an int (bytes) or None, got {value!r}")
    if value < MIN_USABLE_MESSAGE_SIZE:
        raise ValueError(
            f"max_message_size {value} is too small: a sealed message of at most {value} bytes"
            f" cannot carry a chunk (136-byte header, 48-byte seal, 8-byte chunk header). Use at"
            f" least {MIN_USABLE_MESSAGE_SIZE}, or None to send every message whole"
        )
    return value


def _check_scalar(scalar: object) -> float:
    """The scalar as a float: ``TypeError`` if not a number, ``ValueError`` unless finite > 0.

    The original takes any float and masks NaN and negative scalars as 0 (and infinity as
    f64::MAX, clamped): an update with no weight at all, or the whole weight, which is never
    what the caller meant, and a round whose scalars are all 0 cannot be unmasked.
    """
    if isinstance(scalar, bool) or not isinstance(scalar, (int, float, np.floating, np.integer)):
        raise TypeError(f"scalar must be a float, got {type(scalar).__name__}")
    try:
        value = float(scalar)
    except OverflowError:
        value = math.inf
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"scalar must be a finite number above 0, got {value!r}. It is the weight of this"
            " participant's updates in the global model (for example its number of training"
            " samples over the total); a participant with nothing to contribute should not"
            " train (participate_in_update_task() returning False)"
        )
    return value


class Participant:
    """A PET participant driven by :meth:`tick`; thread-safe.

    ``Participant(url, scalar, state)`` as the original: with ``state`` (from :meth:`save`,
    ``stop()``, or the original participant) the participant is restored, and its keys,
    scalar and message size come from the state (``scalar`` and ``max_message_size`` are
    then ignored). The connection options come as an :class:`Options` (``options=``) or as
    its fields in keywords (``timeout=...``), the keywords replacing the object's fields.

    Raises :class:`ParticipantInit` (bad URL or options, or a scalar that is not a finite
    number above 0) or :class:`ParticipantRestore` (unusable state, or bad URL when
    restoring); ``TypeError`` for a scalar that is not a number.
    """

    def __init__(
        self,
        url: str,
        scalar: float = 1.0,
        state: Optional[StateInput] = None,
        *,
        options: Optional[Options] = None,
        **fields: "Unpack[OptionFields]",
    ) -> None:
        opts = Options.of(options, fields)
        events: tuple[Event, ...]
        persistence, from_file = None, False
        state_file = opts.state_file
        if state_file is not None:  # state file hook: resume from the file if it exists
            persistence, state, from_file = open_state(state_file, state)
        if state is None:
            try:
                check_url(url)
                size = check_max_message_size(opts.max_message_size)
                checked_scalar = _check_scalar(scalar)
            except (InvalidUrl, ValueError) as e:
                raise ParticipantInit(f"failed to initialize participant: {e}") from None
            self._state, events = machine.new_state(SigningKeyPair.generate(), checked_scalar, size)
            new_global_model = False
        else:
            restored = load_state(state, _check_restored)
            try:
                check_url(url)
            except InvalidUrl as e:
                raise ParticipantRestore(f"failed to restore participant: {e}") from None
            self._state = restored
            events = machine.entry_events(restored)
            # Beyond the original: ask the wrappers to fetch the global model once, so that
            # train_round after a restore gets the current model rather than None.
            new_global_model = True
        try:
            transport = opts.connect(url)
        except (InvalidUrl, TypeError, ValueError) as e:
            error = ParticipantInit if state is None else ParticipantRestore
            verb = "initialize" if state is None else "restore"
            raise error(f"failed to {verb} participant: {e}") from None
        self._transport = transport
        self._tick_lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._closed = False
        self._made_progress = True
        self._should_set_model = False
        self._new_global_model = new_global_model
        self._task = Task.NONE
        self._round_serial = 0
        self._step_errors: set[str] = set()
        self._odd_params: Optional[RoundParameters] = None
        self._process(events)
        self._persistence = persistence
        if persistence is not None:  # state file hook: the file holds the state from now on
            persistence.attach(self._state, from_file)

    # -- the original's methods -------------------------------------------------------------
    def tick(self) -> None:
        """One step of the protocol: ``GET /params``, then at most one request the phase
        needs (``GET /sums``, ``GET /seeds``, ``POST /message``) and the steps around it
        that need no coordinator.

        The original spends a tick, with its own ``GET /params``, on every sub-step, local
        ones too (decrypting the seeds, deriving the masks, masking, composing, leaving a
        phase): a sum2 task took six ticks. Here local sub-steps follow at once, so a
        request still waits for the next tick and its round check, but a computation never
        does: a sum2 task takes two ticks. Each sub-step is still one state transition, as
        in the original, and the state can be saved between any two.

        Never raises for network or coordinator trouble (that is logged and retried on the
        next tick); raises :class:`UninitializedParticipant` after :meth:`save`.
        """
        # state file hook: the state a tick leaves is recorded (if it changed)
        with self._tick_lock, after_tick(self._persistence, lambda: self._state):
            self._check_open("tick")
            params = self._fetch_params()
            request: Optional[Request] = None
            with self._state_lock:
                self._check_open("tick")
                state = self._state
                transition = machine.on_params(state, params)
                if transition is not None:  # no params, or a new round: the tick is over
                    self._commit(transition)
                    return
                try:
                    request = machine.next_request(state)
                except Exception as e:  # noqa: BLE001 - never the death of the thread
                    self._commit(self._step_failed(state, e))
                    return
                if request is None:
                    self._commit(self._safe_step(state, None))
                elif not before_request(self._persistence, state, request):  # state file hook
                    self._made_progress = False  # a POST goes out only once it is on file
                    return
            if request is not None:
                response = self._perform(request)
                with self._state_lock:
                    self._check_open("tick")
                    self._commit(self._safe_step(self._state, response))
            if self._made_progress:
                self._local_steps()

    def _local_steps(self) -> None:
        """After progress, the sub-steps that need no request, until one needs a request
        (left for the next tick) or makes no progress; the tick made progress either way."""
        for _ in range(_LOCAL_STEPS_PER_TICK):
            with self._state_lock:
                if self._closed:
                    return
                state = self._state
                try:
                    if machine.has_request(state):
                        return
                except Exception:  # noqa: BLE001 - the next tick reports it
                    return
                transition = self._safe_step(state, None)
                self._commit(transition)
                self._made_progress = True
                if not transition.progress:
                    return

    def set_model(self, local_model: LocalModelInput) -> None:
        """Cache the local model for the next update task (replacing any cached one).

        Accepts a list (as the original), a tuple or a 1-d numpy array. Raises
        :class:`LocalModelLengthMisMatch` or :class:`LocalModelDataTypeMisMatch` with the
        original's messages (docs/PROTOCOL.md 8.2) followed by what to do, and ``TypeError`` for
        another kind of container.
        """
        with self._state_lock:
            self._check_open("set_model")
            params = self._state.round_params
            model = convert_local_model(
                local_model, params.mask_config.vect.data_type, params.model_length
            )
            self._state = machine.with_local_model(self._state, model)
            self._should_set_model = False
            if self._persistence is not None:  # state file hook: the model is on file
                self._persistence.record(lambda: self._state)

    def made_progress(self) -> bool:
        """True right after construction or restore; after a tick, whether it made progress."""
        self._check_open("made_progress")
        return self._made_progress

    def should_set_model(self) -> bool:
        """True when an update task waits for a local model (:meth:`set_model`)."""
        self._check_open("should_set_model")
        return self._should_set_model

    def task(self) -> int:
        """The current task: 0 none, 1 sum, 2 update (see :class:`Task`)."""
        self._check_open("task")
        return int(self._task)

    def new_global_model(self) -> bool:
        """True after a new round started (a new global model may exist) until fetched."""
        self._check_open("new_global_model")
        return self._new_global_model

    def global_model(self, *, numpy: bool = False) -> Optional[GlobalModel]:
        """``GET /model`` in the current round's data type: None if there is none yet.

        A list of Python floats or ints by default (as the original), a numpy array with
        ``numpy=True``. Raises :class:`GlobalModelUnavailable` (network, HTTP status or
        malformed body) or :class:`GlobalModelDataTypeMisMatch` (a weight does not convert).
        """
        with self._state_lock:
            self._check_open("global_model")
            data_type = self._state.round_params.mask_config.vect.data_type
            serial = self._round_serial
        try:
            body = self._transport.get_model()
        except TransportError as e:
            raise GlobalModelUnavailable(f"failed to fetch global model: {e}") from None
        result: Optional[GlobalModel] = None
        mismatch: Optional[GlobalModelError] = None
        if body is not None:
            try:
                array = decode_global_model(body, data_type)
            except GlobalModelError as e:
                if e.malformed:
                    raise GlobalModelUnavailable(f"failed to fetch global model: {e}") from None
                mismatch = e
            else:
                result = array if numpy else model_to_python(array)
        # The model was fetched and decoded: as in the original, that clears the flag even
        # when a weight then fails to convert.
        with self._state_lock:
            if serial == self._round_serial:
                self._new_global_model = False
        if mismatch is not None:
            raise GlobalModelDataTypeMisMatch(
                "the global model data type is incompatible with the data type of the current"
                f" model configuration ({mismatch})"
            )
        return result

    def save(self) -> list[int]:
        """The participant's state as a list of ints; the participant is consumed.

        Every later call raises :class:`UninitializedParticipant`. The state holds the
        private signing key: store it securely.
        """
        with self._state_lock:
            self._check_open("save")
            self._closed = True
            raw = dump_state(self._state)
        try:
            self._transport.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        return list(raw)

    # -- extras -----------------------------------------------------------------------------
    @property
    def round_serial(self) -> int:
        """How many new rounds this participant has seen (increments on each ``new_round``)."""
        return self._round_serial

    @property
    def closed(self) -> bool:
        """True once :meth:`save` consumed the participant."""
        return self._closed

    @property
    def public_key(self) -> bytes:
        """The participant's public signing key (its identity; public)."""
        return self._state.shared.keys.public

    @property
    def round_params(self) -> RoundParameters:
        """The round parameters of the round in progress (dummy ones before the first)."""
        return self._state.round_params

    @property
    def phase(self) -> str:
        """The current phase's name, for diagnostics (``"Update"``, ``"Sending"``...)."""
        return type(self._state.phase).__name__

    @property
    def state(self) -> ParticipantState:
        """The current state (an immutable value), for diagnostics and tests."""
        return self._state

    # -- internals --------------------------------------------------------------------------
    def _check_open(self, method: str) -> None:
        if self._closed:
            raise UninitializedParticipant(
                f"called '{method}' on a participant whose state was already saved (stop() or"
                " save() consume it): restore a new one from the saved state to continue"
            )

    def _fetch_params(self) -> Optional[RoundParameters]:
        try:
            body = self._transport.get_params()
        except TransportError:
            return None  # logged by the transport, once per kind
        if body is None:
            return None
        try:
            params = RoundParameters.from_bytes(body)
        except CodecError as e:
            self._log_once(
                "params", f"the coordinator sent undecodable round parameters ({e}); retrying"
            )
            return None
        if math.isnan(params.sum) or math.isnan(params.update):
            # NaN never equals itself: taken as is, every poll would start a new round (the
            # original does that, docs/PROTOCOL.md 12.4), resetting the backoff each time.
            self._log_once(
                "params nan",
                f"the coordinator sent round parameters with a NaN task probability (sum"
                f" {params.sum}, update {params.update}); waiting for valid ones",
            )
            return None
        if not (0.0 <= params.sum <= 1.0 and 0.0 <= params.update <= 1.0):
            if params != self._odd_params:
                self._odd_params = params
                _log.warning(
                    "the round parameters have a task probability outside [0, 1] (sum %r,"
                    " update %r): as in the original, above 1 selects every participant and"
                    " below 0 none. Check the coordinator's [pet] settings",
                    params.sum,
                    params.update,
                )
        return params

    def _perform(self, request: Request) -> Response:
        transport = self._transport
        try:
            if isinstance(request, FetchSums):
                return Response(request, body=transport.get_sums())
            if isinstance(request, FetchSeeds):
                return Response(request, body=transport.get_seeds(request.pk))
            assert isinstance(request, PostMessage)
            transport.post_message(request.body)
            return Response(request, ok=True)
        except TransportError:
            return Response(request)  # logged by the transport, once per kind

    def _safe_step(self, state: ParticipantState, response: Optional[Response]) -> Transition:
        try:
            return machine.step(state, response)
        except Exception as e:  # noqa: BLE001 - never the death of the participant thread
            return self._step_failed(state, e)

    def _step_failed(self, state: ParticipantState, error: Exception) -> Transition:
        self._log_once(
            f"step {type(state.phase).__name__} {type(error).__name__}",
            f"the {type(state.phase).__name__} step failed ({type(error).__name__}: {error});"
            " retrying on the next tick",
            exc=error,
            level=logging.ERROR,
        )
        return Transition(state, False)

    def _log_once(
        self,
        kind: str,
        message: str,
        exc: Optional[BaseException] = None,
        level: int = logging.WARNING,
    ) -> None:
        """Log ``message`` if ``kind`` was not logged since the last progress, else DEBUG."""
        if kind in self._step_errors:
            _log.debug("%s", message)
            return
        self._step_errors.add(kind)
        _log.log(level, "%s", message, exc_info=exc)

    def _commit(self, transition: Transition) -> None:
        self._state = transition.state
        self._made_progress = transition.progress
        if transition.progress:
            self._step_errors.clear()
        if transition.problem is not None:
            self._log_once(*transition.problem)
        self._process(transition.events)

    def _process(self, events: tuple[Event, ...]) -> None:
        for event in events:
            if event is Event.NEW_ROUND:
                self._should_set_model = False
                self._new_global_model = True
                self._round_serial += 1
            elif event is Event.LOAD_MODEL:
                self._should_set_model = True
            elif event is Event.SUM:
                self._task = Task.SUM
            elif event is Event.UPDATE:
                self._task = Task.UPDATE
            elif event is Event.IDLE:
                self._task = Task.NONE


def _check_restored(state: ParticipantState) -> None:
    size = state.shared.max_message_size
    if size is not None and size < MIN_USABLE_MESSAGE_SIZE:
        raise ValueError(
            f"the saved max_message_size {size} is too small to send any message (the original"
            f" would panic when composing one); the minimum is {MIN_USABLE_MESSAGE_SIZE}"
        )


def new_backoff() -> Backoff:
    """The original wrappers' poll backoff: 100 ms, x1.2 per idle tick, at most 10 s."""
    return Backoff(min_ms=100, max_ms=10000, factor=1.2, jitter=False)


class TickLoop:
    """The poll loop of a participant thread: tick, react, wait; until :meth:`stop`.

    After every tick that was not stopped, ``on_tick`` runs (the API's reaction: fetch the
    global model, train, notify); then the loop waits the original's backoff, reset after
    progress. An error that ends the loop is logged and handed to ``on_error``. :meth:`stop`
    may be called from any thread and ends the wait at once; a tick in flight is not
    interrupted (saving the participant abandons it instead).
    """

    def __init__(
        self,
        participant: Participant,
        on_tick: Callable[[], None],
        on_error: Optional[Callable[[Exception], None]] = None,
    ) -> None:
        self.participant = participant
        self._on_tick = on_tick
        self._on_error = on_error
        self._stopped = threading.Event()
        self._backoff = new_backoff()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called or :meth:`run` ended."""
        return self._stopped.is_set()

    def stop(self) -> None:
        """End the loop after the current tick (or the current wait, at once)."""
        self._stopped.set()

    def run(self) -> None:
        """Tick until stopped; an error that escapes a tick is logged and ends the loop."""
        try:
            self._run()
        except UninitializedParticipant:
            if not self._stopped.is_set():  # pragma: no cover - save() only via stop()
                _log.error("the participant was saved outside stop(); the thread ends")
        except Exception as err:  # noqa: BLE001
            _log.error("unrecoverable error, participant shut down: %s", err, exc_info=err)
            if self._on_error is not None:
                self._on_error(err)
        finally:
            self._stopped.set()

    def _run(self) -> None:
        participant = self.participant
        while not self._stopped.is_set():
            participant.tick()
            made_progress = participant.made_progress()
            if self._stopped.is_set():
                break
            self._on_tick()
            if self._stopped.is_set():
                break
            if made_progress:
                self._backoff.reset()
            self._stopped.wait(timeout=self._backoff.duration())
