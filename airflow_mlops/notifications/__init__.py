"""Airflow notifiers of airflow-mlops: a JSON webhook notifier and the alert-routing failure callback.

* :class:`~airflow_mlops.notifications.webhook.MLOpsWebhookNotifier` — POST ``{"text", ...fields}``
  to a Slack/Teams-compatible webhook, retrying on 5xx.
* :class:`~airflow_mlops.notifications.mlops.MLOpsAlertNotifier` — ``on_failure_callback`` that turns
  a failed task into an alert routed by the model's ``alerts`` config (see :mod:`airflow_mlops.alerts.delivery`);
  :func:`~airflow_mlops.notifications.mlops.alert_notifier` builds it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MLOpsAlertNotifier", "MLOpsWebhookNotifier", "alert_notifier"]


def __getattr__(name: str) -> Any:  # lazy: importing the package does not import airflow.sdk
    if name == "MLOpsWebhookNotifier":
        from airflow_mlops.notifications.webhook import MLOpsWebhookNotifier

        return MLOpsWebhookNotifier
    if name == "MLOpsAlertNotifier":
        from airflow_mlops.notifications.mlops import MLOpsAlertNotifier

        return MLOpsAlertNotifier
    if name == "alert_notifier":
        from airflow_mlops.notifications.mlops import alert_notifier

        return alert_notifier
    raise AttributeError(name)
