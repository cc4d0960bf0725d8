"""Kill switch (registry flag or Airflow Variable): naive training-baseline rows, flagged
``scored_by="fallback"``; switching off resumes model scoring. Retired versions cannot score."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from rollout_helpers import CONFIG_PATH, DS, churn_config, input_frame, read_output, spend_config

from airflow_mlops.registry.model_registry import LifecycleError, ModelRegistry
from airflow_mlops.scoring.batch import score_partition
from airflow_mlops.scoring.policies import fallback_baseline, switch_is_on


def holdout(store, name: str, version: int) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = ModelRegistry(store).read_artifact(name, version, "holdout.parquet")
    return pq.read_table(pa.BufferReader(data)).to_pandas()


def test_kill_switch_registry_flag_writes_only_fallback_then_resumes(store):
    cfg = churn_config()
    reg = ModelRegistry(store)
    normal = score_partition(cfg, store, DS, run_id="r0")
    assert normal["kill_switch"] is None and normal["fallback"] is None

    reg.set_model_disabled("churn", True, actor="oncall", reason="bad upstream feed")
    off = score_partition(cfg, store, DS, run_id="r1")
    out = read_output(store)
    assert len(out) == 500 and set(out["scored_by"]) == {"fallback"}
    assert off["scored_by"] == "fallback" and off["kill_switch"]["source"] == "registry"
    assert off["kill_switch"]["by"] == "oncall" and off["kill_switch"]["reason"] == "bad upstream feed"
    assert set(out["model_version"]) == {1}  # the version whose training baseline was used
    fb = off["fallback"]
    assert fb["source"] == "training_data" and fb["rows"] == 750  # the training split (1000 - 250 holdout)
    json.dumps(off)

    # the fallback is the training's naive baseline: majority class + class prior. Its holdout
    # metrics equal metrics.baseline that training recorded for DummyClassifier(strategy="prior").
    meta = reg.get_metadata("churn", 1)
    assert set(out["prediction"]) == {fb["prediction"]} == {0}
    assert out["proba_1"].nunique() == 1 and out["proba_1"].iloc[0] == pytest.approx(fb["proba"]["1"])
    np.testing.assert_allclose(out["proba_0"] + out["proba_1"], 1.0)
    y = holdout(store, "churn", 1)["churned"].to_numpy()
    p1 = fb["proba"]["1"]
    log_loss = -np.mean(y * np.log(p1) + (1 - y) * np.log(1 - p1))
    assert log_loss == pytest.approx(meta["metrics"]["baseline"]["log_loss"], abs=1e-9)
    assert np.mean(y == fb["prediction"]) == pytest.approx(meta["metrics"]["baseline"]["accuracy"])

    # explanations and the canary are not computed for fallback rows
    import dataclasses

    from airflow_mlops.config.model import CanaryConfig, ExplainConfig

    cfg2 = dataclasses.replace(cfg, explain=ExplainConfig(top_k=2), canary=CanaryConfig("challenger", 0.5))
    s2 = score_partition(cfg2, store, DS, run_id="r2")
    out2 = read_output(store)
    assert set(out2["scored_by"]) == {"fallback"} and s2["canary_rows"] == 0 and "kill switch" in s2["canary_error"]
    assert out2["explain_1_feature"].isna().all() and out2["explain_2_value"].isna().all()
    assert s2["explain"]["rows"] == 0

    reg.set_model_disabled("churn", False, actor="oncall", reason="feed fixed")
    back = score_partition(cfg, store, DS, run_id="r3")
    out3 = read_output(store)
    assert back["kill_switch"] is None and set(out3["scored_by"]) == {"champion"}
    model, meta = reg.load_model("churn", version=1)
    df = input_frame(DS).sort_values("customer_id").reset_index(drop=True)
    np.testing.assert_array_equal(out3["prediction"], model.predict(df[meta["features"]]))
    assert [e["action"] for e in reg.audit_log("churn")][-2:] == ["disable", "enable"]


def test_kill_switch_airflow_variable_through_the_operator(store, monkeypatch):
    from airflow_mlops.operators.inference import BatchInferenceOperator, kill_switch_variable

    assert kill_switch_variable("churn") == "mlops_churn_disabled"
    monkeypatch.setenv("AIRFLOW_VAR_MLOPS_CHURN_DISABLED", "true")
    op = BatchInferenceOperator(task_id="score", config_path=CONFIG_PATH, storage_uri=store.root)
    xcom = op.execute({"ds": DS, "run_id": "scheduled__1"})
    assert xcom["scored_by"] == "fallback"
    assert xcom["kill_switch"]["source"] == "Airflow Variable mlops_churn_disabled"
    assert set(read_output(store)["scored_by"]) == {"fallback"}

    monkeypatch.setenv("AIRFLOW_VAR_MLOPS_CHURN_DISABLED", "false")
    xcom = op.execute({"ds": DS, "run_id": "scheduled__2"})
    assert xcom["scored_by"] == "champion" and xcom["kill_switch"] is None
    out = read_output(store)
    assert set(out["scored_by"]) == {"champion"} and out["proba_1"].nunique() > 100

    monkeypatch.delenv("AIRFLOW_VAR_MLOPS_CHURN_DISABLED")
    assert op.execute({"ds": DS, "run_id": "scheduled__3"})["scored_by"] == "champion"


def test_switch_values():
    assert not any(switch_is_on(v) for v in (None, False, "", "0", "false", "False", "no", "off", " OFF ", "null"))
    assert all(switch_is_on(v) for v in (True, "true", "1", "yes", "on", "bad data since 2024-01-03"))


def test_regression_fallback_is_the_training_mean(store):
    reg = ModelRegistry(store)
    reg.set_model_disabled("churn_spend", True, actor="oncall", reason="test")
    summary = score_partition(spend_config(), store, DS, run_id="r")
    out = read_output(store, model="churn_spend")
    fb = summary["fallback"]
    assert fb["source"] == "training_data" and fb["proba"] is None
    assert set(out["scored_by"]) == {"fallback"} and out["prediction"].nunique() == 1
    assert [c for c in out.columns if c.startswith("proba_")] == []
    # DummyRegressor(strategy="mean") on the training split has exactly this holdout RMSE/MAE
    y = holdout(store, "churn_spend", 1)["monthly_charges"].to_numpy()
    baseline = reg.get_metadata("churn_spend", 1)["metrics"]["baseline"]
    assert np.sqrt(np.mean((y - fb["prediction"]) ** 2)) == pytest.approx(baseline["rmse"], rel=1e-9)
    assert np.mean(np.abs(y - fb["prediction"])) == pytest.approx(baseline["mae"], rel=1e-9)


def test_fallback_baseline_without_the_training_data(store):
    """Training partitions deleted (e.g. a data-deletion request): the holdout's class shares."""
    reg = ModelRegistry(store)
    exact = fallback_baseline(reg, "churn", 1)
    for d in ("2024-01-01", "2024-01-02"):
        store.delete_prefix(f"data/churn/ds={d}")
    approx = fallback_baseline(reg, "churn", 1)
    y = holdout(store, "churn", 1)["churned"]
    assert approx["source"] == "holdout" and approx["proba"]["1"] == pytest.approx(y.mean())
    assert approx["prediction"] == exact["prediction"] == 0
    assert abs(approx["proba"]["1"] - exact["proba"]["1"]) < 0.01  # stratified holdout: same prior


