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


def test_logical_date_is_its_text_parsed_once():
    import json

    from airflow.sdk.serde import serialize

    from airflow_mlops.store.dates import LogicalDate

    ds = LogicalDate(dt.datetime(2024, 2, 29, 23, 30, tzinfo=dt.UTC))
    assert ds == "2024-02-29" and isinstance(ds, str) and repr(ds) == "'2024-02-29'"
    assert LogicalDate(ds) is ds and logical_ds(ds) is ds  # no second parse
    assert logical_ds("2024-02-29T00:00:00+00:00") == ds and type(logical_ds("2024-02-29")) is LogicalDate
    assert ds.day == dt.date(2024, 2, 29) and logical_date(ds) == dt.date(2024, 2, 29)
    assert ds.end_of_day() == end_of_day("2024-02-29")
    assert ds.shift(1) == "2024-03-01" and ds.shift(-60) == "2023-12-31"
    assert all(type(d) is LogicalDate for d in days_ending(ds, 3))
    assert {ds: 1}["2024-02-29"] == 1  # a dict key like its text
    # an XCom value as is: Airflow's serializer keeps str values, JSON writes the text
    assert json.dumps({"ds": serialize(ds)}) == '{"ds": "2024-02-29"}'
    assert partition_name(ds) == "ds=2024-02-29"
    with pytest.raises(ValueError, match="logical date 'tomorrow' is not YYYY-MM-DD"):
        LogicalDate("tomorrow")


def test_the_operator_boundary_gives_a_logical_date():
    from airflow_mlops.operators.base import context_ds
    from airflow_mlops.store.dates import LogicalDate

    ds = context_ds({"ds": "2024-01-05"})
    assert type(ds) is LogicalDate and ds == "2024-01-05"
    run = type("Run", (), {"run_after": dt.datetime(2024, 1, 6, 3, tzinfo=dt.UTC), "start_date": None})()
    assert context_ds({"dag_run": run}) == LogicalDate("2024-01-06")
