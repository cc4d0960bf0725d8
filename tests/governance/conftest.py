"""Fixtures of the governance tests: a file store with a week of small churn partitions."""

from __future__ import annotations

import pytest
from gov_helpers import DAYS

from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    s = ArtifactStore("file://" + str(tmp_path / "store"))
    data = Dataset.for_name(s, "churn")
    for day in DAYS:
        data.write(day, churn_day(day, rows=300))
    return s


@pytest.fixture
def registry(store) -> ModelRegistry:
    return ModelRegistry(store)
