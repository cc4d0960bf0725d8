"""MLOpsWebhookNotifier: post an alert as JSON to a chat webhook (Slack, Teams, Mattermost, any HTTP endpoint).

The Airflow notifier (templated fields, ``notify`` / ``async_notify``) on top of
:class:`airflow_mlops.alerts.webhook.Webhook`, which holds the delivery: the payload is
``{"text": <one-paragraph summary>, **fields}``; the target is a URL or an Airflow HTTP connection
(``http_conn_id``: ``host`` a full URL or ``schema://host:port``, extra ``endpoint`` and ``headers``); a 5xx
answer, a timeout or a connection error is retried with exponential backoff, a 4xx answer fails at once.
Webhook URLs are secrets (the path is the credential), so logs and errors show only the scheme and host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from airflow_mlops.alerts.webhook import Webhook, WebhookDeliveryError, redact_url

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["MLOpsWebhookNotifier", "WebhookDeliveryError", "redact_url"]


class MLOpsWebhookNotifier(BaseNotifier):
    """Post a JSON message to a webhook.

    :param text: the message shown by chat tools (templated when used as a callback).
    :param url: the webhook URL (``http://`` or ``https://``). (templated)
    :param http_conn_id: an Airflow connection holding the URL instead of ``url``. (templated)
    :param fields: structured fields added to the payload beside ``text``. (templated)
    :param timeout: seconds per HTTP attempt.
    :param retries: extra attempts after a 5xx answer, a timeout or a connection error.
    :param backoff: seconds before the first retry; doubled after each one.
    :param headers: extra HTTP headers (merged over the connection's ``headers`` extra).

    Example (a DAG callback)::

        EmptyOperator(task_id="t", on_failure_callback=MLOpsWebhookNotifier(
            http_conn_id="slack_alerts", text="{{ ti.dag_id }}.{{ ti.task_id }} failed on {{ ds }}"))
    """

    template_fields: Sequence[str] = ("text", "url", "http_conn_id", "fields")

    def __init__(self, *, text: str, url: str | None = None, http_conn_id: str | None = None,
                 fields: Mapping[str, Any] | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, headers: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        target = Webhook(text=text, url=url, http_conn_id=http_conn_id, fields=fields, timeout=timeout,
                         retries=retries, backoff=backoff, headers=headers)  # a bad target fails at Dag parse
        self.text, self.url, self.http_conn_id = target.text, target.url, target.http_conn_id
        self.fields = target.fields
        self.timeout, self.retries, self.backoff, self.headers = (target.timeout, target.retries, target.backoff,
                                                                  target.headers)

    def webhook(self) -> Webhook:
        """The :class:`~airflow_mlops.alerts.webhook.Webhook` of the current (rendered) fields."""
        return Webhook(text=self.text, url=self.url, http_conn_id=self.http_conn_id, fields=self.fields,
                       timeout=self.timeout, retries=self.retries, backoff=self.backoff, headers=self.headers,
                       log=self.log)  # type: ignore[arg-type]  # Airflow's structlog logger has the logging API

    def resolve(self) -> tuple[str, dict[str, str]]:
        """The URL to post to and the HTTP headers (from ``url`` or the connection)."""
        return self.webhook().resolve()

    def payload(self) -> dict[str, Any]:
        """``{"text": ..., **fields}`` (``text`` wins over a field of the same name)."""
        return self.webhook().payload()

    def post(self, payload: Mapping[str, Any] | None = None) -> int:
        """POST the payload (default :meth:`payload`); returns the HTTP status.

        Raises:
            WebhookDeliveryError: a 4xx answer, or still failing after the retries.
        """
        return self.webhook().post(payload)

    def notify(self, context: Context) -> None:
        """Send the (rendered) message."""
        self.post()

    async def async_notify(self, context: Context) -> None:
        """Send the message from the triggerer (the blocking post runs in a thread)."""
        await asyncio.to_thread(self.post)