def test_retired_version_cannot_score(store):
    reg = ModelRegistry(store)
    reg.set_lifecycle("churn", 2, "retired", actor="alice", reason="trained on leaked labels")
    with pytest.raises(LifecycleError) as err:
        score_partition(churn_config(), store, DS, version=2)
    msg = str(err.value)
    assert "churn v2" in msg and "alice" in msg and "trained on leaked labels" in msg and "retired" in msg
    assert not store.exists(f"predictions/churn/ds={DS}/_SUCCESS")
    # through the operator: the task fails without retry, with the same explanation
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.operators.inference import BatchInferenceOperator

    op = BatchInferenceOperator(task_id="score", config_path=CONFIG_PATH, storage_uri=store.root, version="2")
    with pytest.raises(AirflowFailException, match="alice"):
        op.execute({"ds": DS, "run_id": "r"})
    assert os.path.isdir(store.local_path("registry/churn/versions/2"))


def test_policy_violating_champion_is_refused_before_any_row_and_the_kill_switch_still_falls_back(store):
    """A champion whose approval is required but pending (a state left by an older release, signed on adoption)
    may not score: the run fails naming the version and the reason, nothing is written. The kill switch still
    writes the naive fallback (no model is loaded)."""
    from airflow_mlops.registry.model_registry import PolicyError

    cfg = churn_config()
    reg = ModelRegistry(store)
    st = reg.state("churn")
    st["approvals"]["1"] = {"status": "pending", "required": True, "by": None, "reason": ""}
    store.write_bytes("registry/churn/state.json", reg._state_bytes("churn", st))
    with pytest.raises(PolicyError) as e:
        score_partition(cfg, store, DS, run_id="r0")
    assert "churn v1 (champion) requires an approval and its approval is 'pending'" in str(e.value)
    assert not store.exists(f"predictions/churn/ds={DS}/_SUCCESS") and not store.list("predictions")
    reg.set_model_disabled("churn", True, actor="oncall", reason="v1 awaits review")
    out = score_partition(cfg, store, DS, run_id="r1")
    assert out["scored_by"] == "fallback" and set(read_output(store)["scored_by"]) == {"fallback"}
