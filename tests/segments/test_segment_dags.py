"""Segmented training and scoring DAGs under real Airflow (``dag.test()`` in a subprocess, SQLite,
temp AIRFLOW_HOME): train/promote/notify and score are mapped over the segment values."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from airflow_env import AirflowHome

from airflow_mlops.dag_factory import write_dag_file
from airflow_mlops.demo.data import churn_day, date_range
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import Dataset
from airflow_mlops.training.predict import predict_frame

pytestmark = pytest.mark.e2e

DAYS = date_range("2024-01-01", 3)
SCORE_DAY = "2024-01-04"
CONFIG = {
    "name": "segchurn", "owner": "ml@example.com",
    "data": {"dataset": "churn", "training_window_days": 3},
    "keys": ["customer_id"], "target": "churned",
    "features": ["tenure_months", "monthly_charges", "support_calls", "usage_gb", "contract"],
    "task": "binary",
    "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300}},
    "training": {"cv_folds": 2, "seed": 7, "reference_sample_size": 200},
    "metrics": {"primary": "roc_auc", "floors": {"roc_auc": 0.55}},
    "validation": {"suite": "infer"},
    "schedules": {"nightly_retraining": "0 2 * * *", "scoring": "@daily", "start_date": "2024-01-01"},
    "segments": {"column": "region", "min_rows": 200, "map_files": True},
}

RUN = textwrap.dedent("""
    import datetime as dt, json, sys
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    dag_folder, dag_id, ds = sys.argv[1:4]
    bag = DagBag(dag_folder=dag_folder)
    assert not bag.import_errors, bag.import_errors
    run = bag.dags[dag_id].test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.timezone.utc))
    with create_session() as s:
        tis = s.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id).all()
        out = {"state": str(run.state), "tis": sorted([ti.task_id, ti.map_index, str(ti.state)] for ti in tis),
               "xcom": {f"{x.task_id}[{x.map_index}].{x.key}": x.value for x in s.query(XComModel).filter(
                   XComModel.dag_id == dag_id, XComModel.run_id == run.run_id).all()}}
    print("RESULT " + json.dumps(out, default=str))
