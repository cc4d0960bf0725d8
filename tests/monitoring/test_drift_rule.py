"""The drift rule of the monitoring DAG (``drift.rule``) on a real trained model and its prediction log.

The reported case: the model's most important features shift strongly and the predictions drift with
them, while the share of drifted features stays under ``drift.threshold``. The default rule
(``combined``) flags it, names the clauses in drift.json, the XCom summary, the alert and the log; the
``share`` rule keeps the old verdict. drift.json, drift.html and the registry page count the same
columns.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import pytest
from perf_helpers import SCORED_DAYS, day_input

from airflow_mlops.monitoring.monitor import detect_drift, drift_alerts, verdict_text, xcom_summary
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

SHIFT_DAY = "2024-01-25"


def _top_numeric(store: ArtifactStore, version: int, n: int = 2) -> list[str]:
    meta = ModelRegistry(store).get_metadata("churn", version)
    numeric = set(meta["numeric_features"])
    return [r["feature"] for r in meta["feature_importance"] if r["feature"] in numeric][:n]


@pytest.fixture(scope="module")
def shifted_day(scored):
    """A scored day where only the two most important numeric features are shifted (+3 sd)."""
    from airflow_mlops.scoring.batch import score_partition

    root, cfg, version = scored
    store = ArtifactStore(root)
    top2 = _top_numeric(store, version)
    frame = day_input(SHIFT_DAY)
    for col in top2:
        frame[col] = frame[col] + 3 * frame[col].std()
    Dataset.for_name(store, "churn").write(SHIFT_DAY, frame)
    score_partition(cfg, store, SHIFT_DAY, version=version, run_id="test__rule")
    return store, cfg, version, top2


def test_default_rule_flags_top_features_and_prediction_drift_under_the_share(shifted_day, caplog):
    store, cfg, version, top2 = shifted_day
    assert cfg.drift.rule == "combined" and cfg.drift.top_k == 3  # the documented default
    with caplog.at_level(logging.INFO, logger="airflow_mlops.monitoring.monitor"):
        summary = detect_drift(cfg, store, SHIFT_DAY)
    assert summary["share_drifted"] < cfg.drift.threshold and summary["share_drift"] is False
    assert set(top2) <= {c["column"] for c in summary["columns"] if c["drifted"]}
    assert summary["dataset_drift"] is True
    verdict = summary["verdict"]
    assert "top_features" in verdict["fired"] and "share" not in verdict["fired"]
    assert set(top2) <= set(verdict["top_features"]["drifted"])
    assert verdict["prediction"]["fired"] is summary["prediction_drift"]["drifted"]
    # drift.json holds the same verdict
    on_disk = store.read_json(store.key_of(summary["summary_uri"]))
    assert on_disk["dataset_drift"] is True and on_disk["verdict"]["fired"] == verdict["fired"]
    # the XCom summary, the alert and the log name the clause(s)
    small = xcom_summary(summary)
    assert small["dataset_drift"] is True and small["fired"] == verdict["fired"] and small["rule"] == "combined"
    assert "top_features" in small["reason"]
    (alert,) = [a for a in summary["alerts"] if not a["slice"]]
    assert "rule combined" in alert["message"] and "top_features" in alert["message"]
    assert alert["details"]["fired"] == verdict["fired"]
    assert any("-> DRIFT" in r.getMessage() and "top_features" in r.getMessage() for r in caplog.records)


def test_share_rule_keeps_the_old_verdict(shifted_day):
    store, cfg, _, _ = shifted_day
    share_only = dataclasses.replace(cfg, drift=dataclasses.replace(cfg.drift, rule="share"))
    summary = detect_drift(share_only, store, SHIFT_DAY, html=False)
    assert summary["dataset_drift"] is False and summary["rule"] == "share"
    assert summary["verdict"]["fired"] == [] and summary["verdict"]["top_features"]["fired"] is True
    assert not [a for a in summary["alerts"] if not a["slice"]]
    assert verdict_text(summary).startswith("no clause fired: ")
    assert xcom_summary(summary)["fired"] == []


def test_quiet_day_no_clause_fires_and_counts_agree(scored):
    """A day from the training distribution: no clause fires; drift.json, drift.html and the
    registry page report the same counts (features only)."""
    from airflow_mlops.plugins.registry_view import _drift_counts

    root, cfg, _ = scored
    store = ArtifactStore(root)
    day = SCORED_DAYS[9]
    summary = detect_drift(cfg, store, day)
    assert summary["dataset_drift"] is False and summary["verdict"]["fired"] == [], summary["verdict"]["reason"]
    assert summary["verdict"]["top_features"]["features"]  # the version's importance was found
    assert summary["alerts"] == [] or all(a["slice"] for a in summary["alerts"])
    html = store.read_bytes(store.key_of(summary["report_uri"])).decode()
    counts = re.findall(r"Drift is detected for [\d.]+% of columns \((\d+) out of (\d+)\)", html)
    assert {(int(a), int(b)) for a, b in counts} == {(summary["n_drifted"], summary["n_features"])}
    assert f"{summary['n_drifted']} of {summary['n_features']} features drifted" in html
    assert "features only" in summary["counted"]
    page = _drift_counts(store.read_json(store.key_of(summary["summary_uri"])))
    assert (page["n_drifted"], page["n_features"]) == (summary["n_drifted"], summary["n_features"])
    assert page["fired"] == [] and page["rule"] == "combined" and page["prediction_drifted"] is False


def test_alert_and_verdict_text_of_a_summary_without_rule():
    """A drift.json written before drift rules (share only) still reads."""
    old = {"model": "m", "ds": "2024-01-02", "dataset_drift": True, "share_drifted": 0.6, "threshold": 0.5,
           "n_drifted": 3, "n_features": 5, "columns": [{"column": "a", "drifted": True}]}
    assert verdict_text(old) == "share 0.60 >= threshold 0.50"
    (alert,) = drift_alerts(old)
    assert "3/5 features drifted" in alert.message and "share 0.60 >= threshold 0.50" in alert.message
