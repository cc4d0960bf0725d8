"""raise_alert against a real SMTP server (aiosmtpd, through Airflow's SmtpNotifier/SmtpHook and the
connection AIRFLOW_CONN_SMTP_DEFAULT) and a real local HTTP webhook receiver."""

from __future__ import annotations

import json
import threading
import types

import pytest
from alert_servers import make_config

from airflow_mlops.alerts.delivery import (
    SENDING_LEASE_SECONDS,
    Alert,
    AlertDeliveryError,
    alert_key,
    alert_recipients,
    raise_alert,
    read_alert_record,
)
from airflow_mlops.notifications.mlops import alert_notifier
from airflow_mlops.store.artifacts import ArtifactStore

REPORT = "file:///srv/mlops/monitoring/churn/ds=2024-03-05/drift.html"


def _alert(window="2024-03-05", **kw) -> Alert:
    base = dict(model="churn", check="drift", window=window, value=0.625, threshold=0.5,
                message="5 of 8 features drifted; retraining requested.", report_uri=REPORT)
    return Alert(**{**base, **kw})


@pytest.fixture
def local_store(tmp_path) -> ArtifactStore:
    return ArtifactStore("file://" + str(tmp_path / "store"))


def test_alert_email_once_per_window_with_model_check_value_threshold_link(smtp_server, store):
    """Twice the same alert (a rerun) -> one e-mail; owner + alerts.email receive it; the body names
    model, check, value, threshold and links the report. Runs on file:// and on S3 (moto)."""
    config = make_config(alerts={"email": ["oncall@example.com"]})
    assert raise_alert(config, store, _alert(), context=None) is True
    assert raise_alert(config, store, _alert(), context=None) is False
    assert len(smtp_server.messages) == 1
    msg = smtp_server.messages[0]
    assert sorted(msg["rcpt_tos"]) == ["oncall@example.com", "owner@example.com"]
    assert msg["mail_from"] == "mlops-alerts@example.com"
    for text in ("churn", "drift", "2024-03-05", "0.625", "0.5"):
        assert text in msg["subject"]
    for text in ("churn", "drift", "0.625", "0.5", "5 of 8 features drifted", f'href="{REPORT}"'):
        assert text in msg["body"], text
    record = read_alert_record(store, _alert())
    assert record["status"] == "delivered" and record["attempts"] == 1
    assert record["channels"]["email"]["recipients"] == ["oncall@example.com", "owner@example.com"]
    assert record["alert"]["value"] == 0.625
    assert alert_key(_alert()) == "alerts/churn/drift/2024-03-05.json"

    # another window, and a slice of the same window, are different alerts
    assert raise_alert(config, store, _alert(window="2024-03-06")) is True
    sliced = _alert(slice="region=EU / north", check="performance", value=0.71, threshold=0.75)
    assert raise_alert(config, store, sliced) is True
    assert raise_alert(config, store, sliced) is False
    assert len(smtp_server.messages) == 3
    assert "slice region=EU / north" in smtp_server.messages[2]["subject"]
    assert "region=EU / north" in smtp_server.messages[2]["body"]
    key = alert_key(sliced)
    assert key.startswith("alerts/churn/performance/2024-03-05__region=EU___north-") and key.endswith(".json")
    assert store.exists(key)


def test_alert_concurrent_raises_send_one_message(smtp_server, local_store):
    config = make_config()
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def go():
        barrier.wait()
        results.append(raise_alert(config, local_store, _alert(check="volume", value=0.4, threshold=0.5)))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert len(smtp_server.messages) == 1
    assert smtp_server.messages[0]["rcpt_tos"] == ["owner@example.com"]


def test_alert_webhook_payload_retries_5xx(webhook_server, local_store):
    config = make_config(owner="ml-platform", alerts={"webhook": webhook_server.url})
    webhook_server.fail_next = [503, 502]
    assert raise_alert(config, local_store, _alert(slice="segment=smb")) is True
    assert raise_alert(config, local_store, _alert(slice="segment=smb")) is False
    assert [r["status"] for r in webhook_server.requests] == [503, 502, 200]
    (req,) = webhook_server.delivered
    payload = req["json"]
    assert req["content_type"].startswith("application/json")
    for text in ("churn", "drift", "0.625", "0.5", "segment=smb", REPORT):
        assert text in payload["text"]
    assert payload["model"] == "churn" and payload["check"] == "drift" and payload["window"] == "2024-03-05"
    assert payload["value"] == 0.625 and payload["threshold"] == 0.5 and payload["slice"] == "segment=smb"
    assert payload["report_uri"] == REPORT and payload["source"] == "airflow-mlops"
    record = read_alert_record(local_store, _alert(slice="segment=smb"))
    # the webhook URL's secret path is never stored or logged
    assert "SECRET-TOKEN" not in json.dumps(record)
    assert record["channels"]["webhook"]["http_status"] == 200


