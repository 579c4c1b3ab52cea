"""Checks shared by the end-to-end tests: which update participants does a global model come from?

Every participant in these tests has its own distinct local model and a known scalar, so a
published global model identifies the set of updates the coordinator aggregated: it must be
the scalar-weighted mean of exactly one subset of the participants' (converted) models.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import requests
from reference import RefHang, ref_ratio_to_primitive

from xaynet_sdk.codec.bincode import RoundParameters
from xaynet_sdk.mask.config import DataType, MaskConfig
from xaynet_sdk.mask.masking import clamp_scalar

__all__ = [
    "Contribution",
    "RoundWatcher",
    "converted",
    "exact_model",
    "match_subset",
    "model_of_round",
    "tolerance",
    "weighted_mean",
]


@dataclass(frozen=True)
class Contribution:
    name: str
    model: tuple[Fraction, ...]  # the local model as the coordinator sees it (exact)
    scalar: Fraction  # the clamped scalar


def exact_model(values: Sequence[Any], data_type: DataType) -> tuple[Fraction, ...]:
    """The exact rationals of a local model after the §8.2 conversion."""
    arr = np.asarray(values, dtype=data_type.numpy_dtype)
    if data_type.is_float:
        return tuple(Fraction(float(v)) for v in arr)
    return tuple(Fraction(int(v)) for v in arr)


def contribution(
    name: str, values: Sequence[Any], scalar: float, config: MaskConfig
) -> Contribution:
    return Contribution(name, exact_model(values, config.data_type), clamp_scalar(scalar, config))


def weighted_mean(parts: Iterable[Contribution]) -> list[Fraction]:
    parts = list(parts)
    total = sum((p.scalar for p in parts), Fraction(0))
    n = len(parts[0].model)
    return [sum((p.scalar * p.model[j] for p in parts), Fraction(0)) / total for j in range(n)]


def tolerance(config: MaskConfig, n_models: int) -> Fraction:
    """How far the unmasked mean may be from the exact one: the fixed-point truncation."""
    return Fraction(n_models + 1, config.exp_shift) * 4


def match_subset(
    global_model: Sequence[Fraction],
    parts: Sequence[Contribution],
    config: MaskConfig,
    size: Optional[int] = None,
    probe: int = 64,
) -> list[str]:
    """The names of the one subset whose weighted mean is the global model (else AssertionError)."""
    matches = []
    sizes = [size] if size is not None else range(1, len(parts) + 1)
    head = list(global_model[:probe])
    for k in sizes:
        for subset in itertools.combinations(parts, k):
            if sum(p.scalar for p in subset) == 0:
                continue
            trimmed = [Contribution(p.name, p.model[:probe], p.scalar) for p in subset]
            mean = weighted_mean(trimmed)
            tol = tolerance(config, k) / min(p.scalar for p in subset)
            if all(abs(a - b) <= tol for a, b in zip(mean, head)):
                matches.append(subset)
    assert len(matches) == 1, f"global model matches {len(matches)} subsets: {matches}"
    subset = matches[0]
    if len(global_model) > probe:  # the rest in floating point: exact rationals are slow
        total = float(sum(p.scalar for p in subset))
        expected = (
            sum(float(p.scalar) * np.array(p.model, dtype=np.float64) for p in subset) / total
        )
        got = np.array([float(w) for w in global_model])
        assert np.allclose(got, expected, rtol=0, atol=1e-9 * max(1.0, float(config.add_shift)))
    return sorted(p.name for p in subset)


def converted(model: list[Any], data_type: str) -> Optional[list[Any]]:
    """An exact global model (fractions) as the original participant converts it; None where
    the original would hang (docs/PROTOCOL.md 8.3)."""
    try:
        return [ref_ratio_to_primitive(w.numerator, w.denominator, data_type) for w in model]
    except RefHang:
        return None


def model_of_round(coord: Any, round_id: int) -> list[Any]:
    """The global model published by a completed round (models are kept in order)."""
    completed_ids = [r.round_id for r in coord.history if r.completed]
    models = coord.global_models
    index = completed_ids.index(round_id) - (len(completed_ids) - len(models))
    return models[index]  # type: ignore[no-any-return]


@dataclass
class RoundWatcher:
    """Polls the coordinator for each round's parameters (to know the roles afterwards)."""

    coord: Any
    params: dict[int, RoundParameters] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            before = self.coord.round_id
            try:
                body = session.get(self.coord.url + "/params", timeout=2).content
            except requests.RequestException:
                continue
            if self.coord.round_id == before and before not in self.params:
                self.params[before] = RoundParameters.from_bytes(body)
            self.stop.wait(0.05)

    def __enter__(self) -> "RoundWatcher":
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
