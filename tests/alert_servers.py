"""Real local servers for alert delivery: an aiosmtpd SMTP server and an HTTP webhook receiver.

The SMTP server is reached through the real Airflow SMTP connection code path: the connection
``smtp_default`` is defined by ``AIRFLOW_CONN_SMTP_DEFAULT`` (JSON form) and read by ``SmtpHook``.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    """Messages received by the aiosmtpd controller: envelope + parsed MIME message."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = "\n".join(part.get_content() for part in msg.walk() if part.get_content_type() == "text/html")
        with self.lock:
            self.messages.append({"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                  "subject": str(msg["Subject"]), "to": str(msg["To"]), "body": body,
                                  "raw": envelope.content.decode("utf-8", "replace")})
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.sink = SmtpSink()
        self.port = free_port()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[dict]:
        return self.sink.messages

    def conn_json(self, **extra) -> str:
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"from_email": "mlops-alerts@example.com", "disable_ssl": True,
                                     "disable_tls": True, "retry_limit": 0, "timeout": 10, **extra}})

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class WebhookServer:
    """An HTTP server recording JSON POSTs; answers ``fail_next`` queued statuses first (e.g. 503)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_next: list[int] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = outer.fail_next.pop(0) if outer.fail_next else 200
                outer.requests.append({"path": self.path, "status": status, "body": body.decode(),
                                       "content_type": self.headers.get("Content-Type"),
                                       "json": json.loads(body) if body else None})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"unavailable")

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/T000/SECRET-TOKEN"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def delivered(self) -> list[dict]:
        return [r for r in self.requests if r["status"] == 200]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_config(owner: str = "owner@example.com", alerts: dict | None = None, **sections):
    """A small valid model config (``alerts`` and any other section, e.g. ``monitoring``)."""
    from airflow_mlops.config.parser import parse_model_config

    raw = {"name": "churn", "owner": owner, "data": {"dataset": "churn"}, "keys": ["customer_id"],
           "target": "churned", "estimator": {"class": "sklearn.linear_model.LogisticRegression"}, **sections}
    if alerts is not None:
        raw["alerts"] = alerts
    return parse_model_config(raw)
