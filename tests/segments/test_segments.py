"""Segmented models at the pipeline level: one registered model per region, trained, promoted and
scored (each row by its segment's champion), min_rows skips, unknown segments refused."""

from __future__ import annotations

import numpy as np
import pytest

from airflow_mlops.config.data_check import check_config_against_data
from airflow_mlops.config.model import ConfigError
from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.config.segments import SegmentError, segment_config, segment_model_name, segment_slug
from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.segments.flows import (
    list_training_segments,
    plan_segment_scoring,
    promote_segment,
    score_segments,
    train_segment,
)
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset
from airflow_mlops.training.predict import predict_frame

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract"]
DAYS = date_range("2024-01-01", 3)
SCORE_DAY = "2024-01-04"


def seg_config(**segments) -> dict:
    return {
        "name": "segchurn", "owner": "ml@example.com",
        "data": {"dataset": "churn", "scoring_dataset": "churn_scoring", "training_window_days": 3},
        "keys": ["customer_id"], "target": "churned", "features": FEATURES, "task": "binary",
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300}},
        "training": {"cv_folds": 2, "seed": 7, "reference_sample_size": 200},
        "metrics": {"primary": "roc_auc", "floors": {"roc_auc": 0.55}},
        "validation": {"suite": None},
        "segments": {"column": "region", "min_rows": 200, **segments},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three days of 400 rows: north ~480, south ~360, east ~240, west ~120 rows (< min_rows 200)."""
    store = ArtifactStore("file://" + str(tmp_path_factory.mktemp("seg") / "mlops"))
    data = Dataset.for_name(store, "churn")
    for day in DAYS:
        data.write(day, churn_day(day, rows=400))
    cfg = parse_model_config(seg_config())
    listed = list_training_segments(cfg, store, DAYS[-1])
    results = {}
    for value in listed["segments"]:
        t = train_segment(cfg, store, DAYS[-1], value, {"dag_id": "segchurn_training"})
        results[value] = (t, promote_segment(cfg, store, value, t,
                                             run_info={"logical_date": f"{DAYS[-1]}T00:00:00+00:00"}))
    return cfg, store, listed, results


def test_config_segments_section_and_checks():
    cfg = parse_model_config(seg_config(min_rows=50, map_files=True))
    assert (cfg.segments.column, cfg.segments.min_rows, cfg.segments.map_files) == ("region", 50, True)
    assert parse_model_config(cfg.to_dict()) == cfg
    # the segment column is never a feature, also when features are inferred
    inferred = parse_model_config({**seg_config(), "features": None})
    assert "region" not in inferred.feature_columns(list(churn_day("2024-01-01", rows=5).columns))
    for bad, field in (({"column": "customer_id"}, "segments.column"), ({"column": "churned"}, "segments.column"),
                       ({"column": "region", "min_rows": 0}, "segments.min_rows"),
                       ({"column": "region", "colour": 1}, "segments")):
        with pytest.raises(ConfigError) as e:
            parse_model_config({**seg_config(), "segments": bad})
        assert e.value.field.startswith(field), (bad, e.value.field)
    with pytest.raises(ConfigError, match="listed in features"):
        parse_model_config({**seg_config(), "features": [*FEATURES, "region"]})
    schema = {c: "string" if c in ("contract",) else "double" for c in FEATURES}
    schema.update({"customer_id": "int64", "churned": "int64"})
    with pytest.raises(ConfigError) as e:
        check_config_against_data(cfg, schema)
    assert e.value.field == "segments.column" and "region" in str(e.value)
    with pytest.raises(ConfigError, match="string or integer") as e:
        check_config_against_data(cfg, {**schema, "region": "double"})
    assert e.value.field == "segments.column"
    check_config_against_data(cfg, {**schema, "region": "int64"})
    check_config_against_data(cfg, {**schema, "region": "dictionary<values=string, indices=int32, ordered=0>"})


def test_slugs_and_names():
    cfg = parse_model_config(seg_config())
    assert segment_slug("North-East ") == "north_east" and segment_slug(3) == "3"
    assert segment_model_name(cfg, "North East") == "segchurn__north_east"
    sc = segment_config(cfg, "north")
    assert sc.name == "segchurn__north" and sc.features == cfg.features and sc.segments == cfg.segments
    with pytest.raises(SegmentError, match="letters or digits"):
        segment_slug("--")
    with pytest.raises(SegmentError, match="registry limit 128"):
        segment_model_name(cfg, "x" * 130)
    from airflow_mlops.registry.model_registry import _check_name

    _check_name(segment_model_name(cfg, "y" * (128 - len("segchurn__"))))  # the longest accepted name


def test_each_segment_is_its_own_registered_model(trained):
    cfg, store, listed, results = trained
    rows = listed["rows"]
    assert set(rows) == {"north", "south", "east", "west"} and sum(rows.values()) == 1200
    assert listed["segments"] == ["east", "north", "south"]
    assert listed["skipped"] == [{"segment": "west", "rows": rows["west"], "min_rows": 200,
                                  "reason": f"{rows['west']} row(s) in the training window, fewer than "
                                            "segments.min_rows=200"}]
    reg = ModelRegistry(store)
    for value, (t, p) in results.items():
        name = f"segchurn__{value}"
        assert t["model"] == name and t["version"] == 1 and t["rows"] == rows[value]
        assert p["promote"] is True and p["alias"] == "champion" and p["segment"] == value
        assert reg.resolve(name, alias="champion") == 1
        meta = reg.get_metadata(name, 1)
        assert meta["training_data"]["segment"] == {"column": "region", "value": value}
        assert meta["training_data"]["fingerprint"]["rows"] == rows[value]
        assert "region" not in meta["features"]
    assert "segchurn__west" not in reg.list_models()
    # a segment under min_rows is skipped by train_segment too, and promote passes the skip through
    skipped = train_segment(cfg, store, DAYS[-1], "west")
    assert skipped["skipped"].startswith(f"{rows['west']} row(s)") and skipped["model"] == "segchurn__west"
    assert promote_segment(cfg, store, "west", skipped)["skipped"] == skipped["skipped"]


def test_scoring_routes_rows_to_their_segment_model(trained):
    cfg, store, _, _ = trained
    day = churn_day(SCORE_DAY, rows=500)
    day = day[day["region"] != "west"].reset_index(drop=True)
    scoring = Dataset.for_name(store, "churn_scoring")
    scoring.write(SCORE_DAY, [day.iloc[:200], day.iloc[200:]])  # two input files
    assert len(scoring.files(SCORE_DAY)) == 2
    plan = plan_segment_scoring(cfg, store, SCORE_DAY, map_files=True)
    assert plan["versions"] == {"east": 1, "north": 1, "south": 1} and len(plan["tasks"]) == 6
    out = score_segments(cfg, store, SCORE_DAY, run_id="test")
    assert out["rows"] == len(day) and out["selection"] == "segments"
    assert {k: v["model"] for k, v in out["segments"].items()} == {
        "east": "segchurn__east", "north": "segchurn__north", "south": "segchurn__south"}
    pred = Dataset(store, "predictions/segchurn").read(SCORE_DAY)
    assert len(pred) == len(day) and pred["customer_id"].is_unique
    assert set(pred["scored_by"]) == {"champion"} and set(pred["model_version"]) == {1}
    merged = pred.merge(day, on="customer_id")
    reg = ModelRegistry(store)
    for value, group in merged.groupby("region"):
        assert set(group["model_name"]) == {f"segchurn__{value}"}
        model, meta = reg.load_model(f"segchurn__{value}", version=1)
        own = predict_frame(model, group, meta["features"], meta["task"], meta["classes"])
        np.testing.assert_allclose(group["proba_1"].to_numpy(), own["proba_1"].to_numpy(), rtol=1e-9)
        assert (group["prediction"].to_numpy() == own["prediction"].to_numpy()).all()
    # the segment models differ: scoring north rows with the south model gives other probabilities
    north = merged[merged["region"] == "north"]
    south_model, meta = reg.load_model("segchurn__south", version=1)
    other = predict_frame(south_model, north, meta["features"], meta["task"], meta["classes"])
    assert not np.allclose(north["proba_1"].to_numpy(), other["proba_1"].to_numpy())
    assert not store.list("predictions/segchurn/_parts")  # parts removed after the merge


def test_segment_without_champion_fails_listing_it_and_writes_nothing(trained):
    cfg, store, _, _ = trained
    day = "2024-01-05"
    Dataset.for_name(store, "churn_scoring").write(day, churn_day(day, rows=300))  # has west rows
    with pytest.raises(SegmentError) as e:
        score_segments(cfg, store, day, run_id="test")
    msg = str(e.value)
    assert "1 segment(s)" in msg and "'west'" in msg and "segchurn__west" in msg and "Nothing was written" in msg
    assert "'north'" not in msg
    assert not Dataset(store, "predictions/segchurn").exists(day)
    assert not [k for k in store.list("predictions/segchurn/_parts") if f"ds={day}" in k]


def test_rows_without_a_segment_value_are_refused(trained):
    cfg, store, _, _ = trained
    day = "2024-01-06"
    frame = churn_day(day, rows=100)
    frame.loc[frame.index[:3], "region"] = None
    Dataset.for_name(store, "churn_scoring").write(day, frame)
    with pytest.raises(SegmentError, match=r"3 row\(s\) .* have no 'region' value"):
        plan_segment_scoring(cfg, store, day)


def test_merge_refuses_parts_missing_a_segment(trained):
    from airflow_mlops.segments.flows import merge_segment_parts, score_segment

    cfg, store, _, _ = trained
    day = "2024-01-07"
    frame = churn_day(day, rows=300)
    Dataset.for_name(store, "churn_scoring").write(day, frame[frame["region"] != "west"])
    parts = [score_segment(cfg, store, day, v, as_of_logical_date=True) for v in ("north", "south")]
    assert all(p["segment"] in ("north", "south") and p["part"] for p in parts)
    with pytest.raises(SegmentError, match=r"not scored \['east'\]"):
        merge_segment_parts(cfg, store, day, parts)
    assert not Dataset(store, "predictions/segchurn").exists(day)


def test_rerun_replaces_the_partition(trained):
    cfg, store, _, _ = trained
    before = Dataset(store, "predictions/segchurn").read(SCORE_DAY)
    again = score_segments(cfg, store, SCORE_DAY, run_id="rerun")
    after = Dataset(store, "predictions/segchurn").read(SCORE_DAY)
    assert again["rows"] == len(before) == len(after) and after["customer_id"].is_unique
    assert set(after["run_id"]) == {"rerun"}
    cols = ["customer_id", "model_name", "prediction", "proba_1"]
    a = before[cols].sort_values("customer_id").reset_index(drop=True)
    b = after[cols].sort_values("customer_id").reset_index(drop=True)
    assert a.equals(b)


def test_integer_segment_values_on_s3(store_root):
    """Segments of an integer column, trained and scored through the S3 (moto) and file:// stores."""
    store = ArtifactStore(store_root)
    data = Dataset.for_name(store, "churn")
    for day in DAYS:
        frame = churn_day(day, rows=300)
        frame["tier"] = (frame["customer_id"] % 2).astype("int64") + 1  # tiers 1 and 2
        data.write(day, frame)
    cfg = parse_model_config({**seg_config(min_rows=100), "segments": {"column": "tier", "min_rows": 100},
                              "data": {"dataset": "churn", "training_window_days": 3}})
    listed = list_training_segments(cfg, store, DAYS[-1])
    assert listed["segments"] == ["1", "2"] and listed["rows"] == {"1": 450, "2": 450}
    for value in listed["segments"]:
        promote_segment(cfg, store, value, train_segment(cfg, store, DAYS[-1], value),
                        run_info={"logical_date": f"{DAYS[-1]}T00:00:00+00:00"})
    score_day = churn_day(SCORE_DAY, rows=200)
    score_day["tier"] = (score_day["customer_id"] % 2).astype("int64") + 1
    data.write(SCORE_DAY, [score_day.iloc[:120], score_day.iloc[120:]])
    out = score_segments(cfg, store, SCORE_DAY, map_files=True)
    assert out["rows"] == 200 and out["parts"] == 4 and set(out["segments"]) == {"1", "2"}
    pred = Dataset(store, "predictions/segchurn").read(SCORE_DAY).merge(score_day, on="customer_id")
    assert len(pred) == 200
    assert (pred["model_name"] == "segchurn__" + pred["tier"].astype(str)).all()


