"""Hostile and broken messages: each is rejected for its reason, and the round still succeeds.

Every case runs a real round over HTTP with raw participants (:func:`run_round`): the bad
message is sent while its phase is guaranteed to be open, then the round must end with the
exact global model of the honest participants, and ``stats`` must show exactly the expected
rejection. HTTP replies stay 200, as in the original.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from coordinator_fixtures import (  # noqa: E402
    RawClient,
    RawParticipant,
    RoundContext,
    assert_model_close,
    local_coordinator,
    raw_round_settings,
    run_round,
)

from xaynet_sdk.codec.crypto import seal  # noqa: E402
from xaynet_sdk.codec.message import (  # noqa: E402
    ChunkPayload,
    Sum2Payload,
    SumPayload,
    Tag,
    UpdatePayload,
    encode_message,
)
from xaynet_sdk.coordinator import Limits, Phase  # noqa: E402
from xaynet_sdk.mask.config import MaskConfig, MaskConfigPair  # noqa: E402
from xaynet_sdk.mask.objects import MaskObject  # noqa: E402

__all__ = ["local_coordinator"]

Bodies = Callable[[RoundContext], list[bytes]]


# ----------------------------------------------------------------------------- message builders


def _garbage(ctx: RoundContext) -> list[bytes]:
    return [os.urandom(300), b"", os.urandom(47)]


def _sealed_garbage(ctx: RoundContext) -> list[bytes]:
    return [seal(b"\x00" * 100, ctx.params.pk)]  # shorter than a header


def _bad_tag(ctx: RoundContext) -> list[bytes]:
    s = RawParticipant.with_role(ctx.params, "sum")
    plain = bytearray(s.plaintext(ctx.params, s.sum_payload(ctx.params)))
    plain[132] = 9
    plain[0:64] = s.keys.sign(bytes(plain[64:]))  # correctly signed, unknown tag
    return [seal(bytes(plain), ctx.params.pk)]


def _truncated_payload(ctx: RoundContext) -> list[bytes]:
    s = RawParticipant.with_role(ctx.params, "sum")
    return [s.sealed(ctx.params, s.sum_signature(ctx.params)[:50], tag=Tag.Sum)]


def _sum2_in_sum(ctx: RoundContext) -> list[bytes]:
    s = ctx.summers[0]
    empty = MaskObject.empty(ctx.params.mask_config)
    return [s.sealed(ctx.params, Sum2Payload(s.sum_signature(ctx.params), empty))]


def _bad_signature(ctx: RoundContext) -> list[bytes]:
    s = RawParticipant.with_role(ctx.params, "sum")
    plain = bytearray(s.plaintext(ctx.params, s.sum_payload(ctx.params)))
    plain[-1] ^= 0x01  # after signing
    return [seal(bytes(plain), ctx.params.pk)]


def _wrong_coordinator_pk(ctx: RoundContext) -> list[bytes]:
    s = RawParticipant.with_role(ctx.params, "sum")
    return [s.sealed(ctx.params, s.sum_payload(ctx.params), coordinator_pk=os.urandom(32))]


def _sum_not_eligible(ctx: RoundContext) -> list[bytes]:
    bodies = []
    for role in ("update", "none"):
        p = RawParticipant.with_role(ctx.params, role)
        bodies.append(p.sealed(ctx.params, p.sum_payload(ctx.params)))
    # a valid message whose sum signature is not a signature of this round's seed
    p = RawParticipant.with_role(ctx.params, "sum")
    bodies.append(p.sealed(ctx.params, SumPayload(os.urandom(64), os.urandom(32))))
    return bodies


def _sum_duplicate(ctx: RoundContext) -> list[bytes]:
    twin = RawParticipant(ctx.summers[0].keys)  # same identity, a new ephemeral key
    return [twin.sealed(ctx.params, twin.sum_payload(ctx.params))]


def _sum_replay(ctx: RoundContext) -> list[bytes]:
    return [ctx.sent["sum"][0]]


def _update_duplicate(ctx: RoundContext) -> list[bytes]:
    u = RawParticipant(ctx.updaters[0].keys)  # same identity, a new mask seed
    return [u.sealed(ctx.params, u.update_payload(ctx.params, ctx.sum_dict, ctx.models[0]))]


def _update_replay(ctx: RoundContext) -> list[bytes]:
    return [ctx.sent["update"][0]]


def _new_update(ctx: RoundContext, sum_dict: dict[bytes, bytes]) -> bytes:
    u = RawParticipant.with_role(ctx.params, "update")
    return u.sealed(ctx.params, u.update_payload(ctx.params, sum_dict, ctx.models[0]))


def _seed_dict_too_short(ctx: RoundContext) -> list[bytes]:
    first = next(iter(ctx.sum_dict.items()))
    return [_new_update(ctx, dict([first]))]


def _seed_dict_unknown_key(ctx: RoundContext) -> list[bytes]:
    first = next(iter(ctx.sum_dict.items()))
    return [_new_update(ctx, dict([first, (os.urandom(32), first[1])]))]


def _modified_update(ctx: RoundContext, masked: MaskObject) -> bytes:
    u = RawParticipant.with_role(ctx.params, "update")
    honest = u.update_payload(ctx.params, ctx.sum_dict, ctx.models[0])
    payload = UpdatePayload(
        honest.sum_signature, honest.update_signature, masked, honest.local_seed_dict
    )
    return u.sealed(ctx.params, payload)


def _invalid_models(ctx: RoundContext) -> list[bytes]:
    configs = ctx.params.mask_config
    n = ctx.params.model_length
    order = configs.vect.order
    other = MaskConfigPair.single(MaskConfig.from_name("Integer/F64/B2/M6"))
    return [
        _modified_update(ctx, MaskObject.from_ints(configs, [order] * n, 1)),  # out of range
        _modified_update(ctx, MaskObject.from_ints(configs, [1] * (n - 1), 1)),  # too short
        _modified_update(ctx, MaskObject.from_ints(other, [1] * n, 1)),  # another config
        _modified_update(ctx, MaskObject.from_ints(configs, [1] * n, configs.unit.order)),
    ]


def _update_from_summer(ctx: RoundContext) -> list[bytes]:
    s = RawParticipant(ctx.summers[0].keys)
    return [s.sealed(ctx.params, s.update_payload(ctx.params, ctx.sum_dict, ctx.models[0]))]


def _late_sum(ctx: RoundContext) -> list[bytes]:
    s = RawParticipant.with_role(ctx.params, "sum")
    return [s.sealed(ctx.params, s.sum_payload(ctx.params))]


def _sum2_duplicate(ctx: RoundContext) -> list[bytes]:
    s = ctx.summers[0]
    return [s.sealed(ctx.params, s.sum2_payload(ctx.params, ctx.seeds[s.pk]))]


def _sum2_replay(ctx: RoundContext) -> list[bytes]:
    return [ctx.sent["sum2"][0]]


def _sum2_stranger(ctx: RoundContext) -> list[bytes]:
    s = RawParticipant.with_role(ctx.params, "sum")  # eligible, but never sent a Sum
    honest = ctx.summers[0]
    mask = honest.sum2_payload(ctx.params, ctx.seeds[honest.pk]).model_mask  # the right mask
    return [s.sealed(ctx.params, Sum2Payload(s.sum_signature(ctx.params), mask))]


def _sum2_from_updater(ctx: RoundContext) -> list[bytes]:
    u = ctx.updaters[0]
    mask = MaskObject.from_ints(ctx.params.mask_config, [0] * ctx.params.model_length, 0)
    return [u.sealed(ctx.params, Sum2Payload(u.sum_signature(ctx.params), mask))]


def _invalid_masks(ctx: RoundContext) -> list[bytes]:
    s = ctx.summers[0]
    configs = ctx.params.mask_config
    n = ctx.params.model_length
    sig = s.sum_signature(ctx.params)
    return [
        s.sealed(ctx.params, Sum2Payload(sig, MaskObject.empty(configs))),  # no numbers
        s.sealed(
            ctx.params, Sum2Payload(sig, MaskObject.from_ints(configs, [configs.vect.order] * n, 0))
        ),
    ]


def _late_update(ctx: RoundContext) -> list[bytes]:
    return [_new_update(ctx, ctx.sum_dict)]


CASES: list[tuple[str, str, Bodies, dict[str, int]]] = [
    ("garbage", "sum", _garbage, {"decrypt": 3}),
    ("sealed garbage", "sum", _sealed_garbage, {"malformed": 1}),
    ("unknown tag", "sum", _bad_tag, {"malformed": 1}),
    ("truncated payload", "sum", _truncated_payload, {"malformed": 1}),
    ("Sum2 in Sum", "sum", _sum2_in_sum, {"wrong_phase": 1}),
    ("bad signature", "sum", _bad_signature, {"bad_signature": 1}),
    ("wrong coordinator pk", "sum", _wrong_coordinator_pk, {"wrong_coordinator_pk": 1}),
    ("Sum from a non-summer", "sum", _sum_not_eligible, {"not_eligible": 3}),
    ("duplicate Sum", "sum", _sum_duplicate, {"duplicate": 1}),
    ("replayed Sum", "sum", _sum_replay, {"replay": 1}),
    ("duplicate Update", "update", _update_duplicate, {"duplicate": 1}),
    ("replayed Update", "update", _update_replay, {"replay": 1}),
    ("seed dict too short", "update", _seed_dict_too_short, {"seed_dict_mismatch": 1}),
    ("seed for a stranger", "update", _seed_dict_unknown_key, {"unknown_sum_participant": 1}),
    ("invalid masked models", "update", _invalid_models, {"invalid_model": 4}),
    ("Update from a summer", "update", _update_from_summer, {"not_eligible": 1}),
    ("late Sum", "update", _late_sum, {"wrong_phase": 1}),
    ("duplicate Sum2", "sum2", _sum2_duplicate, {"duplicate": 1}),
    ("replayed Sum2", "sum2", _sum2_replay, {"replay": 1}),
    ("Sum2 from a stranger", "sum2", _sum2_stranger, {"unknown_sum_participant": 1}),
    ("Sum2 from an updater", "sum2", _sum2_from_updater, {"not_eligible": 1}),
    ("invalid masks", "sum2", _invalid_masks, {"invalid_mask": 2}),
    ("late Update", "sum2", _late_update, {"wrong_phase": 1}),
]


@pytest.mark.parametrize(
    ("phase", "bodies", "expected"),
    [pytest.param(p, b, e, id=name) for name, p, b, e in CASES],
)
def test_rejected_without_harming_the_round(
    local_coordinator,  # type: ignore[no-untyped-def]
    phase: str,
    bodies: Bodies,
    expected: dict[str, int],
) -> None:
    coord = local_coordinator(raw_round_settings())

    def hook(ctx: RoundContext) -> None:
        for body in bodies(ctx):
            assert ctx.client.post(body) == 200  # the original never tells

    run_round(coord, hooks={phase: hook})  # checks the exact global model
    stats = coord.stats
    assert stats["rejected"] == expected
    assert stats["rejected_by_phase"] == {
        {"sum": "Sum", "update": "Update", "sum2": "Sum2"}[phase]: expected
    }
    assert stats["accepted"] == {"Sum": 2, "Update": 3, "Sum2": 2}
    assert stats["rounds_completed"] == 1 and stats["rounds_failed"] == 0


def test_messages_from_the_previous_round(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """Sealed to the old key: decrypt; old header: wrong pk; old signatures: not eligible."""
    coord = local_coordinator(raw_round_settings())
    old = run_round(coord)
    old_summer = old.summers[0]
    old_plain = old_summer.plaintext(old.params, old_summer.sum_payload(old.params))

    def hook(ctx: RoundContext) -> None:
        assert ctx.params.pk != old.params.pk
        for body in (
            old.sent["sum"][0],  # the very bytes accepted last round
            old.sent["update"][0],
            seal(old_plain, ctx.params.pk),  # re-sealed, but the header names the old key
            old_summer.sealed(
                ctx.params, SumPayload(old_summer.sum_signature(old.params), os.urandom(32))
            ),
        ):
            assert ctx.client.post(body) == 200

    coord.wait_for_round(2, 10)
    run_round(coord, hooks={"sum": hook})
    stats = coord.stats
    # The last one is sum-eligible under the new seed only by chance (p = 0.5 of a 50% key).
    rejected = dict(stats["rejected"])
    assert rejected.pop("decrypt") == 2 and rejected.pop("wrong_coordinator_pk") == 1
    assert rejected == {"not_eligible": 1}
    assert stats["rounds_completed"] == 2


def test_over_the_maximum_count_is_discarded(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(
        raw_round_settings(
            min_sum_count=1,
            max_sum_count=1,
            min_sum2_count=1,
            max_sum2_count=1,
            min_sum_time=0.6,
        )
    )

    def late(ctx: RoundContext) -> None:  # after the one accepted Sum, within min_sum_time
        s = RawParticipant.with_role(ctx.params, "sum")
        assert ctx.client.post(s.sealed(ctx.params, s.sum_payload(ctx.params))) == 200
        assert coord.phase is Phase.SUM

    _one_summer_round_with_late_sum(coord, late)
    stats = coord.stats
    assert stats["rejected"] == {"discarded": 1}
    assert stats["accepted"]["Sum"] == 1 and stats["rounds_completed"] == 1


def _one_summer_round_with_late_sum(coord, late) -> None:  # type: ignore[no-untyped-def]
    """A round with a single summer; ``late`` sends more while min_sum_time keeps Sum open."""
    client = RawClient(coord.url)
    try:
        params = client.params()
        summer = RawParticipant.with_role(params, "sum")
        assert client.post(summer.sealed(params, summer.sum_payload(params))) == 200
        ctx = RoundContext(coord, client, params, [summer], [], [])
        late(ctx)
        coord.wait_for_phase(Phase.UPDATE, 10)
        sum_dict = client.sums()
        assert sum_dict is not None and list(sum_dict) == [summer.pk]
        models = [[0.25, -0.5, 0.125, 1.0]] * 3
        for model in models:
            u = RawParticipant.with_role(params, "update")
            assert client.post(u.sealed(params, u.update_payload(params, sum_dict, model))) == 200
        coord.wait_for_phase(Phase.SUM2, 10)
        seeds = client.seeds(summer.pk)
        assert seeds is not None
        assert client.post(summer.sealed(params, summer.sum2_payload(params, seeds))) == 200
        (model,) = coord.wait_for_global_models(1, 10)
        assert_model_close(model, params.mask_config.vect, models, [1.0] * 3)
    finally:
        client.close()


# ----------------------------------------------------------------------------- multipart bounds


def test_multipart_update_is_reassembled(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(raw_round_settings(model_length=200))
    ctx = run_round(coord, multipart=300)  # ~1.6 kB update in chunks of <= 300 sealed bytes
    chunks = len(ctx.sent["update"]) - 2
    assert chunks >= 5
    stats = coord.stats
    assert stats["chunks_buffered"] == chunks - 1 and stats["rejected"] == {}
    assert stats["accepted"]["Update"] == 3
    assert stats["multipart_buffered"] == [0, 0]


def _chunks(ctx: RoundContext, max_message_size: int) -> list[bytes]:
    u = RawParticipant.with_role(ctx.params, "update")
    payload = u.update_payload(ctx.params, ctx.sum_dict, ctx.models[0])
    return u.sealed_chunks(ctx.params, payload, max_message_size)


def test_multipart_byte_bound(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(
        raw_round_settings(model_length=200), limits=Limits(multipart_max_bytes=1000)
    )

    def hook(ctx: RoundContext) -> None:
        for body in _chunks(ctx, 300):  # ~1.6 kB of chunk data: cannot fit in 1000 bytes
            assert ctx.client.post(body) == 200

    run_round(coord, hooks={"update": hook})
    stats = coord.stats
    assert stats["rejected"].get("multipart", 0) >= 1
    assert set(stats["rejected"]) == {"multipart"}
    assert stats["accepted"]["Update"] == 3  # the oversized message never completed


def test_multipart_count_and_age_bounds(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(
        raw_round_settings(model_length=200),
        limits=Limits(multipart_max_messages=2, multipart_max_age=0.3),
    )
    seen: dict[str, object] = {}

    def hook(ctx: RoundContext) -> None:
        firsts = [_chunks(ctx, 300)[0] for _ in range(4)]  # four messages, first chunks only
        for body in firsts:
            assert ctx.client.post(body) == 200
        seen["count"] = coord.stats["multipart_buffered"][0]
        time.sleep(0.4)
        one = _chunks(ctx, 300)  # a new chunk triggers the expiry of the idle ones
        assert ctx.client.post(one[0]) == 200
        seen["after_age"] = coord.stats["multipart_buffered"][0]

    run_round(coord, hooks={"update": hook})
    assert seen == {"count": 2, "after_age": 1}
    assert coord.stats["rejected"] == {}


def test_multipart_per_participant_and_inconsistent_chunks(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    coord = local_coordinator(raw_round_settings(model_length=200))
    seen: dict[str, object] = {}

    def hook(ctx: RoundContext) -> None:
        u = RawParticipant.with_role(ctx.params, "update")
        for message_id in range(6):  # one sender, six concurrent messages: at most 4 kept
            chunk = ChunkPayload(0, message_id, False, b"x" * 100)
            body = seal(
                encode_message(chunk, Tag.Update, u.pk, u.keys.secret, ctx.params.pk),
                ctx.params.pk,
            )
            assert ctx.client.post(body) == 200
        seen["per_participant"] = coord.stats["multipart_buffered"][0]
        # chunk 3, then chunk 1 flagged as the last one: inconsistent, refused
        for chunk in (ChunkPayload(3, 99, False, b"cd"), ChunkPayload(1, 99, True, b"ab")):
            body = seal(
                encode_message(chunk, Tag.Update, u.pk, u.keys.secret, ctx.params.pk),
                ctx.params.pk,
            )
            assert ctx.client.post(body) == 200

    run_round(coord, hooks={"update": hook})
    assert seen["per_participant"] == 4
    stats = coord.stats
    assert stats["rejected"] == {"multipart": 1}


def test_hostile_round_all_at_once(local_coordinator) -> None:  # type: ignore[no-untyped-def]
    """Every case in one round, interleaved with the honest messages."""
    coord = local_coordinator(raw_round_settings(model_length=16))
    by_phase: dict[str, list[Bodies]] = {}
    expected: dict[str, int] = {}
    for _, phase, bodies, counts in CASES:
        by_phase.setdefault(phase, []).append(bodies)
        for reason, count in counts.items():
            expected[reason] = expected.get(reason, 0) + count

    def make_hook(builders: list[Bodies]) -> Callable[[RoundContext], None]:
        def hook(ctx: RoundContext) -> None:
            for build in builders:
                for body in build(ctx):
                    assert ctx.client.post(body) == 200

        return hook

    run_round(coord, hooks={phase: make_hook(b) for phase, b in by_phase.items()})
    assert coord.stats["rejected"] == expected
