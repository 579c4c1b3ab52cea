"""Update: fetch the sum dict, take the local model, mask it, seal the seed, compose.

One sub-step per tick, each one progress (docs/PROTOCOL.md 1.4 and 12.2):

1. ``GET /sums`` until 200 (204, errors and undecodable bodies: no progress);
2. take the model out of the store (none yet: no progress);
3. mask it with a fresh random seed and the participant's scalar (section 9);
4. seal the mask seed to every sum participant's ephemeral key (the local seed dict);
5. compose the Update message and go sending it.

Beyond the original: a stored model that no longer fits the round (a model set in an
earlier round whose length or data type differ) is dropped and asked for again with a
``load_model`` event, instead of being sent to a coordinator that would silently reject it.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any, Optional

from .._logging import get_logger
from ..codec.bincode import decode_sum_dict
from ..codec.crypto import seal
from ..codec.errors import DecodeError
from ..codec.message import UpdatePayload
from ..mask.masking import clamp_scalar, count_clamped, mask_model
from .outbox import start_sending
from .saved_fields import (
    InvalidState,
    dump_model,
    dump_pairs,
    exact,
    field,
    load_mask,
    load_model,
    pair_dict,
)
from .state import (
    Event,
    FetchSums,
    ParticipantState,
    PhaseSpec,
    Response,
    SendingKind,
    Transition,
    Update,
)

__all__ = ["PHASE", "request", "step"]

_log = get_logger("protocol")

MASK_SEED_LENGTH = 32


def request(state: ParticipantState) -> Optional[FetchSums]:
    """``GET /sums`` until the sum dict is in; afterwards the sub-steps are local."""
    phase = state.phase
    assert isinstance(phase, Update)
    return None if phase.has_fetched_sum_dict() else FetchSums()


def step(state: ParticipantState, response: Optional[Response] = None) -> Transition:
    phase = state.phase
    assert isinstance(phase, Update)
    if not phase.has_fetched_sum_dict():
        return _fetch_sum_dict(state, phase, response)
    if not phase.has_loaded_model():
        return _load_model(state, phase)
    if not phase.has_masked_model():
        return _mask_model(state, phase)
    if not phase.has_built_seed_dict():
        return _build_seed_dict(state, phase)
    return _compose(state, phase)


def _fetch_sum_dict(
    state: ParticipantState, phase: Update, response: Optional[Response]
) -> Transition:
    if response is None or response.body is None:
        return Transition(state, False)
    try:
        sum_dict = decode_sum_dict(response.body)
    except DecodeError as e:
        problem = f"the coordinator sent an undecodable sum dictionary ({e}); retrying"
        return Transition(state, False, problem=("undecodable sum dict", problem))
    return Transition(replace(state, phase=replace(phase, sum_dict=sum_dict)), True)


def _load_model(state: ParticipantState, phase: Update) -> Transition:
    model = state.local_model
    if model is None:
        return Transition(state, False)
    params = state.round_params
    data_type = params.mask_config.vect.data_type
    if len(model) != params.model_length or model.dtype != data_type.numpy_dtype:
        _log.warning(
            "the cached local model (%d weights of %s) does not fit this round (%d weights of"
            " %s); dropped, asking for a new one",
            len(model),
            model.dtype,
            params.model_length,
            data_type.name,
        )
        return Transition(replace(state, local_model=None), False, (Event.LOAD_MODEL,))
    return Transition(replace(state, phase=replace(phase, model=model), local_model=None), True)


def _mask_model(state: ParticipantState, phase: Update) -> Transition:
    assert phase.model is not None
    configs = state.round_params.mask_config
    clamped = count_clamped(
        phase.model, clamp_scalar(state.shared.scalar, configs.unit), configs.vect
    )
    if clamped:
        _log.warning(
            "%d of %d weights (times the scalar) lie beyond ±%s, the bound of this round's"
            " mask configuration %s: they are masked as the bound, as the original does, and"
            " the global model will be off. Use a coordinator configuration with a larger"
            " bound_type (B2: 100, B4: 10^4, B6: 10^6, Bmax)",
            clamped,
            len(phase.model),
            configs.vect.add_shift,
            configs.vect.name,
        )
    seed = secrets.token_bytes(MASK_SEED_LENGTH)
    masked = mask_model(seed, configs, state.shared.scalar, phase.model)
    return Transition(replace(state, phase=replace(phase, model=None, mask=(seed, masked))), True)


def _build_seed_dict(state: ParticipantState, phase: Update) -> Transition:
    assert phase.mask is not None and phase.sum_dict is not None
    seed = phase.mask[0]
    seed_dict = {pk: seal(seed, ephm_pk) for pk, ephm_pk in phase.sum_dict.items()}
    return Transition(
        replace(state, phase=replace(phase, sum_dict=None, seed_dict=seed_dict)), True
    )


def _compose(state: ParticipantState, phase: Update) -> Transition:
    assert phase.mask is not None and phase.seed_dict is not None
    payload = UpdatePayload(
        phase.sum_signature, phase.update_signature, phase.mask[1], dict(phase.seed_dict)
    )
    sending = start_sending(state.shared, SendingKind.UPDATE, payload.to_bytes())
    return Transition(replace(state, phase=sending), True)


def _entry_events(state: ParticipantState) -> tuple[Event, ...]:
    phase = state.phase
    assert isinstance(phase, Update)
    if phase.has_loaded_model() or state.local_model is not None:
        return (Event.UPDATE,)
    return (Event.UPDATE, Event.LOAD_MODEL)


def _dump(phase: Update) -> dict[str, Any]:
    return {
        "sum_signature": phase.sum_signature,
        "update_signature": phase.update_signature,
        "sum_dict": dump_pairs(phase.sum_dict),
        "model": dump_model(phase.model),
        "mask_seed": None if phase.mask is None else phase.mask[0],
        "masked_model": None if phase.mask is None else phase.mask[1].to_bytes(),
        "seed_dict": dump_pairs(phase.seed_dict),
    }


def _load(doc: dict[Any, Any], where: str) -> Update:
    seed = exact(doc, "mask_seed", 32, where, optional=True)
    masked = load_mask(field(doc, "masked_model", bytes, where, optional=True), where)
    if (seed is None) != (masked is None):
        raise InvalidState(f"{where}: mask seed and masked model must be saved together")
    return Update(
        sum_signature=exact(doc, "sum_signature", 64, where),
        update_signature=exact(doc, "update_signature", 64, where),
        sum_dict=pair_dict(doc, "sum_dict", 32, where),
        model=load_model(doc.get("model"), where),
        mask=None if seed is None or masked is None else (seed, masked),
        seed_dict=pair_dict(doc, "seed_dict", 80, where),
    )


#: This phase's row of the phase table (:mod:`xaynet_sdk.protocol.phases`).
PHASE = PhaseSpec(
    Update, "update", step, request=request, entry_events=_entry_events, dump=_dump, load=_load
)