""")


def run_dag(af: AirflowHome, dags: str, dag_id: str, ds: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", RUN, dags, dag_id, ds], env=af.env, capture_output=True,
                          text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1][len("RESULT "):])
    out["log"] = proc.stdout[-4000:] + proc.stderr[-6000:]
    out["full_log"] = proc.stdout + proc.stderr
    return out


def xcom(value):
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("segdags")
    configs, dags = root / "configs", root / "dags"
    configs.mkdir()
    dags.mkdir()
    (configs / "segchurn.yaml").write_text(yaml.safe_dump(CONFIG))
    write_dag_file(str(configs / "segchurn.yaml"), str(dags))
    af = AirflowHome(root, configs=configs, extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    store = ArtifactStore(af.storage_uri)
    data = Dataset.for_name(store, "churn")
    for day in DAYS:
        data.write(day, churn_day(day, rows=400))
    return af, str(dags), store


def test_training_and_scoring_dags_map_over_segments(env):
    af, dags, store = env
    out = run_dag(af, dags, "segchurn_training", DAYS[-1])
    assert out["state"].endswith("success"), out["log"]
    tis = out["tis"]
    for task_id in ("segment.train", "segment.promote", "segment.notify"):
        assert [t for t in tis if t[0] == task_id] == [[task_id, i, "success"] for i in range(3)], tis
    assert ["list_segments", -1, "success"] in tis
    listed = {k.split(".", 1)[1]: xcom(v) for k, v in out["xcom"].items() if k.startswith("list_segments[-1].")}
    assert listed["return_value"] == ["east", "north", "south"]
    assert set(listed["rows"]) == {"east", "north", "south", "west"} and sum(listed["rows"].values()) == 1200
    assert [s["segment"] for s in listed["skipped"]] == ["west"]
    trained = {xcom(v)["segment"]: xcom(v) for k, v in out["xcom"].items() if k.startswith("segment.train[")
               and k.endswith(".return_value")}
    assert {s: t["model"] for s, t in trained.items()} == {
        "east": "segchurn__east", "north": "segchurn__north", "south": "segchurn__south"}
    reg = ModelRegistry(store)
    for seg in ("east", "north", "south"):
        assert reg.resolve(f"segchurn__{seg}", alias="champion") == 1
        meta = reg.get_metadata(f"segchurn__{seg}", 1)
        assert meta["dag_id"] == "segchurn_training" and meta["task_id"] == "segment.train"
        assert meta["training_data"]["segment"] == {"column": "region", "value": seg}
    assert not reg.exists("segchurn__west")

    # scoring: a partition of two files without west rows -> 3 segments x 2 files mapped, one merged output
    day = churn_day(SCORE_DAY, rows=500)
    day = day[day["region"] != "west"].reset_index(drop=True)
    Dataset.for_name(store, "churn").write(SCORE_DAY, [day.iloc[:250], day.iloc[250:]])
    out = run_dag(af, dags, "segchurn_batch_scoring", SCORE_DAY)
    assert out["state"].endswith("success"), out["log"]
    scores = [t for t in out["tis"] if t[0] == "score"]
    assert scores == [["score", i, "success"] for i in range(6)], out["tis"]
    assert ["merge", -1, "success"] in out["tis"]
    parts = [xcom(v) for k, v in out["xcom"].items() if k.startswith("score[") and k.endswith(".return_value")]
    assert sorted(p["segment"] for p in parts) == ["east", "east", "north", "north", "south", "south"]
    assert sum(p["rows"] for p in parts) == len(day)
    pred = Dataset(store, "predictions/segchurn").read(SCORE_DAY)
    assert len(pred) == len(day) and pred["customer_id"].is_unique and set(pred["scored_by"]) == {"champion"}
    merged = pred.merge(day, on="customer_id")
    for seg, group in merged.groupby("region"):
        assert set(group["model_name"]) == {f"segchurn__{seg}"}
        model, meta = reg.load_model(f"segchurn__{seg}", version=1)
        own = predict_frame(model, group, meta["features"], meta["task"], meta["classes"])
        np.testing.assert_allclose(group["proba_1"].to_numpy(), own["proba_1"].to_numpy(), rtol=1e-9)

    # a day with west rows: the plan fails naming the segment without a champion; nothing is written
    bad = "2024-01-05"
    Dataset.for_name(store, "churn").write(bad, churn_day(bad, rows=300))
    out = run_dag(af, dags, "segchurn_batch_scoring", bad)
    assert out["state"].endswith("failed")
    assert ["plan_segments", -1, "failed"] in out["tis"]
    assert "segchurn__west" in out["log"] and "Nothing was written" in out["log"]
    assert not Dataset(store, "predictions/segchurn").exists(bad)


def test_segment_approvals_wait_per_segment(env):
    """require_approval with segments: each segment's version passes the gate and waits in its own mapped
    wait_for_approval (deferred, the trigger run in line by dag.test); approved segments are promoted by
    promote_approved, a rejected one fails its wait naming who rejected it, the others are unaffected."""
    import threading
    import time

    af, dags, store = env
    cfg = {**CONFIG, "name": "segappr", "segments": {"column": "region", "min_rows": 200},
           "promotion": {"require_approval": True, "approval_poke_seconds": 1, "approval_timeout_hours": 0.1}}
    configs = af.configs
    (configs / "segappr.yaml").write_text(yaml.safe_dump(cfg))
    write_dag_file(str(configs / "segappr.yaml"), dags)
    reg = ModelRegistry(store)
    decisions = {"east": "approved", "north": "approved", "south": "rejected"}
    done: dict[str, str] = {}
    stop = threading.Event()

    def reviewer() -> None:  # decides once the gate of a segment's version has run (its promotion report)
        while not stop.is_set() and len(done) < len(decisions):
            for seg, status in decisions.items():
                key = f"registry/segappr__{seg}/versions/1/reports/promotion.json"
                if seg not in done and store.exists(key):
                    reg.approve(f"segappr__{seg}", 1, approver="reviewer", reason=f"{seg} reviewed", status=status)
                    done[seg] = status
            time.sleep(0.2)

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    try:
        out = run_dag(af, dags, "segappr_training", DAYS[-1])
    finally:
        stop.set()
        thread.join(10)
    assert done == decisions, out["log"]
    states = {(t[0], t[1]): t[2] for t in out["tis"]}
    order = ["east", "north", "south"]  # map indexes follow list_segments
    for i, seg in enumerate(order):
        gate = xcom(out["xcom"][f"segment.promote[{i}].return_value"])
        assert gate["awaiting_approval"] is True and gate["promote"] is False and gate["segment"] == seg
        if decisions[seg] == "approved":
            assert states[("segment.wait_for_approval", i)] == "success"
            assert states[("segment.promote_approved", i)] == "success"
            assert states[("segment.notify_approved", i)] == "success"
            assert reg.resolve(f"segappr__{seg}", alias="champion") == 1
        else:
            assert states[("segment.wait_for_approval", i)] == "failed"
            assert states[("segment.promote_approved", i)] == "upstream_failed"
            with pytest.raises(Exception, match="champion"):
                reg.resolve(f"segappr__{seg}", alias="champion")
    assert "segappr__south v1 was rejected by reviewer: south reviewed" in out["full_log"]
    assert out["state"].endswith("failed")  # a rejected approval fails the run, visibly


def test_approval_wait_is_skipped_unless_the_gate_awaits_approval(env):
    """The wait follows the gate's result: a version the gate kept as challenger, or one already champion,
    needs no approval; the sensor raises a skip (so promote_approved/notify_approved skip too)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from airflow_mlops.sensors.registry import ModelApprovalSensor

    af, dags, store = env

    class GateResult:  # the task instance's XCom lookup, as Airflow gives it to a task
        map_index = 1

        def __init__(self, value):
            self.value, self.asked = value, None

        def xcom_pull(self, task_ids, map_indexes):
            self.asked = (task_ids, map_indexes)
            return self.value

    sensor = ModelApprovalSensor(task_id="wait", promote_task_id="segment.promote", storage_uri=store.root,
                                 deferrable=True)
    rejected = GateResult({"model": "segx__north", "version": 4, "promote": False, "awaiting_approval": False,
                           "summary": "keep challenger: roc_auc 0.61 < floor 0.7"})
    with pytest.raises(AirflowSkipException, match=r"segx__north v4 did not pass the gate.*floor 0.7"):
        sensor.execute({"ti": rejected})
    assert rejected.asked == ("segment.promote", 1)  # the same segment's gate
    champion = GateResult({"model": "segx__north", "version": 5, "promote": True, "awaiting_approval": False})
    with pytest.raises(AirflowSkipException, match="already champion"):
        ModelApprovalSensor(task_id="wait", promote_task_id="segment.promote", storage_uri=store.root,
                            deferrable=True).execute({"ti": champion})
    skipped = GateResult({"segment": "west", "model": "segx__west", "skipped": "200 rows < min_rows 300"})
    with pytest.raises(AirflowSkipException, match="segment skipped"):
        ModelApprovalSensor(task_id="wait", promote_task_id="segment.promote", storage_uri=store.root,
                            deferrable=True).execute({"ti": skipped})
    with pytest.raises(ValueError, match="needs model= and version="):
        ModelApprovalSensor(task_id="wait", storage_uri=store.root)