def test_alert_webhook_through_http_connection_and_4xx_is_not_retried(webhook_server, local_store, monkeypatch,
                                                                      caplog):
    monkeypatch.setenv("AIRFLOW_CONN_ALERT_HOOK", json.dumps({
        "conn_type": "http", "host": "127.0.0.1", "port": webhook_server.port, "schema": "http",
        "extra": {"endpoint": "/hooks/T000/SECRET-TOKEN", "headers": {"X-Team": "ml"}}}))
    config = make_config(owner="ml-platform", alerts={"webhook": "conn:alert_hook"})
    assert raise_alert(config, local_store, _alert(check="freshness", value="missing", threshold="by 06:00")) is True
    assert webhook_server.delivered[0]["path"] == "/hooks/T000/SECRET-TOKEN"

    webhook_server.fail_next = [404]
    with caplog.at_level("INFO"), pytest.raises(AlertDeliveryError, match="HTTP 404"):
        raise_alert(config, local_store, _alert(window="2024-03-07"))
    assert [r["status"] for r in webhook_server.requests] == [200, 404]  # no retry on 4xx
    assert "SECRET-TOKEN" not in caplog.text


def test_alert_failed_delivery_is_resent_by_the_retry_only_on_the_failed_channel(webhook_server, local_store,
                                                                                 monkeypatch):
    """At-least-once: SMTP down -> AlertDeliveryError and a 'failed' record; the webhook already got it.
    The retry (SMTP back) sends the e-mail only; a third call sends nothing."""
    from alert_servers import SmtpServer

    server = SmtpServer()  # not started yet: nothing listens on its port
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.conn_json())
    config = make_config(alerts={"webhook": webhook_server.url})
    alert = _alert(check="performance", value=0.62, threshold=0.7)
    with pytest.raises(AlertDeliveryError, match="email: .*retry of the task re-sends the failed channel"):
        raise_alert(config, local_store, alert)
    record = read_alert_record(local_store, alert)
    assert record["status"] == "failed"
    assert record["channels"]["email"]["status"] == "failed"
    assert record["channels"]["webhook"]["status"] == "delivered"
    assert len(webhook_server.delivered) == 1

    server.start()
    try:
        assert raise_alert(config, local_store, alert) is True
        assert raise_alert(config, local_store, alert) is False
        assert len(server.messages) == 1 and len(webhook_server.delivered) == 1
        record = read_alert_record(local_store, alert)
        assert record["status"] == "delivered" and record["attempts"] == 2
    finally:
        server.stop()


def test_alert_abandoned_sending_record_is_taken_over_after_the_lease(smtp_server, local_store):
    import datetime as dt

    config = make_config()
    alert = _alert(check="gate")
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=SENDING_LEASE_SECONDS + 5)).isoformat()
    fresh = dt.datetime.now(dt.UTC).isoformat()
    local_store.create_json(alert_key(alert), {"alert": alert.to_dict(), "status": "sending", "claimed_at": fresh,
                                               "attempts": 1, "channels": {}})
    assert raise_alert(config, local_store, alert) is False  # another attempt holds it
    assert smtp_server.messages == []
    local_store.write_json(alert_key(alert), {"alert": alert.to_dict(), "status": "sending", "claimed_at": stale,
                                              "attempts": 1, "channels": {}})
    assert raise_alert(config, local_store, alert) is True  # its sender died: taken over
    assert len(smtp_server.messages) == 1
    assert read_alert_record(local_store, alert)["attempts"] == 2


