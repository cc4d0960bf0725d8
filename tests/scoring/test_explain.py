"""Explanations: per-row top-k feature contributions in the scoring output (shap / perturbation)."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pytest
from rollout_helpers import DS, churn_config, input_frame, read_output

from airflow_mlops.config.model import CanaryConfig, ExplainConfig
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.scoring.batch import score_partition
from airflow_mlops.scoring.explain import ExplainError, explain_columns, make_explainer, top_k

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract", "region"]


def explain_config(top: int, method: str = "auto", **kw):
    return dataclasses.replace(churn_config(), explain=ExplainConfig(top_k=top, method=method), **kw)


def contributions_table(out: pd.DataFrame, k: int) -> pd.DataFrame:
    """Row x feature matrix rebuilt from the explain_<i>_* columns (0 where not listed)."""
    m = pd.DataFrame(0.0, index=out.index, columns=FEATURES)
    for i in range(1, k + 1):
        for row, (f, v) in enumerate(zip(out[f"explain_{i}_feature"], out[f"explain_{i}_value"])):
            m.iat[row, FEATURES.index(f)] = v
    return m


def test_explain_tree_shap_columns_add_up_to_the_model_margin(store, caplog):
    with caplog.at_level(logging.INFO, logger="airflow_mlops.scoring.batch"):
        summary = score_partition(explain_config(6), store, DS, run_id="r", batch_size=128)
    out = read_output(store)
    assert list(out.columns[-12:]) == explain_columns(6)
    assert summary["explain"]["method"] == {"method": "shap", "explainer": "TreeExplainer"}
    assert summary["explain"]["seconds"] > 0 and summary["explain"]["rows"] == 500
    json.dumps(summary)
    assert any("explanations (shap, top 6)" in r.getMessage() for r in caplog.records)
    # every feature once per row, ordered by absolute contribution
    feats = out[[f"explain_{i}_feature" for i in range(1, 7)]].to_numpy()
    assert all(sorted(r) == sorted(FEATURES) for r in feats)
    vals = np.abs(out[[f"explain_{i}_value" for i in range(1, 7)]].to_numpy())
    assert (np.diff(vals, axis=1) <= 1e-12).all()
    # TreeSHAP is exact: contributions (one-hot columns summed per feature) + expected value = log-odds
    model, meta = ModelRegistry(store).load_model("churn", version=1)
    df = input_frame(DS).sort_values("customer_id").reset_index(drop=True)
    margin = model[-1]._raw_predict(model[:-1].transform(df[FEATURES]))[:, 0]
    import shap

    expected = float(np.ravel(shap.TreeExplainer(model[-1]).expected_value)[0])
    np.testing.assert_allclose(contributions_table(out, 6).sum(axis=1) + expected, margin, atol=1e-8)


def test_explain_top_k_subset_and_linear_model(store):
    score_partition(explain_config(2), store, DS, version=2, run_id="r")
    out = read_output(store)
    assert [c for c in out.columns if c.startswith("explain_")] == explain_columns(2)
    assert out["explain_1_feature"].notna().all() and out["explain_2_value"].notna().all()
    # LinearExplainer: contribution_j = coef . (x_j - background mean), summed over j's one-hot columns
    reg = ModelRegistry(store)
    model, meta = reg.load_model("churn", version=2)
    ref = reg.load_reference("churn", 2).head(1000)
    df = input_frame(DS).sort_values("customer_id").reset_index(drop=True)
    pre, est = model[:-1], model[-1]
    full = make_explainer(model, meta, ref, "shap")
    assert full.describe()["explainer"] == "LinearExplainer"
    contrib = full.contributions(df)
    logit = est.decision_function(pre.transform(df[FEATURES]))
    base = est.decision_function(pre.transform(ref[FEATURES]).mean(axis=0, keepdims=True))[0]
    np.testing.assert_allclose(contrib.sum(axis=1), logit - base, atol=1e-8)
    idx, val = top_k(contrib, 2)
    assert list(out["explain_1_feature"]) == [FEATURES[i] for i in idx[:, 0]]
    np.testing.assert_allclose(out["explain_2_value"], val[:, 1], atol=1e-12)


def test_explain_perturbation_method(store):
    summary = score_partition(explain_config(3, "perturbation"), store, DS, run_id="r")
    assert summary["explain"]["method"]["method"] == "perturbation"
    out = read_output(store)
    reg = ModelRegistry(store)
    model, _ = reg.load_model("churn", version=1)
    ref = reg.load_reference("churn", 1)
    df = input_frame(DS).sort_values("customer_id").reset_index(drop=True).head(20)
    p = model.predict_proba(df[FEATURES])[:, 1]
    for row in range(20):
        for i in range(1, 4):
            f = out.at[row, f"explain_{i}_feature"]
            x = df.loc[[row], FEATURES].copy()
            x[f] = ref[f].median() if f in ("tenure_months", "monthly_charges", "support_calls", "usage_gb") \
                else ref[f].mode().iloc[0]
            assert out.at[row, f"explain_{i}_value"] == pytest.approx(p[row] - model.predict_proba(x)[0, 1],
                                                                      abs=1e-12)


def test_explain_with_canary_explains_each_row_with_its_own_model(store):
    cfg = explain_config(3, canary=CanaryConfig(alias="challenger", share=0.4))
    summary = score_partition(cfg, store, DS, run_id="r")
    out = read_output(store)
    assert summary["explain"]["canary_method"]["explainer"] == "LinearExplainer"
    assert summary["explain"]["method"]["explainer"] == "TreeExplainer"
    reg = ModelRegistry(store)
    df = input_frame(DS).set_index("customer_id")
    for version in (1, 2):
        rows = out[out.model_version == version]
        assert len(rows) > 50
        model, meta = reg.load_model("churn", version=version)
        contrib = make_explainer(model, meta, reg.load_reference("churn", version), "auto").contributions(
            df.loc[rows["customer_id"]].reset_index())
        idx, val = top_k(contrib, 3)
        np.testing.assert_allclose(rows["explain_1_value"], val[:, 0], atol=1e-9)


def test_explain_method_shap_on_an_unsupported_model_is_a_clear_error():
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(3)).fit(X, np.arange(20) % 2)
    meta = {"name": "knn", "version": 1, "features": ["a", "b"], "task": "binary", "classes": [0, 1]}
    with pytest.raises(ExplainError, match="shap has no exact explainer for KNeighborsClassifier"):
        make_explainer(model, meta, X, "shap")
    auto = make_explainer(model, meta, X, "auto")  # documented fallback
    assert auto.describe()["method"] == "perturbation"
    c = auto.contributions(X.head(5))
    assert c.shape == (5, 2) and np.isfinite(c).all()


def test_explain_shap_approximate_matches_saabas_and_refuses_linear_models(store):
    summary = score_partition(explain_config(6, "shap_approximate"), store, DS, run_id="r", batch_size=128)
    assert summary["explain"]["method"] == {"method": "shap_approximate", "explainer": "TreeExplainer",
                                            "approximation": "Saabas (approximate=True)"}
    out = read_output(store)
    model, _ = ModelRegistry(store).load_model("churn", version=1)
    df = input_frame(DS).sort_values("customer_id").reset_index(drop=True)
    import shap

    xt = np.asarray(model[:-1].transform(df[FEATURES]), dtype="float64")
    saabas = np.asarray(shap.TreeExplainer(model[-1]).shap_values(xt, approximate=True, check_additivity=False))
    # one-hot columns summed per input feature, compared with the columns written by scoring
    got = contributions_table(out, 6).to_numpy()
    assert got.shape == (len(df), len(FEATURES))
    assert np.allclose(got.sum(axis=1), saabas.sum(axis=1), atol=1e-8)  # Saabas also adds up to the margin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lin = make_pipeline(StandardScaler(), LogisticRegression())
    meta = {"features": ["tenure_months"], "task": "binary", "classes": [0, 1], "name": "churn", "version": 9}
    with pytest.raises(ExplainError, match="shap_approximate' is for tree ensembles"):
        make_explainer(lin, meta, df, method="shap_approximate")
