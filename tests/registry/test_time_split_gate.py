"""With ``training.split: time`` the promotion gate compares champion and candidate on the same out-of-time
holdout: the candidate's holdout is the last ``holdout_days`` partitions of its window (later than every row it
trained on), and the champion's figure in the decision is the champion re-scored on exactly those rows.

Real code paths end to end, as the operators run them (no Airflow): :func:`train_and_register` on a file store
of dated partitions whose distribution trends over time, then :func:`promote_candidate`. The expected figures
are recomputed here with scikit-learn alone."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.registry.lifecycle import HOLDOUT_FILE, promote_candidate, train_and_register
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset

DAYS = date_range("2024-03-01", 10)  # 2024-03-01 .. 2024-03-10
WINDOW, HOLDOUT_DAYS = 5, 2
V1_END, V2_END = DAYS[WINDOW - 1], DAYS[-1]  # two windows that do not overlap: 03-01..03-05, 03-06..03-10
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract", "region"]


def _config():
    return parse_model_config({
        "name": "churn", "owner": "ml-platform@example.com",
        "data": {"dataset": "churn", "training_window_days": WINDOW},
        "keys": ["customer_id"], "target": "churned", "features": FEATURES, "task": "binary",
        "estimator": {"class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 30}},
        "training": {"split": "time", "holdout_days": HOLDOUT_DAYS, "cv_folds": 3, "seed": 7,
                     "reference_sample_size": 200},
        "metrics": {"primary": "roc_auc"},
    })


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    """Ten daily partitions drifting day by day (charges, usage, support calls and the contract mix move
    from the base distribution to the shifted one): a real time trend, so the two windows differ."""
    s = ArtifactStore("file://" + str(tmp_path / "store"))
    data = Dataset.for_name(s, "churn")
    for i, day in enumerate(DAYS):
        data.write(day, churn_day(day, rows=250, seed=3, drift=i / (len(DAYS) - 1)))
    return s


def _holdout(registry: ModelRegistry, version: int) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(registry.read_artifact("churn", version, HOLDOUT_FILE))).to_pandas()


def _roc_auc(registry: ModelRegistry, version: int, rows: pd.DataFrame) -> float:
    """The version's model from the registry, scored here with scikit-learn on ``rows``."""
    model, meta = registry.load_model("churn", version=version)
    positive = list(model.classes_).index(1)
    return float(roc_auc_score(rows["churned"].to_numpy() == 1,
                               model.predict_proba(rows[meta["features"]])[:, positive]))


def test_the_gate_compares_champion_and_candidate_on_the_candidates_out_of_time_holdout(store):
    from threadpoolctl import threadpool_limits

    cfg, registry = _config(), ModelRegistry(store)
    with threadpool_limits(limits=1):  # small shared machine: one native thread is faster and steadier
        train_and_register(cfg, store, V1_END)
        assert promote_candidate(cfg, store, 1)["alias"] == "champion"
        train_and_register(cfg, store, V2_END)
        out = promote_candidate(cfg, store, 2)

    # the data trend: the two windows are not the same population
    data = Dataset.for_name(store, "churn")
    parts = {day: data.read(day) for day in DAYS}
    early, late = (pd.concat([parts[d] for d in days]) for days in (DAYS[:WINDOW], DAYS[WINDOW:]))
    assert late["monthly_charges"].mean() - early["monthly_charges"].mean() > 4
    assert late["support_calls"].mean() - early["support_calls"].mean() > 0.3

    # (a) v2's holdout: exactly the rows of the last HOLDOUT_DAYS partitions of its window, all later than
    # every row v2 trained on
    v2_window = DAYS[WINDOW:]
    hold_days, train_days = v2_window[-HOLDOUT_DAYS:], v2_window[:-HOLDOUT_DAYS]
    meta2 = registry.get_metadata("churn", 2)
    assert meta2["training_data"]["partitions"] == v2_window
    assert meta2["split"]["method"] == "time"
    assert meta2["split"]["holdout_dates"] == hold_days and meta2["split"]["train_dates"] == train_days
    day_of = {int(k): day for day, df in parts.items() for k in df["customer_id"]}
    holdout = _holdout(registry, 2)
    expected = pd.concat([parts[d] for d in hold_days])
    assert holdout["customer_id"].is_unique
    assert sorted(holdout["customer_id"]) == sorted(expected["customer_id"])
    assert len(holdout) == meta2["split"]["n_holdout"] == len(expected)
    # the saved rows are the partitions' rows (features and label), not just their keys
    by_key = expected.set_index("customer_id").loc[holdout["customer_id"], [*FEATURES, "churned"]]
    pd.testing.assert_frame_equal(holdout[[*FEATURES, "churned"]].reset_index(drop=True),
                                  by_key.reset_index(drop=True), check_dtype=False)
    trained_on = pd.concat([parts[d] for d in train_days])
    assert meta2["split"]["n_train"] == len(trained_on)
    assert not set(trained_on["customer_id"]) & set(holdout["customer_id"])
    hold_dates = {day_of[int(k)] for k in holdout["customer_id"]}
    train_dates = {day_of[int(k)] for k in trained_on["customer_id"]}
    assert hold_dates == set(hold_days) and min(hold_dates) > max(train_dates)

    # (b) the champion (v1, trained on the earlier window) is scored on exactly those rows
    report = json.loads(registry.read_artifact("churn", 2, "reports/promotion.json", verify=False))
    assert out["champion_version"] == report["champion_version"] == 1
    champion_here = _roc_auc(registry, 1, holdout)
    assert out["champion_score"] == pytest.approx(champion_here, abs=1e-12)
    assert report["champion"]["roc_auc"] == pytest.approx(champion_here, abs=1e-12)
    # ... not its recorded figure on its own (earlier) holdout, which the gate falls back to only when the
    # champion cannot score the candidate's holdout
    meta1 = registry.get_metadata("churn", 1)
    assert meta1["split"]["holdout_dates"] == DAYS[WINDOW - HOLDOUT_DAYS:WINDOW]
    assert _roc_auc(registry, 1, _holdout(registry, 1)) == pytest.approx(meta1["metrics"]["holdout"]["roc_auc"])
    assert champion_here != pytest.approx(meta1["metrics"]["holdout"]["roc_auc"], abs=1e-6)

    # (c) the candidate's figure is its holdout metric, on the same rows
    candidate_here = _roc_auc(registry, 2, holdout)
    assert out["candidate_score"] == pytest.approx(meta2["metrics"]["holdout"]["roc_auc"], abs=1e-12)
    assert out["candidate_score"] == pytest.approx(candidate_here, abs=1e-12)
    assert report["candidate"]["roc_auc"] == pytest.approx(candidate_here, abs=1e-12)
    # the decision compares these two figures
    beats = next(c for c in report["checks"] if c["constraint"] == "beats_champion")
    assert (beats["value"], beats["limit"]) == (pytest.approx(candidate_here, abs=1e-12),
                                                pytest.approx(champion_here, abs=1e-12))
    moved = [e for e in registry.audit_log("churn")
             if e.get("to") == 2 and e.get("alias") in ("champion", "challenger")]
    assert len(moved) == 1 and moved[0]["alias"] == out["alias"]
    assert moved[0]["details"]["champion"]["roc_auc"] == pytest.approx(champion_here, abs=1e-12)
    assert moved[0]["details"]["candidate"]["roc_auc"] == pytest.approx(candidate_here, abs=1e-12)
