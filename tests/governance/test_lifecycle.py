"""Lifecycle states (active / deprecated / retired) and the per-model kill switch, on both backends,
through the registry API and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from airflow_mlops.registry.model_registry import (
    DeprecatedVersionWarning,
    LifecycleError,
    ModelRegistry,
    PolicyError,
    RegistryError,
)


def _model(seed: int = 0):
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(seed).normal(size=(50, 3))
    return LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))


@pytest.fixture
def reg(store_root) -> ModelRegistry:  # file:// and s3:// (moto server), see tests/conftest.py
    from airflow_mlops.store.artifacts import ArtifactStore

    r = ModelRegistry(ArtifactStore(store_root))
    for i in range(3):
        r.register("churn", _model(i), actor="trainer")
    r.set_alias("churn", "champion", 2, actor="ci")
    r.set_alias("churn", "challenger", 3, actor="ci")
    return r


def test_deprecated_loads_with_warning_naming_actor_and_reason(reg):
    ev = reg.set_lifecycle("churn", 1, "deprecated", actor="alice", reason="old tariff feature")
    assert (ev["action"], ev["from"], ev["to"], ev["actor"], ev["reason"]) == (
        "lifecycle", "active", "deprecated", "alice", "old tariff feature")
    with pytest.warns(DeprecatedVersionWarning, match=r"churn v1 is deprecated \(by alice .*old tariff feature"):
        model, meta = reg.load_model("churn", version=1)
    assert meta["version"] == 1 and hasattr(model, "predict")
    assert reg.lifecycle("churn", 1)["state"] == "deprecated"
    assert reg.lifecycle("churn", 2) == {"state": "active"}


def test_retired_refuses_to_load_naming_version_actor_reason(reg):
    reg.set_lifecycle("churn", 1, "retired", actor="risk-team", reason="biased against region=south")
    with pytest.raises(LifecycleError) as e:
        reg.load_model("churn", version=1)
    msg = str(e.value)
    assert "churn v1 is retired" in msg and "risk-team" in msg and "biased against region=south" in msg
    assert "rollback" in msg  # says what to do
    model, _ = reg.load_model("churn", version=1, allow_retired=True)  # inspection stays possible
    assert hasattr(model, "predict")


def test_reason_required_and_state_validated(reg):
    with pytest.raises(LifecycleError, match="needs a reason"):
        reg.set_lifecycle("churn", 1, "retired", actor="a")
    with pytest.raises(LifecycleError, match="must be one of"):
        reg.set_lifecycle("churn", 1, "archived", actor="a", reason="x")
    with pytest.raises(RegistryError, match="no version 9"):
        reg.set_lifecycle("churn", 9, "deprecated", actor="a", reason="x")


def test_retired_version_cannot_become_champion_or_challenger(reg):
    reg.set_lifecycle("churn", 1, "retired", actor="risk", reason="leak")
    for alias in ("champion", "challenger"):
        with pytest.raises(LifecycleError, match=f"churn v1 is retired .* cannot become '{alias}'"):
            reg.set_alias("churn", alias, 1, actor="ci")
    with pytest.raises(PolicyError, match="churn v1 never held alias 'champion'"):
        reg.rollback("churn", "champion", to_version=1, actor="oncall", reason="v2 misbehaves")
    assert reg.get_aliases("churn") == {"champion": 2, "challenger": 3}
    # the one promotion policy holds for every alias: a retired version holds none
    with pytest.raises(LifecycleError, match="v1 is retired"):
        reg.set_alias("churn", "audit_2023", 1, actor="risk")
    # reactivated, it can be promoted again
    reg.set_lifecycle("churn", 1, "active", actor="risk", reason="leak fixed upstream")
    reg.set_alias("churn", "champion", 1, actor="ci")
    assert reg.resolve("churn") == 1


def test_default_rollback_skips_retired_versions(reg):
    reg.set_alias("churn", "champion", 3, actor="ci")          # history: 2 -> 3
    reg.set_alias("churn", "champion", 1, actor="ci")          # 2 -> 3 -> 1
    reg.set_lifecycle("churn", 3, "retired", actor="risk", reason="bad")
    ev = reg.rollback("churn", actor="oncall", reason="v1 misbehaves")
    assert (ev["from"], ev["to"]) == (1, 2)


def test_retiring_the_champion_is_refused_unless_forced(reg):
    with pytest.raises(LifecycleError) as e:
        reg.set_lifecycle("churn", 2, "retired", actor="risk", reason="bias")
    msg = str(e.value)
    assert "churn v2 is the current champion" in msg and "rollback churn --to-version" in msg and "--force" in msg
    assert reg.lifecycle("churn", 2)["state"] == "active"
    ev = reg.set_lifecycle("churn", 2, "retired", actor="risk", reason="bias", force=True)
    assert ev["details"] == {"aliases": ["champion"], "forced": True}
    with pytest.raises(LifecycleError, match="retired"):  # champion scoring now refuses
        reg.load_model("churn", alias="champion")


def test_audit_log_and_idempotence(reg):
    before = len(reg.audit_log("churn"))
    reg.set_lifecycle("churn", 1, "deprecated", actor="a", reason="r")
    again = reg.set_lifecycle("churn", 1, "deprecated", actor="a", reason="r")
    assert again["unchanged"] is True
    reg.set_lifecycle("churn", 1, "retired", actor="b", reason="r2")
    events = reg.audit_log("churn")[before:]
    assert [(e["action"], e["version"], e["from"], e["to"], e["actor"]) for e in events] == [
        ("lifecycle", 1, "active", "deprecated", "a"), ("lifecycle", 1, "retired", "retired", "b")
    ][:1] + [("lifecycle", 1, "deprecated", "retired", "b")]
    assert reg.lifecycles("churn") == {1: reg.lifecycle("churn", 1), 2: {"state": "active"}, 3: {"state": "active"}}


def test_kill_switch(reg):
    assert reg.is_model_disabled("churn") is None
    with pytest.raises(LifecycleError, match="needs a reason"):
        reg.set_model_disabled("churn", True, actor="oncall")
    ev = reg.set_model_disabled("churn", True, actor="oncall", reason="incident 42")
    assert (ev["action"], ev["from"], ev["to"]) == ("disable", False, True)
    state = reg.is_model_disabled("churn")
    assert state["by"] == "oncall" and state["reason"] == "incident 42" and state["at"]
    assert reg.set_model_disabled("churn", True, actor="oncall", reason="again")["unchanged"] is True
    reg.set_model_disabled("churn", False, actor="oncall", reason="resolved")
    assert reg.is_model_disabled("churn") is None
    assert [e["action"] for e in reg.audit_log("churn")[-2:]] == ["disable", "enable"]
    # the switch does not touch aliases or lifecycle
    assert reg.get_aliases("churn") == {"champion": 2, "challenger": 3}


def _cli(root: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_mlops.cli", "--storage-uri", root, *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_lifecycle_show_disable_enable(tmp_path):
    from airflow_mlops.store.artifacts import ArtifactStore

    root = "file://" + str(tmp_path / "store")
    reg = ModelRegistry(ArtifactStore(root))
    reg.register("churn", _model(0), actor="trainer")
    reg.register("churn", _model(1), actor="trainer")
    reg.set_alias("churn", "champion", 2, actor="ci")

    r = _cli(root, "lifecycle", "churn", "1", "deprecated", "--actor", "alice", "--reason", "old features")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["to"] == "deprecated"
    r = _cli(root, "lifecycle", "churn", "2", "retired", "--actor", "risk", "--reason", "bias")
    assert r.returncode == 2 and "current champion" in r.stderr and "--force" in r.stderr
    r = _cli(root, "lifecycle", "churn", "2", "retired", "--actor", "risk", "--reason", "bias", "--force")
    assert r.returncode == 0, r.stderr
    r = _cli(root, "disable", "churn", "--actor", "oncall", "--reason", "incident 7")
    assert r.returncode == 0, r.stderr

    shown = json.loads(_cli(root, "show", "churn").stdout)
    assert shown["lifecycle"]["1"]["state"] == "deprecated" and shown["lifecycle"]["2"]["by"] == "risk"
    assert shown["table"] == [
        {"version": 1, "state": "deprecated", "aliases": [], "reason": "old features", "by": "alice"},
        {"version": 2, "state": "retired", "aliases": ["champion"], "reason": "bias", "by": "risk"},
    ]
    assert shown["disabled"]["reason"] == "incident 7"
    r = _cli(root, "enable", "churn", "--actor", "oncall", "--reason", "fixed")
    assert r.returncode == 0 and json.loads(_cli(root, "show", "churn").stdout)["disabled"] is None
    r = _cli(root, "lifecycle", "churn", "1", "gone", "--actor", "x")
    assert r.returncode != 0 and "invalid choice" in r.stderr


def test_cli_rollback_re_renders_the_cards_of_both_versions(reg):
    """After a rollback through the CLI neither card states an alias it no longer holds."""
    reg.set_alias("churn", "champion", 1, actor="ci")  # history: 2 -> 1
    root = reg.store.root
    r = _cli(root, "rollback", "churn", "--to-version", "2", "--as", "oncall", "--reason", "v1 misbehaves")
    assert r.returncode == 0, r.stderr
    cards = {v: reg.store.read_bytes(f"registry/churn/versions/{v}/reports/model_card.md").decode() for v in (1, 2)}
    assert "| aliases" in cards[2] and "champion" in cards[2].split("| aliases", 1)[1].split("\n", 1)[0]
    assert "champion" not in cards[1].split("| aliases", 1)[1].split("\n", 1)[0]
