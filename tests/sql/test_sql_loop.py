"""The loop on data in PostgreSQL: train on a table's window, score a day of it, publish the predictions to a
table, monitor drift and performance on late labels from another table; reruns and a backfill never duplicate;
bad input fails naming the table or column with nothing written (the library calls the operators make)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from churn_tables import CHURN_DAYS as DAYS
from churn_tables import CHURN_ROWS as ROWS
from churn_tables import PG_CONN_ID

from airflow_mlops.config.parser import parse_model_config
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
