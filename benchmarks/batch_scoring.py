"""Benchmark: ``score_partition`` vs a plain pyarrow + scikit-learn script on the same data and model.

One run does everything:

1. generates ``--rows`` rows x ``--features`` numeric features + an int64 key, split into ``--files``
   parquet files of one partition (written in chunks: the generator never holds all rows);
2. trains a LogisticRegression pipeline with ``airflow_mlops.training.trainer.train_model`` on a 50k
   sample, registers it in a temporary ``file://`` registry and makes it ``champion``;
3. times, each in its own fresh subprocess, alternating and ``--repeat`` times (best kept):

   * ``plain``: for each file ``pq.read_table`` -> ``model.predict_proba`` + ``model.predict`` ->
     ``pq.write_table`` of key, prediction, proba_0, proba_1;
   * ``operator``: ``airflow_mlops.scoring.batch.score_partition`` (the code BatchInferenceOperator runs),
     which also writes the prediction-log columns, checks the schema and commits atomically.

   Each child reports the wall time of the scoring (after imports, model load included) and its
   peak RSS (``VmHWM``). The parent prints both, ``ratio: X.XX`` (operator / plain) and exits 1 when
   ``--max-ratio`` or ``--max-rss-mib`` is exceeded.

``--estimator xgboost`` / ``lightgbm`` (bring-your-own-model) trains an ``xgboost.XGBClassifier`` /
``lightgbm.LGBMClassifier`` (200 trees, ``n_jobs`` = ``--n-jobs``, default every core) instead of the
LogisticRegression; both children load that same registered model, so they predict with the same
threads. The plain script then does what one writes for these libraries: one ``predict_proba`` per
file, labels = ``classes_[argmax]`` (what ``LGBMClassifier.predict`` does, and XGBClassifier's
``p > 0.5`` for binary), the library's float32 probabilities written as they come. The outputs are
compared on the labels (exactly) and the probabilities (max absolute difference: ours are float64 rows
renormalised to sum to 1).

Usage::

    python benchmarks/batch_scoring.py --rows 1000000
    python benchmarks/batch_scoring.py --rows 5000000 --files 8 --batch-size 131072 --repeat 3
    python benchmarks/batch_scoring.py --rows 5000000 --files 8 --estimator xgboost --max-ratio 1.0 --max-rss-mib 1024
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

from bench_estimators import CHOICES, default_jobs, estimator_section, trusted_types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

DS = "2024-01-01"
NAME = "bench"


def peak_rss_mib() -> float:
    """Peak resident set size of this process (VmHWM), MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config_dict(n_features: int, estimator: str = "default", n_jobs: int | None = None) -> dict:
    cfg = {
        "name": NAME,
        "owner": "bench@example.com",
        "data": {"dataset": NAME, "format": "parquet"},
        "keys": ["id"],
        "target": "label",
        "features": [f"f{i:02d}" for i in range(n_features)],
        "task": "binary",
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 300}},
        "training": {"cv_folds": 3, "test_size": 0.2, "seed": 0, "reference_sample_size": 1000},
        "validation": {"suite": None},
    }
    if estimator != "default":
        cfg["estimator"] = estimator_section(estimator, n_jobs or default_jobs())
    return cfg


def _chunk(rng, start: int, n: int, n_features: int, weights):
    import numpy as np
    import pyarrow as pa

    X = rng.normal(size=(n, n_features))
    cols = {"id": pa.array(np.arange(start, start + n, dtype="int64"))}
    for j in range(n_features):
        cols[f"f{j:02d}"] = pa.array(X[:, j])
    logit = X @ weights
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return pa.table(cols), label


