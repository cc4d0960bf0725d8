"""Alert routing: one alert per (model, check, window[, slice]), delivered by e-mail and/or webhook.

Monitors (drift, performance, data freshness/volume/duplicates, fairness, gates) build an
:class:`Alert` and call :func:`raise_alert`. Routing comes from the model config::

    owner: ml-platform@example.com        # a recipient when it looks like an e-mail address
    alerts:
      email: [oncall@example.com]
      smtp_conn_id: smtp_default          # Airflow SMTP connection (apache-airflow-providers-smtp)
      webhook: conn:slack_alerts          # or https://hooks.slack.com/services/...
      checks: [drift, performance, freshness, volume, duplicate, fairness, gate]

E-mail goes through :func:`airflow_mlops.platform.send_email` (the SMTP provider's ``SmtpNotifier``, and so
``SmtpHook`` with the connection ``alerts.smtp_conn_id``), the webhook through
:class:`airflow_mlops.alerts.webhook.Webhook`. This module does not import Airflow; the Airflow failure
callback that raises alerts is :func:`airflow_mlops.notifications.mlops.alert_notifier`.

**Dedup.** Each alert owns one record in the artifact store,
``alerts/<model>/<check>/<window>[__<slice>].json``, created with an *exclusive create* (``O_EXCL``
locally, ``If-None-Match: *`` on S3). Only the attempt that creates the record (or, after a failure,
wins a compare-and-swap on it) sends; every other call — a rerun of the same logical date, a retry,
a concurrent task — finds the record and returns ``False``. The record holds the alert, the
per-channel delivery result and the number of attempts.

**At-least-once.** Monitoring alerts must not be lost, so delivery is at-least-once, not at-most-once:

* a channel that fails is marked ``failed`` in the record and :class:`AlertDeliveryError` is raised
  (the task fails and Airflow retries it); the retry claims the record with compare-and-swap and
  re-sends *only the channels that failed* (a delivered e-mail is not sent again because the
  webhook was down);
* a record left in ``sending`` by a process that died mid-delivery is taken over once it is older
  than :data:`SENDING_LEASE_SECONDS`.

The price is a possible duplicate message when a process dies between the SMTP/HTTP call and the
record update; a lost alert is never the price.

Alert texts carry the model, check, window, slice, value, threshold, report link and the monitor's
message — aggregates only. Monitors must never put row values in an alert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops import platform
from airflow_mlops.alerts.webhook import Webhook
from airflow_mlops.config.model import ALERT_CHECKS
from airflow_mlops.store.artifacts import (
    ArtifactExistsError,
    ArtifactNotFoundError,
    ArtifactStore,
    PreconditionFailedError,
    join,
)

if TYPE_CHECKING:
    from airflow_mlops.config.model import ModelConfig

__all__ = [
    "Alert",
    "AlertDeliveryError",
    "ALERT_CHECKS",
    "SENDING_LEASE_SECONDS",
    "alert_key",
    "alert_recipients",
    "AlertOutcome",
    "deliver_alert",
    "format_alert",
    "raise_alert",
    "read_alert_record",
]

log = logging.getLogger(__name__)

#: a record stuck in ``sending`` for longer than this is considered abandoned (its sender died)
SENDING_LEASE_SECONDS = 600.0
ALERTS_PREFIX = "alerts"
_EMAIL_RE = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+\-]{0,119}$")


class AlertDeliveryError(RuntimeError):
    """At least one channel failed; the record is marked so a retry re-sends the failed channels."""


@dataclass(frozen=True)
class AlertOutcome:
    """What :func:`deliver_alert` did, for a truthful log line.

    ``status`` is ``sent`` (delivered now), ``already_sent`` (delivered earlier: deduplicated),
    ``in_progress`` (another attempt is delivering it right now) or ``not_sent`` (nothing was sent and no
    record was written: the check is not routed, or no channel is configured); ``reason`` says why.
    """

    status: str
    reason: str = ""
    channels: tuple[str, ...] = ()

    @property
    def sent(self) -> bool:
        return self.status == "sent"

    def describe(self) -> str:
        """``sent via email``, ``already sent earlier (dedup: ...)``, ``not sent: ...``."""
        if self.status == "sent":
            return "sent via " + ", ".join(self.channels)
        if self.status == "already_sent":
            return f"already sent earlier (dedup: {self.reason})"
        if self.status == "in_progress":
            return f"not sent by this attempt: {self.reason}"
        return f"not sent: {self.reason}"


@dataclass(frozen=True)
class Alert:
    """One alert.

    :param model: the model's name.
    :param check: one of :data:`~airflow_mlops.config.model.ALERT_CHECKS`.
    :param window: what the alert is about in time, e.g. the logical date ``2024-01-15`` or a range
        ``2024-01-09..2024-01-15``; part of the dedup key.
    :param value: the observed value (a number, or a short word such as ``missing``).
    :param threshold: the limit it was compared with.
    :param message: one or two sentences for a human: what is wrong and what to do (no row values).
    :param report_uri: link to the report with the details.
    :param slice: the data slice (``region=EU``) when the alert is about one; part of the dedup key.
    :param details: small JSON-able aggregates (counts, ratios, hashes) kept in the record and webhook.
    """

    model: str
    check: str
    window: str
    value: float | str | None
    threshold: float | str | None
    message: str
    report_uri: str | None = None
    slice: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.check not in ALERT_CHECKS:
            raise ValueError(f"Alert.check must be one of {', '.join(ALERT_CHECKS)}; got {self.check!r}")
        if not self.model or "/" in self.model:
            raise ValueError(f"Alert.model must be the model's name, got {self.model!r}")
        if not str(self.window).strip():
            raise ValueError("Alert.window must name the window (e.g. the logical date YYYY-MM-DD)")

    def to_dict(self) -> dict[str, Any]:
        plain: dict[str, Any] = json.loads(json.dumps(asdict(self), default=str))
        return plain


# --------------------------------------------------------------------------------------------
# keys, routing, formatting
# --------------------------------------------------------------------------------------------


def _key_part(value: str) -> str:
    """A store-safe file-name fragment; unsafe characters become ``_`` plus a short hash of the
    original, so two different values never share a key."""
    value = str(value)
    if _SAFE_PART.match(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.=+\-]", "_", value)[:80].strip("._") or "x"
    return f"{cleaned}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def alert_key(alert: Alert) -> str:
    """``alerts/<model>/<check>/<window>[__<slice>].json``: the dedup record of an alert."""
    name = _key_part(alert.window)
    if alert.slice:
        name += "__" + _key_part(alert.slice)
    return join(ALERTS_PREFIX, _key_part(alert.model), alert.check, name + ".json")


def read_alert_record(store: ArtifactStore, alert: Alert) -> dict[str, Any] | None:
    """The stored record of ``alert`` (``None`` when it was never raised)."""
    try:
        record: dict[str, Any] = store.read_json(alert_key(alert))
        return record
    except ArtifactNotFoundError:
        return None


def alert_recipients(config: ModelConfig) -> list[str]:
    """``alerts.email`` plus ``owner`` when the owner looks like an e-mail address (deduplicated)."""
    out: list[str] = []
    for addr in (*config.alerts.email, config.owner):
        addr = (addr or "").strip()
        if _EMAIL_RE.match(addr) and addr.lower() not in {a.lower() for a in out}:
            out.append(addr)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_alert(alert: Alert, run: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{"subject", "text", "html"}`` of an alert: model, check, window, slice, value, threshold,
    report link, the monitor's message and the Airflow run (when known)."""
    where = f"{alert.model} · {alert.check} · {alert.window}" + (f" · slice {alert.slice}" if alert.slice else "")
    subject = f"[mlops alert] {where}: value {_fmt(alert.value)} vs threshold {_fmt(alert.threshold)}"
    rows = [("Model", alert.model), ("Check", alert.check), ("Window", alert.window)]
    if alert.slice:
        rows.append(("Slice", alert.slice))
    rows += [("Value", _fmt(alert.value)), ("Threshold", _fmt(alert.threshold)),
             ("Report", alert.report_uri or "(no report)")]
    run = {k: v for k, v in (run or {}).items() if v is not None}
    if run:
        rows.append(("Run", " / ".join(str(run[k]) for k in ("dag_id", "run_id", "task_id") if k in run)))
    text = "\n".join(f"{k}: {v}" for k, v in rows) + f"\n\n{alert.message}\n"
    cells = []
    for k, v in rows:
        if k == "Report" and alert.report_uri:
            v_html = f'<a href="{html.escape(alert.report_uri, quote=True)}">{html.escape(alert.report_uri)}</a>'
        else:
            v_html = html.escape(str(v))
        cells.append(f"<tr><th align=\"left\">{html.escape(k)}</th><td>{v_html}</td></tr>")
    body = (f"<p>{html.escape(alert.message)}</p>\n<table>\n" + "\n".join(cells) + "\n</table>\n"
            "<p><small>Sent once per model, check and window by airflow-mlops.</small></p>")
    return {"subject": subject, "text": text, "html": body}


