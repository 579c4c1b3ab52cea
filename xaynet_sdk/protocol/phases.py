"""The phase table: every phase of the participant, the one place that lists them.

:mod:`.machine` (stepping) and :mod:`.saved` (saving and loading) find a phase's behaviour
here, by its data class or by its saved name, and have no code of their own per phase, as
the original has one ``match`` in its ``StateMachine`` and one ``impl Step`` per phase.

How to add a phase
------------------

1. Write one module in ``xaynet_sdk/protocol/``: the phase's data, a frozen dataclass
   deriving from :class:`~.state.Phase`, its ``step`` (and ``request`` if it fetches or
   posts something) and a ``PHASE = PhaseSpec(...)`` naming them, with its saved name, its
   ``entry_events`` and, if it has fields, their ``dump`` and ``load`` (built from
   :mod:`.saved_fields`). Steps are pure: they return a :class:`~.state.Transition` and
   never do I/O; the driver performs the :class:`~.state.Request` and passes the
   :class:`~.state.Response` to ``step``. ``awaiting.py`` is the smallest example.
2. Add one row to :data:`PHASES` below (with its import).

Nothing else lists the phases: the state machine, and so the driver, and the saved state
reach them through this table. To make the new phase reachable, the step of the phase
before it returns it. The original participant's saved state (:mod:`.original_state`)
has a fixed set of variants and needs nothing.

Checked with a toy phase (one tick of waiting, then Awaiting; saved with one field),
stepped, saved and restored through this table, on a scratch branch::

    xaynet_sdk/protocol/phases.py |  3 ++-
    xaynet_sdk/protocol/toy.py    | 35 +++++++++++++++++++++++++++++++++++
    2 files changed, 37 insertions(+), 1 deletion(-)
"""

from __future__ import annotations

from . import awaiting, new_round, sending, sum2, update
from . import sum as sum_  # as ``sum`` it would shadow the built-in
from .state import Phase, PhaseSpec

__all__ = ["PHASES", "by_name", "spec_of"]

#: Every phase of the participant, one row each, looked up by class and by saved name.
PHASES: tuple[PhaseSpec, ...] = (
    new_round.PHASE,
    awaiting.PHASE,
    sum_.PHASE,
    update.PHASE,
    sum2.PHASE,
    sending.PHASE,
)

_BY_KIND = {spec.kind: spec for spec in PHASES}
_BY_NAME = {spec.name: spec for spec in PHASES}
assert len(_BY_KIND) == len(_BY_NAME) == len(PHASES), "two phases share a class or a name"


def spec_of(phase: Phase) -> PhaseSpec:
    """The spec of ``phase``'s class (a KeyError would be a phase missing from the table)."""
    return _BY_KIND[type(phase)]


def by_name(name: str) -> "PhaseSpec | None":
    """The spec saved under ``name``, or None if no phase has it."""
    return _BY_NAME.get(name)
