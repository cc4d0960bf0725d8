"""Real trained churn models for the rollout tests (canary, kill switch/fallback, explanations).

Trained once per session into a template file:// store; each test scores a fresh copy of it:

* ``churn`` v1: the churn config's HistGradientBoostingClassifier, v2: a LogisticRegression
  (both on 2 days x 500 rows), no aliases;
* ``churn_spend`` v1: a HistGradientBoostingRegressor predicting ``monthly_charges`` from the same data.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import pandas as pd
import pytest
import yaml

from airflow_mlops.config.locations import Locations
from airflow_mlops.config.model import EstimatorConfig, FrozenDict
from airflow_mlops.config.parser import load_model_config, parse_model_config
from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_PATH = os.path.join(REPO, "dags", "configs", "churn.yaml")
TRAIN_DAYS = ["2024-01-01", "2024-01-02"]
DS = "2024-01-04"


def churn_config():
    cfg = load_model_config(CONFIG_PATH)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, training_window_days=2),
                               training=dataclasses.replace(cfg.training, reference_sample_size=300))


def spend_config():
    with open(CONFIG_PATH) as f:
        raw = yaml.safe_load(f)
    raw.update({
        "name": "churn_spend", "task": "regression", "target": "monthly_charges",
        "features": ["tenure_months", "support_calls", "usage_gb", "contract", "region"],
        "estimator": {"class": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {"max_iter": 30}},
        "metrics": {"primary": "rmse"},
    })
    raw["data"]["training_window_days"] = 2
    raw["training"]["reference_sample_size"] = 300
    return parse_model_config(raw)


def input_frame(ds: str, rows: int = 500) -> pd.DataFrame:
    return churn_day(ds, rows=rows, seed=3)


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> str:
    from threadpoolctl import threadpool_limits

    from airflow_mlops.registry.lifecycle import train_and_register

    root = tmp_path_factory.mktemp("rollout-template") / "store"
    store = ArtifactStore("file://" + str(root))
    cfg = churn_config()
    data = Locations(cfg, store).input
    for d in TRAIN_DAYS:
        data.write(d, churn_day(d, rows=500))
    data.write(DS, input_frame(DS))
    lr = dataclasses.replace(cfg, estimator=EstimatorConfig("sklearn.linear_model.LogisticRegression",
                                                            FrozenDict({"max_iter": 500})))
    with threadpool_limits(limits=1):
        assert train_and_register(cfg, store, TRAIN_DAYS[-1])["version"] == 1
        assert train_and_register(lr, store, TRAIN_DAYS[-1])["version"] == 2
        assert train_and_register(spend_config(), store, TRAIN_DAYS[-1])["version"] == 1
    return str(root)


@pytest.fixture
def store(template, tmp_path) -> ArtifactStore:
    """A fresh copy of the template: churn champion = v1, challenger = v2; churn_spend champion = v1."""
    root = tmp_path / "store"
    shutil.copytree(template, root)
    s = ArtifactStore("file://" + str(root))
    reg = ModelRegistry(s)
    reg.set_alias("churn", "champion", 1, actor="tests")
    reg.set_alias("churn", "challenger", 2, actor="tests")
    reg.set_alias("churn_spend", "champion", 1, actor="tests")
    return s


def read_output(store: ArtifactStore, ds: str = DS, model: str = "churn") -> pd.DataFrame:
    return store.read_table(f"predictions/{model}/ds={ds}").to_pandas().sort_values("customer_id") \
        .reset_index(drop=True)
