"""No shared local disk: every task of the pipeline runs in its own process, in a fresh empty working
directory with its own TMPDIR, like task pods or Celery workers on different machines; the only
thing the tasks share is the artifact store (a moto S3 server) and Airflow's metadata DB (XComs).

Pipeline: ``churn_training`` (factory DAG: the model is trained in one process and promoted in
another) -> ``churn_mapped_scoring`` (plan -> score mapped over the input files -> merge;
``scripts/scale_dags/mlops_mapped_scoring.py``: parts written by concurrent processes, merged by a
third). Each task is one ``airflow tasks test <dag> <task> <run_id> [--map-index i]`` subprocess, in
dependency order (the mapped instances concurrently), inside a run created up front with
``airflow dags trigger``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from airflow_env import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.s3]

BIN = Path(sys.executable).parent
HISTORY_END = "2024-01-07"
DS = "2024-01-08"
FILES = 3
ROWS_PER_FILE = 700

# prints, per DAG, its tasks in dependency order and whether each is mapped
DAG_ORDER = textwrap.dedent("""
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    out = {}
    for dag_id in sys.argv[2:]:
        dag = bag.dags[dag_id]
        order, done = [], set()
        while len(order) < len(dag.task_dict):
            ready = sorted(t for t, task in dag.task_dict.items()
                           if t not in done and set(task.upstream_task_ids) <= done)
            assert ready, f"cycle in {dag_id}"
            for t in ready:
                order.append([t, type(dag.task_dict[t]).__name__ == "MappedOperator"])
                done.add(t)
        out[dag_id] = order
    print("ORDER " + json.dumps(out))
""")


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_pipeline_runs_with_a_fresh_cwd_and_tmpdir_per_task(tmp_path, moto_server, s3_root):
    from airflow_mlops.demo.data import churn_day, date_range
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    # DAGs: the factory's churn DAGs and the mapped scoring DAG, with the churn config
    dags = tmp_path / "dags"
    shutil.copytree(REPO / "dags" / "configs", dags / "configs")
    shutil.copy(REPO / "dags" / "churn.py", dags / "churn.py")
    shutil.copy(REPO / "scripts" / "scale_dags" / "mlops_mapped_scoring.py", dags / "mlops_mapped_scoring.py")
    home = tmp_path / "airflow"
    home.mkdir()
    # the signing key comes from an Airflow connection (a secrets backend in production), not from a file
    import secrets

    from airflow_mlops.trust.signing import Signer

    signing_key = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW__MLOPS__SIGNING_CONN_ID": "mlops_signing",
        "AIRFLOW_CONN_MLOPS_SIGNING": json.dumps({"conn_type": "generic", "password": signing_key}),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__MLOPS__STORAGE_URI": s3_root,
        "AIRFLOW_CONN_AWS_DEFAULT": moto_server.conn_json(),
        "MLOPS_CONFIGS_DIR": str(dags / "configs"),
        "MLOPS_SCALE_CONFIG": str(dags / "configs" / "churn.yaml"),
        "OMP_NUM_THREADS": "1",
    })
    cwds = tmp_path / "cwd"
    tmps = tmp_path / "tmp"
    runs: list[tuple[str, Path, Path]] = []

    def start(*args: str, label: str) -> subprocess.Popen:
        """One Airflow CLI process in a fresh empty cwd with its own TMPDIR."""
        cwd, tmp = cwds / label, tmps / label
        cwd.mkdir(parents=True)
        tmp.mkdir(parents=True)
        runs.append((label, cwd, tmp))
        return subprocess.Popen([str(BIN / "airflow"), *args], env={**env, "TMPDIR": str(tmp)}, cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait(*procs: subprocess.Popen) -> None:
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{' '.join(proc.args[1:])} failed ({proc.returncode}):\n{out[-5000:]}"

    # data and storage: on S3 only
    store = ArtifactStore(s3_root)
    data = Dataset.for_name(store, "churn")
    for day in date_range("2024-01-01", 7):
        data.write(day, churn_day(day, rows=1500))
    df = churn_day(DS, rows=FILES * ROWS_PER_FILE)
    data.write(DS, [df.iloc[i * ROWS_PER_FILE:(i + 1) * ROWS_PER_FILE] for i in range(FILES)])

    wait(start("db", "migrate", label="db-migrate"))
    wait(start("dags", "reserialize", label="reserialize"))
    dag_ids = ("churn_training", "churn_mapped_scoring")
    proc = subprocess.run([sys.executable, "-c", DAG_ORDER, str(dags), *dag_ids], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    order = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("ORDER "))[6:])
    assert order["churn_mapped_scoring"] == [["plan", False], ["score", True], ["merge", False]]

    for dag_id, ds in zip(dag_ids, (HISTORY_END, DS), strict=True):
        run_id = f"no_shared_disk_{ds}"
        wait(start("dags", "trigger", dag_id, "--logical-date", f"{ds}T00:00:00+00:00", "--run-id", run_id,
                   label=f"trigger-{dag_id}"))
        for task_id, mapped in order[dag_id]:
            if mapped:  # the mapped instances at the same time, as on several workers
                wait(*[start("tasks", "test", dag_id, task_id, run_id, "--map-index", str(i),
                             label=f"{dag_id}.{task_id}.{i}") for i in range(FILES)])
            else:
                wait(start("tasks", "test", dag_id, task_id, run_id, label=f"{dag_id}.{task_id}"))

    # every task instance succeeded (the metadata DB is the only other thing the tasks share)
    with contextlib.closing(sqlite3.connect(home / "airflow.db")) as db:
        rows = db.execute("SELECT dag_id, task_id, map_index, state FROM task_instance").fetchall()
    states = {f"{d}.{t}[{i}]": st for d, t, i, st in rows if not (t == "score" and i == -1)}
    expected = {f"{d}.{t}[{i}]" for d in dag_ids for t, mapped in order[d] for i in (range(FILES) if mapped else [-1])}
    assert set(states) == expected and set(states.values()) == {"success"}, states

    # the pipeline completed: registry, champion, promotion decision, merged predictions, all in S3
    registry = ModelRegistry(store, signer=Signer(signing_key))
    assert registry.list_versions("churn") == [1]
    assert registry.verify_version("churn", 1)["status"] == "verified"
    assert registry.get_aliases("churn").get("champion") == 1
    predictions = Dataset(store, "predictions/churn")
    t = predictions.read_table(DS).to_pandas()
    assert len(t) == FILES * ROWS_PER_FILE and t["customer_id"].is_unique
    assert set(t["model_version"]) == {1} and set(t["logical_date"]) == {DS}
    manifest = store.read_manifest(predictions.key(DS))
    assert len(manifest["merged_from"]) == FILES and len(manifest["input_files"]) == FILES
    keys = store.list("")
    assert not [k for k in keys if "/_parts/" in k], "the merge left parts behind"
    assert "registry/churn/versions/1/model.skops" in keys
    assert any(k.startswith("registry/churn/versions/1/reports/promotion") for k in keys), \
        [k for k in keys if k.startswith("registry/")]

    # ... and nothing anywhere else: every task's cwd is still empty, no default file:// store
    written = {label: _tree(cwd) for label, cwd, _ in runs if _tree(cwd)}
    assert not written, f"tasks wrote into their working directory: {written}"
    assert not (home / "mlops").exists(), "something used the default file:// store under AIRFLOW_HOME"
    assert not (home / "mlops-signing.key").exists(), "a task used a key file instead of the connection"
    leftovers = {label: _tree(tmp) for label, _, tmp in runs if _tree(tmp)}
    assert not leftovers, f"temp files left behind in TMPDIR: {leftovers}"
