"""Bring your own model, end to end under real Airflow: XGBClassifier (binary), LGBMClassifier (multiclass, string
target and categoricals with missing values), CatBoostRegressor (regression) and a team's own estimator class in a
module beside the Dag files. Each config is written by ``cli init`` on real data and given its estimator section;
the ready-made Dags run with ``dag.test()`` (train -> gate -> score -> monitor). Then every version loads in a fresh
process trusting only the types its own config declared, a model file is refused under another model's trusted
types, and a worker without the team's module gets an error naming the module and the worker."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.adoption.adoption_datasets import SCORE_DAY, TRAIN_DAYS, breast_cancer, diabetes, penguins

HERE = Path(__file__).resolve().parent
RUN_DAGS = HERE.parent / "adoption" / "run_dags.py"

pytest.importorskip("xgboost")
pytest.importorskip("lightgbm")
pytest.importorskip("catboost")

#: name -> (dataset builder, target, estimator section, the types its versions must trust beyond scikit-learn's)
MODELS = {
    "bc_xgb": (breast_cancer, "target", {
        "class": "xgboost.XGBClassifier", "params": {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.2}},
        {"xgboost.sklearn.XGBClassifier", "xgboost.core.Booster"}),
    "penguins_lgbm": (penguins, "species", {
        "class": "lightgbm.LGBMClassifier",
        "params": {"n_estimators": 60, "min_child_samples": 5, "verbose": -1}},
        {"lightgbm.sklearn.LGBMClassifier", "lightgbm.basic.Booster", "collections.OrderedDict"}),
    "diabetes_cat": (diabetes, "target", {
        "class": "catboost.CatBoostRegressor",
        "params": {"iterations": 150, "depth": 4, "verbose": 0, "allow_writing_files": False}},
        {"catboost.core.CatBoostRegressor"}),
    "bc_team": (breast_cancer, "target", {
        "class": "team_models.ScaledCentroidClassifier", "params": {"temperature": 0.5}},
        {"team_models.ScaledCentroidClassifier"}),
    # the team's feature engineering: a preprocessing factory in front of a scikit-learn estimator, and a factory
    # building the whole Pipeline around an XGBoost regressor; their own class and function are declared
    "penguins_fe": (penguins, "species", {
        "class": "sklearn.ensemble.HistGradientBoostingClassifier", "params": {"max_iter": 60},
        "trusted_types": ["team_features.BillShape"]},
        {"team_features.BillShape"}),
    "diabetes_pipe": (diabetes, "target", {
        "class": "xgboost.XGBRegressor", "trusted_types": ["team_features.signed_log"]},
        {"xgboost.sklearn.XGBRegressor", "xgboost.core.Booster", "team_features.signed_log"}),
}
#: name -> the preprocess / pipeline section of its config
FACTORIES = {
    "penguins_fe": ("preprocess", {"factory": "team_features:penguin_features", "params": {"clip": 2.5}}),
    "diabetes_pipe": ("pipeline", {"factory": "team_features:diabetes_pipeline", "params": {"n_estimators": 60}}),
}
#: name -> the explanation method its scoring runs must use (explain.method auto)
EXPLAINED = {"penguins_lgbm": "native", "diabetes_cat": "native",
             # the factories' columns do not map back to input features: auto falls back to perturbation
             "penguins_fe": "perturbation", "diabetes_pipe": "perturbation"}
DAYS = [*TRAIN_DAYS, SCORE_DAY]


def _days(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    import numpy as np

    bounds = np.linspace(0, len(df), len(DAYS) + 1).astype(int)
    return {day: df.iloc[a:b].reset_index(drop=True) for day, a, b in zip(DAYS, bounds[:-1], bounds[1:])}


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    from airflow_env import AirflowHome

    from airflow_mlops.cli import main as cli

    root = tmp_path_factory.mktemp("byo")
    dags = root / "dags"
    (dags / "configs").mkdir(parents=True)
    for module in ("team_models.py", "team_features.py"):  # the team's modules, beside the Dag files
        shutil.copy(HERE / module, dags / module)
    af = AirflowHome(root, configs=dags / "configs", extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                                                                 "OMP_NUM_THREADS": "1"})
    frames = {}
    for name, (load, target, estimator, _) in MODELS.items():
        frames[name] = _days(load())
        location = root / "data" / name
        for day, df in frames[name].items():
            (location / f"ds={day}").mkdir(parents=True)
            df.to_parquet(location / f"ds={day}" / "part-0.parquet", index=False)
        assert cli(["init", "--data", f"file://{location}", "--target", target, "--name", name,
                    "--dags-folder", str(dags)]) == 0
        path = dags / "configs" / f"{name}.yaml"
        config = yaml.safe_load(path.read_text())
        config["estimator"] = estimator
        if name == "bc_xgb":  # an out-of-time holdout: the last day of the window, forward-chaining folds
            config.setdefault("training", {}).update(split="time", holdout_days=1)
        if name in EXPLAINED:
            config["explain"] = {"top_k": 2}
        if name in FACTORIES:
            config[FACTORIES[name][0]] = FACTORIES[name][1]
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    plan = [run for name in MODELS for run in ((f"{name}_training", TRAIN_DAYS[-1]),
                                                (f"{name}_batch_scoring", SCORE_DAY),
                                                (f"{name}_monitoring", SCORE_DAY))]
    (root / "plan.json").write_text(json.dumps(plan))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(RUN_DAGS), str(dags), str(root / "plan.json")], env=af.env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900, cwd=root)
    runs = {(r["dag_id"], r["ds"]): r for r in (json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
                                                if line.startswith("ADOPTION-RESULT "))}
    errors = [line for line in proc.stdout.splitlines() if line.startswith("ADOPTION-IMPORT-ERRORS ")]
    return {"af": af, "root": root, "dags": dags, "frames": frames, "runs": runs, "log": proc.stdout,
            "errors": errors, "seconds": round(time.monotonic() - start, 1)}


def _store(loop):
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore

    return ModelRegistry(ArtifactStore(loop["af"].storage_uri))


def test_the_loop_runs_for_every_library_and_the_teams_own_class(loop):
    assert loop["errors"] == ['ADOPTION-IMPORT-ERRORS {}'], loop["errors"]
    failed = {k: r for k, r in loop["runs"].items() if r["state"] != "success"}
    assert len(loop["runs"]) == 3 * len(MODELS) and not failed, f"{failed}\n{loop['log'][-8000:]}"
    registry = _store(loop)
    for name, (_, _, _, trusted) in MODELS.items():
        assert registry.get_aliases(name) == {"champion": 1}, name  # passed the gate, beat the naive baseline
        meta = registry.get_metadata(name, 1)
        assert set(meta["trusted_types"]) == trusted, (name, meta["trusted_types"])
        assert meta["profile"]["latency_ms_per_10k_rows"] > 0  # the fresh-process smoke test loaded and timed it
        if name == "bc_xgb":
            assert meta["split"]["method"] == "time" and meta["split"]["holdout_dates"] == [TRAIN_DAYS[-1]]
            assert meta["split"]["n_holdout"] == len(loop["frames"][name][TRAIN_DAYS[-1]])
            assert meta["cv_scheme"]["kind"] == "ForwardChainingSplit"
        # scored: one prediction per input row of the later day, in the prediction log
        log_frame = pd.read_parquet(Path(loop["af"].home / "mlops" / "predictions" / name / f"ds={SCORE_DAY}"))
        assert len(log_frame) == len(loop["frames"][name][SCORE_DAY]) and set(log_frame.model_version) == {1}
        if name in EXPLAINED:
            assert log_frame.explain_1_feature.notna().all() and log_frame.explain_2_value.notna().all()
            assert set(log_frame.explain_1_feature.astype(str)) <= set(meta["features"])
            manifest = json.loads((loop["af"].home / "mlops" / "predictions" / name / f"ds={SCORE_DAY}" / "_SUCCESS")
                                  .read_text())
            assert manifest["explain"]["method"]["method"] == EXPLAINED[name], manifest["explain"]
        drift = json.loads((loop["af"].home / "mlops" / "monitoring" / name / f"ds={SCORE_DAY}" / "drift.json")
                           .read_text())
        assert drift["version"] == 1 and drift["rows_scored_by_version"] == len(log_frame) and drift["n_features"] > 0


FRESH = r"""
import json, sys
import pandas as pd
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.training.predict import predict_frame
name, uri, data = sys.argv[1:4]
model, meta = ModelRegistry(ArtifactStore(uri)).load_model(name, alias="champion")
frame = pd.read_parquet(data)
out = predict_frame(model, frame, meta["features"], meta["task"], meta.get("classes"))
pred = out["prediction"]
values = pred.astype("float64").tolist() if meta["task"] == "regression" else pred.astype(str).tolist()
print("FRESH " + json.dumps([str(type(model[-1]).__module__), values]))
"""


def _fresh_load(loop, name: str, *, with_dags: bool) -> subprocess.CompletedProcess:
    env = dict(loop["af"].env)
    env["PYTHONPATH"] = str(loop["dags"]) if with_dags else ""
    data = loop["root"] / "data" / name / f"ds={SCORE_DAY}" / "part-0.parquet"
    return subprocess.run([sys.executable, "-c", FRESH, name, loop["af"].storage_uri, str(data)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=loop["root"])


@pytest.mark.parametrize("name", list(MODELS))
def test_each_version_loads_in_a_fresh_process_and_reproduces_the_prediction_log(loop, name):
    proc = _fresh_load(loop, name, with_dags=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, predictions = json.loads(next(line for line in proc.stdout.splitlines()
                                          if line.startswith("FRESH "))[6:])
    assert module.split(".")[0] == MODELS[name][2]["class"].split(".")[0]
    logged = pd.read_parquet(loop["af"].home / "mlops" / "predictions" / name / f"ds={SCORE_DAY}")
    keys = {"bc_xgb": "row_id", "bc_team": "row_id", "penguins_lgbm": "penguin_id", "diabetes_cat": "patient_id",
            "penguins_fe": "penguin_id", "diabetes_pipe": "patient_id"}
    frame = loop["frames"][name][SCORE_DAY]
    logged = logged.set_index(keys[name]).loc[frame[keys[name]]]
    if name in ("diabetes_cat", "diabetes_pipe"):
        assert [float(p) for p in predictions] == pytest.approx(logged.prediction.astype(float).tolist(), rel=1e-12)
    else:
        assert predictions == logged.prediction.astype(str).tolist()


def test_a_model_file_is_refused_under_another_models_trusted_types(loop):
    from airflow_mlops.registry.model_registry import UntrustedModelError, load_skops_bytes

    registry = _store(loop)
    team_bytes = registry.read_artifact("bc_team", 1, "model.skops")
    xgb_trusted = registry.get_metadata("bc_xgb", 1)["trusted_types"]
    with pytest.raises(UntrustedModelError, match=r"team_models\.ScaledCentroidClassifier"):
        load_skops_bytes(team_bytes, trusted_types=xgb_trusted, source="bc_team v1")
    lgbm_trusted = registry.get_metadata("penguins_lgbm", 1)["trusted_types"]
    with pytest.raises(UntrustedModelError, match=r"xgboost\.core\.Booster"):
        load_skops_bytes(registry.read_artifact("bc_xgb", 1, "model.skops"), trusted_types=lgbm_trusted)


def test_a_worker_without_the_teams_module_names_it_and_the_worker(loop):
    proc = _fresh_load(loop, "bc_team", with_dags=False)
    assert proc.returncode != 0
    assert "ModelImportError" in proc.stderr and "needs module 'team_models'" in proc.stderr
    assert f"on worker {socket.gethostname()}" in proc.stderr
