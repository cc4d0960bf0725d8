"""Reads and writes against a real PostgreSQL server, through ``PostgresHook`` (psycopg 3 as installed, and
psycopg2)."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import threading
import uuid

import pyarrow as pa
import pytest

from airflow_mlops.sql.dialects import detect_dialect
from airflow_mlops.sql.errors import SqlDataError
from airflow_mlops.sql.read import read_day, read_window
from airflow_mlops.sql.source import SqlSource
from airflow_mlops.sql.write import write_predictions

pytestmark = pytest.mark.timeout(120)

DAY = "2024-01-02"


def _batches(hook, source, ds=DAY, **kw):
    return list(read_day(hook, source, ds, **kw))


def _table(batches):
    return pa.Table.from_batches(batches)


@pytest.fixture
def typed(pg, table_name):
    """A table in a schema with an odd name: every mapped type, with NULLs, on two days."""
    with pg.cursor() as cur:
        cur.execute('CREATE SCHEMA IF NOT EXISTS "Odd ""Schema"""')
        qt = f'"Odd ""Schema"""."{table_name.replace(chr(34), chr(34) * 2)}"'
        cur.execute(f"""CREATE TABLE {qt} (
            "Id" int4, small int2, big int8, f4 real, f8 double precision, amount numeric(10, 2),
            free numeric, flag boolean, label text, code varchar(5), day date, ts timestamp,
            tstz timestamptz, "we""ird col" text, nothing int4)""")
        cur.execute("SET TIME ZONE 'Europe/Paris'")
        cur.execute(f"""INSERT INTO {qt} VALUES
            (1, 1, 10000000000, 1.5, 2.25, 12.34, 1.000001, true, 'a', 'x', '2024-01-02',
             '2024-01-02 10:00', '2024-01-02 10:00+01', 'q', NULL),
            (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-02', NULL, NULL, NULL, NULL),
            (3, 3, 3, 3, 3, 3, 3, false, '', 'z', '2024-01-03', NULL, NULL, NULL, NULL)""")
        cur.execute("SET TIME ZONE 'UTC'")
    return ("Odd \"Schema\"", table_name), qt


def test_dialect_of_postgres_hook(pg_hook):
    d = detect_dialect(pg_hook)
    assert (d.name, d.placeholder, d.quote_open) == ("postgres", "%s", '"')


def test_reads_typed_columns_with_nulls(pg_hook, typed):
    table, _ = typed
    src = SqlSource(table=table, date_column="day", order_by=("Id",))
    t = _table(_batches(pg_hook, src, require_rows=True))
    assert t.num_rows == 2
    types = {f.name: f.type for f in t.schema}
    assert types == {
        "Id": pa.int32(), "small": pa.int16(), "big": pa.int64(), "f4": pa.float32(), "f8": pa.float64(),
        "amount": pa.decimal128(10, 2), "free": pa.float64(), "flag": pa.bool_(), "label": pa.string(),
        "code": pa.string(), "day": pa.date32(), "ts": pa.timestamp("us"),
        "tstz": pa.timestamp("us", tz="UTC"), 'we"ird col': pa.string(), "nothing": pa.int32(),
    }
    row, empty = t.to_pylist()
    assert row["amount"] == decimal.Decimal("12.34") and row["free"] == pytest.approx(1.000001)
    assert row["big"] == 10_000_000_000 and row["flag"] is True and row["day"] == dt.date(2024, 1, 2)
    assert row["ts"] == dt.datetime(2024, 1, 2, 10, 0)
    assert row["tstz"] == dt.datetime(2024, 1, 2, 9, 0, tzinfo=dt.UTC)  # 10:00+01 in UTC
    assert row['we"ird col'] == "q"
    assert all(v is None for k, v in empty.items() if k not in ("Id", "day"))
    # NULL-only columns of a query: the literal NULL is text, a typed NULL keeps its type
    q = SqlSource(query='SELECT NULL AS n, NULL::int8 AS i, "Id" FROM ' + typed[1] + " WHERE day = {{ ds }}")
    t = _table(_batches(pg_hook, q))
    assert t.schema.field("n").type == pa.string() and t.schema.field("i").type == pa.int64()
    assert t.column("n").null_count == t.num_rows == 2


