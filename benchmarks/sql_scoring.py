"""Benchmark: scoring a day of a PostgreSQL table into a PostgreSQL table, ``score_partition`` vs a plain
pandas + SQLAlchemy + scikit-learn script, in the same run against the same Postgres server.

One run does everything:

1. starts a private PostgreSQL cluster on a free 127.0.0.1 port (Debian's binaries, the helpers of
   ``scripts/celery_multiworker.py``, as ``tests/sql/conftest.py`` does) and defines the Airflow connection
   ``bench_pg`` as ``AIRFLOW_CONN_BENCH_PG=postgres://airflow@127.0.0.1:<port>/airflow`` (the children
   inherit it);
2. loads ``--rows`` rows x ``--features`` ``double precision`` features ``f0`` .. + a ``bigint`` key
   ``customer_id`` + a ``DATE`` column ``event_date`` (all ``2024-01-01``) into ``bench_input`` with
   ``COPY ... FROM STDIN`` (CSV chunks generated with numpy, never all rows at once), then
   ``VACUUM (FREEZE, ANALYZE)`` so that neither mode pays the hint-bit writes of a first read. There is no
   index: the whole table is the scored day, a sequential scan is what Postgres does either way;
3. trains a LogisticRegression pipeline with ``airflow_mlops.training.trainer.train_model`` on a 50k sample of
   the same distribution, registers it as version 1 in a temporary ``file://`` registry (alias ``champion``).
   The model config reads ``data: {conn_id: bench_pg, table: bench_input, date_column: event_date}`` and
   publishes to ``predictions: {conn_id: bench_pg, table: bench_preds_ours}``;
4. times, each in its own fresh subprocess, alternating and ``--repeat`` times (best kept):

   * ``plain``: what one writes by hand: ``DELETE`` that day's rows of ``bench_preds_plain`` (a rerun must
     not duplicate), ``pandas.read_sql(SELECT * ... WHERE event_date = '2024-01-01', engine,
     chunksize=--chunk-rows)`` -> per chunk ``model.predict_proba`` + ``model.predict`` ->
     ``DataFrame.to_sql("bench_preds_plain", engine, if_exists="append", index=False, method="multi",
     chunksize=--insert-rows)`` of ``customer_id``, ``prediction``, ``proba_0``, ``proba_1``, ``logical_date``.
     The engine is ``postgresql+psycopg2://`` (``--plain-driver psycopg`` for psycopg 3, whose server-side
     binding caps a statement at 65,535 parameters: ``--insert-rows`` is then lowered to fit).
     ``--plain-insert executemany`` uses ``method=None`` (SQLAlchemy's batched executemany), ``--plain-insert
     copy`` the ``psql_insert_copy`` callable of pandas' documentation (``COPY`` per ``to_sql`` chunk): the
     strongest plain baseline. The model is the same registered pipeline, loaded with
     ``ModelRegistry(store).load_model(name, version=1)``;
   * ``ours``: ``airflow_mlops.scoring.batch.score_partition(config, store, "2024-01-01", version=1)``: reads
     the day through a server-side cursor, writes the prediction log (Parquet, every log column) to the store,
     and publishes it to ``bench_preds_ours`` (``DELETE`` of that date + ``COPY``, one transaction).

   Each child reports its wall time (after imports, Airflow's and the Postgres hook's included in both; model
   load and connection lookup are timed), its CPU time
   (``getrusage`` self + children) and its peak RSS (``VmHWM``). The parent adds the CPU time the Postgres
   server spent meanwhile (every process of the cluster, exited backends included) and checks after each
   run that the mode's table holds exactly ``--rows`` rows with distinct keys (no duplicates across reruns);
5. prints both, the comparison of the outputs (same keys, identical predictions, max |probability
   difference|), ``ratio: X.XX`` (ours / plain) and exits 1 when ``--max-ratio`` or ``--max-rss-mib``
   (our peak RSS) is exceeded.

``--rows-list 1000000,5000000`` repeats 2.-5. for each size on the same server (same model) and ends with our
peak RSS per size, to show it does not grow with the rows. ``--profile FILE`` runs one more ``ours`` child
under cProfile after the timed runs and writes its stats to FILE.

Goals: ratio <= 0.7, our peak RSS <= 1 GiB and flat from 1M to 5M rows.

What to expect of the plain script: ``read_sql(..., chunksize=)`` on an engine runs the query with a client-side
cursor, so the driver holds the whole result before the first chunk (its peak RSS grows with the rows);
``to_sql(method="multi")`` compiles one INSERT of ``5 x --insert-rows`` parameters per chunk, which costs far
more CPU than the scoring (``--plain-insert copy`` removes that cost). Both modes spend most of their time
turning Postgres' text rows into Python objects (psycopg2's / psycopg's row fetch).

Usage::

    .venv/bin/python benchmarks/sql_scoring.py --rows 1000000
    .venv/bin/python benchmarks/sql_scoring.py --rows 1000000 --plain-insert copy
    .venv/bin/python benchmarks/sql_scoring.py --rows-list 1000000,5000000 --max-ratio 0.7 --max-rss-mib 1024
    .venv/bin/python benchmarks/sql_scoring.py --rows 20000 --repeat 1 --profile /tmp/ours.prof

The server's data directory and every temp dir are removed at the end (``--keep`` keeps the work dir).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from batch_scoring import DS, NAME, REPO, peak_rss_mib, spawn_child  # (it puts the repository on sys.path)
from batch_scoring import config_dict as batch_config_dict

CONN_ID = "bench_pg"
INPUT, PLAIN_TABLE, OURS_TABLE = "bench_input", "bench_preds_plain", "bench_preds_ours"
PG_MAX_PARAMS = 65_535  # bind parameters per statement (psycopg 3 binds on the server)


# ----------------------------------------------------------------------------------------------
# measurements (peak RSS: batch_scoring.peak_rss_mib, VmHWM)
# ----------------------------------------------------------------------------------------------
def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children."""
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def server_cpu_seconds(postmaster: int) -> float:
    """CPU time of the Postgres cluster so far: every live process of its process group (the postmaster's
    session), plus the backends that exited (reaped by the postmaster: its cutime + cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) != postmaster:  # fields[2] = pgrp
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if int(pid) == postmaster:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / tick


# ----------------------------------------------------------------------------------------------
# the server and the data
# ----------------------------------------------------------------------------------------------
def _script() -> Any:
    """``scripts/celery_multiworker.py`` as a module (its Postgres helpers), as ``tests/sql/conftest.py``."""
    name = "_mlops_celery_multiworker"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "scripts", "celery_multiworker.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pg_connect(spec: dict[str, Any]) -> Any:
    """A psycopg (3) autocommit connection of the parent (setup, checks)."""
    import psycopg

    return psycopg.connect(host=spec["host"], port=spec["port"], user=spec["user"], dbname=spec["dbname"],
                           autocommit=True)


def query(spec: dict[str, Any], sql: str) -> list[tuple]:
    """The rows of ``sql`` (none for a statement without a result)."""
    with pg_connect(spec) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def _weights(n_features: int) -> Any:
    import numpy as np

    return np.random.default_rng(0).normal(size=n_features) * 0.5


def load_input(spec: dict[str, Any], rows: int, n_features: int, chunk: int = 200_000) -> None:
    """``bench_input`` with ``rows`` rows of day ``DS`` (recreated), loaded by COPY in CSV chunks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    features = [f"f{j}" for j in range(n_features)]
    cols = ", ".join(["customer_id bigint NOT NULL", *(f"{c} double precision" for c in features),
                      "event_date date NOT NULL"])
    rng = np.random.default_rng(2)
    options = pacsv.WriteOptions(include_header=False)
    t0 = time.perf_counter()
    with pg_connect(spec) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {INPUT}")
        conn.execute(f"CREATE TABLE {INPUT} ({cols})")
        with conn.transaction(), conn.cursor() as cur, cur.copy(f"COPY {INPUT} FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, rows, chunk):
                n = min(chunk, rows - start)
                X = rng.normal(size=(n, n_features))
                arrays = {"customer_id": pa.array(np.arange(start, start + n, dtype="int64"))}
                arrays.update({c: pa.array(X[:, j]) for j, c in enumerate(features)})
                arrays["event_date"] = pa.array(np.full(n, np.datetime64(DS, "D")))
                buf = io.BytesIO()
                pacsv.write_csv(pa.table(arrays), buf, options)
                copy.write(buf.getvalue())
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {INPUT}")
        size = conn.execute(f"SELECT pg_total_relation_size('{INPUT}')").fetchone()[0]
    print(f"loaded {rows:,} rows x {n_features} features into {INPUT} ({size / 2**20:.0f} MiB) by COPY in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)


def config_dict(n_features: int) -> dict[str, Any]:
    """batch_scoring.py's config (same LogisticRegression, training settings, no validation suite) on the table."""
    cfg = batch_config_dict(n_features)
    cfg.update(data={"conn_id": CONN_ID, "table": INPUT, "date_column": "event_date"},
               predictions={"conn_id": CONN_ID, "table": OURS_TABLE}, keys=["customer_id"],
               features=[f"f{j}" for j in range(n_features)])
    return cfg


def train(workdir: str, spec: dict[str, Any], n_features: int) -> None:
    """Train on a 50k sample of the input's distribution, register v1 + ``champion``; write ``spec.json``."""
    import numpy as np
    import pandas as pd

    from airflow_mlops.config.parser import parse_model_config
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.training.trainer import train_model

    t0 = time.perf_counter()
    store = ArtifactStore("file://" + os.path.join(workdir, "store"))
    raw = config_dict(n_features)
    config = parse_model_config(raw)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50_000, n_features))
    df = pd.DataFrame(X, columns=raw["features"])
    df.insert(0, "customer_id", np.arange(len(df), dtype="int64"))
    df["label"] = (rng.random(len(df)) < 1 / (1 + np.exp(-(X @ _weights(n_features))))).astype("int64")
    result = train_model(config, df)
    registry = ModelRegistry(store)
    mv = registry.register(NAME, result.pipeline, metadata=result.summary(), reference=result.reference,
                           actor="bench")
    registry.set_alias(NAME, "champion", mv.version, actor="bench")
    print(f"trained + registered {NAME} v{mv.version} (holdout roc_auc "
          f"{result.metrics['holdout'].get('roc_auc'):.3f}) in {time.perf_counter() - t0:.1f} s", flush=True)
    with open(os.path.join(workdir, "spec.json"), "w") as f:
        json.dump({**spec, "config": raw, "root": store.root, "version": mv.version}, f)


