"""Batch scoring (airflow_mlops.scoring.batch + BatchInferenceOperator) on real trained churn models.

Two versions are trained once per module (v1: the churn config's HistGradientBoosting, v2: a
LogisticRegression) into a template file:// store; each test scores a fresh copy of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_mlops.config.locations import Locations
from airflow_mlops.config.model import EstimatorConfig, FrozenDict
from airflow_mlops.config.parser import load_model_config
from airflow_mlops.demo.data import churn_day
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.scoring import batch as scoring
from airflow_mlops.scoring.batch import score_partition
from airflow_mlops.scoring.merge import merge_parts
from airflow_mlops.scoring.schema import SchemaMismatchError
from airflow_mlops.scoring.selection import ModelSelectionError
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import DataError, Dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_PATH = os.path.join(REPO, "dags", "configs", "churn.yaml")
DS = "2024-01-04"
TRAIN_DAYS = ["2024-01-01", "2024-01-02"]
LOG_TAIL = ["shadow_prediction", "shadow_model_version", "model_name", "model_version", "scored_by",
            "logical_date", "scored_at", "run_id"]
EXPECTED_COLUMNS = ["customer_id", "prediction", "proba_0", "proba_1", *LOG_TAIL]


def small_config():
    cfg = load_model_config(CONFIG_PATH)
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, training_window_days=2),
        training=dataclasses.replace(cfg.training, reference_sample_size=300),
    )


def input_frames(ds: str) -> list[pd.DataFrame]:
    """Two files per partition, disjoint customer ids."""
    a = churn_day(ds, rows=300)
    b = churn_day(ds, rows=200, seed=7)
    b["customer_id"] += 500
    return [a, b]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    """A file:// store with churn data (4 days) and two registered versions, no aliases."""
    from threadpoolctl import threadpool_limits

    from airflow_mlops.registry.lifecycle import train_and_register

    root = tmp_path_factory.mktemp("scoring-template") / "store"
    store = ArtifactStore("file://" + str(root))
    cfg = small_config()
    data = Locations(cfg, store).input
    for d in TRAIN_DAYS:
        data.write(d, churn_day(d, rows=500))
    data.write("2024-01-03", input_frames("2024-01-03"))
    data.write(DS, input_frames(DS))
    lr = dataclasses.replace(cfg, estimator=EstimatorConfig("sklearn.linear_model.LogisticRegression",
                                                            FrozenDict({"max_iter": 500})))
    with threadpool_limits(limits=1):
        assert train_and_register(cfg, store, TRAIN_DAYS[-1])["version"] == 1
        assert train_and_register(lr, store, TRAIN_DAYS[-1])["version"] == 2
    return str(root)


@pytest.fixture
def local(template, tmp_path) -> ArtifactStore:
    root = tmp_path / "store"
    shutil.copytree(template, root)
    store = ArtifactStore("file://" + str(root))
    ModelRegistry(store).set_alias("churn", "champion", 1, actor="tests")
    return store


@pytest.fixture
def config():
    return small_config()


def copy_store(src: ArtifactStore, dst: ArtifactStore) -> None:
    for key in src.list(""):
        dst.write_bytes(key, src.read_bytes(key))


def expected_predictions(store: ArtifactStore, version: int, ds: str = DS) -> pd.DataFrame:
    model, meta = ModelRegistry(store).load_model("churn", version=version)
    df = pd.concat(input_frames(ds), ignore_index=True)
    proba = model.predict_proba(df[meta["features"]])
    return pd.DataFrame({"customer_id": df["customer_id"], "prediction": model.predict(df[meta["features"]]),
                         "proba_1": proba[:, 1]}).sort_values("customer_id").reset_index(drop=True)


def read_output(store: ArtifactStore, key: str = f"predictions/churn/ds={DS}") -> pd.DataFrame:
    return store.read_table(key).to_pandas().sort_values("customer_id").reset_index(drop=True)


def no_staging_left(store: ArtifactStore) -> bool:
    base = store.local_path("predictions/churn")
    return not any(name.startswith(".staging-") for name in os.listdir(base))


