"""The ready-made Dags of a model whose data lives in PostgreSQL, under real Airflow (`airflow dags test`): training
on a table's window, scoring a day of another table into the prediction log and a predictions table, monitoring
drift and performance on late labels from a third table; the registry's lineage names the table."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from airflow_env import REPO, AirflowHome
from churn_tables import CHURN_DAYS as DAYS
from churn_tables import CHURN_ROWS as ROWS
from churn_tables import PG_CONN_ID

from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactStore

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def af(tmp_path_factory: Any, pg_server: Any, churn_tables: dict[str, str]) -> AirflowHome:
    configs = tmp_path_factory.mktemp("configs")
    raw = copy.deepcopy(yaml.safe_load((REPO / "dags" / "configs" / "churn.yaml").read_text()))
    raw["name"] = "churn_pg"
    raw["data"] = {"conn_id": PG_CONN_ID, "table": f"public.{churn_tables['train']}", "date_column": "event_date",
                   "training_window_days": 5,
                   "scoring_dataset": {"table": churn_tables["events"], "date_column": "event_date"},
                   "ground_truth_dataset": {"table": churn_tables["labels"], "date_column": "label_date"}}
    raw["predictions"] = {"conn_id": PG_CONN_ID, "table": churn_tables["preds"]}
    (configs / "churn_pg.yaml").write_text(yaml.safe_dump(raw))
    dags = tmp_path_factory.mktemp("dags")  # the Dag file of the model: churn_pg.py loads churn_pg.yaml
    (dags / "churn_pg.py").write_text((REPO / "dags" / "churn.py").read_text())
    import os

    conn_uri = os.environ[f"AIRFLOW_CONN_{PG_CONN_ID.upper()}"]
    env = AirflowHome(tmp_path_factory.mktemp("sqlhome"), configs=configs,
                      extra_env={f"AIRFLOW_CONN_{PG_CONN_ID.upper()}": conn_uri,
                                 "AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    env.store = ArtifactStore(env.storage_uri)  # type: ignore[attr-defined]
    env.tables = churn_tables  # type: ignore[attr-defined]
    return env


def _rows(pg_server: Any, sql: str) -> list[tuple[Any, ...]]:
    conn = pg_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_training_scoring_and_monitoring_dags_on_postgres(af: Any, pg_server: Any) -> None:
    # training, scoring two days (a rerun of a day replaces its rows), monitoring: one Airflow process
    runs = [("churn_pg_training", DAYS[4]), *[("churn_pg_batch_scoring", d) for d in (DAYS[5], DAYS[6], DAYS[6])],
            ("churn_pg_monitoring", DAYS[6])]
    assert af.dags_test_in_one_process(runs) == ["success"] * len(runs), af.last_output[-4000:]
    out = af.last_output
    registry = ModelRegistry(af.store)
    assert registry.resolve("churn_pg", alias="champion") == 1
    meta = registry.get_metadata("churn_pg", 1)
    table_uri = f"postgres://{pg_server.host}:{pg_server.port}/{pg_server.dbname}.public.{af.tables['train']}"
    assert meta["training_data"]["uri"] == table_uri
    assert meta["training_data"]["sql"] == {"conn_id": PG_CONN_ID, "table": f"public.{af.tables['train']}",
                                            "date_column": "event_date", "uri": table_uri}
    assert meta["training_data"]["partitions"] == DAYS[:5]
    # the registry's reverse lineage finds the version from the table, and from one day of it
    assert registry.models_using(table_uri) == [("churn_pg", 1)]
    assert registry.models_using(f"{table_uri}/ds={DAYS[2]}") == [("churn_pg", 1)]
    assert registry.models_using(f"{table_uri}/ds={DAYS[8]}") == []

    counts = _rows(pg_server, f'SELECT logical_date, count(*) FROM "{af.tables["preds"]}" '
                              "GROUP BY logical_date ORDER BY logical_date")
    assert [(d.isoformat(), n) for d, n in counts] == [(DAYS[5], ROWS), (DAYS[6], ROWS)]
    assert af.store.exists(f"predictions/churn_pg/ds={DAYS[6]}/_SUCCESS")

    drift = af.store.read_json(f"monitoring/churn_pg/ds={DAYS[6]}/drift.json")
    assert drift["version"] == 1 and drift["n_features"] == 6, out[-3000:]
    perf = af.store.read_json(f"monitoring/churn_pg/ds={DAYS[6]}/performance.json")
    assert perf["rows"]["joined"] == 2 * ROWS and perf["metrics"]["roc_auc"] > 0.6  # labels of days 6 and 7
    quality = af.store.read_json(f"monitoring/churn_pg/ds={DAYS[6]}/data_quality.json")
    assert quality["partition"]["rows"] == ROWS, quality
