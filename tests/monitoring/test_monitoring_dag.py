"""<model>_monitoring under real Airflow (``dag.test()``): drift + performance over two logical dates,
alerts delivered once per window through a real SMTP server, and the retraining-request cooldown."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml
from airflow_env import REPO, AirflowHome
from perf_helpers import FEATURES, ROWS, day_input, start_smtp

from airflow_mlops.config.parser import load_model_config
from airflow_mlops.demo.data import churn_ground_truth, date_range
from airflow_mlops.monitoring.monitor import read_drift_summary, read_performance_summary, read_retrain_requests
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

pytestmark = pytest.mark.e2e

DAYS = ["2024-01-14", "2024-01-15"]


def test_monitoring_dag_alerts_per_slice_and_drift_cooldown(tmp_path):
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.scoring.batch import score_partition

    inbox, controller, smtp_conn = start_smtp()
    try:
        configs = tmp_path / "configs"
        configs.mkdir()
        raw = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
        raw["data"]["ground_truth_dataset"] = "churn_labels"
        raw["features"] = FEATURES
        raw["validation"] = {"suite": None}
        raw["slices"] = ["segment"]
        raw["monitoring"] = {"min_slice_size": 200, "performance_window_days": 7, "drift_cooldown_days": 7}
        raw["alerts"] = {"email": ["oncall@example.com"], "smtp_conn_id": "smtp_monitoring"}
        (configs / "churn.yaml").write_text(yaml.safe_dump(raw))
        af = AirflowHome(tmp_path, configs=configs, extra_env={"AIRFLOW_CONN_SMTP_MONITORING": smtp_conn})
        store = ArtifactStore(af.storage_uri)
        cfg = load_model_config(configs / "churn.yaml")
        data, truth = Dataset.for_name(store, "churn"), Dataset.for_name(store, "churn_labels")
        for day in date_range("2024-01-01", 7):
            data.write(day, day_input(day))
        version = train_and_register(cfg, store, "2024-01-07")["version"]
        ModelRegistry(store).set_alias("churn", "champion", version, actor="test")
        for day in date_range("2024-01-01", 15):
            if day > "2024-01-07":  # the two monitored days drift strongly
                data.write(day, day_input(day, drift=1.0 if day in DAYS else 0.0))
            score_partition(cfg, store, day, version=version, run_id=f"test__{day}")
            degrade = {"slice_column": "segment", "slice_value": "enterprise"} if day >= "2024-01-08" else {}
            truth.write(day, churn_ground_truth(day, rows=ROWS, drift=1.0 if day in DAYS else 0.0, **degrade))

        code = textwrap.dedent(f"""
            import datetime as dt
            from airflow.dag_processing.dagbag import DagBag
            dag = DagBag(dag_folder={str(REPO / 'dags')!r}).dags["churn_monitoring"]
            for ds in {DAYS!r}:
                run = dag.test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc))
                for ti in run.get_task_instances():
                    print("TASK", ds, ti.task_id, ti.state)
        """)
        proc = subprocess.run([sys.executable, "-c", code], env=af.env, capture_output=True, text=True, timeout=900)
        out = proc.stdout + proc.stderr
        states = {(line.split()[1], line.split()[2]): line.split()[3] for line in proc.stdout.splitlines()
                  if line.startswith("TASK ")}
        for ds in DAYS:
            assert states.get((ds, "drift")) == "success", out[-4000:]
            assert states.get((ds, "performance")) == "success", out[-4000:]

        # performance: the degraded 5 % slice alerts in each window, the global metric does not
        for ds in DAYS:
            perf = read_performance_summary(store, "churn", ds)
            assert perf["metrics"]["roc_auc"] > 0.6
            assert [a["slice"] for a in perf["alerts"]] == ["segment=enterprise"]
            assert store.exists(f"alerts/churn/performance/{perf['window']}__segment=enterprise.json")
        # drift: requested on the first day, held back by the 7-day cooldown on the second
        assert all(read_drift_summary(store, "churn", ds)["dataset_drift"] for ds in DAYS)
        assert [r["ds"] for r in read_retrain_requests(store, "churn")] == ["2024-01-14"]
        assert "cooldown: retraining was requested for 2024-01-14" in out
        subjects = sorted(m["Subject"] for m in inbox.messages)
        perf_mails = [s for s in subjects if "performance" in s]
        assert len(perf_mails) == 2 and all("slice segment=enterprise" in s for s in perf_mails), subjects
        assert sum(1 for s in subjects if "drift · 2024-01-14" in s and "slice" not in s) == 1, subjects

        # re-running a date sends nothing new and records no second request
        before = len(inbox.messages)
        proc = subprocess.run([sys.executable, "-c", code.replace(repr(DAYS), repr(DAYS[:1]))], env=af.env,
                              capture_output=True, text=True, timeout=600)
        assert "TASK 2024-01-14 performance success" in proc.stdout, proc.stderr[-3000:]
        assert len(inbox.messages) == before
        assert [r["ds"] for r in read_retrain_requests(store, "churn")] == ["2024-01-14"]
    finally:
        controller.stop()
