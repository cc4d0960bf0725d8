"""Training runs in a team's MLflow: a real `mlflow server` started by the fixtures; the package's own training
(`train_and_register`) logs each registered version as a run with its trials as child runs; an unreachable
server costs a warning and a pending record, never the registration."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
from churn_model import DS, REPO, tracking_uri
from churn_model import churn_model as _setup

from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.model_registry import ModelRegistry


def test_a_registered_version_is_an_mlflow_run_with_its_trials(mlflow_conn, tmp_path):
    from mlflow import MlflowClient

    from airflow_mlops.registry.lifecycle import train_and_register

    config, store = _setup(tmp_path, search=True)
    summary = train_and_register(config, store, DS, run_info={"dag_id": "churn_training", "run_id": "r1",
                                                              "task_id": "train"})
    meta = ModelRegistry(store).get_metadata(config.name, summary["version"])
    client = MlflowClient(tracking_uri=mlflow_conn.url)
    run = client.get_run(summary["mlflow_run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == config.name and run.info.status == "FINISHED"
    assert run.data.tags["mlops.version"] == str(summary["version"])
    assert run.data.tags["mlops.fingerprint"] == meta["training_data"]["fingerprint"]["content_hash"]
    assert run.data.tags["airflow.dag_id"] == "churn_training" and run.data.tags["airflow.run_id"] == "r1"
    assert run.data.params["estimator.class"] == meta["estimator"]
    assert run.data.params["best.learning_rate"] == str(meta["best_params"]["learning_rate"])
    assert run.data.metrics["holdout.roc_auc"] == pytest.approx(meta["metrics"]["holdout"]["roc_auc"])
    assert run.data.metrics["baseline.roc_auc"] == pytest.approx(0.5)
    assert run.data.metrics["cv.roc_auc.mean"] == pytest.approx(meta["metrics"]["cv"]["roc_auc"]["mean"])
    # each cross-validation fold: metric cv.<name> at step = the fold's index
    history = sorted(client.get_metric_history(run.info.run_id, "cv.roc_auc"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2] == list(range(len(meta["cv_folds"])))
    assert [m.value for m in history] == pytest.approx([f["roc_auc"] for f in meta["cv_folds"]])
    assert run.data.tags["mlops.registry"] == store.uri("registry")
    files = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/evaluation.html", "reports/model_card.md"} <= files
    children = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    trials = meta["search"]["trials"]
    assert len(children) == len(trials) == 3
    by_trial = {int(c.data.tags["mlops.trial"]): c for c in children}
    for trial in trials:
        child = by_trial[trial["trial"]]
        assert child.data.metrics["cv.mean"] == pytest.approx(trial["cv_mean"])
        assert child.data.params["learning_rate"] == str(trial["params"]["learning_rate"])
    # a second version: a second run in the same experiment
    again = train_and_register(config, store, DS)
    assert again["mlflow_run_id"] != summary["mlflow_run_id"]
    runs = client.search_runs([run.info.experiment_id], filter_string=f"tags.`mlops.model` = '{config.name}' and "
                                                                      "tags.`mlops.version` = '2'")
    assert [r.info.run_id for r in runs if "mlflow.parentRunId" not in r.data.tags] == [again["mlflow_run_id"]]
    assert len(runs) == 1 + 3  # its own trials are its children


def test_an_unreachable_server_costs_a_warning_and_a_pending_record(monkeypatch, tmp_path, caplog):
    from airflow_mlops.registry.lifecycle import train_and_register

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", f"http://127.0.0.1:{port}")
    config, store = _setup(tmp_path)
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.tracking.mlflow"):
        summary = train_and_register(config, store, DS)
    assert "mlflow_run_id" not in summary
    assert ModelRegistry(store).list_versions(config.name) == [summary["version"]]
    warnings = [r.getMessage() for r in caplog.records if r.name == "airflow_mlops.tracking.mlflow"]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0] and "pending" in warnings[0]
    pending = store.read_json(f"registry/{config.name}/_mlflow/pending/{summary['version']}.json")
    assert pending["version"] == summary["version"] and pending["reason"]
    assert time.perf_counter() - started < 120


def test_strict_mode_fails_the_task_after_the_version_is_registered(monkeypatch, tmp_path):
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.tracking.mlflow import TrackingError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", f"http://user:s3cr3t-pw@127.0.0.1:{port}")
    monkeypatch.setenv("AIRFLOW__MLOPS__MLFLOW_STRICT", "true")
    config, store = _setup(tmp_path)
    with pytest.raises(TrackingError) as failed:
        train_and_register(config, store, DS)
    assert "s3cr3t-pw" not in str(failed.value) and f"127.0.0.1:{port}" in str(failed.value)
    assert ModelRegistry(store).list_versions(config.name) == [1]  # the registration is kept


def test_without_the_connection_nothing_is_logged(monkeypatch, tmp_path):
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.tracking.mlflow import mlflow_target

    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    assert mlflow_target() is None
    config, store = _setup(tmp_path)
    summary = train_and_register(config, store, DS)
    assert "mlflow_run_id" not in summary and not store.exists(f"registry/{config.name}/_mlflow")


def test_outside_airflow_an_unset_default_connection_costs_no_airflow_import(tmp_path):
    """A plain process (a script, the benchmarks) without AIRFLOW_CONN_MLFLOW_DEFAULT and without the option
    does not import Airflow to find out that the default connection is missing."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__MLOPS__MLFLOW"))}
    code = ("import sys\nfrom airflow_mlops.tracking.mlflow import mlflow_target\n"
            "print(mlflow_target(), 'airflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], env={**env, "AIRFLOW_HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "False"]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**env, "AIRFLOW_HOME": str(tmp_path),
                               "AIRFLOW_CONN_MLFLOW_DEFAULT": "http://127.0.0.1:5999"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "MlflowTarget(conn_id='mlflow_default',"