def test_table_form_columns_window_and_query_form(pg_hook, typed):
    table, qt = typed
    src = SqlSource(table=table, date_column="day", columns=("label", 'we"ird col', "Id"), order_by=("Id",))
    t = _table(list(read_window(pg_hook, src, "2024-01-02", "2024-01-03")))
    assert t.column_names == ["label", 'we"ird col', "Id"] and t.column("Id").to_pylist() == [1, 2, 3]
    # a timestamptz date column: the day bounds are bound dates, compared in the session's time zone (UTC)
    by_ts = SqlSource(table=table, date_column="tstz", columns=("Id",))
    assert _table(_batches(pg_hook, by_ts)).column("Id").to_pylist() == [1]
    q = SqlSource(query=f'SELECT "Id", label FROM {qt} WHERE day >= {{{{ window_start }}}} '
                        f"AND day < {{{{window_end}}}} AND label LIKE '%' ORDER BY 1")
    t = _table(list(read_window(pg_hook, q, "2024-01-01", "2024-01-02")))
    assert t.column("Id").to_pylist() == [1]  # row 2 has a NULL label; the literal % survives
    no_placeholders = SqlSource(query="SELECT 'a%b' AS x, '{x}' AS y")
    assert _table(_batches(pg_hook, no_placeholders)).to_pylist() == [{"x": "a%b", "y": "{x}"}]


def test_batches_are_bounded(pg_hook, pg, table_name):
    with pg.cursor() as cur:
        cur.execute(f'CREATE TABLE "{table_name.replace(chr(34), chr(34) * 2)}" AS SELECT g AS id, '
                    "g * 0.5 AS x, DATE '2024-01-02' AS d FROM generate_series(1, 10000) g")
    src = SqlSource(table=table_name, date_column="d", order_by=("id",))
    batches = _batches(pg_hook, src, batch_rows=1000)
    assert [b.num_rows for b in batches] == [1000] * 10
    assert _table(batches).column("id").to_pylist() == list(range(1, 10001))


def test_missing_table_and_column_are_named(pg_hook, typed):
    with pytest.raises(SqlDataError, match=r"table public\.no_such_table does not exist"):
        _batches(pg_hook, SqlSource(table="public.no_such_table", date_column="d"))
    table, _ = typed
    src = SqlSource(table=table, date_column="day", columns=("Id", "nope"))
    with pytest.raises(SqlDataError, match=r"column 'nope' does not exist; the table has columns \['Id'") as e:
        _batches(pg_hook, src)
    assert table[1] in str(e.value)
    with pytest.raises(SqlDataError, match="column 'missing_day' does not exist"):
        _batches(pg_hook, SqlSource(table=table, date_column="missing_day"))


def test_value_that_does_not_fit_names_the_column(pg_hook, pg, table_name):
    qt = '"' + table_name.replace('"', '""') + '"'
    with pg.cursor() as cur:
        cur.execute(f"CREATE TABLE {qt} (d date, amount numeric(10, 2))")
        cur.execute(f"INSERT INTO {qt} VALUES ('2024-01-02', 1.5), ('2024-01-02', 'NaN')")
    with pytest.raises(SqlDataError, match=r"column 'amount': a value does not fit the column's type "
                                           r"decimal128\(10, 2\) at row 2 \(a Decimal value\)") as e:
        _batches(pg_hook, SqlSource(table=table_name, date_column="d"))
    assert table_name in str(e.value) and "NaN" not in str(e.value)  # no row values in messages


def test_unmapped_type_and_no_rows(pg_hook, pg, table_name):
    qt = '"' + table_name.replace('"', '""') + '"'
    with pg.cursor() as cur:
        cur.execute(f"CREATE TABLE {qt} (d date, span interval)")
    src = SqlSource(table=table_name, date_column="d")
    only_d = SqlSource(table=table_name, date_column="d", columns=("d",))
    empty = _batches(pg_hook, only_d)
    assert len(empty) == 1 and empty[0].num_rows == 0 and empty[0].schema.field("d").type == pa.date32()
    with pytest.raises(SqlDataError, match=rf"{table_name} \(2024-01-02\) returned no rows; rows are required"):
        _batches(pg_hook, only_d, require_rows=True)
    with pytest.raises(SqlDataError, match=r"column 'span' has a Postgres type \(OID 1186\) with no Arrow"):
        _batches(pg_hook, src)


def test_connection_dropped_mid_read(pg_hook, pg, table_name):
    qt = '"' + table_name.replace('"', '""') + '"'
    with pg.cursor() as cur:
        cur.execute(f"CREATE TABLE {qt} AS SELECT g AS id, DATE '2024-01-02' AS d FROM generate_series(1, 5000) g")
        cur.execute("SELECT pg_backend_pid()")
        own = cur.fetchone()[0]
    it = read_day(pg_hook, SqlSource(table=table_name, date_column="d", order_by=("id",)), DAY, batch_rows=500)
    assert next(it).num_rows == 500
    with pg.cursor() as cur:  # the reader holds its named cursor in an open transaction
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> %s AND state LIKE 'idle in transaction%%'", (own,))
        assert cur.fetchall() == [(True,)]
    with pytest.raises(SqlDataError, match=rf"{table_name} \(2024-01-02\): the connection to the database was "
                                           r"lost after 500 rows .*the read is incomplete"):
        list(it)


