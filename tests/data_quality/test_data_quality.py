"""Freshness, volume and duplicate-delivery checks: real partitions in a store, real alert e-mails
(aiosmtpd via Airflow's SMTP connection), a real webhook receiver."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import types

import numpy as np
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout
from alert_servers import make_config

from airflow_mlops.monitoring.data_quality import check_data_quality, data_quality_key
from airflow_mlops.operators.data_quality import DataQualityMonitorOperator
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset
from airflow_mlops.validation.freshness import duplicate_check, freshness_check, freshness_deadline, volume_check

START = dt.date(2024, 3, 1)
MONITORING = {"volume_window_days": 14, "volume_min_ratio": 0.5, "volume_max_ratio": 2.0,
              "freshness_deadline_hours": 6}
SENTINEL_TEXT = "SENTINEL-ROW-VALUE-7f3a9c"
SENTINEL_KEY = "CUST-SENTINEL-5521"
SENTINEL_NUM = 918273.645


def _ds(i: int) -> str:
    return (START + dt.timedelta(days=i)).isoformat()


def day_frame(ds: str, n: int, seed: int, sentinels: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "customer_id": [f"c-{ds}-{i:05d}" for i in range(n)],
        "tenure_months": rng.integers(1, 72, n),
        "monthly_charges": rng.normal(70, 20, n).round(2),
        "contract": rng.choice(["monthly", "yearly", "two_year"], n),
        "churned": rng.integers(0, 2, n),
    })
    if sentinels:
        frame.loc[0, "contract"] = SENTINEL_TEXT
        frame.loc[1, "customer_id"] = SENTINEL_KEY
        frame.loc[2, "monthly_charges"] = SENTINEL_NUM
    return frame


def normal_rows(i: int) -> int:
    return 1000 + int(np.random.default_rng(1000 + i).integers(-60, 61))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    store = ArtifactStore("file://" + str(tmp_path / "store"))
    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_URI", store.root)
    config = make_config(alerts={"email": ["data-oncall@example.com"]}, monitoring=MONITORING)
    data = Dataset.for_name(store, "churn")
    return store, config, data


def _ctx(ds: str, task_id: str = "data_quality") -> dict:
    ti = types.SimpleNamespace(dag_id="churn_monitoring", task_id=task_id, run_id=f"scheduled__{ds}",
                               try_number=1, log_url=None)
    return {"ti": ti, "ds": ds, "logical_date": dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)}


def _config_file(store: ArtifactStore, config) -> str:
    """The model config as a file (JSON is valid YAML), as the DAG factory passes it to operators."""
    import os

    path = store.local_path("configs/churn.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(config.to_dict(), f)
    return path


def _write_normal_days(data: Dataset, days: range, sentinels: bool = False) -> None:
    for i in days:
        data.write(_ds(i), day_frame(_ds(i), normal_rows(i), seed=i, sentinels=sentinels))


def test_volume_and_fresh_checks_stay_quiet_on_14_normal_days(setup, smtp_server):
    store, config, data = setup
    _write_normal_days(data, range(0, 28))
    statuses = []
    for i in range(14, 28):  # two weeks of daily runs, each with a full trailing window
        summary = check_data_quality(config, store, _ds(i), context=_ctx(_ds(i)))
        statuses.append((summary["status"], summary["volume"]["status"], summary["duplicate"]["status"],
                         summary["freshness"]["status"]))
        assert summary["volume"]["n_history"] == 14
        assert 0.85 < summary["volume"]["ratio"] < 1.15
    assert statuses == [("ok", "ok", "ok", "ok")] * 14
    assert smtp_server.messages == []
    assert store.list("alerts") == []
    saved = store.read_json(data_quality_key("churn", _ds(27)))
    assert saved["partition"]["rows"] == normal_rows(27) and saved["alerts"] == []


def test_volume_fresh_duplicate_each_raise_their_own_alert_once(setup, smtp_server):
    """40 % of the usual rows -> volume; yesterday's file re-delivered -> duplicate; a missing day past
    its deadline -> freshness. One e-mail each, none again on a re-run."""
    store, config, data = setup
    _write_normal_days(data, range(0, 14))
    low, dup, missing = _ds(14), _ds(15), _ds(16)
    data.write(low, day_frame(low, 400, seed=14))
    # a re-delivery: yesterday's file bytes dropped into today's partition under another name, no manifest
    (yesterday_file,) = data.files(low)
    store.write_bytes(f"data/churn/ds={dup}/delivery-{dup}.parquet", store.read_bytes(yesterday_file))

    s_low = check_data_quality(config, store, low, context=_ctx(low))
    assert s_low["status"] == "alert" and s_low["volume"]["status"] == "low"
    assert s_low["volume"]["ratio"] == pytest.approx(400 / np.median([normal_rows(i) for i in range(14)]), rel=1e-6)
    assert [a["check"] for a in s_low["alerts"]] == ["volume"] and s_low["alerts"][0]["delivered"] is True

    s_dup = check_data_quality(config, store, dup, context=_ctx(dup))
    assert s_dup["duplicate"]["duplicate_of"] == [low]
    # a 400-row day also departs from the volume baseline: both conditions alert, each on its own
    assert sorted(a["check"] for a in s_dup["alerts"]) == ["duplicate", "volume"]

    now = dt.datetime.combine(dt.date.fromisoformat(missing), dt.time(), dt.UTC) + dt.timedelta(hours=31)
    s_miss = check_data_quality(config, store, missing, now=now, context=_ctx(missing))
    assert s_miss["partition"]["present"] is False and s_miss["freshness"]["hours_late"] == pytest.approx(1.0)
    assert [a["check"] for a in s_miss["alerts"]] == ["freshness"]

    subjects = [m["subject"] for m in smtp_server.messages]
    assert len(subjects) == 4, subjects
    assert any(f"churn · volume · {low}" in s for s in subjects)
    assert any(f"churn · volume · {dup}" in s for s in subjects)
    assert any(f"churn · duplicate · {dup}" in s for s in subjects)
    assert any(f"churn · freshness · {missing}" in s for s in subjects)
    vol_mail = next(m for m in smtp_server.messages if f"volume · {low}" in m["subject"])
    assert sorted(vol_mail["rcpt_tos"]) == ["data-oncall@example.com", "owner@example.com"]
    assert "0.5" in vol_mail["subject"] and "400 rows" in vol_mail["body"]
    assert store.uri(data_quality_key("churn", low)) in vol_mail["body"]
    dup_mail = next(m for m in smtp_server.messages if "duplicate" in m["subject"])
    assert f"same content as {low}" in dup_mail["body"]

    # re-running the three days: the summaries are rewritten, no e-mail is sent again
    check_data_quality(config, store, low)
    check_data_quality(config, store, dup)
    again = check_data_quality(config, store, missing, now=now)
    assert [a["delivered"] for a in again["alerts"]] == [False]
    assert len(smtp_server.messages) == 4
    assert sorted(store.list("alerts/churn")) == [
        f"alerts/churn/duplicate/{dup}.json", f"alerts/churn/freshness/{missing}.json",
        f"alerts/churn/volume/{low}.json", f"alerts/churn/volume/{dup}.json"]


def test_duplicate_alert_on_reordered_rewrite_and_fresh_partition_waiting_before_deadline(setup, smtp_server):
    """The content hash is canonical: the same rows shuffled and rewritten are still a duplicate. A missing
    partition before its deadline is 'waiting' (no alert)."""
    store, config, data = setup
    _write_normal_days(data, range(0, 6))
    copy = data.read(_ds(5)).sample(frac=1.0, random_state=3)
    data.write(_ds(6), copy)
    summary = check_data_quality(config, store, _ds(6))
    assert [a["check"] for a in summary["alerts"]] == ["duplicate"]
    assert summary["duplicate"]["duplicate_of"] == [_ds(5)]
    assert summary["volume"]["status"] == "ok"

    before = dt.datetime.combine(dt.date.fromisoformat(_ds(7)), dt.time(), dt.UTC) + dt.timedelta(hours=29)
    waiting = check_data_quality(config, store, _ds(7), now=before)
    assert waiting["status"] == "waiting" and waiting["alerts"] == []
    assert len(smtp_server.messages) == 1


def test_fresh_missing_day_sensor_operator_and_callback_alert_once(setup, smtp_server):
    """A missing day: the DataPartitionSensor past its deadline raises the freshness alert and
    AirflowSensorTimeout; the operator and the on_failure callback for the same day send nothing more."""
    from airflow_mlops.notifications.mlops import alert_notifier
    from airflow_mlops.sensors.data import DataPartitionSensor

    store, config, data = setup
    cfg_path = _config_file(store, config)
    _write_normal_days(data, range(0, 3))
    ds = _ds(3)  # never delivered; its deadline (2024-03-05 06:00 UTC) is long past
    sensor = DataPartitionSensor(task_id="wait_for_data", dataset="churn", storage_uri=store.root,
                                 deadline_hours=6, alert_config_path=cfg_path, mode="reschedule")
    assert sensor.poke(_ctx(_ds(2), "wait_for_data")) is True  # present day: no alert
    with pytest.raises(AirflowSensorTimeout, match=rf"ds={ds}.*did not arrive.*freshness deadline"):
        sensor.poke(_ctx(ds, "wait_for_data"))
    assert len(smtp_server.messages) == 1
    msg = smtp_server.messages[0]
    assert f"churn · freshness · {ds}" in msg["subject"] and "2024-03-05T06:00:00+00:00" in msg["subject"]
    assert f"ds={ds}" in msg["body"]

    op = DataQualityMonitorOperator(task_id="data_quality", config_path=cfg_path, storage_uri=store.root)
    with pytest.raises(AirflowFailException, match="missing .* after its deadline.*freshness alert was raised"):
        op.execute(_ctx(ds))
    (notifier,) = alert_notifier(config, storage_uri=store.root)
    notifier({**_ctx(ds, "wait_for_data"), "exception": AirflowSensorTimeout("gave up")})
    assert len(smtp_server.messages) == 1
    assert store.read_json(data_quality_key("churn", ds))["freshness"]["status"] == "late"


def test_fresh_deferrable_trigger_fires_timeout_at_deadline(setup, smtp_server):
    from airflow_mlops.sensors.data import DataPartitionSensor
    from airflow_mlops.triggers.storage import DataPartitionTrigger

    store, config, data = setup
    ds = _ds(0)
    trig = DataPartitionTrigger(storage_uri=store.root, prefix="data/churn", ds=ds, poke_interval=0.05,
                                deadline=freshness_deadline(ds, 6).isoformat())
    cls, kwargs = trig.serialize()
    assert kwargs["deadline"] == "2024-03-02T06:00:00+00:00"

    async def first_event():
        async for event in trig.run():
            return event.payload

    event = asyncio.run(first_event())
    assert event == {"status": "timeout", "ds": ds, "deadline": "2024-03-02T06:00:00+00:00"}
    sensor = DataPartitionSensor(task_id="wait_for_data", dataset="churn", storage_uri=store.root, deadline_hours=6,
                                 deferrable=True)
    with pytest.raises(AirflowSensorTimeout, match="did not arrive"):
        sensor.execute_complete(_ctx(ds, "wait_for_data"), event)
    assert smtp_server.messages == []  # no model config given to this sensor: fails loudly, no e-mail


def test_volume_alerts_never_carry_row_values(setup, smtp_server, webhook_server, monkeypatch, caplog):
    """Sentinel values planted in the rows never reach e-mails, webhook payloads, alert records,
    summaries or logs."""
    store, _, data = setup
    config = make_config(alerts={"email": ["data-oncall@example.com"], "webhook": webhook_server.url},
                         monitoring={**MONITORING, "volume_max_z": 3.0})
    _write_normal_days(data, range(0, 10), sentinels=True)
    low = _ds(10)
    data.write(low, day_frame(low, 300, seed=10, sentinels=True))
    dup = _ds(11)
    data.write(dup, data.read(low))
    with caplog.at_level("DEBUG"):
        op = DataQualityMonitorOperator(task_id="data_quality", config_path=_config_file(store, config),
                                        storage_uri=store.root)
        out_low = op.execute(_ctx(low))
        out_dup = op.execute(_ctx(dup))
    assert out_low["alerts"] == ["volume"] and sorted(out_dup["alerts"]) == ["duplicate", "volume"]
    assert len(smtp_server.messages) == 3 and len(webhook_server.delivered) == 3
    texts = [m["raw"] for m in smtp_server.messages] + [m["body"] for m in smtp_server.messages]
    texts += [r["body"] for r in webhook_server.requests]
    texts += [json.dumps(store.read_json(k)) for k in store.list("alerts")]
    texts += [json.dumps(store.read_json(data_quality_key("churn", d))) for d in (low, dup)]
    texts.append(caplog.text)
    for sentinel in (SENTINEL_TEXT, SENTINEL_KEY, str(SENTINEL_NUM), "918273"):
        assert not any(sentinel in t for t in texts), sentinel
    assert any("300 rows" in t for t in texts)  # the alerts do carry the aggregates


def test_volume_check_logic_ratio_z_and_history():
    hist = {f"d{i}": 1000 + (i % 3) * 10 for i in range(14)}
    assert volume_check(1000, hist, min_ratio=0.5, max_ratio=2.0)["status"] == "ok"
    low = volume_check(400, hist, min_ratio=0.5, max_ratio=2.0)
    assert low["status"] == "low" and low["alert"] and low["ratio"] == pytest.approx(0.396, abs=1e-3)
    assert volume_check(2500, hist, min_ratio=0.5, max_ratio=2.0)["status"] == "high"
    z = volume_check(1200, hist, min_ratio=0.5, max_ratio=2.0, max_z=4.0)
    assert z["status"] == "high" and "volume_max_z" in z["reasons"][0] and z["ratio"] < 2.0
    flat = {f"d{i}": 1000 for i in range(5)}  # sd floored at sqrt(mean): one row more is not an outlier
    assert volume_check(1001, flat, min_ratio=0.5, max_ratio=2.0, max_z=3.0)["status"] == "ok"
    assert volume_check(10, {"a": 1000, "b": 990}, min_ratio=0.5, max_ratio=2.0)["status"] == "insufficient_history"
    assert duplicate_check("h1", {"a": "h0", "b": "h1", "c": "h1"})["duplicate_of"] == ["c", "b"]
    assert duplicate_check(None, {"a": "h0"})["status"] == "skipped"
    now = dt.datetime(2024, 3, 2, 5, 0, tzinfo=dt.UTC)
    assert freshness_check("2024-03-01", False, 6, now=now)["status"] == "waiting"
    late = freshness_check("2024-03-01", False, 6, now=now + dt.timedelta(hours=3))
    assert late["status"] == "late" and late["hours_late"] == 2.0
    assert freshness_check("2024-03-01", True, 6, now=now + dt.timedelta(days=9))["alert"] is False


def test_fresh_and_volume_tasks_wired_into_the_monitoring_dag(tmp_path):
    """The factory's <model>_monitoring DAG: wait_for_data (freshness deadline, alert config, alert
    callback) -> data_quality, and the alert callback on the predictions sensor too."""
    import yaml

    from airflow_mlops.config.parser import load_model_config
    from airflow_mlops.dag_factory import monitoring_dag
    from airflow_mlops.notifications.mlops import MLOpsAlertNotifier
    from airflow_mlops.sensors.data import DataPartitionSensor

    path = tmp_path / "churn.yaml"
    config = make_config(monitoring={"freshness_deadline_hours": 4})
    path.write_text(yaml.safe_dump(config.to_dict()))
    config = load_model_config(path)
    dag = monitoring_dag(config, str(path), storage_uri="file://" + str(tmp_path / "store"))
    wait_data, dq = dag.get_task("wait_for_data"), dag.get_task("data_quality")
    assert isinstance(wait_data, DataPartitionSensor) and isinstance(dq, DataQualityMonitorOperator)
    assert dq.upstream_task_ids == {"wait_for_data"}
    assert wait_data.deadline_hours == 4.0 and wait_data.alert_config_path == str(path)
    assert wait_data.timeout == (24 + 4 + 1) * 3600
    for task_id in ("wait_for_data", "wait_for_predictions"):
        callbacks = dag.get_task(task_id).on_failure_callback
        assert any(isinstance(c, MLOpsAlertNotifier) for c in callbacks), task_id
