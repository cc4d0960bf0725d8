"""Fresh-process smoke test at registration: profile on success; a mismatch blocks the version."""

from __future__ import annotations

import os

import pytest
from gov_helpers import DS, churn_config
from volatile_model import TRUSTED

from airflow_mlops.registry.lifecycle import train_and_register
from airflow_mlops.registry.model_registry import ModelNotFoundError
from airflow_mlops.registry.smoke import MAX_CHECK_ROWS, SmokeTestError, smoke_check, training_columns
from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES


def test_registration_records_fresh_process_profile(store, registry):
    summary = train_and_register(churn_config(), store, DS)
    meta = registry.get_metadata("churn", summary["version"])
    profile = meta["profile"]
    assert profile["pid"] != os.getpid()  # scored in another interpreter
    assert profile["predictions_equal"] is True and profile["max_abs_proba_diff"] <= 1e-12
    assert profile["rows_checked"] == min(meta["holdout_rows"], MAX_CHECK_ROWS) > 0
    assert set(profile["latency_ms"]) == {"1000", "10000"}
    assert profile["latency_ms_per_10k_rows"] == profile["latency_ms"]["10000"] > 0
    assert profile["model_bytes"] == meta["artifacts"]["model.skops"]["bytes"]
    assert profile["model_size_mb"] == pytest.approx(profile["model_bytes"] / 2**20, rel=1e-5)
    assert profile["peak_rss_mb"] >= profile["rss_baseline_mb"] > 50
    assert profile["peak_rss_delta_mb"] == pytest.approx(profile["peak_rss_mb"] - profile["rss_baseline_mb"], abs=0.02)
    assert summary["profile"]["latency_ms_per_10k_rows"] == profile["latency_ms_per_10k_rows"]
    assert 0 < profile["load_seconds"] < profile["smoke_test_seconds"] < 120
    # the held-back sample carries the training-time predictions and probabilities the child compared
    sample = registry.store.read_parquet(registry.store.key_of(registry.version_uri("churn", 1, "holdout.parquet")))
    assert {"_training_prediction", "_training_proba_0", "_training_proba_1"} <= set(sample.columns)
    # importance and the evaluation report were made while the child scored, and committed with the version
    assert {r["feature"] for r in meta["feature_importance"]} == set(meta["features"])
    assert meta["importance_metric"] == "roc_auc"
    report = registry.read_artifact("churn", summary["version"], "reports/evaluation.html").decode()
    assert "Permutation importance" in report and meta["feature_importance"][0]["feature"] in report
    assert meta["artifacts"]["reports/evaluation.html"]["bytes"] == len(report.encode())


def test_failure_while_the_child_runs_stops_it_and_registers_nothing(store, registry):
    pipe, sample, features = _staged_pipeline_with_volatile_transform(store)
    seen = {}

    def broken(mv):
        seen["pid"] = process.proc.pid
        raise RuntimeError("report rendering failed")

    from airflow_mlops.registry.smoke import SmokeProcess

    with SmokeProcess() as process:
        check = smoke_check(store, features=features, task="binary", classes=[0, 1],
                            trusted_types=[*PIPELINE_CUSTOM_TYPES, *TRUSTED], process=process, while_running=broken)
        with pytest.raises(RuntimeError, match="report rendering failed"):
            registry.register("churn", pipe, artifacts={"holdout.parquet": _parquet(sample)}, before_commit=check)
        assert process.proc is None  # the child was stopped, not left running
    with pytest.raises(OSError):
        os.kill(seen["pid"], 0)  # reaped: no such process
    assert registry.exists("churn") is False


