"""Benchmark: ``airflow_mlops.monitoring.drift.compute_drift`` vs evidently used directly.

Usage::

    .venv/bin/python benchmarks/drift.py --rows 1000000 --features 20

Generates a reference and a current data set (``--rows`` rows each, ``--features`` float
columns; a quarter of the columns are shifted in the current data) once, writes them to parquet
in a temporary directory, then times in separate subprocesses, alternating (direct, ours, ours,
direct, ...), ``--repeat`` times each (default 2), keeping the best:

* direct: read both parquet files, ``Report([DataDriftPreset()]).run(current, reference)``,
  extract the result (``snapshot.dict()``), write the HTML report (``snapshot.save_html``);
* ours: read both parquet files, ``compute_drift(reference, current, numeric=..., categorical=[],
  prediction_column=None, sample_size=N, html=True)``, write ``result.html``.

Fairness: both run on the same rows. By default neither samples (``sample_size=None`` for ours,
the full frames for evidently). With ``--sample-size N`` both sample each side to N rows with the
same numpy code (``default_rng([0, side]).choice(..., replace=False)``, sorted) before evidently.
Interpreter start-up and ``import evidently`` (about 4.5 s, identical for both) are outside the
timed region; the timed region covers parquet reading, sampling, the report, result extraction and
writing the HTML. The subprocess wall time is printed too.

Prints both times (best wall time of the timed region, and best process CPU time, which is less
disturbed by other load on the machine), ``cpu ratio`` and ``ratio: X.XX`` (ours / direct, wall
time). Target: ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DIRECT = r"""
import json, sys, time
import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
tmp, sample_size = sys.argv[1], (None if sys.argv[2] == "none" else int(sys.argv[2]))
t0, c0 = time.perf_counter(), time.process_time()
reference = pd.read_parquet(f"{tmp}/reference.parquet")
current = pd.read_parquet(f"{tmp}/current.parquet")
def sample(df, stream):
    if sample_size is None or len(df) <= sample_size:
        return df
    idx = np.sort(np.random.default_rng([0, stream]).choice(len(df), size=sample_size, replace=False))
    return df.iloc[idx]
reference, current = sample(reference, 0), sample(current, 1)
snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
result = snapshot.dict()
count = result["metrics"][0]["value"]
snapshot.save_html(f"{tmp}/direct.html")
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": elapsed, "cpu": cpu, "drifted": count["count"], "share": count["share"]}))
"""

OURS = r"""
import json, sys, time
import pandas as pd
import evidently  # imported lazily by compute_drift; imported here so both sides time the same thing
from evidently import Report
from evidently.presets import DataDriftPreset
from airflow_mlops.monitoring.drift import compute_drift
tmp, sample_size = sys.argv[1], (None if sys.argv[2] == "none" else int(sys.argv[2]))
t0, c0 = time.perf_counter(), time.process_time()
reference = pd.read_parquet(f"{tmp}/reference.parquet")
current = pd.read_parquet(f"{tmp}/current.parquet")
result = compute_drift(reference, current, numeric=list(reference.columns), categorical=[],
                       prediction_column=None, sample_size=sample_size, seed=0, html=True)
with open(f"{tmp}/ours.html", "w", encoding="utf-8") as f:
    f.write(result.html)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
s = result.summary
print(json.dumps({"seconds": elapsed, "cpu": cpu, "drifted": s["n_drifted"], "share": s["share_drifted"]}))
"""


def generate(tmp: str, rows: int, features: int, seed: int = 0) -> list[str]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    shifted = [f"f{i:02d}" for i in range(0, features, 4)]  # every 4th column drifts
    ref, cur = {}, {}
    for i in range(features):
        name = f"f{i:02d}"
        loc, scale = float(rng.uniform(-5, 5)), float(rng.uniform(0.5, 3))
        ref[name] = rng.normal(loc, scale, rows)
        cur[name] = rng.normal(loc + (0.5 * scale if name in shifted else 0.0), scale, rows)
    pd.DataFrame(ref).to_parquet(f"{tmp}/reference.parquet", index=False)
    pd.DataFrame(cur).to_parquet(f"{tmp}/current.parquet", index=False)
    return shifted


def run(code: str, tmp: str, sample_size: int | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, tmp, "none" if sample_size is None else str(sample_size)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark subprocess failed with exit code {proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall"] = wall
    return out


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in reference and in current data")
    p.add_argument("--features", type=int, default=20, help="numeric feature columns")
    p.add_argument("--sample-size", type=int, default=None,
                   help="sample each side to N rows in both runs (default: no sampling, full data in both)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each, alternating; the best is kept")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mlops-drift-bench-") as tmp:
        t0 = time.perf_counter()
        shifted = generate(tmp, args.rows, args.features)
        print(f"data: {args.rows} rows x {args.features} numeric features per side, shifted: {', '.join(shifted)} "
              f"(generated in {time.perf_counter() - t0:.1f} s)")
        sampling = ("none (full data in both)" if args.sample_size is None
                    else f"{args.sample_size} rows per side in both")
        print(f"sampling: {sampling}")
        direct: list[dict] = []
        ours: list[dict] = []
        for i in range(args.repeat):
            # alternate which one goes first, so a slow moment of the machine hits both alike
            if i % 2 == 0:
                direct.append(run(DIRECT, tmp, args.sample_size))
                ours.append(run(OURS, tmp, args.sample_size))
            else:
                ours.append(run(OURS, tmp, args.sample_size))
                direct.append(run(DIRECT, tmp, args.sample_size))
            print(f"  round {i + 1}: direct {direct[-1]['seconds']:.2f} s (wall {direct[-1]['wall']:.1f} s), "
                  f"ours {ours[-1]['seconds']:.2f} s (wall {ours[-1]['wall']:.1f} s)")
        best_direct = min(direct, key=lambda r: r["seconds"])
        best_ours = min(ours, key=lambda r: r["seconds"])
        if best_direct["drifted"] != best_ours["drifted"]:
            print(f"WARNING: drifted column counts differ: direct {best_direct['drifted']}, "
                  f"ours {best_ours['drifted']}")
        print(f"drifted columns: direct {best_direct['drifted']:.0f}, ours {best_ours['drifted']}, "
              f"expected {len(shifted)}")
        cpu_direct = min(r["cpu"] for r in direct)
        cpu_ours = min(r["cpu"] for r in ours)
        print(f"direct evidently: {best_direct['seconds']:.2f} s (best CPU time {cpu_direct:.2f} s)")
        print(f"compute_drift:    {best_ours['seconds']:.2f} s (best CPU time {cpu_ours:.2f} s)")
        print(f"cpu ratio: {cpu_ours / cpu_direct:.2f}  (less sensitive to other load on the machine)")
        ratio = best_ours["seconds"] / best_direct["seconds"]
        print(f"ratio: {ratio:.2f}")
        return ratio


if __name__ == "__main__":
    main()
