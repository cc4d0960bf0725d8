"""The catch-up and the other direction, against real `mlflow server`s:

* a server stopped during training and promotion: both succeed, the missed writes are recorded as pending, and
  ``python -m airflow_mlops.cli mlflow-sync`` repairs MLflow (runs, model versions, the gate's decisions,
  aliases) and changes nothing on a second run;
* a model logged to MLflow outside our Dags enters through the smoke test and the promotion gate and is scored
  by the batch scoring Dag; unsafe formats are refused before anything is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from churn_model import DS, REPO, churn_model, tracking_uri

from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract", "region"]


def _cli(store: ArtifactStore, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow_mlops.cli", "--storage-uri", store.root, *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600, cwd=REPO)


def _mlflow_aliases(client: Any, model: str) -> dict[str, int]:
    """MLflow's aliases of ``model`` as our registry's versions (through the ``mlops.version`` tag)."""
    ours = {mv.version: int(mv.tags["mlops.version"]) for mv in client.search_model_versions(f"name = '{model}'")}
    return {alias: ours[str(v)] for alias, v in (client.get_registered_model(model).aliases or {}).items()}


def test_a_server_stopped_during_training_is_caught_up_by_mlflow_sync(tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from airflow_mlops.demo.mlflow_server import MlflowServer, server_venv
    from airflow_mlops.registry.lifecycle import promote_candidate, train_and_register

    server = MlflowServer(server_venv(), tmp_path / "mlflow")  # a server of its own: this test stops it
    server.start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", server.url)
        config, store = churn_model(tmp_path)
        registry = ModelRegistry(store)
        v1 = train_and_register(config, store, DS)["version"]
        assert promote_candidate(config, store, v1)["alias"] == "champion"
        client = MlflowClient(tracking_uri=server.url)
        assert _mlflow_aliases(client, config.name) == {"champion": v1}

        server.stop()  # MLflow goes away: training and the gate go on
        v2 = train_and_register(config, store, "2024-01-06")["version"]
        decision = promote_candidate(config, store, v2)
        assert registry.list_versions(config.name) == [v1, v2]
        pending_dir = f"registry/{config.name}/_mlflow/pending/"
        # (a slow server may also have missed v1's decision tag: its 5 s timeout under a loaded machine)
        missed = {k.rsplit("/", 1)[-1] for k in store.list(pending_dir)}
        assert {f"{v2}.json", f"decision-{v2}.json", "aliases.json"} <= missed

        server.start()  # back, same port and database
        proc = _cli(store, "mlflow-sync", config.name, env={"AIRFLOW_CONN_MLFLOW_DEFAULT": server.url})
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout)
        ours = registry.get_aliases(config.name)
        assert report["runs_logged"] == [v2] and report["model_versions_registered"] == []
        assert v2 in report["decisions_tagged"]
        assert report["aliases_set"] == {a: v for a, v in ours.items() if (a, v) != ("champion", v1)}
        assert sorted(report["pending_cleared"]) == sorted(m.removesuffix(".json") for m in missed)
        assert report["changed"] is True and store.list(pending_dir) == []
        assert _mlflow_aliases(client, config.name) == ours
        run = client.search_runs([client.get_experiment_by_name(config.name).experiment_id],
                                 filter_string=f"tags.`mlops.version` = '{v2}' and tags.`mlops.registry` = "
                                               f"'{store.uri('registry')}'")
        parents = [r for r in run if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        tags = parents[0].data.tags
        assert tags["mlops.gate_decision"] == ("promoted" if decision["promote"] else "challenger")
        assert tags["mlops.gate_champion"] == str(v1)
        assert parents[0].data.metrics["holdout.roc_auc"] == pytest.approx(
            registry.get_metadata(config.name, v2)["metrics"]["holdout"]["roc_auc"])

        again = _cli(store, "mlflow-sync", config.name, env={"AIRFLOW_CONN_MLFLOW_DEFAULT": server.url})
        assert again.returncode == 0, again.stderr[-3000:]
        second = json.loads(again.stdout)
        assert second["changed"] is False and second["runs_logged"] == [] and second["pending_cleared"] == []

        # MLflow's champion predicts what ours predicts
        champion = registry.get_aliases(config.name)["champion"]
        frame = churn_day("2024-01-08", rows=100, seed=5)[FEATURES]
        model, _ = registry.load_model(config.name, version=champion)
        with tracking_uri(server.url):
            loaded = mlflow.pyfunc.load_model(f"models:/{config.name}@champion")
            assert list(loaded.predict(frame)) == list(model.predict(frame))

        server.stop()  # the sync itself against a server that is down: exit 5, nothing of ours changed
        down = _cli(store, "mlflow-sync", config.name, env={"AIRFLOW_CONN_MLFLOW_DEFAULT": server.url})
        assert down.returncode == 5 and "MLflow" in down.stderr
        assert registry.get_aliases(config.name) == ours
    finally:
        server.stop()


def _notebook_pipeline(days: list[str]) -> tuple[Any, Any]:
    """What a team trains in a notebook: its own scikit-learn pipeline on the same data."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df = pd.concat([churn_day(d, rows=600) for d in days], ignore_index=True)
    pipe = make_pipeline(ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), FEATURES[:4]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), FEATURES[4:])]), LogisticRegression(max_iter=500))
    return pipe.fit(df[FEATURES], df["churned"]), df


