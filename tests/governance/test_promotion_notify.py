"""The training DAG's notify step: the gate's decision reaches the owner through a real SMTP server."""

from __future__ import annotations

from gov_helpers import DS, churn_config

from airflow_mlops.registry.lifecycle import notify_promotion, promote_candidate, train_and_register

WEAK = {"class": "sklearn.linear_model.LogisticRegression", "params": {}}


def test_new_champion_alert_notice_is_mailed_once_per_version(store, smtp_server):
    cfg = churn_config(features=["region", "usage_gb"], estimator=WEAK)
    train_and_register(cfg, store, DS)
    result = promote_candidate(cfg, store, 1)
    out = notify_promotion(cfg, store, result, DS)
    assert out == {"check": "promotion", "sent": True, "message": out["message"]}
    assert "churn v1 is the new champion" in out["message"] and "no champion" in out["message"]
    again = notify_promotion(cfg, store, result, DS)  # a rerun of the task
    assert again["sent"] is False
    assert len(smtp_server.messages) == 1
    msg = smtp_server.messages[0]
    assert msg["rcpt_tos"] == ["ml-platform@example.com"]
    assert "promotion" in msg["subject"] and "churn" in msg["subject"]
    assert "is the new champion" in msg["body"] and "model_card.html" in msg["body"]


def test_gate_alert_names_each_broken_constraint_with_value_and_limit(store, smtp_server, registry):
    weak = churn_config(features=["region", "usage_gb"], estimator=WEAK)
    train_and_register(weak, store, DS)
    promote_candidate(weak, store, 1)
    strict = churn_config(metrics={"primary": "roc_auc", "ceilings": {"latency_ms_per_10k_rows": 0.001}})
    train_and_register(strict, store, DS)
    result = promote_candidate(strict, store, 2)
    assert result["alias"] == "challenger"
    out = notify_promotion(strict, store, result, DS)
    latency = registry.get_metadata("churn", 2)["profile"]["latency_ms_per_10k_rows"]
    assert out["check"] == "gate" and out["sent"] is True
    text = f"latency_ms_per_10k_rows {latency:.6g} > ceiling 0.001"
    assert text in out["message"] and "kept as challenger" in out["message"]
    assert len(smtp_server.messages) == 1 and text.replace(">", "&gt;") in smtp_server.messages[0]["body"]
    assert "gate" in smtp_server.messages[0]["subject"]


def test_without_smtp_connection_the_alert_is_logged_not_failed(store, monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    cfg = churn_config(features=["region", "usage_gb"], estimator=WEAK)
    train_and_register(cfg, store, DS)
    result = promote_candidate(cfg, store, 1)
    with caplog.at_level("WARNING", logger="airflow_mlops.alerts.delivery"):
        out = notify_promotion(cfg, store, result, DS)
    assert out["sent"] is False
    assert any("connection 'smtp_default'" in r.getMessage() and "does not exist" in r.getMessage()
               for r in caplog.records)
    assert not store.list("alerts/")  # nothing recorded as delivered: a later run with SMTP set up still sends
