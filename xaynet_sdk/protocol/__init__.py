"""The participant's PET protocol state machine: pure data and pure steps, no I/O.

* :mod:`.state`: the state dataclasses, events, requests, responses, transitions;
* one module per phase: :mod:`.new_round`, :mod:`.awaiting`, :mod:`.sum`, :mod:`.update`,
  :mod:`.sum2`, :mod:`.sending`;
* :mod:`.phases`: the phase table, and how to add a phase;
* :mod:`.machine`: the tick structure (params check, then one phase step);
* :mod:`.local_model`: user values to the round's data type and back (docs/PROTOCOL.md 8.2);
* :mod:`.outbox`: a composed payload into the Sending phase;
* :mod:`.saved`: the versioned msgpack saved state (each phase saves its own fields with
  :mod:`.saved_fields`); :mod:`.original_state` reads the original participant's bincode
  state.
"""

from .machine import entry_events, new_state, next_request, on_params, step, with_local_model
from .saved import dump_state, load_state
from .state import (
    Awaiting,
    Event,
    FetchSeeds,
    FetchSums,
    NewRound,
    ParticipantState,
    Phase,
    PhaseSpec,
    PostMessage,
    Request,
    Response,
    Sending,
    SendingKind,
    SharedState,
    Sum,
    Sum2,
    Transition,
    Update,
    dummy_round_parameters,
)

__all__ = [
    "Awaiting",
    "Event",
    "FetchSeeds",
    "FetchSums",
    "NewRound",
    "ParticipantState",
    "Phase",
    "PhaseSpec",
    "PostMessage",
    "Request",
    "Response",
    "Sending",
    "SendingKind",
    "SharedState",
    "Sum",
    "Sum2",
    "Transition",
    "Update",
    "dummy_round_parameters",
    "dump_state",
    "entry_events",
    "load_state",
    "new_state",
    "next_request",
    "on_params",
    "step",
    "with_local_model",
]