# ----------------------------------------------------------------------------------------------
# the children
# ----------------------------------------------------------------------------------------------
def psql_insert_copy(table: Any, conn: Any, keys: list[str], data_iter: Any) -> None:
    """``to_sql(method=...)`` by ``COPY``: the recipe of pandas' documentation ("Insertion method")."""
    import csv

    buf = io.StringIO()
    csv.writer(buf).writerows(data_iter)
    columns = ", ".join(f'"{k}"' for k in keys)
    sql = f"COPY {table.name} ({columns}) FROM STDIN WITH CSV"
    dbapi = conn.connection.dbapi_connection
    with dbapi.cursor() as cur:
        if hasattr(cur, "copy_expert"):  # psycopg2
            buf.seek(0)
            cur.copy_expert(sql, buf)
        else:  # psycopg 3
            with cur.copy(sql) as copy:
                copy.write(buf.getvalue())


def run_plain(spec: dict[str, Any], store: Any, args: argparse.Namespace) -> int:
    import datetime as dt

    import pandas as pd
    import sqlalchemy as sa

    from airflow_mlops.registry.model_registry import ModelRegistry

    url = f"postgresql+{args.plain_driver}://{spec['user']}@{spec['host']}:{spec['port']}/{spec['dbname']}"
    engine = sa.create_engine(url)
    model, meta = ModelRegistry(store).load_model(NAME, version=spec["version"])
    features = meta["features"]
    if sa.inspect(engine).has_table(PLAIN_TABLE):
        with engine.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {PLAIN_TABLE} WHERE logical_date = :d"), {"d": DS})
    rows = 0
    day = dt.date.fromisoformat(DS)
    method = {"multi": "multi", "executemany": None, "copy": psql_insert_copy}[args.plain_insert]
    sql = f"SELECT * FROM {INPUT} WHERE event_date = '{DS}'"
    for chunk in pd.read_sql(sql, engine, chunksize=args.chunk_rows):
        X = chunk[features]
        proba = model.predict_proba(X)
        out = pd.DataFrame({"customer_id": chunk["customer_id"], "prediction": model.predict(X),
                            "proba_0": proba[:, 0], "proba_1": proba[:, 1], "logical_date": day})
        out.to_sql(PLAIN_TABLE, engine, if_exists="append", index=False, method=method, chunksize=args.insert_rows)
        rows += len(out)
    engine.dispose()
    return rows


