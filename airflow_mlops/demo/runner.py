"""The closed loop on the embedded default (local files + SQLite Airflow), from nothing.

    python -m airflow_mlops.demo [--home .demo] [--days 10] [--mlflow [URL]]

Creates an Airflow home under ``--home``, generates example churn data, then drives the ready-made
DAGs with real Airflow runs (``airflow dags test``): train + promote, and the steps of the loop that
the installed DAG factory provides (batch scoring backfill, drift monitoring, drift-triggered
retraining). Ends with a summary (versions and aliases, scored partitions, drift per day, retraining
runs) and the paths of the HTML reports.

With ``--mlflow`` a local ``mlflow server`` (SQLite, under ``<home>/mlflow``) is started first and set as the
Airflow connection ``mlflow_default``, so every registered version is logged there and the aliases follow ours
(``--mlflow URL``: a server already running at URL instead). After the summary, the ``MLflow`` section shows
what MLflow's REST API lists (the runs of the experiment, the registered model's aliases) and checks that its
``champion`` is our registry's champion: the demo exits non-zero when they differ.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from airflow_mlops.store.dates import logical_ds

REPO = Path(__file__).resolve().parents[2]  # airflow_mlops/demo/runner.py -> the repository
START = "start"  # ``--mlflow`` without a URL: the demo starts its own server


def _rest(url: str, endpoint: str, query: dict[str, str] | None = None,
          body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call of MLflow's REST API (``/api/2.0/mlflow/<endpoint>``): GET with ``query``, POST with ``body``."""
    address = f"{url.rstrip('/')}/api/2.0/mlflow/{endpoint}"
    if query:
        address += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(address, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return dict(json.loads(r.read() or b"{}"))
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:300]
        raise RuntimeError(f"MLflow {endpoint}: HTTP {e.code} {detail}") from None


def _tags(entity: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in entity.get("tags") or []}


def _our_version(tags: dict[str, str]) -> int | None:
    value = tags.get("mlops.version", "")
    return int(value) if value.isdigit() else None


def mlflow_view(url: str, model: str) -> dict[str, Any]:
    """What MLflow's REST API at ``url`` shows of ``model``, nothing else asked: ``runs`` (the top-level runs of
    the experiment ``model``, oldest first: ``run_id``, ``name``, ``status``, ``version`` (tag ``mlops.version``),
    ``primary_metric`` and its holdout ``value``), ``trial_runs`` (how many child runs), ``versions`` (MLflow
    version -> our version) and ``aliases`` of the registered model (alias -> ``{"mlflow_version",
    "version"}``, ``version`` being our registry's through the tag ``mlops.version``)."""
    experiment = _rest(url, "experiments/get-by-name", {"experiment_name": model})["experiment"]
    found: list[dict[str, Any]] = []
    token = None
    while True:
        page = _rest(url, "runs/search", body={"experiment_ids": [experiment["experiment_id"]], "max_results": 1000,
                                               "order_by": ["attributes.start_time ASC"],
                                               **({"page_token": token} if token else {})})
        found += page.get("runs") or []
        token = page.get("next_page_token")
        if not token:
            break
    runs, trials = [], 0
    for run in found:
        tags = _tags(run.get("data") or {})
        if "mlflow.parentRunId" in tags:
            trials += 1
            continue
        params = {p["key"]: p.get("value", "") for p in (run.get("data") or {}).get("params") or []}
        metrics = {m["key"]: m.get("value") for m in (run.get("data") or {}).get("metrics") or []}
        pm = params.get("primary_metric", "")
        runs.append({"run_id": run["info"]["run_id"], "name": run["info"].get("run_name", ""),
                     "status": run["info"].get("status", ""), "version": _our_version(tags),
                     "primary_metric": pm, "value": metrics.get(f"holdout.{pm}")})
    registered = _rest(url, "registered-models/get", {"name": model})["registered_model"]
    listed = _rest(url, "model-versions/search", {"filter": f"name = '{model}'", "max_results": "1000"})
    versions = {str(mv["version"]): _our_version(_tags(mv)) for mv in listed.get("model_versions") or []}
    aliases = {}
    for a in registered.get("aliases") or []:
        mlflow_version = str(a["version"])
        if mlflow_version not in versions:  # beyond the search's page: ask for that version itself
            mv = _rest(url, "model-versions/get", {"name": model, "version": mlflow_version})["model_version"]
            versions[mlflow_version] = _our_version(_tags(mv))
        aliases[a["alias"]] = {"mlflow_version": mlflow_version, "version": versions[mlflow_version]}
    return {"experiment_id": experiment["experiment_id"], "runs": runs, "trial_runs": trials,
            "versions": versions, "aliases": aliases}


