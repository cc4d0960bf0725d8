"""The adoption datasets: real data that ships inside installed packages, split into daily partitions.

Every builder returns the whole frame (shuffled with a fixed seed, so the days are alike) with a key column
and the target; :data:`DATASETS` says how ``init`` is called on it (``--task`` only where init asks for it)
and which corrupt variant of a later day, if any, the suite scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

#: where test_results_table leaves the table for the terminal summary (conftest.pytest_terminal_summary)
TABLE_KEY = pytest.StashKey[dict]()
SEED = 7
TRAIN_DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]  # the training run of the last one trains on all three
SCORE_DAY = "2024-01-04"  # a later clean day: validated, scored, monitored
CORRUPT_DAY = "2024-01-05"  # a corrupt variant of a later day (one per dataset family)
DAYS = [*TRAIN_DAYS, SCORE_DAY]


def _shuffled(df: pd.DataFrame, rows: int | None = None) -> pd.DataFrame:
    df = df.sample(n=rows or len(df), random_state=SEED).reset_index(drop=True)
    return df


def _snake(name: str) -> str:
    return name.strip().replace(" (cm)", "").replace(" ", "_").lower()


def iris() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    df = _shuffled(load_iris(as_frame=True).frame).rename(columns=_snake)
    df.insert(0, "row_id", np.arange(len(df)))
    return df


def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    df = _shuffled(load_breast_cancer(as_frame=True).frame).rename(columns=_snake)
    df.insert(0, "row_id", np.arange(len(df)))
    return df


def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    df = _shuffled(load_diabetes(as_frame=True, scaled=False).frame)  # target: disease progression after a year
    df.insert(0, "patient_id", np.arange(len(df)))
    return df


def digits() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    df = _shuffled(load_digits(as_frame=True).frame, rows=4 * 200)  # 64 int pixel features, 0..16
    df.insert(0, "row_id", np.arange(len(df)))
    return df.astype({c: "int64" for c in df.columns})


def penguins() -> pd.DataFrame:
    import palmerpenguins

    df = _shuffled(palmerpenguins.load_penguins())  # species/island/sex strings, 19 missing values
    df.insert(0, "penguin_id", np.arange(len(df)))
    return df


def fair() -> pd.DataFrame:
    import statsmodels.api as sm

    df = _shuffled(sm.datasets.fair.load_pandas().data, rows=4 * 250)
    codes = ["rate_marriage", "religious", "educ", "occupation", "occupation_husb"]  # category codes as floats
    df[codes] = df[codes].astype("int64")
    df["had_affair"] = (df.pop("affairs") > 0).astype("int64")
    df.insert(0, "woman_id", np.arange(len(df)))
    return df


def randhie() -> pd.DataFrame:
    import statsmodels.api as sm

    # mdvis: visits per year. Skewed counts, weak features: the default HistGradientBoosting needs a few thousand
    # rows to beat the mean (holdout RMSE gain 0.07-0.14 at 3,000 training rows, 0.13-0.32 at 6,000-9,000)
    df = _shuffled(sm.datasets.randhie.load_pandas().data, rows=4 * 2500)
    df.insert(0, "person_id", np.arange(len(df)))
    return df


@dataclass(frozen=True)
class Spec:
    name: str
    family: str
    load: Callable[[], pd.DataFrame]
    target: str
    task: str  # the task the suite expects init to choose (or to be told)
    init_args: tuple[str, ...] = ()  # only what init asks for
    corrupt: str | None = None  # renamed_column | numbers_as_strings | empty_partition
    corrupt_column: str | None = None

    def partitions(self) -> dict[str, pd.DataFrame]:
        df = self.load()
        bounds = np.linspace(0, len(df), len(DAYS) + 1).astype(int)
        return {day: df.iloc[a:b].reset_index(drop=True) for day, a, b in zip(DAYS, bounds[:-1], bounds[1:])}

    def corrupt_day(self, clean: pd.DataFrame) -> pd.DataFrame:
        """A corrupt variant of the clean scoring day."""
        bad = clean.drop(columns=[self.target]).copy()
        if self.corrupt == "renamed_column":
            return bad.rename(columns={self.corrupt_column: self.corrupt_column + "_v2"})
        if self.corrupt == "numbers_as_strings":
            bad[self.corrupt_column] = bad[self.corrupt_column].map(lambda v: f"{v:.1f}")
            return bad
        if self.corrupt == "empty_partition":
            return bad.iloc[:0]
        raise ValueError(self.corrupt)


DATASETS = [
    Spec("iris", "scikit-learn", iris, "target", "multiclass", ("--task", "multiclass")),
    Spec("breast_cancer", "scikit-learn", breast_cancer, "target", "binary",
         corrupt="renamed_column", corrupt_column="mean_radius"),
    Spec("digits", "scikit-learn", digits, "target", "multiclass", ("--task", "multiclass")),
    Spec("penguins", "palmerpenguins", penguins, "species", "multiclass", corrupt="empty_partition"),
    Spec("fair", "statsmodels", fair, "had_affair", "binary",
         corrupt="numbers_as_strings", corrupt_column="age"),
    Spec("diabetes", "scikit-learn", diabetes, "target", "regression"),
    Spec("randhie", "statsmodels", randhie, "mdvis", "regression"),
]
