"""The exception tree: every exception this package raises on purpose derives from
:class:`XaynetError`.

The original (xaynet-sdk-python 0.1.0) defines the eight public classes below directly
under ``Exception``; here they share :class:`XaynetError` so that one ``except`` catches any
of them, while ``except CryptoInit`` and friends keep working unchanged. They are also
reachable as ``xaynet_sdk.xaynet_sdk.<Name>``, where the original defined them.

Each layer defines its own errors under this base, next to its code, and translates the
errors of the layer below once, where it calls it, so nothing leaks upwards::

    XaynetError
    ├── the public API (this module; the original's names): CryptoInit, ParticipantInit,
    │   ParticipantRestore, UninitializedParticipant, LocalModelLengthMisMatch,
    │   LocalModelDataTypeMisMatch, GlobalModelUnavailable, GlobalModelDataTypeMisMatch
    ├── transport.TransportError: ConnectFailed, RequestTimedOut, TlsError, BodyTooLarge,
    │   TransportClosed, HttpStatusError, UnexpectedResponse (the driver logs them and retries)
    ├── transport.InvalidUrl (also a ValueError)
    ├── protocol.saved_fields.InvalidState (a saved state; ParticipantRestore for the user)
    ├── codec.errors.CodecError (also a ValueError): EncodeError, DecodeError
    │   └── DecryptError, InvalidSignatureError, WrongCoordinatorKeyError, ReassemblyError
    ├── mask.errors.MaskError (also a ValueError): InvalidMaskConfig, MaskObjectError,
    │   GlobalModelError, AggregationError, NonFiniteWeight, NativeCallError
    ├── _native.NativeError (also a ValueError): NonFiniteWeight, ConversionOutOfRange,
    │   ConversionDiverges, MalformedInput; seen only by mask/, which translates them
    ├── models.ModelLayoutError (also a ValueError): a model that does not fit its layout
    └── the coordinator: settings.SettingsError (also a ValueError), store.StoreError,
        store.RestoreError, rounds.RoundFailed, outcomes.Rejected (never seen outside it)

This module imports nothing, so every layer, the C wrappers included, can derive from it.
Errors that are not the caller's fault nor the peer's (``TypeError`` for a wrong type of
argument, ``OverflowError``) stay Python's own.
"""

from __future__ import annotations

__all__ = [
    "CryptoInit",
    "GlobalModelDataTypeMisMatch",
    "GlobalModelUnavailable",
    "LocalModelDataTypeMisMatch",
    "LocalModelLengthMisMatch",
    "ParticipantInit",
    "ParticipantRestore",
    "UninitializedParticipant",
    "XaynetError",
]


class XaynetError(Exception):
    """Base class of every exception this package raises on purpose (see the tree above)."""


class CryptoInit(XaynetError):
    """The crypto library (libsodium) could not be initialized."""


class ParticipantInit(XaynetError):
    """A new participant cannot be built: invalid coordinator URL or invalid options."""


class ParticipantRestore(XaynetError):
    """A participant cannot be restored: the saved state is invalid (or the URL is)."""


class UninitializedParticipant(XaynetError):
    """A method was called on a participant whose state was already saved (stopped)."""


class LocalModelLengthMisMatch(XaynetError):
    """The local model's length differs from the round's model length."""


class LocalModelDataTypeMisMatch(XaynetError):
    """The local model's values do not fit the round's data type (F32, F64, I32, I64)."""


class GlobalModelUnavailable(XaynetError):
    """The global model could not be fetched (connection, HTTP status or malformed body)."""


class GlobalModelDataTypeMisMatch(XaynetError):
    """A weight of the global model does not convert to the round's data type."""
