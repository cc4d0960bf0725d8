"""A real ``mlflow server`` (SQLite backend store, local artifacts) on a free 127.0.0.1 port, started from its own
virtual environment (the full ``mlflow`` package pins other versions of libraries the package's environment
uses; the package itself needs only the ``mlflow-skinny`` client). The environment is created once with ``uv``
under ``~/.cache/airflow-mlops/`` and reused."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MLFLOW_SERVER_VERSION = "3.17.2"


def _server_venv() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "airflow-mlops"
    venv = root / f"mlflow-server-{MLFLOW_SERVER_VERSION}"
    complete = venv / ".complete"  # written last: a half-made environment is made again
    if complete.exists():
        return venv
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        pytest.skip("uv is not installed in the package's environment (make install puts it there)")
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    for cmd in ([str(uv), "venv", "-q", "--python", sys.executable, str(venv)],
                [str(uv), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                 f"mlflow=={MLFLOW_SERVER_VERSION}"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    complete.write_text(MLFLOW_SERVER_VERSION)
    return venv


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database in use (the backup API), written under a temporary name first."""
    import sqlite3

    partial = target.with_suffix(".partial")
    with sqlite3.connect(source) as src, sqlite3.connect(partial) as dst:
        src.backup(dst)
    partial.replace(target)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    def __init__(self, venv: Path, workdir: Path) -> None:
        self.venv, self.workdir = venv, workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server; its first start creates the tracking database's tables (a minute or more on a
        busy machine), so the migrated empty database is kept beside the environment and copied for later
        starts."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        template = self.venv / "empty-tracking.db"
        if template.exists():
            shutil.copyfile(template, self.workdir / "mlflow.db")
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "python"), "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
             "--artifacts-destination", str(self.workdir / "artifacts"), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.workdir / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        if not template.exists():
                            _copy_database(self.workdir / "mlflow.db", template)
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer: {(self.workdir / 'server.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
        self.proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: Any) -> Iterator[MlflowServer]:
    server = MlflowServer(_server_venv(), tmp_path_factory.mktemp("mlflow"))
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
