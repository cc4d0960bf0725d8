"""Benchmark: parsing the example Dag file ``dags/churn.py`` vs ``import airflow.sdk`` alone.

Usage::

    .venv/bin/python benchmarks/parse_dag.py
    .venv/bin/python benchmarks/parse_dag.py --repeat 7 --days 30 --dagbag

Sets up a temporary ``AIRFLOW_HOME`` whose store holds ``--days`` daily partitions of the example
churn data (so a parse that read data would pay for it), then times, each in its own fresh
interpreter, alternating and ``--repeat`` times (best kept):

* ``baseline``: ``import airflow.sdk``;
* ``parse``: ``import airflow.sdk``, then executing ``dags/churn.py`` (what a Dag processor does with the
  file: the config is loaded and validated and the three Dags are built); the child checks that the
  three Dags exist;
* ``config``: ``import airflow.sdk``, then ``load_model_config(..., check_estimator=False)`` of the config
  alone (the structure-only validation the Dag factory does; the tasks check the estimator class, whose
  import costs ~1 s for scikit-learn): splits the parse time into config validation and Dag building;
* with ``--dagbag``, also ``dagbag``: ``DagBag(dag_folder=dags/churn.py)`` (adds Airflow's own DagBag
  machinery and its imports, the same for every Dag file).

Each child reports its wall time and its CPU time (less disturbed by other load on the machine).
The timed regions start before ``import airflow.sdk`` inside the child, so interpreter start-up is
outside them. Prints each best time, ``over: X.XX s`` (parse - baseline) and ``ratio: X.XX``
(parse / baseline); exits 1 when ``over`` exceeds ``--max-over`` (default 1.0 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

DAG_FILE = os.path.join(REPO, "dags", "churn.py")

CHILD = {
    "baseline": """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
""",
    "parse": """
import json, runpy, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
found = runpy.run_path(sys.argv[1], run_name="churn_dag")
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
dags = sorted(k for k, v in found.items() if isinstance(v, airflow.sdk.DAG))
assert dags == ["churn_batch_scoring", "churn_monitoring", "churn_training"], dags
print(json.dumps({"seconds": seconds, "cpu": cpu}))
""",
    "config": """
import json, os, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
from airflow_mlops.config.parser import load_model_config
load_model_config(os.path.join(os.environ["MLOPS_CONFIGS_DIR"], "churn.yaml"), check_estimator=False)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
""",
    "dagbag": """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
assert len(bag.dag_ids) == 3 and not bag.import_errors, (bag.dag_ids, bag.import_errors)
print(json.dumps({"seconds": seconds, "cpu": cpu}))
""",
}


def setup(root: str, days: int, rows: int) -> dict[str, str]:
    """An Airflow home with the example config and ``days`` partitions of data in its store."""
    import yaml

    from airflow_mlops.demo.data import churn_day, date_range
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    configs = os.path.join(root, "configs")
    os.makedirs(configs)
    with open(os.path.join(REPO, "dags", "configs", "churn.yaml")) as fh:
        cfg = yaml.safe_load(fh)
    with open(os.path.join(configs, "churn.yaml"), "w") as fh:
        yaml.safe_dump(cfg, fh)
    storage_uri = "file://" + os.path.join(root, "mlops")
    data = Dataset.for_name(ArtifactStore(storage_uri), cfg["data"]["dataset"])
    for day in date_range("2024-01-01", days):
        data.write(day, churn_day(day, rows=rows))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLOPS_"))}
    env.update({"AIRFLOW_HOME": os.path.join(root, "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__MLOPS__STORAGE_URI": storage_uri, "MLOPS_CONFIGS_DIR": configs})
    return env


def run_child(mode: str, env: dict[str, str]) -> tuple[float, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD[mode], DAG_FILE], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(out["seconds"]), float(out["cpu"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each mode (best kept); default 5")
    ap.add_argument("--days", type=int, default=14, help="daily partitions in the store; default 14")
    ap.add_argument("--rows", type=int, default=2000, help="rows per partition; default 2000")
    ap.add_argument("--dagbag", action="store_true", help="also time DagBag(dag_folder=dags/churn.py)")
    ap.add_argument("--max-over", type=float, default=1.0, help="goal: parse - baseline <= this (s)")
    args = ap.parse_args(argv)

    root = tempfile.mkdtemp(prefix="parse_dag_")
    try:
        env = setup(root, args.days, args.rows)
        modes = ["baseline", "config", "parse"] + (["dagbag"] if args.dagbag else [])
        best = {m: float("inf") for m in modes}
        cpu = {m: float("inf") for m in modes}
        run_child("parse", env)  # warm-up: byte-compile and fill the OS file cache, not timed
        for i in range(args.repeat):
            for m in (modes if i % 2 == 0 else modes[::-1]):
                wall, used = run_child(m, env)
                best[m], cpu[m] = min(best[m], wall), min(cpu[m], used)
        over = best["parse"] - best["baseline"]
        print(f"store: {args.days} partitions x {args.rows} rows; best of {args.repeat} fresh interpreters each")
        print(f"import airflow.sdk:              {best['baseline']:.2f} s")
        print(f"import airflow.sdk + load_model_config: {best['config']:.2f} s "
              f"(config validation: {best['config'] - best['baseline']:.2f} s)")
        print(f"import airflow.sdk + dags/churn.py: {best['parse']:.2f} s "
              f"(building the three Dags after the config: {best['parse'] - best['config']:.2f} s)")
        if args.dagbag:
            print(f"import airflow.sdk + DagBag(dags/churn.py): {best['dagbag']:.2f} s "
                  f"(over: {best['dagbag'] - best['baseline']:.2f} s)")
        print(f"cpu time: sdk {cpu['baseline']:.2f} s, + config {cpu['config']:.2f} s, + dags/churn.py "
              f"{cpu['parse']:.2f} s; cpu over: {cpu['parse'] - cpu['baseline']:.2f} s")
        print(f"over: {over:.2f} s (goal <= {args.max_over:g} s)")
        print(f"ratio: {best['parse'] / best['baseline']:.2f}")
        return 0 if over <= args.max_over else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
