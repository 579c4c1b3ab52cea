"""Compatibility module: what the original's compiled ``xaynet_sdk.xaynet_sdk`` exported.

Code written for xaynet-sdk-python 0.1.0 that imports the low-level participant or catches
the exceptions through this module (``from xaynet_sdk import xaynet_sdk`` then
``xaynet_sdk.GlobalModelUnavailable``) keeps working.
"""

from __future__ import annotations

from ._logging import init_logging
from .driver import Participant
from .exceptions import (
    CryptoInit,
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
    ParticipantInit,
    ParticipantRestore,
    UninitializedParticipant,
)

__all__ = [
    "CryptoInit",
    "GlobalModelDataTypeMisMatch",
    "GlobalModelUnavailable",
    "LocalModelDataTypeMisMatch",
    "LocalModelLengthMisMatch",
    "Participant",
    "ParticipantInit",
    "ParticipantRestore",
    "UninitializedParticipant",
    "init_logging",
]