def run_child(mode: str, workdir: str, args: argparse.Namespace) -> dict[str, Any]:
    """Child process body: import, then time one scoring of the day."""
    # imported before the clock starts, in both modes: a task in Airflow has Airflow and its hooks loaded
    import airflow.sdk  # noqa: F401
    import pandas  # noqa: F401
    import sqlalchemy  # noqa: F401
    from airflow.providers.postgres.hooks import postgres  # noqa: F401

    from airflow_mlops.config.parser import parse_model_config
    from airflow_mlops.scoring import batch as scoring
    from airflow_mlops.sql import dataset as _sql_dataset  # noqa: F401
    from airflow_mlops.store.artifacts import ArtifactStore

    with open(os.path.join(workdir, "spec.json")) as f:
        spec = json.load(f)
    config = parse_model_config(spec["config"])
    store = ArtifactStore(spec["root"])
    rss_before = peak_rss_mib()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    if mode == "plain":
        rows = run_plain(spec, store, args)
    else:
        batch_size = args.batch_size or scoring.DEFAULT_BATCH_SIZE
        if args.profile:
            import cProfile

            with cProfile.Profile() as prof:
                summary = scoring.score_partition(config, store, DS, version=spec["version"], run_id="bench",
                                                  batch_size=batch_size)
            prof.dump_stats(args.profile)
        else:
            summary = scoring.score_partition(config, store, DS, version=spec["version"], run_id="bench",
                                              batch_size=batch_size)
        rows = summary["predictions_table"]["inserted"]
    seconds = time.perf_counter() - t0
    return {"mode": mode, "seconds": seconds, "cpu_seconds": cpu_seconds() - cpu0, "rows": rows,
            "peak_rss_mib": peak_rss_mib(), "rss_after_imports_mib": rss_before}


