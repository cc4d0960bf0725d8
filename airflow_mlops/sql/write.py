"""Predictions of one logical date written to a SQL table, replacing that date's rows in one transaction.

:func:`write_predictions`:

1. creates the table when it is missing (``CREATE TABLE IF NOT EXISTS``, typed columns from the Arrow
   schema, the logical-date column ``DATE NOT NULL``) in its own statement; an existing table must have
   every column of the data (extra table columns are left NULL / default);
2. in **one transaction**: deletes the rows of that date (``DELETE FROM t WHERE "logical_date" = %s``,
   the date bound) and inserts the new rows: Postgres with ``COPY t (...) FROM STDIN (FORMAT csv)``
   (streamed in chunks of ``chunk_rows``; psycopg2 ``copy_expert`` or psycopg 3 ``cursor.copy``, whichever
   the hook connects with), other databases with ``executemany`` of an ``INSERT``; then commits.
   On Postgres the transaction first takes an advisory lock on (table, date), so two writers of the same
   date queue instead of interleaving.

Any error rolls the transaction back: the table keeps the rows it had, and a :class:`SqlDataError` names
the table, the date and, where the database says, the column. Writing the same date again gives the same
rows, never duplicates; empty ``data`` leaves the date with no rows.

The logical-date column: when the data has it (the prediction log's ``logical_date``: text
``YYYY-MM-DD``, a date or a dictionary of them) every value must be that date; when it does not, it is
added. It is written as a ``DATE``.

Type mapping (Arrow -> SQL) of a created table:

==============================  ==================  =========  ==============  =============  =========
Arrow                           Postgres, Redshift  SQLite     MySQL           Snowflake      BigQuery
==============================  ==================  =========  ==============  =============  =========
``bool``                        BOOLEAN             BOOLEAN    BOOLEAN         BOOLEAN        BOOL
``int8``, ``int16``, ``uint8``  SMALLINT            INTEGER    SMALLINT        SMALLINT       INT64
``int32``, ``uint16``           INTEGER             INTEGER    INTEGER         INTEGER        INT64
``int64``, ``uint32``           BIGINT              INTEGER    BIGINT          BIGINT         INT64
``uint64``                      NUMERIC(20, 0)      NUMERIC    NUMERIC(20, 0)  NUMBER(20, 0)  NUMERIC
``float16``, ``float32``        REAL                REAL       FLOAT           FLOAT          FLOAT64
``float64``                     DOUBLE PRECISION    REAL       DOUBLE          DOUBLE         FLOAT64
``decimal128(p, s)``            NUMERIC(p, s)       NUMERIC    DECIMAL(p, s)   NUMBER(p, s)   NUMERIC
``string``, dictionary of text  TEXT                TEXT       TEXT            TEXT           STRING
``binary``                      BYTEA               BLOB       BLOB            BINARY         BYTES
``date32``                      DATE                DATE       DATE            DATE           DATE
``timestamp`` (no time zone)    TIMESTAMP           TIMESTAMP  DATETIME(6)     TIMESTAMP_NTZ  DATETIME
``timestamp`` with a time zone  TIMESTAMPTZ         TIMESTAMP  DATETIME(6)     TIMESTAMP_TZ   TIMESTAMP
``null``                        TEXT                TEXT       TEXT            TEXT           STRING
==============================  ==================  =========  ==============  =============  =========

Trino and dialects not listed: as Postgres, except ``DOUBLE``, ``DECIMAL(p, s)``, ``DECIMAL(20, 0)``,
``VARCHAR``, ``VARBINARY``, ``TIMESTAMP(6)`` and ``TIMESTAMP(6) WITH TIME ZONE``.

SQLite stores dates and timestamps as ISO text, booleans as 0/1, decimals as numbers (``NUMERIC``
affinity; read back as ``float64``); SQLite and MySQL get time-zone-aware timestamps converted to UTC (their
column types hold no time zone). Lists, structs and other
nested types are refused (:class:`SqlDataError` naming the column).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_mlops.sql.dialects import SqlDialect, detect_dialect, split_name
from airflow_mlops.sql.errors import SqlDataError
from airflow_mlops.store.dates import DateLike, logical_date

if TYPE_CHECKING:
    import pyarrow as pa

#: Rows per COPY chunk / executemany call.
DEFAULT_CHUNK_ROWS = 50_000

# generic (ANSI) names, then per-dialect overrides
_GENERIC = {"bool": "BOOLEAN", "small": "SMALLINT", "int": "INTEGER", "big": "BIGINT", "u64": "NUMERIC(20, 0)",
            "real": "REAL", "double": "DOUBLE PRECISION", "decimal": "NUMERIC({p}, {s})", "text": "TEXT",
            "binary": "BYTEA", "date": "DATE", "ts": "TIMESTAMP", "tstz": "TIMESTAMPTZ"}
_OVERRIDES: dict[str, dict[str, str]] = {
    "postgres": {},
    "redshift": {},
    "sqlite": {"small": "INTEGER", "int": "INTEGER", "big": "INTEGER", "u64": "NUMERIC", "double": "REAL",
               "decimal": "NUMERIC", "binary": "BLOB", "tstz": "TIMESTAMP"},
    "mysql": {"real": "FLOAT", "double": "DOUBLE", "decimal": "DECIMAL({p}, {s})", "binary": "BLOB",
              "ts": "DATETIME(6)", "tstz": "DATETIME(6)"},
    "snowflake": {"u64": "NUMBER(20, 0)", "real": "FLOAT", "double": "DOUBLE", "decimal": "NUMBER({p}, {s})",
                  "binary": "BINARY", "ts": "TIMESTAMP_NTZ", "tstz": "TIMESTAMP_TZ"},
    "bigquery": {"bool": "BOOL", "small": "INT64", "int": "INT64", "big": "INT64", "u64": "NUMERIC",
                 "real": "FLOAT64", "double": "FLOAT64", "decimal": "NUMERIC", "text": "STRING",
                 "binary": "BYTES", "ts": "DATETIME", "tstz": "TIMESTAMP"},
    "trino": {"u64": "DECIMAL(20, 0)", "double": "DOUBLE", "decimal": "DECIMAL({p}, {s})", "text": "VARCHAR",
              "binary": "VARBINARY", "ts": "TIMESTAMP(6)", "tstz": "TIMESTAMP(6) WITH TIME ZONE"},
}
_OTHER = _OVERRIDES["trino"]  # the most standard spelling, for dialects not listed


@dataclass(frozen=True)
class WriteSummary:
    """What :func:`write_predictions` did."""

    table: str
    logical_date: str
    rows_deleted: int
    rows_written: int
    created: bool
    method: str  # "copy" or "executemany"


def sql_type(dialect: SqlDialect | str, arrow_type: pa.DataType, column: str = "?") -> str:
    """The SQL column type of an Arrow type in a dialect (the table in the module docstring)."""
    import pyarrow as pa

    name = dialect.name if isinstance(dialect, SqlDialect) else dialect
    names = {**_GENERIC, **_OVERRIDES.get(name, _OTHER)}
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        key = "bool"
    elif t in (pa.int8(), pa.int16(), pa.uint8()):
        key = "small"
    elif t in (pa.int32(), pa.uint16()):
        key = "int"
    elif t in (pa.int64(), pa.uint32()):
        key = "big"
    elif t == pa.uint64():
        key = "u64"
    elif t in (pa.float16(), pa.float32()):
        key = "real"
    elif t == pa.float64():
        key = "double"
    elif pa.types.is_decimal(t):
        return names["decimal"].format(p=t.precision, s=t.scale)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        key = "text"
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        key = "binary"
    elif pa.types.is_date(t):
        key = "date"
    elif pa.types.is_timestamp(t):
        key = "tstz" if t.tz else "ts"
    else:
        raise SqlDataError(f"column {column!r} has Arrow type {arrow_type}, which has no SQL column type here; "
                           "convert it (e.g. to text) before writing")
    return names[key]


def write_predictions(hook: Any, table: str | Sequence[str], data: pa.Table | Iterable[pa.Table | pa.RecordBatch],
                      ds: DateLike, *,
                      date_column: str = "logical_date", create: bool = True,
                      chunk_rows: int = DEFAULT_CHUNK_ROWS) -> WriteSummary:
    """Replace the rows of logical date ``ds`` in ``table`` by ``data`` (see the module docstring).

    :param hook: a ``common.sql`` ``DbApiHook`` (``PostgresHook``, ``SqliteHook``, ...).
    :param table: ``table``, ``schema.table`` or a tuple of name parts; quoted part by part.
    :param data: the predictions (e.g. the prediction-log rows of that date): a table, or an iterable of tables /
        record batches of one schema (streamed: e.g. a prediction-log partition read file by file), all in the
        same transaction.
    :param date_column: the column that holds the logical date (created ``DATE NOT NULL``).
    :param create: create the table when missing (else a missing table is an error).
    :param chunk_rows: rows per COPY chunk / ``executemany`` call (bounds the memory of the conversion).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    dialect = detect_dialect(hook)
    day = logical_date(ds)
    parts = split_name(table)
    label = "table " + ".".join(parts)
    where = f"{label} ({day})"
    qtable = dialect.quote_name(parts)
    import pyarrow as pa

    pieces = iter([data] if isinstance(data, (pa.Table, pa.RecordBatch)) else data)
    first = _prepare(next(pieces, None), date_column, day, where)
    for field in first.schema:
        sql_type(dialect, field.type, field.name)  # unsupported types fail before any statement
    rows = 0

    try:
        conn = hook.get_conn()
    except Exception as e:
        raise SqlDataError(f"{where}: cannot connect to the database: {type(e).__name__}: {_first_line(e)}") from e
    driver = type(conn).__module__.split(".")[0]
    pg = driver in ("psycopg2", "psycopg")
    with contextlib.suppress(Exception):
        conn.autocommit = False
    try:
        created = _ensure_table(conn, dialect, qtable, first, date_column, create, where)
        cur = conn.cursor()
        try:
            if pg:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(qtable, day),))
            cur.execute(f"DELETE FROM {dialect.escape_text(qtable)} WHERE "
                        f"{dialect.escape_text(dialect.quote(date_column))} = {dialect.placeholder}",
                        (dialect.date_param(day),))
            deleted = max(int(cur.rowcount or 0), 0)
            method = "copy" if pg else "executemany"
            for piece in itertools.chain([first], (_prepare(p, date_column, day, where) for p in pieces)):
                if piece.schema.names != first.schema.names:
                    raise SqlDataError(f"{where}: the pieces of the data have different columns "
                                       f"({piece.schema.names} after {first.schema.names})")
                if pg:
                    _copy(cur, driver, dialect, qtable, piece, chunk_rows)
                else:
                    _executemany(cur, dialect, qtable, piece, chunk_rows)
                rows += piece.num_rows
            conn.commit()
        finally:
            with contextlib.suppress(Exception):
                cur.close()
    except BaseException as e:
        with contextlib.suppress(Exception):
            conn.rollback()
        if isinstance(e, SqlDataError):
            raise
        if not isinstance(e, Exception):
            raise
        column = _error_column(e)
        about = f" (column {column!r})" if column else ""
        raise SqlDataError(f"{where}: writing the predictions failed{about} and was rolled back; the table's "
                           f"rows are unchanged: {type(e).__name__}: {_first_line(e)}") from e
    finally:
        with contextlib.suppress(Exception):
            conn.close()
    return WriteSummary(".".join(parts), day.isoformat(), deleted, rows, created, method)


