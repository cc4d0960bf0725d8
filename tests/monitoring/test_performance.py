"""PerformanceMonitor logic: late ground truth joined to the real prediction log, floor and
relative-change alerts, delivered once per window through a real SMTP server."""

from __future__ import annotations

import pandas as pd
import pytest
from perf_helpers import ROWS, SCORED_DAYS, alerting, with_truth, write_truth

from airflow_mlops.monitoring.monitor import monitor_performance, raise_alerts, read_performance_summary
from airflow_mlops.monitoring.performance import (
    join_ground_truth,
    performance_alerts,
    relative_change,
    window_id,
)
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.dates import days_ending

WEEK2 = "2024-01-14"  # window 2024-01-08..2024-01-14; previous window 2024-01-01..2024-01-07


def test_window_ids():
    assert days_ending("2024-01-14", 7)[0] == "2024-01-08"
    assert window_id("2024-01-14", 7) == "2024-01-08..2024-01-14"
    assert window_id("2024-03-01", 1) == "2024-03-01..2024-03-01"
    assert relative_change(0.5, 0.8) == pytest.approx(-0.375)
    assert relative_change(0.5, 0.0) is None


def test_join_is_per_date_and_keeps_the_last_duplicate_label():
    preds = pd.DataFrame({"customer_id": [1, 2, 1], "prediction": [1, 0, 0],
                          "logical_date": ["2024-01-01", "2024-01-01", "2024-01-02"]})
    truth = pd.DataFrame({"customer_id": [1, 1, 2, 1, 9], "churned": [0, 1, 0, 0, 1],
                          "ds": ["2024-01-01", "2024-01-01", "2024-01-01", "2024-01-02", "2024-01-02"]})
    joined, stats = join_ground_truth(preds, truth, ["customer_id"], "churned")
    # customer 1 is labelled per day; the re-delivered label (1) of 2024-01-01 wins
    got = joined.sort_values(["logical_date", "customer_id"])[["logical_date", "customer_id", "churned"]]
    assert got.values.tolist() == [["2024-01-01", 1, 1], ["2024-01-01", 2, 0], ["2024-01-02", 1, 0]]
    assert stats == {"predictions": 3, "ground_truth": 5, "duplicate_ground_truth": 1, "joined": 3,
                     "unmatched_ground_truth": 1, "unlabelled_predictions": 0}


def test_alert_rules_floor_ceiling_drop_and_rise():
    common = dict(rows=5000, floors={"roc_auc": 0.6}, ceilings={"log_loss": 0.7, "latency_p95_ms": 5},
                  primary="roc_auc", max_relative_change=0.25)
    assert performance_alerts("m", "w", {"roc_auc": 0.8, "log_loss": 0.5}, previous={"roc_auc": 0.78}, **common) == []
    [floor] = performance_alerts("m", "w", {"roc_auc": 0.55, "log_loss": 0.5}, previous={"roc_auc": 0.6}, **common)
    assert (floor.check, floor.slice, floor.value, floor.threshold) == ("performance", None, 0.55, 0.6)
    assert "roc_auc 0.55 is below its floor 0.6" in floor.message
    [ceiling] = performance_alerts("m", "w", {"roc_auc": 0.8, "log_loss": 0.9}, **common)
    assert ceiling.details["rule"] == "ceiling" and ceiling.threshold == 0.7
    # a sudden rise is suspicious too: +40 % with no floor broken
    [rise] = performance_alerts("m", "w", {"roc_auc": 0.84}, previous={"roc_auc": 0.6}, **common)
    assert rise.details["rule"] == "relative_change" and rise.details["breaches"][0]["direction"] == "rise"
    assert rise.value == pytest.approx(0.4) and rise.threshold == 0.25
    assert "rose by 40.0%" in rise.message
    # both rules in one window give one alert (deduplicated per window downstream), floor first
    [both] = performance_alerts("m", "w", {"roc_auc": 0.45}, previous={"roc_auc": 0.8}, **common)
    assert [b["rule"] for b in both.details["breaches"]] == ["floor", "relative_change"]
    assert both.value == 0.45
    # null max_relative_change disables the change rule
    assert performance_alerts("m", "w", {"roc_auc": 0.84}, previous={"roc_auc": 0.6},
                              **{**common, "max_relative_change": None}) == []


