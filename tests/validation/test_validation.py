"""Tests for airflow_mlops.validation.suites (GX 1.x suites, inference, validation, reports).

great_expectations is slow to import and each validation costs ~0.1 s, so the reference frame,
its inferred suite and the validation outcomes are module-scoped and shared between tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.validation.infer import infer_suite
from airflow_mlops.validation.run import ValidationOutcome, summarize_failures, validate_dataframe
from airflow_mlops.validation.suites import (
    BOOL_TYPES,
    NUMERIC_TYPES,
    STRING_TYPES,
    SuiteError,
    build_suite,
    load_suite_spec,
)

SENTINEL_STR = "SENTINEL_ROW_VALUE_123"
SENTINEL_NUM = 987654321  # out of range for "age"; must never appear in reports
BAD_AGE_ROWS = [3, 17]
UNSEEN_CATEGORY_ROW = 25

SPEC = {
    "name": "customers",
    "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "age", "mostly": 0.99},
         "meta": {"owner": "data-team"}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "age", "min_value": 0, "max_value": 120}},
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "segment", "value_set": ["retail", "smb", "enterprise"]}},
    ],
}

SPEC_YAML = """\
name: customers
expectations:
  - type: expect_table_row_count_to_be_between
    kwargs: {min_value: 1}
  - type: expect_column_values_to_not_be_null
    kwargs:
      column: age
      mostly: 0.99
    meta: {owner: data-team}
  - type: expect_column_values_to_be_between
    kwargs: {column: age, min_value: 0, max_value: 120}
  - type: expect_column_values_to_be_in_set
    kwargs:
      column: segment
      value_set: [retail, smb, enterprise]
