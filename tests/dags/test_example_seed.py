"""The shipped example model seeds its own synthetic data: its DAGs run on an empty store."""

from __future__ import annotations

import pytest
from airflow_env import AirflowHome

from airflow_mlops.config.model import ConfigError
from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.demo.data import churn_day, date_range, seed_missing_partitions
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

pytestmark = pytest.mark.e2e


def test_example_model_trains_and_scores_on_an_empty_store(tmp_path):
    af = AirflowHome(tmp_path)
    store = ArtifactStore(af.storage_uri)
    assert not store.list("")
    af.dags_test("churn_training", "2024-01-02")
    data = Dataset.for_name(store, "churn")
    assert data.partitions() == date_range("2023-12-27", 7)  # the 7-day training window
    reg = ModelRegistry(store)
    assert reg.resolve("churn", alias="champion") == 1
    assert reg.get_metadata("churn", 1)["training_data"]["partitions"] == date_range("2023-12-27", 7)
    af.dags_test("churn_batch_scoring", "2024-01-03")
    assert data.partitions()[-1] == "2024-01-03"  # only the scored day was added
    assert len(Dataset(store, "predictions/churn").read("2024-01-03")) == 2000


def test_seeding_never_touches_existing_partitions(tmp_path):
    data = Dataset.for_name(ArtifactStore("file://" + str(tmp_path)), "churn")
    data.write("2024-01-02", churn_day("2024-01-02", rows=50))
    before = data.read("2024-01-02")
    out = seed_missing_partitions(data, date_range("2024-01-01", 3), 100)
    assert out == {"written": ["2024-01-01", "2024-01-03"], "present": ["2024-01-02"], "rows_per_day": 100}
    assert data.read("2024-01-02").equals(before)
    again = seed_missing_partitions(data, date_range("2024-01-01", 3), 100)
    assert again["written"] == [] and len(data.read("2024-01-01")) == 100


def test_example_rows_is_validated():
    raw = {"name": "m", "owner": "o", "data": {"dataset": "d", "example_rows": 5}, "keys": ["k"], "target": "t"}
    with pytest.raises(ConfigError) as e:
        parse_model_config(raw)
    assert e.value.field == "data.example_rows"
