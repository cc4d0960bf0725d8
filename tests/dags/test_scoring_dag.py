"""<model>_batch_scoring over 7 logical dates with a promotion effective on day 4 (real Airflow runs)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from airflow_env import REPO, AirflowHome

from airflow_mlops.config.parser import load_model_config
from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.registry.lifecycle import train_and_register
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

pytestmark = pytest.mark.e2e


def test_seven_days_scored_with_the_champion_of_each_day(tmp_path):
    af = AirflowHome(tmp_path)
    store = ArtifactStore(af.storage_uri)
    data = Dataset.for_name(store, "churn")
    for day in date_range("2023-12-27", 13):  # a week of history, then the 7 days to score
        data.write(day, churn_day(day, rows=600))
    days = date_range("2024-01-02", 7)
    cfg = load_model_config(af.configs / "churn.yaml")
    reg = ModelRegistry(store)
    # promotions as PromoteModelOperator records them: effective from the promoting run's logical date
    v1 = train_and_register(cfg, store, "2024-01-01", {"dag_id": "churn_training"})["version"]
    reg.set_alias("churn", "champion", v1, actor="t", effective_at="2024-01-01T00:00:00+00:00")
    v2 = train_and_register(cfg, store, days[3], {"dag_id": "churn_training"})["version"]
    reg.set_alias("churn", "champion", v2, actor="t", effective_at=f"{days[3]}T00:00:00+00:00")
    # the latest champion is v2, yet each past day must be scored by the model of that day
    code = textwrap.dedent(f"""
        import datetime as dt
        from airflow.dag_processing.dagbag import DagBag
        dag = DagBag(dag_folder={str(REPO / 'dags')!r}).dags["churn_batch_scoring"]
        for ds in {days!r}:
            run = dag.test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc))
            print("RUN", ds, run.state)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=af.env, capture_output=True, text=True, timeout=600)
    states = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RUN ")]
    assert states == [[d, "success"] for d in days], proc.stdout[-3000:] + proc.stderr[-3000:]
    predictions = Dataset(store, "predictions/churn")
    for i, day in enumerate(days):
        t = predictions.read_table(day).to_pandas()
        assert len(t) == 600 and t["customer_id"].is_unique
        assert set(t["model_version"]) == {v1 if i < 3 else v2}
        assert set(t["logical_date"]) == {day} and set(t["scored_by"]) == {"champion"}
        assert t["proba_1"].between(0, 1).all()
    # re-running a day replaces its partition: still one complete partition, no duplicate keys
    proc = subprocess.run([sys.executable, "-c", code.replace(repr(days), repr(days[:1]))], env=af.env,
                          capture_output=True, text=True, timeout=300)
    assert "RUN 2024-01-02 success" in proc.stdout, proc.stderr[-2000:]
    t = predictions.read_table(days[0]).to_pandas()
    assert len(t) == 600 and t["customer_id"].is_unique
