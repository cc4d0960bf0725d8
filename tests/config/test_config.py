"""Tests of airflow_mlops.config.model: parsing, early validation with named fields, data checks."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_mlops.config.data_check import check_config_against_data
from airflow_mlops.config.model import ConfigError, ModelConfig
from airflow_mlops.config.parser import load_model_config, parse_model_config

FULL_YAML = """\
name: churn
owner: ml-team@example.com
description: Predicts churn in the next 30 days
intended_use: Retention campaigns
limitations: Trained on EU customers only
data:
  dataset: churn
  uri: null
  format: parquet
  conn_id: null
  training_window_days: 14
  ground_truth_dataset: churn_labels
keys: [customer_id]
target: churned
features: [tenure, spend, plan]
categorical_features: [plan]
task: binary
estimator:
  class: sklearn.ensemble.HistGradientBoostingClassifier
  params: {max_iter: 100, learning_rate: 0.1}
search:
  method: random
  n_iter: 4
  space:
    learning_rate: {distribution: loguniform, low: 0.01, high: 0.3}
    max_depth: [3, 5, null]
    max_leaf_nodes: {distribution: randint, low: 8, high: 32}
training:
  test_size: 0.25
  cv_folds: 3
  seed: 7
  reference_sample_size: 1000
metrics:
  primary: roc_auc
  floors: {roc_auc: 0.7, recall: 0.4}
  ceilings: {log_loss: 0.6, latency_p95_ms: 50, model_size_bytes: 1000000}
promotion:
  min_improvement: 0.01
  require_approval: true
  allow_self_approval: false
validation:
  suite: infer
  mostly: 0.95
schedules:
  training: null
  nightly_retraining: "0 2 * * *"
  scoring: "@daily"
  monitoring: "@daily"
drift:
  threshold: 0.3
  sample_size: 50000
  stattest_threshold: 0.05