def test_versions_and_alias_moves_are_mirrored_and_mlflow_loads_what_we_score(mlflow_conn, tmp_path):
    """Each version is an MLflow model version (skops format, tagged with our version); every alias move in our
    registry, rollback included, moves the MLflow alias; ``models:/churn@champion`` predicts what our registry's
    champion predicts."""
    import mlflow
    from mlflow import MlflowClient

    from airflow_mlops.registry.lifecycle import train_and_register

    config, store = _setup(tmp_path)
    registry = ModelRegistry(store)
    v1 = train_and_register(config, store, DS)["version"]
    registry.set_alias(config.name, "champion", v1, reason="first")
    client = MlflowClient(tracking_uri=mlflow_conn.url)

    def aliases() -> dict[str, str]:
        model = client.get_registered_model(config.name)
        tags = {mv.version: mv.tags["mlops.version"] for mv in client.search_model_versions(f"name = '{config.name}'")}
        return {alias: tags[str(v)] for alias, v in (model.aliases or {}).items()}

    assert aliases() == {"champion": str(v1)}
    mv = client.get_model_version_by_alias(config.name, "champion")
    assert mv.tags["mlops.version"] == str(v1) and mv.source.startswith("runs:/")
    model_files = {a.path for a in client.list_artifacts(mv.run_id, "model")}
    assert "model/model.skops" in model_files and not any(p.endswith((".pkl", ".pickle")) for p in model_files)
    # MLflow's model file is byte for byte the one our registry signed; MLmodel has the signature and example
    import yaml

    local = Path(client.download_artifacts(mv.run_id, "model", str(tmp_path / "mlflow-model")))
    assert (local / "model.skops").read_bytes() == registry.read_artifact(config.name, v1, "model.skops")
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert mlmodel["signature"]["inputs"] and mlmodel["saved_input_example_info"]["type"] == "dataframe"
    assert "scikit-learn==" in (local / "requirements.txt").read_text()

    frame = churn_day("2024-01-08", rows=200, seed=3)[list(config.features)]
    ours, _ = registry.load_model(config.name, version=v1)
    with tracking_uri(mlflow_conn.url):
        loaded = mlflow.pyfunc.load_model(f"models:/{config.name}@champion")
        assert list(loaded.predict(frame)) == list(ours.predict(frame))

    v2 = train_and_register(config, store, DS)["version"]
    registry.set_alias(config.name, "previous_champion", v1, reason="keep")
    registry.set_alias(config.name, "champion", v2, reason="better")
    assert aliases() == {"champion": str(v2), "previous_champion": str(v1)}
    registry.set_alias(config.name, "champion", v1, reason="roll back")
    registry.delete_alias(config.name, "previous_champion", reason="done")
    assert aliases() == {"champion": str(v1)}


def test_an_alias_move_while_mlflow_is_down_is_kept_and_caught_up(mlflow_conn, monkeypatch, tmp_path):
    from mlflow import MlflowClient

    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.tracking.mlflow import mirror_aliases

    config, store = _setup(tmp_path)
    registry = ModelRegistry(store)
    version = train_and_register(config, store, DS)["version"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", f"http://127.0.0.1:{dead}")
    registry.set_alias(config.name, "challenger", version, reason="while MLflow is down")
    assert registry.get_aliases(config.name)["challenger"] == version
    assert store.read_json(f"registry/{config.name}/_mlflow/pending/aliases.json")["aliases"]["challenger"] == version
    # the next training run that reaches MLflow catches the missed alias move up, and clears the record
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", mlflow_conn.url)
    later = train_and_register(config, store, DS)
    assert later["mlflow_run_id"] and not store.list(f"registry/{config.name}/_mlflow/pending/")
    client = MlflowClient(tracking_uri=mlflow_conn.url)
    mirrored = client.get_model_version_by_alias(config.name, "challenger")
    assert mirrored.tags["mlops.version"] == str(version)
    assert mirror_aliases(config.name, registry.get_aliases(config.name), store.uri("registry")) == \
        {"set": {}, "deleted": [], "missing": {}}  # nothing left to do
