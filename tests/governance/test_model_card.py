"""Model cards: written at registration, re-rendered after each decision and approval, never
touching the hashed artifacts; the "Model card" extra link on training and promotion tasks."""

from __future__ import annotations

import json

from gov_helpers import DS, churn_config

from airflow_mlops.registry.lifecycle import promote_candidate, train_and_register
from airflow_mlops.registry.model_card import CARD_HTML, CARD_MD


def test_model_card_lifecycle_and_hashes_stay_valid(store, registry, monkeypatch):
    cfg = churn_config(promotion={"require_approval": True})
    summary = train_and_register(cfg, store, DS)
    assert summary["model_card"] == registry.version_uri("churn", 1, CARD_HTML)
    meta = registry.get_metadata("churn", 1)
    assert CARD_MD not in meta["artifacts"] and CARD_HTML not in meta["artifacts"]  # not hashed: re-rendered

    card = store.read_bytes(f"registry/churn/versions/1/{CARD_MD}").decode()
    for expected in ("# Model card: churn v1", "| owner | ml-platform@example.com |",
                     "| intended use | Rank customers for retention offers. |", "| limitations | Synthetic data. |",
                     "| description | Probability that a customer cancels within 30 days. |",
                     f"| URI | {store.uri('data/churn')} |",
                     "| date window | 2023-12-27 .. 2024-01-02 (7 partitions) |",
                     f"| content hash | {meta['training_data']['fingerprint']['content_hash']} |",
                     "## Per-class metrics (holdout)", "## Feature importance (permutation on the holdout, roc_auc)",
                     f"| latency_ms_per_10k_rows | {meta['profile']['latency_ms_per_10k_rows']:.4g} |",
                     f"| model_bytes | {meta['profile']['model_bytes']} |", "peak_rss_mb (absolute)",
                     "no promotion decision yet", "| approval | pending |"):
        assert expected in card, expected
    holdout, baseline = meta["metrics"]["holdout"]["roc_auc"], meta["metrics"]["baseline"]["roc_auc"]
    assert f"| roc_auc (primary) | {holdout:.4g} | {baseline:.4g} |" in card
    top = meta["feature_importance"][0]["feature"]
    assert f"| {top} |" in card

    out = promote_candidate(cfg, store, 1)  # passes the gate, awaits approval
    assert out["alias"] == "challenger" and out["model_card"]
    card = store.read_bytes(f"registry/churn/versions/1/{CARD_MD}").decode()
    assert "passes the gate but awaits approval (pending)" in card and "| aliases | challenger |" in card

    registry.approve("churn", 1, approver="reviewer@example.com", reason="looked at the card")
    promote_candidate(cfg, store, 1, actor="reviewer@example.com")
    card = store.read_bytes(f"registry/churn/versions/1/{CARD_MD}").decode()
    assert "| approval | approved |" in card and "| aliases | challenger, champion |" in card
    assert "| reviewer@example.com | approve |" in card and "looked at the card" in card
    html = store.read_bytes(f"registry/churn/versions/1/{CARD_HTML}").decode()
    assert html.startswith("<!doctype html>") and "Model card: churn v1" in html and "reviewer@example.com" in html

    # every hashed artifact still verifies and the model loads after the re-renders
    for rel in meta["artifacts"]:
        registry.read_artifact("churn", 1, rel, verify=True)
    model, _ = registry.load_model("churn", version=1)
    assert hasattr(model, "predict_proba")
    digest = __import__("hashlib").sha256(store.read_bytes("registry/churn/versions/1/metadata.json")).hexdigest()
    assert f"metadata.json sha256 `{digest}`" in card

    # the "Model card" extra link of the training and promotion tasks
    from airflow_mlops import links

    monkeypatch.setenv("AIRFLOW__MLOPS__STORAGE_URI", store.root)
    summaries = {"train": json.loads(json.dumps(summary)), "promote": {"model": "churn", "version": 1}}
    monkeypatch.setattr(links, "task_summary", lambda ti_key: summaries.get(ti_key.task_id, {}))

    class Key:
        def __init__(self, task_id):
            self.task_id = task_id

    expected_url = "/mlops/files/registry/churn/versions/1/reports/model_card.html"
    assert links.ModelCardLink().get_link(None, ti_key=Key("train")) == expected_url
    assert links.ModelCardLink().get_link(None, ti_key=Key("promote")) == expected_url
    assert links.ModelCardLink().get_link(None, ti_key=Key("other")) == ""
    attached = {link.name: sorted(op.__name__ for op in link.operators) for link in links.plugin_links()}
    assert {"TrainModelOperator", "PromoteModelOperator"} <= set(attached["Model card"])