"""


def minimal(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "churn",
        "owner": "ml@example.com",
        "data": {"dataset": "churn"},
        "keys": ["customer_id"],
        "target": "churned",
    }
    raw.update(overrides)
    return raw


def expect_error(raw: dict[str, Any], field: str, *fragments: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_model_config(raw)
    err = info.value
    assert err.field == field, (err.field, str(err))
    assert field in str(err)
    for fragment in fragments:
        assert fragment in str(err), (fragment, str(err))
    return err


# --------------------------------------------------------------------------------------------
# happy path
# --------------------------------------------------------------------------------------------


def test_load_full_config_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "churn.yaml"
    path.write_text(FULL_YAML)
    cfg = load_model_config(path)

    assert cfg.name == "churn"
    assert cfg.owner == "ml-team@example.com"
    assert cfg.source == str(path)
    assert cfg.data.training_window_days == 14
    assert cfg.data.ground_truth_dataset == "churn_labels"
    assert cfg.keys == ("customer_id",)
    assert cfg.features == ("tenure", "spend", "plan")
    assert cfg.categorical_features == ("plan",)
    assert cfg.task == "binary" and cfg.is_classification
    assert cfg.estimator.class_path == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert dict(cfg.estimator.params) == {"max_iter": 100, "learning_rate": 0.1}
    assert not cfg.estimator.is_linear
    assert cfg.search is not None and cfg.search.method == "random" and cfg.search.n_iter == 4
    assert cfg.search.space["max_depth"] == (3, 5, None)
    assert cfg.training.cv_folds == 3 and cfg.training.seed == 7 and cfg.training.test_size == 0.25
    assert cfg.metrics.primary == "roc_auc"
    assert dict(cfg.metrics.floors) == {"roc_auc": 0.7, "recall": 0.4}
    assert dict(cfg.metrics.ceilings) == {"log_loss": 0.6, "latency_p95_ms": 50.0, "model_size_bytes": 1e6}
    assert cfg.promotion.min_improvement == 0.01 and cfg.promotion.require_approval
    assert cfg.validation.mostly == 0.95 and cfg.validation_suite_path() is None
    assert cfg.schedules.training is None and cfg.schedules.nightly_retraining == "0 2 * * *"
    assert cfg.drift.threshold == 0.3 and cfg.drift.stattest_threshold == 0.05
    assert cfg.dataset_uri("s3://bucket/mlops/") == "s3://bucket/mlops/data/churn"

    # search space converts to scikit-learn distributions with the pipeline prefix
    dists = cfg.search.param_distributions()
    assert set(dists) == {"estimator__learning_rate", "estimator__max_depth", "estimator__max_leaf_nodes"}
    assert dists["estimator__max_depth"] == [3, 5, None]
    samples = dists["estimator__max_leaf_nodes"].rvs(size=200, random_state=0)
    assert samples.min() >= 8 and samples.max() <= 32


def test_defaults_and_roundtrip() -> None:
    cfg = parse_model_config(minimal(task="regression"))
    assert cfg.estimator.class_path == "sklearn.ensemble.HistGradientBoostingRegressor"
    assert cfg.metrics.primary == "rmse"
    assert cfg.data.format == "parquet" and cfg.data.training_window_days == 30
    assert cfg.training == type(cfg.training)()  # all defaults
    assert cfg.validation.suite == "infer" and cfg.validation.mostly == 1.0
    assert cfg.schedules.scoring == "@daily" and cfg.schedules.training is None
    assert cfg.search is None and cfg.features is None
    assert cfg.dataset_uri("file:///srv/mlops") == "file:///srv/mlops/data/churn"

    as_dict = cfg.to_dict()
    assert as_dict["estimator"] == {"class": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {}}
    assert list(as_dict)[:3] == ["name", "owner", "description"]
    assert parse_model_config(as_dict) == cfg


def test_full_config_roundtrips_through_to_dict(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "churn.yaml"
    path.write_text(FULL_YAML)
    cfg = load_model_config(path)
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    assert load_model_config(again) == cfg


def test_config_is_immutable_hashable_and_picklable() -> None:
    cfg = parse_model_config(minimal(estimator={"class": "sklearn.linear_model.LogisticRegression",
                                                "params": {"C": 0.5}}))
    assert cfg.estimator.is_linear
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.estimator.params["C"] = 2.0
    assert hash(cfg) == hash(parse_model_config(cfg.to_dict()))
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert copy.deepcopy(cfg) == cfg
    estimator = cfg.estimator.build(seed=3)
    assert estimator.C == 0.5 and estimator.random_state == 3


def test_feature_columns_resolution() -> None:
    cfg = parse_model_config(minimal())
    columns = ["customer_id", "tenure", "churned", "ds", "plan", "__index_level_0__"]
    assert cfg.feature_columns(columns) == ["tenure", "plan"]
    explicit = parse_model_config(minimal(features=["plan"]))
    assert explicit.feature_columns(columns) == ["plan"]


def test_validation_suite_path_is_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "churn.json").write_text("{}")
    path = tmp_path / "churn.yaml"
    path.write_text(FULL_YAML.replace("suite: infer", "suite: suites/churn.json"))
    cfg = load_model_config(path)
    assert cfg.validation_suite_path() == str(tmp_path / "suites" / "churn.json")

    path.write_text(FULL_YAML.replace("suite: infer", "suite: suites/missing.yaml"))
    with pytest.raises(ConfigError) as info:
        load_model_config(path)
    assert info.value.field == "validation.suite" and "does not exist" in str(info.value)


def test_import_is_light() -> None:
    code = (
        "import sys, airflow_mlops.config.model, airflow_mlops.evaluation.metrics, airflow_mlops.store.fingerprint, "
        "airflow_mlops.training.trainer\n"
        "heavy = [m for m in ('pandas', 'numpy', 'sklearn', 'pyarrow', 'yaml', 'scipy', 'airflow') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --------------------------------------------------------------------------------------------
# bad configs: every error names the field
# --------------------------------------------------------------------------------------------


def test_unknown_estimator_class() -> None:
    err = expect_error(minimal(estimator={"class": "sklearn.ensemble.NoSuchForest"}),
                       "estimator.class", "cannot import", "NoSuchForest")
    assert err.source == "<dict>"
    expect_error(minimal(estimator={"class": "no_such_package.Model"}),
                 "estimator.class", "cannot import", "ModuleNotFoundError")
    expect_error(minimal(estimator={"class": "sklearn.ensemble.RandomForestClasifier"}),
                 "estimator.class", "did you mean sklearn.ensemble.RandomForestClassifier")


def test_structure_only_parse_imports_no_estimator_library(tmp_path: Path) -> None:
    """What the Dag factory does at parse time: the estimator's module must exist (found without executing it);
    the class and its parameters are left to the tasks (the full parse) and scikit-learn is not imported."""
    cfg = parse_model_config(minimal(estimator={"class": "sklearn.ensemble.NoSuchForest", "params": {"x": 1}},
                                     search={"space": {"max_depth": [2, 3]}}), check_estimator=False)
    assert cfg.estimator.class_path == "sklearn.ensemble.NoSuchForest"
    with pytest.raises(ConfigError) as info:
        parse_model_config(minimal(estimator={"class": "no_such_package.sub.Model"}), check_estimator=False)
    assert info.value.field == "estimator.class" and "no module named 'no_such_package.sub'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_model_config(minimal(estimator={"class": "sklearn.nope.Model"}), check_estimator=False)
    assert info.value.field == "estimator.class"
    path = tmp_path / "m.yaml"
    import yaml

    path.write_text(yaml.safe_dump(minimal(estimator={"class": "sklearn.ensemble.RandomForestClassifier"})))
    code = ("import sys\nfrom airflow_mlops.config.parser import load_model_config\n"
            f"load_model_config({str(path)!r}, check_estimator=False)\n"
            "assert 'sklearn' not in sys.modules, 'the structure-only parse imported scikit-learn'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_estimator_kind_must_match_task() -> None:
    expect_error(minimal(task="regression", estimator={"class": "sklearn.linear_model.LogisticRegression"}),
                 "estimator.class", "needs a regressor")
    expect_error(minimal(estimator={"class": "sklearn.linear_model.Ridge"}),
                 "estimator.class", "needs a classifier")
    expect_error(minimal(estimator={"class": "collections.OrderedDict"}),
                 "estimator.class", "not a scikit-learn-compatible estimator")


def test_estimator_param_not_accepted() -> None:
    expect_error(minimal(estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                                    "params": {"max_iterr": 10}}),
                 "estimator.params.max_iterr", "does not accept", "did you mean 'max_iter'")
    # values are validated by scikit-learn's own constraints, before any training
    expect_error(minimal(estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                                    "params": {"max_iter": "many"}}),
                 "estimator.params.max_iter", "must be an int")


def test_search_space_params_validated() -> None:
    base = {"class": "sklearn.ensemble.HistGradientBoostingClassifier"}
    expect_error(minimal(estimator=base, search={"space": {"max_deep": [2, 3]}}),
                 "search.space.max_deep", "did you mean 'max_depth'")
    expect_error(minimal(estimator=base, search={"space": {"learning_rate": [0.1, -1.0]}}),
                 "search.space.learning_rate")
    expect_error(minimal(estimator=base, search={"space": {"learning_rate": {"distribution": "loguniform",
                                                                              "low": 0, "high": 1}}}),
                 "search.space.learning_rate.low")
    expect_error(minimal(estimator=base, search={"method": "grid", "space": {"max_depth": [2]}}),
                 "search.method", "random, halving")
    expect_error(minimal(estimator=base, search={"space": {"max_depth": {"distribution": "randint",
                                                                          "low": 5, "high": 2}}}),
                 "search.space.max_depth.high")


def test_missing_required_fields() -> None:
    raw = minimal()
    del raw["target"]
    expect_error(raw, "target", "required")
    raw = minimal()
    del raw["keys"]
    expect_error(raw, "keys", "required")
    expect_error(minimal(data={"format": "csv"}), "data.dataset", "required")
    expect_error(minimal(keys=[]), "keys", "at least 1")


def test_unknown_field_with_suggestion() -> None:
    expect_error(minimal(estimater={"class": "x"}), "estimater", "unknown field", "did you mean 'estimator'")
    expect_error(minimal(training={"cv_fold": 3}), "training.cv_fold", "did you mean 'cv_folds'")
    expect_error(minimal(data={"dataset": "churn", "fromat": "csv"}), "data.fromat", "did you mean 'format'")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(textwrap.dedent("""\
        name: churn
        owner: me
        data:
          dataset: churn
         format: parquet
        keys: [customer_id]
        """))
    with pytest.raises(ConfigError) as info:
        load_model_config(path)
    assert info.value.line == 5
    assert f"{path}:5" in str(info.value) and "malformed YAML" in str(info.value)

    path.write_text("name: churn\nkeys: [a, b\ntarget: y\n")
    with pytest.raises(ConfigError) as info:
        load_model_config(path)
    assert str(path) in str(info.value) and info.value.line is not None

    path.write_text("name: churn\nowner: me\nname: other\n")
    with pytest.raises(ConfigError) as info:
        load_model_config(path)
    assert info.value.line == 3 and "duplicate key 'name'" in str(info.value)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_model_config(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_model_config(tmp_path / "empty.yaml")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"drift": {"threshold": 1.5}}, "drift.threshold"),
        ({"drift": {"threshold": 0}}, "drift.threshold"),
        ({"training": {"test_size": 0.95}}, "training.test_size"),
        ({"training": {"cv_folds": 1}}, "training.cv_folds"),
        ({"training": {"cv_folds": True}}, "training.cv_folds"),
        ({"validation": {"mostly": 0}}, "validation.mostly"),
        ({"promotion": {"min_improvement": -0.1}}, "promotion.min_improvement"),
        ({"metrics": {"floors": {"roc_auc": 1.2}}}, "metrics.floors.roc_auc"),
        ({"metrics": {"ceilings": {"latency_p95_ms": -1}}}, "metrics.ceilings.latency_p95_ms"),
        ({"data": {"dataset": "churn", "training_window_days": 0}}, "data.training_window_days"),
    ],
)
def test_thresholds_out_of_range(overrides: dict[str, Any], field: str) -> None:
    expect_error(minimal(**overrides), field, "must be")


def test_metric_names_validated_for_task() -> None:
    expect_error(minimal(metrics={"primary": "rmse"}), "metrics.primary", "not a binary metric")
    expect_error(minimal(metrics={"primary": "roc_aux"}), "metrics.primary", "did you mean 'roc_auc'")
    expect_error(minimal(task="regression", metrics={"floors": {"rmse": 1.0}}), "metrics.floors.rmse",
                 "lower-is-better", "ceilings")
    expect_error(minimal(metrics={"floors": {"r2": 0.5}}), "metrics.floors.r2", "not a binary metric")
    expect_error(minimal(metrics={"ceilings": {"throughput": 5}}), "metrics.ceilings.throughput")
    expect_error(minimal(metrics={"floors": {"accuracy": 0.9}, "ceilings": {"accuracy": 0.8}}),
                 "metrics.floors.accuracy", "above the ceiling")
    cfg = parse_model_config(minimal(task="regression", metrics={"floors": {"r2": -0.5},
                                                                 "ceilings": {"rmse": 3, "peak_rss_mb": 512}}))
    assert cfg.metrics.floors["r2"] == -0.5 and cfg.metrics.ceilings["peak_rss_mb"] == 512.0


def test_other_field_checks() -> None:
    expect_error(minimal(name="Churn-Model"), "name", "[a-z0-9_]+")
    expect_error(minimal(task="ranking"), "task", "binary, multiclass, regression")
    expect_error(minimal(data={"dataset": "churn", "uri": "http://x/y"}), "data.uri", "file:// or s3://")
    expect_error(minimal(data={"dataset": "churn", "format": "json"}), "data.format")
    expect_error(minimal(features=["tenure", "customer_id"]), "features", "customer_id")
    expect_error(minimal(features=["tenure", "churned"]), "features", "churned")
    expect_error(minimal(keys=["customer_id", "churned"]), "target")
    expect_error(minimal(features=["tenure"], categorical_features=["plan"]), "categorical_features", "plan")
    expect_error(minimal(features=["a", "a"]), "features", "duplicate")
    expect_error(minimal(schedules={"scoring": "every day"}), "schedules.scoring", "cron")
    expect_error(minimal(schedules={"scoring": "61 * * * *"}), "schedules.scoring", "not a valid cron")
    expect_error(minimal(schedules={"monitoring": "@sometimes"}), "schedules.monitoring", "preset")
    expect_error(minimal(promotion={"require_approval": "yes please"}), "promotion.require_approval")
    expect_error(minimal(validation={"suite": "suite.txt"}), "validation.suite")


# --------------------------------------------------------------------------------------------
# config against data
# --------------------------------------------------------------------------------------------

SCHEMA = {"customer_id": "int64", "tenure": "double", "spend": "double", "plan": "string",
          "churned": "bool", "ds": "date32[day]"}


def test_check_config_against_data_ok() -> None:
    cfg = parse_model_config(minimal())
    check_config_against_data(cfg, SCHEMA, pd.Series([True, False, True, None]))


def test_feature_absent_from_data() -> None:
    cfg = parse_model_config(minimal(features=["tenure", "spendd"]))
    with pytest.raises(ConfigError) as info:
        check_config_against_data(cfg, SCHEMA)
    err = info.value
    assert err.field == "features"
    assert "spendd" in str(err) and "available columns: customer_id, tenure, spend" in str(err)
    assert "'spendd' -> 'spend'" in str(err)


def test_key_and_target_absent_from_data() -> None:
    with pytest.raises(ConfigError) as info:
        check_config_against_data(parse_model_config(minimal(keys=["id"])), SCHEMA)
    assert info.value.field == "keys" and "id" in str(info.value)
    with pytest.raises(ConfigError) as info:
        check_config_against_data(parse_model_config(minimal(target="label")), SCHEMA)
    assert info.value.field == "target" and "label" in str(info.value)


def test_wrong_task_for_target() -> None:
    with pytest.raises(ConfigError) as info:
        check_config_against_data(parse_model_config(minimal(task="regression")), SCHEMA)
    assert info.value.field == "task" and "numeric target" in str(info.value)

    schema = {**SCHEMA, "churned": "string"}
    with pytest.raises(ConfigError) as info:
        check_config_against_data(parse_model_config(minimal()), schema, pd.Series(["a", "b", "c", "a"]))
    assert info.value.field == "task" and "exactly 2" in str(info.value)

    with pytest.raises(ConfigError) as info:
        check_config_against_data(parse_model_config(minimal(task="multiclass")), schema,
                                  pd.Series(["a", "b", "a"]))
    assert info.value.field == "task" and "at least 3 classes" in str(info.value)

    schema = {**SCHEMA, "churned": "double"}
    continuous = pd.Series([i * 0.37 for i in range(100)])
    with pytest.raises(ConfigError) as info:
        check_config_against_data(parse_model_config(minimal(task="multiclass")), schema, continuous)
    assert info.value.field == "task" and "regression" in str(info.value)
    # integral float labels (ints with missing values) are fine
    check_config_against_data(parse_model_config(minimal(task="multiclass")), schema,
                              pd.Series([0.0, 1.0, 2.0, None]))


def test_unusable_feature_dtypes() -> None:
    schema = {**SCHEMA, "signup": "timestamp[us]"}
    with pytest.raises(ConfigError) as info:
        check_config_against_data(parse_model_config(minimal()), schema)
    assert info.value.field == "features" and "signup (timestamp[us])" in str(info.value)

    cfg = parse_model_config(minimal(categorical_features=[]))
    with pytest.raises(ConfigError) as info:
        check_config_against_data(cfg, SCHEMA)
    assert info.value.field == "categorical_features" and "plan (string)" in str(info.value)


def test_config_error_pickles_with_field() -> None:
    err = ConfigError("bad", field="estimator.class", source="x.yaml")
    again = pickle.loads(pickle.dumps(err))
    assert again.field == "estimator.class" and str(again) == str(err) == "x.yaml: estimator.class: bad"
    assert isinstance(again, ValueError)


def test_model_config_type() -> None:
    assert isinstance(parse_model_config(minimal()), ModelConfig)
    with pytest.raises(ConfigError) as info:
        parse_model_config(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert "mapping" in str(info.value)
