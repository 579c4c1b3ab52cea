"""The exceptions of the public API: the original ``xaynet_sdk.xaynet_sdk`` names, one base class.

The original (xaynet-sdk-python 0.1.0) defines these eight classes directly under
``Exception``; here they share :class:`XaynetError` so that one ``except`` catches any of
them, while ``except CryptoInit`` and friends keep working unchanged. They are also
reachable as ``xaynet_sdk.xaynet_sdk.<Name>``, where the original defined them.
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
    """Base class of every exception the participant API raises on purpose."""


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