# ----------------------------------------------------------------------------------------------
def test_roundtrip_prediction_log(store, template, config):
    """file:// and s3:// (moto server): schema, rows, keys, probabilities, model recorded."""
    src = ArtifactStore("file://" + template)
    copy_store(src, store)
    ModelRegistry(store).set_alias("churn", "champion", 1, actor="tests")

    summary = score_partition(config, store, DS, run_id="scheduled__2024-01-04", batch_size=128)

    assert summary["model"] == "churn" and summary["version"] == 1 and summary["scored_by"] == "champion"
    assert summary["selection"] == "alias" and summary["rows"] == 500 and summary["files"] == 2
    assert summary["output_uri"] == store.uri(f"predictions/churn/ds={DS}")
    assert summary["input_uri"] == store.uri(f"data/churn/ds={DS}")
    json.dumps(summary)  # XCom-safe

    table = store.read_table(f"predictions/churn/ds={DS}")
    assert table.column_names == EXPECTED_COLUMNS
    types = {f.name: f.type for f in table.schema}
    assert types["customer_id"] == pa.int64() and types["prediction"] == pa.int64()
    assert types["proba_0"] == types["proba_1"] == pa.float64()
    assert types["model_version"] == types["shadow_model_version"] == pa.int64()
    assert types["model_name"] == types["scored_by"] == types["logical_date"] == types["run_id"] == pa.string()
    assert types["scored_at"] == pa.timestamp("us", tz="UTC")

    out = table.to_pandas().sort_values("customer_id").reset_index(drop=True)
    assert len(out) == 500 and not out["customer_id"].duplicated().any()
    assert set(out["customer_id"]) == set(pd.concat(input_frames(DS))["customer_id"])
    assert out["proba_1"].between(0, 1).all() and out["proba_0"].between(0, 1).all()
    np.testing.assert_allclose(out["proba_0"] + out["proba_1"], 1.0)
    assert set(out["model_version"]) == {1} and set(out["model_name"]) == {"churn"}
    assert set(out["scored_by"]) == {"champion"} and set(out["logical_date"]) == {DS}
    assert set(out["run_id"]) == {"scheduled__2024-01-04"} and out["scored_at"].nunique() == 1
    assert out["shadow_prediction"].isna().all() and out["shadow_model_version"].isna().all()

    expected = expected_predictions(store, 1)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected["prediction"].to_numpy())
    np.testing.assert_allclose(out["proba_1"].to_numpy(), expected["proba_1"].to_numpy(), rtol=0, atol=1e-12)

    manifest = store.read_manifest(f"predictions/churn/ds={DS}")
    assert manifest["version"] == 1 and manifest["rows"] == 500 and len(manifest["files"]) == 2
    assert sorted(manifest["input_files"]) == Locations(config, store).input.files(DS)

    # fan-out parts + merge on the same backend give the same partition
    parts = [score_partition(config, store, DS, files=[f]) for f in scoring.partition_input_files(config, store, DS)]
    merge_parts(config, store, DS, parts)
    merged = read_output(store)
    cols = [c for c in EXPECTED_COLUMNS if c not in ("scored_at", "run_id", "shadow_prediction",
                                                      "shadow_model_version")]
    pd.testing.assert_frame_equal(merged[cols], out[cols])
    assert not [k for k in store.list("predictions/churn") if "/_parts/" in k]
    assert len(store.partition_files(f"predictions/churn/ds={DS}")) == 2


def test_rerun_replaces_exactly_the_partition(local, config):
    first = score_partition(config, local, DS)
    other = score_partition(config, local, "2024-01-03")
    before = read_output(local)
    second = score_partition(config, local, DS)
    after = read_output(local)

    assert Dataset(local, "predictions/churn").partitions() == ["2024-01-03", DS]
    assert len(local.partition_files(f"predictions/churn/ds={DS}")) == 2  # not 4: replaced, not appended
    assert [k for k in local.list(f"predictions/churn/ds={DS}") if k.endswith(".parquet")] == \
        local.partition_files(f"predictions/churn/ds={DS}")
    assert len(after) == 500 and after["customer_id"].tolist() == before["customer_id"].tolist()
    assert set(after["scored_at"]) != set(before["scored_at"]) and first["scored_at"] != second["scored_at"]
    pd.testing.assert_frame_equal(after[["customer_id", "prediction", "proba_1"]],
                                  before[["customer_id", "prediction", "proba_1"]])
    assert read_output(local, "predictions/churn/ds=2024-01-03")["scored_at"].iloc[0].isoformat() \
        == other["scored_at"]
    assert no_staging_left(local)