"""


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """int, float with NaN, low-cardinality string, high-cardinality string and bool columns.

    The index is deliberately not 0..n-1, so positional row mapping is exercised.
    """
    rng = np.random.default_rng(42)
    n = 120
    income = rng.normal(50_000, 12_000, n)
    income[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": income,
            "segment": rng.choice(["retail", "smb", "enterprise"], n),
            "customer_id": [f"c{i:05d}" for i in range(n)],
            "active": rng.random(n) < 0.6,
        },
        index=pd.Index([f"row-{i}" for i in range(n)], name="key"),
    )


@pytest.fixture(scope="module")
def suite(reference: pd.DataFrame) -> dict:
    return infer_suite(reference, name="customers_inferred")


@pytest.fixture(scope="module")
def partition(reference: pd.DataFrame) -> pd.DataFrame:
    """A scoring partition with out-of-range ages and one unseen category in known rows."""
    df = reference.copy()
    df["age"] = df["age"].astype("float64")
    df.iloc[BAD_AGE_ROWS, df.columns.get_loc("age")] = SENTINEL_NUM
    df.iloc[40, df.columns.get_loc("age")] = np.nan  # int column with NaN becomes float: still valid
    df.iloc[UNSEEN_CATEGORY_ROW, df.columns.get_loc("segment")] = SENTINEL_STR
    return df


@pytest.fixture(scope="module")
def partition_outcome(partition: pd.DataFrame, suite: dict) -> ValidationOutcome:
    return validate_dataframe(partition, suite, name="ds=2024-01-02")


@pytest.fixture(scope="module")
def wrong_dtype_outcome(reference: pd.DataFrame, suite: dict) -> ValidationOutcome:
    df = reference.copy()
    df["age"] = df["age"].astype(object)
    df.iloc[2, df.columns.get_loc("age")] = SENTINEL_STR
    return validate_dataframe(df, suite, name="wrong-dtype")


def _assert_no_sentinels(outcome: ValidationOutcome) -> None:
    texts = {
        "html": outcome.to_html(),
        "result_json": json.dumps(outcome.result_json),
        "failed": json.dumps(outcome.failed),
        "summary": summarize_failures(outcome, limit=100),
    }
    for where, text in texts.items():
        assert SENTINEL_STR not in text, where
        assert str(SENTINEL_NUM) not in text, where
        assert f"{float(SENTINEL_NUM):g}" not in text, where


# ------------------------------------------------------------------ import cost


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, airflow_mlops.validation.suites as v\n"
        "v.load_suite_spec({'name': 's', 'expectations': []}, validate=False)\n"
        "heavy = [m for m in ('great_expectations', 'pandas', 'numpy', 'yaml') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


# ------------------------------------------------------------------ suite specs


def test_spec_from_dict_json_yaml_text_and_suite_object(tmp_path: Path) -> None:
    from_dict = load_suite_spec(SPEC)
    assert from_dict["name"] == "customers"
    assert [e["type"] for e in from_dict["expectations"]] == [e["type"] for e in SPEC["expectations"]]
    assert from_dict["expectations"][1]["meta"] == {"owner": "data-team"}
    from_dict["expectations"][0]["kwargs"]["min_value"] = 99  # a copy: the input is untouched
    assert SPEC["expectations"][0]["kwargs"]["min_value"] == 1
    from_dict = load_suite_spec(SPEC)

    json_file = tmp_path / "customers.json"
    json_file.write_text(json.dumps(SPEC))
    yaml_file = tmp_path / "customers.yaml"
    yaml_file.write_text(SPEC_YAML)
    yml_file = tmp_path / "other.yml"
    yml_file.write_text(SPEC_YAML.replace("name: customers\n", ""))

    assert load_suite_spec(json_file) == from_dict
    assert load_suite_spec(str(json_file)) == from_dict
    assert load_suite_spec(yaml_file) == from_dict
    assert load_suite_spec(json.dumps(SPEC)) == from_dict
    assert load_suite_spec(SPEC_YAML) == from_dict
    no_name = load_suite_spec(yml_file)
    assert no_name["name"] == "other"  # file stem
    assert no_name["expectations"] == from_dict["expectations"]

    gx_suite = build_suite(yaml_file)
    import great_expectations as gx

    assert isinstance(gx_suite, gx.ExpectationSuite)
    assert gx_suite.name == "customers"
    assert len(gx_suite.expectations) == 4
    assert gx_suite.expectations[2].max_value == 120
    # a suite object is accepted wherever a spec is
    from_object = load_suite_spec(gx_suite)
    assert from_object["expectations"] == from_dict["expectations"]
    assert len(build_suite(gx_suite).expectations) == 4

    # GX 0.x key names are accepted
    legacy = {"expectation_suite_name": "old", "expectations": [
        {"expectation_type": "expect_column_to_exist", "kwargs": {"column": "a"}}]}
    assert load_suite_spec(legacy) == {"name": "old", "expectations": [
        {"type": "expect_column_to_exist", "kwargs": {"column": "a"}}]}


def test_unknown_expectation_type_lists_close_matches(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(SPEC_YAML.replace("expect_column_values_to_be_between", "expect_column_values_to_be_betwen"))
    with pytest.raises(SuiteError) as err:
        load_suite_spec(path)
    message = str(err.value)
    assert str(path) in message
    assert "expectations[2]" in message
    assert "unknown expectation type 'expect_column_values_to_be_betwen'" in message
    assert "did you mean: expect_column_values_to_be_between" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(SuiteError, match="expect_column_values_to_be_betwen"):
        build_suite(path)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "s", "expectations": [{"type": "expect_column_values_to_be_in_set",
                                         "kwargs": {"column": "a"}}]},
         "missing required kwargs: value_set"),
        ({"name": "s", "expectations": [{"type": "expect_column_values_to_not_be_null"}]},
         "missing 'kwargs'"),
        ({"name": "s", "expectations": [{"type": "expect_column_values_to_not_be_null", "column": "a",
                                         "kwargs": {}}]},
         "unknown key(s) ['column']"),
        ({"name": "s", "expectations": [{"type": "expect_column_values_to_be_between",
                                         "kwargs": {"column": "a", "min_value": 0, "mostly": 2}}]},
         "invalid kwargs: mostly"),
        ({"name": "s", "expectations": [{"type": "expect_table_row_count_to_be_between",
                                         "kwargs": {"min_value": 1, "colum": "x"}}]},
         "unknown kwargs: colum"),
        ({"name": "s", "expectation": []}, "did you mean 'expectations' instead of 'expectation'"),
        ({"name": "s", "expectations": {"type": "x"}}, "'expectations' must be a list"),
        ({"name": "s", "expectations": [{"kwargs": {}}]}, "missing 'type'"),
    ],
)
def test_bad_spec_errors(spec: dict, expected: str) -> None:
    with pytest.raises(SuiteError) as err:
        load_suite_spec(spec)
    assert expected in str(err.value)
    assert str(err.value).startswith("suite dict")


def test_bad_sources_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SuiteError, match=r"suite file '.*nope\.yaml': file not found"):
        load_suite_spec(missing)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: s\nexpectations: [unclosed\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml': invalid YAML at line"):
        load_suite_spec(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": "s", "expectations": [}')
    with pytest.raises(SuiteError, match=r"bad\.json': invalid JSON at line 1"):
        load_suite_spec(bad_json)
    not_mapping = tmp_path / "list.json"
    not_mapping.write_text("[1, 2]")
    with pytest.raises(SuiteError, match=r"list\.json': a suite must be a mapping"):
        load_suite_spec(not_mapping)
    with pytest.raises(SuiteError, match="expected a dict"):
        load_suite_spec(42)  # type: ignore[arg-type]


def test_multiple_problems_are_reported_together() -> None:
    spec = {"name": "s", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_nothing_at_all", "kwargs": {}},
    ]}
    with pytest.raises(SuiteError) as err:
        load_suite_spec(spec)
    message = str(err.value)
    assert "2 problems" in message
    assert "expectations[0] (expect_column_values_to_be_in_set): missing required kwargs: column, value_set" in message
    assert "expectations[2]" in message and "expectations[1]" not in message


# ------------------------------------------------------------------ inference


def test_infer_suite_is_plain_json_with_expected_expectations(reference: pd.DataFrame, suite: dict) -> None:
    assert json.loads(json.dumps(suite, allow_nan=False)) == suite
    exps = suite["expectations"]
    by = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in exps}

    assert by[("expect_table_row_count_to_be_between", None)]["min_value"] == 1
    column_set = by[("expect_table_columns_to_match_set", None)]
    assert column_set == {"column_set": list(reference.columns), "exact_match": False}

    assert by[("expect_column_values_to_be_in_type_list", "age")]["type_list"] == list(NUMERIC_TYPES)
    assert by[("expect_column_values_to_be_in_type_list", "income")]["type_list"] == list(NUMERIC_TYPES)
    assert by[("expect_column_values_to_be_in_type_list", "segment")]["type_list"] == list(STRING_TYPES)
    assert by[("expect_column_values_to_be_in_type_list", "active")]["type_list"] == list(BOOL_TYPES)
    for name in ("int64", "float64"):
        assert name in NUMERIC_TYPES
    assert {"object", "str", "string"} <= set(STRING_TYPES)
    assert {"bool", "boolean", "object"} <= set(BOOL_TYPES)

    # default ranges: tail bounds (peaks over the 10th/90th percentiles), never inside the observed
    # range, non-negative for a never-negative column; int bounds rounded outwards
    hi = reference["age"].max()
    age = by[("expect_column_values_to_be_between", "age")]
    assert age["min_value"] == 0 and isinstance(age["min_value"], int)  # ages are never negative
    q90 = np.quantile(reference["age"], 0.9)
    tail = reference["age"][reference["age"] > q90] - q90
    t = np.log(0.1 * 1000 / 1e-4)
    assert age["max_value"] == np.ceil(q90 + t * tail.mean() * (1 + 1 / np.sqrt(len(tail))))
    assert age["max_value"] >= hi and age["mostly"] == 1.0
    assert age["max_value"] < SENTINEL_NUM
    inc = by[("expect_column_values_to_be_between", "income")]
    ilo, ihi = reference["income"].min(), reference["income"].max()
    assert inc["min_value"] < ilo and inc["max_value"] > ihi
    # and the median band: median +- 2 IQR, a batch-level check on the whole column
    median = by[("expect_column_median_to_be_between", "age")]
    q25, q50, q75 = np.quantile(reference["age"], [0.25, 0.5, 0.75])
    assert median == pytest.approx({"column": "age", "min_value": q50 - 2 * (q75 - q25),
                                    "max_value": q50 + 2 * (q75 - q25)})
    assert ("expect_column_values_to_be_between", "active") not in by  # bool is not a range

    # null rates: mostly = 1 - (observed + 0.05); a column without nulls: 1 - min(0.05, 3 / n)
    null_rate = reference["income"].isna().mean()
    assert 0 < null_rate < 0.3
    assert by[("expect_column_values_to_not_be_null", "income")]["mostly"] == pytest.approx(
        1 - (null_rate + 0.05), abs=1e-4)
    assert by[("expect_column_values_to_not_be_null", "age")]["mostly"] == pytest.approx(1 - 3 / 120, abs=1e-4)

    # categories: low-cardinality strings only
    assert by[("expect_column_values_to_be_in_set", "segment")]["value_set"] == ["enterprise", "retail", "smb"]
    assert ("expect_column_values_to_be_in_set", "customer_id") not in by


def test_infer_suite_options(reference: pd.DataFrame) -> None:
    df = reference[["age", "segment", "active"]].copy()
    df["mostly_null"] = np.where(np.arange(len(df)) % 10 == 0, 1.0, np.nan)  # 90% null
    spec = infer_suite(df, columns=["age", "segment", "mostly_null"], categorical=["age"], mostly=0.9,
                       name="opts", range_margin=0.0, null_margin=0.2, max_categories=100)
    assert spec["name"] == "opts"
    types = {(e["type"], e["kwargs"].get("column")) for e in spec["expectations"]}
    assert ("expect_column_values_to_be_in_set", "age") in types  # explicit categorical
    assert ("expect_column_values_to_be_in_set", "segment") not in types  # categorical given: no auto
    assert ("expect_column_values_to_not_be_null", "mostly_null") not in types  # 1 - (0.9 + 0.2) <= 0
    assert not any(c == "active" for _, c in types)
    between = next(e for e in spec["expectations"]
                   if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == "age")
    assert between["kwargs"]["min_value"] == df["age"].min() and between["kwargs"]["mostly"] == 0.9

    with pytest.raises(ValueError, match="max_categories"):
        infer_suite(df, categorical=["age"], max_categories=5)
    with pytest.raises(ValueError, match="columns"):
        infer_suite(df, columns=["nope"])
    with pytest.raises(ValueError, match="mostly"):
        infer_suite(df, mostly=0)
    with pytest.raises(ValueError, match="empty"):
        infer_suite(df.iloc[0:0])


# ------------------------------------------------------------------ validation


def test_reference_passes_its_inferred_suite(reference: pd.DataFrame, suite: dict) -> None:
    outcome = validate_dataframe(reference, suite, name="reference")
    assert outcome.success, summarize_failures(outcome)
    assert outcome.evaluated == outcome.successful == len(suite["expectations"])
    assert outcome.failed == []
    assert outcome.batch_level_failure is False
    assert outcome.failing_row_mask.dtype == bool and len(outcome.failing_row_mask) == len(reference)
    assert not outcome.failing_row_mask.any()
    assert outcome.result_json["success"] is True
    assert outcome.result_json["statistics"]["evaluated_expectations"] == len(suite["expectations"])
    assert "passed" in summarize_failures(outcome)
    accepted, quarantined = outcome.split(reference)
    assert len(accepted) == len(reference) and quarantined.empty


def test_out_of_range_and_unseen_category_flag_exactly_those_rows(
    partition: pd.DataFrame, partition_outcome: ValidationOutcome, suite: dict
) -> None:
    outcome = partition_outcome
    assert not outcome.success
    assert outcome.batch_level_failure is False
    assert sorted(np.flatnonzero(outcome.failing_row_mask)) == sorted(BAD_AGE_ROWS + [UNSEEN_CATEGORY_ROW])
    assert outcome.failing_row_count == 3
    assert outcome.evaluated == len(suite["expectations"]) and outcome.successful == outcome.evaluated - 2

    failed = {f["expectation_type"]: f for f in outcome.failed}
    assert set(failed) == {"expect_column_values_to_be_between", "expect_column_values_to_be_in_set"}
    age = failed["expect_column_values_to_be_between"]
    assert age["column"] == "age" and age["unexpected_count"] == 2 and age["row_level"] is True
    assert age["unexpected_percent"] == pytest.approx(100 * 2 / (len(partition) - 1))  # of non-null values
    assert age["summary"].startswith("column 'age': ") and "values outside [" in age["summary"]
    assert "(mostly=1.0)" in age["summary"] or "mostly=1.0" in age["summary"]
    assert age["observed_value"] is None
    seg = failed["expect_column_values_to_be_in_set"]
    assert seg["column"] == "segment" and seg["unexpected_count"] == 1
    assert seg["kwargs"]["value_set"] == ["enterprise", "retail", "smb"]  # <= 20 items: kept

    # quarantine split keeps the original (non-default) index labels
    accepted, quarantined = outcome.split(partition)
    assert list(quarantined.index) == [partition.index[i] for i in sorted(BAD_AGE_ROWS + [UNSEEN_CATEGORY_ROW])]
    assert len(accepted) == len(partition) - 3
    _assert_no_sentinels(outcome)


def test_result_json_has_no_row_values(partition_outcome: ValidationOutcome) -> None:
    data = json.loads(partition_outcome.to_json())
    assert data["suite_name"] == "customers_inferred" and data["batch_name"] == "ds=2024-01-02"
    assert data["statistics"]["unsuccessful_expectations"] == 2
    assert data["failing_row_count"] == 3 and data["batch_level_failure"] is False
    forbidden = {"unexpected_list", "partial_unexpected_list", "partial_unexpected_counts",
                 "unexpected_index_list", "partial_unexpected_index_list", "unexpected_index_query"}
    for result in data["results"]:
        assert not forbidden & set(result)
        assert {"expectation_type", "column", "kwargs", "success", "summary"} <= set(result)


def test_html_report_is_escaped_and_readable(partition_outcome: ValidationOutcome) -> None:
    page = partition_outcome.to_html()
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "<script" not in page and "http" not in page  # self-contained
    for name in ("expect_column_values_to_be_between", "expect_column_values_to_be_in_set",
                 "expect_table_row_count_to_be_between", "expect_column_values_to_be_in_type_list"):
        assert name in page
    assert "FAILED" in page and "quarantine 3 of 120 rows" in page
    assert "column &#x27;age&#x27;" in page  # summaries are escaped


def test_missing_column_is_a_batch_level_failure(reference: pd.DataFrame, suite: dict) -> None:
    outcome = validate_dataframe(reference.drop(columns=["income"]), suite, name="no-income")
    assert not outcome.success and outcome.batch_level_failure
    assert not outcome.failing_row_mask.any()
    income = [f for f in outcome.failed if f["column"] == "income"]
    assert {f["expectation_type"] for f in income} == {
        "expect_column_values_to_be_in_type_list", "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between", "expect_column_median_to_be_between"}
    assert all("'income' is missing from the batch" in f["summary"] and f["error"] for f in income)
    columns_check = next(f for f in outcome.failed if f["expectation_type"] == "expect_table_columns_to_match_set")
    assert columns_check["observed_value"] == {"missing_columns": ["income"]}
    assert "missing columns ['income']" in columns_check["summary"]
    message = summarize_failures(outcome, limit=2)
    assert "batch-level failure" in message and "income" in message
    assert "... and 3 more" in message
    accepted, quarantined = outcome.split(reference)
    assert accepted.empty and len(quarantined) == len(reference)


def test_wrong_dtype_is_a_batch_level_failure(wrong_dtype_outcome: ValidationOutcome) -> None:
    outcome = wrong_dtype_outcome
    assert not outcome.success and outcome.batch_level_failure
    type_check = next(f for f in outcome.failed if f["expectation_type"] == "expect_column_values_to_be_in_type_list")
    assert type_check["column"] == "age" and type_check["observed_value"] == "object"
    assert type_check["row_level"] is False
    assert "dtype object is not one of the expected types" in type_check["summary"]
    assert type_check["kwargs"]["type_list"] == f"<list of {len(NUMERIC_TYPES)} items>"  # > 20 items
    # the range check cannot compare strings with numbers: reported, not raised
    between = next(f for f in outcome.failed if f["expectation_type"] == "expect_column_values_to_be_between")
    assert between["error"] is True and "could not be evaluated" in between["summary"]
    assert not outcome.failing_row_mask.any()  # type checks do not flag rows
    _assert_no_sentinels(outcome)


def test_empty_frame_fails_instead_of_crashing(reference: pd.DataFrame, suite: dict) -> None:
    outcome = validate_dataframe(reference.iloc[0:0], suite, name="empty")
    assert not outcome.success and outcome.batch_level_failure
    # the row count, and the medians of the numeric columns (there is none), nothing else
    assert outcome.failed[0]["expectation_type"] == "expect_table_row_count_to_be_between"
    assert {f["expectation_type"] for f in outcome.failed[1:]} == {"expect_column_median_to_be_between"}
    assert outcome.failed[0]["observed_value"] == 0
    assert outcome.failed[0]["summary"] == "table: row count 0 outside [1, inf)"
    assert outcome.row_count == 0 and len(outcome.failing_row_mask) == 0

    no_columns = validate_dataframe(pd.DataFrame(), SPEC, name="nothing")
    assert not no_columns.success and no_columns.evaluated == 4
    assert {f["expectation_type"] for f in no_columns.failed} == {e["type"] for e in SPEC["expectations"]}


def test_custom_suite_object_aggregates_and_exceptions(tmp_path: Path) -> None:
    """Suite object input, aggregate expectations, long value lists, escaping, repeated calls."""
    df = pd.DataFrame({"amount": [1.0, 2.0, 3.0, float(SENTINEL_NUM)],
                       "code": ["a", "b", SENTINEL_STR, "a"]}, index=[10, 20, 30, 40])
    spec = {
        "name": "<b>custom & co</b>",
        "expectations": [
            {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "amount", "max_value": 10}},
            {"type": "expect_column_max_to_be_between", "kwargs": {"column": "amount", "max_value": 10}},
            {"type": "expect_column_proportion_of_non_null_values_to_be_between",
             "kwargs": {"column": "amount", "min_value": 0.5}},
            {"type": "expect_column_values_to_be_in_set",
             "kwargs": {"column": "code", "value_set": [f"v{i}" for i in range(25)] + ["a", "b"]}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "code"}},
        ],
    }
    gx_suite = build_suite(spec)
    first = validate_dataframe(df, gx_suite, name="<batch>")
    second = validate_dataframe(df, gx_suite, name="<batch>")  # repeated calls: same answer
    for outcome in (first, second):
        assert outcome.evaluated == 5 and outcome.successful == 2
        assert outcome.batch_level_failure  # column aggregates are batch-level
        assert list(np.flatnonzero(outcome.failing_row_mask)) == [2]
        failed = {f["expectation_type"]: f for f in outcome.failed}
        assert failed["expect_column_mean_to_be_between"]["observed_value"] is None  # could leak values
        assert failed["expect_column_max_to_be_between"]["observed_value"] is None
        in_set = failed["expect_column_values_to_be_in_set"]
        assert in_set["kwargs"]["value_set"] == "<list of 27 items>"
        assert "not in the expected set of 27 values (1 row; mostly=1.0)" in in_set["summary"]
        _assert_no_sentinels(outcome)
    page = first.to_html()
    assert "&lt;b&gt;custom &amp; co&lt;/b&gt;" in page and "<b>custom" not in page
    assert "&lt;batch&gt;" in page and "<batch>" not in page
    assert "quarantine the whole batch (4 rows)" in page


def test_summarize_failures_lists_failures(partition_outcome: ValidationOutcome) -> None:
    message = summarize_failures(partition_outcome)
    lines = message.splitlines()
    assert lines[0].startswith("Data validation of batch 'ds=2024-01-02' with suite 'customers_inferred'")
    assert "3 of 120 rows failed row-level checks" in lines[0]
    assert len(lines) == 3
    assert any(line.strip().startswith("- expect_column_values_to_be_between: column 'age'") for line in lines)
    short = summarize_failures(partition_outcome, limit=1)
    assert short.splitlines()[-1].strip() == "... and 1 more"


def test_exception_messages_are_redacted() -> None:
    from airflow_mlops.validation.run import _redact

    message = "Error: could not convert string to float: 'SENTINEL_ROW_VALUE_123' in column \"age\" at 987654321"
    redacted = _redact(message + "\nTraceback ...", {"age"})
    assert SENTINEL_STR not in redacted and "987654321" not in redacted
    assert "'age'" in redacted and "Traceback" not in redacted


def test_inferred_value_set_allows_the_good_turing_share_of_unseen_values() -> None:
    """A value seen once in the reference hints that unseen ones exist: mostly = 1 - singletons / n."""
    common = ["a"] * 40 + ["b"] * 40 + ["c", "d"]  # 2 singletons in 82 rows
    spec = infer_suite(pd.DataFrame({"k": common}), name="gt")
    in_set = next(e for e in spec["expectations"] if e["type"] == "expect_column_values_to_be_in_set")
    assert in_set["kwargs"]["mostly"] == pytest.approx(1 - 2 / 82, abs=1e-4)
    assert in_set["meta"] == {"reference_singletons": 2}
    one_new = pd.DataFrame({"k": ["a", "b"] * 30 + ["e"]})  # 1 of 61 rows unseen (1.6% < 2.4%)
    assert validate_dataframe(one_new, spec, name="one-new").success
    many_new = pd.DataFrame({"k": ["a", "b"] * 20 + ["e"] * 5})
    outcome = validate_dataframe(many_new, spec, name="many-new")
    assert not outcome.success and not outcome.batch_level_failure and outcome.failing_row_count == 5

    # no singletons (every value seen often): mostly stays the caller's, one unseen row fails
    spec = infer_suite(pd.DataFrame({"k": ["a", "b"] * 40}), name="strict")
    in_set = next(e for e in spec["expectations"] if e["type"] == "expect_column_values_to_be_in_set")
    assert in_set["kwargs"]["mostly"] == 1.0 and "meta" not in in_set
    assert not validate_dataframe(one_new, spec, name="one-new").success


def test_explicit_margins_keep_the_fixed_rules(reference: pd.DataFrame) -> None:
    spec = infer_suite(reference[["age"]], range_margin=0.1, null_margin=0.05)
    by = {e["type"]: e["kwargs"] for e in spec["expectations"]}
    lo, hi = reference["age"].min(), reference["age"].max()
    assert by["expect_column_values_to_be_between"]["min_value"] == np.floor(lo - 0.1 * (hi - lo))
    assert by["expect_column_values_to_be_between"]["max_value"] == np.ceil(hi + 0.1 * (hi - lo))
    assert by["expect_column_values_to_not_be_null"]["mostly"] == pytest.approx(0.95)
    assert "expect_column_median_to_be_between" not in by
