#!/usr/bin/env python3
"""Scale-out proof on one machine, without Docker: the batch scoring DAG mapped over the input files
on Airflow's CeleryExecutor with one and then two Celery workers, artifacts on S3 (moto).

    make scale-demo                        (installs .[dev,celery], then runs this script)
    .venv/bin/python scripts/celery_multiworker.py [--files 8] [--rows-per-file 100000] [--keep]

What it does, printing progress:

1. Installs what is missing: Debian ``postgresql`` and ``redis-server`` (``apt-get`` as root, else
   ``sudo -n apt-get``), and the Python extra ``.[dev,celery]`` (CeleryExecutor provider, psycopg2).
2. Starts private servers on free 127.0.0.1 ports in a temp dir: a Postgres cluster (``initdb``; run as
   the ``postgres``/``nobody`` user when this runs as root), ``redis-server`` (the Celery broker) and a
   moto S3 server with a bucket (the artifact store ``s3://<bucket>/mlops``, reached through the
   Airflow connection ``aws_default`` = env ``AIRFLOW_CONN_AWS_DEFAULT`` with ``endpoint_url``).
3. Writes example churn data (``airflow_mlops.demo.data``): 7 days of history (one file each)
   and two days to score, each split into ``--files`` parquet files; trains, registers and promotes a
   champion in this process with the pipeline functions (``train_and_register``, ``promote_candidate``).
4. Runs Airflow with the CeleryExecutor in a temp ``AIRFLOW_HOME``: ``airflow db migrate`` on
   Postgres, ``scheduler``, ``dag-processor``, ``api-server`` and ``airflow celery worker -H
   worker1@%h`` (concurrency ``--concurrency``). The DAG is ``scripts/scale_dags/mlops_mapped_scoring.py``
   (plan -> score mapped over the files -> merge). Each worker records itself as the task instances'
   ``hostname`` (``scripts/celery_worker_hostname.py``).
5. Triggers the DAG through the REST API: a warm-up run (the last history day, one file) and day 1 with
   worker1 only; then starts ``worker2@%h`` and triggers day 2; waits for each run's success.
6. Checks (a) that in the two-worker run both workers ran mapped ``score`` tasks (task instances'
   ``hostname`` from the REST API), (b) that the prediction partitions equal, byte for byte, those of
   the same DAG run with ``dag.test()`` on the embedded default (SQLite + ``file://``) on a copy of
   the same data and registry. Compared columns: every prediction-log column except ``scored_at`` and
   ``run_id`` (the keys, ``prediction``, ``proba_<class>``, ``shadow_prediction``,
   ``shadow_model_version``, ``model_name``, ``model_version``, ``scored_by``, ``logical_date``), rows
   sorted by the keys, serialised as one Arrow IPC stream each and compared as bytes (sha256 printed).
7. Prints the wall time of the run with one worker and with two, and the speedup.

Everything it starts runs in its own process group and is stopped on exit (also on failure or
Ctrl-C); the temp dir is removed unless ``--keep``. Exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import glob
import hashlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAGS_DIR = REPO / "scripts" / "scale_dags"
CONFIG = REPO / "dags" / "configs" / "churn.yaml"
DAG_ID = "churn_mapped_scoring"
HISTORY_END = "2024-01-07"  # the champion is trained on the week ending here
DAYS = ("2024-01-08", "2024-01-09")  # day 1: one worker, day 2: two workers
BIN = Path(sys.executable).parent
T0 = time.monotonic()


class Failure(Exception):
    """A step failed; the message says which and where its log is."""


def step(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"(no log at {path})"


def wait_for(what: str, check: Any, timeout: float, procs: list[Proc] = (), interval: float = 0.5) -> Any:
    """Poll ``check()`` until truthy; fail naming ``what`` (and the log of a process that died)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.popen.poll() is not None:
                raise Failure(f"{p.name} exited ({p.popen.returncode}) while waiting for {what}; "
                              f"log {p.log}:\n{tail(p.log)}")
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise Failure(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})"
                  + "".join(f"\n--- {p.name} ({p.log}):\n{tail(p.log, 15)}" for p in procs))


