"""MLflow benchmark: the cost of the MLflow mirror on a training run, same training with and without a server.

    python benchmarks/mlflow_overhead.py [--rows-per-day 2000] [--days 7] [--repeats 3]

A local ``mlflow server`` (:mod:`airflow_mlops.demo.mlflow_server`: SQLite backend store, local artifacts,
one worker) is started in a temporary directory, and the churn example data (``churn_day``, ``--days`` daily
partitions of ``--rows-per-day`` rows) written to a temporary ``file://`` store. Each measurement is one fresh
child process doing what ``TrainModelOperator.execute`` does (start the smoke-test interpreter, parse the
config, ``airflow_mlops.registry.lifecycle.train_and_register``) with a model name of its own (so every run
registers version 1 of a new model and creates its MLflow experiment and registered model):

* ``without``: ``AIRFLOW_CONN_MLFLOW_DEFAULT`` unset, nothing is logged;
* ``with``: ``AIRFLOW_CONN_MLFLOW_DEFAULT=http://127.0.0.1:<port>``: the version is logged as an MLflow run
  (params, metrics, tags, evaluation report and model card, one child run per search trial) and mirrored as an
  MLflow model version (skops format). The run must report ``mlflow_run_id``, and the parent checks every such
  run on the server afterwards (finished, reports attached, trial runs, model version): the benchmark cannot
  pass by logging nothing.

Fresh processes, so the first MLflow call's imports (the client, ``mlflow.sklearn``) count, as they do in a
training task, which is a fresh interpreter. ``--context task`` (the default) imports ``airflow.sdk`` before the
clock starts, as a task has it loaded; ``--context script`` does not, so the connection lookup of the ``with``
run imports Airflow itself (what a plain script calling ``train_and_register`` pays).

Scenarios: ``default`` (the churn config as it is: HistGradientBoosting, 3-fold CV) and ``search`` (the same with
``search:`` random, ``--trials`` trials: each one becomes a child run). One warm-up pair per scenario first (not
counted), then ``--repeats`` pairs, alternating which mode goes first. Printed per scenario: the time of
``train_and_register`` (median and min) with and without, the overhead (median of with - median of without, and
the median of the paired differences), the process wall time, and the MLflow step of the ``with`` runs taken
apart (timed in the child around the package's functions: preparing the files and the model to mirror, the client
import, logging the run and its trials, mirroring the model). Verdict: PASS when the median overhead is
<= ``--goal`` seconds (1.5). Exit code 0 either way; 1 only when a ``with`` run logged nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

START = "2024-01-01"
CONN_ENV = "AIRFLOW_CONN_MLFLOW_DEFAULT"
MODES = ("without", "with")


def make_config(scenario: str, days: int, trials: int) -> dict[str, Any]:
    import yaml

    cfg: dict[str, Any] = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
    cfg["data"].pop("example_rows", None)  # the data is written here, never seeded by the training
    cfg["data"]["training_window_days"] = days
    cfg.pop("search", None)
    if scenario == "search":
        cfg["search"] = {"method": "random", "n_iter": trials,
                         "space": {"learning_rate": [0.05, 0.1, 0.2], "max_leaf_nodes": [15, 31, 63]}}
    return cfg


def generate(root: Path, days: int, rows_per_day: int) -> str:
    """The churn partitions; returns the last day (the training's ``ds``)."""
    from airflow_mlops.demo.data import churn_day, date_range
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    data = Dataset.for_name(ArtifactStore("file://" + str(root / "store")), "churn")
    dates = list(date_range(START, days))
    for day in dates:
        data.write(day, churn_day(day, rows=rows_per_day))
    return str(dates[-1])


# ------------------------------------------------------------------------------------------------
# child: one training in a fresh interpreter
# ------------------------------------------------------------------------------------------------
def child(root: Path, scenario: str, name: str, ds: str, context: str) -> None:
    t_start = time.perf_counter()
    if context == "task":
        import airflow.sdk  # noqa: F401 - a training task has Airflow loaded before execute()
    import logging

    from airflow_mlops.registry.smoke import SmokeProcess

    steps: dict[str, float] = {}
    logged: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(f"{record.levelname} {record.getMessage()}")

    tracking_log = logging.getLogger("airflow_mlops.tracking.mlflow")
    tracking_log.addHandler(Capture(level=logging.INFO))
    tracking_log.setLevel(logging.INFO)

    with SmokeProcess() as smoke:  # as TrainModelOperator.execute: started before the config is parsed
        from airflow_mlops.config.parser import parse_model_config
        from airflow_mlops.registry.lifecycle import train_and_register
        from airflow_mlops.store.artifacts import ArtifactStore
        from airflow_mlops.tracking import mlflow as tracking

        _wrap_steps(tracking, steps)
        cfg = json.loads((root / f"config-{scenario}.json").read_text())
        cfg["name"] = name
        config = parse_model_config(cfg)
        store = ArtifactStore("file://" + str(root / "store"))
        t0 = time.perf_counter()
        summary = train_and_register(config, store, ds, {"dag_id": "benchmark", "run_id": name,
                                                                   "task_id": "train"}, smoke=smoke)
        seconds = time.perf_counter() - t0
    for line in logged:  # "MLflow: logged churn v1 as run ... in 1.23 s"
        if line.startswith("INFO MLflow: logged ") and line.endswith(" s"):
            steps["logged"] = float(line.rsplit(" in ", 1)[1][:-2])
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    print(json.dumps({"seconds": seconds, "in_child": time.perf_counter() - t_start, "peak_rss_mib": rss,
                      "mlflow_run_id": summary.get("mlflow_run_id"), "version": summary["version"],
                      "holdout": summary["holdout"], "steps": steps,
                      "warnings": [line for line in logged if not line.startswith("INFO")]}))


def _wrap_steps(tracking: ModuleType, steps: dict[str, float]) -> None:
    """Time the MLflow step's parts around the package's own functions (module globals of
    :mod:`airflow_mlops.tracking.mlflow`, looked up at call time): ``track_registration`` (everything the
    connection adds after the registration), ``log_training_run`` (with the client's import, done first here
    exactly as the function's own first line does) and ``mirror_model``. A function that is not there is not
    timed (the end-to-end figures do not depend on these)."""

    def timer(key: str, fn: Any, before: Any = None) -> Any:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            if before is not None:
                before()
                steps["client_import"] = time.perf_counter() - t
            try:
                return fn(*args, **kwargs)
            finally:
                steps[key] = time.perf_counter() - t
        return timed_call

    def client_import() -> None:
        from mlflow import MlflowClient  # noqa: F401 - log_training_run's first line: the client's import
        from mlflow.entities import Metric, Param, RunTag  # noqa: F401

    for key, before in (("track_registration", None), ("log_training_run", client_import), ("mirror_model", None)):
        fn = getattr(tracking, key, None)
        if fn is not None:
            setattr(tracking, key, timer(key, fn, before))


# ------------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------------
def timed(root: Path, scenario: str, mode: str, name: str, ds: str, context: str, url: str) -> dict[str, Any]:
    import resource

    env = {k: v for k, v in os.environ.items() if k not in (CONN_ENV, "AIRFLOW__MLOPS__MLFLOW_CONN_ID")}
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "2")
    env["AIRFLOW_HOME"] = str(root / "airflow-home")
    if mode == "with":
        env[CONN_ENV] = url
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", "--root", str(root), "--scenario", scenario,
                           "--name", name, "--ds", ds, "--context", context], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{scenario}/{mode} failed:\n{proc.stderr[-3000:]}")
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall"] = wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and the smoke-test process it waited for
    res["cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return res


def check_logged(url: str, name: str, run_id: str | None, trials: int) -> list[str]:
    """What is missing on the server for the ``with`` run of model ``name`` (empty: all there)."""
    if not run_id:
        return [f"{name}: no mlflow_run_id in the summary (nothing logged)"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    problems = []
    if run.info.status != "FINISHED" or run.data.tags.get("mlops.model") != name:
        problems.append(f"{name}: run {run_id} is {run.info.status}, tagged {run.data.tags.get('mlops.model')}")
    files = {a.path for a in client.list_artifacts(run_id, "reports")}
    if not {"reports/evaluation.html", "reports/model_card.md"} <= files:
        problems.append(f"{name}: run {run_id} lacks its reports ({sorted(files)})")
    if "holdout.roc_auc" not in run.data.metrics:
        problems.append(f"{name}: run {run_id} lacks holdout.roc_auc")
    children = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    if len(children) != trials:
        problems.append(f"{name}: {len(children)} trial run(s), expected {trials}")
    versions = client.search_model_versions(f"name = '{name}'")
    if [v.run_id for v in versions] != [run_id]:
        problems.append(f"{name}: MLflow model versions {[(v.version, v.run_id) for v in versions]}")
    return problems


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s ({min(values):5.2f})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows-per-day", type=int, default=2000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--repeats", type=int, default=3, help="measured pairs per scenario, after one warm-up pair")
    p.add_argument("--scenarios", default="default,search", help="comma-separated: default, search")
    p.add_argument("--trials", type=int, default=5, help="search trials of the search scenario (child runs)")
    p.add_argument("--context", choices=["task", "script"], default="task",
                   help="task: Airflow imported before the clock (a training task); script: a plain process")
    p.add_argument("--goal", type=float, default=1.5, help="seconds the MLflow mirror may add (median)")
    p.add_argument("--child", action="store_true")
    p.add_argument("--root")
    p.add_argument("--scenario")
    p.add_argument("--name")
    p.add_argument("--ds")
    a = p.parse_args()
    if a.child:
        child(Path(a.root), a.scenario, a.name, a.ds, a.context)
        return 0

    from airflow_mlops.demo.mlflow_server import MlflowServer, server_venv

    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="mlops-bench-mlflow-") as tmp:
        root = Path(tmp)
        print(f"generating {a.days} x {a.rows_per_day} churn rows ...", flush=True)
        ds = generate(root, a.days, a.rows_per_day)
        for scenario in scenarios:
            (root / f"config-{scenario}.json").write_text(json.dumps(make_config(scenario, a.days, a.trials)))
        server = MlflowServer(server_venv(), root / "mlflow")
        t = time.perf_counter()
        server.start()
        print(f"mlflow server at {server.url} (started in {time.perf_counter() - t:.1f} s); context: {a.context}; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        try:
            results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {m: [] for m in MODES} for s in scenarios}
            logged: list[tuple[str, str, dict[str, Any]]] = []
            for i in range(a.repeats + 1):
                for scenario in scenarios:
                    order = MODES if i % 2 == 0 else MODES[::-1]
                    for mode in order:
                        name = f"churn_{scenario}_{mode}_{i}"
                        r = timed(root, scenario, mode, name, ds, a.context, server.url)
                        label = "warm-up" if i == 0 else f"run {i}"
                        step = r["steps"].get("track_registration", 0.0)
                        extra = f"  mlflow step {step:.2f} s" if mode == "with" else ""
                        warn = f"  WARNINGS: {r['warnings']}" if r["warnings"] else ""
                        print(f"  {label:<7} {scenario:<8} {mode:<8} train_and_register {r['seconds']:6.2f} s  "
                              f"process {r['wall']:6.2f} s  cpu {r['cpu']:6.2f} s  peak RSS {r['peak_rss_mib']:.0f} MiB"
                              f"{extra}  load {os.getloadavg()[0]:.2f}{warn}", flush=True)
                        if mode == "with":
                            logged.append((scenario, name, r))
                        elif r.get("mlflow_run_id"):
                            raise SystemExit(f"{name}: logged to MLflow without the connection")
                        if i > 0:
                            results[scenario][mode].append(r)
            problems = [msg for scenario, name, r in logged
                        for msg in check_logged(server.url, name, r.get("mlflow_run_id"),
                                                a.trials if scenario == "search" else 0)]
        finally:
            server.stop()

    print()
    print(f"{len(logged)} 'with' runs checked on the server: "
          + ("every one a finished run with its reports, trial runs and model version" if not problems
             else f"{len(problems)} PROBLEM(S)"))
    for msg in problems:
        print(f"  {msg}")
    print()
    print(f"median (min) of {a.repeats} fresh processes each; overhead = median(with) - median(without), "
          "paired = median of the per-pair differences")
    print(f"{'scenario':<9}{'':<10}{'without':>18}{'with':>18}{'overhead':>10}{'paired':>9}")
    verdicts = []
    for scenario in scenarios:
        res = results[scenario]
        for key, label in (("seconds", "training"), ("wall", "process")):
            without = [r[key] for r in res["without"]]
            with_ = [r[key] for r in res["with"]]
            overhead = statistics.median(with_) - statistics.median(without)
            paired = statistics.median(w - wo for w, wo in zip(with_, without, strict=True))
            print(f"{scenario:<9}{label:<10}{stats(without):>18}{stats(with_):>18}{overhead:>8.2f} s"
                  f"{paired:>7.2f} s")
            if key == "seconds":
                verdicts.append((scenario, overhead))
    print()
    print("the MLflow step of the 'with' runs (timed in the child), median (min):")
    parts = [("track", "total: everything the connection adds (track_registration)"),
             ("prepare", "connection lookup, report + card read, skops type scan"),
             ("client_import", "import the MLflow client (first call)"),
             ("run", "experiment, run, params/metrics, artifacts, trial runs"),
             ("mirror_model", "mirror: MLmodel from the registered skops file, upload, model version")]
    for scenario in scenarios:
        rows = res_steps(results[scenario]["with"])
        print(f"  {scenario}:")
        for key, label in parts:
            if rows.get(key):
                print(f"    {key:<14}{stats(rows[key]):>18}  {label}")
    print()
    ok = not problems
    for scenario, overhead in verdicts:
        verdict = "PASS" if overhead <= a.goal and ok else "FAIL"
        direct = res_steps(results[scenario]["with"]).get("track")
        step = f"; the MLflow step itself: median {statistics.median(direct):.2f} s" if direct else ""
        print(f"{verdict}: {scenario}: MLflow mirror overhead {overhead:.2f} s (goal <= {a.goal:.1f} s){step}")
    return 0 if ok else 1


def res_steps(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per part of the MLflow step, its seconds in each ``with`` run."""
    out: dict[str, list[float]] = {}
    for r in runs:
        s = r["steps"]
        if "track_registration" not in s or "log_training_run" not in s:
            continue
        logged = s.get("logged", s["log_training_run"] - s["client_import"])
        values = {"track": s["track_registration"], "prepare": s["track_registration"] - s["log_training_run"],
                  "client_import": s["client_import"], "run": logged - s.get("mirror_model", 0.0),
                  "mirror_model": s.get("mirror_model", 0.0)}
        for k, v in values.items():
            out.setdefault(k, []).append(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
