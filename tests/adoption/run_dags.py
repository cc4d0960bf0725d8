"""Run a plan of ready-made Dags with ``dag.test()`` in ONE process (one Airflow start-up for many runs).

Usage: ``python run_dags.py <dags folder> <plan.json>``; the plan is a list of ``[dag_id, ds]``. Prints,
around each run, ``ADOPTION-BEGIN <dag_id> <ds>`` and ``ADOPTION-RESULT {json}`` (state, task states,
seconds), so that the caller can slice the log of one run out of the output.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

from airflow.dag_processing.dagbag import BundleDagBag


def main(dags_folder: str, plan_file: str) -> None:
    with open(plan_file, encoding="utf-8") as fh:
        plan = json.load(fh)
    # as Airflow's task runner and CLI parse a bundle: the Dags folder is on sys.path, so modules beside the
    # Dag files (a team's own estimator classes) import in the tasks
    bag = BundleDagBag(dag_folder=dags_folder, bundle_path=Path(dags_folder))
    print("ADOPTION-IMPORT-ERRORS " + json.dumps(bag.import_errors), flush=True)
    for dag_id, ds in plan:
        print(f"ADOPTION-BEGIN {dag_id} {ds}", flush=True)
        start = time.monotonic()
        try:
            run = bag.dags[dag_id].test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC))
            state = str(run.state)
            tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            state, tasks = f"error: {type(exc).__name__}: {exc}", {}
        result = {"dag_id": dag_id, "ds": ds, "state": state, "tasks": tasks,
                  "seconds": round(time.monotonic() - start, 1)}
        print("ADOPTION-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
