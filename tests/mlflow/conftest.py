"""A real ``mlflow server`` for the tests (:mod:`airflow_mlops.demo.mlflow_server`): started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_mlops.demo.mlflow_server import MlflowServer, server_venv


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: Any) -> Iterator[MlflowServer]:
    server = MlflowServer(server_venv(), tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_conn(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowServer:
    """The server as the Airflow connection ``mlflow_default`` (what ``[mlops] mlflow_conn_id`` names by default)."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", f"http://127.0.0.1:{mlflow_server.port}")
    monkeypatch.delenv("AIRFLOW__MLOPS__MLFLOW_CONN_ID", raising=False)
    return mlflow_server
