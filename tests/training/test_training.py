"""Tests of airflow_mlops.training.trainer and airflow_mlops.evaluation.metrics on small synthetic data."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airflow_mlops.config.model import ConfigError
from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.evaluation.metrics import (
    METRICS_BY_TASK,
    compute_metrics,
    higher_is_better,
    metric_range,
    per_class_metrics,
)
from airflow_mlops.training.predict import predict_frame
from airflow_mlops.training.steps import PIPELINE_CUSTOM_TYPES, categorical_as_strings
from airflow_mlops.training.trainer import TrainingError, TrainResult, library_versions, train_model

HGB_CLF = {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 30}}
HGB_REG = {"class": "sklearn.ensemble.HistGradientBoostingRegressor", "params": {"max_iter": 30}}
LOGREG = {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """One OpenMP/BLAS thread: faster and steadier on a small, shared machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def make_config(task: str, target: str, estimator: dict[str, Any], **extra: Any) -> Any:
    raw: dict[str, Any] = {
        "name": f"test_{task}",
        "owner": "tests@example.com",
        "data": {"dataset": "synthetic"},
        "keys": ["customer_id"],
        "target": target,
        "task": task,
        "estimator": estimator,
        "training": {"cv_folds": 3, "seed": 11, "test_size": 0.25, "reference_sample_size": 100},
    }
    raw.update(extra)
    return parse_model_config(raw)


def binary_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    plan = rng.choice(["basic", "plus", "pro", None], size=n)
    logit = 2.0 * x1 - 1.5 * x2 + np.where(plan == "pro", 1.5, 0.0)
    churned = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame({
        "customer_id": np.arange(n),
        "ds": "2024-01-01",
        "x1": x1,
        "x2": x2,
        "noise": rng.normal(size=n),
        "plan": plan,
        "active": rng.choice([True, False], size=n),
        "churned": churned,
    })