def spawn(mode: str, workdir: str, args: argparse.Namespace, postmaster: int, profile: str | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode, "--workdir", workdir,
           "--chunk-rows", str(args.chunk_rows), "--insert-rows", str(args.insert_rows),
           "--plain-driver", args.plain_driver, "--plain-insert", args.plain_insert]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if profile:
        cmd += ["--profile", profile]
    server0 = server_cpu_seconds(postmaster)
    res = spawn_child(cmd, mode)
    res["server_cpu_seconds"] = server_cpu_seconds(postmaster) - server0
    return res


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------
def table_rows(spec: dict[str, Any], table: str) -> tuple[int, int]:
    """``(rows, distinct keys)`` of the day in ``table``."""
    return query(spec, f"SELECT count(*), count(DISTINCT customer_id) FROM {table} WHERE logical_date = '{DS}'")[0]


def compare_tables(spec: dict[str, Any]) -> dict[str, Any]:
    """Keys of one table missing from the other, predictions that differ, max |probability difference|."""
    (only_plain,), = query(spec, f"SELECT count(*) FROM {PLAIN_TABLE} p LEFT JOIN {OURS_TABLE} o USING "
                                 "(customer_id) WHERE o.customer_id IS NULL")
    (only_ours,), = query(spec, f"SELECT count(*) FROM {OURS_TABLE} o LEFT JOIN {PLAIN_TABLE} p USING "
                                "(customer_id) WHERE p.customer_id IS NULL")
    (differ, d0, d1), = query(spec, f"SELECT count(*) FILTER (WHERE p.prediction::text <> o.prediction::text), "
                                    "max(abs(p.proba_0 - o.proba_0)), max(abs(p.proba_1 - o.proba_1)) "
                                    f"FROM {PLAIN_TABLE} p JOIN {OURS_TABLE} o USING (customer_id)")
    return {"only_plain": only_plain, "only_ours": only_ours, "prediction_differs": differ,
            "max_proba_diff": max(d0 or 0.0, d1 or 0.0)}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ----------------------------------------------------------------------------------------------
