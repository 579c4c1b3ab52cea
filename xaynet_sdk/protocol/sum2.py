"""Sum2: fetch the encrypted mask seeds, decrypt them, aggregate their masks, compose.

One sub-step per tick, each one progress (docs/PROTOCOL.md 1.4, 11.2, 12.2):

1. ``GET /seeds?pk=<own pk>`` until 200 (204, errors and undecodable bodies: no progress);
2. open every sealed seed with the ephemeral key pair; any failure ends the task
   (Awaiting, with the original's two ``idle`` events);
3. derive and add up the masks of all seeds (on all cores, without the GIL); more seeds
   than the configuration can aggregate ends the task (Awaiting, ``idle``);
4. compose the Sum2 message and go sending it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from .._logging import get_logger
from ..codec.bincode import decode_update_seed_dict
from ..codec.crypto import open_sealed
from ..codec.errors import DecodeError
from ..codec.message import Sum2Payload
from ..mask.masking import sum_masks
from .outbox import start_sending
from .saved_fields import (
    InvalidState,
    dump_pairs,
    ephm_keys,
    exact,
    field,
    load_mask,
    pair_dict,
)
from .state import (
    Awaiting,
    Event,
    FetchSeeds,
    ParticipantState,
    PhaseSpec,
    Response,
    SendingKind,
    Sum2,
    Transition,
)

__all__ = ["PHASE", "dump", "load", "request", "step"]

_log = get_logger("protocol")

MASK_SEED_LENGTH = 32


def request(state: ParticipantState) -> Optional[FetchSeeds]:
    phase = state.phase
    assert isinstance(phase, Sum2)
    if phase.has_fetched_seed_dict():
        return None
    return FetchSeeds(state.shared.keys.public)


def step(state: ParticipantState, response: Optional[Response] = None) -> Transition:
    phase = state.phase
    assert isinstance(phase, Sum2)
    if not phase.has_fetched_seed_dict():
        return _fetch_seed_dict(state, phase, response)
    if not phase.has_decrypted_seeds():
        return _decrypt_seeds(state, phase)
    if not phase.has_aggregated_masks():
        return _aggregate_masks(state, phase)
    return _compose(state, phase)


def _fetch_seed_dict(
    state: ParticipantState, phase: Sum2, response: Optional[Response]
) -> Transition:
    if response is None or response.body is None:
        return Transition(state, False)
    try:
        seed_dict = decode_update_seed_dict(response.body)
    except DecodeError as e:
        problem = f"the coordinator sent an undecodable seed dictionary ({e}); retrying"
        return Transition(state, False, problem=("undecodable seed dict", problem))
    return Transition(replace(state, phase=replace(phase, seed_dict=seed_dict)), True)


def _decrypt_seeds(state: ParticipantState, phase: Sum2) -> Transition:
    assert phase.seed_dict is not None
    keys = phase.ephm_keys
    seeds = []
    for encrypted in phase.seed_dict.values():
        try:
            seed = open_sealed(encrypted, keys.public, keys.secret)
        except DecodeError:
            seed = b""
        if len(seed) != MASK_SEED_LENGTH:
            _log.warning(
                "a mask seed of this round's seed dictionary does not decrypt; the sum2 task"
                " is abandoned for this round"
            )
            # The original notifies idle, then enters Awaiting, which notifies idle again.
            return Transition(replace(state, phase=Awaiting()), True, (Event.IDLE, Event.IDLE))
        seeds.append(seed)
    return Transition(
        replace(state, phase=replace(phase, seed_dict=None, seeds=tuple(seeds))), True
    )


def _aggregate_masks(state: ParticipantState, phase: Sum2) -> Transition:
    assert phase.seeds is not None
    params = state.round_params
    configs = params.mask_config
    limit = min(configs.vect.max_nb_models, configs.unit.max_nb_models)
    if len(phase.seeds) > limit:
        # The original's Aggregation refuses the (limit+1)-th mask (TooManyModels).
        _log.error(
            "cannot aggregate %d masks: the mask configuration allows at most %d models;"
            " the sum2 task is abandoned for this round",
            len(phase.seeds),
            limit,
        )
        return Transition(replace(state, phase=Awaiting()), True, (Event.IDLE,))
    mask = sum_masks(list(phase.seeds), params.model_length, configs)
    return Transition(replace(state, phase=replace(phase, seeds=None, mask=mask)), True)


def _compose(state: ParticipantState, phase: Sum2) -> Transition:
    assert phase.mask is not None
    payload = Sum2Payload(phase.sum_signature, phase.mask)
    sending = start_sending(state.shared, SendingKind.SUM2, payload.to_bytes())
    return Transition(replace(state, phase=sending), True)


def dump(phase: Sum2) -> dict[str, Any]:
    """The saved fields of a Sum2 phase (also those of a SendingSum's ``then``)."""
    return {
        "ephm_public": phase.ephm_keys.public,
        "ephm_secret": phase.ephm_keys.secret,
        "sum_signature": phase.sum_signature,
        "seed_dict": dump_pairs(phase.seed_dict),
        "seeds": None if phase.seeds is None else list(phase.seeds),
        "mask": None if phase.mask is None else phase.mask.to_bytes(),
    }


def load(doc: Any, where: str) -> Sum2:
    """A Sum2 phase from :func:`dump`'s fields."""
    if not isinstance(doc, dict):
        raise InvalidState(f"{where}: not a map")
    seeds = field(doc, "seeds", list, where, optional=True)
    if seeds is not None and not all(isinstance(s, bytes) and len(s) == 32 for s in seeds):
        raise InvalidState(f"{where}: malformed mask seeds")
    return Sum2(
        ephm_keys=ephm_keys(doc, where),
        sum_signature=exact(doc, "sum_signature", 64, where),
        seed_dict=pair_dict(doc, "seed_dict", 80, where),
        seeds=None if seeds is None else tuple(seeds),
        mask=load_mask(field(doc, "mask", bytes, where, optional=True), where),
    )


#: This phase's row of the phase table (:mod:`xaynet_sdk.protocol.phases`).
PHASE = PhaseSpec(Sum2, "sum2", step, request=request, dump=dump, load=load)
