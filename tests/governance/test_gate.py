"""Multi-constraint promotion gate on real trained models: a challenger that beats the champion on
the primary metric but breaks a resource ceiling or a per-class recall floor stays challenger."""

from __future__ import annotations

import pytest
from gov_helpers import DS, churn_config

from airflow_mlops.config.model import ConfigError
from airflow_mlops.registry.gate import constraint_values, decide
from airflow_mlops.registry.lifecycle import promote_candidate, train_and_register

WEAK = {"class": "sklearn.linear_model.LogisticRegression", "params": {}}


def test_challenger_beating_champion_but_breaking_latency_and_recall_stays_challenger(store, registry):
    weak = churn_config(features=["region", "usage_gb"], estimator=WEAK)
    train_and_register(weak, store, DS)
    assert promote_candidate(weak, store, 1)["alias"] == "champion"

    strict = churn_config(metrics={"primary": "roc_auc",
                                   "floors": {"roc_auc": 0.6, "recall_class_1": 0.95},
                                   "ceilings": {"latency_ms_per_10k_rows": 0.5, "model_size_mb": 100}})
    train_and_register(strict, store, DS)
    meta = registry.get_metadata("churn", 2)
    latency = meta["profile"]["latency_ms_per_10k_rows"]
    recall1 = meta["metrics"]["per_class"]["1"]["recall"]
    assert latency > 0.5 and recall1 < 0.95  # measured values, real limits

    out = promote_candidate(strict, store, 2)
    assert out["promote"] is False and out["alias"] == "challenger"
    assert registry.get_aliases("churn") == {"champion": 1, "challenger": 2}
    lat_text = f"latency_ms_per_10k_rows {latency:.6g} > ceiling 0.5"
    rec_text = f"recall_class_1 {recall1:.6g} < floor 0.95"
    assert out["broken"] == [rec_text, lat_text]  # the XCom lists each broken constraint
    assert "model_size_mb" not in " ".join(out["broken"])  # 0.x MB <= 100: holds

    ev = registry.audit_log("churn")[-1]
    assert ev["alias"] == "challenger" and ev["to"] == 2
    decision = ev["details"]["decision"]
    beats = [c for c in decision["checks"] if c["constraint"] == "beats_champion"][0]
    assert beats["passed"] is True and beats["value"] > beats["limit"]  # it does beat the champion
    broken = {b["metric"]: b for b in ev["details"]["broken"]}
    assert broken["latency_ms_per_10k_rows"]["value"] == latency and broken["latency_ms_per_10k_rows"]["limit"] == 0.5
    assert broken["recall_class_1"]["value"] == pytest.approx(recall1) and broken["recall_class_1"]["limit"] == 0.95
    assert lat_text in ev["reason"] and rec_text in ev["reason"]

    card = store.read_bytes("registry/churn/versions/2/reports/model_card.md").decode()
    # free text in the Markdown card has "<" and "&" as entities (no raw HTML can start)
    assert lat_text in card and rec_text.replace("<", "&lt;") in card and "| aliases | challenger |" in card
    html = store.read_bytes("registry/churn/versions/2/reports/model_card.html").decode()
    assert "latency_ms_per_10k_rows" in html and "&gt; ceiling 0.5" in html
    # the old champion's card shows it is still champion
    assert "| aliases | champion |" in store.read_bytes("registry/churn/versions/1/reports/model_card.md").decode()

    # relaxing the constraints (same candidate, same measured values) promotes it
    relaxed = churn_config(metrics={"primary": "roc_auc", "floors": {"recall_class_1": 0.05},
                                    "ceilings": {"latency_ms_per_10k_rows": latency * 100}})
    again = promote_candidate(relaxed, store, 2)
    assert again["promote"] is True and again["broken"] == []
    assert registry.get_aliases("churn")["champion"] == 2
    assert "| aliases | challenger, champion |" in store.read_bytes(
        "registry/churn/versions/2/reports/model_card.md").decode()


def test_constraint_values_and_decide_with_resource_metrics():
    meta = {"metrics": {"holdout": {"roc_auc": 0.8}, "per_class": {"0": {"recall": 0.9, "precision": 0.8, "f1": 0.85,
                                                                          "support": 10}}},
            "profile": {"latency_ms_per_10k_rows": 412.3, "model_size_mb": 3.0, "model_bytes": 3145728,
                        "peak_rss_mb": 900.0, "latency_ms": {"10000": 412.3}, "python": "3.11"}}
    values = constraint_values(meta)
    assert values == {"roc_auc": 0.8, "recall_class_0": 0.9, "precision_class_0": 0.8, "f1_class_0": 0.85,
                      "latency_ms_per_10k_rows": 412.3, "model_size_mb": 3.0, "peak_rss_mb": 900.0}
    d = decide("roc_auc", {"roc_auc": 0.8}, {"roc_auc": 0.7}, champion_version=1, constraint_values=values,
               ceilings={"latency_ms_per_10k_rows": 250, "peak_rss_mb": 1024, "peak_rss_delta_mb": 10})
    assert not d.promote
    assert d.violations == ["latency_ms_per_10k_rows 412.3 > ceiling 250",
                            "peak_rss_delta_mb not measured (ceiling 10)"]


def test_config_accepts_per_class_and_resource_names_only_where_they_fit():
    cfg = churn_config(metrics={"primary": "roc_auc", "floors": {"recall_class_1": 0.5, "precision_class_0": 0.5},
                                "ceilings": {"latency_ms_per_10k_rows": 250, "model_size_mb": 50, "peak_rss_mb": 2048}})
    assert dict(cfg.metrics.floors) == {"recall_class_1": 0.5, "precision_class_0": 0.5}
    with pytest.raises(ConfigError, match="metrics.ceilings.model_bytes") as err:
        churn_config(metrics={"primary": "roc_auc", "ceilings": {"model_bytes": 10}})
    assert "model_size_*" in str(err.value)
    with pytest.raises(ConfigError, match="metrics.floors.recall_class_1"):
        churn_config(metrics={"primary": "roc_auc", "floors": {"recall_class_1": 1.5}})
    with pytest.raises(ConfigError, match="metrics.floors.latency_ms_per_10k_rows"):
        churn_config(metrics={"primary": "roc_auc", "floors": {"latency_ms_per_10k_rows": 1}})
