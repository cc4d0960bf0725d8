"""Native explanations of xgboost, LightGBM and CatBoost models: the library's own TreeSHAP, summed per input
feature, exactly additive to the model's raw output, chosen by ``explain.method: auto`` and equal to shap's
TreeExplainer where shap supports the model."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.demo.data import churn_day
from airflow_mlops.scoring.explain import NativeExplainer, make_explainer
from airflow_mlops.training.trainer import train_model

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())

CASES = {
    "xgboost": ({"class": "xgboost.XGBClassifier", "params": {"n_estimators": 30, "max_depth": 3}}, "binary"),
    "lightgbm": ({"class": "lightgbm.LGBMClassifier", "params": {"n_estimators": 30, "verbose": -1}}, "multiclass"),
    "catboost": ({"class": "catboost.CatBoostRegressor",
                  "params": {"iterations": 40, "depth": 4, "verbose": 0, "allow_writing_files": False}}, "regression"),
}


def _trained(library: str):
    pytest.importorskip(library)
    estimator, task = CASES[library]
    raw = copy.deepcopy(BASE)
    raw.pop("search", None)
    raw.update(estimator=estimator, task=task)
    if task == "multiclass":  # predict the contract type (3 classes) from the rest
        raw.update(target="contract", features=[f for f in raw["features"] if f != "contract"],
                   metrics={"primary": "accuracy"})
    if task == "regression":
        raw.update(target="monthly_charges", features=[f for f in raw["features"] if f != "monthly_charges"],
                   metrics={"primary": "rmse"})
    cfg = parse_model_config(raw)
    df = pd.concat([churn_day(d, rows=300, seed=5) for d in ("2024-01-01", "2024-01-02")], ignore_index=True)
    result = train_model(cfg, df, importance=False)
    meta = {"name": cfg.name, "version": 1, "features": result.features, "task": result.task,
            "classes": result.classes}
    return result, meta, churn_day("2024-01-03", rows=200, seed=6)


@pytest.mark.parametrize("method", ["auto", "native_approximate"])
@pytest.mark.parametrize("library", list(CASES))
def test_native_contributions_add_up_to_the_raw_output(library, method):
    result, meta, frame = _trained(library)
    explainer = make_explainer(result.pipeline, meta, result.reference, method)
    expected = "native" if method == "auto" else method
    assert isinstance(explainer, NativeExplainer) and explainer.describe()["method"] == expected
    pre, est = result.pipeline[:-1], result.pipeline[-1]
    # CatBoost gets its categorical features as string labels (estimator.categorical native): an object matrix
    xt = np.asarray(pre.transform(frame[result.features]), dtype=object if library == "catboost" else "float64")
    prediction = result.pipeline.predict(frame[result.features])
    contrib = explainer.contributions(frame, prediction=prediction)
    assert contrib.shape == (len(frame), len(result.features)) and np.isfinite(contrib).all()
    raw = explainer.raw_contributions(xt)  # (n, k, p + 1), last column the expected value
    if library == "xgboost":
        margin = est.predict(xt, output_margin=True)
    elif library == "lightgbm":
        margin = est.predict(xt, raw_score=True)
    else:
        margin = est.predict(xt)
    margin = np.asarray(margin, dtype="float64").reshape(len(xt), -1)
    if margin.shape[1] == 1:
        np.testing.assert_allclose(contrib.sum(axis=1) + raw[:, 0, -1], margin[:, 0], rtol=1e-4, atol=1e-4)
    else:  # multiclass: the predicted class's raw score
        idx = np.searchsorted(est.classes_, prediction)
        np.testing.assert_allclose(contrib.sum(axis=1) + raw[np.arange(len(xt)), idx, -1],
                                   margin[np.arange(len(xt)), idx], rtol=1e-4, atol=1e-4)
    # one-hot columns of a categorical feature are summed into it: the feature order is the model's
    assert explainer.group_matrix.sum(axis=1).tolist() == [1.0] * xt.shape[1]


def test_native_equals_shap_tree_explainer_on_xgboost():
    pytest.importorskip("shap")
    result, meta, frame = _trained("xgboost")
    native = make_explainer(result.pipeline, meta, result.reference, "native").contributions(frame)
    shap_values = make_explainer(result.pipeline, meta, result.reference, "shap").contributions(frame)
    np.testing.assert_allclose(native, shap_values, rtol=1e-3, atol=1e-4)


def test_native_is_refused_for_other_estimators():
    from airflow_mlops.scoring.explain import ExplainError

    raw = copy.deepcopy(BASE)
    raw.pop("search", None)
    cfg = parse_model_config(raw)
    df = churn_day("2024-01-01", rows=300, seed=5)
    result = train_model(cfg, df, importance=False)
    meta = {"name": "churn", "version": 1, "features": result.features, "task": result.task,
            "classes": result.classes}
    with pytest.raises(ExplainError, match="'native' is for xgboost, LightGBM and CatBoost"):
        make_explainer(result.pipeline, meta, result.reference, "native")


def test_native_approximate_equals_shap_approximate_on_xgboost():
    """xgboost's approx_contribs and shap's approximate=True are both Saabas attributions."""
    pytest.importorskip("shap")
    result, meta, frame = _trained("xgboost")
    fast = make_explainer(result.pipeline, meta, result.reference, "native_approximate")
    assert "approx_contribs=True" in fast.describe()["explainer"]
    shap_values = make_explainer(result.pipeline, meta, result.reference, "shap_approximate").contributions(frame)
    np.testing.assert_allclose(fast.contributions(frame), shap_values, rtol=1e-3, atol=1e-4)


def _saabas_by_walking(model, X: np.ndarray) -> np.ndarray:
    """Saabas attributions of a numeric LightGBM model computed row by row from ``trees_to_dataframe()`` (another
    view of the trees than the ``dump_model()`` the explainer reads): walk each row down each tree and credit the
    split feature with ``value(child) - value(node)``; the last column sums the root values."""
    trees = model.booster_.trees_to_dataframe()
    k = model.booster_.num_model_per_iteration()
    out = np.zeros((len(X), k, X.shape[1] + 1))
    for tree_index, nodes in trees.groupby("tree_index"):
        by_id = nodes.set_index("node_index")
        root = by_id.loc[by_id["node_depth"].idxmin()] if "node_depth" in by_id else by_id.iloc[0]
        for r, row in enumerate(X):
            node = root
            out[r, tree_index % k, -1] += node["value"]
            while isinstance(node["split_feature"], str):
                feature = int(node["split_feature"].replace("Column_", ""))
                child = by_id.loc[node["left_child"] if row[feature] <= node["threshold"] else node["right_child"]]
                out[r, tree_index % k, feature] += child["value"] - node["value"]
                node = child
    return out.reshape(len(X), -1)


@pytest.mark.parametrize("objective", ["binary", "multiclass"])
def test_lightgbm_leaf_tables_equal_a_walk_down_the_trees_and_add_up(objective):
    lightgbm = pytest.importorskip("lightgbm")
    from airflow_mlops.scoring.explain import LeafContributions

    rng = np.random.default_rng(11)
    X = rng.normal(size=(600, 6))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1 if objective == "multiclass" else 0)
    model = lightgbm.LGBMClassifier(n_estimators=12, num_leaves=7, verbose=-1).fit(X, y)
    rows = X[:40]
    got = LeafContributions(model.booster_).contributions(model.predict(rows, pred_leaf=True))
    np.testing.assert_allclose(got, _saabas_by_walking(model, rows), rtol=1e-9, atol=1e-9)
    k = model.booster_.num_model_per_iteration()
    per_class = got.reshape(len(rows), k, -1)
    raw = np.asarray(model.predict(rows, raw_score=True)).reshape(len(rows), k)
    np.testing.assert_allclose(per_class.sum(axis=2), raw, rtol=1e-9, atol=1e-9)


def test_lightgbm_random_forest_leaf_tables_average_the_trees():
    """``boosting_type: rf`` averages its trees; so do the attributions, which then add up to the
    log-odds of the predicted probability."""
    lightgbm = pytest.importorskip("lightgbm")
    from airflow_mlops.scoring.explain import LeafContributions

    rng = np.random.default_rng(12)
    X = rng.normal(size=(800, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    model = lightgbm.LGBMClassifier(boosting_type="rf", n_estimators=15, num_leaves=9, bagging_freq=1,
                                    bagging_fraction=0.7, verbose=-1).fit(X, y)
    got = LeafContributions(model.booster_).contributions(model.predict(X[:50], pred_leaf=True))
    # the averaged trees give the probability (LightGBM's raw_score output is their sum in rf mode)
    np.testing.assert_allclose(1 / (1 + np.exp(-got.sum(axis=1))), model.predict_proba(X[:50])[:, 1], rtol=1e-9)
    np.testing.assert_allclose(got.sum(axis=1) * 15, model.predict(X[:50], raw_score=True), rtol=1e-9)


def test_shap_approximate_is_refused_for_lightgbm_when_the_explainer_is_made():
    pytest.importorskip("shap")
    from airflow_mlops.scoring.explain import ExplainError

    result, meta, _ = _trained("lightgbm")
    with pytest.raises(ExplainError, match="no approximate explainer for LightGBM.*native_approximate"):
        make_explainer(result.pipeline, meta, result.reference, "shap_approximate")
