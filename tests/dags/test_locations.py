"""One resolver for every location: with ``data.uri`` away from the store root, every task and sensor of
every ready-made Dag reads it, and nothing is looked for under ``<root>/data/``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import yaml
from airflow_env import REPO, AirflowHome

from airflow_mlops.config.locations import Locations
from airflow_mlops.config.parser import load_model_config
from airflow_mlops.dag_factory import build_dags_for_config
from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.sensors.data import DataPartitionSensor
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

DAY = "2024-01-02"


def _config(tmp_path, **data):
    cfg = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
    cfg["data"].pop("example_rows", None)  # real data: nothing seeded under the store root
    cfg["data"].update(data)
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    (configs / "churn.yaml").write_text(yaml.safe_dump(cfg))
    return configs / "churn.yaml"


def test_locations_resolve_every_role(tmp_path):
    elsewhere = "file://" + str(tmp_path / "elsewhere" / "churn")
    store = ArtifactStore("file://" + str(tmp_path / "store"))
    where = Locations(load_model_config(_config(tmp_path, uri=elsewhere)), store)
    assert where.input.uri(DAY) == where.scoring.uri(DAY) == f"{elsewhere}/ds={DAY}"
    assert where.ground_truth is None
    assert where.predictions().uri() == store.uri("predictions/churn")
    assert where.monitoring(DAY) == f"monitoring/churn/ds={DAY}"
    named = Locations(load_model_config(_config(tmp_path, uri=elsewhere, scoring_dataset="churn_live",
                                                ground_truth_dataset="churn_labels")), store)
    assert named.scoring.uri() == store.uri("data/churn_live")
    assert named.ground_truth.uri() == store.uri("data/churn_labels")
    assert named.dataset("input").uri() == elsewhere
    live, labels = "file://" + str(tmp_path / "live"), "s3://labels-bucket/churn_labels"
    uris = Locations(load_model_config(_config(tmp_path, uri=elsewhere, scoring_dataset=live + "/",
                                               ground_truth_dataset=labels)), store)
    assert uris.scoring.uri(DAY) == f"{live}/ds={DAY}" and uris.ground_truth.uri(DAY) == f"{labels}/ds={DAY}"
    from airflow_mlops.config.model import ConfigError

    with pytest.raises(ConfigError, match="data.scoring_dataset: must be a dataset name or a file:// or s3:// URI"):
        load_model_config(_config(tmp_path, scoring_dataset="http://example.com/x"))


def test_every_sensor_and_asset_of_the_ready_made_dags_follows_data_uri(tmp_path):
    elsewhere = "file://" + str(tmp_path / "elsewhere" / "churn")
    root = "file://" + str(tmp_path / "store")
    dags = build_dags_for_config(str(_config(tmp_path, uri=elsewhere)), storage_uri=root)
    assert sorted(dags) == ["churn_batch_scoring", "churn_monitoring", "churn_training"]
    seen = {}
    for dag in dags.values():
        for task in dag.tasks:
            if isinstance(task, DataPartitionSensor):
                seen[f"{dag.dag_id}.{task.task_id}"] = task._dataset().uri(DAY)
            for inlet in task.inlets:
                if getattr(inlet, "uri", "").startswith("file://"):
                    assert not inlet.uri.startswith(f"{root}/data"), (dag.dag_id, task.task_id, inlet.uri)
    assert seen == {
        "churn_training.wait_for_data": f"{elsewhere}/ds={DAY}",
        "churn_batch_scoring.wait_for_data": f"{elsewhere}/ds={DAY}",
        "churn_monitoring.wait_for_data": f"{elsewhere}/ds={DAY}",
        "churn_monitoring.wait_for_predictions": f"{root}/predictions/churn/ds={DAY}",
    }


@pytest.mark.e2e
def test_training_scoring_and_monitoring_run_on_data_outside_the_store_root(tmp_path):
    """Every data location moved away from the store root: training input (data.uri), the scored input
    (data.scoring_dataset as a URI) and the late labels (data.ground_truth_dataset as a URI)."""
    elsewhere, live, labels = (tmp_path / "elsewhere" / n for n in ("churn", "churn_live", "churn_labels"))
    configs = _config(tmp_path, uri="file://" + str(elsewhere), scoring_dataset="file://" + str(live),
                      ground_truth_dataset="file://" + str(labels)).parent
    af = AirflowHome(tmp_path, configs=configs)
    data = Dataset(ArtifactStore("file://" + str(elsewhere)), "")
    for day in date_range("2023-12-31", 3):
        data.write(day, churn_day(day, rows=400))
    day = churn_day(DAY, rows=400)
    Dataset(ArtifactStore("file://" + str(live)), "").write(DAY, day.drop(columns=["churned"]))
    Dataset(ArtifactStore("file://" + str(labels)), "").write(DAY, day[["customer_id", "churned"]])
    code = textwrap.dedent(f"""
        import datetime as dt
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(REPO / 'dags' / 'churn.py')!r})
        assert not bag.import_errors, bag.import_errors
        when = dt.datetime.fromisoformat({DAY!r}).replace(tzinfo=dt.timezone.utc)
        for dag_id in ("churn_training", "churn_batch_scoring", "churn_monitoring"):
            run = bag.dags[dag_id].test(logical_date=when)
            states = {{ti.task_id: ti.state for ti in run.get_task_instances()}}
            print("RUN", dag_id, run.state, sorted(states.items()))
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=af.env, capture_output=True, text=True, timeout=900)
    runs = {line.split()[1]: line.split()[2] for line in proc.stdout.splitlines() if line.startswith("RUN ")}
    assert runs == {"churn_training": "success", "churn_batch_scoring": "success", "churn_monitoring": "success"}, \
        proc.stdout[-3000:] + proc.stderr[-5000:]
    store = ArtifactStore(af.storage_uri)
    assert not (af.home / "mlops" / "data").exists()  # nothing was looked for or written under <root>/data
    assert Dataset(store, "predictions/churn").read(DAY).shape[0] == 400
    drift = json.loads((af.home / "mlops" / "monitoring" / "churn" / f"ds={DAY}" / "drift.json").read_text())
    assert drift["input_uri"] == f"file://{live}/ds={DAY}"
    assert "('performance', 'success')" in proc.stdout, proc.stdout[-3000:]
