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


@pytest.mark.parametrize("library", list(CASES))
def test_native_contributions_add_up_to_the_raw_output(library):
    result, meta, frame = _trained(library)
    explainer = make_explainer(result.pipeline, meta, result.reference, "auto")
    assert isinstance(explainer, NativeExplainer) and explainer.describe()["method"] == "native"
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
