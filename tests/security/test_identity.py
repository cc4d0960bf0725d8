"""Identities: who a Dag run acts as, the CLI's --as with the OS user beside it, self-approval refused."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from airflow_mlops.registry.lifecycle import _acting
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.trust.identity import SCHEDULER, cli_identity, run_identity


@pytest.mark.parametrize("user,run_type,expected", [
    ("alice", "manual", "alice"),                       # UI / REST API / `airflow dags trigger`
    (None, "scheduled", SCHEDULER),                     # cron
    (None, "asset_triggered", SCHEDULER),               # a drift retraining request
    ("dag_test", "manual", f"dag_test:{getpass.getuser()}"),  # dag.test() / airflow dags test
])
def test_run_identity(user, run_type, expected):
    # the attributes Airflow's task SDK gives a DagRun in the task context
    context = {"dag_run": SimpleNamespace(triggering_user_name=user, run_type=run_type)}
    assert run_identity(context) == expected
    assert _acting({"triggered_by": run_identity(context)}) == expected


def test_cli_identity_needs_a_name_and_records_the_os_user():
    assert cli_identity(" bob ") == ("bob", {"via": "cli", "os_user": getpass.getuser()})
    with pytest.raises(ValueError, match="--as"):
        cli_identity("  ")


def _cli(root: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_mlops.cli", "--storage-uri", root, *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_actions_are_recorded_as_the_claimed_name_with_the_os_user(store):
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(40, 2))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    reg = ModelRegistry(store)
    reg.register("m", model, actor="carol", require_approval=True)  # carol triggered the training run
    refused = _cli(store.root, "approve", "m", "1", "--as", "carol", "--reason", "mine")
    assert refused.returncode == 2 and "'carol' registered m v1" in refused.stderr
    ok = _cli(store.root, "approve", "m", "1", "--as", "dave", "--reason", "read the card")
    assert ok.returncode == 0, ok.stderr
    ev = json.loads(ok.stdout)
    assert (ev["actor"], ev["details"]) == ("dave", {"via": "cli", "os_user": getpass.getuser()})
    assert reg.audit_log("m")[-1]["details"]["os_user"] == getpass.getuser()
    missing = _cli(store.root, "approve", "m", "1", "--reason", "x")
    assert missing.returncode == 2 and "--as" in missing.stderr