def test_alert_floor_breach_fires_once_per_window(scored, smtp):
    root, cfg, _ = scored
    store = ArtifactStore(root)
    write_truth(store, "labels_noisy", SCORED_DAYS, label_noise=0.4)  # ~40 % wrong labels everywhere
    cfg = alerting(with_truth(cfg, "labels_noisy", slices=()))

    summary = monitor_performance(cfg, store, WEEK2)
    assert summary["status"] == "alert"
    assert summary["window"] == "2024-01-08..2024-01-14"
    assert summary["rows"]["joined"] == 7 * ROWS and summary["coverage"] == 1.0
    auc = summary["metrics"]["roc_auc"]
    assert auc < 0.6 < summary["metrics"]["roc_auc"] + 0.2
    [alert] = summary["alerts"]
    assert alert["slice"] is None and alert["details"]["metric"] == "roc_auc"
    assert alert["value"] == pytest.approx(auc) and alert["threshold"] == 0.6
    assert f"roc_auc {auc:.4g} is below its floor 0.6" in alert["message"]

    assert raise_alerts(cfg, store, summary["alerts"]) == [True]
    # the same window again (a re-run, or the next monitor call): computed again, not sent again
    again = monitor_performance(cfg, store, WEEK2)
    assert again["metrics"] == summary["metrics"] and len(again["alerts"]) == 1
    assert raise_alerts(cfg, store, again["alerts"]) == [False]
    assert len(smtp.messages) == 1
    [text] = smtp.texts()
    assert "roc_auc" in text and f"{auc:.4g}" in text and "0.6" in text and "2024-01-08..2024-01-14" in text

    stored = read_performance_summary(store, "churn", WEEK2)
    assert stored["metrics"] == summary["metrics"] and stored["status"] == "alert"
    html = store.read_bytes(store.key_of(summary["report_uri"])).decode()
    assert "below its floor" in html and "Per slice" in html


def test_alert_sudden_rise_beyond_max_relative_change(scored):
    root, cfg, _ = scored
    store = ArtifactStore(root)
    write_truth(store, "labels_rise", SCORED_DAYS[:7], label_noise=0.35)  # previous window: poor labels
    write_truth(store, "labels_rise", SCORED_DAYS[7:])                    # current window: clean labels
    cfg = with_truth(cfg, "labels_rise", slices=())
    summary = monitor_performance(cfg, store, WEEK2)
    cur, prev = summary["metrics"]["roc_auc"], summary["previous"]["metrics"]["roc_auc"]
    assert cur > 0.75 and (cur - prev) / prev > 0.25
    [alert] = summary["alerts"]
    assert alert["details"]["rule"] == "relative_change"
    assert [b["direction"] for b in alert["details"]["breaches"]] == ["rise"]
    assert alert["threshold"] == 0.25 and alert["value"] == pytest.approx((cur - prev) / prev)
    assert "rose by" in alert["message"] and summary["previous"]["window"] == "2024-01-01..2024-01-07"
    # with the change check disabled, the same data gives no alert
    off = with_truth(cfg, "labels_rise", slices=(),
                     monitoring=type(cfg.monitoring)(**{**cfg.monitoring.__dict__, "max_relative_change": None}))
    assert monitor_performance(off, store, WEEK2)["alerts"] == []


def test_alert_missing_ground_truth_is_a_skip_notice(scored):
    root, cfg, _ = scored
    store = ArtifactStore(root)
    write_truth(store, "labels_late", ["2023-12-01"])  # labels exist, none for the window yet
    summary = monitor_performance(with_truth(cfg, "labels_late"), store, WEEK2)
    assert summary["status"] == "skipped" and summary["alerts"] == []
    assert "no ground truth for 2024-01-08..2024-01-14" in summary["reason"]
    assert read_performance_summary(store, "churn", WEEK2)["status"] == "skipped"
    # no dataset at all: the same notice, no crash
    assert monitor_performance(with_truth(cfg, "labels_never"), store, WEEK2)["status"] == "skipped"


