"""Approval by CLI, and ModelApprovalSensor poking / trigger firing on the decision."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.sensors.registry import ModelApprovalSensor
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.triggers.registry import ApprovalTrigger


@pytest.fixture
def reg(tmp_path):
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(40, 2))
    reg = ModelRegistry(ArtifactStore("file://" + str(tmp_path)))
    reg.register("m", LogisticRegression().fit(X, X[:, 0] > 0), actor="trainer", require_approval=True)
    reg.register("m", LogisticRegression().fit(X, X[:, 1] > 0), actor="trainer", require_approval=True)
    return reg


def _cli(reg, *args):
    return subprocess.run([sys.executable, "-m", "airflow_mlops.cli", "--storage-uri", reg.store.root, *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_approval_rules_and_audit(reg):
    refused = _cli(reg, "approve", "m", "1", "--approver", "trainer")
    assert refused.returncode == 2 and "may not approve" in refused.stderr
    ok = _cli(reg, "approve", "m", "1", "--approver", "reviewer", "--reason", "checked")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["actor"] == "reviewer"
    assert reg.approval("m", 1)["status"] == "approved"
    unknown = _cli(reg, "approve", "m", "9", "--approver", "reviewer")
    assert unknown.returncode == 2 and "versions: [1, 2]" in unknown.stderr


def test_sensor_waits_then_succeeds_or_fails_on_rejection(reg):
    s = ModelApprovalSensor(task_id="wait", model="m", version=1, storage_uri=reg.store.root, deferrable=False)
    assert s.poke({}).is_done is False
    reg.approve("m", 1, approver="reviewer")
    done = s.poke({})
    assert done.is_done and done.xcom_value["by"] == "reviewer"
    reg.approve("m", 2, approver="risk", reason="unfair to group B", status="rejected")
    s2 = ModelApprovalSensor(task_id="wait2", model="m", version=2, storage_uri=reg.store.root, deferrable=False)
    with pytest.raises(AirflowFailException, match="rejected by risk: unfair to group B"):
        s2.poke({})


def test_trigger_fires_once_decided(reg):
    trig = ApprovalTrigger(model="m", version=1, storage_uri=reg.store.root, poke_interval=0.05)
    assert trig.serialize()[0] == "airflow_mlops.triggers.registry.ApprovalTrigger"

    async def run():
        gen = trig.run()
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0.3)
        assert not task.done()  # still pending
        await asyncio.to_thread(reg.approve, "m", 1, approver="reviewer")
        return await asyncio.wait_for(task, 10)

    event = asyncio.run(run())
    assert event.payload["status"] == "decided" and event.payload["verdict"]["status"] == "approved"


def test_deferrable_sensors_return_at_once_or_defer_with_their_trigger(reg, tmp_path):
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_mlops.monitoring.monitor import drift_key
    from airflow_mlops.sensors.drift import DriftSensor
    from airflow_mlops.triggers.storage import StorageKeyTrigger

    s = ModelApprovalSensor(task_id="w", model="m", version=2, storage_uri=reg.store.root, deferrable=True)
    with pytest.raises(TaskDeferred) as d:
        s.execute({})
    assert isinstance(d.value.trigger, ApprovalTrigger) and d.value.method_name == "execute_complete"
    reg.approve("m", 2, approver="reviewer")
    assert s.execute({})["status"] == "approved"

    store = ArtifactStore("file://" + str(tmp_path / "drift"))
    ds = DriftSensor(task_id="d", model="m", ds="2024-01-02", storage_uri=store.root, deferrable=True)
    with pytest.raises(TaskDeferred) as d:
        ds.execute({})
    assert isinstance(d.value.trigger, StorageKeyTrigger) and d.value.trigger.key == drift_key("m", "2024-01-02")
    store.write_json(drift_key("m", "2024-01-02"), {"ds": "2024-01-02", "dataset_drift": True, "share_drifted": 0.6,
                                                    "threshold": 0.5, "columns": [{"column": "x", "drifted": True}]})
    out = ds.execute({})
    assert out["dataset_drift"] is True and out["drifted_columns"] == ["x"]
