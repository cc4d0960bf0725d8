"""Reverse lineage: from a dataset fingerprint or URI to every version trained on it.

Three versions trained by the real pipeline on two datasets: v1 and v3 on ``churn`` (same window, so
the same fingerprint), v2 on ``churn_eu``. Uses the directory's ``store`` fixture (a week of churn
partitions) and adds the second dataset.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from gov_helpers import DAYS, DS, churn_config

from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.lifecycle import train_and_register
from airflow_mlops.registry.model_registry import ModelRegistry, RegistryError
from airflow_mlops.store.datasets import Dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from airflow_mlops.store.artifacts import ArtifactStore

    store = ArtifactStore("file://" + str(tmp_path_factory.mktemp("lineage") / "store"))
    a, b = Dataset.for_name(store, "churn"), Dataset.for_name(store, "churn_eu")
    for day in DAYS:
        a.write(day, churn_day(day, rows=300))
        b.write(day, churn_day(day, rows=300, seed=7))
    cfg_a = churn_config()
    cfg_b = churn_config(data={"dataset": "churn_eu", "training_window_days": 3})
    s1 = train_and_register(cfg_a, store, DS, actor="trainer")
    s2 = train_and_register(cfg_b, store, DS, actor="trainer")
    s3 = train_and_register(cfg_a, store, DS, actor="trainer")
    reg = ModelRegistry(store)
    reg.set_alias("churn", "champion", 3, actor="ci")
    return store, reg, (s1, s2, s3), (a, b)


def test_models_using_fingerprint_lists_exactly_the_versions_trained_on_it(trained):
    _, reg, (s1, s2, s3), _ = trained
    assert [s["version"] for s in (s1, s2, s3)] == [1, 2, 3]
    assert s1["fingerprint"] == s3["fingerprint"] != s2["fingerprint"]
    assert reg.models_using(s1["fingerprint"]) == [("churn", 1), ("churn", 3)]
    assert reg.models_using(s2["fingerprint"]) == [("churn", 2)]
    assert reg.models_using(s1["fingerprint"][:12]) == [("churn", 1), ("churn", 3)]  # unique prefix
    assert reg.models_using("0" * 64) == []
    # the fingerprint recorded in metadata.json is the one the index answers for
    meta = reg.get_metadata("churn", 2)
    assert meta["training_data"]["fingerprint"]["content_hash"] == s2["fingerprint"]


def test_models_using_dataset_uri_root_partition_trailing_slash_and_path(trained):
    store, reg, _, (a, b) = trained
    assert reg.models_using(a.uri()) == [("churn", 1), ("churn", 3)]
    assert reg.models_using(a.uri() + "/") == [("churn", 1), ("churn", 3)]
    assert reg.models_using(b.uri()) == [("churn", 2)]
    # a partition: only the versions whose training window contained it (churn_eu used 3 days)
    assert reg.models_using(a.uri(DAYS[0])) == [("churn", 1), ("churn", 3)]
    assert reg.models_using(b.uri(DAYS[0])) == []
    assert reg.models_using(b.uri(DS) + "/part-0.parquet") == [("churn", 2)]
    # a day after the training window
    assert reg.models_using(a.uri("2024-01-03")) == []
    # a bare local path means file://
    assert reg.models_using(a.uri().removeprefix("file://")) == [("churn", 1), ("churn", 3)]
    assert reg.models_using(store.uri("data/other")) == []


def test_lineage_rows_carry_created_at_aliases_lifecycle(trained):
    _, reg, (s1, _, _), (a, _) = trained
    rows = reg.lineage(a.uri(DS))
    assert [(r["model"], r["version"], r["aliases"], r["matched_by"]) for r in rows] == [
        ("churn", 1, [], "partition"), ("churn", 3, ["champion"], "partition")]
    assert all(r["created_at"] and r["content_hash"] == s1["fingerprint"] and r["lifecycle"] == "active"
               for r in rows)
    with pytest.raises(RegistryError, match="give a dataset URI or a fingerprint"):
        reg.lineage("  ")


def test_cli_lineage(trained):
    store, _, (s1, s2, _), (a, _) = trained
    out = subprocess.run([sys.executable, "-m", "airflow_mlops.cli", "--storage-uri", store.root, "lineage",
                          a.uri() + "/"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["model"], r["version"], r["aliases"]) for r in rows] == [("churn", 1, []), ("churn", 3, ["champion"])]
    assert all(r["created_at"] for r in rows)
    out = subprocess.run([sys.executable, "-m", "airflow_mlops.cli", "--storage-uri", store.root, "lineage",
                          s2["fingerprint"]], capture_output=True, text=True, timeout=120)
    assert [(r["model"], r["version"]) for r in json.loads(out.stdout)] == [("churn", 2)]
