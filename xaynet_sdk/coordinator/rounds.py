"""The round thread: phase timing, the unmask, publishing, and the next round.

Each of Sum, Update and Sum2 follows the original's timing (docs/PROTOCOL.md section 13.2): the
phase takes messages for at least ``min_time``; after that it ends as soon as it has
``min_count`` accepted messages, or fails at ``max_time``. The thread sleeps on the state's
condition, which every accepted message notifies, so a phase ends the moment its count is met
(no polling). Ending means: stop taking new messages, let the ones already in flight settle
(see :mod:`.state`), then open the next phase in the same critical section.

A failed round (a phase timed out, the masks tie, the unmask fails) is logged with its reason
and counted, and the next round starts at once, as the original's Error → Idle does. The
unmask runs outside the lock, so ``/params`` polling goes on meanwhile; its all-zero-scalars
case, a panic in the original, is one more failed round here.

With ``[s3]`` the global model is uploaded before it is published; a failed upload fails the
round (``model_storage``), as in the original. With ``[redis]`` the next round and the
published model are stored in one step (:meth:`~.state.CoordinatorState.begin_round`); while
Redis cannot be written, the thread waits and retries each second (the outage is logged once)
and the coordinator keeps serving the ended round's parameters and the previous model.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import numpy.typing as npt

from ..codec.bincode import encode_model
from ..exceptions import XaynetError
from ..mask.config import DataType
from ..mask.errors import MaskError
from ..mask.model import GlobalModelError, decode_global_model
from .outcomes import Phase
from .state import CoordinatorState, PublishedModel, Round, RoundRecord
from .stats import Stats
from .store import StoreError, global_model_id, phase_index

if TYPE_CHECKING:
    from .s3 import S3ModelStore

__all__ = ["RoundDriver", "RoundFailed", "save_model_npy"]

_log = logging.getLogger("xaynet_sdk.coordinator.rounds")


class RoundFailed(XaynetError):
    """A round ends without a global model; ``kind`` is the key in ``stats["round_failures"]``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class _PhaseRule:
    phase: Phase
    min_count: int
    max_count: int
    min_time: float
    max_time: float


