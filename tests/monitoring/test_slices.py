"""Per-slice performance and drift: a 5 % slice that degrades is caught (and named) while the global
metric stays above its floor; small slices are reported, never alerted."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from perf_helpers import SCORED_DAYS, alerting, day_input, with_truth, write_truth

from airflow_mlops.config.model import MonitoringConfig
from airflow_mlops.monitoring.monitor import detect_drift, monitor_performance, raise_alerts, xcom_summary
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

WEEK2 = "2024-01-14"


@pytest.fixture(scope="module")
def degraded(scored):
    """Ground truth where the labels of segment=enterprise (~5 % of rows) are flipped from 2024-01-08."""
    root, cfg, _ = scored
    store = ArtifactStore(root)
    write_truth(store, "labels_slice", SCORED_DAYS[:7])
    write_truth(store, "labels_slice", SCORED_DAYS[7:], slice_column="segment", slice_value="enterprise")
    return store, with_truth(cfg, "labels_slice")


def test_slice_degradation_alert_names_the_slice(degraded, smtp):
    store, cfg = degraded
    summary = monitor_performance(cfg, store, WEEK2)
    floor = cfg.metrics.floors["roc_auc"]
    assert summary["metrics"]["roc_auc"] > floor  # the global metric stays above its floor
    table = {s["slice"]: s for s in summary["slices"]}
    assert set(table) == {"region=east", "region=north", "region=south", "region=west",
                          "segment=consumer", "segment=enterprise"}
    enterprise = table["segment=enterprise"]
    share = enterprise["rows"] / summary["rows"]["joined"]
    assert 0.03 < share < 0.07 and enterprise["alertable"]
    assert enterprise["metrics"]["roc_auc"] < floor
    assert table["segment=consumer"]["metrics"]["roc_auc"] > 0.75
    # the slice column is not in the prediction log: it was joined from the scoring input by key
    assert "segment" not in Dataset(store, "predictions/churn").read(WEEK2).columns
    assert summary["slice_sources"]["segment"] == "scoring input"

    [alert] = summary["alerts"]
    assert alert["slice"] == "segment=enterprise"
    assert alert["message"].startswith("churn slice segment=enterprise, window 2024-01-08..2024-01-14")
    assert "roc_auc" in alert["message"] and "below its floor 0.6" in alert["message"]
    assert enterprise["alert"] == alert["message"]
    assert raise_alerts(alerting(cfg), store, summary["alerts"]) == [True]
    assert raise_alerts(alerting(cfg), store, summary["alerts"]) == [False]
    [text] = smtp.texts()
    assert "segment=enterprise" in text and "roc_auc" in text
    html = store.read_bytes(store.key_of(summary["report_uri"])).decode()
    assert "segment=enterprise" in html and "ALERT" in html


def test_slice_monitoring_off_no_alert(degraded):
    store, cfg = degraded
    summary = monitor_performance(dataclasses.replace(cfg, slices=()), store, WEEK2)
    assert summary["status"] == "ok" and summary["alerts"] == [] and summary["slices"] == []
    assert summary["metrics"]["roc_auc"] > cfg.metrics.floors["roc_auc"]


def test_slice_under_min_size_reported_not_alerted(degraded):
    store, cfg = degraded
    strict = dataclasses.replace(cfg, monitoring=MonitoringConfig(min_slice_size=1000))
    summary = monitor_performance(strict, store, WEEK2)
    table = {s["slice"]: s for s in summary["slices"]}
    small = table["segment=enterprise"]
    assert small["rows"] < 1000 and not small["alertable"] and small["alert"] is None
    assert "reported, not alerted" in small["note"]
    assert small["metrics"]["roc_auc"] < 0.6  # still computed and reported
    assert summary["alerts"] == []


def _north_drifts(day: str) -> pd.DataFrame:
    """One day where only region=north is shifted (drift=1); every other region as usual."""
    base = day_input(day)
    shifted = day_input(day, drift=1.0)
    shifted = shifted[shifted["region"] == "north"].assign(customer_id=lambda d: d["customer_id"] + 500_000)
    return pd.concat([base[base["region"] != "north"], shifted], ignore_index=True)


def test_slice_drift_table_in_summary(scored):
    from airflow_mlops.scoring.batch import score_partition

    root, cfg, version = scored
    store = ArtifactStore(root)
    day = "2024-01-22"
    Dataset.for_name(store, "churn").write(day, _north_drifts(day))
    score_partition(cfg, store, day, version=version, run_id="test__drift")
    summary = detect_drift(cfg, store, day)

    table = {s["slice"]: s for s in summary["slices"]}
    assert set(table) == {"region=east", "region=north", "region=south", "region=west",
                          "segment=consumer", "segment=enterprise"}
    assert table["region=north"]["dataset_drift"] is True
    assert {"monthly_charges", "support_calls"} <= set(table["region=north"]["drifted_columns"])
    for name in ("region=east", "region=south"):
        assert table[name]["skipped"] is False and table[name]["dataset_drift"] is False, table[name]
    # segment=consumer is 95 % of the rows, north included: it drifts with north
    assert table["segment=consumer"]["dataset_drift"] is True
    # ~50 enterprise rows that day < min_slice_size 200: reported, not tested, not alerted
    assert table["segment=enterprise"]["skipped"] is True
    assert "reported, not alerted" in table["segment=enterprise"]["reason"]
    slice_alerts = [a for a in summary["alerts"] if a["slice"]]
    assert [a["slice"] for a in slice_alerts] == ["region=north", "segment=consumer"]
    assert slice_alerts[0]["check"] == "drift" and "churn slice region=north" in slice_alerts[0]["message"]
    assert store.read_json(store.key_of(summary["summary_uri"]))["slices"] == summary["slices"]
    html = store.read_bytes(store.key_of(summary["report_uri"])).decode()
    assert "Drift per slice" in html and "region=north" in html
    small = xcom_summary(summary)
    assert small["drifted_slices"] == ["region=north", "segment=consumer"] and len(small["slices"]) == 6


def test_slice_drift_alert_delivery_error_does_not_fail_the_drift_task(scored, tmp_path, monkeypatch):
    """The drift task's main output is the retraining request: an undeliverable alert is logged and
    reported in XCom, not a task failure (unless fail_on_alert_error=True)."""
    from types import SimpleNamespace

    import yaml
    from perf_helpers import free_port

    from airflow_mlops.alerts.delivery import AlertDeliveryError
    from airflow_mlops.operators.monitoring import DriftDetectionOperator

    root, cfg, _ = scored
    day = "2024-01-22"  # written by test_slice_drift_table_in_summary when run first; else written here
    store = ArtifactStore(root)
    if not Dataset(store, "predictions/churn").exists(day):
        from airflow_mlops.scoring.batch import score_partition

        Dataset.for_name(store, "churn").write(day, _north_drifts(day))
        score_partition(cfg, store, day, version=scored[2], run_id="test__drift")
    path = tmp_path / "churn.yaml"
    raw = alerting(cfg).to_dict()
    # under the default combined rule the north shift (a quarter of the rows, on the most important
    # features) is global drift and requests retraining; with the share rule only the slice drifts
    raw["drift"] = {**raw.get("drift", {}), "rule": "share"}
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_MONITORING", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": free_port(),
        "extra": {"from_email": "mlops@example.com", "disable_tls": True, "disable_ssl": True, "retry_limit": 0}}))
    context = {"ti": SimpleNamespace(dag_id="churn_monitoring", run_id="manual__t", task_id="drift", try_number=1),
               "logical_date": None}
    out = DriftDetectionOperator(task_id="drift", config_path=str(path), storage_uri=root, ds=day).execute(context)
    assert out["retrain_requested"] is False and "region=north" in out["drifted_slices"]
    assert "not delivered" in out["alert_errors"]
    with pytest.raises(AlertDeliveryError):
        DriftDetectionOperator(task_id="drift", config_path=str(path), storage_uri=root, ds=day,
                               fail_on_alert_error=True).execute(context)
