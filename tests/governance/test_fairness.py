"""Fairness gate with fairlearn on real trained models: a planted group bias fails the gate with the
gap and the limit named; data without a group effect passes."""

from __future__ import annotations

import numpy as np
import pytest
from gov_helpers import DAYS, DS, churn_config

from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.gate import decide
from airflow_mlops.registry.lifecycle import promote_candidate, train_and_register
from airflow_mlops.store.datasets import Dataset

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract", "region", "group"]


def _write(store, *, biased: bool) -> None:
    data = Dataset.for_name(store, "churn_fair")
    for i, day in enumerate(DAYS):
        df = churn_day(day, rows=400)
        rng = np.random.default_rng(100 + i)
        df["group"] = rng.choice(["a", "b"], len(df)).astype(object)
        if biased:  # planted bias: group b is labelled positive far more often
            b = (df["group"] == "b").to_numpy()
            df.loc[b, "churned"] = (rng.random(int(b.sum())) < 0.7).astype("int64")
        data.write(day, df)


def _config(**fairness):
    return churn_config(data={"dataset": "churn_fair", "training_window_days": 7}, features=FEATURES,
                        sensitive_features=["group"],
                        fairness={"metric": "demographic_parity_difference", "max_gap": 0.1, **fairness})


def test_fairness_planted_group_bias_fails_the_gate_naming_gap_and_limit(store, registry):
    _write(store, biased=True)
    cfg = _config()
    summary = train_and_register(cfg, store, DS)
    fair = registry.get_metadata("churn", summary["version"])["fairness"]
    assert fair["metric"] == "demographic_parity_difference" and fair["sensitive_features"] == ["group"]
    groups = {g["group"]: g for g in fair["groups"]}
    assert set(groups) == {"group=a", "group=b"}
    assert groups["group=a"]["count"] + groups["group=b"]["count"] == fair["rows"]
    rates = [groups[g]["selection_rate"] for g in ("group=a", "group=b")]
    assert fair["gap"] == pytest.approx(abs(rates[1] - rates[0]))  # fairlearn's DP difference = rate gap
    assert fair["gap"] > 0.3 and groups["group=b"]["selection_rate"] > groups["group=a"]["selection_rate"]
    assert "roc_auc" in groups["group=a"] and fair["primary_gap"] is not None

    out = promote_candidate(cfg, store, summary["version"])
    assert out["promote"] is False and out["alias"] == "challenger"
    text = f"demographic_parity_difference {fair['gap']:.6g} > max_gap 0.1"
    assert out["broken"] == [text]
    ev = registry.audit_log("churn")[-1]
    assert text in ev["reason"] and "between the groups of group" in ev["reason"]
    assert ev["details"]["broken"][0]["value"] == fair["gap"] and ev["details"]["broken"][0]["limit"] == 0.1
    card = store.read_bytes("registry/churn/versions/1/reports/model_card.md").decode()
    assert "## Fairness (group)" in card and "| group=b |" in card and text in card


def test_fairness_unbiased_data_passes_the_gate(store, registry):
    _write(store, biased=False)
    cfg = _config(max_primary_gap=0.25)
    summary = train_and_register(cfg, store, DS)
    fair = registry.get_metadata("churn", summary["version"])["fairness"]
    assert fair["gap"] < 0.1 and fair["primary_gap"] < 0.25
    assert summary["fairness"]["gap"] == fair["gap"]
    out = promote_candidate(cfg, store, summary["version"])
    assert out["promote"] is True and out["alias"] == "champion" and out["broken"] == []
    checks = registry.audit_log("churn")[-1]["details"]["decision"]["checks"]
    fairness_checks = {c["metric"]: c for c in checks if c["constraint"] == "fairness"}
    assert fairness_checks["demographic_parity_difference"]["limit"] == 0.1
    assert fairness_checks["roc_auc_gap_between_groups"]["limit"] == 0.25
    assert all(c["passed"] for c in fairness_checks.values())


def test_fairness_primary_gap_limit_and_equalized_odds_in_decide():
    fair = {"metric": "equalized_odds_difference", "gap": 0.05, "max_gap": 0.2, "primary_metric": "roc_auc",
            "primary_gap": 0.17, "max_primary_gap": None, "sensitive_features": ["sex", "age_band"]}
    assert decide("roc_auc", {"roc_auc": 0.8}, fairness=fair).promote
    d = decide("roc_auc", {"roc_auc": 0.8}, fairness=fair, max_primary_gap=0.1)
    assert not d.promote
    assert d.violations == ["roc_auc_gap_between_groups 0.17 > max_primary_gap 0.1"]
    assert "between the groups of sex, age_band" in d.summary()