def _run_info(context: Mapping[str, Any] | None) -> dict[str, Any]:
    if not context:
        return {}
    ti = context.get("ti") or context.get("task_instance")
    info = {k: getattr(ti, k, None) for k in ("dag_id", "run_id", "task_id", "try_number")} if ti else {}
    return {k: v for k, v in info.items() if v is not None}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _error_text(e: BaseException) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"[:500]


# --------------------------------------------------------------------------------------------
# channels
# --------------------------------------------------------------------------------------------


def _send_email(config: ModelConfig, recipients: list[str], content: Mapping[str, str],
                context: Mapping[str, Any] | None) -> None:
    """Send through ``SmtpNotifier`` (SmtpHook with the connection ``alerts.smtp_conn_id``), see
    :func:`airflow_mlops.platform.send_email`."""
    try:
        platform.send_email(to=recipients, subject=content["subject"], html_content=content["html"],
                            smtp_conn_id=config.alerts.smtp_conn_id, context=context)
    except platform.ProviderMissingError as e:  # pragma: no cover - depends on the install
        raise AlertDeliveryError(str(e)) from e
    except ValueError as e:  # no sender address anywhere
        raise AlertDeliveryError(f"SMTP connection {config.alerts.smtp_conn_id!r}: {e} (set 'from_email' in "
                                 "the connection's extra or [email] from_email)") from None