def test_failure_mid_write_keeps_previous_partition(local, config, monkeypatch):
    score_partition(config, local, DS)
    key = f"predictions/churn/ds={DS}"
    manifest, content = local.read_manifest(key), read_output(local)

    import airflow_mlops.training.predict as training

    real, calls = training.predict_frame, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two batches are already written to the new attempt
            raise RuntimeError("worker lost mid-write")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "predict_frame", flaky)
    with pytest.raises(RuntimeError, match="mid-write"):
        score_partition(config, local, DS, batch_size=50)
    assert len(calls) == 3
    assert local.read_manifest(key) == manifest
    pd.testing.assert_frame_equal(read_output(local), content)
    assert no_staging_left(local)


def test_killed_process_leaves_previous_partition(local, config):
    """A real crash (SIGKILL mid-write): the committed partition is untouched, the half-written
    attempt is invisible to readers."""
    score_partition(config, local, DS)
    key = f"predictions/churn/ds={DS}"
    manifest, content = local.read_manifest(key), read_output(local)
    script = textwrap.dedent(f"""
        import os, signal, dataclasses
        import airflow_mlops.training.predict as training
        from airflow_mlops.store.artifacts import ArtifactStore
        from airflow_mlops.config.parser import load_model_config
        from airflow_mlops.scoring.batch import score_partition
        real, n = training.predict_frame, [0]
        def dying(*a, **k):
            n[0] += 1
            if n[0] == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        training.predict_frame = dying
        cfg = load_model_config({CONFIG_PATH!r})
        score_partition(cfg, ArtifactStore({local.root!r}), {DS!r}, batch_size=40)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert local.read_manifest(key) == manifest
    pd.testing.assert_frame_equal(read_output(local), content)
    assert Dataset(local, "predictions/churn").partitions() == [DS]


def test_missing_feature_column_names_it_and_writes_nothing(local, config):
    frames = [f.drop(columns=["usage_gb", "customer_id"]) for f in input_frames(DS)]
    Locations(config, local).input.write("2024-01-05", frames)
    with pytest.raises(SchemaMismatchError) as err:
        score_partition(config, local, "2024-01-05")
    msg = str(err.value)
    assert "usage_gb" in msg and "customer_id" in msg and "nothing was written" in msg
    assert {(d["column"], d["found"]) for d in err.value.differences} >= {("usage_gb", "missing"),
                                                                           ("customer_id", "missing")}
    assert isinstance(err.value, DataError)
    assert local.list("predictions") == []


def test_wrong_dtypes_are_all_listed(local, config):
    frames = input_frames(DS)
    for f in frames:
        f["tenure_months"] = f["tenure_months"].astype(str)
        f["contract"] = np.arange(len(f))
    Locations(config, local).input.write("2024-01-05", frames)
    with pytest.raises(SchemaMismatchError) as err:
        score_partition(config, local, "2024-01-05")
    diffs = {d["column"]: d for d in err.value.differences}
    assert {"tenure_months", "contract"} <= set(diffs)
    assert "int64" in diffs["tenure_months"]["expected"] and "string" in diffs["tenure_months"]["found"]
    assert "string" in diffs["contract"]["expected"] and "int64" in diffs["contract"]["found"]
    assert "tenure_months" in str(err.value) and "contract" in str(err.value)
    assert local.list("predictions") == []


def test_champion_as_of_logical_date(local, config):
    registry = ModelRegistry(local)
    registry.set_alias("churn", "champion", 2, actor="tests")  # v1 (fixture) then v2
    # place the two alias changes at known times in the audit log
    key = "registry/churn/state.json"
    state = local.read_json(key)
    moves = [ev for ev in state["audit"] if ev.get("alias") == "champion"]
    assert [ev["to"] for ev in moves] == [1, 2]
    moves[0]["at"], moves[1]["at"] = "2024-01-10T12:00:00+00:00", "2024-01-20T12:00:00+00:00"
    local.write_bytes(key, registry._state_bytes("churn", state))  # re-signed: an unsigned edit would be refused
    data = Locations(config, local).input
    for d in ("2024-01-09", "2024-01-15", "2024-01-20"):
        data.write(d, churn_day(d, rows=100))

    mid = score_partition(config, local, "2024-01-15", as_of_logical_date=True)
    assert (mid["version"], mid["scored_by"], mid["selection"]) == (1, "champion", "alias_as_of")
    assert mid["as_of"].startswith("2024-01-15T23:59:59")
    assert set(read_output(local, "predictions/churn/ds=2024-01-15")["model_version"]) == {1}

    late = score_partition(config, local, "2024-01-20", as_of_logical_date=True)  # moved during that day
    assert late["version"] == 2
    assert score_partition(config, local, "2024-01-15")["version"] == 2  # without as_of: current champion
    assert score_partition(config, local, "2024-01-15", as_of="2024-01-12T00:00:00Z")["version"] == 1

    with pytest.raises(ModelSelectionError) as err:
        score_partition(config, local, "2024-01-09", as_of_logical_date=True)
    msg = str(err.value)
    assert "2024-01-09" in msg and "2024-01-10T12:00:00" in msg and "version=" in msg
    assert not local.exists("predictions/churn/ds=2024-01-09/_SUCCESS")

    fallback = score_partition(config, local, "2024-01-09", as_of_logical_date=True, if_alias_missing="first")
    assert (fallback["version"], fallback["scored_by"], fallback["selection"]) == (1, "first_version", "alias_first")
    assert set(read_output(local, "predictions/churn/ds=2024-01-09")["scored_by"]) == {"first_version"}

    pinned = score_partition(config, local, "2024-01-09", version=1)
    assert (pinned["version"], pinned["scored_by"], pinned["selection"]) == (1, "pinned", "version")
    assert set(read_output(local, "predictions/churn/ds=2024-01-09")["scored_by"]) == {"pinned"}


def test_shadow_columns(local, config):
    ModelRegistry(local).set_alias("churn", "challenger", 2, actor="tests")
    summary = score_partition(config, local, DS, shadow_alias="challenger")
    assert summary["shadow_version"] == 2 and summary["shadow_error"] is None and summary["version"] == 1
    out = read_output(local)
    assert out.columns.tolist() == EXPECTED_COLUMNS
    assert set(out["shadow_model_version"]) == {2} and set(out["model_version"]) == {1}
    np.testing.assert_array_equal(out["shadow_prediction"].to_numpy(),
                                  expected_predictions(local, 2)["prediction"].to_numpy())
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected_predictions(local, 1)["prediction"].to_numpy())
    with_shadow = local.read_table(f"predictions/churn/ds={DS}").schema

    missing = score_partition(config, local, DS, shadow_alias="no_such_alias")
    assert missing["shadow_version"] is None and "no_such_alias" in missing["shadow_error"]
    table = local.read_table(f"predictions/churn/ds={DS}")
    assert table.schema.equals(with_shadow)  # same schema, null shadow columns
    assert table.column("shadow_prediction").null_count == table.num_rows


def test_fanout_and_merge_equal_single_pass(local, config):
    single = score_partition(config, local, DS)
    expected = read_output(local)
    files = scoring.partition_input_files(config, local, DS)
    assert len(files) == 2 and files == Locations(config, local).input.files(DS)
    parts = [score_partition(config, local, DS, files=[f], batch_size=64) for f in files]
    assert all(p["part"] and "/_parts/ds=2024-01-04/" in p["output_key"] for p in parts)
    assert sum(p["rows"] for p in parts) == single["rows"]

    with pytest.raises(DataError, match="do not cover"):
        merge_parts(config, local, DS, parts[:1])
    merged = merge_parts(config, local, DS, parts)
    assert merged["rows"] == 500 and merged["parts"] == 2 and merged["version"] == 1
    got = read_output(local)
    cols = [c for c in EXPECTED_COLUMNS if c not in ("scored_at", "run_id")]
    pd.testing.assert_frame_equal(got[cols], expected[cols])
    assert not local.exists("predictions/churn/_parts")  # parts cleaned up
    assert Dataset(local, "predictions/churn").partitions() == [DS]

    # parts scored by different versions are refused
    p1 = score_partition(config, local, DS, files=[files[0]])
    p2 = score_partition(config, local, DS, files=[files[1]], version=2)
    with pytest.raises(DataError, match="different models"):
        merge_parts(config, local, DS, [p1, p2])
    with pytest.raises(DataError, match="not data files"):
        score_partition(config, local, DS, files=["data/churn/ds=2024-01-03/nope.parquet"])


def test_csv_input_same_predictions(local, config):
    csv = Dataset(local, "data/churn_csv", "csv")
    for i, frame in enumerate(input_frames(DS)):
        local.write_bytes(f"data/churn_csv/ds={DS}/part-{i}.csv", frame.to_csv(index=False).encode())
    summary = score_partition(config, local, DS, input_dataset=csv, batch_size=64)
    assert summary["rows"] == 500 and summary["input_uri"] == csv.uri(DS)
    out = read_output(local)
    expected = expected_predictions(local, 1)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected["prediction"].to_numpy())
    np.testing.assert_allclose(out["proba_1"].to_numpy(), expected["proba_1"].to_numpy(), atol=1e-9)


def test_unreadable_and_missing_input(local, config):
    with pytest.raises(DataError, match="no parquet files"):
        score_partition(config, local, "2030-01-01")
    local.write_bytes("data/churn/ds=2024-01-06/part-0.parquet", b"PAR1 not really parquet")
    with pytest.raises(DataError, match="not a readable parquet"):
        score_partition(config, local, "2024-01-06")
    assert local.list("predictions") == []


def test_operator_wraps_score_partition(local, config):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_mlops.operators.inference import BatchInferenceOperator

    op = BatchInferenceOperator(task_id="score", config_path=CONFIG_PATH, storage_uri=local.root,
                                version="{{ params.v }}", shadow_alias="challenger")
    assert {"version", "alias", "shadow_alias", "config_path", "ds"} <= set(op.template_fields)
    op.version = "2"  # as rendered
    xcom = op.execute({"ds": DS, "run_id": "manual__op"})
    assert xcom["version"] == 2 and xcom["scored_by"] == "pinned" and xcom["rows"] == 500
    assert set(read_output(local)["run_id"]) == {"manual__op"}
    json.dumps(xcom)

    frames = [f.drop(columns=["region"]) for f in input_frames(DS)]
    Locations(config, local).input.write("2024-01-07", frames)
    bad = BatchInferenceOperator(task_id="score2", config_path=CONFIG_PATH, storage_uri=local.root)
    with pytest.raises(AirflowFailException, match="region"):
        bad.execute({"ds": "2024-01-07", "run_id": "manual__op"})
    with pytest.raises(AirflowFailException, match="no alias 'nope'"):
        BatchInferenceOperator(task_id="s3", config_path=CONFIG_PATH, storage_uri=local.root,
                               alias="nope").execute({"ds": DS, "run_id": "r"})


def test_end_of_day_and_schema_helpers():
    from airflow_mlops.store.dates import end_of_day

    assert end_of_day("2024-02-29") == dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC)
    meta = {"keys": ["id"], "features": ["a", "b", "c"],
            "feature_dtypes": {"a": "double", "b": "string", "c": "bool"}}
    ok = pa.schema([("id", pa.int32()), ("a", pa.int64()), ("b", pa.dictionary(pa.int32(), pa.string())),
                    ("c", pa.bool_())])
    assert scoring.check_input_schema(ok, meta) == []
    assert scoring.check_input_schema(pa.schema([("id", pa.int64()), ("a", pa.null()), ("b", pa.large_string()),
                                                 ("c", pa.bool_())]), meta) == []
    bad = scoring.check_input_schema(pa.schema([("a", pa.string()), ("b", pa.float64())]), meta)
    assert {d["column"] for d in bad} == {"id", "a", "b", "c"}
    schema = scoring.prediction_log_schema({"task": "binary", "classes": ["no", "yes"]}, {"id": pa.int32()})
    assert schema.names == ["id", "prediction", "proba_no", "proba_yes", *LOG_TAIL]
    assert schema.field("id").type == pa.int64() and schema.field("prediction").type == pa.string()
    reg = scoring.prediction_log_schema({"task": "regression"}, {"k": pa.string()})
    assert reg.names == ["k", "prediction", *LOG_TAIL] and reg.field("prediction").type == pa.float64()


def test_output_files_are_plain_parquet(local, config):
    """Other readers (pandas, pyarrow.dataset with hive partitions) see plain types, no parts."""
    import pyarrow.dataset as pads

    score_partition(config, local, DS)
    path = local.local_path("predictions/churn")
    files = [f for f in os.listdir(os.path.join(path, f"ds={DS}")) if f.endswith(".parquet")]
    schema = pq.read_schema(os.path.join(path, f"ds={DS}", files[0]))
    assert schema.field("run_id").type == pa.string() and schema.field("scored_at").type.tz == "UTC"
    dataset = pads.dataset(path, format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == 500


def test_scoring_dataset_from_config(local, config):
    """``data.scoring_dataset`` (features without the target) is what gets scored by default."""
    cfg = dataclasses.replace(config, data=dataclasses.replace(config.data, scoring_dataset="churn_to_score"))
    frames = [f.drop(columns=["churned"]) for f in input_frames(DS)]
    Dataset.for_name(local, "churn_to_score").write(DS, frames)
    summary = score_partition(cfg, local, DS)
    assert summary["input_uri"] == local.uri(f"data/churn_to_score/ds={DS}") and summary["rows"] == 500
    assert scoring.partition_input_files(cfg, local, DS)[0].startswith("data/churn_to_score/")
