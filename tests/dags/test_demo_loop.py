"""The closed loop as the README's main command runs it (python -m airflow_mlops.demo), checked from the
outside: 7 quiet days request no retraining; the drift injected from day 8 is detected on that day's
monitoring run, its asset event schedules churn_training, a new version is registered and promoted only
through the champion/challenger gate."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from airflow_env import REPO
from airflow_mlops.hooks.registry import ModelRegistry
from airflow_mlops.hooks.storage import ArtifactStore
from airflow_mlops.monitoring import read_drift_summary, read_retrain_requests

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_demo_detects_drift_on_day_8_and_retrains_through_the_asset_event(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
    proc = subprocess.run([sys.executable, "-m", "airflow_mlops.demo", "--home", str(tmp_path / "demo"),
                           "--days", "9", "--drift-day", "8", "--rows", "1500"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    store = ArtifactStore("file://" + str(tmp_path / "demo" / "airflow" / "mlops"))
    days = [f"2024-01-{d:02d}" for d in range(2, 11)]  # day 1 .. day 9 after the training day
    shares = {d: (read_drift_summary(store, "churn", d) or {}).get("dataset_drift") for d in days}
    assert [shares[d] for d in days[:7]] == [False] * 7, shares  # 7 quiet days: no drift verdict
    assert shares[days[7]] is True  # day 8: drift
    requests_ = [r["ds"][:10] for r in read_retrain_requests(store, "churn")]
    assert requests_ and requests_[0] == days[7], requests_  # the first request is day 8's
    assert "retraining requested by the drift asset event" in out
    reg = ModelRegistry(store)
    versions = reg.list_versions("churn")
    assert versions[:2] == [1, 2]
    meta = reg.get_metadata("churn", 2)
    assert meta["training_data"]["window_end"] == days[7] and meta["dag_id"] == "churn_training"
    # promoted only through the gate: the decision compared it with v1 on the same holdout
    decision = [e for e in reg.audit_log("churn") if e["action"] == "set_alias" and e["to"] == 2][0]
    assert decision["alias"] in ("champion", "challenger")
    assert decision["details"]["champion_version"] == 1
    assert "=== Model registry ===" in out and "retraining runs triggered by drift: 1" in out
