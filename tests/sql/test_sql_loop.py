"""The loop on data in PostgreSQL: train on a table's window, score a day of it, publish the predictions to a
table, monitor drift and performance on late labels from another table; reruns and a backfill never duplicate;
bad input fails naming the table or column with nothing written (the library calls the operators make)."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from churn_tables import CHURN_DAYS as DAYS
from churn_tables import CHURN_ROWS as ROWS
from churn_tables import PG_CONN_ID

from airflow_mlops.config.parser import parse_model_config
from airflow_mlops.demo.data import churn_day
from airflow_mlops.sql.write import write_predictions
from airflow_mlops.store.artifacts import ArtifactStore

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text())


def _config(tables: dict[str, str], **data: Any) -> Any:
    raw = copy.deepcopy(BASE)
    raw["data"] = {"conn_id": PG_CONN_ID, "table": f"public.{tables['train']}", "date_column": "event_date",
                   "training_window_days": 5,
                   "scoring_dataset": {"table": tables["events"], "date_column": "event_date"},
                   "ground_truth_dataset": {"table": tables["labels"], "date_column": "label_date"}, **data}
    raw["predictions"] = {"conn_id": PG_CONN_ID, "table": f"public.{tables['preds']}"}
    raw.pop("explain", None)
    return parse_model_config(raw)


def _count(pg_server: Any, sql: str) -> Any:
    conn = pg_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_train_score_publish_monitor_on_postgres(pg_server, churn_tables, tmp_path):
    from airflow_mlops.monitoring.monitor import detect_drift, monitor_performance
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.registry.model_registry import ModelRegistry
    from airflow_mlops.scoring.batch import score_partition

    config = _config(churn_tables)
    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    trained = train_and_register(config, store, DAYS[4])
    meta = ModelRegistry(store).get_metadata("churn", trained["version"])
    training = meta["training_data"]
    assert training["uri"] == (f"postgres://{pg_server.host}:{pg_server.port}/{pg_server.dbname}.public."
                               f"{churn_tables['train']}")
    assert training["partitions"] == DAYS[:5]
    assert training["fingerprint"]["rows"] == 5 * ROWS
    assert "event_date" not in meta["features"]

    preds = churn_tables["preds"]
    for day in DAYS[5:]:  # a backfill of five days, then a rerun of one of them
        summary = score_partition(config, store, day, version=trained["version"])
        assert summary["rows"] == ROWS
        assert summary["input_uri"].endswith(f".{churn_tables['events']}/ds={day}")
        assert summary["predictions_table"]["inserted"] == ROWS
    again = score_partition(config, store, DAYS[7], version=trained["version"])
    assert again["predictions_table"] == {**again["predictions_table"], "deleted": ROWS, "inserted": ROWS}
    rows = _count(pg_server, f'SELECT logical_date, count(*), count(DISTINCT customer_id) FROM "{preds}" '
                             "GROUP BY logical_date ORDER BY logical_date")
    assert [(d.isoformat(), n, k) for d, n, k in rows] == [(d, ROWS, ROWS) for d in DAYS[5:]]
    # the table holds what the prediction log holds
    from airflow_mlops.config.locations import Locations

    logged = Locations(config, store).predictions().read(DAYS[7]).sort_values("customer_id")
    table = _count(pg_server, f'SELECT customer_id, prediction FROM "{preds}" WHERE logical_date = '
                              f"'{DAYS[7]}' ORDER BY customer_id")
    assert [(int(a), int(b)) for a, b in table] == list(zip(logged["customer_id"].astype(int),
                                                             logged["prediction"].astype(int), strict=True))

    drift = detect_drift(config, store, DAYS[9], html=False)
    assert drift["dataset_drift"] is True and drift["n_drifted"] >= 3  # the last day of the table drifted
    quiet = detect_drift(config, store, DAYS[6], html=False)
    assert quiet["dataset_drift"] is False
    perf = monitor_performance(config, store, DAYS[8], html=False)
    assert perf["rows"]["joined"] == 4 * ROWS and perf["coverage"] == 1.0  # days 6-9 scored and labelled
    assert perf["metrics"]["roc_auc"] > 0.6


def test_bad_sql_input_names_the_table_or_column_and_writes_nothing(pg_server, churn_tables, tmp_path):
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.scoring.batch import score_partition
    from airflow_mlops.store.datasets import DataError

    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    missing = _config(churn_tables, table="public.no_such_table")
    with pytest.raises(DataError, match="no_such_table"):
        train_and_register(missing, store, DAYS[4])
    config = _config(churn_tables)
    version = train_and_register(config, store, DAYS[4])["version"]
    # a day without rows
    with pytest.raises(DataError, match="no rows for 2024-02-01"):
        score_partition(config, store, "2024-02-01", version=version)
    # a query missing a feature column: the schema check names it before anything is written
    no_usage = _config(churn_tables, scoring_dataset={
        "query": f'SELECT customer_id, tenure_months, monthly_charges, support_calls, contract, region '
                 f'FROM "{churn_tables["events"]}" WHERE event_date = {{{{ ds }}}}'})
    with pytest.raises(DataError, match="usage_gb"):
        score_partition(no_usage, store, DAYS[6], version=version)
    # a column of the wrong type (text where the model learned numbers)
    text_usage = _config(churn_tables, scoring_dataset={
        "query": f'SELECT customer_id, tenure_months, monthly_charges, support_calls, usage_gb::text AS usage_gb, '
                 f'contract, region FROM "{churn_tables["events"]}" WHERE event_date = {{{{ ds }}}}'})
    with pytest.raises(DataError, match="usage_gb") as wrong:
        score_partition(text_usage, store, DAYS[6], version=version)
    assert "string" in str(wrong.value) or "text" in str(wrong.value)
    assert not store.exists(f"predictions/churn/ds={DAYS[6]}/_SUCCESS")
    # a predictions table whose prediction column has another type: rolled back, the rows stay
    score_partition(config, store, DAYS[6], version=version)
    before = _count(pg_server, f'SELECT count(*) FROM "{churn_tables["preds"]}" WHERE logical_date = \'{DAYS[6]}\'')
    conn = pg_server.connect()
    bad = f"bad_{uuid.uuid4().hex[:6]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "{bad}" (customer_id BIGINT, prediction DATE)')
    conn.close()
    raw = config.to_dict()
    raw["predictions"] = {"conn_id": PG_CONN_ID, "table": bad}
    with pytest.raises(DataError, match=bad):
        score_partition(parse_model_config(raw), store, DAYS[6], version=version)
    assert _count(pg_server, f'SELECT count(*) FROM "{churn_tables["preds"]}" WHERE logical_date = '
                             f"'{DAYS[6]}'") == before


def test_loop_on_sqlite_with_a_query_of_one_day(sqlite_hook, tmp_path):
    """SQLite through Airflow's sqlite provider; the training data is a query of one day (``{{ ds }}``), read
    one day at a time so each row keeps its day; the predictions go to a table of the same database."""
    from airflow_mlops.registry.lifecycle import train_and_register
    from airflow_mlops.scoring.batch import score_partition

    days = DAYS[:4]
    for i, day in enumerate(days):
        frame = churn_day(day, rows=400, seed=20 + i)
        write_predictions(sqlite_hook, "customers", pa.Table.from_pandas(frame, preserve_index=False), day,
                          date_column="day")
    raw = copy.deepcopy(BASE)
    raw["data"] = {"conn_id": "mlops_sql_sqlite", "dataset": "customers", "training_window_days": 3,
                   "query": "SELECT * FROM customers WHERE day = {{ ds }}"}
    raw["training"] = {**raw.get("training", {}), "split": "time", "holdout_days": 1}
    raw["predictions"] = {"conn_id": "mlops_sql_sqlite", "table": "churn_predictions"}
    config = parse_model_config(raw)
    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    trained = train_and_register(config, store, days[2])
    from airflow_mlops.registry.model_registry import ModelRegistry

    meta = ModelRegistry(store).get_metadata("churn", trained["version"])
    assert meta["training_data"]["partitions"] == days[:3]
    assert meta["training_data"]["sql"]["query"] == "SELECT * FROM customers WHERE day = {{ ds }}"
    assert meta["training_data"]["uri"].startswith("sqlite:///") and "query_" in meta["training_data"]["uri"]
    for _ in range(2):  # a rerun replaces the day's rows
        summary = score_partition(config, store, days[3], version=trained["version"])
        assert summary["rows"] == 400 and summary["predictions_table"]["inserted"] == 400
    import sqlite3

    with sqlite3.connect(sqlite_hook.db_path) as c:
        assert c.execute("SELECT logical_date, count(*), count(DISTINCT customer_id) FROM churn_predictions "
                         "GROUP BY logical_date").fetchall() == [(days[3], 400, 400)]


def test_the_data_sensors_trigger_waits_for_a_days_rows(pg_server, churn_tables):
    """The deferrable sensor's trigger (what the triggerer runs) fires when the table has rows for the day and
    keeps waiting, then times out at the deadline, for a day without rows."""
    import asyncio

    from airflow_mlops.triggers.storage import DataPartitionTrigger

    sql = {"conn_id": PG_CONN_ID, "table": churn_tables["events"], "date_column": "event_date", "query": None}

    def first_event(ds: str, deadline: str | None) -> dict[str, Any]:
        trigger = DataPartitionTrigger(storage_uri="", prefix="", ds=ds, fmt="sql", poke_interval=0.2,
                                       deadline=deadline, sql=sql)
        assert DataPartitionTrigger(**trigger.serialize()[1]).sql == sql  # what the triggerer gets back

        async def run() -> dict[str, Any]:
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("no event")

        return asyncio.run(asyncio.wait_for(run(), timeout=60))

    assert first_event(DAYS[3], None) == {"status": "success", "ds": DAYS[3]}
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).isoformat()
    assert first_event("2025-01-01", soon)["status"] == "timeout"


def test_duplicate_keys_in_a_table_fail_validation_and_are_quarantined_in_the_store(pg_server, churn_tables,
                                                                                     tmp_path):
    from airflow_mlops.registry.lifecycle import GateFailed, train_and_register, validate_partition

    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    config = _config(churn_tables)
    train_and_register(config, store, DAYS[4])  # the champion's suite checks later days
    conn = pg_server.connect()
    table = f"dupes_{uuid.uuid4().hex[:6]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE TABLE "{table}" AS SELECT * FROM "{churn_tables["train"]}" '
                    f"WHERE event_date = '{DAYS[5]}'")
        cur.execute(f'INSERT INTO "{table}" SELECT * FROM "{table}" LIMIT 40')  # 40 customers twice
    conn.close()
    dupes = _config(churn_tables, table=table)
    with pytest.raises(GateFailed) as failed:
        validate_partition(dupes, store, DAYS[5])
    message = str(failed.value)
    assert f"{table}/ds={DAYS[5]}" in message and "quarantine" in message
    assert store.exists(f"quarantine/{table}/ds={DAYS[5]}/_SUCCESS")


def test_openlineage_names_a_table_from_its_connection(pg_server, churn_tables):
    """``postgres://host:port`` namespace and ``database.schema.table`` name, as the OpenLineage naming spec for
    Postgres; the day a task read is a partition of that dataset, not another dataset."""
    pytest.importorskip("airflow.providers.openlineage")
    from airflow_mlops.operators.base import openlineage_dataset
    from airflow_mlops.registry.lineage import split_dataset_uri
    from airflow_mlops.sql.dataset import SqlDataset
    from airflow_mlops.sql.source import SqlSource

    data = SqlDataset(PG_CONN_ID, SqlSource(table=f"public.{churn_tables['events']}", date_column="event_date"))
    root, day = split_dataset_uri(data.uri(DAYS[3]))
    assert (root, day) == (data.uri(), DAYS[3])
    named = openlineage_dataset(root)
    assert (named.namespace, named.name) == (f"postgres://{pg_server.host}:{pg_server.port}",
                                             f"{pg_server.dbname}.public.{churn_tables['events']}")
    assert data.asset_uri() == f"mlops-sql://{PG_CONN_ID}/public.{churn_tables['events']}"
