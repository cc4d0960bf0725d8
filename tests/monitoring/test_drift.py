"""Drift detection (airflow_mlops.monitoring.drift) on the synthetic churn data, with the real evidently.

evidently is slow (about 4.5 s to import, ~0.5-1 s per report), so results are computed once per
module in fixtures and shared by the assertions.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.monitoring.drift import compute_drift, sample_rows, slice_drift

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "usage_gb"]
CATEGORICAL = ["contract", "region"]
#: what churn_day(drift=1) shifts
SHIFTED = {"monthly_charges", "support_calls", "usage_gb", "contract"}
SENTINEL = "zz-sentinel-9f3e1c"


def with_predictions(df: pd.DataFrame) -> pd.DataFrame:
    """A fixed rule standing in for a model: predictions follow the features."""
    df = df.copy()
    score = 0.03 * (df["monthly_charges"] - 70) + 0.6 * df["support_calls"] - 0.05 * df["tenure_months"]
    df["prediction"] = (score > 0.0).astype("int64")
    df["proba_1"] = 1 / (1 + np.exp(-score))
    df["proba_0"] = 1 - df["proba_1"]
    return df


def drift(reference: pd.DataFrame, current: pd.DataFrame, **kw) -> dict:
    kw.setdefault("html", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, **kw).summary


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    """Like ModelRegistry.load_reference: a 5000-row sample of 10 training days."""
    train = pd.concat([churn_day(d) for d in date_range("2024-01-01", 10)], ignore_index=True)
    ref = with_predictions(sample_rows(train, 5000, seed=42)).reset_index(drop=True)
    ref.loc[ref.index[:3], "region"] = SENTINEL  # a row value that must never reach the summary
    return ref


@pytest.fixture(scope="module")
def no_drift(reference):
    return compute_drift(reference, with_predictions(churn_day("2024-03-01")), numeric=NUMERIC,
                         categorical=CATEGORICAL, html=True)


@pytest.fixture(scope="module")
def strong_drift(reference):
    current = with_predictions(churn_day("2024-03-01", drift=1.0))
    current.loc[current.index[:5], "region"] = SENTINEL
    return compute_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, html=False)


def test_no_drift(no_drift):
    s = no_drift.summary
    assert s["dataset_drift"] is False
    assert s["n_features"] == 6 and s["n_drifted"] == 0 and s["share_drifted"] == 0.0
    assert [c["column"] for c in s["columns"]] == NUMERIC + CATEGORICAL
    assert s["prediction_drift"]["drifted"] is False
    assert s["rows"] == {"reference": 5000, "current": 2000, "reference_sampled": 5000, "current_sampled": 2000}
    assert s["sampled"] is False
    # evidently's defaults for > 1000 reference rows: distances with threshold 0.1
    kinds = {c["column"]: (c["kind"], c["stattest"], c["threshold"]) for c in s["columns"]}
    assert kinds["monthly_charges"] == ("numeric", "Wasserstein distance (normed)", 0.1)
    assert kinds["contract"] == ("categorical", "Jensen-Shannon distance", 0.1)
    assert s["prediction_drift"]["kind"] == "categorical"
    assert s["evidently_version"].startswith("0.7")


def test_html_is_evidently_report_and_summary_does_not_depend_on_it(reference, no_drift):
    assert no_drift.html is not None and no_drift.html.lstrip().startswith("<!DOCTYPE html>")
    assert "monthly_charges" in no_drift.html
    without = drift(reference, with_predictions(churn_day("2024-03-01")))
    assert json.dumps(without, sort_keys=True) == json.dumps(no_drift.summary, sort_keys=True)


def test_strong_drift_flags_dataset_and_shifted_columns(strong_drift):
    s = strong_drift.summary
    assert s["dataset_drift"] is True
    assert set(strong_drift.drifted_columns) == SHIFTED
    assert s["n_drifted"] == 4 and s["share_drifted"] == pytest.approx(4 / 6)
    for c in s["columns"]:
        assert c["drifted"] == (c["score"] >= c["threshold"])  # distances: drift at or above
    # the prediction column is reported apart, not counted in the share
    assert s["prediction_drift"]["drifted"] is True
    assert "prediction" not in [c["column"] for c in s["columns"]]


def test_prediction_drift_alone(reference):
    """Same features, predictions from a different model: only prediction drift."""
    current = with_predictions(churn_day("2024-03-02"))
    current["prediction"] = 1 - current["prediction"]
    s = drift(reference, current)
    assert s["prediction_drift"]["drifted"] is True
    assert s["prediction_drift"]["score"] > s["prediction_drift"]["threshold"]
    assert s["n_drifted"] == 0 and s["dataset_drift"] is False


def test_sampling_is_deterministic(reference):
    current = with_predictions(churn_day("2024-03-03", rows=3000, drift=0.3))
    a = drift(reference, current, sample_size=1500, seed=7)
    b = drift(reference, current, sample_size=1500, seed=7)
    assert a == b
    assert a["sampled"] is True and a["sample_size"] == 1500 and a["seed"] == 7
    assert a["rows"] == {"reference": 5000, "current": 3000, "reference_sampled": 1500, "current_sampled": 1500}
    # the sample itself: fixed rows, original order
    s1, s2 = sample_rows(current, 1500, 7), sample_rows(current, 1500, 7)
    assert s1.index.equals(s2.index) and s1.index.is_monotonic_increasing
    assert not s1.index.equals(sample_rows(current, 1500, 8).index)
    assert sample_rows(current, None, 7) is current and sample_rows(current, 5000, 7) is current


def test_summary_is_json_safe_and_has_no_row_values(no_drift, strong_drift):
    for result in (no_drift, strong_drift):
        text = json.dumps(result.summary, allow_nan=False)
        assert SENTINEL not in text
        # no category values either, only column/test names and numbers
        for value in ("north", "south", "two_year", "annual"):
            assert value not in text
        assert json.loads(text) == result.summary


def test_threshold_is_inclusive(reference, strong_drift):
    s = strong_drift.summary
    at = drift(reference, with_predictions(churn_day("2024-03-01", drift=1.0)), threshold=s["share_drifted"])
    assert at["dataset_drift"] is True  # share == threshold -> drift (>=)
    above = drift(reference, with_predictions(churn_day("2024-03-01", drift=1.0)), threshold=0.7)
    assert above["dataset_drift"] is False and above["threshold"] == 0.7


def test_errors(reference):
    current = churn_day("2024-03-01")
    with pytest.raises(ValueError, match="missing column.*prediction"):
        compute_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL)  # no prediction in current
    with pytest.raises(ValueError, match="both numeric and categorical: region"):
        compute_drift(reference, current, numeric=["region"], categorical=["region"], prediction_column=None)
    with pytest.raises(ValueError, match="threshold"):
        compute_drift(reference, current, numeric=NUMERIC, categorical=[], prediction_column=None, threshold=0)


def test_false_alarms_30_days_slow(reference):
    """30 days from the training distribution: at most one share alarm at the defaults, and at most
    two alarms of the combined rule (prediction or one of the top-3 features; measured: 1)."""
    importance = [{"feature": f, "importance_mean": 0.1 * (6 - i)} for i, f in enumerate(NUMERIC + CATEGORICAL)]
    alarms, combined = [], []
    for day in date_range("2024-04-01", 30):
        s = drift(reference, with_predictions(churn_day(day, rows=1000)), rule="combined", importance=importance)
        if s["share_drift"]:
            alarms.append(day)
        if s["dataset_drift"]:
            combined.append((day, s["verdict"]["fired"]))
    assert len(alarms) <= 1, alarms
    assert len(combined) <= 2, combined


def test_slice_drift_flags_only_the_drifted_slice(reference):
    base = churn_day("2024-03-05", rows=3000)
    shifted = churn_day("2024-03-06", rows=3000, drift=1.0)
    current = pd.concat([base[base["region"] != "east"], shifted[shifted["region"] == "east"]], ignore_index=True)
    current = with_predictions(current)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = slice_drift(reference, current, "region", min_rows=200, numeric=NUMERIC,
                          categorical=CATEGORICAL, prediction_column="prediction")
    assert set(out) == {"north", "south", "east", "west", SENTINEL}
    assert out[SENTINEL]["skipped"] is True and out[SENTINEL]["rows"]["current"] == 0
    assert out["east"]["skipped"] is False and out["east"]["dataset_drift"] is True
    for region in ("north", "south", "west"):
        assert out[region]["skipped"] is False
        assert out[region]["dataset_drift"] is False, (region, out[region])
    # the slice column is constant inside a slice and is not tested
    assert "region" not in [c["column"] for c in out["east"]["columns"]]
    json.dumps(out, allow_nan=False)


def test_untestable_column_and_regression_prediction():
    ref, cur = churn_day("2024-03-10", rows=1500), churn_day("2024-03-11", rows=1500)
    for df in (ref, cur):
        df["prediction"] = df["monthly_charges"] * 1.5  # a regression output: float -> numeric
    ref["usage_gb"] = np.nan  # a column that disappeared from the reference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = compute_drift(ref, cur, numeric=["monthly_charges", "usage_gb"], categorical=["region"],
                          html=False).summary
    usage = next(c for c in s["columns"] if c["column"] == "usage_gb")
    assert usage["drifted"] is True and usage["stattest"] is None and "reference" in usage["note"]
    assert s["n_features"] == 3 and s["n_drifted"] == 1
    assert s["prediction_drift"]["kind"] == "numeric" and s["prediction_drift"]["drifted"] is False
    json.dumps(s, allow_nan=False)


# --------------------------------------------------------------------------------------------
# the drift rule (drift.rule): share OR prediction OR top-k important features
# --------------------------------------------------------------------------------------------
TEN = [f"f{i}" for i in range(10)]
#: f0 and f1 are the model's most important features (as in a version's feature_importance)
IMPORTANCE = [{"feature": f, "importance_mean": 1.0 / (i + 1), "importance_std": 0.0} for i, f in enumerate(TEN)]


def ten_features(rows: int, shift: float, seed: int) -> pd.DataFrame:
    """Ten independent numeric features; the prediction follows f0 and f1."""
    r = np.random.default_rng(seed)
    df = pd.DataFrame({f: r.normal(size=rows) for f in TEN})
    df["f0"] += shift
    df["f1"] += shift
    df["prediction"] = ((df["f0"] + df["f1"] + 0.3 * r.normal(size=rows)) > 0.5).astype("int64")
    return df


def ten_drift(current: pd.DataFrame, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_drift(ten_features(5000, 0.0, 1), current, numeric=TEN, categorical=[], **kw)


@pytest.fixture(scope="module")
def reported_case():
    """The reported case: two of the most important of 10 features strongly shifted, the prediction
    distribution drifting with them; share 2/10 = 0.2 < 0.5. Combined rule (the config default)."""
    return ten_drift(ten_features(2000, 1.5, 2), rule="combined", importance=IMPORTANCE, html=True)


def test_reported_case_two_top_features_and_prediction_drift_is_drift(reported_case):
    s = reported_case.summary
    assert (s["n_drifted"], s["n_features"]) == (2, 10) and s["share_drifted"] == pytest.approx(0.2)
    assert s["share_drift"] is False  # the share alone says no drift ...
    assert s["dataset_drift"] is True  # ... the combined rule says drift
    v = s["verdict"]
    assert s["rule"] == v["rule"] == "combined" and v["clauses"] == ["share", "prediction", "top_features"]
    assert v["fired"] == ["prediction", "top_features"]
    assert v["share"]["fired"] is False and v["prediction"]["fired"] is True
    assert v["top_features"]["features"] == ["f0", "f1", "f2"] and v["top_features"]["drifted"] == ["f0", "f1"]
    assert "prediction column 'prediction' drifted" in v["reason"] and "drifted: f0, f1" in v["reason"]
    assert "counted" in s and "features only" in s["counted"]
    json.dumps(s, allow_nan=False)


def test_share_only_rule_keeps_the_old_behaviour():
    s = ten_drift(ten_features(2000, 1.5, 2), rule="share", importance=IMPORTANCE, html=False).summary
    assert s["dataset_drift"] is False and s["rule"] == "share" and s["verdict"]["fired"] == []
    # the other clauses are still evaluated and reported, but do not decide
    assert s["verdict"]["prediction"] == {**s["verdict"]["prediction"], "in_rule": False, "fired": True}
    assert s["verdict"]["top_features"]["in_rule"] is False and s["verdict"]["top_features"]["fired"] is True
    assert s["verdict"]["reason"].startswith("no clause fired: 2/10 features drifted (share 0.20 < threshold 0.50)")
    # a list of clauses is a rule too
    s2 = ten_drift(ten_features(2000, 1.5, 2), rule=["share", "top_features"], importance=IMPORTANCE,
                   html=False).summary
    assert s2["dataset_drift"] is True and s2["verdict"]["fired"] == ["top_features"]
    assert s2["rule"] == "share+top_features"


def test_quiet_day_no_clause_fires(reference):
    importance = [{"feature": f, "importance_mean": 0.1 * (6 - i)} for i, f in enumerate(NUMERIC + CATEGORICAL)]
    s = drift(reference, with_predictions(churn_day("2024-03-01")), rule="combined", importance=importance)
    assert s["dataset_drift"] is False and s["verdict"]["fired"] == []
    assert s["verdict"]["top_features"]["features"] == ["tenure_months", "monthly_charges", "support_calls"]
    assert all(not s["verdict"][c]["fired"] for c in ("share", "prediction", "top_features"))
    assert s["verdict"]["reason"].startswith("no clause fired")


def test_top_features_clause_needs_importance_and_top_k():
    cur = ten_features(2000, 1.5, 2)
    cur["prediction"] = ten_features(2000, 0.0, 3)["prediction"]  # predictions that do not drift
    no_importance = ten_drift(cur, rule="combined", html=False).summary
    assert no_importance["dataset_drift"] is False
    assert "no feature importance" in no_importance["verdict"]["top_features"]["reason"]
    k0 = ten_drift(cur, rule="combined", importance=IMPORTANCE, top_k=0, html=False).summary
    assert k0["dataset_drift"] is False
    # f0/f1 are not in the top 1 when importance puts f9 first
    reordered = [{"feature": "f9", "importance_mean": 5.0}, *IMPORTANCE]
    k1 = ten_drift(cur, rule="combined", importance=reordered, top_k=1, html=False).summary
    assert k1["dataset_drift"] is False and k1["verdict"]["top_features"]["features"] == ["f9"]
    k2 = ten_drift(cur, rule="combined", importance=reordered, top_k=2, html=False).summary
    assert k2["dataset_drift"] is True and k2["verdict"]["fired"] == ["top_features"]


def test_top_features_ignores_unimportant_and_unknown_features():
    from airflow_mlops.monitoring.drift import top_features

    rows = [{"feature": "a", "importance_mean": 0.0}, {"feature": "b", "importance_mean": 0.2},
            {"feature": "gone", "importance_mean": 0.9}, {"feature": "c", "importance_mean": -0.1},
            {"feature": "d", "importance_mean": 0.2}]
    assert top_features(rows, ["a", "b", "c", "d"], 3) == ["b", "d"]
    assert top_features(None, ["a"], 3) == [] and top_features(rows, ["b"], 0) == []


def test_html_counts_the_same_columns_as_the_summary(reported_case):
    """drift.html used to count the prediction column with the features (3 of 11) while the
    summary decided on 2 of 10: evidently's panel and the verdict block now both say 2 of 10."""
    import re

    s, page = reported_case.summary, reported_case.html
    counts = re.findall(r"Drift is detected for [\d.]+% of columns \((\d+) out of (\d+)\)", page)
    assert counts and {(int(a), int(b)) for a, b in counts} == {(s["n_drifted"], s["n_features"])}
    assert "Share of Drifted Columns: Actual value 0.200" in page
    assert f"{s['n_drifted']} of {s['n_features']} features drifted" in page
    assert "Verdict: DRIFT" in page and "fired: <b>prediction, top_features</b>" in page
    assert "Value drift for prediction" in page or "Value Drift for column prediction" in page
    # the verdict block is at the top of the body, before evidently's widgets
    assert page.lower().index("<body") < page.index("mlops-drift-verdict") < page.index('<div id="root_metric')


def test_drift_rule_in_the_model_config():
    from airflow_mlops.config.model import ConfigError, DriftConfig
    from airflow_mlops.config.parser import _Parser

    def parse(sec):
        return _Parser("t.yaml").parse_drift(sec)

    assert DriftConfig().rule == "combined" and DriftConfig().top_k == 3
    assert parse({}).rule == "combined" and parse({}).top_k == 3
    assert parse({"rule": "share"}).rule == "share"
    assert parse({"rule": ["top_features", "share"], "top_k": 5}) == DriftConfig(rule=("share", "top_features"),
                                                                                 top_k=5)
    for bad, field in (({"rule": "any"}, "drift.rule"), ({"rule": []}, "drift.rule"),
                       ({"rule": ["share", "nope"]}, "drift.rule"), ({"top_k": -1}, "drift.top_k")):
        with pytest.raises(ConfigError) as e:
            parse(bad)
        assert e.value.field == field