def test_a_model_logged_to_mlflow_elsewhere_enters_through_the_gate_and_is_scored(mlflow_conn, tmp_path):
    import mlflow
    import mlflow.sklearn
    from airflow_env import REPO as _REPO
    from airflow_env import AirflowHome

    dags = tmp_path / "dags"  # the model's ready-made Dags and the team's registration Dag
    dags.mkdir()
    (dags / "churn.py").write_text((_REPO / "dags" / "churn.py").read_text())
    af = AirflowHome(tmp_path, extra_env={"AIRFLOW_CONN_MLFLOW_DEFAULT": mlflow_conn.url,
                                          "AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    name = f"churn_ext_{uuid.uuid4().hex[:6]}"
    raw = yaml.safe_load((af.configs / "churn.yaml").read_text())
    raw["name"] = name
    raw["data"].pop("example_rows", None)
    (af.configs / "churn.yaml").write_text(yaml.safe_dump(raw))
    store = ArtifactStore(af.storage_uri)
    data = Dataset.for_name(store, "churn")
    for day in date_range("2024-01-01", 8):
        data.write(day, churn_day(day, rows=600))
    pipe, _ = _notebook_pipeline(date_range("2023-12-20", 5))
    notebook = f"notebook_{uuid.uuid4().hex[:6]}"
    with tracking_uri(mlflow_conn.url):
        with mlflow.start_run() as run:
            mlflow.sklearn.log_model(pipe, name="model", serialization_format="skops",
                                     skops_trusted_types=["numpy.dtype"], registered_model_name=notebook)
    source = f"models:/{notebook}/1"

    # the team's Dag: RegisterExternalModelOperator >> PromoteModelOperator, then the batch scoring Dag
    dag_file = dags / "register_notebook_model.py"
    dag_file.write_text(
        "from airflow.sdk import DAG\n"
        "from airflow_mlops.operators import PromoteModelOperator, RegisterExternalModelOperator\n"
        f"CONFIG = {str(af.configs / 'churn.yaml')!r}\n"
        f"with DAG('register_notebook_model', schedule=None, params={{'source': {source!r}}}):\n"
        "    RegisterExternalModelOperator(task_id='register', config_path=CONFIG,\n"
        "                                  source='{{ params.source }}') >> \\\n"
        "        PromoteModelOperator(task_id='promote', config_path=CONFIG, candidate_task_id='register')\n")
    states = af.dags_test_in_one_process([("register_notebook_model", DS), (f"{name}_batch_scoring", "2024-01-08")])
    assert states == ["success", "success"], af.last_output[-4000:]

    registry = ModelRegistry(store)
    [version] = registry.list_versions(name)
    meta = registry.get_metadata(name, version)
    assert meta["origin"] == {"kind": "mlflow", "uri": source, "tracking_uri": mlflow_conn.url,
                              "run_id": run.info.run_id, "registered_model": notebook, "model_version": 1,
                              "flavor": "sklearn", "format": "skops"}
    assert meta["estimator"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert meta["metrics"]["holdout"]["roc_auc"] > meta["metrics"]["baseline"]["roc_auc"] == pytest.approx(0.5)
    assert meta["profile"]["rows_checked"] > 0  # the smoke test ran in a fresh process
    assert meta["dag_id"] == "register_notebook_model"
    registered = [e for e in registry.audit_log(name) if e["action"] == "register"]
    assert source in registered[-1]["reason"]
    assert registry.get_aliases(name) == {"champion": version}  # the gate promoted it (no champion before)
    card = registry.read_artifact(name, version, "reports/model_card.md", verify=False).decode()
    assert "Trained elsewhere" in card and source in card and run.info.run_id in card
    decision = registry.read_artifact(name, version, "reports/promotion.json", verify=False)
    assert json.loads(decision)["promote"] is True
    # mirrored like our own versions: MLflow's registered model <name> has it as champion
    from mlflow import MlflowClient

    assert _mlflow_aliases(MlflowClient(tracking_uri=mlflow_conn.url), name) == {"champion": version}

    scored = Dataset(store, f"predictions/{name}").read_table("2024-01-08").to_pandas()
    day = data.read("2024-01-08")
    assert len(scored) == len(day) == 600 and set(scored["model_version"]) == {version}
    expected = dict(zip(day["customer_id"], pipe.predict_proba(day[FEATURES])[:, 1]))
    assert scored["proba_1"].to_numpy() == pytest.approx([expected[k] for k in scored["customer_id"]], abs=1e-9)


def test_unsafe_or_unknown_models_are_refused_before_anything_is_written(mlflow_conn, tmp_path):
    import mlflow
    import mlflow.sklearn
    import skops.io as sio

    from airflow_mlops.registry.errors import UntrustedModelError
    from airflow_mlops.registry.external import ExternalModelError, register_external

    config, store = churn_model(tmp_path)
    pipe, _ = _notebook_pipeline(date_range("2023-12-20", 2))
    with tracking_uri(mlflow_conn.url):
        with mlflow.start_run():
            pickled = mlflow.sklearn.log_model(pipe, name="model", serialization_format="cloudpickle")
    with pytest.raises(ExternalModelError, match="cloudpickle.*serialization_format='skops'"):
        register_external(config, store, f"runs:/{pickled.run_id}/model", DS)
    # a skops file naming a type the config does not trust
    from sklearn.preprocessing import FunctionTransformer

    odd = Path(tmp_path / "odd.skops")
    odd.write_bytes(sio.dumps(FunctionTransformer(os.getcwd)))
    with pytest.raises(UntrustedModelError):
        register_external(config, store, str(odd), DS)
    with pytest.raises(ExternalModelError, match="models:/<name>/<version>"):
        register_external(config, store, "s3://bucket/model.pkl", DS)
    assert not store.exists(f"registry/{config.name}")


def test_an_xgboost_model_in_its_own_format_enters(mlflow_conn, tmp_path):
    """The xgboost flavor: the library's own file read into an XGBClassifier (never a class the file names)."""
    import mlflow
    import mlflow.xgboost
    from xgboost import XGBClassifier

    from airflow_mlops.registry.external import register_external

    numeric = FEATURES[:4]
    config, store = churn_model(tmp_path, rows=600, features=numeric)
    _, df = _notebook_pipeline(date_range("2023-12-20", 3))
    model = XGBClassifier(n_estimators=30, max_depth=3).fit(df[numeric], df["churned"])
    with tracking_uri(mlflow_conn.url):
        with mlflow.start_run():
            info = mlflow.xgboost.log_model(model, name="model", model_format="ubj")
    summary = register_external(config, store, f"runs:/{info.run_id}/model", DS)
    registry = ModelRegistry(store)
    meta = registry.get_metadata(config.name, summary["version"])
    assert meta["origin"]["flavor"] == "xgboost" and meta["origin"]["format"] == "ubj"
    assert meta["estimator"] == "xgboost.sklearn.XGBClassifier"
    loaded, _ = registry.load_model(config.name, version=summary["version"])
    day = churn_day("2024-01-09", rows=200, seed=11)
    assert loaded.predict_proba(day[numeric]) == pytest.approx(model.predict_proba(day[numeric]))
