"""The MLflow tests' connection to the session's ``mlflow server`` (fixture ``mlflow_server``, tests/conftest.py)."""

from __future__ import annotations

import pytest

from airflow_mlops.demo.mlflow_server import MlflowServer


@pytest.fixture
def mlflow_conn(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowServer:
    """The server as the Airflow connection ``mlflow_default`` (what ``[mlops] mlflow_conn_id`` names by default)."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", f"http://127.0.0.1:{mlflow_server.port}")
    monkeypatch.delenv("AIRFLOW__MLOPS__MLFLOW_CONN_ID", raising=False)
    return mlflow_server
