"""Synthetic example data: a churn-like binary problem, one partition per day, optional drift.

Used by the demo, the tests and the benchmarks. Deterministic for a given seed and date.
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_mlops.store.dates import days_from as date_range  # noqa: F401 - the demo's name for it
from airflow_mlops.store.dates import logical_date

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CONTRACTS", "ExampleDataXCom", "FEATURES", "REGIONS", "SEGMENTS", "SeededPartitions", "churn_day",
           "churn_ground_truth", "date_range", "seed_missing_partitions", "with_segment"]


class SeededPartitions(TypedDict):
    """What :func:`seed_missing_partitions` returns."""

    written: list[str]  #: the days written now
    present: list[str]  #: the days that already had a partition (untouched)
    rows_per_day: int


class ExampleDataXCom(SeededPartitions):
    """The XCom of ``SeedExampleDataOperator``: ``{"dataset_uri", "written", "present", "rows_per_day"}``."""

    dataset_uri: str  #: the dataset seeded


CONTRACTS = ("monthly", "annual", "two_year")
REGIONS = ("north", "south", "east", "west")
FEATURES = ("tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract", "region")


def churn_day(ds: str | dt.date, rows: int = 2000, *, seed: int = 0, drift: float = 0.0,
              label_noise: float = 0.0) -> pd.DataFrame:
    """One day of customers with the ``churned`` label.

    :param drift: 0 = the base distribution; 1 = a shift of charges, usage, support calls and the
        contract mix that stays inside the validated ranges (so it passes the validation gate) but that
        a drift monitor must catch.
    :param label_noise: share of labels flipped at random (to make a model worse on purpose).
    """
    import numpy as np
    import pandas as pd

    day = logical_date(ds)
    rng = np.random.default_rng([seed, zlib.crc32(day.isoformat().encode())])
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70 + 12 * drift, 20, rows).clip(10, 200)
    calls = rng.poisson(1.5 + 1.0 * drift, rows)
    usage = rng.gamma(2.0, 15 + 4 * drift, rows)
    usage[rng.random(rows) < 0.03] = np.nan
    p_contract = np.array([0.5, 0.3, 0.2]) * (1 - drift) + np.array([0.2, 0.3, 0.5]) * drift
    contract = rng.choice(CONTRACTS, rows, p=p_contract)
    region = rng.choice(REGIONS, rows, p=[0.4, 0.3, 0.2, 0.1])
    logit = (-1.0 - 0.05 * tenure + 0.03 * (charges - 70) + 0.6 * calls
             + np.where(contract == "monthly", 1.2, np.where(contract == "annual", 0.0, -1.0))
             - 0.01 * np.nan_to_num(usage, nan=30.0))
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    if label_noise:
        flip = rng.random(rows) < label_noise
        churned[flip] = 1 - churned[flip]
    start = (day - dt.date(2020, 1, 1)).days * 1_000_000
    return pd.DataFrame({
        "customer_id": np.arange(start, start + rows, dtype="int64"),
        "tenure_months": tenure.astype("int64"),
        "monthly_charges": charges.round(2),
        "support_calls": calls.astype("int64"),
        "usage_gb": usage.round(3),
        "contract": contract.astype(object),
        "region": region.astype(object),
        "churned": churned,
    })


#: Values of the ``segment`` column added by :func:`with_segment`.
SEGMENTS = ("consumer", "enterprise")


def with_segment(df: pd.DataFrame, share: float = 0.05, *, key: str = "customer_id",
                 column: str = "segment") -> pd.DataFrame:
    """A copy of ``df`` with a ``segment`` column: ``"enterprise"`` for about ``share`` of the rows,
    ``"consumer"`` for the rest.

    The segment is a function of the key only (crc32 of the key, modulo 10 000), so the scoring input
    and the ground truth of the same customers agree on it, and it is independent of every other
    column: a small, stable slice for per-slice monitoring tests and demos.
    """
    import numpy as np

    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    buckets = np.fromiter((zlib.crc32(str(k).encode()) % 10_000 for k in df[key]), dtype="int64", count=len(df))
    out = df.copy()
    out[column] = np.where(buckets < round(share * 10_000), SEGMENTS[1], SEGMENTS[0]).astype(object)
    return out


def churn_ground_truth(ds: str | dt.date, rows: int = 2000, *, seed: int = 0, drift: float = 0.0,
                       label_noise: float = 0.0, slice_column: str | None = None,
                       slice_value: object = None, slice_label_noise: float = 1.0,
                       segment_share: float = 0.05) -> pd.DataFrame:
    """The late-arriving labels of :func:`churn_day` (same ``ds``, ``rows``, ``seed``, ``drift``):
    ``customer_id`` and ``churned``.

    :param label_noise: share of *all* labels flipped at random (the model looks worse everywhere).
    :param slice_column: with ``slice_value``, degrade one slice only: labels of the rows whose
        ``slice_column`` equals ``slice_value`` are flipped with probability ``slice_label_noise``
        (1.0: all of them, so the model's ranking is inverted on that slice). ``slice_column`` may be
        a column of :func:`churn_day` (``region``, ``contract``) or ``"segment"`` (:func:`with_segment`
        with ``segment_share``; ``"enterprise"`` holds about 5 % of the rows).

    The flips use their own random stream, so the unmodified labels equal ``churn_day(...)["churned"]``.
    """
    import numpy as np

    day_df = churn_day(ds, rows, seed=seed, drift=drift)
    if slice_column == "segment" and "segment" not in day_df:
        day_df = with_segment(day_df, segment_share)
    day = logical_date(ds)
    rng = np.random.default_rng([seed, zlib.crc32(day.isoformat().encode()), 7])
    labels = day_df["churned"].to_numpy().copy()
    flip = rng.random(rows) < label_noise if label_noise else np.zeros(rows, dtype=bool)
    if slice_column is not None:
        if slice_column not in day_df:
            raise ValueError(f"slice_column {slice_column!r} is not a column of the example data; "
                             f"use one of {', '.join([*day_df.columns, 'segment'])}")
        in_slice = (day_df[slice_column] == slice_value).to_numpy()
        flip |= in_slice & (rng.random(rows) < slice_label_noise)
    labels[flip] = 1 - labels[flip]
    return day_df[["customer_id"]].assign(churned=labels.astype("int64"))


def seed_missing_partitions(dataset: Any, days: list[str], rows: int) -> SeededPartitions:
    """Write :func:`churn_day` partitions for the ``days`` that ``dataset`` lacks (the example model's
    self-seeding on a fresh install). Existing partitions are never touched, so reruns change nothing.

    Returns ``{"written": [...], "present": [...], "rows_per_day": rows}``.
    """
    written, present = [], []
    for day in days:
        if dataset.exists(day):
            present.append(day)
            continue
        dataset.write(day, churn_day(day, rows=rows))
        written.append(day)
    return {"written": written, "present": present, "rows_per_day": rows}
