"""Training benchmark: TrainModelOperator's work vs a plain sklearn script, same data, same run.

    python benchmarks/training.py [--rows 200000]

(a) plain script: read the parquet partitions with pandas, the same ColumnTransformer +
    HistGradientBoostingClassifier pipeline, the same K-fold CV, fit, holdout metrics, skops dump.
(b) operator: what TrainModelOperator.execute runs (start the smoke-test interpreter, parse the config,
    ``airflow_mlops.registry.lifecycle.train_and_register``):
    the same, plus naive baseline, permutation importance, data fingerprint, reference sample and
    the registry write with hashes.
Each runs in its own process (imports included), twice, alternating; the best of each is kept.
Prints both times and the ratio (goal: <= 1.10 after a 2 s fixed allowance).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAYS = 7


def make_config(rows_per_day: int) -> dict:
    import yaml

    cfg = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())
    cfg["data"]["training_window_days"] = DAYS
    return cfg


def generate(root: Path, rows: int) -> None:
    from airflow_mlops.demo.data import churn_day, date_range
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset

    data = Dataset.for_name(ArtifactStore("file://" + str(root / "store")), "churn")
    for day in date_range("2024-01-01", DAYS):
        data.write(day, churn_day(day, rows=rows // DAYS))


def run_plain(root: Path, cfg: dict) -> None:
    import glob

    import numpy as np
    import pandas as pd
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    files = sorted(glob.glob(str(root / "store" / "data" / "churn" / "ds=*" / "*.parquet")))
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    feats = cfg["features"]
    cat = ["contract", "region"]
    num = [f for f in feats if f not in cat]
    X, y = df[feats], df[cfg["target"]]
    seed = cfg["training"]["seed"]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=cfg["training"]["test_size"], random_state=seed,
                                          stratify=y)
    pre = ColumnTransformer([("num", SimpleImputer(strategy="median"), num),
                             ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                                   OneHotEncoder(handle_unknown="ignore")), cat)])
    pipe = Pipeline([("pre", pre), ("est", HistGradientBoostingClassifier(**cfg["estimator"]["params"],
                                                                          random_state=seed))])
    cv = StratifiedKFold(cfg["training"]["cv_folds"], shuffle=True, random_state=seed)
    scores = cross_val_score(pipe, Xtr, ytr, cv=cv, scoring="roc_auc")
    pipe.fit(Xtr, ytr)
    auc = roc_auc_score(yte, pipe.predict_proba(Xte)[:, 1])
    (root / "plain.skops").write_bytes(sio.dumps(pipe))
    print(json.dumps({"cv": float(np.mean(scores)), "holdout": float(auc)}), file=sys.stderr)


def run_operator(root: Path, cfg: dict) -> None:
    from airflow_mlops.registry.smoke import SmokeProcess

    with SmokeProcess() as smoke:  # as TrainModelOperator.execute: started before the config is parsed
        from airflow_mlops.config.parser import parse_model_config
        from airflow_mlops.registry.lifecycle import train_and_register
        from airflow_mlops.store.artifacts import ArtifactStore

        out = train_and_register(parse_model_config(cfg), ArtifactStore("file://" + str(root / "store")),
                                 "2024-01-07", {"dag_id": "benchmark", "run_id": "benchmark", "task_id": "train"},
                                 smoke=smoke)
    print(json.dumps(out["holdout"]), file=sys.stderr)


def child(mode: str, root: Path) -> None:
    t = time.perf_counter()
    cfg = json.loads((root / "config.json").read_text())
    (run_plain if mode == "plain" else run_operator)(root, cfg)
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mib": rss}))


def timed(mode: str, root: Path) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--root", str(root)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall"] = time.perf_counter() - t
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", choices=["plain", "operator"])
    p.add_argument("--root")
    a = p.parse_args()
    if a.child:
        child(a.child, Path(a.root))
        return
    with tempfile.TemporaryDirectory(prefix="mlops-bench-train-") as tmp:
        root = Path(tmp)
        print(f"generating {a.rows} rows in {DAYS} partitions ...", flush=True)
        generate(root, a.rows)
        (root / "config.json").write_text(json.dumps(make_config(a.rows // DAYS)))
        best: dict[str, dict] = {}
        for i in range(a.repeats):
            for mode in ("plain", "operator"):
                r = timed(mode, root)
                print(f"  run {i + 1} {mode:<8} {r['wall']:.2f}s  peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
                if mode not in best or r["wall"] < best[mode]["wall"]:
                    best[mode] = r
        plain, op = best["plain"]["wall"], best["operator"]["wall"]
        print(f"plain script: {plain:.2f}s (peak RSS {best['plain']['peak_rss_mib']:.0f} MiB)")
        print(f"operator:     {op:.2f}s (peak RSS {best['operator']['peak_rss_mib']:.0f} MiB)")
        print(f"raw ratio: {op / plain:.2f}")
        print(f"ratio (operator - 2 s fixed allowance) / plain: {max(op - 2.0, 0) / plain:.2f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