def test_alert_routing_filters_checks_and_needs_a_channel(smtp_server, local_store, caplog):
    config = make_config(alerts={"checks": ["drift"], "email": ["a@example.com", "OWNER@example.com"]})
    assert alert_recipients(config) == ["a@example.com", "OWNER@example.com"]  # owner deduplicated
    assert raise_alert(config, local_store, _alert(check="volume", value=0.4, threshold=0.5)) is False
    assert not local_store.exists("alerts/churn/volume/2024-03-05.json")
    nobody = make_config(owner="ml-platform team")
    assert alert_recipients(nobody) == []
    with caplog.at_level("WARNING"):
        assert raise_alert(nobody, local_store, _alert()) is False
    assert "no e-mail recipient" in caplog.text and "owner 'ml-platform team'" in caplog.text
    assert smtp_server.messages == []
    with pytest.raises(ValueError, match="check must be one of"):
        _alert(check="latency")
    with pytest.raises(ValueError, match="routed with the config of"):
        raise_alert(config, local_store, _alert(model="other"))


def test_alert_notifier_turns_sensor_timeout_and_gate_failure_into_alerts(smtp_server, local_store):
    """alert_notifier(config) as on_failure_callback: called the way Airflow calls it (BaseNotifier.__call__
    with the task context), deduplicated per (model, check, day)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

    config = make_config()
    (notifier,) = alert_notifier(config, storage_uri=local_store.root)
    ti = types.SimpleNamespace(dag_id="churn_monitoring", task_id="wait_for_data", run_id="scheduled__2024-03-05",
                               try_number=1, log_url="http://airflow.local/log?task=wait_for_data")
    ctx = {"ti": ti, "ds": "2024-03-05", "exception": AirflowSensorTimeout("partition .../ds=2024-03-05 missing")}
    notifier(ctx)
    notifier(dict(ctx))  # a second failing sensor of the same day: no second message
    assert len(smtp_server.messages) == 1
    msg = smtp_server.messages[0]
    assert "churn · freshness · 2024-03-05" in msg["subject"]
    assert "wait_for_data" in msg["body"] and "http://airflow.local/log?task=wait_for_data" in msg["body"]

    ti2 = types.SimpleNamespace(dag_id="churn_training", task_id="promote", run_id="r", try_number=1, log_url=None)
    notifier({"ti": ti2, "ds": "2024-03-05",
              "exception": AirflowFailException("candidate roc_auc 0.58 is below the floor 0.6")})
    assert len(smtp_server.messages) == 2
    gate = smtp_server.messages[1]
    assert "churn · gate · 2024-03-05" in gate["subject"]
    assert "below the floor 0.6" in gate["body"]


def test_webhook_notifier_renders_its_fields_and_posts_through_the_plain_webhook(webhook_server, monkeypatch):
    """MLOpsWebhookNotifier, the Airflow face of airflow_mlops.alerts.webhook: called as Airflow calls a
    callback (templated text rendered from the context), to a URL and to an HTTP connection."""
    from airflow_mlops.notifications.webhook import MLOpsWebhookNotifier, WebhookDeliveryError, redact_url

    ti = types.SimpleNamespace(dag_id="churn_training", task_id="promote", run_id="r", try_number=1)
    notifier = MLOpsWebhookNotifier(url=webhook_server.url, text="{{ ti.dag_id }}.{{ ti.task_id }} failed on {{ ds }}",
                                    fields={"model": "churn"}, retries=1, backoff=0.01)
    webhook_server.fail_next = [503]
    notifier({"ti": ti, "ds": "2024-03-05"})
    assert [r["status"] for r in webhook_server.requests] == [503, 200]
    assert webhook_server.delivered[0]["json"] == {"model": "churn",
                                                    "text": "churn_training.promote failed on 2024-03-05"}
    assert redact_url(webhook_server.url) == f"http://127.0.0.1:{webhook_server.port}/…"

    monkeypatch.setenv("AIRFLOW_CONN_NOTIFIER_HOOK", json.dumps({
        "conn_type": "http", "host": f"http://127.0.0.1:{webhook_server.port}", "extra": {"endpoint": "/via/conn"}}))
    assert MLOpsWebhookNotifier(http_conn_id="notifier_hook", text="hello").post() == 200
    assert webhook_server.delivered[-1]["path"] == "/via/conn"
    with pytest.raises(WebhookDeliveryError, match="webhook connection 'no_such_hook' is not defined"):
        MLOpsWebhookNotifier(http_conn_id="no_such_hook", text="hello").post()