def bench_size(workdir: str, spec: dict[str, Any], args: argparse.Namespace, rows: int, postmaster: int) -> dict:
    """Load ``rows`` rows, time both modes, check and print; returns the figures."""
    load_input(spec, rows, args.features)
    for table in (PLAIN_TABLE, OURS_TABLE):  # a fresh start for each size
        query(spec, f"DROP TABLE IF EXISTS {table}")
    print(f"load average before: {loadavg()}", flush=True)
    results: dict[str, list[dict]] = {"plain": [], "ours": []}
    for i in range(args.repeat):
        for mode, table in (("plain", PLAIN_TABLE), ("ours", OURS_TABLE)):
            r = spawn(mode, workdir, args, postmaster)
            n, keys = table_rows(spec, table)
            if r["rows"] != rows or n != rows or keys != rows:
                raise SystemExit(f"{mode}: {r['rows']:,} rows written, {table} holds {n:,} rows / {keys:,} keys "
                                 f"for {DS}; expected {rows:,}")
            results[mode].append(r)
            print(f"  run {i + 1} {mode:5s}: {r['seconds']:7.2f} s  cpu {r['cpu_seconds']:6.2f} s  "
                  f"server cpu {r['server_cpu_seconds']:6.2f} s  peak RSS {r['peak_rss_mib']:6.0f} MiB  "
                  f"({n:,} rows in {table})", flush=True)
    print(f"load average after:  {loadavg()}", flush=True)
    best = {m: min(rs, key=lambda r: r["seconds"]) for m, rs in results.items()}
    cmp = compare_tables(spec)
    ratio = best["ours"]["seconds"] / best["plain"]["seconds"]
    rss = {m: max(r["peak_rss_mib"] for r in rs) for m, rs in results.items()}
    base_rss = min(r["rss_after_imports_mib"] for rs in results.values() for r in rs)
    print(f"rows: {rows:,}  features: {args.features}  plain: read chunk {args.chunk_rows:,}, to_sql "
          f"{args.plain_insert} of {args.insert_rows:,} rows ({args.plain_driver})  ours: batch size "
          f"{args.batch_size or 'default'}  (best of {args.repeat} alternating runs per mode)")
    for mode, label in (("plain", "plain script:   "), ("ours", "score_partition:")):
        b = best[mode]
        print(f"{label} {b['seconds']:7.2f} s  cpu {b['cpu_seconds']:6.2f} s  server cpu "
              f"{b['server_cpu_seconds']:6.2f} s  peak RSS {rss[mode]:6.0f} MiB  {rows / b['seconds']:>10,.0f} rows/s")
    print(f"(RSS after imports, before scoring: {base_rss:.0f} MiB)")
    same = cmp["only_plain"] == cmp["only_ours"] == cmp["prediction_differs"] == 0
    print(f"outputs: same keys and predictions: {same} (keys only in plain {cmp['only_plain']}, only in ours "
          f"{cmp['only_ours']}, predictions differing {cmp['prediction_differs']}); max |proba ours - plain|: "
          f"{cmp['max_proba_diff']:.1e}")
    print(f"ratio: {ratio:.2f}", flush=True)
    return {"rows": rows, "ratio": ratio, "ours_rss": rss["ours"], "same": same}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--rows-list", default=None, help="comma-separated sizes, run one after the other (wins "
                                                        "over --rows)")
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--chunk-rows", type=int, default=100_000, help="plain: read_sql chunksize")
    ap.add_argument("--insert-rows", type=int, default=10_000, help="plain: to_sql chunksize (rows per INSERT)")
    ap.add_argument("--plain-driver", choices=["psycopg2", "psycopg"], default="psycopg2",
                    help="plain: the SQLAlchemy driver")
    ap.add_argument("--plain-insert", choices=["multi", "executemany", "copy"], default="multi",
                    help="plain: to_sql method: 'multi' (multi-row INSERTs), 'executemany' (method=None) or "
                         "'copy' (pandas' documented psql_insert_copy recipe)")
    ap.add_argument("--batch-size", type=int, default=None, help="ours: default score_partition's default")
    ap.add_argument("--repeat", type=int, default=2, help="runs per mode, alternating; best is kept")
    ap.add_argument("--mode", choices=["all", "plain", "ours"], default="all", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (store, logs)")
    ap.add_argument("--max-ratio", type=float, default=None, help="exit 1 if ours/plain is above this")
    ap.add_argument("--max-rss-mib", type=float, default=None, help="exit 1 if our peak RSS is above this")
    ap.add_argument("--profile", default=None, help="after the timed runs, one more ours run under cProfile: "
                                                    "its stats are written here")
    args = ap.parse_args(argv)
    if args.plain_driver == "psycopg" and args.plain_insert == "multi":
        args.insert_rows = min(args.insert_rows, PG_MAX_PARAMS // 5)

    if args.mode != "all":
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(run_child(args.mode, args.workdir, args)), flush=True)
        return 0

    sizes = [int(s) for s in args.rows_list.split(",")] if args.rows_list else [args.rows]
    script = _script()
    bindir = script.pg_bindir()
    if bindir is None:
        raise SystemExit("Debian's postgresql is not installed (apt-get install -y postgresql)")
    workdir = tempfile.mkdtemp(prefix="mlops-sql-bench-")
    stack = script.Stack(Path(workdir))
    try:
        url = script.start_postgres(stack, bindir)  # postgresql+psycopg2://airflow@127.0.0.1:<port>/airflow
        postmaster = stack.procs[-1].popen.pid
        hostport = url.split("@", 1)[1].split("/", 1)[0]
        spec = {"host": hostport.split(":")[0], "port": int(hostport.split(":")[1]), "user": "airflow",
                "dbname": "airflow"}
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = (f"postgres://{spec['user']}@{spec['host']}:{spec['port']}/"
                                                          f"{spec['dbname']}")
        print(f"Postgres {bindir.parent.name} on {spec['host']}:{spec['port']} (fsync off), work dir {workdir}",
              flush=True)
        train(workdir, spec, args.features)
        outcomes = [bench_size(workdir, spec, args, rows, postmaster) for rows in sizes]
        if args.profile:
            spawn("ours", workdir, args, postmaster, profile=os.path.abspath(args.profile))
            print(f"cProfile stats of one ours run: {args.profile}")
        if len(outcomes) > 1:
            print("our peak RSS by rows: " + ", ".join(f"{o['rows']:,}: {o['ours_rss']:.0f} MiB" for o in outcomes))
        ok = all(o["same"] for o in outcomes)
        if not ok:
            print("FAIL: the two tables differ")
        for o in outcomes:
            if args.max_ratio is not None and o["ratio"] > args.max_ratio:
                print(f"FAIL: {o['rows']:,} rows: ratio {o['ratio']:.2f} > {args.max_ratio}")
                ok = False
            if args.max_rss_mib is not None and o["ours_rss"] > args.max_rss_mib:
                print(f"FAIL: {o['rows']:,} rows: our peak RSS {o['ours_rss']:.0f} MiB > {args.max_rss_mib}")
                ok = False
        return 0 if ok else 1
    finally:
        stack.stop_all()
        with contextlib.suppress(Exception):
            shutil.rmtree(getattr(stack, "pgdir", os.path.join(workdir, "none")), ignore_errors=True)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