def _smtp_configured(conn_id: str) -> bool:
    """Whether the SMTP connection exists. A missing connection means e-mail alerts are not set up (the
    embedded default): the e-mail channel is skipped with a warning. A connection that exists but fails
    is a delivery failure (retried)."""
    try:
        platform.connection(conn_id)
    except platform.ConnectionNotFoundError:
        return False
    return True


def _webhook(config: ModelConfig, alert: Alert, content: Mapping[str, str], run: Mapping[str, Any]) -> Webhook:
    spec = config.alerts.webhook or ""
    conn_id, url = (spec[len("conn:"):], None) if spec.startswith("conn:") else (None, spec)
    fields = {**alert.to_dict(), "run": dict(run), "source": "airflow-mlops"}
    text = content["text"].replace("\n\n", "\n").strip()
    return Webhook(text=text, fields=fields, url=url, http_conn_id=conn_id)


# --------------------------------------------------------------------------------------------
# raise_alert
# --------------------------------------------------------------------------------------------


def _claim(store: ArtifactStore, key: str, record: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Create the record, or take over a failed/abandoned one. ``(record, why)``; ``None`` when
    another attempt owns (or already delivered) the alert."""
    try:
        store.create_json(key, record)
        return record, "new"
    except ArtifactExistsError:
        pass
    data, etag = store.read_versioned(key)
    try:
        existing = json.loads(data)
    except ValueError:
        existing = {"status": "failed", "channels": {}, "attempts": 0}
    status = existing.get("status")
    if status == "delivered":
        return None, "already delivered at " + str(existing.get("delivered_at"))
    if status == "sending":
        try:
            claimed = dt.datetime.fromisoformat(str(existing.get("claimed_at")))
        except ValueError:
            claimed = _now() - dt.timedelta(seconds=SENDING_LEASE_SECONDS + 1)
        age = (_now() - claimed).total_seconds()
        if age < SENDING_LEASE_SECONDS:
            return None, f"being delivered by another attempt (claimed {age:.0f}s ago)"
    taken = {**existing, "status": "sending", "claimed_at": record["claimed_at"],
             "attempts": int(existing.get("attempts") or 0) + 1, "run": record["run"],
             "alert": existing.get("alert") or record["alert"]}
    taken.setdefault("channels", {})
    try:
        store.write_bytes_if_match(key, ArtifactStore.dumps(taken), etag)
    except PreconditionFailedError:
        return None, "claimed concurrently by another attempt"
    return taken, f"retry after {status}"


def raise_alert(config: ModelConfig, store: ArtifactStore, alert: Alert, *,
                context: Mapping[str, Any] | None = None) -> bool:
    """Route one alert to the model's owner/recipients; True if delivered now, False if this (model, check,
    window[, slice]) was already alerted (no floods on reruns).

    ``False`` also means "not sent" (see below); :func:`deliver_alert` returns an :class:`AlertOutcome`
    that tells these cases apart.

    Also ``False`` (logged, no record written) when ``alert.check`` is not in ``alerts.checks`` or no
    channel is configured (no e-mail recipient and no webhook, or e-mail recipients but no Airflow
    connection ``alerts.smtp_conn_id``: the embedded default without SMTP logs the alert as a warning).

    Raises:
        AlertDeliveryError: a channel failed; the record is marked ``failed`` and a later call
            (the task's retry) re-sends the failed channels only.
    """
    return deliver_alert(config, store, alert, context=context).sent


def _no_email_reason(config: ModelConfig) -> str:
    """Why there is no e-mail recipient: the owner is not an address and alerts.email has none."""
    listed = [a for a in config.alerts.email if (a or "").strip()]
    emails = (f"alerts.email {listed!r} holds no valid address" if listed else "alerts.email is empty")
    return f"no e-mail recipient (owner {config.owner!r} is not an e-mail address and {emails})"


def deliver_alert(config: ModelConfig, store: ArtifactStore, alert: Alert, *,
                  context: Mapping[str, Any] | None = None) -> AlertOutcome:
    """:func:`raise_alert`, returning an :class:`AlertOutcome` (sent / already sent / not sent and why)."""
    if alert.model != config.name:
        raise ValueError(f"alert for model {alert.model!r} routed with the config of {config.name!r}")
    name = f"{alert.model}/{alert.check}/{alert.window}" + (f"/{alert.slice}" if alert.slice else "")
    if alert.check not in config.alerts.checks:
        why = f"check {alert.check!r} is not in alerts.checks of {config.source}"
        log.info("alert %s not sent: %s", name, why)
        return AlertOutcome("not_sent", why)
    recipients = alert_recipients(config)
    email_skipped = ""
    if recipients and not _smtp_configured(config.alerts.smtp_conn_id):
        email_skipped = (f"no e-mail sent to {len(recipients)} recipient(s): the Airflow connection "
                         f"{config.alerts.smtp_conn_id!r} (alerts.smtp_conn_id) does not exist; create it to "
                         "receive e-mail alerts")
        if config.alerts.webhook:  # the webhook still goes out: say what is skipped
            log.warning("alert %s: %s", name, email_skipped)
        recipients = []
    channels: list[str] = (["email"] if recipients else []) + (["webhook"] if config.alerts.webhook else [])
    if not channels:
        why = (f"no channel configured for {config.source}: {email_skipped or _no_email_reason(config)}, "
               "and no alerts.webhook")
        log.warning("alert %s not sent: %s; message: %s", name, why, alert.message)
        return AlertOutcome("not_sent", why)

    key = alert_key(alert)
    run = _run_info(context)
    now = _now().isoformat()
    record, why = _claim(store, key, {
        "key": key, "alert": alert.to_dict(), "status": "sending", "created_at": now, "claimed_at": now,
        "attempts": 1, "channels": {}, "run": run})
    if record is None:
        log.info("alert %s not sent again: %s (record %s)", name, why, store.uri(key))
        return AlertOutcome("already_sent" if why.startswith("already delivered") else "in_progress",
                            f"{why}; record {store.uri(key)}")

    content = format_alert(alert, run)
    results: dict[str, Any] = dict(record.get("channels") or {})
    errors: list[str] = []
    for channel in channels:
        if (results.get(channel) or {}).get("status") == "delivered":
            continue
        try:
            if channel == "email":
                _send_email(config, recipients, content, context)
                results[channel] = {"status": "delivered", "at": _now().isoformat(), "recipients": recipients,
                                    "smtp_conn_id": config.alerts.smtp_conn_id}
            else:
                webhook = _webhook(config, alert, content, run)
                status = webhook.post()
                results[channel] = {"status": "delivered", "at": _now().isoformat(), "target": webhook.target,
                                    "http_status": status}
        except Exception as e:  # noqa: BLE001 - every failure is recorded and re-raised below
            results[channel] = {"status": "failed", "at": _now().isoformat(), "error": _error_text(e)}
            errors.append(f"{channel}: {_error_text(e)}")
    record = {**record, "channels": results, "status": "failed" if errors else "delivered"}
    if not errors:
        record["delivered_at"] = _now().isoformat()
    store.write_json(key, record)
    if errors:
        hints = []
        if any(e.startswith("email") for e in errors):
            hints.append(f"the SMTP connection {config.alerts.smtp_conn_id!r} (alerts.smtp_conn_id)")
        if any(e.startswith("webhook") for e in errors):
            hints.append("alerts.webhook (URL or HTTP connection)")
        raise AlertDeliveryError(
            f"alert {name} could not be delivered ({'; '.join(errors)}); the record {store.uri(key)} is marked "
            f"failed so a retry of the task re-sends the failed channel(s) only. Check {' and '.join(hints)}.")
    log.info("alert %s delivered via %s (%d e-mail recipient(s)); record %s", name, ", ".join(channels),
             len(recipients), store.uri(key))
    return AlertOutcome("sent", f"record {store.uri(key)}", tuple(channels))