def test_alert_operator_skips_without_ground_truth_and_returns_small_xcom(scored, tmp_path):
    import json
    from types import SimpleNamespace

    import yaml
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_mlops.operators.monitoring import PerformanceMonitorOperator

    root, cfg, _ = scored
    store = ArtifactStore(root)
    context = {"ti": SimpleNamespace(dag_id="churn_monitoring", run_id="manual__t", task_id="performance",
                                     try_number=1), "logical_date": None}

    def operator(dataset: str) -> PerformanceMonitorOperator:
        raw = with_truth(cfg, dataset).to_dict()
        path = tmp_path / f"{dataset}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return PerformanceMonitorOperator(task_id="performance", config_path=str(path), storage_uri=root,
                                          ds=WEEK2, send_alerts=False)

    with pytest.raises(AirflowSkipException, match="no ground truth for 2024-01-08..2024-01-14"):
        operator("labels_nowhere").execute(context)
    assert read_performance_summary(store, "churn", WEEK2)["status"] == "skipped"

    write_truth(store, "labels_xcom", SCORED_DAYS)
    out = operator("labels_xcom").execute(context)
    assert out["status"] == "ok" and out["window"] == "2024-01-08..2024-01-14" and out["rows"] == 7 * ROWS
    assert {s["slice"] for s in out["slices"]} >= {"segment=enterprise", "region=west"}
    assert len(json.dumps(out)) < 4000  # XCom carries a small summary; the full one is in performance.json
    assert read_performance_summary(store, "churn", WEEK2)["run_id"] == "manual__t"


def test_alert_delivery_failure_is_raised_then_resent(scored, monkeypatch):
    from perf_helpers import free_port, start_smtp

    from airflow_mlops.alerts.delivery import AlertDeliveryError

    root, cfg, _ = scored
    store = ArtifactStore(root)
    write_truth(store, "labels_retry", SCORED_DAYS, label_noise=0.4)
    cfg = alerting(with_truth(cfg, "labels_retry", slices=()))
    summary = monitor_performance(cfg, store, "2024-01-21")  # its own window: 2024-01-15..2024-01-21
    assert len(summary["alerts"]) == 1
    inbox, controller, conn = start_smtp()
    try:
        dead = conn.replace(f'"port": {controller.port}', f'"port": {free_port()}')  # nothing listens there
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_MONITORING", dead)
        with pytest.raises(AlertDeliveryError, match="1 of 1 alert"):
            raise_alerts(cfg, store, summary["alerts"])
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_MONITORING", conn)
        assert raise_alerts(cfg, store, summary["alerts"]) == [True]  # the retry re-sends the failed alert
        assert raise_alerts(cfg, store, summary["alerts"]) == [False]
        assert len(inbox.messages) == 1 and "2024-01-15..2024-01-21" in inbox.texts()[0]
    finally:
        controller.stop()


def test_evaluate_aligns_label_types_and_handles_regression():
    from airflow_mlops.monitoring.performance import evaluate, slice_performance

    joined = pd.DataFrame({"prediction": [1, 0, 1, 0], "proba_0": [0.2, 0.9, 0.4, 0.6], "proba_1": [0.8, 0.1, 0.6, 0.4],
                           "churned": ["1", "0", "0", "0"], "region": ["n", "n", "s", None]})  # labels read as text
    m = evaluate(joined, "binary", "churned", [0, 1], ["proba_0", "proba_1"])
    assert m["accuracy"] == 0.75 and m["roc_auc"] == 1.0
    rows = slice_performance(joined, ["region", "segment"], "binary", "churned", [0, 1], ["proba_0", "proba_1"], 2)
    by = {r["slice"]: r for r in rows}
    assert by["region=n"]["rows"] == 2 and by["region=n"]["alertable"] and by["region=n"]["metrics"]["accuracy"] == 1.0
    assert by["region=s"]["alertable"] is False and "roc_auc" not in by["region=s"]["metrics"]  # one class only
    assert by[None]["column"] == "segment" and "neither in the prediction log" in by[None]["note"]
    reg = pd.DataFrame({"prediction": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 5.0]})
    assert evaluate(reg, "regression", "y")["mae"] == pytest.approx(2 / 3)
