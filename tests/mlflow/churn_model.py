"""The churn model of the MLflow tests: a model name of its own per test (one server serves every test)."""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

REPO = Path(__file__).resolve().parents[2]
DS = "2024-01-07"


def churn_model(tmp_path: Path, search: bool = False, rows: int = 400,
                **overrides: Any) -> tuple[Any, ArtifactStore]:
    """The churn config (a quick estimator; ``overrides`` replace top-level sections) and a store with 7 days."""
    raw = copy.deepcopy(yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text()))
    raw["data"].pop("example_rows", None)
    raw["estimator"] = {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 30}}
    if search:
        raw["search"] = {"method": "random", "n_iter": 3, "space": {"learning_rate": [0.05, 0.1, 0.2],
                                                                   "max_leaf_nodes": [15, 31]}}
    else:
        raw.pop("search", None)
    raw.update(overrides)
    raw["name"] = f"churn_{uuid.uuid4().hex[:6]}"  # one server for every test: a model of its own each
    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    data = Dataset.for_name(store, "churn")
    for day in date_range("2024-01-01", 7):
        data.write(day, churn_day(day, rows=rows))
    return parse_model_config(raw), store


@contextlib.contextmanager
def tracking_uri(url: str) -> Iterator[None]:
    """MLflow's fluent API (what a notebook uses) pointed at ``url`` for the block, then reset."""
    import mlflow

    mlflow.set_tracking_uri(url)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