class RoundDriver:
    """Runs rounds in a daemon thread until :meth:`stop`."""

    def __init__(
        self, state: CoordinatorState, stats: Stats, models: "Optional[S3ModelStore]" = None
    ) -> None:
        self.state = state
        self.stats = stats
        self.models = models
        pet = state.settings.pet
        self.rules = (
            _PhaseRule(
                Phase.SUM, pet.min_sum_count, pet.max_sum_count, pet.min_sum_time, pet.max_sum_time
            ),
            _PhaseRule(
                Phase.UPDATE,
                pet.min_update_count,
                pet.max_update_count,
                pet.min_update_time,
                pet.max_update_time,
            ),
            _PhaseRule(
                Phase.SUM2,
                pet.min_sum2_count,
                pet.max_sum2_count,
                pet.min_sum2_time,
                pet.max_sum2_time,
            ),
        )
        self.model_dir = state.settings.model_dir
        self._thread = threading.Thread(
            target=self._run, name="xaynet-coordinator-rounds", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Ask the thread to end and wait for it (an unmask in progress is finished first)."""
        with self.state.cond:
            self.state.stopping = True
            self.state.cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        state = self.state
        while True:
            with state.lock:
                if state.stopping:
                    return
                current = state.round
            model: Optional[PublishedModel] = None
            failure: Optional[RoundFailed] = None
            try:
                model = self._run_round(current)
            except RoundFailed as e:
                failure = e
            except Exception:  # noqa: BLE001 - a bug must not stop the coordinator
                _log.exception("internal error in round %d", current.round_id)
                failure = RoundFailed("internal_error", "internal error (see the traceback)")
            if model is None and failure is None:
                return  # stopping
            try:
                self._finish(current, model, failure)
            except Exception:  # noqa: BLE001 - keep serving; try a fresh round after a pause
                _log.exception("internal error after round %d", current.round_id)
                with state.cond:
                    state.cond.wait(1.0)
                    if not state.stopping and state.round is current:
                        self._begin_next(None)

    def _finish(
        self, current: Round, model: Optional[PublishedModel], failure: Optional[RoundFailed]
    ) -> None:
        """Save and publish the model (or count the failure), record the round, start the next."""
        state = self.state
        if model is not None and self.models is not None:
            try:
                assert model.id is not None
                self.models.put(model.id, model.data)
            except StoreError as e:
                model, failure = None, RoundFailed("model_storage", str(e))
        if model is not None and self.model_dir is not None:
            self._save(model)
        with state.lock:
            ended = state.clock()
            state.record(
                RoundRecord(
                    round_id=current.round_id,
                    seed=current.seed,
                    completed=model is not None,
                    failure=str(failure) if failure is not None else None,
                    sum_count=current.accepted[Phase.SUM],
                    update_count=current.accepted[Phase.UPDATE],
                    sum2_count=current.accepted[Phase.SUM2],
                    started=current.started,
                    ended=ended,
                )
            )
            if model is not None:
                self.stats.round_completed()
                _log.info(
                    "round %d completed in %.2f s: global model published from %d updates",
                    current.round_id,
                    ended - current.started,
                    current.accepted[Phase.UPDATE],
                )
            elif failure is not None:
                self.stats.round_failed(failure.kind)
                _log.warning("round %d failed: %s", current.round_id, failure)
            if state.stopping:
                if model is not None:
                    # Not stored: a restarted coordinator unmasks this round again.
                    state.publish_model(model)
                return
            following = self._begin_next(model)
            if following is None:
                return
            _log.info(
                "round %d: Idle -> Sum (sum %.4g, update %.4g, %s, model length %d)",
                following.round_id,
                following.params.sum,
                following.params.update,
                state.settings.mask.name,
                state.settings.model_length,
            )

    def _begin_next(self, model: Optional[PublishedModel]) -> Optional[Round]:
        """Publish ``model`` and begin the next round (lock held); None if stopped meanwhile.

        A store that cannot be written is retried each second (it logs the outage once)."""
        state = self.state
        while True:
            try:
                return state.begin_round(model)
            except StoreError:
                state.cond.wait(1.0)
                if state.stopping:
                    if model is not None:
                        state.publish_model(model)
                    return None

    def _run_round(self, current: Round) -> Optional[PublishedModel]:
        """Sum, Update, Sum2 and Unmask; the published model, or None when stopping.

        A restored round starts in the phase it was in: the phases before are skipped."""
        for rule in self.rules:
            if phase_index(rule.phase) < phase_index(current.phase):
                continue
            if not self._run_phase(current, rule):
                return None
        return self._unmask(current)

    def _run_phase(self, current: Round, rule: _PhaseRule) -> bool:
        """Wait out the phase, close it, open the next one; False when stopping."""
        state = self.state
        with state.cond:
            start = current.phase_started
            while True:
                if state.stopping:
                    return False
                elapsed = state.clock() - start
                if elapsed >= rule.min_time and current.accepted[rule.phase] >= rule.min_count:
                    break
                if elapsed >= rule.max_time:
                    break
                limit = rule.min_time if elapsed < rule.min_time else rule.max_time
                state.cond.wait(limit - elapsed)
            # Stop issuing tickets for this phase; settle those already issued.
            current.closing = True
            deadline = state.clock() + state.limits.inflight_grace
            while current.inflight > 0 and not state.stopping:
                remaining = deadline - state.clock()
                if remaining <= 0:
                    _log.warning(
                        "round %d: %d message(s) still in processing when the %s phase ended",
                        current.round_id,
                        current.inflight,
                        rule.phase.value,
                    )
                    break
                state.cond.wait(remaining)
            if state.stopping:
                return False
            accepted = current.accepted[rule.phase]
            elapsed = state.clock() - start
            counts = (
                f"{accepted} accepted (min {rule.min_count}, max {rule.max_count}),"
                f" {current.rejected[rule.phase]} rejected,"
                f" {current.discarded[rule.phase]} discarded"
            )
            if accepted < rule.min_count:
                raise RoundFailed(
                    f"{rule.phase.value.lower()}_timeout",
                    f"the {rule.phase.value} phase timed out after {elapsed:.2f} s: {counts}",
                )
            following = {Phase.SUM: Phase.UPDATE, Phase.UPDATE: Phase.SUM2}.get(
                rule.phase, Phase.UNMASK
            )
            if rule.phase is Phase.SUM:
                state.open_update(current)
            elif rule.phase is Phase.UPDATE:
                state.open_sum2(current)
            else:
                state.open_unmask(current)
            _log.info(
                "round %d: %s -> %s after %.2f s: %s",
                current.round_id,
                rule.phase.value,
                following.value,
                elapsed,
                counts,
            )
            return True

    def _unmask(self, current: Round) -> PublishedModel:
        """The mask with the strictly highest count unmasks the aggregate (outside the lock)."""
        with self.state.lock:
            ranking = current.mask_counts.most_common(2)
            masks = list(current.masks)
            aggregation = current.aggregation
        if not ranking:
            raise RoundFailed("no_mask", "no mask was submitted")
        if len(ranking) > 1 and ranking[0][1] == ranking[1][1]:
            raise RoundFailed(
                "ambiguous_masks",
                f"ambiguous masks: the two most frequent masks have {ranking[0][1]} votes each",
            )
        mask = masks[ranking[0][0]]
        fractions: Optional[list[Fraction]] = None
        try:
            data = aggregation.unmask_to_bincode(mask)
            if data is None:
                fractions = aggregation.unmask(mask)
                data = encode_model((f.numerator, f.denominator) for f in fractions)
        except MaskError as e:  # AggregationError, or the C core refused (translated)
            raise RoundFailed("unmask_failed", f"unmasking failed: {e}") from None
        return PublishedModel(
            current.round_id, data, fractions, id=global_model_id(current.round_id, current.seed)
        )

    # -- saving -------------------------------------------------------------------------------
    def _save(self, model: PublishedModel) -> None:
        assert self.model_dir is not None
        path = self.model_dir / f"global_model_round_{model.round_id:06d}.npy"
        try:
            save_model_npy(model, self.state.settings.mask.data_type, path)
        except OSError as e:
            _log.warning("could not save the global model of round %d: %s", model.round_id, e)


def save_model_npy(model: PublishedModel, data_type: DataType, path: Path) -> None:
    """Write the model as ``.npy`` in the round's data type, as a participant would read it.

    Weights the original participant could not convert (out of range, or an infinite
    quotient) make the file fall back to float64 of the exact values, with a warning.
    """
    array: npt.NDArray[Any]
    try:
        array = decode_global_model(model.data, data_type)
    except GlobalModelError as e:
        _log.warning(
            "round %d: the global model does not convert to %s (%s); saving float64 instead",
            model.round_id,
            data_type.name,
            e,
        )
        array = np.array([_to_float(f) for f in model.fractions()], dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _to_float(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")