def multiclass_frame(n: int = 450, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    scores = np.column_stack([2 * x1, 2 * x2, -2 * x1 - 2 * x2]) + rng.normal(scale=0.5, size=(n, 3))
    label = np.array(["bronze", "silver", "gold"])[scores.argmax(axis=1)]
    return pd.DataFrame({"customer_id": np.arange(n), "x1": x1, "x2": x2,
                         "region": rng.choice(["north", "south"], size=n), "tier": label})


def regression_frame(n: int = 400, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(-1, 1, size=n)
    region = rng.choice(["north", "south", "east"], size=n)
    y = 3 * x1 - 2 * x2 + np.where(region == "east", 2.0, 0.0) + rng.normal(scale=0.3, size=n)
    return pd.DataFrame({"customer_id": np.arange(n), "x1": x1, "x2": x2, "region": region, "spend": y})


def assert_json_safe(value: Any) -> None:
    json.dumps(value, allow_nan=False)


def check_common(result: TrainResult, n_rows: int) -> None:
    assert result.n_rows == n_rows
    assert result.split["n_train"] + result.split["n_holdout"] == n_rows - result.n_dropped_nan_target
    assert len(result.holdout) == result.split["n_holdout"] == len(result.holdout_predictions)
    assert list(result.holdout.columns) == ["customer_id", *result.features, result.target]
    assert set(result.metrics) == {"cv", "holdout", "baseline", "per_class"}
    assert set(result.metrics["cv"]) == set(METRICS_BY_TASK[result.task])
    for stats in result.metrics["cv"].values():
        assert set(stats) == {"mean", "std"} and stats["std"] >= 0
    assert result.cv_scheme["folds"] == 3 and result.cv_scheme["shuffle"] and result.cv_scheme["seed"] == 11
    assert [r["feature"] for r in result.feature_importance] and {r["feature"] for r in
                                                                   result.feature_importance} == set(result.features)
    means = [r["importance_mean"] for r in result.feature_importance]
    assert means == sorted(means, reverse=True)
    assert len(result.reference) == 100
    assert list(result.reference.columns[: len(result.features)]) == result.features
    assert "prediction" in result.reference.columns
    assert result.fit_seconds > 0
    summary = result.summary()
    assert_json_safe(summary)
    assert_json_safe(result.params)
    assert summary["estimator"] == result.estimator_class
    # the holdout frame + predictions reproduce exactly (the registry's smoke test)
    again = predict_frame(result.pipeline, result.holdout, result.features, result.task, result.classes)
    np.testing.assert_array_equal(again["prediction"].to_numpy(), result.holdout_predictions)


def beats_baseline(result: TrainResult, metric: str, margin: float) -> None:
    model = result.metrics["holdout"][metric]
    baseline = result.metrics["baseline"][metric]
    if higher_is_better(metric):
        assert model >= baseline + margin, (metric, model, baseline)
    else:
        assert model <= baseline - margin, (metric, model, baseline)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


def test_binary_hist_gradient_boosting() -> None:
    df = binary_frame()
    cfg = make_config("binary", "churned", HGB_CLF)
    result = train_model(cfg, df)
    check_common(result, len(df))
    assert result.features == ["x1", "x2", "noise", "plan", "active"]  # keys, target, ds excluded
    assert result.categorical_features == ["plan", "active"] and result.numeric_features == ["x1", "x2", "noise"]
    assert result.classes == [False, True]
    assert result.split["stratified"] and result.cv_scheme["kind"] == "StratifiedKFold"
    assert result.params["random_state"] == 11 and result.params["max_iter"] == 30
    beats_baseline(result, "roc_auc", 0.15)
    beats_baseline(result, "log_loss", 0.1)
    assert result.metrics["baseline"]["roc_auc"] == pytest.approx(0.5)
    assert result.metrics["cv"]["roc_auc"]["mean"] > 0.75
    assert set(result.metrics["per_class"]) == {"False", "True"}
    assert sum(c["support"] for c in result.metrics["per_class"].values()) == result.split["n_holdout"]
    assert {r["feature"] for r in result.feature_importance[:2]} == {"x1", "x2"}
    assert {"proba_False", "proba_True"} <= set(result.reference.columns)
    np.testing.assert_allclose(result.reference[["proba_False", "proba_True"]].sum(axis=1), 1.0)
    # no StandardScaler for tree models
    numeric_steps = result.pipeline.named_steps["preprocess"].named_transformers_["numeric"].named_steps
    assert "scale" not in numeric_steps


def test_binary_logistic_regression_scales_numeric_features() -> None:
    df = binary_frame(seed=5)
    cfg = make_config("binary", "churned", LOGREG, metrics={"primary": "average_precision"})
    result = train_model(cfg, df)
    check_common(result, len(df))
    numeric_steps = result.pipeline.named_steps["preprocess"].named_transformers_["numeric"].named_steps
    assert "scale" in numeric_steps
    assert result.primary_metric == "average_precision" and result.importance_metric == "average_precision"
    beats_baseline(result, "roc_auc", 0.2)
    beats_baseline(result, "average_precision", 0.1)
    assert result.metrics["holdout"]["accuracy"] > result.metrics["baseline"]["accuracy"]


def test_multiclass() -> None:
    df = multiclass_frame()
    cfg = make_config("multiclass", "tier", HGB_CLF)
    result = train_model(cfg, df)
    check_common(result, len(df))
    assert result.classes == ["bronze", "gold", "silver"]
    assert result.metrics["holdout"]["accuracy"] > 0.75
    beats_baseline(result, "f1_macro", 0.3)
    beats_baseline(result, "log_loss", 0.3)
    assert result.metrics["holdout"]["roc_auc_ovr"] > 0.85
    assert set(result.metrics["per_class"]) == {"bronze", "gold", "silver"}
    proba_cols = ["proba_bronze", "proba_gold", "proba_silver"]
    assert proba_cols == [c for c in result.reference.columns if c.startswith("proba_")]
    preds = predict_frame(result.pipeline, df.head(20), result.features, "multiclass", result.classes)
    assert list(preds.columns) == ["prediction", *proba_cols]
    assert preds.index.equals(df.head(20).index)
    assert set(preds["prediction"]) <= set(result.classes)


def test_regression() -> None:
    df = regression_frame()
    cfg = make_config("regression", "spend", HGB_REG)
    result = train_model(cfg, df)
    check_common(result, len(df))
    assert result.classes is None and result.metrics["per_class"] == {}
    assert not result.split["stratified"] and result.cv_scheme["kind"] == "KFold"
    assert result.metrics["holdout"]["r2"] > 0.8
    beats_baseline(result, "rmse", 1.0)
    beats_baseline(result, "mae", 1.0)
    assert abs(result.metrics["baseline"]["r2"]) < 0.1
    assert list(result.reference.columns) == [*result.features, "prediction"]
    assert result.feature_importance[0]["feature"] == "x1"
    assert result.feature_importance[0]["importance_mean"] > 0


def test_training_is_deterministic() -> None:
    df = binary_frame(n=300, seed=3)
    cfg = make_config("binary", "churned", HGB_CLF)
    first = train_model(cfg, df)
    second = train_model(cfg, df.copy())
    assert first.metrics == second.metrics
    assert first.params == second.params
    assert first.feature_importance == second.feature_importance
    np.testing.assert_array_equal(first.holdout_predictions, second.holdout_predictions)
    pd.testing.assert_frame_equal(first.reference, second.reference)
    pd.testing.assert_frame_equal(first.holdout, second.holdout)
    # another seed gives another split
    other = train_model(make_config("binary", "churned", HGB_CLF,
                                    training={"cv_folds": 3, "seed": 12, "test_size": 0.25}), df)
    assert not other.holdout["customer_id"].equals(first.holdout["customer_id"])


def test_rows_with_missing_target_are_dropped_and_counted() -> None:
    df = binary_frame(n=300)
    df["churned"] = df["churned"].astype(object)
    df.loc[[3, 50, 51, 120, 299], "churned"] = None
    df.loc[10, "churned"] = np.nan
    result = train_model(make_config("binary", "churned", HGB_CLF), df)
    assert result.n_rows == 300
    assert result.n_dropped_nan_target == 6
    assert result.split["n_train"] + result.split["n_holdout"] == 294
    assert result.classes == [False, True]
    assert not result.holdout["customer_id"].isin([3, 10, 50, 51, 120, 299]).any()
    assert result.summary()["n_dropped_nan_target"] == 6


def test_categorical_columns_and_unseen_categories() -> None:
    df = binary_frame(n=300, seed=4)
    df["plan"] = df["plan"].astype("category")
    df["segment"] = pd.array(np.where(df["x1"] > 0, "high", "low"), dtype="string")
    df.loc[::17, "segment"] = pd.NA
    df["visits"] = pd.array(np.arange(300) % 7, dtype="Int64")
    df.loc[::11, "visits"] = pd.NA
    df["zone"] = np.arange(300) % 4  # an int column declared categorical
    cfg = make_config("binary", "churned", LOGREG,
                      categorical_features=["plan", "active", "segment", "zone"])
    result = train_model(cfg, df)
    assert result.categorical_features == ["plan", "active", "segment", "zone"]
    assert result.numeric_features == ["x1", "x2", "noise", "visits"]
    assert result.feature_dtypes["visits"] == "int64" and result.feature_dtypes["segment"] == "string"

    new = df.head(4).copy()
    new["plan"] = pd.Categorical(["enterprise", None, "basic", "never-seen"])
    new["segment"] = pd.array(["unknown-segment", pd.NA, "high", "low"], dtype="string")
    new["zone"] = [99, 1, 2.0, 3]  # unseen int, and a float that equals a seen int
    new["active"] = [None, True, False, True]
    preds = predict_frame(result.pipeline, new, result.features, "binary", result.classes)
    assert len(preds) == 4 and preds["prediction"].isin([False, True]).all()
    np.testing.assert_allclose(preds[["proba_False", "proba_True"]].sum(axis=1), 1.0)
    assert preds.notna().all().all()

    # a float column that equals the training ints gives the same predictions
    same = df.head(10).copy()
    as_float = same.assign(zone=same["zone"].astype(float))
    pd.testing.assert_frame_equal(
        predict_frame(result.pipeline, same, result.features, "binary", result.classes),
        predict_frame(result.pipeline, as_float, result.features, "binary", result.classes),
    )


def test_categorical_as_strings_normalises_labels() -> None:
    frame = pd.DataFrame({
        "a": ["x", None, np.nan, "y"],
        "b": [True, False, None, True],
        "c": [1.0, 2.0, np.nan, 3.5],
        "d": pd.array(["p", pd.NA, "q", "p"], dtype="string"),
    })
    out = categorical_as_strings(frame)
    assert out.dtype == object and out.shape == (4, 4)
    assert list(out[:, 0][[0, 3]]) == ["x", "y"] and all(v != v for v in out[1:3, 0])
    assert list(out[[0, 1, 3], 1]) == ["True", "False", "True"] and out[2, 1] != out[2, 1]
    assert list(out[[0, 1, 3], 2]) == ["1", "2", "3.5"]
    assert out[1, 3] != out[1, 3] and out[0, 3] == "p"


def _onehot(result: TrainResult) -> Any:
    return result.pipeline.named_steps["preprocess"].named_transformers_["categorical"].named_steps["onehot"]


def test_category_grouping_only_when_a_fit_has_rare_categories() -> None:
    from sklearn.base import clone

    from airflow_mlops.training.trainer import ONE_HOT_MAX_CATEGORIES, ONE_HOT_MIN_FREQUENCY, _fit

    df = binary_frame(n=600, seed=5)
    cfg = make_config("binary", "churned", HGB_CLF)
    plain = train_model(cfg, df)  # every plan/active value is frequent: the plain encoder is used
    encoder = _onehot(plain)
    assert encoder.min_frequency is None and encoder.max_categories is None
    # ... and it encodes exactly like the grouping encoder would (same columns, same values)
    grouping = clone(plain.pipeline).set_params(
        preprocess__categorical__onehot__min_frequency=ONE_HOT_MIN_FREQUENCY,
        preprocess__categorical__onehot__max_categories=ONE_HOT_MAX_CATEGORIES)
    X, y = df[plain.features], df["churned"].to_numpy()
    grouped_pre = grouping.fit(X, y).named_steps["preprocess"]
    plain_pre = clone(plain.pipeline).set_params(
        preprocess__categorical__onehot__min_frequency=None,
        preprocess__categorical__onehot__max_categories=None).fit(X, y).named_steps["preprocess"]
    assert not any(c is not None for c in
                   grouped_pre.named_transformers_["categorical"].named_steps["onehot"].infrequent_categories_)
    np.testing.assert_array_equal(grouped_pre.transform(X), plain_pre.transform(X))
    assert list(grouped_pre.get_feature_names_out()) == list(plain_pre.get_feature_names_out())

    # a value seen fewer than ONE_HOT_MIN_FREQUENCY times: that fit groups it as infrequent
    rare = df.copy()
    rare.loc[: ONE_HOT_MIN_FREQUENCY - 2, "plan"] = "legacy"
    fitted = _fit(clone(plain.pipeline), rare[plain.features], rare["churned"].to_numpy(),
                  plain.categorical_features)
    onehot = fitted.named_steps["preprocess"].named_transformers_["categorical"].named_steps["onehot"]
    assert onehot.min_frequency == ONE_HOT_MIN_FREQUENCY and onehot.max_categories == ONE_HOT_MAX_CATEGORIES
    assert "legacy" in list(onehot.infrequent_categories_[0])

    # more distinct values than ONE_HOT_MAX_CATEGORIES: grouping is on as well
    wide = df.copy()
    wide["plan"] = [f"p{i % (ONE_HOT_MAX_CATEGORIES + 1)}" for i in range(len(wide))]
    fitted = _fit(clone(plain.pipeline), wide[plain.features], wide["churned"].to_numpy(),
                  plain.categorical_features)
    onehot = fitted.named_steps["preprocess"].named_transformers_["categorical"].named_steps["onehot"]
    assert onehot.max_categories == ONE_HOT_MAX_CATEGORIES
    assert len(onehot.get_feature_names_out()) <= ONE_HOT_MAX_CATEGORIES + 2  # plan (capped) + active


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_permutation_importance_on_encoded_columns_equals_raw_shuffles(task: str) -> None:
    from airflow_mlops.training.trainer import _encoded_groups, _importance

    if task == "binary":
        df, cfg = binary_frame(n=500, seed=8), make_config("binary", "churned", LOGREG)
    elif task == "multiclass":
        df, cfg = multiclass_frame(), make_config("multiclass", "tier", HGB_CLF)
    else:
        df, cfg = regression_frame(), make_config("regression", "spend", HGB_REG)
    result = train_model(cfg, df)
    hold = result.holdout
    groups = _encoded_groups(result.pipeline, result.features)
    assert groups is not None and set(groups) == set(result.features)
    width = result.pipeline[:-1].transform(hold[result.features].head(2)).shape[1]
    assert sorted(int(i) for cols in groups.values() for i in cols) == list(range(width))
    args = (result.pipeline, hold[result.features], hold[cfg.target].to_numpy(), task, result.classes,
            cfg.metrics.primary, 11)
    fast, metric = _importance(*args)
    raw, raw_metric = _importance(*args, encoded=False)
    assert metric == raw_metric and fast == raw
    assert fast == result.feature_importance and metric == result.importance_metric
    assert any(r["importance_mean"] > 0 for r in fast)


RF_CLF = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 20}}
XGB_CLF = {"class": "xgboost.XGBClassifier", "params": {"n_estimators": 20, "max_depth": 3}}
LGBM_CLF = {"class": "lightgbm.LGBMClassifier", "params": {"n_estimators": 20, "verbose": -1}}


