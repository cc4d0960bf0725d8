"""Benchmark: ``score_partition`` with and without per-row explanations, same data and model.

One run does everything:

1. generates ``--rows`` rows of the example churn data (4 numeric + 2 categorical features, an
   int64 key) in ``--files`` parquet files of one partition;
2. trains the churn config's model (``dags/configs/churn.yaml``: a HistGradientBoostingClassifier
   behind imputation + one-hot encoding; ``--estimator logistic`` for a LogisticRegression,
   ``--estimator xgboost`` / ``lightgbm`` for an XGBClassifier / LGBMClassifier of 200 trees with
   ``n_jobs`` = ``--n-jobs``, default every core) with
   ``airflow_mlops.registry.lifecycle.train_and_register`` on 2 days x 5,000 rows, registers it in a
   temporary ``file://`` registry and makes it ``champion``;
3. times, each in its own fresh subprocess, alternating and ``--repeat`` times (best kept):

   * ``plain``: ``score_partition`` without explanations (``explain=False``);
   * ``explain``: ``score_partition`` with ``explain: {top_k: --top-k, method: --method}``, which adds
     the ``explain_<i>_feature`` / ``explain_<i>_value`` columns (TreeSHAP for the default model; the
     library's own TreeSHAP, ``method: native``, which ``auto`` picks for xgboost and LightGBM;
     ``method: native_approximate``, the library's Saabas attributions, is their fast path).

   Each child imports shap (when explaining) and the package before the clock starts, then reports
   the wall time of the scoring (model load included), the time spent inside the explainer (from the
   summary's ``explain.seconds``) and its peak RSS. The parent prints both times and
   ``ratio: X.XX`` (explain / plain), and exits 1 when ``--max-ratio`` is exceeded.

Usage::

    python benchmarks/explain.py                      # 200,000 rows
    python benchmarks/explain.py --rows 20000 --method perturbation
    python benchmarks/explain.py --estimator xgboost --method native --max-ratio 1.5
    python benchmarks/explain.py --estimator lightgbm --method native_approximate --max-ratio 1.5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from batch_scoring import peak_rss_mib  # same folder: this script runs from benchmarks/
from bench_estimators import default_jobs, estimator_section

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

DS = "2024-01-10"
TRAIN_DAYS = ("2024-01-08", "2024-01-09")


def config(estimator: str, n_jobs: int | None = None) -> object:
    import dataclasses

    from airflow_mlops.config.model import EstimatorConfig, FrozenDict
    from airflow_mlops.config.parser import load_model_config

    cfg = load_model_config(os.path.join(REPO, "dags", "configs", "churn.yaml"))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, training_window_days=len(TRAIN_DAYS)))
    if estimator == "logistic":
        cfg = dataclasses.replace(cfg, estimator=EstimatorConfig("sklearn.linear_model.LogisticRegression",
                                                                 FrozenDict({"max_iter": 500})))
    elif estimator in ("xgboost", "lightgbm"):
        section = estimator_section(estimator, n_jobs or default_jobs())
        cfg = dataclasses.replace(cfg, estimator=EstimatorConfig(section["class"], FrozenDict(section["params"])))
    return cfg


def setup(workdir: str, rows: int, n_files: int, estimator: str, n_jobs: int | None = None) -> None:
    """Generate the partition, train + register the model. Writes ``workdir/spec.json``."""
    from threadpoolctl import threadpool_limits

    from airflow_mlops.config.locations import Locations
    from airflow_mlops.demo.data import churn_day
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore

    shutil.rmtree(os.path.join(workdir, "store"), ignore_errors=True)
    store = ArtifactStore("file://" + os.path.join(workdir, "store"))
    cfg = config(estimator, n_jobs)
    data = Locations(cfg, store).input
    t0 = time.perf_counter()
    df = churn_day(DS, rows=rows, seed=5)
    bounds = [rows * i // n_files for i in range(n_files + 1)]
    data.write(DS, [df.iloc[a:b] for a, b in zip(bounds, bounds[1:])])
    del df
    print(f"generated {rows:,} rows in {n_files} files in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    for d in TRAIN_DAYS:
        data.write(d, churn_day(d, rows=5000))
    with threadpool_limits(limits=1):
        v = train_and_register(cfg, store, TRAIN_DAYS[-1])["version"]
    ModelRegistry(store).set_alias(cfg.name, "champion", v, actor="bench")
    print(f"trained + registered {cfg.name} v{v} ({cfg.estimator.class_path}) in {time.perf_counter() - t0:.1f} s",
          flush=True)
    with open(os.path.join(workdir, "spec.json"), "w") as f:
        json.dump({"root": store.root, "estimator": estimator, "n_jobs": n_jobs}, f)


def run_child(mode: str, workdir: str, top_k: int, method: str, batch_size: int | None) -> dict:
    """Child process body: import, then time one scoring of the partition."""
    import dataclasses

    from airflow_mlops.config.model import ExplainConfig
    from airflow_mlops.scoring import batch as scoring
    from airflow_mlops.store.artifacts import ArtifactStore

    with open(os.path.join(workdir, "spec.json")) as f:
        spec = json.load(f)
    cfg = config(spec["estimator"], spec.get("n_jobs"))
    explain = None
    if mode == "explain":
        from airflow_mlops.scoring.explain import shap_available

        if shap_available():
            import shap  # noqa: F401  (import time is not scoring time)
        explain = ExplainConfig(top_k=top_k, method=method)
    cfg = dataclasses.replace(cfg, explain=explain)
    store = ArtifactStore(spec["root"])
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    summary = scoring.score_partition(cfg, store, DS, run_id=f"bench-{mode}", explain=explain is not None,
                                      batch_size=batch_size or scoring.DEFAULT_BATCH_SIZE)
    seconds = time.perf_counter() - t0
    ex = summary.get("explain") or {}
    return {"mode": mode, "seconds": seconds, "cpu_seconds": time.process_time() - cpu0, "rows": summary["rows"],
            "explain_seconds": ex.get("seconds", 0.0), "explain_setup_seconds": ex.get("setup_seconds", 0.0),
            "explain_method": ex.get("method"), "peak_rss_mib": peak_rss_mib()}


def spawn(mode: str, args: argparse.Namespace, workdir: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--workdir", workdir,
           "--top-k", str(args.top_k), "--method", args.method]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{mode} child failed with exit code {proc.returncode}")
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--method", choices=["auto", "native", "native_approximate", "shap", "shap_approximate",
                                         "perturbation"],
                    default="auto")
    ap.add_argument("--estimator", choices=["churn", "default", "logistic", "xgboost", "lightgbm"], default="churn",
                    help="churn (= default) = the churn config's HistGradientBoosting; logistic = LogisticRegression; "
                         "xgboost / lightgbm = XGBClassifier / LGBMClassifier")
    ap.add_argument("--n-jobs", type=int, default=None, help="threads of xgboost / lightgbm (default: every core)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: score_partition's default")
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode, alternating; best is kept")
    ap.add_argument("--mode", choices=["all", "plain", "explain"], default="all")
    ap.add_argument("--workdir", default=None, help="keep data here (default: a temp dir, removed after)")
    ap.add_argument("--max-ratio", type=float, default=None, help="exit 1 if explain/plain is above this")
    args = ap.parse_args(argv)

    if args.mode != "all":
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(run_child(args.mode, args.workdir, args.top_k, args.method, args.batch_size)), flush=True)
        return 0

    workdir = args.workdir or tempfile.mkdtemp(prefix="mlops-bench-explain-")
    os.makedirs(workdir, exist_ok=True)
    try:
        setup(workdir, args.rows, args.files, "churn" if args.estimator == "default" else args.estimator, args.n_jobs)
        results: dict[str, list[dict]] = {"plain": [], "explain": []}
        for i in range(args.repeat):
            for mode in ("plain", "explain"):
                r = spawn(mode, args, workdir)
                results[mode].append(r)
                extra = (f"  explainer {r['explain_seconds']:6.2f} s + setup {r['explain_setup_seconds']:.2f} s"
                         if mode == "explain" else "")
                print(f"  run {i + 1} {mode:8s}: {r['seconds']:7.2f} s (cpu {r['cpu_seconds']:6.2f} s)  "
                      f"peak RSS {r['peak_rss_mib']:6.0f} MiB  ({r['rows']:,} rows){extra}", flush=True)
        best = {m: min(rs, key=lambda r: r["seconds"]) for m, rs in results.items()}
        rows = best["plain"]["rows"]
        if best["explain"]["rows"] != rows:
            raise SystemExit(f"row counts differ: {rows} vs {best['explain']['rows']}")
        ratio = best["explain"]["seconds"] / best["plain"]["seconds"]
        method = best["explain"]["explain_method"] or {}
        print(f"rows: {rows:,}  files: {args.files}  top_k: {args.top_k}  method: {args.method} -> "
              f"{method.get('method')} {method.get('explainer', '')}".rstrip())
        if args.estimator in ("xgboost", "lightgbm"):
            est = estimator_section(args.estimator, args.n_jobs or default_jobs())
            print(f"estimator: {est['class']} {json.dumps(est['params'], sort_keys=True)}")
        plain = best["plain"]["seconds"]
        print(f"without explanations: {plain:7.2f} s  {rows / plain:>10,.0f} rows/s")
        print(f"with explanations:    {best['explain']['seconds']:7.2f} s  "
              f"{rows / best['explain']['seconds']:>10,.0f} rows/s  "
              f"(explainer {best['explain']['explain_seconds']:.2f} s)")
        print(f"ratio: {ratio:.2f}")
        if args.max_ratio is not None and ratio > args.max_ratio:
            print(f"FAIL: ratio {ratio:.2f} > {args.max_ratio}")
            return 1
        return 0
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
