"""``estimator.categorical``: xgboost and LightGBM get one column of category codes per categorical feature and
split on it as categories (xgboost ``feature_types``/``enable_categorical``, LightGBM ``categorical_feature``),
CatBoost gets the string labels as its ``cat_features``; ``auto`` picks that for them and one-hot for everything
else; unseen and missing values are missing codes (CatBoost: a missing label of their own)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from airflow_mlops.config.model import ConfigError
from tests.training.test_training import binary_frame, make_config, multiclass_frame

xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")

from airflow_mlops.training.trainer import train_model  # noqa: E402

XGB = {"class": "xgboost.XGBClassifier", "params": {"n_estimators": 30, "max_depth": 3}}
LGBM = {"class": "lightgbm.LGBMClassifier", "params": {"n_estimators": 30, "verbose": -1, "min_child_samples": 5}}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    import sklearn.ensemble  # noqa: F401 - load the OpenMP runtime first, so the limit reaches it
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def test_auto_is_native_for_the_three_libraries_only():
    assert make_config("binary", "churned", XGB).estimator.native_categorical
    assert make_config("binary", "churned", LGBM).estimator.native_categorical
    if __import__("importlib").util.find_spec("catboost"):
        assert make_config("binary", "churned", {"class": "catboost.CatBoostClassifier"}).estimator.native_categorical
    sk = make_config("binary", "churned", {"class": "sklearn.ensemble.HistGradientBoostingClassifier"})
    assert not sk.estimator.native_categorical
    onehot = make_config("binary", "churned", {**XGB, "categorical": "onehot"})
    assert not onehot.estimator.native_categorical and onehot.to_dict()["estimator"]["categorical"] == "onehot"
    assert "categorical" not in make_config("binary", "churned", XGB).to_dict()["estimator"]


@pytest.mark.parametrize("estimator, field, match", [
    ({"class": "sklearn.linear_model.LogisticRegression", "categorical": "native"}, "estimator.categorical",
     "native categorical splits are for xgboost, LightGBM and CatBoost"),
    ({**XGB, "categorical": "ordinal"}, "estimator.categorical", "must be one of"),
])
def test_errors_name_the_field(estimator, field, match):
    with pytest.raises(ConfigError, match=match) as info:
        make_config("binary", "churned", estimator)
    assert info.value.field == field


def _codes_and_model(estimator: dict, frame, task: str = "binary", target: str = "churned"):
    result = train_model(make_config(task, target, estimator), frame)
    pre, est = result.pipeline[:-1], result.pipeline[-1]
    return result, pre, est


def test_xgboost_splits_on_category_codes():
    df = binary_frame(600)
    result, pre, est = _codes_and_model(XGB, df)
    categorical = result.categorical_features
    assert categorical == ["plan", "active"]
    xt = pre.transform(df[result.features])
    assert xt.shape[1] == len(result.features)  # one column per feature: codes, not one-hot blocks
    assert est.get_booster().feature_types == ["q", "q", "q", "c", "c"]
    nodes = est.get_booster().trees_to_dataframe()
    # categorical (set) splits on the plan codes, not thresholds
    assert nodes.loc[nodes.Feature == "f3", "Category"].notna().any()
    assert nodes.loc[nodes.Feature == "f3", "Split"].isna().all()
    # missing values are missing codes; a category never seen in training as well, and it still predicts
    plan_codes = xt[:, 3]
    assert np.isnan(plan_codes[df["plan"].isna().to_numpy()]).all()
    unseen = df.head(5).assign(plan="enterprise")
    assert np.isnan(pre.transform(unseen[result.features])[:, 3]).all()
    assert result.pipeline.predict_proba(unseen[result.features]).shape == (5, 2)
    onehot, pre_oh, _ = _codes_and_model({**XGB, "categorical": "onehot"}, df)
    assert pre_oh.transform(df[result.features]).shape[1] > xt.shape[1]
    # importance is per input feature either way
    assert {r["feature"] for r in result.feature_importance} == set(result.features)


def test_lightgbm_splits_on_category_codes_multiclass():
    df = multiclass_frame(600)
    result, pre, est = _codes_and_model(LGBM, df, task="multiclass", target="tier")
    assert result.categorical_features == ["region"]
    position = result.features.index("region")
    splits = est.booster_.trees_to_dataframe().dropna(subset=["split_feature"])
    on_region = splits[splits.split_feature == f"Column_{position}"]
    assert len(on_region) and (on_region.decision_type == "==").all()  # category-set splits only
    assert result.metrics["holdout"]["accuracy"] > result.metrics["baseline"]["accuracy"]


def test_native_categorical_models_round_trip_through_skops():
    from airflow_mlops.registry.model_registry import dump_skops_bytes, load_skops_bytes
    from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES
    from airflow_mlops.trust.types import model_trusted_types

    df = binary_frame(500)
    for estimator, qualified in ((XGB, "xgboost.sklearn.XGBClassifier"), (LGBM, "lightgbm.sklearn.LGBMClassifier")):
        result, _, _ = _codes_and_model(estimator, df)
        data = dump_skops_bytes(result.pipeline)
        model = load_skops_bytes(data, trusted_types=[*PIPELINE_CUSTOM_TYPES, *model_trusted_types(qualified)])
        X = df[result.features]
        assert np.array_equal(model.predict_proba(X), result.pipeline.predict_proba(X)), qualified


def test_search_passes_the_category_columns_to_every_candidate():
    df = binary_frame(500)
    estimator = {**LGBM, "params": {**LGBM["params"]}}
    config = make_config("binary", "churned", estimator,
                         search={"method": "random", "n_iter": 3, "space": {"num_leaves": [4, 8, 16]}})
    result = train_model(config, df)
    assert result.search["n_failed"] == 0 and len(result.search["trials"]) == 3
    assert '"decision_type": "=="' in json.dumps(result.pipeline[-1].booster_.dump_model()["tree_info"])


def test_catboost_gets_the_string_labels_as_its_cat_features():
    pytest.importorskip("catboost")
    from airflow_mlops.registry.model_registry import dump_skops_bytes, load_skops_bytes
    from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES
    from airflow_mlops.training.trainer import MISSING_CATEGORY
    from airflow_mlops.trust.types import model_trusted_types

    df = binary_frame(500)
    estimator = {"class": "catboost.CatBoostClassifier",
                 "params": {"iterations": 40, "depth": 3, "verbose": 0, "allow_writing_files": False}}
    result, pre, est = _codes_and_model(estimator, df)
    assert list(est.get_cat_feature_indices()) == [3, 4]  # plan, active: after the three numeric columns
    xt = pre.transform(df[result.features])
    assert xt.shape[1] == len(result.features)
    assert set(xt[:, 3]) <= {"basic", "plus", "pro", MISSING_CATEGORY} and MISSING_CATEGORY in set(xt[:, 3])
    assert set(xt[:, 4]) == {"True", "False"}
    assert result.metrics["holdout"]["roc_auc"] > result.metrics["baseline"]["roc_auc"] + 0.1
    unseen = df.head(4).assign(plan="enterprise")
    assert result.pipeline.predict_proba(unseen[result.features]).shape == (4, 2)
    data = dump_skops_bytes(result.pipeline)
    model = load_skops_bytes(data, trusted_types=[*PIPELINE_CUSTOM_TYPES,
                                                  *model_trusted_types("catboost.core.CatBoostClassifier")])
    X = df[result.features]
    assert np.array_equal(model.predict_proba(X), result.pipeline.predict_proba(X))
    assert {r["feature"] for r in result.feature_importance} == set(result.features)