def _xgboost_labels(df: pd.DataFrame, estimator: dict[str, Any]) -> pd.DataFrame:
    """xgboost learns only the labels 0..n-1: the tier names become their sorted positions."""
    if estimator is XGB_CLF:
        df = df.assign(tier=df["tier"].map({t: i for i, t in enumerate(sorted(df["tier"].unique()))}))
    return df


def test_xgboost_classifier_with_string_labels_is_a_config_error_naming_the_target() -> None:
    df, cfg = multiclass_frame(n=300, seed=2), make_config("multiclass", "tier", XGB_CLF)
    with pytest.raises(ConfigError) as err:
        train_model(cfg, df)
    assert err.value.field == "estimator.class"
    assert "'tier'" in str(err.value) and "'gold'" in str(err.value) and "0..2" in str(err.value)


@pytest.mark.parametrize("estimator", [HGB_CLF, LOGREG, RF_CLF, XGB_CLF, LGBM_CLF],
                         ids=["hgb", "logreg", "forest", "xgboost", "lightgbm"])
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_labels_from_one_probability_pass_equal_predict(task: str, estimator: dict[str, Any]) -> None:
    from airflow_mlops.training.predict import LABELS_FROM_PROBA, predict_labels

    if task == "binary":
        df, cfg = binary_frame(n=800, seed=9), make_config("binary", "churned", estimator)
    else:
        df = _xgboost_labels(multiclass_frame(n=800, seed=9), estimator)
        cfg = make_config("multiclass", "tier", estimator)
    result = train_model(cfg, df)
    final = result.pipeline[-1]
    assert f"{type(final).__module__}.{type(final).__qualname__}" in LABELS_FROM_PROBA
    X = df[result.features]
    pred, proba = predict_labels(result.pipeline, X, task, result.classes)
    np.testing.assert_array_equal(pred, result.pipeline.predict(X))
    assert pred.dtype == result.pipeline.predict(X).dtype
    # float32 libraries: as_float64_proba renormalises each row after the cast
    np.testing.assert_allclose(proba, result.pipeline.predict_proba(X), rtol=1e-6, atol=1e-7)
    assert proba.dtype == np.float64


