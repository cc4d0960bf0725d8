"""The new user's first day (issue 18, item 5): the smaller defects, each through the real code path."""

from __future__ import annotations

import logging
import types

import airflow.sdk  # noqa: F401  (Airflow configures logging on import: before caplog attaches)
import numpy as np
import pytest
from alert_servers import make_config

from airflow_mlops.alerts.delivery import Alert, deliver_alert, raise_alert
from airflow_mlops.registry.lifecycle import notify_promotion
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore

DS = "2024-03-05"


@pytest.fixture
def local_store(tmp_path) -> ArtifactStore:
    return ArtifactStore("file://" + str(tmp_path / "store"))


def _promotion_result(version: int = 1) -> dict:
    return {"model": "churn", "version": version, "promote": True, "alias": "champion", "summary": "beats nothing",
            "champion_version": None, "primary_metric": "roc_auc", "candidate_score": 0.8, "champion_score": None,
            "broken_checks": [], "awaiting_approval": False}


# --- (a) alert logs say truthfully what happened -------------------------------------------------------
def test_without_smtp_connection_the_log_says_not_sent_and_why(local_store, monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    config = make_config(owner="owner@example.com")  # an address: only the SMTP connection is missing
    with caplog.at_level(logging.INFO):
        out = notify_promotion(config, local_store, _promotion_result(), DS)
    assert out["sent"] is False
    text = caplog.text
    assert "is not an address" not in text and "is not an e-mail address" not in text
    assert "connection 'smtp_default'" in text and "does not exist" in text and "no channel configured" in text
    notify = [r.getMessage() for r in caplog.records if r.getMessage().startswith("notify churn v1")]
    assert len(notify) == 1 and "already sent" not in notify[0]
    assert "not sent: no channel configured" in notify[0] and "smtp_default" in notify[0]
    assert not local_store.list("alerts/")


def test_owner_not_an_address_is_named_as_the_reason(local_store, caplog):
    config = make_config(owner="ml-platform team")
    outcome = deliver_alert(config, local_store, Alert("churn", "drift", DS, 0.6, 0.5, "drifted"))
    assert outcome.status == "not_sent" and outcome.sent is False
    assert "owner 'ml-platform team' is not an e-mail address and alerts.email is empty" in outcome.reason
    assert outcome.describe().startswith("not sent: no channel configured")


def test_dedup_is_logged_as_already_sent_earlier(local_store, smtp_server, caplog):
    config = make_config()
    assert notify_promotion(config, local_store, _promotion_result(), DS)["sent"] is True
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="airflow_mlops.registry.lifecycle"):
        again = notify_promotion(config, local_store, _promotion_result(), DS)
    assert again["sent"] is False and len(smtp_server.messages) == 1
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("notify churn v1")]
    assert "already sent earlier (dedup: already delivered at" in line
    # raise_alert keeps its bool contract
    assert raise_alert(config, local_store, Alert("churn", "drift", DS, 0.6, 0.5, "drifted")) is True


# --- (b) "no champion at this date" lists the effective time that decided it ------------------------------
def _register(registry: ModelRegistry, n: int = 1) -> None:
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(40, 2))
    for i in range(n):
        registry.register("churn", LogisticRegression().fit(X, X[:, i % 2] > 0), actor="trainer")


def test_no_champion_error_lists_effective_time_not_write_time(local_store):
    from airflow_mlops.scoring.selection import ModelSelectionError, select_model

    registry = ModelRegistry(local_store)
    _register(registry)
    # promoted by the run of 2024-03-10 (written today): it counts from 2024-03-10
    registry.set_alias("churn", "champion", 1, actor="tests", reason="gate passed", effective_at="2024-03-10T00:00:00")
    written = registry.alias_history("churn", "champion")[0]["at"]
    with pytest.raises(ModelSelectionError) as err:
        select_model(registry, "churn", DS, as_of_logical_date=True)
    msg = str(err.value)
    assert "effective 2024-03-10T00:00:00.000000+00:00 set_alias None -> 1 by tests" in msg
    assert f"(recorded {written})" in msg  # the write time only as secondary information
    assert msg.index("2024-03-10") < msg.index(written)


# --- (c) a successful rerun removes that date's quarantine partition -------------------------------------
def test_successful_rerun_removes_only_that_dates_quarantine(store):
    """On file:// and on S3 (moto)."""
    from airflow_mlops.demo.data import churn_day
    from airflow_mlops.registry.lifecycle import GateFailed, validate_partition
    from airflow_mlops.store.datasets import Dataset

    config = make_config()
    data, quarantine = Dataset.for_name(store, "churn"), Dataset(store, "quarantine/churn")
    other = "2024-03-04"
    for day in (other, DS):
        bad = churn_day(day, rows=50)
        bad.loc[1, "customer_id"] = bad.loc[0, "customer_id"]  # a duplicate key: the suite fails
        data.write(day, bad)
        with pytest.raises(GateFailed, match="quarantined"):
            validate_partition(config, store, day)
        assert quarantine.exists(day)
    data.write(DS, churn_day(DS, rows=50))  # the corrected delivery, validated again
    summary = validate_partition(config, store, DS)
    assert summary["success"] is True
    assert summary["quarantine_removed"] == quarantine.uri(DS)
    assert not quarantine.exists(DS) and not store.list(quarantine.key(DS))
    assert quarantine.partitions() == [other] and quarantine.exists(other)  # another date is untouched
    assert "quarantine_removed" not in validate_partition(config, store, DS)  # nothing left to remove


