"""Canary split: a stable, hash-chosen share of the rows is scored by another alias's version."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from rollout_helpers import CONFIG_PATH, DS, churn_config, read_output

from airflow_mlops.config.locations import Locations
from airflow_mlops.config.model import CanaryConfig
from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.scoring.batch import score_partition
from airflow_mlops.scoring.policies import canary_mask, key_hash

BIG = "2024-01-05"


def canary_config(share: float = 0.05):
    return dataclasses.replace(churn_config(), canary=CanaryConfig(alias="challenger", share=share))


def model_predictions(store, version: int, df: pd.DataFrame) -> pd.DataFrame:
    model, meta = ModelRegistry(store).load_model("churn", version=version)
    return pd.DataFrame({"customer_id": df["customer_id"].to_numpy(),
                         "expected": model.predict(df[meta["features"]]),
                         "expected_p1": model.predict_proba(df[meta["features"]])[:, 1]})


def test_canary_share_and_identical_assignment_on_rerun(store):
    cfg = canary_config(0.05)
    df = churn_day(BIG, rows=100_000, seed=11)
    Locations(cfg, store).input.write(BIG, [df.iloc[:60_000], df.iloc[60_000:]])

    first = score_partition(cfg, store, BIG, run_id="scheduled__a")
    out1 = read_output(store, BIG)
    assert len(out1) == 100_000 and first["rows"] == 100_000
    share = (out1["scored_by"] == "canary").mean()
    assert 0.04 <= share <= 0.06, share
    assert first["canary_rows"] == int((out1["scored_by"] == "canary").sum())
    assert (first["canary_alias"], first["canary_version"], first["canary_share"]) == ("challenger", 2, 0.05)
    assert first["canary_error"] is None
    json.dumps(first)

    # canary rows are scored (for real) by v2, the others by the champion v1
    assert set(out1["scored_by"]) == {"champion", "canary"}
    assert set(out1.loc[out1.scored_by == "canary", "model_version"]) == {2}
    assert set(out1.loc[out1.scored_by == "champion", "model_version"]) == {1}
    both = out1.merge(pd.concat([model_predictions(store, 1, df).assign(v=1),
                                 model_predictions(store, 2, df).assign(v=2)]),
                      left_on=["customer_id", "model_version"], right_on=["customer_id", "v"])
    assert len(both) == 100_000
    np.testing.assert_array_equal(both["prediction"], both["expected"])
    np.testing.assert_allclose(both["proba_1"], both["expected_p1"], rtol=1e-12)

    # a rerun (other run, other batch size: batches split rows differently) routes the same rows
    second = score_partition(cfg, store, BIG, run_id="scheduled__b", batch_size=7_777)
    out2 = read_output(store, BIG)
    assert second["canary_rows"] == first["canary_rows"]
    assert set(out2["run_id"]) == {"scheduled__b"}
    pd.testing.assert_frame_equal(out1[["customer_id", "scored_by", "model_version", "prediction"]],
                                  out2[["customer_id", "scored_by", "model_version", "prediction"]])

    # the assignment only depends on the key values: shuffled input, same canary set
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    mask = canary_mask(pa.Table.from_pandas(shuffled[["customer_id"]]), ["customer_id"], 0.05, "churn")
    assert set(shuffled.loc[mask, "customer_id"]) == set(out1.loc[out1.scored_by == "canary", "customer_id"])
    # raising the share only adds rows
    wider = canary_mask(pa.Table.from_pandas(shuffled[["customer_id"]]), ["customer_id"], 0.10, "churn")
    assert (wider | ~mask).all() and 0.09 <= wider.mean() <= 0.11


def test_canary_alias_missing_scores_every_row_with_the_champion(store, caplog):
    ModelRegistry(store).delete_alias("churn", "challenger", actor="tests", reason="test")
    with caplog.at_level(logging.WARNING, logger="airflow_mlops.scoring.batch"):
        summary = score_partition(canary_config(0.3), store, DS, run_id="r")
    out = read_output(store)
    assert set(out["scored_by"]) == {"champion"} and set(out["model_version"]) == {1} and len(out) == 500
    assert summary["canary_rows"] == 0 and summary["canary_version"] is None
    assert "no alias 'challenger'" in summary["canary_error"]
    assert any("canary alias 'challenger' of churn not used" in r.getMessage() for r in caplog.records)


def test_canary_from_operator_params(store):
    from airflow_mlops.operators.inference import BatchInferenceOperator

    op = BatchInferenceOperator(task_id="score", config_path=CONFIG_PATH, storage_uri=store.root,
                                canary_alias="challenger", canary_share=0.5)
    assert "canary_alias" in op.template_fields
    xcom = op.execute({"ds": DS, "run_id": "manual__canary"})
    out = read_output(store)
    n = int((out["scored_by"] == "canary").sum())
    assert xcom["canary_version"] == 2 and xcom["canary_rows"] == n and 150 < n < 350
    assert set(out.loc[out.scored_by == "canary", "model_version"]) == {2}
    # share 0 turns a configured canary off
    op0 = BatchInferenceOperator(task_id="score0", config_path=CONFIG_PATH, storage_uri=store.root,
                                 canary_alias="challenger", canary_share=0)
    assert op0.execute({"ds": DS, "run_id": "manual__canary"})["canary_rows"] == 0
    assert set(read_output(store)["scored_by"]) == {"champion"}


def test_key_hash_is_stable_across_processes_and_key_types():
    table = pa.table({"id": pa.array([1, 2, 3, None], pa.int32()), "region": ["a", "b", None, "é"]})
    h = key_hash(table, ["id", "region"], "churn")
    # same values with other widths/encodings hash the same
    same = pa.table({"id": pa.array([1, 2, 3, None], pa.int64()),
                     "region": pa.array(["a", "b", None, "é"]).dictionary_encode()})
    np.testing.assert_array_equal(h, key_hash(same, ["id", "region"], "churn"))
    assert len(set(h.tolist())) == 4
    assert not np.array_equal(h, key_hash(table, ["id", "region"], "other-model"))
    # a fresh interpreter (its own hash() salt) gives the same values
    code = ("import pyarrow as pa; from airflow_mlops.scoring.policies import key_hash; "
            "t = pa.table({'id': pa.array([1, 2, 3, None], pa.int32()), 'region': ['a', 'b', None, 'é']}); "
            "print(','.join(str(int(x)) for x in key_hash(t, ['id', 'region'], 'churn')))")
    env_out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert env_out == ",".join(str(int(x)) for x in h)
    with pytest.raises(ValueError, match="key columns"):
        canary_mask(table, [], 0.1)
