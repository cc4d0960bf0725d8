"""The Airflow hooks: ``ArtifactStoreHook`` resolves the store root from its argument, an ``mlops_storage``
connection or ``[mlops] storage_uri``; ``ModelRegistryHook`` builds the registry on that store; operators
reach the store through ``self.hook``."""

from __future__ import annotations

import json

import pytest

from airflow_mlops.hooks.registry import ModelRegistryHook
from airflow_mlops.hooks.storage import ArtifactStoreHook
from airflow_mlops.operators import TrainModelOperator
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore


def test_store_hook_takes_the_root_from_an_mlops_storage_connection(tmp_path, monkeypatch):
    root = tmp_path / "from-connection"
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_TEAM", json.dumps(
        {"conn_type": "mlops_storage", "host": f"file://{root}", "extra": {"aws_conn_id": "aws_team"}}))
    store = ArtifactStoreHook(mlops_conn_id="mlops_team").get_conn()
    assert isinstance(store, ArtifactStore)
    assert store.root == f"file://{root}" and store.conn_id == "aws_team"
    store.write_json("probe.json", {"ok": 1})
    assert json.loads((root / "probe.json").read_text()) == {"ok": 1}


def test_an_explicit_storage_uri_wins_over_the_connection_and_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_TEAM", json.dumps({"conn_type": "mlops_storage",
                                                               "host": f"file://{tmp_path / 'conn'}"}))
    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_URI", f"file://{tmp_path / 'setting'}")
    assert ArtifactStoreHook(f"file://{tmp_path / 'arg'}", mlops_conn_id="mlops_team").get_conn().root == \
        f"file://{tmp_path / 'arg'}"
    assert ArtifactStoreHook().get_conn().root == f"file://{tmp_path / 'setting'}"


def test_a_missing_connection_is_an_error_naming_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_STORE", raising=False)
    with pytest.raises(Exception, match="no_such_store"):
        ArtifactStoreHook(mlops_conn_id="no_such_store").get_conn()


def test_the_connection_form_shows_only_the_storage_uri_and_extra():
    behaviour = ArtifactStoreHook.get_ui_field_behaviour()
    assert set(behaviour["hidden_fields"]) == {"port", "schema", "login", "password"}
    assert "Storage URI" in behaviour["relabeling"]["host"]
    assert ArtifactStoreHook.conn_type == "mlops_storage"


def test_registry_hook_builds_the_registry_on_the_hooks_store(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_TEAM", json.dumps({"conn_type": "mlops_storage",
                                                               "host": f"file://{tmp_path}"}))
    registry = ModelRegistryHook(mlops_conn_id="mlops_team").get_conn()
    assert isinstance(registry, ModelRegistry)
    assert registry.store.root == f"file://{tmp_path}"
    assert registry.list_models() == []


def test_operators_reach_the_store_through_the_hook(tmp_path):
    op = TrainModelOperator(task_id="train", config_path="unused.yaml", storage_uri=f"file://{tmp_path}")
    assert isinstance(op.hook, ArtifactStoreHook)
    assert op.store.root == f"file://{tmp_path}"


def test_the_provider_registers_the_hook_for_its_connection_type():
    from airflow_mlops import get_provider_info

    info = get_provider_info()
    (conn,) = [c for c in info["connection-types"] if c["connection-type"] == "mlops_storage"]
    assert conn["hook-class-name"] == "airflow_mlops.hooks.storage.ArtifactStoreHook"
    modules = [m for h in info["hooks"] for m in h["python-modules"]]
    assert modules == ["airflow_mlops.hooks.storage", "airflow_mlops.hooks.registry"]