def test_segmented_dag_shapes(tmp_path):
    """Without running: training maps one task group per segment (train -> promote -> notify of the same
    segment, so a failing segment does not block the others); scoring maps score and merges once."""
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    from airflow_mlops.dag_factory import build_dags_for_config

    path = tmp_path / "segchurn.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    dags = build_dags_for_config(str(path), storage_uri="file://" + str(tmp_path / "mlops"))
    train = dags["segchurn_training"]
    assert isinstance(train.task_group_dict["segment"], MappedTaskGroup)
    assert train.get_task("segment.promote").upstream_task_ids == {"segment.train", "list_segments"}
    assert train.get_task("segment.notify").upstream_task_ids == {"segment.promote", "list_segments"}
    assert train.get_task("list_segments").upstream_task_ids == {"validate"}
    score = dags["segchurn_batch_scoring"]
    assert score.get_task("score").upstream_task_ids == {"plan_segments"}
    assert score.get_task("merge").upstream_task_ids == {"score"}
    # without segments the DAGs keep their shape
    plain = {k: v for k, v in CONFIG.items() if k != "segments"}
    path.write_text(yaml.safe_dump(plain))
    dags = build_dags_for_config(str(path))
    assert set(dags["segchurn_training"].task_ids) == {"wait_for_data", "validate", "train", "promote", "notify"}
    assert set(dags["segchurn_batch_scoring"].task_ids) == {"wait_for_data", "validate", "score"}