# ------------------------------------------------------------------------------------------
# installs
# ------------------------------------------------------------------------------------------
def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def ensure_system_packages() -> tuple[Path, str]:
    """Postgres server binaries and redis-server, installed from Debian packages when missing."""
    missing = [pkg for pkg, ok in (("postgresql", pg_bindir() is not None),
                                   ("redis-server", shutil.which("redis-server") is not None)) if not ok]
    if missing:
        if os.geteuid() == 0:
            apt = ["apt-get"]
        elif shutil.which("sudo"):
            apt = ["sudo", "-n", "apt-get"]
        else:
            raise Failure(f"{' and '.join(missing)} not installed and this user cannot install packages "
                          f"(not root, no sudo); install them: apt-get install -y {' '.join(missing)}")
        step(f"installing Debian packages {', '.join(missing)} ({' '.join(apt)})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in ([*apt, "update", "-qq"], [*apt, "install", "-y", "-qq", *missing]):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise Failure(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                              f"{proc.stderr[-2000:]}\nInstall {' '.join(missing)} by hand and re-run.")
    bindir = pg_bindir()
    redis = shutil.which("redis-server")
    if bindir is None or redis is None:
        raise Failure("postgresql/redis-server still missing after apt-get install")
    return bindir, redis


def ensure_python_packages() -> None:
    """The ``celery`` extra (CeleryExecutor provider, psycopg2, asyncpg) and moto, in this interpreter's venv."""
    needed = ("airflow.providers.celery", "psycopg2", "asyncpg", "moto", "requests")
    if all(importlib.util.find_spec(m) is not None for m in needed):
        return
    step("installing the Python extra .[dev,celery] into the venv")
    uv = BIN / "uv"
    cmd = ([str(uv), "pip", "install", "-q", "--python", sys.executable] if uv.exists()
           else [sys.executable, "-m", "pip", "install", "-q"]) + ["-e", f"{REPO}[dev,celery]"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Failure(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-3000:]}")
    importlib.invalidate_caches()


# ------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------
class Proc:
    def __init__(self, name: str, popen: subprocess.Popen, log: Path, stop_signal: int = signal.SIGTERM) -> None:
        self.name, self.popen, self.log, self.stop_signal = name, popen, log, stop_signal


class Stack:
    """Every process started here, each in its own session (process group); stopped in reverse order."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              user: str | None = None, stop_signal: int = signal.SIGTERM) -> Proc:
        log = self.logs / f"{name}.log"
        preexec = None
        if user is not None:
            pw = pwd.getpwnam(user)

            def preexec() -> None:  # drop root for postgres
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
        with open(log, "ab") as f:
            popen = subprocess.Popen(cmd, env=env, cwd=str(cwd or self.work), stdout=f, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec)
        proc = Proc(name, popen, log, stop_signal)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 30) -> None:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, proc.stop_signal)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(10)
        # children that outlived their leader (task processes of a worker) are in the same group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                print(f"warning: could not stop {proc.name} (pid {proc.popen.pid}): {e}", file=sys.stderr)
        self.procs.clear()


def start_postgres(stack: Stack, bindir: Path) -> str:
    """A private cluster on 127.0.0.1:<free port>; returns the SQLAlchemy URL of database ``airflow``."""
    user = None
    pgdir = Path(tempfile.mkdtemp(prefix="mlops-scale-pg-"))
    stack.pgdir = pgdir
    if os.geteuid() == 0:  # postgres refuses to run as root
        user = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
        if user is None:
            raise Failure("running as root and neither a 'postgres' nor a 'nobody' user exists to run Postgres")
        pw = pwd.getpwnam(user)
        os.chown(pgdir, pw.pw_uid, pw.pw_gid)
    os.chmod(pgdir, 0o700)
    data = pgdir / "data"
    log = stack.logs / "initdb.log"
    preexec = None
    if user is not None:
        pw = pwd.getpwnam(user)

        def preexec() -> None:
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
    with open(log, "wb") as f:
        rc = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8",
                             "--locale=C", "--no-sync"], stdout=f, stderr=subprocess.STDOUT, cwd=str(pgdir),
                            preexec_fn=preexec).returncode
    if rc != 0:
        raise Failure(f"initdb failed ({rc}); log {log}:\n{tail(log)}")
    port = free_port()
    proc = stack.start("postgres", [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                                    "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={pgdir}",
                                    "-c", "fsync=off", "-c", "synchronous_commit=off",
                                    "-c", "full_page_writes=off", "-c", "max_connections=200"],
                       cwd=pgdir, user=user, stop_signal=signal.SIGINT)  # SIGINT = fast shutdown

    import psycopg2

    def ready() -> bool:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="airflow", dbname="postgres", connect_timeout=2)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
            if cur.fetchone() is None:
                cur.execute("CREATE DATABASE airflow")
        conn.close()
        return True

    wait_for("Postgres", ready, 60, [proc])
    return f"postgresql+psycopg2://airflow@127.0.0.1:{port}/airflow"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def start_redis(stack: Stack, redis: str) -> str:
    port = free_port()
    rdir = stack.work / "redis"
    rdir.mkdir()
    proc = stack.start("redis", [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(rdir), "--protected-mode", "yes"])

    def ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    wait_for("redis-server", ping, 30, [proc])
    return f"redis://127.0.0.1:{port}/0"


def start_moto(stack: Stack) -> str:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = stack.start("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
    wait_for("the moto S3 server", lambda: urllib.request.urlopen(endpoint + "/moto-api/", timeout=1), 60, [proc])
    return endpoint


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


# ------------------------------------------------------------------------------------------
# Airflow
# ------------------------------------------------------------------------------------------
class Api:
    """The Airflow REST API v2 with a JWT of the admin user."""

    def __init__(self, url: str, password: str) -> None:
        self.url, self.password, self.token = url, password, ""

    def login(self) -> bool:
        import requests

        r = requests.post(f"{self.url}/auth/token", json={"username": "admin", "password": self.password}, timeout=10)
        r.raise_for_status()
        self.token = r.json()["access_token"]
        return True

    def call(self, method: str, path: str, **kw: Any) -> Any:
        import requests

        r = requests.request(method, f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self.token}"},
                             timeout=30, **kw)
        if not r.ok:
            raise Failure(f"{method} {path} answered {r.status_code}: {r.text[:500]}")
        return r.json()


def airflow_env(work: Path, db_url: str, broker: str, s3_endpoint: str, bucket: str, api_port: int,
                password_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # each task uses one core: the workers' slots are the parallelism
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,  # db+postgresql+psycopg2://
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__MLOPS__STORAGE_URI": f"s3://{bucket}/mlops",
        "AIRFLOW__MLOPS__STORAGE_CONN_ID": "aws_default",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}),
        "MLOPS_SCALE_CONFIG": str(CONFIG),
    })
    return env


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def run_airflow(env: dict[str, str], logs: Path, *args: str, timeout: float = 600) -> None:
    log = logs / ("airflow_" + "_".join(args[:2]) + ".log")
    with open(log, "wb") as f:
        try:
            rc = subprocess.run([str(BIN / "airflow"), *args], env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise Failure(f"airflow {' '.join(args)} timed out after {timeout:.0f}s; log {log}") from None
    if rc != 0:
        raise Failure(f"airflow {' '.join(args)} failed ({rc}); log {log}:\n{tail(log)}")


def start_worker(stack: Stack, env: dict[str, str], name: str, concurrency: int) -> Proc:
    wenv = {**env, "MLOPS_WORKER_NAME": name,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "scripts"), env.get("PYTHONPATH")])),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "celery_worker_hostname.hostname",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency)}
    wdir = stack.work / name
    wdir.mkdir(exist_ok=True)
    # --skip-serve-logs: the workers share this machine (and its log folder); one log server port each
    # is not needed. Task logs are read from $AIRFLOW_HOME/logs by the api-server.
    proc = stack.start(name, [str(BIN / "airflow"), "celery", "worker", "-H", f"{name}@%h",
                              "-c", str(concurrency), "--skip-serve-logs"], env=wenv, cwd=wdir)
    wait_for(f"Celery worker {name}", lambda: " ready." in proc.log.read_text(errors="replace"), 180, [proc])
    return proc


def trigger_and_wait(api: Api, ds: str, run_id: str, procs: list[Proc], timeout: float) -> dict[str, Any]:
    t = time.monotonic()
    api.call("POST", f"/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "logical_date": f"{ds}T00:00:00Z",
                                                      "conf": {}})

    def done() -> dict | None:
        run = api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
        if run["state"] == "failed":
            tis = api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
            states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in tis}
            raise Failure(f"{DAG_ID} run {run_id} failed: {states}; task logs under "
                          f"$AIRFLOW_HOME/logs/dag_id={DAG_ID}/run_id={run_id}/")
        return run if run["state"] == "success" else None

    def check() -> dict | None:
        try:
            return done()
        except Failure:
            raise
        except Exception:  # noqa: BLE001 - transient API errors are retried by wait_for
            return None

    deadline = time.monotonic() + timeout
    run = None
    while run is None:
        for p in procs:
            if p.popen.poll() is not None:
                raise Failure(f"{p.name} exited ({p.popen.returncode}) during run {run_id}; "
                              f"log {p.log}:\n{tail(p.log)}")
        if time.monotonic() > deadline:
            raise Failure(f"run {run_id} of {DAG_ID} did not finish within {timeout:.0f}s")
        run = check()
        if run is None:
            time.sleep(0.5)
    wall = time.monotonic() - t
    tis = api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {"run": run, "wall": wall, "tis": tis}


# ------------------------------------------------------------------------------------------
# data, model, reference, comparison
# ------------------------------------------------------------------------------------------
def make_data_and_champion(storage_uri: str, files: int, rows_per_file: int, history_rows: int) -> dict[str, Any]:
    """Example data in the store (history: 1 file/day; scoring days: ``files`` files) and a champion."""
    import logging

    from airflow_mlops.config.parser import load_model_config
    from airflow_mlops.demo.data import churn_day, date_range
    from airflow_mlops.registry.lifecycle import promote_candidate, train_and_register
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    logging.getLogger("airflow_mlops").setLevel(logging.WARNING)  # this script prints its own progress
    logging.getLogger("airflow.providers.amazon").setLevel(logging.WARNING)
    store = ArtifactStore(storage_uri)
    data = Dataset.for_name(store, "churn")
    for day in date_range("2024-01-01", 7):
        data.write(day, churn_day(day, rows=history_rows))
    for day in DAYS:
        df = churn_day(day, rows=files * rows_per_file)
        data.write(day, [df.iloc[i * rows_per_file:(i + 1) * rows_per_file] for i in range(files)])
    config = load_model_config(CONFIG)
    summary = train_and_register(config, store, HISTORY_END, {"dag_id": "scale_demo"}, actor="scale-demo")
    decision = promote_candidate(config, store, summary["version"], actor="scale-demo",
                                 run_info={"logical_date": f"{HISTORY_END}T00:00:00+00:00"})
    if not decision.get("promote"):
        raise Failure(f"the first model was not promoted: {decision.get('summary')}")
    return {"version": summary["version"], "files": len(data.files(DAYS[0]))}


def copy_s3_to_local(endpoint: str, bucket: str, prefix: str, dest: Path) -> int:
    """Copy the data and the registry (not the predictions) to a local store root."""
    client = s3_client(endpoint)
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            key = obj["Key"][len(prefix) + 1:]
            if key.startswith("predictions/"):
                continue
            path = dest / key
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(path))
            n += 1
    return n


REFERENCE_CODE = """
import datetime as dt, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags[sys.argv[2]]
for ds in sys.argv[3:]:
    run = dag.test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc))
    print("RUN", ds, run.state, flush=True)
