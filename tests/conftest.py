"""Shared fixtures: an isolated AIRFLOW_HOME, a moto S3 server (real HTTP on 127.0.0.1), stores on both backends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

# Isolate Airflow before anything imports it.
_HOME = tempfile.mkdtemp(prefix="mlops-test-home-")
os.environ.setdefault("AIRFLOW_HOME", _HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.pop("AIRFLOW__MLOPS__STORAGE_URI", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto in server mode as a separate process: the real S3 HTTP protocol on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import urllib.request

        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)

    def conn_json(self) -> str:
        return json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        })

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = server.conn_json()
    yield server
    server.stop()


@pytest.fixture
def s3_root(moto_server) -> str:
    bucket = f"mlops-{uuid.uuid4().hex[:12]}"
    moto_server.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/root"


@pytest.fixture(params=["file", "s3"])
def store_root(request, tmp_path) -> str:
    if request.param == "file":
        return "file://" + str(tmp_path / "store")
    return request.getfixturevalue("s3_root")


@pytest.fixture
def store(store_root):
    from airflow_mlops.store.artifacts import ArtifactStore

    return ArtifactStore(store_root)


# --- alert receivers: a real SMTP server (aiosmtpd) and a local webhook --------------------------------
@pytest.fixture
def smtp_server(monkeypatch):
    """A running aiosmtpd server on 127.0.0.1:<free port>, wired as Airflow connection smtp_default."""
    from alert_servers import SmtpServer

    server = SmtpServer()
    server.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.conn_json())
    yield server
    server.stop()


@pytest.fixture
def webhook_server():
    """A local HTTP server recording webhook requests (``fail_next`` makes it answer errors)."""
    from alert_servers import WebhookServer

    server = WebhookServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (SQLite backend store, local artifacts) on 127.0.0.1, started once per session on
    first use (:mod:`airflow_mlops.demo.mlflow_server`): the MLflow tests and the demo loop log to it."""
    from airflow_mlops.demo.mlflow_server import MlflowServer, server_venv

    server = MlflowServer(server_venv(), tmp_path_factory.mktemp("mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