def _staged_pipeline_with_volatile_transform(store):
    """A real pipeline whose feature transform (CachedScaler) loses its fitted state on save/load."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from volatile_model import CachedScaler

    df = store.read_parquet("data/churn/ds=2023-12-27")
    features = ["tenure_months", "monthly_charges", "support_calls"]
    pipe = Pipeline([("scale", CachedScaler()), ("clf", LogisticRegression())]).fit(df[features], df["churned"])
    sample = df[features].iloc[:200].reset_index(drop=True)
    for col, values in training_columns(pipe.predict(sample), pipe.predict_proba(sample), [0, 1]).items():
        sample[col] = values
    return pipe, sample, features


def _parquet(df) -> bytes:
    from airflow_mlops.registry.lifecycle import _parquet_bytes

    return _parquet_bytes(df)


def test_volatile_feature_transform_blocks_registration(store, registry):
    pipe, sample, features = _staged_pipeline_with_volatile_transform(store)
    check = smoke_check(store, features=features, task="binary", classes=[0, 1],
                        trusted_types=[*PIPELINE_CUSTOM_TYPES, *TRUSTED])
    with pytest.raises(SmokeTestError) as err:
        registry.register("churn", pipe, artifacts={"holdout.parquet": _parquet(sample)}, before_commit=check)
    msg = str(err.value)
    assert "does not reproduce the training-time predictions" in msg
    assert "of 200 rows differ" in msg and "max abs probability diff" in msg
    assert "Row positions in holdout.parquet: 0, 1, 2" in msg
    assert "What to check" in msg and "__getstate__" in msg and "No version was registered" in msg
    # nothing became visible: no metadata.json, no registered model, no audit entry
    assert not store.exists("registry/churn/versions/1/metadata.json")
    assert store.exists("registry/churn/versions/1/model.skops")  # staged, invisible, number skipped
    with pytest.raises(ModelNotFoundError):
        registry.list_versions("churn")
    # the next registration gets a fresh number and is the only visible version
    summary = train_and_register(churn_config(), store, DS)
    assert summary["version"] == 2 and registry.list_versions("churn") == [2]
    assert [e["action"] for e in registry.audit_log("churn")] == ["register"]


def test_configured_estimator_with_unpersisted_state_fails_training_registration(store, registry):
    cfg = churn_config(estimator={"class": "volatile_model.CachedScalingClassifier", "params": {"max_iter": 500}})
    with pytest.raises(SmokeTestError, match=r"rows differ \(\d+ predicted label\(s\) differ") as err:
        train_and_register(cfg, store, DS)
    assert "churn v1" in str(err.value)
    assert registry.exists("churn") is False
    assert not store.exists("registry/churn/versions/1/metadata.json")


def test_untrusted_type_is_refused_in_the_child(store, registry):
    pipe, sample, features = _staged_pipeline_with_volatile_transform(store)
    check = smoke_check(store, features=features, task="binary", classes=[0, 1])  # CachedScaler not trusted
    with pytest.raises(SmokeTestError) as err:
        registry.register("churn", pipe, artifacts={"holdout.parquet": _parquet(sample)}, before_commit=check)
    assert "could not load or score" in str(err.value) and "volatile_model.CachedScaler" in str(err.value)
    assert registry.exists("churn") is False


def test_tampered_staged_artifact_is_refused(store, registry):
    pipe, sample, features = _staged_pipeline_with_volatile_transform(store)
    inner = smoke_check(store, features=features, task="binary", classes=[0, 1], trusted_types=TRUSTED)

    def tamper_then_check(mv):
        key = store.key_of(mv.uri) + "/holdout.parquet"
        store.write_bytes(key, _parquet(sample.iloc[:10]))
        inner(mv)

    with pytest.raises(SmokeTestError, match="changed after it was written"):
        registry.register("churn", pipe, artifacts={"holdout.parquet": _parquet(sample)},
                          before_commit=tamper_then_check)
    assert registry.exists("churn") is False


def test_smoke_test_reads_the_staged_version_from_s3(s3_root):
    """The child process reads the staged artifacts through the same S3 connection (moto server)."""
    from gov_helpers import DAYS

    from airflow_mlops.demo.data import churn_day
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    store = ArtifactStore(s3_root)
    data = Dataset.for_name(store, "churn")
    for day in DAYS:
        data.write(day, churn_day(day, rows=200))
    summary = train_and_register(churn_config(), store, DS)
    meta = ModelRegistry(store).get_metadata("churn", summary["version"])
    assert meta["profile"]["predictions_equal"] is True
    assert meta["profile"]["rows_checked"] == min(meta["holdout_rows"], MAX_CHECK_ROWS)
    assert store.exists(f"registry/churn/versions/{summary['version']}/reports/model_card.md")