class Demo:
    def __init__(self, home: Path, days: int, drift_day: int, rows: int, mlflow: str | None = None) -> None:
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
        self.mlflow = mlflow  # None, START or the URL of a running server
        self.mlflow_url: str | None = None
        self.mlflow_server: Any = None  # the MlflowServer the demo started
        self.mlflow_starting: threading.Thread | None = None
        self.mlflow_errors: list[BaseException] = []

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
        if self.root.exists():
            shutil.rmtree(self.root)
        self.home.mkdir(parents=True)
        try:
            if self.mlflow:
                self.start_mlflow()
            self.loop()
            self.summary()
            if self.mlflow_url:
                self.mlflow_summary()
        finally:
            if self.mlflow_server is not None:
                self.stop_mlflow()
        print(f"\nDone in {time.time() - self.t0:.0f}s. Everything is under {self.root}.")
        print(f"Browse it in the Airflow UI: AIRFLOW_HOME={self.home} make standalone")

    # ---- MLflow --------------------------------------------------------------------
    def start_mlflow(self) -> None:
        """The server as the connection ``mlflow_default`` of every run; the demo's own server starts in the
        background (its start takes a while) and is waited for before the first training."""
        if self.mlflow != START:
            self.mlflow_url = str(self.mlflow).rstrip("/")
        else:
            from airflow_mlops.demo.mlflow_server import MlflowServer, server_venv

            self.step(f"starting an MLflow server under {self.root / 'mlflow'} (in the background)")
            server = self.mlflow_server = MlflowServer(server_venv(), self.root / "mlflow")
            self.mlflow_url = server.url

            def start() -> None:
                try:
                    server.start()
                except BaseException as e:  # noqa: BLE001 - reported by wait_mlflow
                    self.mlflow_errors.append(e)

            self.mlflow_starting = threading.Thread(target=start, name="mlflow-server", daemon=True)
            self.mlflow_starting.start()
        self.env["AIRFLOW_CONN_MLFLOW_DEFAULT"] = self.mlflow_url
        os.environ["AIRFLOW_CONN_MLFLOW_DEFAULT"] = self.mlflow_url

    def wait_mlflow(self) -> None:
        if self.mlflow_starting is not None:
            self.mlflow_starting.join()
            self.mlflow_starting = None
            if self.mlflow_errors:
                raise SystemExit(f"the MLflow server did not start: {self.mlflow_errors[0]}")
            self.step(f"MLflow server at {self.mlflow_url} (connection mlflow_default)")

    def stop_mlflow(self) -> None:
        server = self.mlflow_server
        if self.mlflow_starting is not None:
            self.mlflow_starting.join()
        server.stop()
        db, artifacts = server.workdir / "mlflow.db", server.workdir / "artifacts"
        print(f"\nThe MLflow server is stopped; its runs are kept in {server.workdir}. To look at them in the "
              "MLflow UI (http://127.0.0.1:5000):")
        print(f"  {server.venv / 'bin' / 'mlflow'} server --host 127.0.0.1 --port 5000 "
              f"--backend-store-uri sqlite:///{db} --artifacts-destination {artifacts}")

    def mlflow_summary(self, model: str = "churn") -> None:
        """The ``MLflow`` section, from MLflow's REST API only; exits non-zero when MLflow's champion is not
        our registry's."""
        from airflow_mlops.registry.model_registry import ModelRegistry

        assert self.mlflow_url is not None
        print(f"\n=== MLflow === ({self.mlflow_url}, read through its REST API)")
        try:
            view = mlflow_view(self.mlflow_url, model)
        except (RuntimeError, OSError, KeyError) as e:
            raise SystemExit(f"MLflow at {self.mlflow_url} does not show the model {model!r}: {e}") from None
        print(f"  experiment {model!r}: {len(view['runs'])} run(s), {view['trial_runs']} search-trial run(s)")
        print(f"  {'run name':<16} {'status':<10} {'mlops.version':>13}  holdout primary metric")
        for r in view["runs"]:
            value = f"{r['primary_metric']}={r['value']:.4f}" if r["value"] is not None else "-"
            print(f"  {r['name']:<16} {r['status']:<10} {r['version'] if r['version'] is not None else '-':>13}  "
                  f"{value}")
        print(f"  registered model {model!r}: {len(view['versions'])} version(s); aliases:")
        for alias, a in sorted(view["aliases"].items()):
            print(f"    {alias:<18} MLflow version {a['mlflow_version']:<4} = our v{a['version']}")
        reg = ModelRegistry(self.store)
        ours = reg.get_aliases(model)
        logged = {r["version"] for r in view["runs"]}
        missing = [v for v in reg.list_versions(model) if v not in logged]
        print(f"  registered versions without an MLflow run: {', '.join(f'v{v}' for v in missing) or 'none'}")
        theirs = (view["aliases"].get("champion") or {}).get("version")
        if theirs is None or theirs != ours.get("champion"):
            raise SystemExit(f"MLflow's champion alias points at our v{theirs} but our registry's champion is "
                             f"v{ours.get('champion')}: the MLflow mirror is behind (see the training logs under "
                             f"{self.root / 'logs'})")
        print(f"  champion: MLflow v{theirs} = registry v{ours['champion']} (the same)")

    # ---- the loop ------------------------------------------------------------------
    def loop(self) -> None:
        from airflow_mlops.demo.data import churn_day
        from airflow_mlops.store.artifacts import ArtifactStore
        from airflow_mlops.store.datasets import Dataset

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
        self.wait_mlflow()
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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--home", default=str(REPO / ".demo"), help="where to put the Airflow home and the data")
    p.add_argument("--days", type=int, default=10, help="days of example data")
    p.add_argument("--drift-day", type=int, default=8, help="day (1-based) from which the data drifts")
    p.add_argument("--rows", type=int, default=2000, help="rows per day")
    p.add_argument("--mlflow", nargs="?", const=START, default=None, metavar="URL",
                   help="log every version to MLflow and check its view at the end: a local mlflow server started "
                        "under HOME/mlflow, or the one already running at URL")
    a = p.parse_args(argv)
    Demo(Path(a.home), a.days, a.drift_day, a.rows, a.mlflow).run()


if __name__ == "__main__":
    main()