# ----------------------------------------------------------------------------------------------
def _dump(pg, qt: str) -> bytes:
    """The table's rows, byte for byte, as Postgres prints them (COPY ... TO STDOUT)."""
    buf = io.BytesIO()
    with pg.cursor() as cur:
        cur.copy_expert(f"COPY (SELECT * FROM {qt} ORDER BY 1, 2) TO STDOUT", buf)
    return buf.getvalue()


def _preds(n: int, ds: str = DAY, **extra):
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "prediction": pa.array([i / 3 if i % 4 else None for i in range(n)], pa.float64()),
        "label": pa.array([("", 'he said "hi", ok\n', "\\.", "a\n\\.\nb")[i % 4] for i in range(n)], pa.string()),
        "model_name": pa.array(["churn"] * n).dictionary_encode(),
        "scored_at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)] * n, pa.timestamp("us", "UTC")),
        "ok": pa.array([bool(i % 2) for i in range(n)]),
        "amount": pa.array([decimal.Decimal(i) / 100 for i in range(n)], pa.decimal128(12, 2)),
        "logical_date": pa.array([ds] * n),
        **extra,
    })


def test_write_creates_replaces_and_reads_back(pg_hook, pg, table_name):
    table = ("public", table_name)
    qt = '"public"."' + table_name.replace('"', '""') + '"'
    s1 = write_predictions(pg_hook, table, _preds(7), DAY)
    assert (s1.created, s1.rows_deleted, s1.rows_written, s1.method) == (True, 0, 7, "copy")
    first = _dump(pg, qt)
    s2 = write_predictions(pg_hook, table, _preds(7), DAY)  # a rerun: same rows, no duplicates
    assert (s2.created, s2.rows_deleted, s2.rows_written) == (False, 7, 7)
    assert _dump(pg, qt) == first
    write_predictions(pg_hook, table, _preds(3, "2024-01-03"), "2024-01-03")
    with pg.cursor() as cur:
        cur.execute(f"SELECT logical_date, count(*) FROM {qt} GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == [(dt.date(2024, 1, 2), 7), (dt.date(2024, 1, 3), 3)]
        cur.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position", (table_name,))
        assert cur.fetchall() == [
            ("id", "bigint", "YES"), ("prediction", "double precision", "YES"), ("label", "text", "YES"),
            ("model_name", "text", "YES"), ("scored_at", "timestamp with time zone", "YES"),
            ("ok", "boolean", "YES"), ("amount", "numeric", "YES"), ("logical_date", "date", "NO")]
    back = _table(_batches(pg_hook, SqlSource(table=table, date_column="logical_date", order_by=("id",))))
    expected = _preds(7)
    for name in ("id", "prediction", "label", "ok", "amount", "scored_at"):
        assert back.column(name).to_pylist() == expected.column(name).to_pylist(), name
    assert back.column("label").to_pylist()[0] == "" and back.column("prediction").null_count == 2
    if type(pg_hook).__name__ == "Psycopg2PostgresHook":
        assert len(pg_hook.copy_calls) == 3 and all(c.startswith("COPY ") for c in pg_hook.copy_calls)


def test_write_uses_copy_with_psycopg3(pg_server, table_name, monkeypatch):
    """psycopg 3 (the PostgresHook's driver with SQLAlchemy 2); psycopg2's copy_expert is checked in
    test_write_creates_replaces_and_reads_back."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from tests.sql.conftest import PG_CONN_ID

    pg_hook = PostgresHook(postgres_conn_id=PG_CONN_ID)
    if type(pg_hook.get_conn()).__module__.split(".")[0] != "psycopg":
        pytest.skip("PostgresHook does not connect with psycopg 3 here")
    import psycopg

    calls = []
    original = psycopg.Cursor.copy

    def spy(self, statement, *a, **kw):
        calls.append(str(statement))
        return original(self, statement, *a, **kw)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    write_predictions(pg_hook, table_name, _preds(5), DAY)
    assert len(calls) == 1 and calls[0].startswith("COPY ") and "FROM STDIN" in calls[0]


def test_failed_write_leaves_previous_rows(pg_hook, pg, table_name):
    qt = '"' + table_name.replace('"', '""') + '"'
    with pg.cursor() as cur:
        cur.execute(f"CREATE TABLE {qt} (id bigint, prediction double precision NOT NULL, "
                    "logical_date date NOT NULL)")
    good = pa.table({"id": [1, 2, 3], "prediction": [0.1, 0.2, 0.3]})
    write_predictions(pg_hook, table_name, good, DAY)
    write_predictions(pg_hook, table_name, good, "2024-01-03")
    before = _dump(pg, qt)
    bad = pa.table({"id": list(range(100)), "prediction": [0.5] * 50 + [None] + [0.5] * 49})
    with pytest.raises(SqlDataError, match=rf"{table_name} \(2024-01-02\): writing the predictions failed "
                                           r"\(column 'prediction'\) and was rolled back"):
        write_predictions(pg_hook, table_name, bad, DAY, chunk_rows=10)  # fails in the 6th chunk
    assert _dump(pg, qt) == before
    with pytest.raises(SqlDataError, match=r"no column \['extra'\]"):
        write_predictions(pg_hook, table_name, good.append_column("extra", pa.array([1, 2, 3])), DAY)
    with pytest.raises(SqlDataError, match=r"column 'logical_date' holds other dates \['2024-01-05'\]"):
        write_predictions(pg_hook, table_name, good.append_column("logical_date", pa.array(["2024-01-05"] * 3)),
                          DAY)
    assert _dump(pg, qt) == before


def test_concurrent_writers_of_one_date_leave_one_copy(pg_server, table_name):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from tests.sql.conftest import PG_CONN_ID

    write_predictions(PostgresHook(postgres_conn_id=PG_CONN_ID), table_name, _preds(1), DAY)  # create first
    errors = []

    def run():
        try:
            write_predictions(PostgresHook(postgres_conn_id=PG_CONN_ID), table_name, _preds(500), DAY,
                              chunk_rows=50)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    conn = pg_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*), count(DISTINCT id) FROM "{table_name.replace(chr(34), chr(34) * 2)}"')
            assert cur.fetchone() == (500, 500)
    finally:
        conn.close()


def test_minimal_privileges_of_docs_sql_data(pg_server, pg, monkeypatch):
    """The grants docs/sql-data.md lists are enough: SELECT on a source; USAGE + CREATE on the predictions
    schema to create the table; SELECT, INSERT, DELETE on an existing predictions table."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    role = "mlops_" + uuid.uuid4().hex[:8]
    with pg.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute(f"CREATE SCHEMA src_{role}; CREATE SCHEMA ml_{role}; CREATE SCHEMA fixed_{role}")
        cur.execute(f"CREATE TABLE src_{role}.orders (id int, d date); INSERT INTO src_{role}.orders VALUES "
                    "(1, '2024-01-02')")
        cur.execute(f"CREATE TABLE fixed_{role}.preds (id bigint, logical_date date NOT NULL)")
        cur.execute(f"GRANT USAGE ON SCHEMA src_{role} TO {role}; GRANT SELECT ON src_{role}.orders TO {role}")
        cur.execute(f"GRANT USAGE, CREATE ON SCHEMA ml_{role} TO {role}")
        cur.execute(f"GRANT USAGE ON SCHEMA fixed_{role} TO {role}; "
                    f"GRANT SELECT, INSERT, DELETE ON fixed_{role}.preds TO {role}")
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_SQL_LIMITED",
                       f"postgres://{role}@{pg_server.host}:{pg_server.port}/{pg_server.dbname}")
    hook = PostgresHook(postgres_conn_id="mlops_sql_limited")
    got = _table(_batches(hook, SqlSource(table=f"src_{role}.orders", date_column="d")))
    assert got.column("id").to_pylist() == [1]
    data = pa.table({"id": pa.array([1, 2], pa.int64())})
    for _ in range(2):
        assert write_predictions(hook, f"ml_{role}.preds", data, DAY).rows_written == 2
        assert write_predictions(hook, f"fixed_{role}.preds", data, DAY).rows_written == 2
    with pytest.raises(SqlDataError, match=rf"table src_{role}.orders \(2024-01-02\): writing the predictions "
                                           "failed and was rolled back.*permission denied for table orders"):
        write_predictions(hook, f"src_{role}.orders", pa.table({"id": [1]}), DAY, date_column="d")  # no DELETE
    with pytest.raises(SqlDataError, match=rf"table fixed_{role}.nope \(2024-01-02\): the table does not exist "
                                           "and creating it failed: .*permission denied for schema"):
        write_predictions(hook, f"fixed_{role}.nope", data, DAY)  # no CREATE on that schema


def test_unreachable_database_is_named(pg_server, monkeypatch):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from tests.conftest import free_port

    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_SQL_DOWN", f"postgres://nobody@127.0.0.1:{free_port()}/x")
    hook = PostgresHook(postgres_conn_id="mlops_sql_down")
    with pytest.raises(SqlDataError, match=r"table t \(2024-01-02\): cannot connect to the database"):
        _batches(hook, SqlSource(table="t", date_column="d"))
    with pytest.raises(SqlDataError, match=r"table p \(2024-01-02\): cannot connect to the database"):
        write_predictions(hook, "p", pa.table({"id": [1]}), DAY)