@pytest.mark.parametrize("estimator", [HGB_CLF, XGB_CLF, LGBM_CLF], ids=["hgb", "xgboost", "lightgbm"])
def test_scorer_predicts_through_the_final_estimator_once_per_batch(estimator: dict[str, Any]) -> None:
    """The scorer's pipeline (preprocessing cached per batch) hands predict_labels its final estimator, so
    labels come from the one probability pass, not from a second pass of the trees through ``predict``."""
    import pyarrow as pa

    from airflow_mlops.scoring.scorer import Scorer
    from airflow_mlops.training.predict import final_step

    df, cfg = _xgboost_labels(multiclass_frame(n=600, seed=4), estimator), make_config("multiclass", "tier", estimator)
    result = train_model(cfg, df)
    scorer = Scorer("m", 1, {}, None, list(result.features), "multiclass", list(result.classes), pipeline=None)
    from airflow_mlops.scoring.scorer import _fast

    scorer.model = _fast(result.pipeline)
    final, Xt = final_step(scorer.model, df[result.features])
    assert final is result.pipeline[-1]
    np.testing.assert_array_equal(np.asarray(Xt), np.asarray(result.pipeline[:-1].transform(df[result.features])))
    scorer.model.reset()
    pred, out, _ = scorer.predict(pa.RecordBatch.from_pandas(df[result.features], preserve_index=False))
    np.testing.assert_array_equal(pred, result.pipeline.predict(df[result.features]))
    proba_cols = [c for c in out.columns if c.startswith("proba_")]
    np.testing.assert_allclose(out[proba_cols].to_numpy(), result.pipeline.predict_proba(df[result.features]),
                               rtol=1e-6, atol=1e-7)