# ----------------------------------------------------------------------------------------------
def _prepare(data: pa.Table | pa.RecordBatch | None, date_column: str, day: dt.date, where: str) -> pa.Table:
    """Dictionaries decoded; the date column checked (every value ``day``) or added, as ``date32``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if data is None:
        raise SqlDataError(f"{where}: no data to write (an empty iterable; give an empty table to clear the date)")
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if not isinstance(data, pa.Table):
        raise TypeError(f"data must be a pyarrow Table, not {type(data).__name__}")
    names = data.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SqlDataError(f"{where}: the data has more than one column named {dupes}")
    for i, field in enumerate(data.schema):
        if pa.types.is_dictionary(field.type):
            data = data.set_column(i, field.name, pc.cast(data.column(i), field.type.value_type))
    dates = pa.array([day] * data.num_rows, type=pa.date32())
    if date_column in names:
        col = data.column(date_column)
        if col.null_count:
            raise SqlDataError(f"{where}: column {date_column!r} has NULL values; every row must be {day}")
        found = set()
        for v in pc.unique(col).to_pylist():
            try:
                found.add(logical_date(v))
            except ValueError:
                raise SqlDataError(f"{where}: column {date_column!r} holds a value that is not a date") from None
        if found - {day}:
            raise SqlDataError(f"{where}: column {date_column!r} holds other dates "
                               f"{sorted(str(d) for d in found - {day})}; every row must be {day}")
        data = data.set_column(names.index(date_column), date_column, dates)
    else:
        data = data.append_column(date_column, dates)
    return data


def _ensure_table(conn: Any, dialect: SqlDialect, qtable: str, data: pa.Table, date_column: str, create: bool,
                  where: str) -> bool:
    """Create the table when missing (committed); check an existing one has every column. True if created."""
    cur = conn.cursor()
    try:
        try:
            cur.execute(f"SELECT * FROM {qtable} WHERE 1 = 0")
            existing = [str(d[0]) for d in cur.description]
        except Exception as e:  # noqa: BLE001 - a missing table; anything else is reported
            with contextlib.suppress(Exception):
                conn.rollback()
            if not _is_missing_table(e, dialect):
                raise SqlDataError(f"{where}: cannot read the table's columns: {type(e).__name__}: "
                                   f"{_first_line(e)}") from e
            existing = None
        with contextlib.suppress(Exception):
            conn.rollback()
        if existing is not None:
            missing = [c for c in data.column_names if c not in existing]
            if missing:
                raise SqlDataError(f"{where}: the table has no column {missing} (it has {existing}); add them "
                                   "(ALTER TABLE ... ADD COLUMN) or write to a new table")
            return False
        if not create:
            raise SqlDataError(f"{where}: the table does not exist (create=False)")
        cols = []
        for field in data.schema:
            typ = sql_type(dialect, field.type, field.name)
            null = " NOT NULL" if field.name == date_column else ""
            cols.append(f"{dialect.quote(field.name)} {typ}{null}")
        try:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {qtable} ({', '.join(cols)})")
            conn.commit()
        except Exception as e:
            with contextlib.suppress(Exception):
                conn.rollback()
            raise SqlDataError(f"{where}: the table does not exist and creating it failed: {type(e).__name__}: "
                               f"{_first_line(e)}") from e
        return True
    finally:
        with contextlib.suppress(Exception):
            cur.close()


def _is_missing_table(e: BaseException, dialect: SqlDialect) -> bool:
    """Whether a failed ``SELECT`` says the table does not exist (Postgres SQLSTATE 42P01, SQLite's "no such
    table"); for other databases any failure counts (``CREATE TABLE IF NOT EXISTS`` then decides)."""
    code = getattr(e, "pgcode", None) or getattr(e, "sqlstate", None)
    if code is not None or dialect.name in ("postgres", "redshift"):
        return code == "42P01"
    if dialect.name == "sqlite":
        return "no such table" in str(e).lower()
    return True


def _lock_key(qtable: str, day: dt.date) -> int:
    digest = hashlib.sha256(f"airflow_mlops.sql.write|{qtable}|{day}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _csv_chunks(data: pa.Table, chunk_rows: int) -> Iterator[bytes]:
    """CSV of the rows, ``chunk_rows`` at a time, as Postgres' ``COPY ... (FORMAT csv)`` reads it: every
    non-NULL value quoted (so an empty string and ``\\.`` are values), NULL an unquoted empty field, binary as
    ``\\x`` hex."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    for start in range(0, data.num_rows, chunk_rows):
        part = data.slice(start, chunk_rows)
        for i, field in enumerate(part.schema):
            if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type) \
                    or pa.types.is_fixed_size_binary(field.type):
                hexed = [None if v is None else "\\x" + v.hex() for v in part.column(i).to_pylist()]
                part = part.set_column(i, field.name, pa.array(hexed, type=pa.string()))
            elif pa.types.is_null(field.type):
                part = part.set_column(i, field.name, pa.nulls(part.num_rows, type=pa.string()))
        buf = io.BytesIO()
        pacsv.write_csv(part, buf, options)
        yield buf.getvalue()


class _ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (what psycopg2's ``copy_expert`` reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            self._buf += nxt
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


def _copy(cur: Any, driver: str, dialect: SqlDialect, qtable: str, data: pa.Table, chunk_rows: int) -> None:
    if data.num_rows == 0:
        return
    cols = ", ".join(dialect.quote(c) for c in data.column_names)
    sql = f"COPY {qtable} ({cols}) FROM STDIN WITH (FORMAT csv)"
    chunks = _csv_chunks(data, chunk_rows)
    if driver == "psycopg2":
        cur.copy_expert(sql, _ChunkReader(chunks), size=1 << 20)
    else:  # psycopg 3
        with cur.copy(sql) as copy:
            for chunk in chunks:
                copy.write(chunk)


def _executemany(cur: Any, dialect: SqlDialect, qtable: str, data: pa.Table, chunk_rows: int) -> None:
    if data.num_rows == 0:
        return
    cols = ", ".join(dialect.quote(c) for c in data.column_names)
    marks = ", ".join([dialect.placeholder] * data.num_columns)
    sql = (f"INSERT INTO {dialect.escape_text(qtable)} ({dialect.escape_text(cols)}) VALUES ({marks})")
    for start in range(0, data.num_rows, chunk_rows):
        part = data.slice(start, chunk_rows)
        columns = [[_param(dialect, v) for v in part.column(i).to_pylist()] for i in range(part.num_columns)]
        cur.executemany(sql, list(zip(*columns, strict=True)))


def _param(dialect: SqlDialect, v: Any) -> Any:
    """A Python value as the driver binds it: SQLite and MySQL get time-zone-aware timestamps in UTC without
    a zone; SQLite ISO text for dates and timestamps, text for decimals, 0/1 for booleans."""
    if v is None or dialect.name not in ("sqlite", "mysql"):
        return v
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        v = v.astimezone(dt.UTC).replace(tzinfo=None)
    if dialect.name == "mysql":
        return v
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, bool):
        return int(v)
    return v


def _error_column(e: BaseException) -> str | None:
    diag = getattr(e, "diag", None)
    column = getattr(diag, "column_name", None) if diag is not None else None
    if column:
        return str(column)
    text = str(e)
    marker = "NOT NULL constraint failed: "  # sqlite3
    if marker in text:
        return text.split(marker, 1)[1].split(".")[-1].strip() or None
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
