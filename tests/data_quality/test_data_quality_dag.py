"""Freshness and volume alerts under real Airflow (``dag.test()`` in a fresh Airflow home): the sensor's
deadline, the operator, the on_failure alert callback and the SMTP provider in the real task runner."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml
from airflow_env import AirflowHome
from alert_servers import make_config
from test_data_quality import day_frame, normal_rows

from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

pytestmark = pytest.mark.e2e

DAG_FILE = '''
import datetime as dt
import os

from airflow.sdk import DAG

from airflow_mlops.config.parser import load_model_config
from airflow_mlops.notifications.mlops import alert_notifier
from airflow_mlops.operators.data_quality import DataQualityMonitorOperator
from airflow_mlops.sensors.data import DataPartitionSensor

CONFIG = os.environ["DQ_CONFIG"]
config = load_model_config(CONFIG)
with DAG("churn_data_quality", schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
         catchup=False, default_args={"retries": 0}) as dag:
    wait = DataPartitionSensor(task_id="wait_for_data", dataset="churn", deadline_hours=6, alert_config_path=CONFIG,
                               poke_interval=1, timeout=60, mode="poke", on_failure_callback=alert_notifier(config))
    wait >> DataQualityMonitorOperator(task_id="data_quality", config_path=CONFIG)
'''


def test_fresh_and_volume_alerts_from_a_real_airflow_run(tmp_path, smtp_server):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "dq_dag.py").write_text(DAG_FILE)
    cfg_path = tmp_path / "churn.yaml"
    cfg_path.write_text(yaml.safe_dump(make_config(alerts={"email": ["data-oncall@example.com"]}).to_dict()))
    af = AirflowHome(tmp_path, configs=tmp_path, extra_env={
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "DQ_CONFIG": str(cfg_path),
        "AIRFLOW_CONN_SMTP_DEFAULT": smtp_server.conn_json()})
    data = Dataset.for_name(ArtifactStore(af.storage_uri), "churn")
    days = [f"2024-02-{d:02d}" for d in range(1, 16)]
    for i, ds in enumerate(days[:14]):
        data.write(ds, day_frame(ds, normal_rows(i), seed=i))
    low, missing = days[13], days[14]
    data.write(low, day_frame(low, 400, seed=99))

    code = textwrap.dedent(f"""
        import datetime as dt
        from airflow.dag_processing.dagbag import DagBag
        dag = DagBag(dag_folder={str(dags)!r}).dags["churn_data_quality"]
        for ds in {[low, missing, missing]!r}:
            run = dag.test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc))
            for ti in run.get_task_instances():
                print("TASK", ds, ti.task_id, ti.state)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=af.env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    out = proc.stdout + proc.stderr
    states = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("TASK ")]
    assert [low, "wait_for_data", "success"] in states and [low, "data_quality", "success"] in states, out[-4000:]
    assert [missing, "wait_for_data", "failed"] in states, out[-4000:]
    # PartitionNotArrived is an AirflowSensorTimeout: the sensor fails without retries
    assert "PartitionNotArrived" in out and f"ds={missing} did not arrive" in out
    # first run: the on_failure callback finds the sensor's record; re-run: the sensor and the callback do
    assert out.count(f"alert churn/freshness/{missing} not sent again") == 3, out[-4000:]
    subjects = sorted(m["subject"] for m in smtp_server.messages)
    # one volume alert, one freshness alert: the sensor's alert, its failure callback and the re-run dedup
    assert len(subjects) == 2, subjects
    assert f"churn · freshness · {missing}" in subjects[0] and f"churn · volume · {low}" in subjects[1]
    assert all(sorted(m["rcpt_tos"]) == ["data-oncall@example.com", "owner@example.com"]
               for m in smtp_server.messages)
