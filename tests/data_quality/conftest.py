"""Fixtures: a real aiosmtpd SMTP server (Airflow connection ``smtp_default`` via
``AIRFLOW_CONN_SMTP_DEFAULT``) and a local HTTP webhook receiver."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "alerts"))

from alert_servers import SmtpServer, WebhookServer  # noqa: E402


@pytest.fixture
def smtp_server(monkeypatch):
    """A running aiosmtpd server on 127.0.0.1:<free port>, wired as Airflow connection smtp_default."""
    server = SmtpServer()
    server.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.conn_json())
    yield server
    server.stop()


@pytest.fixture
def webhook_server():
    server = WebhookServer()
    yield server
    server.stop()
