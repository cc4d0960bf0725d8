"""Reads and writes on SQLite file databases through ``SqliteHook``."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pyarrow as pa
import pytest

from airflow_mlops.sql.dialects import detect_dialect
from airflow_mlops.sql.errors import SqlDataError
from airflow_mlops.sql.read import read_day, read_window
from airflow_mlops.sql.source import SqlSource
from airflow_mlops.sql.write import sql_type, write_predictions

DAY = "2024-01-02"
ODD = 'Odd "T" name'


def _db(hook):
    return sqlite3.connect(hook.db_path)


def _read(hook, source, ds=DAY, **kw):
    return pa.Table.from_batches(list(read_day(hook, source, ds, **kw)))


@pytest.fixture
def typed(sqlite_hook):
    with _db(sqlite_hook) as c:
        c.execute(f'''CREATE TABLE "{ODD.replace('"', '""')}" ("Id" INTEGER, "Mixed Col" REAL, flag BOOLEAN,
                      label VARCHAR(10), d DATE, ts TIMESTAMP, amount NUMERIC(10, 2), raw BLOB, "nothing" INT)''')
        c.executemany(f'INSERT INTO "{ODD.replace(chr(34), chr(34) * 2)}" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
            (1, 1.5, 1, "a", "2024-01-02", "2024-01-02 10:00:00", 12.34, b"\x00\x01", None),
            (2, None, None, None, "2024-01-02", None, None, None, None),
            (3, 3.0, 0, "c", "2024-01-03", "2024-01-03T00:00:00", 1, None, None),
        ])
    return sqlite_hook


def test_dialect_of_sqlite_hook(sqlite_hook):
    d = detect_dialect(sqlite_hook)
    assert (d.name, d.placeholder, d.paramstyle) == ("sqlite", "?", "qmark")


def test_reads_declared_types_with_nulls(typed):
    t = _read(typed, SqlSource(table=ODD, date_column="d", order_by=("Id",)), require_rows=True)
    assert {f.name: f.type for f in t.schema} == {
        "Id": pa.int64(), "Mixed Col": pa.float64(), "flag": pa.bool_(), "label": pa.string(), "d": pa.date32(),
        "ts": pa.timestamp("us"), "amount": pa.float64(), "raw": pa.binary(), "nothing": pa.int64()}
    assert t.to_pylist() == [
        {"Id": 1, "Mixed Col": 1.5, "flag": True, "label": "a", "d": dt.date(2024, 1, 2),
         "ts": dt.datetime(2024, 1, 2, 10), "amount": 12.34, "raw": b"\x00\x01", "nothing": None},
        {"Id": 2, "Mixed Col": None, "flag": None, "label": None, "d": dt.date(2024, 1, 2), "ts": None,
         "amount": None, "raw": None, "nothing": None}]
    w = pa.Table.from_batches(list(read_window(typed, SqlSource(table=ODD, date_column="ts", columns=("Id",)),
                                               "2024-01-01", "2024-01-03")))
    assert sorted(w.column("Id").to_pylist()) == [1, 3]  # ISO text timestamps compared to the bound days


def test_query_form_types_from_values_and_overrides(typed):
    q = SqlSource(query=f'SELECT "Id", label, d, NULL AS n FROM "{ODD.replace(chr(34), chr(34) * 2)}" '
                        "WHERE d >= {{ window_start }} AND d < {{ window_end }} ORDER BY 1")
    t = pa.Table.from_batches(list(read_window(typed, q, "2024-01-02", "2024-01-03")))
    assert [f.type for f in t.schema] == [pa.int64(), pa.string(), pa.string(), pa.null()]
    t = pa.Table.from_batches(list(read_window(typed, q, "2024-01-02", "2024-01-03",
                                               types={"d": "date32", "n": pa.float64()})))
    assert t.schema.field("d").type == pa.date32() and t.column("d").to_pylist()[-1] == dt.date(2024, 1, 3)
    # a column NULL in the first batch and valued later cannot change type mid-read
    with _db(typed) as c:
        c.execute("CREATE TABLE late (d TEXT, v)")
        c.executemany("INSERT INTO late VALUES (?, ?)", [(DAY, None)] * 3 + [(DAY, 7)])
    with pytest.raises(SqlDataError, match=r"column 'v' has no declared type and was NULL .* from row 4; give its "
                                           r"type: types=\{'v': 'int64'\}"):
        list(read_day(typed, SqlSource(query="SELECT v FROM late WHERE d = {{ ds }} ORDER BY rowid"), DAY,
                      batch_rows=2))


def test_batches_are_bounded(sqlite_hook):
    with _db(sqlite_hook) as c:
        c.execute("CREATE TABLE big (id INTEGER, d DATE)")
        c.executemany("INSERT INTO big VALUES (?, ?)", [(i, DAY) for i in range(10_000)])
    batches = list(read_day(sqlite_hook, SqlSource(table="big", date_column="d", order_by=("id",)), DAY,
                            batch_rows=1000))
    assert [b.num_rows for b in batches] == [1000] * 10
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(10_000))


def test_errors_name_table_and_column(typed):
    with pytest.raises(SqlDataError, match="table missing does not exist"):
        _read(typed, SqlSource(table="missing", date_column="d"))
    with pytest.raises(SqlDataError, match=r"column 'nope' does not exist; the table has columns \['Id', 'Mixed"):
        _read(typed, SqlSource(table=ODD, date_column="d", columns=("nope",)))
    with pytest.raises(SqlDataError, match="column 'dd' does not exist"):  # SQLite would compare the text 'dd'
        _read(typed, SqlSource(table=ODD, date_column="dd"))
    with pytest.raises(SqlDataError, match="column 'Label' does not exist"):
        _read(typed, SqlSource(table=ODD, date_column="d", order_by=("Label",)))
    with _db(typed) as c:
        c.execute("INSERT INTO \"Odd \"\"T\"\" name\" (\"Id\", d) VALUES ('not a number', '2024-01-05')")
        c.execute("INSERT INTO \"Odd \"\"T\"\" name\" (\"Id\", d, flag) VALUES (5, '2024-01-06', 7)")
    with pytest.raises(SqlDataError, match=r'table Odd "T" name \(2024-01-05\): column \'Id\': a value does not fit '
                                           r"the column's type int64 at row 1 \(a str value\)"):
        _read(typed, SqlSource(table=ODD, date_column="d"), "2024-01-05")
    with pytest.raises(SqlDataError, match="column 'flag': a value does not fit the column's type bool"):
        _read(typed, SqlSource(table=ODD, date_column="d"), "2024-01-06")
    with pytest.raises(SqlDataError, match=r"\(2024-02-01\) returned no rows; rows are required"):
        _read(typed, SqlSource(table=ODD, date_column="d"), "2024-02-01", require_rows=True)
    empty = _read(typed, SqlSource(table=ODD, date_column="d"), "2024-02-01")
    assert empty.num_rows == 0 and empty.schema.field("d").type == pa.date32()
    with pytest.raises(SqlDataError, match="query .*the query failed: OperationalError"):
        _read(typed, SqlSource(query="SELEC oops {{ ds }}"))


def _dump(hook, table="preds"):
    with _db(hook) as c:
        return repr(c.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2').fetchall()).encode()


def test_write_creates_replaces_and_rolls_back(sqlite_hook):
    data = pa.table({
        "id": pa.array([1, 2, 3], pa.int32()),
        "prediction": [0.25, None, 1.0],
        "ok": [True, False, None],
        "scored_at": pa.array([dt.datetime(2024, 1, 2, 5, tzinfo=dt.UTC)] * 3, pa.timestamp("us", "UTC")),
        "model_name": pa.array(["m", "m", "m"]).dictionary_encode(),
    })
    s = write_predictions(sqlite_hook, "preds", data, DAY)
    assert (s.created, s.rows_deleted, s.rows_written, s.method) == (True, 0, 3, "executemany")
    first = _dump(sqlite_hook)
    s = write_predictions(sqlite_hook, "preds", data, DAY)
    assert (s.created, s.rows_deleted, s.rows_written) == (False, 3, 3)
    assert _dump(sqlite_hook) == first
    write_predictions(sqlite_hook, "preds", data.slice(0, 1), "2024-01-03")
    before = _dump(sqlite_hook)
    back = _read(sqlite_hook, SqlSource(table="preds", date_column="logical_date", order_by=("id",)))
    assert back.column("ok").to_pylist() == [True, False, None]
    assert back.column("scored_at").to_pylist() == [dt.datetime(2024, 1, 2, 5)] * 3  # UTC text
    assert back.column("logical_date").to_pylist() == [dt.date(2024, 1, 2)] * 3
    # a failure in the middle (NULL into the NOT NULL date column can't happen: a CHECK does it here)
    with _db(sqlite_hook) as c:
        c.execute("CREATE TABLE strict_preds (id INTEGER, prediction REAL NOT NULL, logical_date DATE NOT NULL)")
        c.executemany("INSERT INTO strict_preds VALUES (?, ?, ?)", [(1, 0.5, DAY), (2, 0.7, DAY)])
    strict_before = _dump(sqlite_hook, "strict_preds")
    bad = pa.table({"id": list(range(30)), "prediction": [0.1] * 20 + [None] + [0.1] * 9})
    with pytest.raises(SqlDataError, match=r"table strict_preds \(2024-01-02\): writing the predictions failed "
                                           r"\(column 'prediction'\) and was rolled back"):
        write_predictions(sqlite_hook, "strict_preds", bad, DAY, chunk_rows=7)
    assert _dump(sqlite_hook, "strict_preds") == strict_before
    assert _dump(sqlite_hook) == before


def test_sql_types_per_dialect():
    assert [sql_type(d, pa.float64()) for d in ("postgres", "sqlite", "mysql", "bigquery", "trino", "x")] == \
        ["DOUBLE PRECISION", "REAL", "DOUBLE", "FLOAT64", "DOUBLE", "DOUBLE"]
    assert sql_type("postgres", pa.timestamp("us", "UTC")) == "TIMESTAMPTZ"
    assert sql_type("snowflake", pa.decimal128(12, 3)) == "NUMBER(12, 3)"
    assert sql_type("mysql", pa.dictionary(pa.int32(), pa.string())) == "TEXT"
    with pytest.raises(SqlDataError, match=r"column 'xs' has Arrow type list<item: int64>"):
        sql_type("postgres", pa.list_(pa.int64()), "xs")


def test_write_empty_data_clears_the_date_and_create_false(sqlite_hook):
    with pytest.raises(SqlDataError, match=r"table nowhere \(2024-01-02\): the table does not exist \(create=False\)"):
        write_predictions(sqlite_hook, "nowhere", pa.table({"id": [1]}), DAY, create=False)
    write_predictions(sqlite_hook, "preds", pa.table({"id": [1, 2]}), DAY)
    write_predictions(sqlite_hook, "preds", pa.table({"id": [3]}), "2024-01-03")
    s = write_predictions(sqlite_hook, "preds", pa.table({"id": pa.array([], pa.int64())}), DAY)
    assert (s.rows_deleted, s.rows_written) == (2, 0)
    with _db(sqlite_hook) as c:
        assert c.execute("SELECT id, logical_date FROM preds").fetchall() == [(3, "2024-01-03")]