"""


@functools.cache
def signing_env() -> dict[str, str]:
    """The registry signing key of this run, as an Airflow connection every process reads (docs/security.md)."""
    return {"AIRFLOW__MLOPS__SIGNING_CONN_ID": "mlops_signing",
            "AIRFLOW_CONN_MLOPS_SIGNING": json.dumps({"conn_type": "generic", "password": secrets.token_hex(32)})}


def start_reference(stack: Stack, work: Path, local_root: Path) -> tuple[Proc, dict[str, str]]:
    """The same DAG with ``dag.test()`` on the embedded default: SQLite metadata DB, ``file://`` store (a copy of
    the S3 registry, signed with the same key)."""
    home = work / "reference" / "airflow"
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(signing_env())
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR), "AIRFLOW__MLOPS__STORAGE_URI": "file://" + str(local_root),
                "MLOPS_SCALE_CONFIG": str(CONFIG), "OMP_NUM_THREADS": "1"})
    script = work / "reference" / "run.sh"
    script.write_text(f'set -e\n"{BIN}/airflow" db migrate >/dev/null\nexec "{sys.executable}" -c "$REF_CODE" '
                      f'"{DAGS_DIR}" "{DAG_ID}" {" ".join(DAYS)}\n')
    env["REF_CODE"] = REFERENCE_CODE
    return stack.start("reference", ["bash", str(script)], env=env, cwd=work / "reference"), env


def compared_table(store_uri: str, ds: str, endpoint: str | None = None):
    """The prediction partition without ``scored_at``/``run_id``, sorted by the keys, as one chunk."""
    import pyarrow as pa

    from airflow_mlops.config.parser import load_model_config
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    keys = list(load_model_config(CONFIG).keys)
    t = Dataset(ArtifactStore(store_uri), "predictions/churn").read_table(ds)
    t = t.select([c for c in t.column_names if c not in ("scored_at", "run_id")])
    t = t.sort_by([(k, "ascending") for k in keys]).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, t.schema) as w:
        w.write_table(t)
    return t, sink.getvalue().to_pybytes()


def _run_seconds(run: dict[str, Any]) -> float:
    """Duration of a dag run as the scheduler recorded it (``start_date`` -> ``end_date``)."""
    start, end = (dt.datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


# ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=8, help="input files per scored day (mapped tasks per run)")
    p.add_argument("--rows-per-file", type=int, default=100_000, help="rows per input file")
    p.add_argument("--history-rows", type=int, default=3000, help="rows per history day (training)")
    p.add_argument("--concurrency", type=int, default=2, help="task slots per Celery worker")
    p.add_argument("--run-timeout", type=float, default=600, help="seconds to wait for one DAG run")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, AIRFLOW_HOME, reference store)")
    a = p.parse_args(argv)
    if a.files < 2:
        p.error("--files must be >= 2 (the mapped tasks must be able to go to two workers)")

    work = Path(tempfile.mkdtemp(prefix="mlops-scale-"))
    stack = Stack(work)
    stack.pgdir = None
    ok = False
    try:
        step(f"work dir {work} (logs in {stack.logs})")
        bindir, redis = ensure_system_packages()
        ensure_python_packages()
        step(f"starting Postgres ({bindir.parent.name}), redis-server and a moto S3 server on 127.0.0.1")
        db_url = start_postgres(stack, bindir)
        broker = start_redis(stack, redis)
        endpoint = start_moto(stack)
        bucket = "mlops-scale"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        storage_uri = f"s3://{bucket}/mlops"
        step(f"  Postgres {db_url.split('@')[1]}, redis {broker}, S3 {endpoint} bucket {bucket}")

        api_port = free_port()
        password = secrets.token_urlsafe(12)
        pw_file = work / "passwords.json"
        pw_file.write_text(json.dumps({"admin": password}))
        env = airflow_env(work, db_url, broker, endpoint, bucket, api_port, pw_file)
        # several workers (machines, in production): the registry signing key comes from an Airflow connection
        env.update(signing_env())
        (work / "airflow").mkdir()
        os.environ.update({k: env[k] for k in ("AIRFLOW_HOME", "AIRFLOW_CONN_AWS_DEFAULT",
                                               "AIRFLOW__MLOPS__STORAGE_URI",
                                                "AIRFLOW__CORE__LOAD_EXAMPLES", "OMP_NUM_THREADS",
                                                *signing_env())})

        step(f"example data ({a.files} files x {a.rows_per_file} rows for each of {', '.join(DAYS)}) and a "
             f"champion trained on the week ending {HISTORY_END}, in {storage_uri}")
        made = make_data_and_champion(storage_uri, a.files, a.rows_per_file, a.history_rows)
        step(f"  champion: churn v{made['version']}; {made['files']} input files per day")

        local_root = work / "reference" / "mlops"
        n = copy_s3_to_local(endpoint, bucket, "mlops", local_root)
        step(f"reference run (dag.test on SQLite + file://, {n} objects copied from S3) started in the background")
        ref, _ = start_reference(stack, work, local_root)

        step("airflow db migrate (Postgres)")
        run_airflow(env, stack.logs, "db", "migrate")
        step("starting api-server, scheduler, dag-processor and Celery worker1")
        core = [stack.start("api-server", [str(BIN / "airflow"), "api-server"], env=env),
                stack.start("scheduler", [str(BIN / "airflow"), "scheduler"], env=env),
                stack.start("dag-processor", [str(BIN / "airflow"), "dag-processor"], env=env)]
        w1 = start_worker(stack, env, "worker1", a.concurrency)
        api = Api(f"http://127.0.0.1:{api_port}", password)
        wait_for("the API server", api.login, 180, core)
        wait_for(f"DAG {DAG_ID} to be parsed", lambda: api.call("GET", f"/dags/{DAG_ID}"), 180, core)
        api.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})

        step("waiting for the reference run to finish (so it does not share the CPU with the timed runs)")
        wait_for("the reference dag.test runs", lambda: ref.popen.poll() is not None, 600, interval=1)
        ref_out = ref.log.read_text(errors="replace")
        ref_states = [line.split()[1:3] for line in ref_out.splitlines() if line.startswith("RUN ")]
        if ref.popen.returncode != 0 or ref_states != [[d, "success"] for d in DAYS]:
            raise Failure(f"reference dag.test runs failed ({ref.popen.returncode}, {ref_states}); log {ref.log}:\n"
                          f"{tail(ref.log)}")
        step(f"  reference runs: {ref_states}")

        step(f"warm-up run of {DAG_ID} for {HISTORY_END} (1 file) on worker1: first-task costs stay out of the timings")
        warm = trigger_and_wait(api, HISTORY_END, f"scale_warmup_{HISTORY_END}", [*core, w1], a.run_timeout)
        step(f"  success in {warm['wall']:.1f}s")

        results = {}
        step(f"run 1: {DAG_ID} for {DAYS[0]} with worker1 only (concurrency {a.concurrency})")
        results[1] = trigger_and_wait(api, DAYS[0], f"scale_1worker_{DAYS[0]}", [*core, w1], a.run_timeout)
        step(f"  success in {results[1]['wall']:.1f}s")
        step("starting Celery worker2")
        w2 = start_worker(stack, env, "worker2", a.concurrency)
        step(f"run 2: {DAG_ID} for {DAYS[1]} with worker1 + worker2 (concurrency {a.concurrency} each)")
        results[2] = trigger_and_wait(api, DAYS[1], f"scale_2workers_{DAYS[1]}", [*core, w1, w2], a.run_timeout)
        step(f"  success in {results[2]['wall']:.1f}s")

        # (a) which worker ran what
        failures = []
        for n_workers, res in results.items():
            by_host: dict[str, int] = {}
            for ti in res["tis"]:
                if ti["task_id"] == "score":
                    by_host[ti.get("hostname") or "?"] = by_host.get(ti.get("hostname") or "?", 0) + 1
            res["by_host"] = by_host
            step(f"  run with {n_workers} worker(s): mapped score tasks per worker: {by_host}")
        hosts2 = {h.split("@")[0] for h in results[2]["by_host"]}
        if not {"worker1", "worker2"} <= hosts2:
            failures.append(f"the two-worker run did not use both workers: {results[2]['by_host']}")
        if {h.split("@")[0] for h in results[1]["by_host"]} != {"worker1"}:
            failures.append(f"the one-worker run ran tasks elsewhere than worker1: {results[1]['by_host']}")
        if sum(results[2]["by_host"].values()) != a.files:
            failures.append(f"expected {a.files} mapped score tasks, got {results[2]['by_host']}")

        # (b) equality with the embedded default
        for ds in DAYS:
            t_s3, b_s3 = compared_table(storage_uri, ds)
            t_ref, b_ref = compared_table("file://" + str(local_root), ds)
            h_s3, h_ref = hashlib.sha256(b_s3).hexdigest(), hashlib.sha256(b_ref).hexdigest()
            same = b_s3 == b_ref
            step(f"  {ds}: {t_s3.num_rows} rows, columns {t_s3.column_names}; sha256 Celery+S3 {h_s3[:16]} "
                 f"vs dag.test+file {h_ref[:16]}: {'EQUAL' if same else 'DIFFERENT'}")
            if not same:
                failures.append(f"predictions of {ds} differ between the Celery/S3 run and the reference "
                                f"({t_s3.num_rows} vs {t_ref.num_rows} rows; equal as tables: {t_s3.equals(t_ref)})")
            if t_s3.num_rows != a.files * a.rows_per_file:
                failures.append(f"{ds}: {t_s3.num_rows} rows scored, expected {a.files * a.rows_per_file}")

        w_1, w_2 = results[1]["wall"], results[2]["wall"]
        print("\n=== Scale-out on one machine (CeleryExecutor, S3 on moto) ===")
        print(f"  machine: {os.cpu_count()} CPU(s); {a.files} input files x {a.rows_per_file} rows per day; "
              f"concurrency {a.concurrency} per worker")
        for n_workers, res in results.items():
            print(f"  {n_workers} worker(s): wall {res['wall']:6.1f}s from trigger to success (REST API), "
                  f"{_run_seconds(res['run']):6.1f}s start -> end of the dag run; score tasks per worker "
                  f"{res['by_host']}")
        print(f"  speedup (1 worker / 2 workers): {w_1 / w_2:.2f}x")
        print(f"  output equal to the dag.test reference (SQLite + file://): "
              f"{'yes' if not any('differ' in f for f in failures) else 'NO'}")
        print(f"  total time of this script: {time.monotonic() - T0:.0f}s")
        if failures:
            raise Failure("; ".join(failures))
        ok = True
        print("\nOK: both workers ran mapped tasks and the output equals the reference.")
        return 0
    except Failure as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        step("stopping everything started here")
        stack.stop_all()
        if a.keep or not ok:
            print(f"kept {work} (logs: {stack.logs})")
        else:
            shutil.rmtree(work, ignore_errors=True)
        if stack.pgdir is not None:
            shutil.rmtree(stack.pgdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
