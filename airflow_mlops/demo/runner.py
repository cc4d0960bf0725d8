"""The closed loop on the embedded default (local files + SQLite Airflow), from nothing.

    python -m airflow_mlops.demo [--home .demo] [--days 10]

Creates an Airflow home under ``--home``, generates example churn data, then drives the ready-made
DAGs with real Airflow runs (``airflow dags test``): train + promote, and the steps of the loop that
the installed DAG factory provides (batch scoring backfill, drift monitoring, drift-triggered
retraining). Ends with a summary (versions and aliases, scored partitions, drift per day, retraining
runs) and the paths of the HTML reports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from airflow_mlops.store.dates import logical_ds

REPO = Path(__file__).resolve().parents[2]  # airflow_mlops/demo/runner.py -> the repository


class Demo:
    def __init__(self, home: Path, days: int, drift_day: int, rows: int) -> None:
        self.root = home.resolve()
        self.home = self.root / "airflow"
        self.days, self.drift_day, self.rows = days, drift_day, rows
        self.start = dt.date(2024, 1, 1)  # day 0: the first model is trained on the week ending here
        self.storage_uri = "file://" + str(self.home / "mlops")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__MLOPS__STORAGE_URI": self.storage_uri,
            "MLOPS_CONFIGS_DIR": str(REPO / "dags" / "configs"),
        })
        os.environ.update(self.env)
        import logging

        logging.getLogger("airflow_mlops").setLevel(logging.WARNING)  # the demo prints its own progress
        self.t0 = time.time()
        self.runs: list[tuple[str, str, str, float, str]] = []

    # ---- helpers -------------------------------------------------------------------
    def step(self, msg: str) -> None:
        print(f"[{time.time() - self.t0:6.1f}s] {msg}", flush=True)

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        log = self.root / "logs" / ("_".join(a.replace("/", "-") for a in args[:4]) + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=self.env,
                                  stdout=f, stderr=subprocess.STDOUT, cwd=self.root)
        if check and proc.returncode != 0:
            tail = log.read_text().splitlines()[-30:]
            raise SystemExit(f"airflow {' '.join(args)} failed; log: {log}\n" + "\n".join(tail))
        return proc

    def day(self, i: int) -> str:
        return (self.start + dt.timedelta(days=i)).isoformat()

    # ---- the loop ------------------------------------------------------------------
    def dag_test(self, dag_id: str, ds: str, note: str = "") -> bool:
        """One real Airflow run (``dag.test``) in this process: heavy imports are paid once."""
        log = self.root / "logs" / f"{dag_id}_{ds}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        dag = self.dags[dag_id]
        t = time.time()
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        with open(log, "w") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                run = dag.test(logical_date=dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC))
                state = str(getattr(run, "state", "unknown"))
            except Exception as e:  # reported below with the log path
                state = f"error: {e}"
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        ok = state.endswith("success")
        self.runs.append((dag_id, ds, state.split(".")[-1], time.time() - t, note))
        self.step(f"  {dag_id:<22} {ds}  {state.split('.')[-1]:<8} ({time.time() - t:4.1f}s) {note}")
        if not ok:
            print(f"    log: {log}")
        return ok

    def run(self) -> None:
        from airflow_mlops.demo.data import churn_day
        from airflow_mlops.store.artifacts import ArtifactStore
        from airflow_mlops.store.datasets import Dataset

        if self.root.exists():
            shutil.rmtree(self.root)
        self.home.mkdir(parents=True)
        self.step(f"Airflow home {self.home} (SQLite); artifact store {self.storage_uri}")
        self.airflow("db", "migrate")
        self.store = ArtifactStore(self.storage_uri)
        data = Dataset.for_name(self.store, "churn")
        history = 7
        self.step(f"generating {history} days of history + {self.days} days to score ({self.rows} rows/day; "
                  f"drift from day {self.drift_day})")
        for i in range(-history + 1, self.days + 1):
            data.write(self.day(i), churn_day(self.day(i), rows=self.rows,
                                              drift=1.0 if i >= self.drift_day else 0.0))
        self.step("parsing the ready-made DAGs (dags/churn.py + dags/configs/churn.yaml)")
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        if bag.import_errors:
            raise SystemExit(f"DAG import errors: {bag.import_errors}")
        self.dags = bag.dags
        self.airflow("dags", "reserialize")  # so `airflow dags list` and the UI show them at once
        # unpaused, churn_training is queued by the scheduler when the retraining asset event arrives
        self.airflow("dags", "unpause", "churn_training")
        self.step(f"train + promote on the {history} days of history")
        self.dag_test("churn_training", self.day(0), "first model")
        for i in range(1, self.days + 1):
            d = self.day(i)
            if not self.dag_test("churn_batch_scoring", d):
                continue  # nothing scored: the monitoring sensor would wait for predictions
            self.dag_test("churn_monitoring", d)
            request = self.retrain_request(d)
            if request:
                self.step(f"  drift on {d}: asset event {request['uri']} (share {request['share']:.2f}) "
                          f"queued churn_training: {request['queued']}")
                self.dag_test("churn_training", d, "retraining requested by the drift asset event")
        self.summary()

    def retrain_request(self, ds: str) -> dict[str, Any] | None:
        """The retraining-request asset event emitted by the monitoring run of ``ds``, if any, and whether
        the scheduler has churn_training queued for it (AssetDagRunQueue)."""
        from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(AssetEvent, AssetModel.uri).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == "mlops://churn/retrain-request")).all()
            events = [(ev, uri) for ev, uri in rows if (ev.extra or {}).get("ds") == ds]
            if not events:
                return None
            ev, uri = events[-1]
            queued = session.execute(select(AssetDagRunQueue.target_dag_id)
                                     .where(AssetDagRunQueue.asset_id == ev.asset_id)).scalars().all()
            # the run below is the one the scheduler would start: take it off the queue
            session.query(AssetDagRunQueue).filter(AssetDagRunQueue.asset_id == ev.asset_id).delete()
        return {"uri": uri, "share": (ev.extra or {}).get("share_drifted"), "queued": sorted(queued)}

    def summary(self) -> None:
        from airflow_mlops.registry.model_registry import ModelRegistry

        reg = ModelRegistry(self.store)
        print("\n=== Model registry ===")
        for name in reg.list_models():
            aliases = reg.get_aliases(name)
            by_version: dict[int, list[str]] = {}
            for a, v in aliases.items():
                by_version.setdefault(v, []).append(a)
            print(f"{'model':<8} {'version':>7} {'aliases':<30} {'primary metric':<24} trained on")
            for v in reg.list_versions(name):
                m = reg.get_metadata(name, v)
                pm = m.get("primary_metric")
                val = m.get("metrics", {}).get("holdout", {}).get(pm)
                parts = m.get("training_data", {}).get("partitions", [])
                print(f"{name:<8} {v:>7} {','.join(by_version.get(v, [])) or '-':<30} "
                      f"{pm}={val:.4f}{'':<6} {parts[0] if parts else '?'}..{parts[-1] if parts else '?'}")
            print("\nAudit log:")
            for ev in reg.audit_log(name):
                what = f"{ev['action']} {ev.get('alias') or ''} {ev.get('from')}->{ev.get('to')}" \
                    if ev.get("alias") else f"{ev['action']} v{ev.get('version')}"
                print(f"  {ev['at'][:19]} {ev['actor']:<24} {what:<36} {ev.get('reason', '')[:90]}")
        print("\n=== Scored partitions and drift per day ===")
        from airflow_mlops.monitoring.monitor import read_drift_summary, read_retrain_requests
        from airflow_mlops.store.datasets import Dataset

        preds = Dataset(self.store, "predictions/churn")
        requested = {logical_ds(r["ds"]) for r in read_retrain_requests(self.store, "churn")}
        print(f"  {'day':<11} {'rows':>6}  {'model version':<14} {'drift share':>11}  drifted features")
        for ds in preds.partitions():
            t = preds.read_table(ds, columns=["model_version", "scored_by"])
            versions = sorted(set(t.column("model_version").to_pylist()))
            d = read_drift_summary(self.store, "churn", ds) or {}
            drifted = [c["column"] for c in d.get("columns", []) if c.get("drifted")]
            share = f"{d['share_drifted']:.2f}" if "share_drifted" in d else "-"
            flag = ("  <- retraining requested" if ds in requested else
                    "  (drift; no new request within monitoring.drift_cooldown_days)" if d.get("dataset_drift") else "")
            print(f"  {ds:<11} {t.num_rows:>6}  v{','.join(map(str, versions)):<13} {share:>11}  "
                  f"{', '.join(drifted) or '-'}{flag}")
        print("\n=== Airflow runs ===")
        for dag_id, ds, state, secs, note in self.runs:
            print(f"  {dag_id:<22} {ds}  {state:<8} {secs:5.1f}s  {note}")
        retrains = [r for r in self.runs if r[0] == "churn_training" and "drift" in r[4]]
        print(f"  retraining runs triggered by drift: {len(retrains)}")
        print("\n=== Reports ===")
        for key in self.store.list(""):
            if key.endswith(".html") and "/ds=" not in key or key.endswith("drift.html") and \
                    any(f"ds={r[1]}" in key for r in self.runs if r[0] == "churn_training"):
                print("  " + self.store.local_path(key))
        print(f"\nDone in {time.time() - self.t0:.0f}s. Everything is under {self.root}.")
        print(f"Browse it in the Airflow UI: AIRFLOW_HOME={self.home} make standalone")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", default=str(REPO / ".demo"), help="where to put the Airflow home and the data")
    p.add_argument("--days", type=int, default=10, help="days of example data")
    p.add_argument("--drift-day", type=int, default=8, help="day (1-based) from which the data drifts")
    p.add_argument("--rows", type=int, default=2000, help="rows per day")
    a = p.parse_args(argv)
    Demo(Path(a.home), a.days, a.drift_day, a.rows).run()


if __name__ == "__main__":
    main()