# --- (d) after a rollback no model card keeps stating a lost alias ----------------------------------------
def _card(registry: ModelRegistry, version: int) -> str:
    from airflow_mlops.registry.model_card import CARD_MD

    return registry.store.read_bytes(f"registry/churn/versions/{version}/{CARD_MD}").decode()


def test_rollback_operator_re_renders_the_cards_whose_aliases_changed(local_store, tmp_path):
    import yaml

    from airflow_mlops.operators.registry import RollbackModelOperator
    from airflow_mlops.registry.model_card import write_model_card

    registry = ModelRegistry(local_store)
    _register(registry, 2)
    registry.set_alias("churn", "champion", 1, actor="tests", reason="first")
    registry.set_alias("churn", "champion", 2, actor="tests", reason="better")
    for v in (1, 2):
        write_model_card(registry, "churn", v)
    assert "| aliases | champion |" in _card(registry, 2) and "| aliases | none |" in _card(registry, 1)

    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump({"name": "churn", "owner": "owner@example.com", "data": {"dataset": "churn"},
                                    "keys": ["customer_id"], "target": "churned",
                                    "estimator": {"class": "sklearn.linear_model.LogisticRegression"}}))
    op = RollbackModelOperator(task_id="rollback", config_path=str(path), storage_uri=local_store.root,
                               reason="v2 misbehaves")
    ti = types.SimpleNamespace(dag_id="churn_rollback", run_id="manual__1", task_id="rollback", try_number=1)
    out = op.execute({"ti": ti})
    assert (out["from"], out["to"]) == (2, 1)
    assert set(out["model_cards"]) == {"1", "2"}
    assert "| aliases | none |" in _card(registry, 2)  # v2 no longer claims to be champion
    assert "| aliases | champion |" in _card(registry, 1)
    # every card says as of which registry change its aliases are (a rollback made elsewhere is visible)
    last = registry.audit_log("churn")[-1]
    assert last["action"] == "rollback" and f"| aliases as of | {last['at']} (registry state" in _card(registry, 2)


# --- (f) a waiting sensor names what it waits for and until when ------------------------------------------
def test_waiting_sensor_logs_the_uri_and_its_deadline(local_store, caplog, capsys):
    import datetime as dt

    from airflow_mlops.sensors.data import DataPartitionSensor
    from airflow_mlops.validation.freshness import freshness_deadline

    sensor = DataPartitionSensor(task_id="wait_for_data", prefix="data/churn", ds="2999-01-01",
                                 storage_uri=local_store.root, timeout=3600, poke_interval=60, deadline_hours=6,
                                 deferrable=False)
    with caplog.at_level(logging.INFO):
        assert sensor.poke({}) is False
    logged = caplog.text + capsys.readouterr().out
    uri = local_store.uri("data/churn/ds=2999-01-01")
    deadline = freshness_deadline("2999-01-01", 6)
    assert deadline > dt.datetime.now(dt.UTC)
    line = next(x for x in logged.splitlines() if uri in x)
    assert "not yet" in line and f"freshness deadline {deadline.isoformat()}" in line and "timeout 3600s" in line
    assert "poking every 60s" in line
    from airflow.sdk.exceptions import TaskDeferred

    deferring = DataPartitionSensor(task_id="wait_for_data", prefix="data/churn", ds="2999-01-01",
                                    storage_uri=local_store.root, timeout=3600, poke_interval=60, deferrable=True)
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(TaskDeferred):
        deferring.execute({})
    logged = caplog.text + capsys.readouterr().out
    line = next(x for x in logged.splitlines() if "deferring" in x)
    assert uri in line and "timeout 3600s (at " in line


# --- (e) the smoke profile's latency does not decrease with the batch size --------------------------------
def test_smoke_profile_latency_is_monotone_in_batch_size_under_a_transient_load(local_store):
    """The child's profile (profile_staged, run here in-process on a staged model and sample) while the
    machine is busy for its first 0.3 s and then free: 10,000 rows never come out faster than 1,000."""
    import hashlib
    import io

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import skops.io as sio
    from busy_start_model import TRUSTED, BusyStartRegressor, reset

    from airflow_mlops.registry.smoke import profile_staged, training_columns

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    model = BusyStartRegressor().fit(X, X["a"] * 2 + X["b"])
    sample = X.copy()
    for col, values in training_columns(model.predict(X), None, None).items():
        sample[col] = values
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(sample, preserve_index=False), buf)
    model_bytes, sample_bytes = sio.dumps(model), buf.getvalue()
    local_store.write_bytes("staged/model.skops", model_bytes)
    local_store.write_bytes("staged/holdout.parquet", sample_bytes)
    spec = {"store_root": local_store.root, "model_key": "staged/model.skops",
            "model_sha256": hashlib.sha256(model_bytes).hexdigest(), "sample_key": "staged/holdout.parquet",
            "sample_sha256": hashlib.sha256(sample_bytes).hexdigest(), "features": ["a", "b", "c"],
            "task": "regression", "classes": None, "trusted_types": list(TRUSTED), "batch_sizes": [1000, 10000]}
    reset()
    result = profile_staged(spec)
    assert result["ok"], result.get("error")
    latency = result["profile"]["latency_ms"]
    assert latency["10000"] >= latency["1000"], latency
    assert result["profile"]["latency_ms_per_10k_rows"] == latency["10000"]
