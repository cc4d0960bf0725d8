"""Retraining-request cooldown: state in monitoring/<model>/retrain_requests.json, decided by logical date."""

from __future__ import annotations

import threading

from airflow_mlops.monitoring.monitor import read_retrain_requests, record_retrain_request, retrain_cooldown


def test_cooldown_by_logical_date():
    requests = [{"ds": "2024-01-10"}]
    assert retrain_cooldown([], "2024-01-12", 7)["allowed"] is True
    blocked = retrain_cooldown(requests, "2024-01-12", 7)
    assert blocked["allowed"] is False and blocked["next_allowed"] == "2024-01-17"
    assert blocked["reason"] == ("cooldown: retraining was requested for 2024-01-10, 2 day(s) before 2024-01-12; "
                                 "monitoring.drift_cooldown_days=7, next request allowed from 2024-01-17")
    assert retrain_cooldown(requests, "2024-01-17", 7)["allowed"] is True
    assert retrain_cooldown(requests, "2024-01-12", 0)["allowed"] is True  # 0 = no cooldown
    # a re-run of the requesting date, or a backfill of an earlier one, is not blocked by it
    assert retrain_cooldown(requests, "2024-01-10", 7)["allowed"] is True
    assert retrain_cooldown(requests, "2024-01-05", 7)["allowed"] is True


def test_requests_recorded_once_per_date_under_concurrency(store):
    record_retrain_request(store, "churn", "2024-01-10", {"share_drifted": 0.5})
    record_retrain_request(store, "churn", "2024-01-10", {"share_drifted": 0.67})  # re-run replaces
    threads = [threading.Thread(target=record_retrain_request, args=(store, "churn", f"2024-02-0{i}", {}))
               for i in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requests = read_retrain_requests(store, "churn")
    assert [r["ds"] for r in requests] == ["2024-01-10"] + [f"2024-02-0{i}" for i in range(1, 6)]
    assert requests[0]["share_drifted"] == 0.67
