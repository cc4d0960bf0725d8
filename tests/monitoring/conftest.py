"""Fixtures of the monitoring tests: a store with a trained churn model and three weeks of real
prediction logs (built once per session), and a real SMTP server for the alerts.

Days 2024-01-01..2024-01-21 of ``churn_day`` with a ``segment`` column (``enterprise`` ~5 % of rows)
are scored by a registered HistGradientBoosting model with the real scoring code; each test writes its
own ground-truth scenario (a separate dataset named in a derived config), so the expensive part
(training, scoring) runs once per session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_helpers import build_scored_store, start_smtp  # noqa: E402


@pytest.fixture(scope="session")
def scored(tmp_path_factory):
    """(store root, config, version): the model and the prediction log of ``SCORED_DAYS``."""
    root = "file://" + str(tmp_path_factory.mktemp("monitoring") / "store")
    cfg, version = build_scored_store(root)
    return root, cfg, version


@pytest.fixture
def smtp(monkeypatch):
    """A real SMTP server on 127.0.0.1 and the Airflow connection ``smtp_monitoring`` pointing at it."""
    inbox, controller, conn = start_smtp()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_MONITORING", conn)
    yield inbox
    controller.stop()
