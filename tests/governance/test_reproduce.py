"""Reproducibility check: retrain a registered version from its metadata.json and compare.

The model is the example churn model: ``dags/configs/churn.yaml`` on
:func:`airflow_mlops.demo.data.churn_day` partitions, trained and registered by the real
pipeline (``train_and_register``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from airflow_mlops.config.parser import load_model_config
from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.governance.reproduce import compare_metrics, library_differences, reproduce_version
from airflow_mlops.registry.lifecycle import train_and_register
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

CONFIG = "dags/configs/churn.yaml"
DAYS = date_range("2024-03-01", 4)


def _trained_store(root) -> tuple[ArtifactStore, Dataset, dict]:
    store = ArtifactStore("file://" + str(root / "store"))
    data = Dataset.for_name(store, "churn")
    for day in DAYS:
        data.write(day, churn_day(day, rows=600))
    summary = train_and_register(load_model_config(CONFIG), store, DAYS[-1], actor="trainer")
    return store, data, summary


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _trained_store(tmp_path_factory.mktemp("repro"))


def test_reproducing_version_1_gives_identical_metrics(trained):
    store, _, summary = trained
    reg = ModelRegistry(store)
    assert summary["version"] == 1
    report = reproduce_version(reg, "churn", 1, tolerance=0.0, actor="auditor")
    assert report["verdict"] == "reproduced", report["summary"]
    assert report["config_source"] == "metadata.json" and report["seed"] == 42 == report["recorded_seed"]
    assert not report["data"]["changed"]
    assert report["data"]["recorded_fingerprint"] == report["data"]["current_fingerprint"] == summary["fingerprint"]
    names = {r["metric"] for r in report["metrics"]}
    assert {"holdout.roc_auc", "cv.roc_auc.mean", "cv.roc_auc.std", "baseline.roc_auc"} <= names
    # exact equality, not merely within a tolerance: the tolerance actually needed is 0
    assert report["max_abs_diff"] == 0.0
    assert all(r["abs_diff"] == 0.0 and r["recorded"] == r["reproduced"] for r in report["metrics"]
               if r["abs_diff"] is not None)
    pred = report["predictions"]
    assert pred["identical"] and pred["differing"] == 0 and pred["rows"] == 600
    assert pred.get("proba_max_abs_diff", 0.0) == 0.0
    assert report["params_match"] is True
    assert report["libraries"]["differing"] == []  # same environment as the training
    # nothing registered; the report is attached to the version
    assert reg.list_versions("churn") == [1]
    key = report["report_uri"].split(store.root + "/", 1)[1]
    assert key.startswith("registry/churn/versions/1/reports/reproduce-") and key.endswith(".json")
    assert store.read_json(key)["verdict"] == "reproduced"


def test_cli_reproduce(trained):
    store, _, _ = trained
    out = subprocess.run([sys.executable, "-m", "airflow_mlops.cli", "--storage-uri", store.root, "reproduce",
                          "churn", "1", "--tolerance", "1e-9"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["verdict"] == "reproduced" and answer["metrics_off"] == [] and answer["max_abs_diff"] == 0.0
    assert answer["metrics"].startswith("all ") and answer["report_uri"].endswith(".json")


def test_operator_returns_the_summary(trained):
    from airflow_mlops.operators.reproduce import ReproduceModelOperator

    store, _, _ = trained
    op = ReproduceModelOperator(task_id="reproduce", config_path=CONFIG, storage_uri=store.root, version=1)
    out = op.execute({})
    assert out["verdict"] == "reproduced" and out["version"] == 1 and not out["data_changed"]
    assert json.dumps(out)  # small JSON for XCom


def test_mismatch_names_metrics_and_differing_libraries(trained):
    """A version whose recorded metrics were not produced by its recorded config (trained with
    another seed) and whose recorded sklearn version differs: the report says which metrics are
    off, by how much, and names the library."""
    import dataclasses

    from airflow_mlops.training.trainer import library_versions, train_model

    store, data, _ = trained
    reg = ModelRegistry(store)
    meta = reg.get_metadata("churn", 1)
    cfg = load_model_config(CONFIG)
    other = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, seed=7))
    df = __import__("pandas").concat([data.read(d) for d in DAYS], ignore_index=True)
    result = train_model(other, df)
    libs = {**library_versions(), "sklearn": "0.24.2"}
    reg.register("churn_mismatch", result.pipeline, actor="trainer", metadata={
        "training_data": meta["training_data"], "config": {**cfg.to_dict(), "name": "churn_mismatch"},
        **result.summary(), "libraries": libs})
    report = reproduce_version(reg, "churn_mismatch", 1)
    assert report["verdict"] == "mismatch"
    off = {r["metric"]: r for r in report["metrics"] if not r["within_tolerance"]}
    assert "holdout.roc_auc" in off and off["holdout.roc_auc"]["abs_diff"] > 1e-9
    assert off["holdout.roc_auc"]["recorded"] == result.metrics["holdout"]["roc_auc"]
    assert report["libraries"]["differing"] == [
        {"library": "sklearn", "recorded": "0.24.2", "current": library_versions()["sklearn"]}]
    assert "NOT reproduced on the same data" in report["summary"] and "sklearn 0.24.2 recorded" in report["summary"]
    assert report["predictions"] is None  # no holdout.parquet registered with it
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.operators.reproduce import ReproduceModelOperator

    op = ReproduceModelOperator(task_id="reproduce", config_path=CONFIG, storage_uri=store.root,
                                model="churn_mismatch", version=1)
    with pytest.raises(AirflowFailException, match=r"churn_mismatch v1 NOT reproduced.*reproduce-.*\.json"):
        op.execute({})


def test_changed_partition_gives_data_changed_verdict(tmp_path):
    store, data, summary = _trained_store(tmp_path)
    reg = ModelRegistry(store)
    df = data.read(DAYS[1])
    df.loc[5, "monthly_charges"] = df.loc[5, "monthly_charges"] + 1.0  # one value corrected after training
    data.write(DAYS[1], df)
    report = reproduce_version(reg, "churn", 1)
    now = report["data"]["current_fingerprint"]
    assert report["verdict"] == "data_changed"
    assert now and now != summary["fingerprint"]
    assert report["summary"].startswith(f"data changed: fingerprint {summary['fingerprint']} recorded, {now} now")
    assert "not a model problem" in report["summary"]
    assert report["metrics"] == [] and report["data"]["rows_now"] == report["data"]["rows_recorded"] == 2400
    # the operator reports it (default) or fails without retry when asked to
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.operators.reproduce import ReproduceModelOperator

    op = ReproduceModelOperator(task_id="reproduce", config_path=CONFIG, storage_uri=store.root, version=1)
    out = op.execute({})
    assert out["verdict"] == "data_changed" and out["data_changed"] and out["metrics_off"] == []
    strict = ReproduceModelOperator(task_id="reproduce", config_path=CONFIG, storage_uri=store.root, version=1,
                                    fail_on=("mismatch", "data_changed"))
    with pytest.raises(AirflowFailException, match=f"data changed: fingerprint {summary['fingerprint']} recorded"):
        strict.execute({})
    # a partition deleted since training is named
    store.delete_prefix(data.key(DAYS[0]))
    assert not data.exists(DAYS[0])
    report = reproduce_version(reg, "churn", 1, write_report=False)
    assert report["verdict"] == "data_changed" and report["data"]["missing_partitions"] == [DAYS[0]]
    assert f"partition(s) ['{DAYS[0]}']" in report["summary"] and "report_uri" not in report


def test_pure_comparison_helpers():
    rows = compare_metrics({"holdout": {"auc": 0.9, "f1": "nan"}, "cv": {"auc": {"mean": 0.8}}},
                           {"holdout": {"auc": 0.9 + 1e-12, "f1": float("nan")}, "cv": {"auc": {"mean": 0.7}}},
                           tolerance=1e-9)
    by = {r["metric"]: r for r in rows}
    assert by["holdout.auc"]["within_tolerance"] and by["holdout.f1"]["within_tolerance"]
    assert not by["cv.auc.mean"]["within_tolerance"] and by["cv.auc.mean"]["abs_diff"] == pytest.approx(0.1)
    assert library_differences({"numpy": "1", "pandas": "2"}, {"numpy": "1", "pandas": "3", "shap": "0.4"}) == [
        {"library": "pandas", "recorded": "2", "current": "3"},
        {"library": "shap", "recorded": None, "current": "0.4"}]
