"""Unit tests of the protocol state machine, one phase at a time (no I/O anywhere).

Each test builds a ParticipantState, calls the pure step functions with crafted responses,
and checks the next state, progress and events against docs/PROTOCOL.md 1.4 and 12.2, and the
composed messages byte for byte against the wheel-captured vectors.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from participant_fakes import make_params, role, seed_for_roles  # noqa: E402
from spec_vectors import load_vector  # noqa: E402

from xaynet_sdk.codec.bincode import (  # noqa: E402
    RoundParameters,
    encode_sum_dict,
    encode_update_seed_dict,
)
from xaynet_sdk.codec.crypto import EncryptKeyPair, SigningKeyPair, open_sealed, seal  # noqa: E402
from xaynet_sdk.codec.message import (  # noqa: E402
    ChunkPayload,
    Sum2Payload,
    UpdatePayload,
    decode_message,
)
from xaynet_sdk.coordinator.reassembly import Reassembler  # noqa: E402
from xaynet_sdk.mask.masking import derive_mask  # noqa: E402
from xaynet_sdk.mask.objects import limbs_to_ints  # noqa: E402
from xaynet_sdk.protocol import machine  # noqa: E402
from xaynet_sdk.protocol.state import (  # noqa: E402
    Awaiting,
    Event,
    FetchSeeds,
    FetchSums,
    NewRound,
    ParticipantState,
    PostMessage,
    Response,
    Sending,
    SendingKind,
    SharedState,
    Sum,
    Sum2,
    Update,
    dummy_round_parameters,
)

E2E = load_vector("e2e_messages_wheel")


def _state(
    params: RoundParameters,
    phase: object = None,
    keys: SigningKeyPair | None = None,
    max_message_size: int | None = None,
    local_model: np.ndarray | None = None,
) -> ParticipantState:
    shared = SharedState(keys or SigningKeyPair.generate(), 1.0, max_message_size, params)
    return ParticipantState(shared, phase or NewRound(), local_model)  # type: ignore[arg-type]


def _e2e_state() -> tuple[ParticipantState, EncryptKeyPair]:
    keys = SigningKeyPair.from_seed(bytes.fromhex(E2E["keys"]["participant_signing_seed_hex"]))
    params = RoundParameters.from_bytes(
        bytes.fromhex(E2E["round_params"]["round_params_bincode_hex"])
    )
    coordinator = EncryptKeyPair(
        bytes.fromhex(E2E["keys"]["coordinator_pk_hex"]),
        bytes.fromhex(E2E["keys"]["coordinator_sk_hex"]),
    )
    return _state(params, keys=keys), coordinator


def _run_local(state: ParticipantState) -> tuple[ParticipantState, list[Event]]:
    """Step while no request is needed; return the state and the events seen."""
    events: list[Event] = []
    while machine.next_request(state) is None and not isinstance(state.phase, Awaiting):
        t = machine.step(state)
        events.extend(t.events)
        state = t.state
    return state, events


# ----------------------------------------------------------------------------- round freshness


def test_new_participant_starts_awaiting_with_dummy_params() -> None:
    state, events = machine.new_state(SigningKeyPair.generate(), 1.0, None)
    assert isinstance(state.phase, Awaiting) and events == (Event.IDLE,)
    assert state.round_params == dummy_round_parameters()
    assert state.round_params.model_length == 0
    assert machine.next_request(state) is None
    t = machine.step(state)
    assert t.progress is False and t.state is state


def test_on_params_unknown_same_and_new() -> None:
    params, _ = make_params()
    state = _state(params, Awaiting())
    assert machine.on_params(state, None) == machine.on_params(state, None)
    pending = machine.on_params(state, None)
    assert pending is not None and pending.progress is False and pending.events == ()
    assert machine.on_params(state, params) is None  # same round: the phase steps
    fresh, _ = make_params()
    t = machine.on_params(state, fresh)
    assert t is not None and t.progress and t.events == (Event.NEW_ROUND,)
    assert isinstance(t.state.phase, NewRound) and t.state.round_params == fresh
    assert t.state.shared.keys == state.shared.keys  # the identity is kept


@pytest.mark.parametrize(
    "phase",
    [
        Sum(EncryptKeyPair.generate(), b"s" * 64),
        Update(b"s" * 64, b"u" * 64, sum_dict={}),
        Sum2(EncryptKeyPair.generate(), b"s" * 64, seed_dict={}),
        Sending(SendingKind.UPDATE, b"payload", next_index=0, failed=b"sealed"),
    ],
    ids=["sum", "update", "sum2", "sending"],
)
def test_a_round_change_in_any_phase_resets_to_new_round(phase: object) -> None:
    params, _ = make_params()
    model = np.zeros(4, dtype=np.float32)
    state = _state(params, phase, local_model=model)
    fresh, _ = make_params()
    t = machine.on_params(state, fresh)
    assert t is not None and isinstance(t.state.phase, NewRound)
    assert t.events == (Event.NEW_ROUND,)
    assert t.state.local_model is model  # the model store survives the round change


def test_nan_probability_makes_every_poll_a_new_round() -> None:
    params, _ = make_params(sum_prob=float("nan"))
    state = _state(params, Awaiting())
    for _ in range(3):
        t = machine.on_params(state, RoundParameters.from_bytes(params.to_bytes()))
        assert t is not None and t.events == (Event.NEW_ROUND,)
        state = t.state


# ----------------------------------------------------------------------------- new round


def test_new_round_sum_priority_and_vector_signature() -> None:
    state, _ = _e2e_state()  # sum 0.5, ratio 0.4546: sum-eligible
    t = machine.step(state)
    assert t.progress and t.events == (Event.SUM,)
    assert isinstance(t.state.phase, Sum)
    assert t.state.phase.sum_signature.hex() == E2E["sum_task_signature_hex"]


@pytest.mark.parametrize(
    "sum_prob,update_prob,expected,events",
    [
        (0.4, 0.9, Update, (Event.UPDATE, Event.LOAD_MODEL)),  # 0.4546 > 0.4; 0.7255 <= 0.9
        (0.4, 0.7, Awaiting, (Event.IDLE,)),
        (-1.0, 2.0, Update, (Event.UPDATE, Event.LOAD_MODEL)),  # < 0 never, > 1 always
        (1.0, 1.0, Sum, (Event.SUM,)),
    ],
)
def test_new_round_roles(
    sum_prob: float, update_prob: float, expected: type, events: tuple
) -> None:
    state, _ = _e2e_state()
    params = replace(state.round_params, sum=sum_prob, update=update_prob)
    state = replace(state, shared=replace(state.shared, round_params=params))
    t = machine.step(state)
    assert isinstance(t.state.phase, expected) and t.events == events and t.progress
    if expected is Update:
        assert t.state.phase.update_signature.hex() == E2E["update_task_signature_hex_derived"]


def test_role_helper_agrees_with_the_state_machine() -> None:
    keys = [SigningKeyPair.generate() for _ in range(3)]
    seed = seed_for_roles([k.secret for k in keys], ["sum", "update", "none"], 0.5, 0.5)
    params, _ = make_params(seed=seed, sum_prob=0.5, update_prob=0.5)
    for k, expected in zip(keys, [Sum, Update, Awaiting]):
        t = machine.step(_state(params, keys=k))
        assert isinstance(t.state.phase, expected)
        assert role(k.secret, params) in ("sum", "update", "none")


# ----------------------------------------------------------------------------- sum and sum2


def test_sum_and_sum2_messages_match_the_wheel_vectors() -> None:
    state, coordinator = _e2e_state()
    state = machine.step(state).state
    ephm = EncryptKeyPair(
        bytes.fromhex(E2E["keys"]["ephm_pk_hex"]), bytes.fromhex(E2E["keys"]["ephm_sk_hex"])
    )
    assert isinstance(state.phase, Sum)
    state = replace(state, phase=replace(state.phase, ephm_keys=ephm))

    # Sum: compose (progress, no event), then one POST, then -> Sum2 (no event).
    t = machine.step(state)
    assert t.progress and t.events == () and isinstance(t.state.phase, Sending)
    state = t.state
    req = machine.next_request(state)
    assert isinstance(req, PostMessage) and not req.retry and req.count == 1
    assert len(req.body) == 232 + 48
    plaintext = open_sealed(req.body, coordinator.public, coordinator.secret)
    assert plaintext.hex() == E2E["sum_message"]["plaintext_hex"]
    t = machine.step(state, Response(req, ok=True))
    assert t.progress and isinstance(t.state.phase, Sending) and t.state.phase.next_index == 1
    state = t.state
    assert machine.next_request(state) is None
    t = machine.step(state, None)
    assert t.progress and t.events == () and isinstance(t.state.phase, Sum2)
    state = t.state

    # Sum2: GET /seeds?pk=own until 200.
    req = machine.next_request(state)
    assert req == FetchSeeds(state.shared.keys.public)
    t = machine.step(state, Response(req, body=None))
    assert not t.progress and t.state is state
    t = machine.step(state, Response(req, body=b"\x05garbage"))
    assert not t.progress
    seeds = [bytes.fromhex(h) for h in E2E["sum2_message"]["mask_seeds_hex"]]
    body = encode_update_seed_dict(
        {bytes([i]) * 32: seal(s, ephm.public) for i, s in enumerate(seeds)}
    )
    t = machine.step(state, Response(req, body=body))
    assert t.progress
    state, events = _run_local(t.state)  # decrypt, aggregate, compose: one step each
    assert events == []
    assert isinstance(state.phase, Sending) and state.phase.kind is SendingKind.SUM2
    req = machine.next_request(state)
    assert isinstance(req, PostMessage)
    plaintext = open_sealed(req.body, coordinator.public, coordinator.secret)
    assert plaintext.hex() == E2E["sum2_message"]["plaintext_hex"]
    msg = decode_message(plaintext)
    assert isinstance(msg.payload, Sum2Payload)
    assert limbs_to_ints(msg.payload.model_mask.vect.data) == [
        int(v) for v in E2E["sum2_message"]["aggregated_mask_vect"]
    ]
    t = machine.step(state, Response(req, ok=True))
    t = machine.step(t.state, None)
    assert isinstance(t.state.phase, Awaiting) and t.events == (Event.IDLE,)


def test_sum2_sub_steps_one_per_tick() -> None:
    params, _ = make_params(model_length=3)
    ephm = EncryptKeyPair.generate()
    state = _state(params, Sum2(ephm, b"s" * 64))
    seeds = [bytes([7]) * 32]
    req = machine.next_request(state)
    body = encode_update_seed_dict({b"u" * 32: seal(seeds[0], ephm.public)})
    state = machine.step(state, Response(req, body=body)).state  # type: ignore[arg-type]
    assert state.phase.seed_dict is not None  # type: ignore[union-attr]
    state = machine.step(state).state
    assert state.phase.seeds == tuple(seeds) and state.phase.seed_dict is None  # type: ignore[union-attr]
    state = machine.step(state).state
    assert state.phase.mask == derive_mask(seeds[0], 3, params.mask_config)  # type: ignore[union-attr]
    state = machine.step(state).state
    assert isinstance(state.phase, Sending)


def test_sum2_with_no_seeds_sends_the_empty_mask() -> None:
    params, _ = make_params(model_length=4)
    state = _state(params, Sum2(EncryptKeyPair.generate(), b"s" * 64, seed_dict={}))
    state, _ = _run_local(state)
    req = machine.next_request(state)
    assert isinstance(req, PostMessage)
    phase = state.phase
    assert isinstance(phase, Sending)
    payload = Sum2Payload.from_bytes(phase.data)
    assert len(payload.model_mask.vect) == 0 and payload.model_mask.unit.value == 1


def test_sum2_undecryptable_seed_goes_awaiting_with_two_idle_events() -> None:
    params, _ = make_params()
    ephm = EncryptKeyPair.generate()
    other = EncryptKeyPair.generate()
    state = _state(
        params, Sum2(ephm, b"s" * 64, seed_dict={b"u" * 32: seal(b"x" * 32, other.public)})
    )
    t = machine.step(state)
    assert t.progress and isinstance(t.state.phase, Awaiting)
    assert t.events == (Event.IDLE, Event.IDLE)


def test_sum2_too_many_seeds_for_the_model_type_goes_awaiting() -> None:
    params, _ = make_params(model_length=1)
    state = _state(params, Sum2(EncryptKeyPair.generate(), b"s" * 64, seeds=(b"\1" * 32,) * 1001))
    t = machine.step(state)
    assert isinstance(t.state.phase, Awaiting) and t.events == (Event.IDLE,)


# ----------------------------------------------------------------------------- update


def _update_state(model_length: int = 4, **kw: object) -> ParticipantState:
    params, _ = make_params(model_length=model_length, **kw)  # type: ignore[arg-type]
    return _state(params, Update(b"s" * 64, b"u" * 64))


def test_update_sub_steps_in_the_original_order() -> None:
    state = _update_state()
    sum_keys = [EncryptKeyPair.generate() for _ in range(2)]
    sum_dict = {bytes([i]) * 32: k.public for i, k in enumerate(sum_keys)}

    req = machine.next_request(state)
    assert req == FetchSums()
    t = machine.step(state, Response(FetchSums(), body=None))  # 204
    assert not t.progress
    t = machine.step(state, Response(FetchSums(), body=encode_sum_dict(sum_dict)))
    assert t.progress and t.state.phase.sum_dict == sum_dict  # type: ignore[union-attr]
    state = t.state
    assert machine.next_request(state) is None

    t = machine.step(state)  # no model in the store: stuck
    assert not t.progress and t.events == ()
    model = np.array([0.5, -0.25, 1.0, 0.0], dtype=np.float32)
    state = machine.with_local_model(state, model)
    t = machine.step(state)  # load: the store is emptied
    assert t.progress and t.state.local_model is None
    assert t.state.phase.model is model  # type: ignore[union-attr]
    t = machine.step(t.state)  # mask
    phase = t.state.phase
    assert isinstance(phase, Update) and phase.model is None and phase.mask is not None
    seed, masked = phase.mask
    assert len(masked.vect) == 4
    t = machine.step(t.state)  # seed dict
    phase = t.state.phase
    assert isinstance(phase, Update) and phase.sum_dict is None and phase.seed_dict is not None
    for pk, k in zip(sum_dict, sum_keys):
        assert k.open(phase.seed_dict[pk]) == seed
    t = machine.step(t.state)  # compose
    assert isinstance(t.state.phase, Sending) and t.state.phase.kind is SendingKind.UPDATE
    payload = UpdatePayload.from_bytes(t.state.phase.data)
    assert payload.masked_model == masked and set(payload.local_seed_dict) == set(sum_dict)
    # 280 + n*b + b + 112*k (docs/PROTOCOL.md 5.3)
    assert 136 + len(t.state.phase.data) == 280 + 4 * 6 + 6 + 112 * 2


def test_update_masks_with_the_scalar_and_unmasks_to_the_weights() -> None:
    state = _update_state(model_length=3, config="Integer/F64/B2/M6")
    state = replace(state, shared=replace(state.shared, scalar=0.5))
    state = machine.step(state, Response(FetchSums(), body=encode_sum_dict({}))).state
    model = np.array([1.5, -2.0, 99.0], dtype=np.float64)
    state = machine.step(machine.with_local_model(state, model)).state
    state = machine.step(state).state
    phase = state.phase
    assert isinstance(phase, Update) and phase.mask is not None
    seed, masked = phase.mask
    from xaynet_sdk.mask.masking import Aggregation

    agg = Aggregation(state.round_params.mask_config, 3)
    agg.aggregate(masked)
    weights = agg.unmask(derive_mask(seed, 3, state.round_params.mask_config))
    assert [float(w) for w in weights] == pytest.approx([1.5, -2.0, 99.0], abs=1e-12)


@pytest.mark.parametrize(
    "config,scalar,model,clamped",
    [
        ("Prime/F32/B0/M3", 1.0, [0.5, -1.0, 1.0, 0.0], 0),  # the bound itself is inside
        ("Prime/F32/B0/M3", 1.0, [1.5, -1.01, 0.2, 3.0], 3),
        ("Prime/F32/B0/M3", 0.25, [1.5, -3.9, 0.2, 4.5], 1),  # the scaled weights count
        ("Integer/F64/B2/M6", 1.0, [150.0, -99.0, 1e300, 0.0], 2),
        ("Prime/I32/B0/M3", 1.0, [2, -1, 0, 1], 1),
        ("Prime/F32/Bmax/M3", 1.0, [3e38, -3e38, 0.0, 1.0], 0),
    ],
)
def test_weights_beyond_the_bound_are_masked_as_it_and_logged(
    config: str, scalar: float, model: list[float], clamped: int, caplog: pytest.LogCaptureFixture
) -> None:
    state = _update_state(model_length=4, config=config)
    state = replace(state, shared=replace(state.shared, scalar=scalar))
    state = machine.step(state, Response(FetchSums(), body=encode_sum_dict({}))).state
    dtype = state.round_params.mask_config.vect.data_type.numpy_dtype
    state = machine.step(machine.with_local_model(state, np.array(model, dtype=dtype))).state
    with caplog.at_level("WARNING", logger="xaynet_sdk"):
        state = machine.step(state).state
    warnings = [r.getMessage() for r in caplog.records if "beyond" in r.getMessage()]
    if clamped:
        (message,) = warnings
        assert message.startswith(f"{clamped} of 4 weights") and config in message
    else:
        assert warnings == []


def test_update_drops_a_cached_model_that_does_not_fit_the_round() -> None:
    state = _update_state(model_length=4)
    state = machine.step(state, Response(FetchSums(), body=encode_sum_dict({}))).state
    state = machine.with_local_model(state, np.zeros(3, dtype=np.float32))
    t = machine.step(state)
    assert not t.progress and t.events == (Event.LOAD_MODEL,) and t.state.local_model is None
    state = machine.with_local_model(state, np.zeros(4, dtype=np.float64))  # F32 round
    t = machine.step(state)
    assert t.events == (Event.LOAD_MODEL,)


def test_update_bad_sum_dict_body_is_no_progress() -> None:
    state = _update_state()
    t = machine.step(state, Response(FetchSums(), body=b"\xff" * 9))
    assert not t.progress and t.state is state


# ----------------------------------------------------------------------------- sending


def test_failed_post_resends_the_same_sealed_bytes() -> None:
    state, coordinator = _e2e_state()
    state = machine.step(machine.step(state).state).state
    first = machine.next_request(state)
    assert isinstance(first, PostMessage) and machine.has_request(state)
    t = machine.step(state, Response(first, ok=False))
    assert not t.progress and t.state.phase.failed == first.body  # type: ignore[union-attr]
    assert machine.has_request(t.state)
    again = machine.next_request(t.state)
    assert isinstance(again, PostMessage) and again.retry and again.body == first.body
    t = machine.step(t.state, Response(again, ok=False))
    assert not t.progress
    t = machine.step(t.state, Response(again, ok=True))
    assert t.progress and t.state.phase.failed is None and t.state.phase.next_index == 1  # type: ignore[union-attr]
    assert machine.next_request(t.state) is None and not machine.has_request(t.state)


def test_multipart_sending_splits_like_the_rust_participant() -> None:
    params, coordinator = make_params(model_length=200)
    state = _state(params, Update(b"s" * 64, b"u" * 64), max_message_size=500)
    state = machine.step(state, Response(FetchSums(), body=encode_sum_dict({}))).state
    state = machine.with_local_model(state, np.linspace(-1, 1, 200, dtype=np.float32))
    state, _ = _run_local(state)
    phase = state.phase
    assert isinstance(phase, Sending) and phase.payload_size == 500 - 184
    data_len = len(phase.data)
    expected_chunks = -(-data_len // (500 - 184 - 8))
    reassembler = Reassembler()
    bodies = []
    while (req := machine.next_request(state)) is not None:
        assert machine.has_request(state)
        assert isinstance(req, PostMessage) and req.count == expected_chunks
        assert len(req.body) <= 500
        bodies.append(req.body)
        msg = decode_message(open_sealed(req.body, coordinator.public, coordinator.secret))
        assert msg.is_multipart and isinstance(msg.payload, ChunkPayload)
        assert msg.payload.chunk_id == len(bodies) - 1
        done = reassembler.add(msg)
        state = machine.step(state, Response(req, ok=True)).state
    assert len(bodies) == expected_chunks >= 2 and not machine.has_request(state)
    assert done is not None and done.payload == phase.data
    t = machine.step(state, None)
    assert isinstance(t.state.phase, Awaiting) and t.events == (Event.IDLE,)


def test_a_new_round_during_multipart_sending_aborts_the_rest() -> None:
    params, _ = make_params(model_length=100)
    state = _state(params, Update(b"s" * 64, b"u" * 64), max_message_size=300)
    state = machine.step(state, Response(FetchSums(), body=encode_sum_dict({}))).state
    state = machine.with_local_model(state, np.ones(100, dtype=np.float32))
    state, _ = _run_local(state)
    req = machine.next_request(state)
    state = machine.step(state, Response(req, ok=True)).state  # type: ignore[arg-type]
    fresh, _ = make_params(model_length=100)
    t = machine.on_params(state, fresh)
    assert t is not None and isinstance(t.state.phase, NewRound)


def test_small_message_size_is_refused_by_the_encoder() -> None:
    from xaynet_sdk.codec.errors import EncodeError

    params, _ = make_params()
    state = _state(params, Sum(EncryptKeyPair.generate(), b"s" * 64), max_message_size=190)
    with pytest.raises(EncodeError, match="194"):
        machine.step(state)


def test_entry_events_on_restore() -> None:
    params, _ = make_params()
    cases = [
        (NewRound(), (Event.NEW_ROUND,)),
        (Awaiting(), (Event.IDLE,)),
        (Sum(EncryptKeyPair.generate(), b"s" * 64), (Event.SUM,)),
        (Update(b"s" * 64, b"u" * 64), (Event.UPDATE, Event.LOAD_MODEL)),
        (Update(b"s" * 64, b"u" * 64, model=np.zeros(4, np.float32)), (Event.UPDATE,)),
        (Sum2(EncryptKeyPair.generate(), b"s" * 64), ()),
        (Sending(SendingKind.SUM2, b""), ()),
    ]
    for phase, events in cases:
        assert machine.entry_events(_state(params, phase)) == events
    cached = _state(params, Update(b"s" * 64, b"u" * 64), local_model=np.zeros(4, np.float32))
    assert machine.entry_events(cached) == (Event.UPDATE,)
