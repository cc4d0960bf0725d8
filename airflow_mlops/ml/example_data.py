"""Synthetic example data: a churn-like binary problem, one partition per day, optional drift.

Used by the demo, the tests and the benchmarks. Deterministic for a given seed and date.
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

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

    day = dt.date.fromisoformat(str(ds)[:10])
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


def date_range(start: str | dt.date, days: int) -> list[str]:
    s = dt.date.fromisoformat(str(start)[:10])
    return [(s + dt.timedelta(days=i)).isoformat() for i in range(days)]
