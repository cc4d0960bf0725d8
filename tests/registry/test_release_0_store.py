"""A registry written by the release before the capability packages still verifies, loads and scores.

Stored models name the functions inside their pipelines by full path; the fixture's model names
``airflow_mlops.ml.training.*``, the path of that release (tests/fixtures/release_0_store/README.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_store"


@pytest.fixture
def old_store(tmp_path, monkeypatch):
    root = tmp_path / "store"
    shutil.copytree(FIXTURE / "registry", root / "registry")
    shutil.copytree(FIXTURE / "data", root / "data")
    key = tmp_path / "signing.key"
    shutil.copy(FIXTURE / "signing.key", key)
    key.chmod(0o600)
    monkeypatch.setenv("AIRFLOW__MLOPS__SIGNING_KEY_FILE", str(key))
    return root


def test_the_old_model_names_the_old_pipeline_path():
    from airflow_mlops.training.steps import LEGACY_PIPELINE_TYPES
    from airflow_mlops.trust.types import referenced_types

    data = (FIXTURE / "registry/churn/versions/1/model.skops").read_bytes()
    assert set(LEGACY_PIPELINE_TYPES) <= referenced_types(data)


def test_the_old_champion_verifies_loads_and_predicts_what_it_predicted_at_training(old_store):
    import pandas as pd

    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.training.predict import predict_frame

    registry = ModelRegistry(ArtifactStore(f"file://{old_store}"))
    assert registry.verify_version("churn", 1)["status"] == "verified"
    model, meta = registry.load_model("churn", alias="champion")
    holdout = pd.read_parquet(old_store / "registry/churn/versions/1/holdout.parquet")
    scored = predict_frame(model, holdout, meta["features"], meta["task"], meta["classes"])
    assert (scored["prediction"].to_numpy() == holdout["_training_prediction"].to_numpy()).all()
    np.testing.assert_allclose(scored["proba_1"].to_numpy(), holdout["_training_proba_1"].to_numpy(), rtol=0,
                               atol=1e-12)


def test_the_old_champion_scores_a_partition_into_the_prediction_log(old_store):
    from airflow_mlops.config.parser import load_model_config
    from airflow_mlops.scoring.batch import score_partition
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    store = ArtifactStore(f"file://{old_store}")
    config = load_model_config(FIXTURE / "churn.yaml")
    summary = score_partition(config, store, "2024-01-03")
    assert summary["version"] == 1 and summary["rows"] == 300, summary
    log = Dataset(store, "predictions/churn").read("2024-01-03")
    assert len(log) == 300 and set(log["model_version"]) == {1}
    assert log["customer_id"].is_unique
