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

REPO = Path(__file__).resolve().parents[1]


class Demo:
    def __init__(self, home: Path, days: int, drift_day: int, rows: int) -> None:
        self.root = home.resolve()
        self.home = self.root / "airflow"
        self.days, self.drift_day, self.rows = days, drift_day, rows
        self.start = dt.date(2024, 1, 1)
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
        self.runs: list[tuple[str, str, str, float]] = []

    # ---- helpers -------------------------------------------------------------------
    def step(self, msg: str) -> None:
        print(f"[{time.time() - self.t0:6.1f}s] {msg}", flush=True)

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        log = self.root / "logs" / ("_".join(a.replace("/", "-") for a in args[:4]) + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        t = time.time()
        with open(log, "w") as f:
            proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=self.env,
                                  stdout=f, stderr=subprocess.STDOUT, cwd=self.root)
        if args[:2] == ("dags", "test"):
            self.runs.append((args[2], args[3], "success" if proc.returncode == 0 else "failed", time.time() - t))
        if check and proc.returncode != 0:
            tail = log.read_text().splitlines()[-30:]
            raise SystemExit(f"airflow {' '.join(args)} failed; log: {log}\n" + "\n".join(tail))
        return proc

    def day(self, i: int) -> str:
        return (self.start + dt.timedelta(days=i)).isoformat()

    # ---- the loop ------------------------------------------------------------------
    def run(self) -> None:
        from airflow_mlops.hooks.datasets import Dataset
        from airflow_mlops.hooks.storage import ArtifactStore
        from airflow_mlops.ml.example_data import churn_day

        if self.root.exists():
            shutil.rmtree(self.root)
        self.home.mkdir(parents=True)
        self.step(f"Airflow home {self.home} (SQLite); artifact store {self.storage_uri}")
        self.airflow("db", "migrate")
        self.store = ArtifactStore(self.storage_uri)
        data = Dataset.for_name(self.store, "churn")
        self.step(f"generating {self.days} days of example churn data ({self.rows} rows/day, "
                  f"drift from day {self.drift_day + 1})")
        for i in range(self.days):
            data.write(self.day(i), churn_day(self.day(i), rows=self.rows,
                                              drift=1.0 if i >= self.drift_day else 0.0))
        train_day = self.day(min(6, self.days - 1))
        self.step(f"churn_training for {train_day}: validate -> train -> register -> promote")
        self.airflow("dags", "test", "churn_training", train_day)
        self.summary()

    def summary(self) -> None:
        from airflow_mlops.hooks.registry import ModelRegistry

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
        print("\n=== Airflow runs ===")
        for dag_id, ds, state, secs in self.runs:
            print(f"  {dag_id:<24} {ds}  {state:<8} {secs:5.1f}s")
        print("\n=== Reports ===")
        for key in self.store.list(""):
            if key.endswith(".html"):
                print("  " + self.store.local_path(key))
        print(f"\nDone in {time.time() - self.t0:.0f}s. Everything is under {self.root}.")
        print(f"Browse it in the Airflow UI: AIRFLOW_HOME={self.home} make standalone")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", default=str(REPO / ".demo"), help="where to put the Airflow home and the data")
    p.add_argument("--days", type=int, default=10, help="days of example data")
    p.add_argument("--drift-day", type=int, default=7, help="0-based day from which the data drifts")
    p.add_argument("--rows", type=int, default=2000, help="rows per day")
    a = p.parse_args(argv)
    Demo(Path(a.home), a.days, a.drift_day, a.rows).run()


if __name__ == "__main__":
    main()
