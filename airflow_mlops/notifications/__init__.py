"""Airflow notifiers of airflow-mlops: a JSON webhook notifier and the alert-routing failure callback.

* :class:`~airflow_mlops.notifications.webhook.MLOpsWebhookNotifier` — POST ``{"text", ...fields}``
  to a Slack/Teams-compatible webhook, retrying on 5xx.
* :class:`~airflow_mlops.notifications.mlops.MLOpsAlertNotifier` — ``on_failure_callback`` that turns
  a failed task into an alert routed by the model's ``alerts`` config (see :mod:`airflow_mlops.alerts.delivery`);
  :func:`~airflow_mlops.notifications.mlops.alert_notifier` builds it.
"""

from __future__ import annotations

from airflow_mlops import lazy_exports

#: public name -> the module defining it (imported on first access: importing the package stays cheap)
_MODULES = {
    "MLOpsAlertNotifier": "airflow_mlops.notifications.mlops",
    "MLOpsWebhookNotifier": "airflow_mlops.notifications.webhook",
    "alert_notifier": "airflow_mlops.notifications.mlops",
}

__all__ = sorted(_MODULES)
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
