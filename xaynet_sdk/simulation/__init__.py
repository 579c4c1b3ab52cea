"""Simulate many participants on one machine or a Ray cluster (``python -m xaynet_sdk.simulation``).

::

    from xaynet_sdk.simulation import run_simulation

    result = run_simulation(MyParticipant, participants=1000, rounds=3, model_length=10_000)
    for outcome in result.rounds:
        print(outcome.round, outcome.update, outcome.accepted_updates, outcome.late_updates)

``MyParticipant`` is a :class:`~xaynet_sdk.ParticipantABC` subclass whose constructor takes the
participant's index. Each worker process multiplexes its participants' protocol drivers over
a few threads and shares the requests that are the same for everyone (see
:mod:`xaynet_sdk.simulation._engine`); workers are processes of this machine
(``backend="multiprocessing"``) or Ray actors (``backend="ray"``, ``pip install
'xaynet-sdk[ray]'``).
"""

from ._engine import ModelParticipant, WorkerSpec
from .runner import (
    ConstantModel,
    RoundOutcome,
    SimulationResult,
    embedded_settings,
    run_simulation,
)

__all__ = [
    "ConstantModel",
    "ModelParticipant",
    "RoundOutcome",
    "SimulationResult",
    "WorkerSpec",
    "embedded_settings",
    "run_simulation",
]
