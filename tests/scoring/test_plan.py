"""The scoring plan's rollout rules and the batch assembler, apart from any I/O: plain values, in-memory
Arrow batches and real fitted scikit-learn models (no registry, no store)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from airflow_mlops.config.model import CanaryConfig, ExplainConfig
from airflow_mlops.scoring.assemble import BatchAssembler
from airflow_mlops.scoring.plan import (
    ModelSlot,
    ScoringPlan,
    canary_conflict,
    kill_switch_state,
    rollout_settings,
    same_version_conflict,
    shadow_conflict,
)
from airflow_mlops.scoring.policies import FallbackScorer, canary_mask
from airflow_mlops.scoring.schema import physical_schema, prediction_log_schema
from airflow_mlops.scoring.scorer import Scorer
from tests.scoring.rollout_helpers import churn_config

FEATURES = ["x1", "x2"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n, dtype=np.int64), "x1": rng.normal(size=n), "x2": rng.normal(size=n)})


def _scorer(version: int, estimator, task: str = "binary") -> Scorer:
    frame = _frame(400, version)
    y = (frame.x1 + 0.5 * frame.x2 > 0).astype(np.int64) if task != "regression" else frame.x1 * 3 + frame.x2
    model = estimator.fit(frame[FEATURES], y)
    classes = [0, 1] if task != "regression" else None
    meta = {"task": task, "classes": classes, "features": FEATURES, "keys": ["id"],
            "feature_dtypes": {"x1": "float64", "x2": "float64"}}
    return Scorer("m", version, meta, model, FEATURES, task, classes, pipeline=model)


# ---------------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------------
def test_rollout_settings_caller_wins_over_the_config():
    cfg = dataclasses.replace(churn_config(), canary=CanaryConfig(alias="challenger", share=0.1), explain=None)
    assert rollout_settings(cfg, None, None, None) == ("challenger", 0.1, None)
    assert rollout_settings(cfg, "other", 0.25, None)[:2] == ("other", 0.25)
    assert rollout_settings(cfg, None, 0, None)[1] == 0.0  # share 0 turns the canary off
    assert rollout_settings(cfg, None, None, True)[2] == ExplainConfig()  # True without a section: defaults
    own = ExplainConfig(top_k=2)
    assert rollout_settings(dataclasses.replace(cfg, explain=own), None, None, True)[2] is own
    assert rollout_settings(dataclasses.replace(cfg, explain=own), None, None, False)[2] is None
    assert rollout_settings(dataclasses.replace(cfg, canary=None), None, None, None)[:2] == (None, 0.0)
    with pytest.raises(ValueError, match="canary_share must be between 0 and 1, got 1.5"):
        rollout_settings(cfg, None, 1.5, None)


def test_kill_switch_registry_flag_wins_then_the_callers_value():
    flag = {"by": "alice", "at": "2024-01-02T00:00:00+00:00", "reason": "bad labels", "disabled": True}
    assert kill_switch_state(flag, "false", "airflow_variable") == {
        "source": "registry", "by": "alice", "at": "2024-01-02T00:00:00+00:00", "reason": "bad labels"}
    assert kill_switch_state(None, "TRUE", "airflow_variable") == {
        "source": "airflow_variable", "by": None, "at": None, "reason": "TRUE"}
    for off in (None, "", "0", "off", "No", "null"):
        assert kill_switch_state(None, off) is None


def test_canary_must_be_another_version_predicting_the_same_way():
    main = _scorer(1, LogisticRegression())
    assert canary_conflict(_scorer(2, DecisionTreeClassifier(max_depth=3)), main) is None
    assert same_version_conflict("challenger", 2, main.version) is None
    assert same_version_conflict("challenger", 1, main.version) == (
        "alias 'challenger' points to v1, the version scoring every row already")
    other_classes = _scorer(2, LogisticRegression())
    other_classes.classes = [0, 1, 2]
    assert "does not predict like v1" in canary_conflict(other_classes, main)
    regression = _scorer(3, LinearRegression(), task="regression")
    assert "v3 (regression" in canary_conflict(regression, main)
    no_proba = FallbackScorer("m", 4, {"task": "binary"}, {"prediction": 0}, has_proba=False)
    no_proba.classes = [0, 1]  # type: ignore[attr-defined]
    assert "differ in predict_proba" in canary_conflict(no_proba, main)


def test_shadow_may_differ_but_not_between_regression_and_classification():
    main = _scorer(1, LogisticRegression())
    assert shadow_conflict(_scorer(2, DecisionTreeClassifier(max_depth=2)), main) is None
    assert shadow_conflict(_scorer(3, LinearRegression(), task="regression"), main) == (
        "shadow v3 is a regression model, v1 a binary model")


def test_drop_unfit_keeps_a_fitting_shadow_and_drops_a_canary_missing_a_column():
    main, shadow = _scorer(1, LogisticRegression()), _scorer(2, LogisticRegression())
    canary = _scorer(3, LogisticRegression())
    canary.meta = {**canary.meta, "features": [*FEATURES, "x3"], "feature_dtypes": {"x3": "float64"}}
    plan = ScoringPlan(name="m", ds="2024-01-02", chosen={"scored_by": "champion"}, scorer=main, keys=["id"],
                       shadow=ModelSlot("challenger", shadow, 2), canary=ModelSlot("canary", canary, 3),
                       canary_share=0.5)
    plan.drop_unfit(pa.schema([("id", pa.int64()), ("x1", pa.float64()), ("x2", pa.float64())]))
    assert plan.shadow.scorer is shadow and plan.shadow.error is None
    assert plan.canary.scorer is None
    assert plan.canary.error == "canary model does not fit the input: x3 (expected float64, found missing)"


# ---------------------------------------------------------------------------------------------
# assembler
# ---------------------------------------------------------------------------------------------
def _assemble(plan: ScoringPlan, batch: pa.RecordBatch, segment=None) -> tuple[pa.Table, BatchAssembler]:
    schema = prediction_log_schema(plan.scorer.meta, {"id": pa.int64()}, has_proba=plan.scorer.has_proba,
                                   explain_k=plan.explain_k)
    physical = physical_schema(schema)
    shadow = plan.shadow.scorer
    constants = {"model_name": "m", "model_version": plan.scorer.version, "scored_by": plan.scored_by,
                 "logical_date": plan.ds, "scored_at": pd.Timestamp("2024-01-03", tz="UTC"), "run_id": "r",
                 **({"shadow_prediction": None, "shadow_model_version": None} if shadow is None
                    else {"shadow_model_version": plan.shadow.version})}
    assembler = BatchAssembler(plan, schema, physical, constants, segment)
    out = assembler.assemble(batch)
    return (pa.Table.from_batches([out]) if out is not None else None), assembler


def test_canary_rows_are_scored_by_the_canary_and_shadow_beside_every_row():
    main, canary = _scorer(1, LogisticRegression()), _scorer(2, DecisionTreeClassifier(max_depth=2))
    shadow = _scorer(3, DecisionTreeClassifier(max_depth=1))
    plan = ScoringPlan(name="m", ds="2024-01-02", chosen={"scored_by": "champion"}, scorer=main, keys=["id"],
                       shadow=ModelSlot("challenger", shadow, 3), canary=ModelSlot("canary", canary, 2),
                       canary_share=0.3)
    frame = _frame(1000, 42)
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    table, assembler = _assemble(plan, batch)
    mask = np.asarray(canary_mask(batch, ["id"], 0.3, "m"))
    assert table.num_rows == 1000 and assembler.canary_rows == int(mask.sum()) > 200
    out = table.to_pandas().set_index("id").loc[frame.id]
    is_canary = out.model_version.to_numpy() == 2
    assert (is_canary == mask).all()
    assert set(out.scored_by[is_canary].astype(str)) == {"canary"}
    assert set(out.scored_by[~is_canary].astype(str)) == {"champion"}
    X = frame[FEATURES]
    expected = np.where(mask, canary.model.predict(X), main.model.predict(X))
    assert (out.prediction.to_numpy() == expected).all()
    proba = np.where(mask, canary.model.predict_proba(X)[:, 1], main.model.predict_proba(X)[:, 1])
    np.testing.assert_allclose(out.proba_1.to_numpy(), proba)
    assert (out.shadow_prediction.to_numpy() == shadow.model.predict(X)).all()
    assert (out.shadow_model_version == 3).all() and (out.model_name.astype(str) == "m").all()


def test_fallback_rows_have_null_explanations_and_a_segment_keeps_only_its_rows():
    meta = {"task": "binary", "classes": [0, 1], "features": [], "keys": ["id"]}
    fallback = FallbackScorer("m", 1, meta, {"prediction": 1, "proba": {"0": 0.25, "1": 0.75}}, has_proba=True)
    plan = ScoringPlan(name="m", ds="2024-01-02", chosen={"scored_by": "fallback"}, scorer=fallback, keys=["id"],
                       kill={"source": "registry", "by": "a", "at": None, "reason": "r"},
                       explain=ExplainConfig(top_k=2))
    frame = _frame(10, 1).assign(region=["east", "west"] * 5)
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    table, _ = _assemble(plan, batch, segment=("region", "west"))
    out = table.to_pandas()
    assert out.id.tolist() == [1, 3, 5, 7, 9]
    assert out.prediction.tolist() == [1] * 5 and out.proba_1.tolist() == [0.75] * 5
    assert out.explain_1_feature.isna().all() and out.explain_2_value.isna().all()
    assert set(out.scored_by.astype(str)) == {"fallback"}
    empty, _ = _assemble(plan, batch, segment=("region", "north"))
    assert empty is None
