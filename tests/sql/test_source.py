"""Dialects, identifier quoting and the SQL of a source (no database)."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_mlops.sql.dialects import SqlDialect, canonical_name, detect_dialect, dialect_for
from airflow_mlops.sql.errors import SqlDataError, SqlSourceError
from airflow_mlops.sql.source import SqlSource, template_names
from airflow_mlops.store.datasets import DataError

PG = dialect_for("postgres")
LITE = dialect_for("sqlite")
MY = dialect_for("mysql")


def test_dialect_names_and_defaults():
    assert [canonical_name(n) for n in ("postgresql", "postgresql+psycopg2", "PostgreS", "mariadb",
                                        "google_cloud_platform", "trino", "oracle")] == \
        ["postgres", "postgres", "postgres", "mysql", "bigquery", "trino", "oracle"]
    assert (PG.placeholder, PG.paramstyle) == ("%s", "format")
    assert (LITE.placeholder, LITE.paramstyle) == ("?", "qmark")
    assert (MY.quote_open, MY.quote_close, MY.placeholder) == ("`", "`", "%s")
    assert dialect_for("trino").placeholder == "?"
    assert dialect_for("bigquery").quote("t") == "`t`"
    assert dialect_for("oracle") == SqlDialect("oracle")  # generic: double quotes, %s
    assert dialect_for("postgres", escape_word_format="[{}]").quote("a]b") == "[a]]b]"
    with pytest.raises(SqlSourceError, match="placeholder"):
        SqlDialect("x", placeholder=":1")
    assert detect_dialect("sqlite") == LITE


def test_quoting_doubles_quotes_splits_names_and_refuses_nul():
    assert PG.quote("Mixed Case") == '"Mixed Case"'
    assert PG.quote('we"ird') == '"we""ird"'
    assert PG.quote("x; DROP TABLE t; --") == '"x; DROP TABLE t; --"'
    assert MY.quote("a`b") == "`a``b`"
    assert MY.quote('a"b') == '`a"b`'
    assert PG.quote_name("My Schema.Odd T") == '"My Schema"."Odd T"'
    assert PG.quote_name(("db.x", "t")) == '"db.x"."t"'
    assert MY.quote_name("s.t") == "`s`.`t`"
    for bad in ("a\x00b", ""):
        with pytest.raises(SqlSourceError):
            PG.quote(bad)
    with pytest.raises(SqlSourceError, match="NUL"):
        PG.quote_name("s.t\x00")
    with pytest.raises(SqlSourceError, match="empty part"):
        PG.quote_name("s..t")


def test_table_source_day_and_window_bind_the_bounds():
    src = SqlSource(table="sales.Orders", date_column="Order Date", columns=("id", 'a"b'), order_by=("id",))
    sql, params = src.for_day("2024-03-05", PG)
    assert sql == ('SELECT "id", "a""b" FROM "sales"."Orders" WHERE "Order Date" >= %s AND "Order Date" < %s '
                   'ORDER BY "id"')
    assert params == (dt.date(2024, 3, 5), dt.date(2024, 3, 6))
    sql, params = src.for_window("2024-02-27", dt.date(2024, 3, 1), LITE)
    assert sql.count("?") == 2 and "2024" not in sql
    assert params == ("2024-02-27", "2024-03-02")  # ISO text for SQLite
    assert SqlSource(table="t", date_column="d").for_day("2024-01-01", PG).sql.startswith("SELECT * FROM")
    # a % in a name is doubled for the format style (the driver undoes it), kept for qmark
    assert SqlSource(table="100% t", date_column="d%").for_day("2024-01-01", PG).sql == \
        'SELECT * FROM "100%% t" WHERE "d%%" >= %s AND "d%%" < %s'
    assert SqlSource(table="100% t", date_column="d").for_day("2024-01-01", LITE).sql.startswith(
        'SELECT * FROM "100% t"')
    with pytest.raises(SqlSourceError, match="after its end"):
        src.for_window("2024-03-02", "2024-03-01", PG)


def test_query_source_binds_placeholders_and_never_formats_values():
    q = ("SELECT * FROM t WHERE d >= {{window_start}} AND d < {{  window_end }} AND k = {{ ds }} "
         "AND name LIKE 'a%'")
    src = SqlSource(query=q)
    assert template_names(q) == ["window_start", "window_end", "ds"]
    sql, params = src.for_window("2024-01-01", "2024-01-07", PG)
    assert sql == "SELECT * FROM t WHERE d >= %s AND d < %s AND k = %s AND name LIKE 'a%%'"
    assert params == (dt.date(2024, 1, 1), dt.date(2024, 1, 8), dt.date(2024, 1, 7))
    sql, params = src.for_day("2024-01-07", LITE)
    assert sql == "SELECT * FROM t WHERE d >= ? AND d < ? AND k = ? AND name LIKE 'a%'"
    assert params == ("2024-01-07", "2024-01-08", "2024-01-07")
    assert "2024" not in sql
    wrapped = SqlSource(query="SELECT * FROM t WHERE d = {{ ds }};", columns=("b", "a"), order_by=("a",))
    assert wrapped.for_day("2024-01-07", PG).sql == \
        'SELECT "b", "a" FROM (SELECT * FROM t WHERE d = %s) AS mlops_source ORDER BY "a"'


@pytest.mark.parametrize("query, match", [
    ("SELECT * FROM t WHERE d = {{ next_ds }}", r"unknown placeholder '\{\{ next_ds \}\}'"),
    ("SELECT * FROM t WHERE d = {{ds|upper}}", "unknown placeholder"),
    ("SELECT * FROM t WHERE d = '{{ ds }}'", "inside quotes"),
    ("SELECT * FROM t WHERE d = {{ ds }", "unbalanced"),
    ("   ", "empty"),
])
def test_query_source_errors_name_the_problem(query, match):
    with pytest.raises(SqlSourceError, match=match):
        SqlSource(query=query)


def test_source_definition_errors():
    with pytest.raises(SqlSourceError, match="not both"):
        SqlSource(table="t", date_column="d", query="SELECT 1")
    with pytest.raises(SqlSourceError, match="neither"):
        SqlSource()
    with pytest.raises(SqlSourceError, match="date_column is required"):
        SqlSource(table="t")
    with pytest.raises(SqlSourceError, match="no date_column"):
        SqlSource(query="SELECT 1", date_column="d")
    with pytest.raises(SqlSourceError, match="NUL"):
        SqlSource(table="t", date_column="d", columns=("a\x00",))
    with pytest.raises(SqlSourceError, match="repeat"):
        SqlSource(table="t", date_column="d", columns=("a", "a"))
    src = SqlSource(table=["s", "t"], date_column="d", columns=["a"])  # lists become tuples: hashable
    assert hash(src) and src.table == ("s", "t") and src.label() == "table s.t"


def test_error_classes():
    assert issubclass(SqlDataError, DataError) and issubclass(SqlDataError, ValueError)
    assert issubclass(SqlSourceError, ValueError)


class _FakeHook:
    """What detect_dialect reads of a DbApiHook: the class's conn_type and common.sql's per-connection settings."""

    def __init__(self, conn_type, extra=None, escape='"{}"', placeholder="%s"):
        self.conn_type, self.connection_extra = conn_type, extra or {}
        self.escape_word_format, self.placeholder = escape, placeholder


def test_detect_dialect_uses_common_sql_settings():
    assert detect_dialect(_FakeHook("mysql")).quote("a") == "`a`"  # common.sql's default '"{}"': MySQL's own
    chosen = _FakeHook("mysql", extra={"escape_word_format": '"{}"'})
    assert detect_dialect(chosen).quote("a") == '"a"'  # set on the connection: honoured
    assert detect_dialect(_FakeHook("gcpbigquery")).name == "bigquery"
    assert detect_dialect(_FakeHook("trino", placeholder="?")).paramstyle == "qmark"
    assert detect_dialect(_FakeHook("postgres", escape="[{}]")).quote("x]") == "[x]]]"

    class NoType:
        dialect_name = "postgresql"
        placeholder = "%s"

    assert detect_dialect(NoType()).name == "postgres"
