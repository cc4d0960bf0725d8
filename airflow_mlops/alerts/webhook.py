"""Post a JSON message to a chat webhook (Slack, Teams, Mattermost, any HTTP endpoint). Plain Python.

The payload is ``{"text": <one-paragraph summary>, **fields}``: ``text`` is what Slack/Teams/Mattermost
incoming webhooks display; the structured fields (``model``, ``check``, ``window``, ``value``,
``threshold``, ``slice``, ``report_uri`` ...) are there for any receiver that parses them.

The target is either a URL or an Airflow connection id (``http_conn_id``, read through
:func:`airflow_mlops.platform.connection`; the connection's ``host`` may be a full URL, else
``schema://host:port``; its extra may hold ``endpoint`` (a path appended to the URL) and ``headers`` (a dict
of HTTP headers)). Webhook URLs are secrets (the path is the credential), so logs and errors show only the
scheme and host.

Delivery uses the standard library (``urllib``): a 5xx answer, a timeout or a connection error is
retried ``retries`` times with exponential backoff; a 4xx answer fails at once (retrying cannot fix a
wrong URL or payload).

:class:`~airflow_mlops.notifications.webhook.MLOpsWebhookNotifier` is the Airflow notifier on top of this.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from airflow_mlops import platform

__all__ = ["Webhook", "WebhookDeliveryError", "redact_url"]

_log = logging.getLogger(__name__)


class WebhookDeliveryError(RuntimeError):
    """The webhook could not be delivered; the message names the host (never the secret path)."""


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…`` — the part of a webhook URL that is safe to log."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/…" if parts.netloc else "<invalid url>"


class Webhook:
    """One webhook message and its target.

    :param text: the message shown by chat tools.
    :param url: the webhook URL (``http://`` or ``https://``).
    :param http_conn_id: an Airflow connection holding the URL instead of ``url``.
    :param fields: structured fields added to the payload beside ``text``.
    :param timeout: seconds per HTTP attempt.
    :param retries: extra attempts after a 5xx answer, a timeout or a connection error.
    :param backoff: seconds before the first retry; doubled after each one.
    :param headers: extra HTTP headers (merged over the connection's ``headers`` extra).
    :param log: the logger of the attempts (default: this module's).
    """

    def __init__(self, *, text: str, url: str | None = None, http_conn_id: str | None = None,
                 fields: Mapping[str, Any] | None = None, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, headers: Mapping[str, str] | None = None,
                 log: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> None:
        if not (url or http_conn_id):
            raise ValueError("a webhook needs url= or http_conn_id=")
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {redact_url(url)}")
        self.text = text
        self.url = url
        self.http_conn_id = http_conn_id
        self.fields = dict(fields or {})
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.headers = dict(headers or {})
        self.log = log or _log

    @property
    def target(self) -> str:
        """``conn:<id>`` or the redacted URL: where the message goes, safe to log and store."""
        return f"conn:{self.http_conn_id}" if self.http_conn_id else redact_url(self.url or "")

    # ---- target ---------------------------------------------------------------------
    def resolve(self) -> tuple[str, dict[str, str]]:
        """The URL to post to and the HTTP headers (from ``url`` or the connection)."""
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "airflow-mlops"}
        if self.url:
            return self.url, {**headers, **self.headers}
        try:
            conn = platform.connection(str(self.http_conn_id))
        except Exception as e:
            raise WebhookDeliveryError(
                f"webhook connection {self.http_conn_id!r} is not defined ({type(e).__name__}); create an HTTP "
                f"connection with the webhook URL as host (e.g. AIRFLOW_CONN_{str(self.http_conn_id).upper()}="
                "'{\"conn_type\": \"http\", \"host\": \"https://hooks.example.com/...\"}')") from None
        extra = conn.extra_dejson or {}
        host = conn.host or ""
        if "://" in host:
            base = host
        else:
            base = f"{conn.schema or 'https'}://{host}"
            if conn.port:
                base += f":{conn.port}"
        endpoint = str(extra.get("endpoint") or "")
        url = base.rstrip("/") + "/" + endpoint.lstrip("/") if endpoint else base
        extra_headers = extra.get("headers") or {}
        if not isinstance(extra_headers, Mapping):
            raise WebhookDeliveryError(f"connection {self.http_conn_id!r}: extra 'headers' must be a JSON object")
        return url, {**headers, **{str(k): str(v) for k, v in extra_headers.items()}, **self.headers}

    def payload(self) -> dict[str, Any]:
        """``{"text": ..., **fields}`` (``text`` wins over a field of the same name)."""
        return {**self.fields, "text": self.text}

    # ---- delivery -------------------------------------------------------------------
    def post(self, payload: Mapping[str, Any] | None = None) -> int:
        """POST the payload (default :meth:`payload`); returns the HTTP status.

        Raises:
            WebhookDeliveryError: a 4xx answer, or still failing after the retries.
        """
        url, headers = self.resolve()
        body = json.dumps(payload if payload is not None else self.payload(), default=str).encode()
        where = redact_url(url)
        delay = self.backoff
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310 - http(s) only
                    status = int(resp.status)
                self.log.info("webhook %s answered %s (attempt %d)", where, status, attempt + 1)
                return status
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    raise WebhookDeliveryError(
                        f"webhook {where} refused the message: HTTP {e.code} {e.reason}; check the URL/connection "
                        "and that the endpoint accepts a JSON body with a 'text' field") from None
                last = f"HTTP {e.code} {e.reason}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(e).__name__}: {reason}"
            self.log.warning("webhook %s attempt %d/%d failed: %s", where, attempt + 1, self.retries + 1, last)
        raise WebhookDeliveryError(f"webhook {where} failed after {self.retries + 1} attempt(s): {last}")
