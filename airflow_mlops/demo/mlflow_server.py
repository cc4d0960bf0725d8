"""A local ``mlflow server`` (SQLite backend store, local artifacts) on a free 127.0.0.1 port, for the demo with
MLflow (``python -m airflow_mlops.demo --mlflow``), the tests and the benchmarks.

The server runs from its own virtual environment: the full ``mlflow`` package pins other versions of libraries
the package's environment uses, and the package itself needs only the ``mlflow-skinny`` client. The
environment is created once with ``uv`` under ``~/.cache/airflow-mlops/`` (``$XDG_CACHE_HOME``) and reused.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["MLFLOW_SERVER_VERSION", "MlflowServer", "free_port", "server_venv"]

MLFLOW_SERVER_VERSION = "3.17.2"


def server_venv() -> Path:
    """The server's virtual environment (``mlflow==MLFLOW_SERVER_VERSION``), created with ``uv`` when missing."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "airflow-mlops"
    venv = root / f"mlflow-server-{MLFLOW_SERVER_VERSION}"
    complete = venv / ".complete"  # written last: a half-made environment is made again
    if complete.exists():
        return venv
    uv = Path(sys.executable).parent / "uv"
    if not uv.exists():
        found = shutil.which("uv")
        if found is None:
            raise RuntimeError("uv is needed to create the MLflow server's environment (make install puts it in "
                               ".venv/bin)")
        uv = Path(found)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """``mlflow server`` on a free 127.0.0.1 port: SQLite backend store and local artifacts under ``workdir``."""

    def __init__(self, venv: Path, workdir: Path) -> None:
        self.venv, self.workdir = venv, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server; its first start creates the tracking database's tables (a minute or more on a
        busy machine), so the migrated empty database is kept beside the environment and copied for later
        starts. A workdir that already has a database (a server started again on it) keeps its runs."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        template = self.venv / "empty-tracking.db"
        fresh = not (self.workdir / "mlflow.db").exists()
        if fresh and template.exists():
            shutil.copyfile(template, self.workdir / "mlflow.db")
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "python"), "-m", "mlflow", "server", "--host", "127.0.0.1",
             "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.workdir / 'mlflow.db'}",
             "--artifacts-destination", str(self.workdir / "artifacts"), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True,
            # tracking and the model registry only: no background job consumers (MLflow's GenAI jobs), which
            # would start several more interpreters beside the server on a small machine
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.workdir / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        if fresh and not template.exists():
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