def setup(workdir: str, rows: int, n_features: int, n_files: int, chunk: int = 250_000, estimator: str = "default",
          n_jobs: int | None = None) -> None:
    """Generate the partition, train + register the model. Writes ``workdir/config.json``."""
    import numpy as np
    import pyarrow.parquet as pq

    from airflow_mlops.config.parser import parse_model_config
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.training.trainer import train_model

    for old in ("store", "plain_out", "config.json"):
        path = os.path.join(workdir, old)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.isfile(path):
            os.unlink(path)
    store = ArtifactStore("file://" + os.path.join(workdir, "store"))
    rng = np.random.default_rng(0)
    weights = rng.normal(size=n_features) * 0.5
    part_dir = store.local_path(f"data/{NAME}/ds={DS}")
    os.makedirs(part_dir, exist_ok=True)
    t0 = time.perf_counter()
    per_file = [rows // n_files + (1 if i < rows % n_files else 0) for i in range(n_files)]
    start = 0
    for i, n in enumerate(per_file):
        schema = None
        writer = None
        left = n
        while left > 0:
            m = min(chunk, left)
            table, _ = _chunk(rng, start, m, n_features, weights)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(os.path.join(part_dir, f"part-{i:05d}.parquet"), schema,
                                          compression="zstd")
            writer.write_table(table)
            start += m
            left -= m
        if writer is not None:
            writer.close()
    print(f"generated {rows:,} rows x {n_features} features in {n_files} files "
          f"({_du(part_dir) / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s", flush=True)

    t0 = time.perf_counter()
    cfg_raw = config_dict(n_features, estimator, n_jobs)
    config = parse_model_config(cfg_raw)
    sample, label = _chunk(np.random.default_rng(1), 0, 50_000, n_features, weights)
    df = sample.to_pandas()
    df["label"] = label
    result = train_model(config, df)
    registry = ModelRegistry(store)
    metadata = result.summary()
    if estimator != "default":  # as train_and_register: the library's types, trusted for this model only
        metadata["trusted_types"] = trusted_types(config.estimator.class_path)
    mv = registry.register(NAME, result.pipeline, metadata=metadata, reference=result.reference,
                           actor="bench")
    registry.set_alias(NAME, "champion", mv.version, actor="bench")
    print(f"trained + registered {NAME} v{mv.version} (holdout roc_auc "
          f"{result.metrics['holdout'].get('roc_auc'):.3f}) in {time.perf_counter() - t0:.1f} s", flush=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({"config": cfg_raw, "root": store.root, "estimator": estimator}, f)


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run_child(mode: str, workdir: str, batch_size: int, profile: str | None = None) -> dict:
    """Child process body: import, then time one scoring of the partition."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.config.parser import parse_model_config
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.scoring import batch as scoring
    from airflow_mlops.store.artifacts import ArtifactStore

    with open(os.path.join(workdir, "config.json")) as f:
        spec = json.load(f)
    config = parse_model_config(spec["config"])
    store = ArtifactStore(spec["root"])
    rss_before = peak_rss_mib()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if mode == "plain":
        model, meta = ModelRegistry(store).load_model(NAME, alias="champion")
        features = meta["features"]
        out_dir = os.path.join(workdir, "plain_out")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        rows = 0
        in_dir = store.local_path(f"data/{NAME}/ds={DS}")
        for name in sorted(os.listdir(in_dir)):
            table = pq.read_table(os.path.join(in_dir, name), columns=["id", *features])
            X = table.select(features).to_pandas()
            proba = model.predict_proba(X)
            if spec.get("estimator", "default") == "default":
                pred = model.predict(X)
            else:  # xgboost / lightgbm: one pass; predict is the class of highest probability
                pred = model.classes_[proba.argmax(axis=1)]
            out = pa.table({"id": table.column("id"), "prediction": pred,
                            "proba_0": proba[:, 0], "proba_1": proba[:, 1]})
            pq.write_table(out, os.path.join(out_dir, name), compression="zstd")
            rows += out.num_rows
        result = {"rows": rows}
    elif profile:
        import cProfile

        with cProfile.Profile() as prof:
            result = scoring.score_partition(config, store, DS, run_id="bench",
                                             batch_size=batch_size or scoring.DEFAULT_BATCH_SIZE)
        prof.dump_stats(profile)
    else:
        result = scoring.score_partition(config, store, DS, batch_size=batch_size or scoring.DEFAULT_BATCH_SIZE,
                                         run_id="bench")
    seconds = time.perf_counter() - t0
    return {"mode": mode, "seconds": seconds, "cpu_seconds": time.process_time() - cpu0, "rows": result["rows"],
            "peak_rss_mib": peak_rss_mib(), "rss_after_imports_mib": rss_before}


def compare_outputs(workdir: str) -> bool:
    """The operator's first output file holds the same keys, predictions and probabilities as the
    plain script's (output files follow the input files, in order)."""
    import numpy as np
    import pyarrow.parquet as pq

    plain_dir = os.path.join(workdir, "plain_out")
    op_dir = os.path.join(workdir, "store", "predictions", NAME, f"ds={DS}")
    plain = pq.read_table(os.path.join(plain_dir, sorted(os.listdir(plain_dir))[0]))
    op = pq.read_table(os.path.join(op_dir, sorted(f for f in os.listdir(op_dir) if f.endswith(".parquet"))[0]))
    return all(np.array_equal(plain.column(c).to_numpy(), op.column(c).to_numpy())
               for c in ("id", "prediction", "proba_0", "proba_1"))


def compare_boosting_outputs(workdir: str) -> tuple[bool, float]:
    """Every output file: ``(same keys and labels, max |proba difference|)`` between the operator's
    float64 probabilities and the library's float32 ones written by the plain script."""
    import numpy as np
    import pyarrow.parquet as pq

    plain_dir = os.path.join(workdir, "plain_out")
    op_dir = os.path.join(workdir, "store", "predictions", NAME, f"ds={DS}")
    plain_files = sorted(os.listdir(plain_dir))
    op_files = sorted(f for f in os.listdir(op_dir) if f.endswith(".parquet"))
    same, diff = len(plain_files) == len(op_files), 0.0
    for pf, of in zip(plain_files, op_files):
        plain = pq.read_table(os.path.join(plain_dir, pf))
        op = pq.read_table(os.path.join(op_dir, of), columns=["id", "prediction", "proba_0", "proba_1"])
        same = same and all(np.array_equal(plain.column(c).to_numpy(), op.column(c).to_numpy())
                            for c in ("id", "prediction"))
        for c in ("proba_0", "proba_1"):
            a = plain.column(c).to_numpy().astype("float64")
            diff = max(diff, float(np.abs(a - op.column(c).to_numpy()).max()))
    return same, diff


def spawn(mode: str, workdir: str, batch_size: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--workdir", workdir]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    return spawn_child(cmd, mode)


def spawn_child(cmd: list[str], mode: str) -> dict:
    """Run a benchmark child; its last JSON line, plus ``process_wall`` (seconds, the whole process)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{mode} child failed with exit code {proc.returncode}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    res: dict = json.loads(line)
    res["process_wall"] = wall
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=None, help="default: score_partition's default")
    ap.add_argument("--repeat", type=int, default=2, help="runs per mode, alternating; best is kept")
    ap.add_argument("--mode", choices=["all", "plain", "operator"], default="all")
    ap.add_argument("--workdir", default=None, help="keep data here (default: a temp dir, removed after)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the data and model already in --workdir (skip generation and training)")
    ap.add_argument("--max-ratio", type=float, default=None, help="exit 1 if operator/plain is above this")
    ap.add_argument("--max-rss-mib", type=float, default=None, help="exit 1 if operator peak RSS is above this")
    ap.add_argument("--estimator", choices=CHOICES, default="default",
                    help="default = LogisticRegression; xgboost / lightgbm = XGBClassifier / LGBMClassifier")
    ap.add_argument("--n-jobs", type=int, default=None,
                    help="threads of the xgboost / lightgbm model, used by both children (default: every core)")
    ap.add_argument("--profile", default=None,
                    help="with --mode operator --workdir W (kept data): write cProfile stats of the scoring here")
    args = ap.parse_args(argv)

    if args.mode != "all":
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(run_child(args.mode, args.workdir, args.batch_size, args.profile)), flush=True)
        return 0

    if args.batch_size is None:
        from airflow_mlops.scoring.batch import DEFAULT_BATCH_SIZE

        args.batch_size = DEFAULT_BATCH_SIZE
    workdir = args.workdir or tempfile.mkdtemp(prefix="mlops-bench-")
    os.makedirs(workdir, exist_ok=True)
    try:
        if not (args.reuse and os.path.exists(os.path.join(workdir, "config.json"))):
            setup(workdir, args.rows, args.features, args.files, estimator=args.estimator, n_jobs=args.n_jobs)
        with open(os.path.join(workdir, "config.json")) as f:
            spec = json.load(f)
        estimator = spec.get("estimator", "default")
        results: dict[str, list[dict]] = {"plain": [], "operator": []}
        for i in range(args.repeat):
            for mode in ("plain", "operator"):
                r = spawn(mode, workdir, args.batch_size)
                results[mode].append(r)
                print(f"  run {i + 1} {mode:8s}: {r['seconds']:7.2f} s (cpu {r['cpu_seconds']:6.2f} s)  "
                      f"peak RSS {r['peak_rss_mib']:6.0f} MiB  ({r['rows']:,} rows)", flush=True)
        best = {m: min(rs, key=lambda r: r["seconds"]) for m, rs in results.items()}
        rows = best["plain"]["rows"]
        if best["operator"]["rows"] != rows:
            raise SystemExit(f"row counts differ: {rows} vs {best['operator']['rows']}")
        if estimator == "default":
            same = compare_outputs(workdir)
        else:
            same, proba_diff = compare_boosting_outputs(workdir)
        ratio = best["operator"]["seconds"] / best["plain"]["seconds"]
        op_rss = max(r["peak_rss_mib"] for r in results["operator"])
        plain_rss = max(r["peak_rss_mib"] for r in results["plain"])
        base_rss = min(r["rss_after_imports_mib"] for rs in results.values() for r in rs)
        print(f"rows: {rows:,}  features: {args.features}  files: {args.files}  batch size: {args.batch_size}  "
              f"(best of {args.repeat} alternating runs per mode)")
        print(f"plain script:    {best['plain']['seconds']:6.2f} s  peak RSS {plain_rss:6.0f} MiB  "
              f"{rows / best['plain']['seconds']:>12,.0f} rows/s")
        print(f"score_partition: {best['operator']['seconds']:6.2f} s  peak RSS {op_rss:6.0f} MiB  "
              f"{rows / best['operator']['seconds']:>12,.0f} rows/s")
        print(f"(RSS after imports, before scoring: {base_rss:.0f} MiB in both)")
        if estimator == "default":
            print(f"identical predictions and probabilities (first file): {same}")
        else:
            est = spec["config"]["estimator"]
            print(f"estimator: {est['class']} {json.dumps(est['params'], sort_keys=True)} (same model, same "
                  f"n_jobs in both)")
            print(f"identical keys and predictions (all files): {same}  "
                  f"max |proba ours - plain (float32)|: {proba_diff:.1e}")
        print(f"ratio: {ratio:.2f}")
        ok = True
        if args.max_ratio is not None and ratio > args.max_ratio:
            print(f"FAIL: ratio {ratio:.2f} > {args.max_ratio}")
            ok = False
        if args.max_rss_mib is not None and op_rss > args.max_rss_mib:
            print(f"FAIL: operator peak RSS {op_rss:.0f} MiB > {args.max_rss_mib}")
            ok = False
        return 0 if ok else 1
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
