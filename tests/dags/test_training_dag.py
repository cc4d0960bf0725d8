"""The <model>_training DAG under real Airflow (`airflow dags test`, SQLite, temp AIRFLOW_HOME)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml
from airflow_env import REPO, AirflowHome

from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def af(tmp_path_factory):
    env = AirflowHome(tmp_path_factory.mktemp("training"))
    store = ArtifactStore(env.storage_uri)
    data = Dataset.for_name(store, "churn")
    for day in date_range("2023-12-27", 7):
        data.write(day, churn_day(day, rows=1500))
    env.store, env.registry, env.data = store, ModelRegistry(store), data
    return env


def test_first_run_trains_and_promotes_champion(af):
    af.dags_test("churn_training", "2024-01-02")
    reg = af.registry
    assert reg.list_versions("churn") == [1]
    assert reg.resolve("churn", alias="champion") == 1
    meta = reg.get_metadata("churn", 1)
    assert meta["dag_id"] == "churn_training" and meta["task_id"] == "train" and meta["run_id"]
    # identity: `airflow dags test` records the run as triggered by "dag_test"; the OS user running it acts
    import getpass

    assert meta["registered_by"] == meta["triggered_by"] == f"dag_test:{getpass.getuser()}"
    assert meta["training_data"]["fingerprint"]["rows"] == 7 * 1500
    assert meta["training_data"]["partitions"] == date_range("2023-12-27", 7)
    assert meta["metrics"]["holdout"]["roc_auc"] > meta["metrics"]["baseline"]["roc_auc"] + 0.1
    assert {"sklearn", "pandas", "airflow"} <= set(meta["libraries"])
    assert {"model.skops", "reference.parquet", "holdout.parquet", "reports/evaluation.html"} <= set(meta["artifacts"])
    assert "promotion.json" in reg.list_reports("churn", 1)
    assert af.store.exists("validation/churn/ds=2024-01-02/report.html")


def test_worse_model_becomes_challenger_with_reason(af):
    cfg = yaml.safe_load((af.configs / "churn.yaml").read_text())
    original = dict(cfg)
    cfg["estimator"] = {"class": "sklearn.dummy.DummyClassifier", "params": {"strategy": "prior"}}
    (af.configs / "churn.yaml").write_text(yaml.safe_dump(cfg))
    try:
        af.dags_test("churn_training", "2024-01-02")
    finally:
        (af.configs / "churn.yaml").write_text(yaml.safe_dump(original))
    reg = af.registry
    assert reg.list_versions("churn") == [1, 2]
    assert reg.get_aliases("churn") == {"champion": 1, "challenger": 2}
    ev = [e for e in reg.audit_log("churn") if e.get("alias") == "challenger"][-1]
    import getpass

    assert ev["to"] == 2 and ev["actor"] == f"dag_test:{getpass.getuser()}"  # who ran it, never the Dag owner
    assert "roc_auc" in ev["reason"] and "does not beat champion v1" in ev["reason"]
    assert "below the floor 0.6" in ev["reason"]
    assert ev["details"]["candidate"]["roc_auc"] == pytest.approx(0.5)
    assert ev["details"]["champion"]["roc_auc"] > 0.7


def test_failing_partition_is_quarantined_and_train_never_runs(af):
    bad = churn_day("2024-01-03", rows=1500)
    bad.loc[:44, "monthly_charges"] = -5000.0  # 3% of rows far outside the champion's range (mostly=0.99)
    af.data.write("2024-01-03", bad)
    versions_before = af.registry.list_versions("churn")
    proc = af.dags_test("churn_training", "2024-01-03", check=False)
    out = proc.stdout + proc.stderr
    assert "validation of" in out and "monthly_charges" in out
    assert af.registry.list_versions("churn") == versions_before  # train never ran
    q = af.store.read_parquet("quarantine/churn/ds=2024-01-03")
    assert len(q) == 45 and (q["monthly_charges"] == -5000.0).all()
    result = af.store.read_json("validation/churn/ds=2024-01-03/result.json")
    assert result["success"] is False
    # no row values in the task output: the planted value never appears in the log
    assert "-5000" not in out


@pytest.mark.parametrize("mutate, field", [
    (lambda c: c["estimator"].update({"class": "sklearn.nope.Missing"}), "estimator.class"),
    (lambda c: c.pop("target"), "target"),
])  # checks against the data (a missing feature column, a task that does not fit the target) fail the run,
#     never the parse: tests/dags/test_parse_time.py
def test_bad_configs_fail_at_parse_time_naming_the_field(af, tmp_path, mutate, field):
    cfg = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
    mutate(cfg)
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(cfg))
    code = textwrap.dedent(f"""
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(REPO / 'dags')!r})
        print("DAGS", sorted(bag.dag_ids))
        for path, err in bag.import_errors.items():
            print("ERROR", err)
    """)
    env = {**af.env, "MLOPS_CONFIGS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300).stdout
    assert "DAGS []" in out
    assert "ERROR" in out and field in out, out[-3000:]
