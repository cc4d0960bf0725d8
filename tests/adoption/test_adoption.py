"""Adoption suite: the whole loop (training -> batch scoring -> monitoring) of the ready-made Dags, under real
Airflow (``dag.test()``), on six real datasets that ship inside installed packages, each with the config
``python -m airflow_mlops.cli init`` wrote from its location and no hand edit. Table: docs/adoption.md.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest
from adoption_datasets import CORRUPT_DAY, DATASETS, SCORE_DAY, TABLE_KEY, TRAIN_DAYS

from airflow_mlops.evaluation.metrics import higher_is_better

pytestmark = pytest.mark.e2e

BY_NAME = {spec.name: spec for spec in DATASETS}
CORRUPT = [spec for spec in DATASETS if spec.corrupt]
OK = "DagRunState.SUCCESS"


def _state(result: dict) -> str:
    return result["state"].lower().rsplit(".", 1)[-1]


def _metadata(adoption, model: str, version: int = 1) -> dict:
    path = adoption.store_root / "registry" / model / "versions" / str(version) / "metadata.json"
    return json.loads(path.read_text())


def _input(adoption, model: str, day: str) -> pd.DataFrame:
    return pd.read_parquet(adoption.data[model].removeprefix("file://") + f"/ds={day}")


def test_task_asked_for_only_where_the_target_is_ambiguous(adoption):
    for spec in DATASETS:
        answer = adoption.init[spec.name]
        assert answer["task"] == spec.task, spec.name
        assert answer["keys"] == [spec.load().columns[0]], spec.name  # the id column the suite added
        assert spec.target not in answer["features"] and answer["dags"] == [
            f"{spec.name}_training", f"{spec.name}_batch_scoring", f"{spec.name}_monitoring"]
        if spec.init_args:  # int-coded classes (iris 0-2, digits 0-9): init refuses and says what to pass
            assert "pass --task" in adoption.refusals[spec.name], adoption.refusals
        else:
            assert spec.name not in adoption.refusals, adoption.refusals[spec.name]
    assert adoption.init["penguins"]["categorical_features"] == ["island", "sex"]
    assert adoption.import_errors == []


@pytest.mark.parametrize("model", [spec.name for spec in DATASETS])
def test_training_beats_the_naive_baseline(adoption, model):
    run = adoption.runs[(f"{model}_training", TRAIN_DAYS[-1])]
    assert _state(run) == "success", (run, adoption.logs[(run["dag_id"], run["ds"])][-4000:])
    meta = _metadata(adoption, model)
    primary = meta["primary_metric"]
    holdout, baseline = meta["metrics"]["holdout"][primary], meta["metrics"]["baseline"][primary]
    trained_on = meta["training_data"]
    assert trained_on["partitions"] == TRAIN_DAYS and trained_on["window_end"] == TRAIN_DAYS[-1]
    assert trained_on["fingerprint"]["rows"] == sum(len(_input(adoption, model, d)) for d in TRAIN_DAYS)
    better = holdout > baseline if higher_is_better(primary) else holdout < baseline
    assert better, f"{model}: {primary} {holdout} vs naive baseline {baseline}"
    # the gate compared it with the naive baseline (a model that does not beat it never serves)
    log = adoption.logs[(run["dag_id"], run["ds"])]
    assert f"{model} v1 -> champion" in log and "no champion yet" in log
    decision = json.loads((adoption.store_root / "registry" / model / "versions" / "1" / "reports" /
                           "promotion.json").read_text())
    assert any(c["constraint"] == "beats_baseline" and c["passed"] for c in decision["checks"]), decision


@pytest.mark.parametrize("model", [spec.name for spec in DATASETS])
def test_clean_day_passes_validation_and_is_scored_one_row_per_input_row(adoption, model):
    from airflow_mlops.store.artifacts import ArtifactStore

    run = adoption.runs[(f"{model}_batch_scoring", SCORE_DAY)]
    assert _state(run) == "success" and set(run["tasks"].values()) == {"success"}, \
        (run, adoption.logs[(run["dag_id"], run["ds"])][-4000:])
    meta = _metadata(adoption, model)
    keys = meta["keys"]
    table = ArtifactStore("file://" + str(adoption.store_root)).read_table(f"predictions/{model}/ds={SCORE_DAY}")
    source = _input(adoption, model, SCORE_DAY)
    assert table.num_rows == len(source)
    classes = meta.get("classes") or []
    expected = [*keys, "prediction", *[f"proba_{c}" for c in classes], "shadow_prediction",
                "shadow_model_version", "model_name", "model_version", "scored_by", "logical_date", "scored_at",
                "run_id"]
    assert table.column_names == expected  # docs/prediction-log.md, in that order
    schema = table.schema
    assert schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    for name in ("model_name", "scored_by", "logical_date", "run_id"):
        assert pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(schema.field(name).type)
    assert schema.field("model_version").type == pa.int64()
    assert schema.field("shadow_model_version").type == pa.int64()
    df = table.to_pandas()
    assert sorted(df[keys[0]]) == sorted(source[keys[0]]) and df[keys[0]].is_unique
    assert set(df["model_name"]) == {model} and set(df["model_version"]) == {1}
    assert set(df["scored_by"]) == {"champion"} and set(df["logical_date"]) == {SCORE_DAY}
    assert df[["model_name", "model_version", "scored_by", "logical_date", "scored_at", "run_id"]].notna().all().all()
    if classes:
        proba = df[[f"proba_{c}" for c in classes]]
        assert ((proba.sum(axis=1) - 1).abs() < 1e-6).all()
        assert set(df["prediction"].astype(str)) <= {str(c) for c in classes}
    else:
        assert pa.types.is_floating(schema.field("prediction").type) and df["prediction"].notna().all()
    result = json.loads((adoption.store_root / "validation" / model / f"ds={SCORE_DAY}" / "result.json").read_text())
    assert result["success"] is True, result


@pytest.mark.parametrize("model", [spec.name for spec in DATASETS])
def test_monitoring_writes_drift_json(adoption, model):
    run = adoption.runs[(f"{model}_monitoring", SCORE_DAY)]
    assert _state(run) == "success", (run, adoption.logs[(run["dag_id"], run["ds"])][-4000:])
    drift = json.loads((adoption.store_root / "monitoring" / model / f"ds={SCORE_DAY}" / "drift.json").read_text())
    assert drift["input_uri"] == f"{adoption.data[model]}/ds={SCORE_DAY}"
    assert drift["model"] == model and drift["ds"] == SCORE_DAY
    assert drift["n_features"] == len(_metadata(adoption, model)["features"])
    assert drift["dataset_drift"] is False  # a clean day drawn like the training days: no false alarm


def _drift(adoption, model: str) -> dict:
    return json.loads((adoption.store_root / "monitoring" / model / f"ds={SCORE_DAY}" / "drift.json").read_text())


@pytest.mark.parametrize("model", [spec.name for spec in CORRUPT])
def test_corrupt_day_fails_cleanly_and_nothing_is_lost(adoption, model):
    spec = BY_NAME[model]
    run = adoption.runs[(f"{model}_batch_scoring", CORRUPT_DAY)]
    log = adoption.logs[(run["dag_id"], run["ds"])]
    assert _state(run) == "failed", run
    assert run["tasks"]["validate"] == "failed" and run["tasks"]["score"] != "success", run["tasks"]
    # the error names the file / partition and the column
    partition = f"{adoption.data[model]}/ds={CORRUPT_DAY}"
    quarantine = adoption.store_root / "quarantine" / model / f"ds={CORRUPT_DAY}"
    expected = {
        "renamed_column": [f"{partition}/part-0.parquet: column(s) '{spec.corrupt_column}' required by",
                           f"{spec.corrupt_column}_v2"],
        "empty_partition": [f"partition {partition} is empty (0 rows in 1 file(s))"],
        "numbers_as_strings": [f"validation of {partition} failed; the whole batch quarantined",
                               f"column '{spec.corrupt_column}': dtype object is not one of the expected types"],
    }[spec.corrupt]
    for text in expected:
        assert text in log, (text, log[-4000:])
    assert quarantine.exists() == (spec.corrupt == "numbers_as_strings")
    # nothing lost: every file of the registry and of the earlier prediction partitions is byte-identical
    assert adoption.hashes_after == adoption.hashes_before
    assert not (adoption.store_root / "predictions" / model / f"ds={CORRUPT_DAY}").exists()
    assert any(k.startswith(f"predictions/{model}/ds={SCORE_DAY}/") for k in adoption.hashes_before)


def test_results_table(adoption, request):
    """The table of docs/adoption.md: written as JSON next to the run and printed in the terminal summary."""
    rows = []
    for spec in DATASETS:
        meta = _metadata(adoption, spec.name)
        primary = meta["primary_metric"]
        rows.append({
            "dataset": spec.name, "package": spec.family, "task": meta["task"],
            "rows": {"train": meta["training_data"]["fingerprint"]["rows"],
                     "scored": len(_input(adoption, spec.name, SCORE_DAY)), "features": len(meta["features"])},
            "primary_metric": primary,
            "holdout": round(meta["metrics"]["holdout"][primary], 4),
            "naive_baseline": round(meta["metrics"]["baseline"][primary], 4),
            "seconds": {kind: adoption.runs[(f"{spec.name}_{kind}", day)]["seconds"]
                        for kind, day in (("training", TRAIN_DAYS[-1]), ("batch_scoring", SCORE_DAY),
                                          ("monitoring", SCORE_DAY))},
            "drift": {k: _drift(adoption, spec.name)[k] for k in ("n_drifted", "n_features", "dataset_drift")},
            "corrupt_day": spec.corrupt and {
                "variant": spec.corrupt,
                "scoring": _state(adoption.runs[(f"{spec.name}_batch_scoring", CORRUPT_DAY)]),
                "seconds": adoption.runs[(f"{spec.name}_batch_scoring", CORRUPT_DAY)]["seconds"]},
        })
    path = adoption.root / "adoption-table.json"
    path.write_text(json.dumps({"datasets": rows, "seconds": adoption.seconds}, indent=2))
    head = f"{'dataset':<14} {'task':<10} {'train/scored':>12} {'primary':<9} {'holdout':>8} {'baseline':>8} " \
           f"{'train s':>7} {'score s':>7} {'monitor s':>9} {'drifted':>7}  corrupt day"
    lines = [head]
    for r in rows:
        c = r["corrupt_day"]
        lines.append(f"{r['dataset']:<14} {r['task']:<10} {r['rows']['train']:>6}/{r['rows']['scored']:<5} "
                     f"{r['primary_metric']:<9} {r['holdout']:>8.4f} {r['naive_baseline']:>8.4f} "
                     f"{r['seconds']['training']:>7.1f} {r['seconds']['batch_scoring']:>7.1f} "
                     f"{r['seconds']['monitoring']:>9.1f} {r['drift']['n_drifted']:>3}/{r['drift']['n_features']:<3}  "
                     f"{c['variant'] + ': ' + c['scoring'] if c else '-'}")
    lines.append("seconds: " + ", ".join(f"{k} {v}" for k, v in adoption.seconds.items()))
    print("\n".join(lines))
    request.config.stash[TABLE_KEY] = {"lines": lines, "path": str(path)}
    assert len(rows) >= 6 and {r["task"] for r in rows} == {"binary", "multiclass", "regression"}
