"""xaynet_sdk: a Python participant for the Xaynet v0.11 PET protocol (federated learning with
secure aggregation), a drop-in replacement for xaynet-sdk-python 0.1.0.

Two ways to take part, as in the original:

* subclass :class:`ParticipantABC` and start it with :func:`spawn_participant`; or
* :func:`spawn_async_participant` and set/get the models yourself.

``stop()`` returns the participant's state (a list of ints; it contains the private signing
key) and ``state=`` restores it. The exceptions are those of the original, under
:class:`XaynetError`; they are also in the compatibility module ``xaynet_sdk.xaynet_sdk``.
"""

from . import xaynet_sdk
from ._version import __version__ as __version__
from .async_participant import AsyncParticipant, spawn_async_participant
from .driver import Participant, Task
from .exceptions import (
    CryptoInit,
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
    ParticipantInit,
    ParticipantRestore,
    UninitializedParticipant,
    XaynetError,
)
from .participant import (
    InternalParticipant,
    ParticipantABC,
    TrainingInput,
    TrainingResult,
    spawn_participant,
)

__all__ = [
    "AsyncParticipant",
    "CryptoInit",
    "GlobalModelDataTypeMisMatch",
    "GlobalModelUnavailable",
    "InternalParticipant",
    "LocalModelDataTypeMisMatch",
    "LocalModelLengthMisMatch",
    "Participant",
    "ParticipantABC",
    "ParticipantInit",
    "ParticipantRestore",
    "Task",
    "TrainingInput",
    "TrainingResult",
    "UninitializedParticipant",
    "XaynetError",
    "spawn_async_participant",
    "spawn_participant",
    "xaynet_sdk",
]
