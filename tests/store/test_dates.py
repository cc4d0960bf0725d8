"""The one logical-date parser (airflow_mlops.store.dates) and the day arithmetic built on it."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_mlops.store.datasets import DataError, partition_name
from airflow_mlops.store.dates import (
    days_before,
    days_ending,
    days_from,
    end_of_day,
    logical_date,
    logical_ds,
)


@pytest.mark.parametrize("value", ["2024-02-29", "2024-02-29T00:00:00+00:00", " 2024-02-29 ", dt.date(2024, 2, 29),
                                   dt.datetime(2024, 2, 29, 23, 30, tzinfo=dt.UTC)])
def test_every_form_of_a_logical_date_parses_to_its_day(value):
    assert logical_date(value) == dt.date(2024, 2, 29)
    assert logical_ds(value) == "2024-02-29"
    assert partition_name(value) == "ds=2024-02-29"


@pytest.mark.parametrize("value", ["yesterday", "2024-02-30", "", "2024/02/29"])
def test_a_non_date_is_refused_naming_the_value(value):
    with pytest.raises(ValueError, match="is not YYYY-MM-DD") as e:
        logical_date(value)
    assert repr(value) in str(e.value)
    with pytest.raises(DataError, match="is not YYYY-MM-DD"):
        partition_name(value)


def test_windows_and_end_of_day():
    assert days_ending("2024-03-01", 3) == ["2024-02-28", "2024-02-29", "2024-03-01"]
    assert days_before("2024-03-01", 2) == ["2024-02-28", "2024-02-29"]
    assert days_from("2024-12-31", 2) == ["2024-12-31", "2025-01-01"]
    assert end_of_day("2024-02-29") == dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="window days must be >= 1"):
        days_ending("2024-03-01", 0)