def test_single_class_segment_is_skipped(tmp_path):
    store = ArtifactStore("file://" + str(tmp_path / "mlops"))
    data = Dataset.for_name(store, "churn")
    for day in DAYS:
        frame = churn_day(day, rows=300)
        frame.loc[frame["region"] == "east", "churned"] = 0  # east: one class only
        data.write(day, frame)
    cfg = parse_model_config(seg_config(min_rows=50))
    listed = list_training_segments(cfg, store, DAYS[-1])
    assert "east" not in listed["segments"] and {"north", "south", "west"} <= set(listed["segments"])
    (east,) = [s for s in listed["skipped"] if s["segment"] == "east"]
    assert "1 target class(es)" in east["reason"]
    assert "target class" in train_segment(cfg, store, DAYS[-1], "east")["skipped"]
    assert not ModelRegistry(store).exists("segchurn__east")


def test_drift_of_a_segmented_model_compares_each_segment_with_its_own_reference(trained):
    from airflow_mlops.monitoring.monitor import detect_drift, xcom_summary

    cfg, store, _, _ = trained
    day = "2024-01-06"
    frame = churn_day(day, rows=600, drift=1.0)
    frame = frame[frame["region"] != "west"].reset_index(drop=True)
    Dataset.for_name(store, "churn_scoring").write(day, frame)
    score_segments(cfg, store, day, run_id="drift")
    summary = detect_drift(cfg, store, day, html=True)
    by_model = {s["model"]: s for s in summary["segments"]}
    assert set(by_model) == {"segchurn__east", "segchurn__north", "segchurn__south"}
    reg = ModelRegistry(store)
    for model, seg in by_model.items():
        assert seg["version"] == 1 and seg["rows"] == int((frame["region"] == model.split("__")[1]).sum())
        assert store.exists(store.key_of(seg["report_uri"]))
        assert reg.get_metadata(model, 1)  # each against its own registered version
    worst = max(s["share_drifted"] for s in by_model.values())
    assert summary["share_drifted"] == worst and by_model[summary["segment_model"]]["share_drifted"] == worst
    assert summary["dataset_drift"] is any(s["dataset_drift"] for s in by_model.values())
    assert summary["dataset_drift"] is True  # drift=1.0 shifts several features in every region
    small = xcom_summary(summary)
    assert small["model"] == "segchurn" and len(small["segments"]) == 3
    assert store.read_json(f"monitoring/segchurn/ds={day}/drift.json")["segments"] == summary["segments"]
