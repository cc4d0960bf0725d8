"""One DAG file per model: a broken config is an import error of its own file only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from airflow_env import REPO

from airflow_mlops.config.model import ConfigError
from airflow_mlops.dag_factory import config_path_for, write_dag_file

PARSE = textwrap.dedent("""
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({"dags": sorted(bag.dag_ids), "errors": {k: str(v) for k, v in bag.import_errors.items()}}))
""")


def _parse(dags_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__MLOPS__STORAGE_URI": "file://" + str(tmp_path / "store")})
    proc = subprocess.run([sys.executable, "-c", PARSE, str(dags_dir)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout + proc.stderr


def _dags_folder(tmp_path, configs: dict[str, dict]):
    dags = tmp_path / "dags"
    (dags / "configs").mkdir(parents=True)
    for name, cfg in configs.items():
        path = dags / "configs" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        write_dag_file(str(path), str(dags))
    return dags


def _churn():
    return yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())


def test_broken_config_is_an_import_error_of_its_own_file_only(tmp_path):
    good = _churn()
    broken = _churn()
    broken["name"] = "fraud"
    # a module that does not exist is found while parsing (without importing anything); a missing class in an
    # existing module is reported by the first task that loads the config (parsing imports no scikit-learn)
    broken["estimator"] = {"class": "sklearn.no_such_module.NoSuchForest"}
    dags = _dags_folder(tmp_path, {"churn": good, "fraud": broken})
    out, _ = _parse(dags, tmp_path)
    assert out["dags"] == ["churn_batch_scoring", "churn_monitoring", "churn_training"]
    assert list(out["errors"]) == [str(dags / "fraud.py")]
    message = out["errors"][str(dags / "fraud.py")]
    assert "fraud.yaml" in message and "estimator.class" in message and "NoSuchForest" in message


def test_two_valid_configs_give_two_sets_of_dags(tmp_path):
    other = _churn()
    other["name"] = "churn_eu"
    dags = _dags_folder(tmp_path, {"churn": _churn(), "churn_eu": other})
    out, _ = _parse(dags, tmp_path)
    assert out["errors"] == {}
    assert {d.rsplit("_", 1)[0] for d in out["dags"]} >= {"churn", "churn_eu", "churn_batch", "churn_eu_batch"}
    assert len(out["dags"]) == 6


def test_config_without_dag_file_is_reported(tmp_path):
    dags = _dags_folder(tmp_path, {"churn": _churn()})
    (dags / "configs" / "orphan.yaml").write_text(yaml.safe_dump({**_churn(), "name": "orphan"}))
    out, logs = _parse(dags, tmp_path)
    assert out["errors"] == {}
    assert len(out["dags"]) == 3
    assert "orphan.yaml has no DAG file orphan.py" in logs, logs[-2000:]


def test_dag_file_without_config_names_what_is_missing(tmp_path):
    dags = _dags_folder(tmp_path, {"churn": _churn()})
    (dags / "configs" / "churn.yaml").rename(dags / "configs" / "renamed.yaml")
    try:
        config_path_for(str(dags / "churn.py"))
    except ConfigError as exc:
        assert "no model config churn.yaml" in str(exc) and "churn.py" in str(exc)
    else:
        raise AssertionError("expected a ConfigError")


def test_write_dag_file_is_idempotent_and_never_overwrites(tmp_path):
    dags = _dags_folder(tmp_path, {"churn": _churn()})
    cfg = str(dags / "configs" / "churn.yaml")
    assert write_dag_file(cfg, str(dags)) == str(dags / "churn.py")
    (dags / "churn.py").write_text("# edited by hand\n")
    try:
        write_dag_file(cfg, str(dags))
    except FileExistsError as exc:
        assert "not overwriting" in str(exc)
    else:
        raise AssertionError("expected FileExistsError")
    assert (dags / "churn.py").read_text() == "# edited by hand\n"


def test_a_class_missing_from_an_existing_module_fails_the_first_task_without_retry(tmp_path):
    """The structure-only parse lets the Dags import; the first task that loads the config fails without
    retries (AirflowFailException), naming the config file, the field and the class."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.dag_factory import build_dags_for_config
    from airflow_mlops.operators import DataValidationOperator

    cfg = _churn()
    cfg["estimator"] = {"class": "sklearn.ensemble.NoSuchForest"}
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    dags = build_dags_for_config(str(path), storage_uri="file://" + str(tmp_path / "store"))
    assert sorted(dags) == ["churn_batch_scoring", "churn_monitoring", "churn_training"]
    task = DataValidationOperator(task_id="validate", config_path=str(path))
    with pytest.raises(AirflowFailException) as err:
        task.config  # noqa: B018 - the property loads and checks the config
    msg = str(err.value)
    assert msg.startswith("model config problem: ") and "churn.yaml" in msg and "estimator.class" in msg \
        and "NoSuchForest" in msg