def test_tied_probabilities_are_decided_by_predict() -> None:
    """A decision value of exactly 0 and one of +1e-17 both give p = 0.5 (a tie); predict says class 0
    for the first and class 1 for the second, and so must the labels derived from the probabilities."""
    from sklearn.linear_model import LogisticRegression

    from airflow_mlops.training.predict import predict_labels

    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 2))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    model.coef_[:] = 0.0
    for intercept, expected in ((0.0, 0), (1e-17, 1), (-1e-17, 0)):
        model.intercept_[:] = intercept
        proba = model.predict_proba(X)
        assert (proba == 0.5).all()  # every row is a tie
        pred, got_proba = predict_labels(model, X, "binary", [0, 1])
        np.testing.assert_array_equal(pred, model.predict(X))
        assert set(pred.tolist()) == {expected}
        np.testing.assert_array_equal(got_proba, proba)


@pytest.mark.parametrize("method", ["random", "halving"])
def test_hyperparameter_search_records_best_params(method: str) -> None:
    df = binary_frame(n=360, seed=6)
    space = {"learning_rate": {"distribution": "loguniform", "low": 0.02, "high": 0.3},
             "max_depth": [2, 3]}
    cfg = make_config("binary", "churned", {"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                                            "params": {"max_iter": 20}},
                      search={"method": method, "n_iter": 4, "space": space})
    result = train_model(cfg, df)
    assert result.best_params is not None and set(result.best_params) == {"learning_rate", "max_depth"}
    assert 0.02 <= result.best_params["learning_rate"] <= 0.3
    assert result.best_params["max_depth"] in (2, 3)
    # the final pipeline uses the best params
    assert result.params["max_depth"] == result.best_params["max_depth"]
    assert result.params["learning_rate"] == pytest.approx(result.best_params["learning_rate"])
    assert result.search is not None and result.search["method"] == method
    assert result.search["n_candidates"] >= 4 and result.search["n_failed"] == 0
    assert 0.5 < result.search["best_score"] <= 1.0
    if method == "halving":
        assert result.search["n_iterations"] >= 2
    beats_baseline(result, "roc_auc", 0.15)
    assert_json_safe(result.summary())
    # every trial is kept: parameters, CV mean/std in the metric's direction, fit time, rank
    trials = result.search["trials"]
    assert len(trials) == result.search["n_candidates"] and [t["trial"] for t in trials] == list(range(len(trials)))
    for t in trials:
        assert set(t["params"]) == {"learning_rate", "max_depth"} and t["fit_seconds"] > 0
        assert 0.0 <= t["cv_std"] and 0.5 < t["cv_mean"] <= 1.0 and t["rank"] >= 1
        assert (("iteration" in t) and ("n_resources" in t)) == (method == "halving")
    last_round = [t for t in trials if t.get("iteration", 0) == max(t.get("iteration", 0) for t in trials)]
    best = min(last_round, key=lambda t: t["rank"])
    assert best["params"] == result.best_params and best["cv_mean"] == pytest.approx(result.search["best_score"])
    from airflow_mlops.reports.html import evaluation_html

    report = evaluation_html({**result.summary(), "name": "m", "version": 1})
    assert f"Search trials ({method}, {len(trials)} candidates, CV roc_auc)" in report
    assert report.count("<tr>") >= len(trials)


def test_search_n_jobs_is_checked_and_used() -> None:
    space = {"max_depth": [2, 3]}
    cfg = make_config("binary", "churned", {"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                                            "params": {"max_iter": 10}},
                      search={"n_iter": 2, "space": space, "n_jobs": 2})
    assert cfg.search is not None and cfg.search.n_jobs == 2
    result = train_model(cfg, binary_frame(n=200, seed=2))
    assert len(result.search["trials"]) == 2
    with pytest.raises(ConfigError) as info:
        make_config("binary", "churned", HGB_CLF, search={"space": space, "n_jobs": 0})
    assert info.value.field == "search.n_jobs"


def test_config_errors_against_the_data() -> None:
    df = binary_frame(n=100)
    with pytest.raises(ConfigError) as info:
        train_model(make_config("binary", "churned", HGB_CLF, features=["x1", "missing_col"]), df)
    assert info.value.field == "features" and "missing_col" in str(info.value)
    with pytest.raises(ConfigError) as info:
        train_model(make_config("regression", "churned", HGB_REG), df)
    assert info.value.field == "task"
    with pytest.raises(ConfigError) as info:
        train_model(make_config("multiclass", "churned", HGB_CLF), df)
    assert info.value.field == "task"


def test_training_errors_for_unusable_data() -> None:
    df = multiclass_frame(n=60)
    df.loc[0, "tier"] = "platinum"  # a class with a single row
    with pytest.raises(TrainingError, match="platinum"):
        train_model(make_config("multiclass", "tier", HGB_CLF), df)
    with pytest.raises(TrainingError, match="rows"):
        train_model(make_config("multiclass", "tier", HGB_CLF), multiclass_frame(n=5))


def test_skops_roundtrip_needs_only_documented_custom_types() -> None:
    import skops.io as sio

    result = train_model(make_config("binary", "churned", LOGREG), binary_frame(n=200))
    payload = sio.dumps(result.pipeline)
    untrusted = sio.get_untrusted_types(data=payload)
    assert set(PIPELINE_CUSTOM_TYPES) <= set(untrusted)
    assert not [t for t in untrusted if t.startswith("airflow_mlops") and t not in PIPELINE_CUSTOM_TYPES]
    loaded = sio.loads(payload, trusted=untrusted)
    pd.testing.assert_frame_equal(
        predict_frame(loaded, result.holdout, result.features, "binary", result.classes),
        predict_frame(result.pipeline, result.holdout, result.features, "binary", result.classes),
    )


def test_library_versions() -> None:
    versions = library_versions()
    assert {"python", "sklearn", "pandas", "numpy", "pyarrow", "airflow_mlops"} <= set(versions)
    assert all(isinstance(v, str) and v for v in versions.values())


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


def test_binary_metrics_known_values() -> None:
    y_true = ["no", "yes", "yes", "no", "yes"]
    y_pred = ["no", "yes", "no", "no", "yes"]
    proba_yes = [0.1, 0.9, 0.4, 0.3, 0.8]
    out = compute_metrics("binary", y_true, y_pred, proba_yes, classes=["no", "yes"])
    assert list(out) == list(METRICS_BY_TASK["binary"])
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["precision"] == pytest.approx(1.0)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(0.8)
    assert out["roc_auc"] == pytest.approx(1.0)
    expected_ll = -np.mean(np.log([0.9, 0.9, 0.4, 0.7, 0.8]))
    assert out["log_loss"] == pytest.approx(expected_ll)
    assert all(type(v) is float for v in out.values())
    # undefined metrics are omitted, never NaN
    single = compute_metrics("binary", [1, 1], [1, 0], [0.9, 0.2], classes=[0, 1])
    assert "roc_auc" not in single and "average_precision" not in single and "accuracy" in single
    assert "roc_auc" not in compute_metrics("binary", [0, 1], [0, 1], classes=[0, 1])
    assert list(compute_metrics("binary", [0, 1], [0, 1], [0.2, 0.7], classes=[0, 1], names=["recall"])) == ["recall"]


def test_regression_and_multiclass_metrics() -> None:
    out = compute_metrics("regression", [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.0])
    assert out["rmse"] == pytest.approx(math.sqrt((0.25 + 1.0) / 4))
    assert out["mae"] == pytest.approx(1.5 / 4)
    assert out["r2"] == pytest.approx(1 - 1.25 / 5.0)
    classes = ["a", "b", "c"]
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    out = compute_metrics("multiclass", ["a", "b", "c", "b"], ["a", "b", "c", "a"], proba, classes)
    assert out["accuracy"] == pytest.approx(0.75)
    assert 0 < out["f1_macro"] < 1 and 0 < out["roc_auc_ovr"] <= 1 and out["log_loss"] > 0
    per_class = per_class_metrics(["a", "b", "c", "b"], ["a", "b", "c", "a"], classes)
    assert per_class["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert per_class["a"]["precision"] == 0.5
    assert_json_safe(per_class)


def test_metric_direction_and_ranges() -> None:
    assert higher_is_better("roc_auc") and higher_is_better("r2")
    assert not higher_is_better("rmse") and not higher_is_better("log_loss")
    assert not higher_is_better("latency_p95_ms") and not higher_is_better("peak_rss_mb")
    with pytest.raises(ValueError):
        higher_is_better("bogus")
    assert metric_range("accuracy") == (0.0, 1.0) and metric_range("r2")[1] == 1.0


def test_time_split_holds_out_the_last_days_and_chains_folds_forward() -> None:
    from airflow_mlops.training.splits import ForwardChainingSplit
    from airflow_mlops.training.trainer import TrainingError

    df = binary_frame(n=600, seed=4)
    days = np.array([f"2024-01-0{1 + i // 100}" for i in range(600)], dtype=object)  # 6 days x 100 rows
    shuffled = np.random.default_rng(0).permutation(600)  # rows arrive in any order
    df, days = df.iloc[shuffled].reset_index(drop=True), days[shuffled]
    df["churned"] = df["churned"].astype(object)
    df.loc[:4, "churned"] = None  # rows without a label are dropped with their dates
    cfg = make_config("binary", "churned", HGB_CLF, training={"split": "time", "holdout_days": 2, "cv_folds": 3,
                                                            "seed": 11, "reference_sample_size": 100})
    result = train_model(cfg, df, row_dates=days)
    labelled = ~df["churned"].isna().to_numpy()
    held = np.isin(days, ["2024-01-05", "2024-01-06"]) & labelled
    assert result.split == {"method": "time", "holdout_days": 2, "holdout_dates": ["2024-01-05", "2024-01-06"],
                            "train_dates": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
                            "n_train": int((~held & labelled).sum()), "n_holdout": int(held.sum())}
    assert sorted(result.holdout["customer_id"]) == sorted(df.loc[held, "customer_id"])
    assert result.cv_scheme == {"kind": "ForwardChainingSplit", "folds": 3, "shuffle": False}
    beats_baseline(result, "roc_auc", 0.1)
    # forward chaining: every validation row is later than (or on the day of the boundary with) every training row
    train_days = days[~held & labelled]
    folds = list(ForwardChainingSplit(train_days, 3).split(train_days))
    assert len(folds) == 3 and all(len(te) for _, te in folds)
    for tr, te in folds:
        assert train_days[tr].max() <= train_days[te].min() and not set(tr) & set(te)
    assert [len(tr) for tr, _ in folds] == sorted(len(tr) for tr, _ in folds)  # the past grows fold by fold
    # deterministic
    again = train_model(cfg, df, row_dates=days)
    assert again.metrics["holdout"] == result.metrics["holdout"]
    with pytest.raises(TrainingError, match="needs the partition date of every row"):
        train_model(cfg, df)
    with pytest.raises(TrainingError, match=r"data for 2 day\(s\) \(2024-01-01, 2024-01-02\)"):
        few = days.copy()
        few[:] = np.where(np.isin(days, ["2024-01-01", "2024-01-02", "2024-01-03"]), "2024-01-01", "2024-01-02")
        train_model(cfg, df, row_dates=few)


def test_time_split_config_is_checked() -> None:
    with pytest.raises(ConfigError) as info:
        make_config("binary", "churned", HGB_CLF, training={"split": "chronological"})
    assert info.value.field == "training.split"
    with pytest.raises(ConfigError) as info:
        make_config("binary", "churned", HGB_CLF, data={"dataset": "synthetic", "training_window_days": 3},
                    training={"split": "time", "holdout_days": 3})
    assert info.value.field == "training.holdout_days" and "leave no training day" in str(info.value)
    cfg = make_config("binary", "churned", HGB_CLF, training={"split": "time", "holdout_days": 2})
    assert (cfg.training.split, cfg.training.holdout_days) == ("time", 2)
    assert parse_model_config(cfg.to_dict()) == cfg
