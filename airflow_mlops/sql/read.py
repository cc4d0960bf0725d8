"""Streaming reads of a :class:`~airflow_mlops.sql.source.SqlSource` into Arrow record batches.

Rows are fetched ``batch_rows`` at a time and each batch is converted and handed on before the next is
fetched, so memory is bounded by one batch whatever the size of the result (``fetchall`` is never used):

- **Postgres** (psycopg2 or psycopg 3, whichever the ``PostgresHook`` connects with): a server-side (named)
  cursor, ``FETCH FORWARD batch_rows`` per batch, inside a read-only use of one transaction;
- **others** (SQLite, ...): the driver's ``cursor.fetchmany(batch_rows)``.

Every batch has the same schema, decided from the driver's ``cursor.description`` (Postgres type OIDs) or,
for SQLite, from the table's declared column types (``PRAGMA table_info``) and else from the values.

Type mapping (SQL -> Arrow):

======================================  ================================  =====================================
Postgres type (OID)                     SQLite declared type              Arrow type
======================================  ================================  =====================================
``boolean`` (16)                        contains ``BOOL``                 ``bool``
``smallint`` (21)                                                         ``int16``
``integer`` (23)                                                          ``int32``
``bigint`` (20), ``oid`` (26)           contains ``INT``                  ``int64``
``real`` (700)                                                            ``float32``
``double precision`` (701)              ``REAL``, ``FLOA``, ``DOUB``      ``float64``
``numeric(p, s)``, p <= 38 (1700)                                         ``decimal128(p, s)`` (exact)
``numeric`` without precision, p > 38   ``NUMERIC``, ``DECIMAL``          ``float64`` (nearest double)
``text``, ``varchar``, ``char``, name   ``CHAR``, ``CLOB``, ``TEXT``      ``string``
``uuid``, ``json``, ``jsonb``                                             ``string`` (JSON text)
``bytea`` (17)                          ``BLOB``                          ``binary``
``date`` (1082)                         ``DATE`` (ISO text)               ``date32``
``time`` (1083)                                                           ``time64[us]``
``timestamp`` (1114)                    ``DATETIME``, ``TIMESTAMP``       ``timestamp[us]``
``timestamptz`` (1184)                                                    ``timestamp[us, tz=UTC]`` (in UTC)
``NULL`` literal / ``unknown`` (705)                                      ``string`` (all null)
other types (interval, arrays, ...)     no declared type (query form)     Postgres: :class:`SqlDataError`;
                                                                          SQLite: from the values
======================================  ================================  =====================================

SQLite columns without a declared type (every column of a query source, computed columns) take the type of
their values in the first batch (``int`` -> ``int64``, ``float`` -> ``float64``, ``str`` -> ``string``,
``bytes`` -> ``binary``); a column NULL throughout the first batch is ``null``, and if a later batch has a
value there the read fails asking for its type. ``types={"column": pa.date32()}`` (or an alias such as
``"date32"``, ``"timestamp[us]"``) sets a column's Arrow type for any dialect; text values are then parsed
(ISO dates and timestamps, ``0``/``1`` booleans).

Errors are :class:`~airflow_mlops.sql.errors.SqlDataError` naming the source (table or query) and the column:
a missing table or column (with the table's columns), a value that does not fit its column's type (with
the row number and the value's Python type, never the value), no rows when ``require_rows``, a connection
lost mid-read (the driver's ``OperationalError``/``InterfaceError``; the rows already handed on are an
incomplete read), any other failed query (the driver's first message line).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import re
import sys
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.sql.dialects import SqlDialect, detect_dialect, split_name
from airflow_mlops.sql.errors import SqlDataError
from airflow_mlops.sql.source import BoundQuery, SqlSource, Window
from airflow_mlops.store.dates import DateLike, logical_date

if TYPE_CHECKING:
    import pyarrow as pa

#: Rows per record batch unless told otherwise.
DEFAULT_BATCH_ROWS = 65_536

# Postgres type OIDs (pg_type.oid; stable across versions)
PG_BOOL, PG_BYTEA, PG_CHAR, PG_NAME, PG_INT8, PG_INT2, PG_INT4, PG_TEXT, PG_OID = 16, 17, 18, 19, 20, 21, 23, 25, 26
PG_JSON, PG_FLOAT4, PG_FLOAT8, PG_UNKNOWN, PG_BPCHAR, PG_VARCHAR = 114, 700, 701, 705, 1042, 1043
PG_DATE, PG_TIME, PG_TIMESTAMP, PG_TIMESTAMPTZ, PG_NUMERIC, PG_UUID, PG_JSONB = 1082, 1083, 1114, 1184, 1700, 2950, 3802

_PG_TEXT_OIDS = {PG_CHAR, PG_NAME, PG_TEXT, PG_UNKNOWN, PG_BPCHAR, PG_VARCHAR}
_PG_AS_TEXT_OIDS = {PG_JSON, PG_JSONB, PG_UUID}  # converted to text


def read_day(hook: Any, source: SqlSource, ds: DateLike, *, batch_rows: int = DEFAULT_BATCH_ROWS,
             require_rows: bool = False, types: Mapping[str, Any] | None = None
             ) -> Generator[pa.RecordBatch, None, None]:
    """Record batches of the rows of day ``ds`` (see the module docstring). ``hook``: a ``DbApiHook``."""
    dialect = detect_dialect(hook)
    day = logical_date(ds)
    yield from read_bound(hook, source.for_day(day, dialect), source=source, what=day.isoformat(),
                          dialect=dialect, batch_rows=batch_rows, require_rows=require_rows, types=types)


def read_window(hook: Any, source: SqlSource, start: DateLike, end: DateLike, *,
                batch_rows: int = DEFAULT_BATCH_ROWS, require_rows: bool = False,
                types: Mapping[str, Any] | None = None) -> Generator[pa.RecordBatch, None, None]:
    """Record batches of the rows of days ``start`` .. ``end`` (both included)."""
    dialect = detect_dialect(hook)
    w = Window.of(start, end)
    yield from read_bound(hook, source.for_window(w.start, w.end, dialect), source=source,
                          what=f"{w.start} .. {w.end}", dialect=dialect, batch_rows=batch_rows,
                          require_rows=require_rows, types=types)


def read_bound(hook: Any, query: BoundQuery, *, source: SqlSource | None = None, what: str = "",
               dialect: SqlDialect | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
               require_rows: bool = False, types: Mapping[str, Any] | None = None
               ) -> Generator[pa.RecordBatch, None, None]:
    """Record batches of a built query (``(sql, params)``). ``source`` names the data in messages and, for a
    table source, gives SQLite's declared types; ``what`` is the day or window in messages.

    With no rows, one empty batch with the schema is yielded (or :class:`SqlDataError` with
    ``require_rows``). The connection is opened here and closed when the iteration ends (also early)."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
    dialect = dialect or detect_dialect(hook)
    reader = _Reader(hook, query, source, what, dialect, batch_rows, types or {})
    yield from reader.batches(require_rows)


# ----------------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, hook: Any, query: BoundQuery, source: SqlSource | None, what: str, dialect: SqlDialect,
                 batch_rows: int, types: Mapping[str, Any]) -> None:
        self.hook, self.query, self.source, self.what = hook, query, source, what
        self.dialect, self.batch_rows = dialect, batch_rows
        self.types = {k: _arrow_type(v) for k, v in types.items()}
        self.label = source.label() if source is not None else "query"
        self.rows = 0
        self.declared: dict[str, str] = {}

    def where(self) -> str:
        return f"{self.label} ({self.what})" if self.what else self.label

    def batches(self, require_rows: bool) -> Iterator[pa.RecordBatch]:
        try:
            conn = self.hook.get_conn()
        except Exception as e:  # noqa: BLE001 - the driver's or Airflow's error, named
            raise SqlDataError(f"{self.where()}: cannot connect to the database: {type(e).__name__}: "
                               f"{_first_line(e)}") from e
        driver = _driver_module(conn)
        cur = None
        try:
            if driver in ("psycopg2", "psycopg"):
                with contextlib.suppress(Exception):
                    conn.autocommit = False  # a named cursor lives in a transaction
                name = f"mlops_read_{uuid.uuid4().hex[:16]}"
                # psycopg 3: the binary protocol (numbers arrive as numbers, not text to parse: about twice as fast)
                cur = conn.cursor(name=name, binary=True) if driver == "psycopg" else conn.cursor(name=name)
                with contextlib.suppress(AttributeError):
                    cur.itersize = self.batch_rows
            else:
                if self.dialect.name == "sqlite":
                    self.declared = self._check_sqlite_table(conn)
                cur = conn.cursor()
            try:
                cur.execute(self.query.sql, self.query.params)
                rows = cur.fetchmany(self.batch_rows)
            except Exception as e:  # noqa: BLE001 - translated into a message naming the table
                raise self._query_error(e, conn, driver) from e
            schema = _Schema(self, cur.description, driver)
            while rows:
                self.rows += len(rows)
                yield schema.batch(rows, self.rows - len(rows))
                try:  # until an empty fetch: DB-API lets a driver return fewer rows than asked mid-result
                    rows = cur.fetchmany(self.batch_rows)
                except Exception as e:  # noqa: BLE001 - translated
                    raise self._fetch_error(e, driver) from e
            if self.rows == 0:
                if require_rows:
                    raise SqlDataError(f"{self.where()} returned no rows; rows are required (check the data "
                                       "was loaded for that day and the date column / query filter)")
                yield schema.batch([], 0)
        finally:
            if cur is not None:
                with contextlib.suppress(Exception):
                    cur.close()
            with contextlib.suppress(Exception):
                conn.rollback()
            with contextlib.suppress(Exception):
                conn.close()

    # ------------------------------------------------------------------------------------------
    def _query_error(self, e: BaseException, conn: Any, driver: str) -> SqlDataError:
        if _is_connection_error(e, driver):
            return self._fetch_error(e, driver)
        code = getattr(e, "pgcode", None) or getattr(e, "sqlstate", None)
        msg = _first_line(e)
        missing_table = code in ("42P01", "3F000") or msg.lower().startswith("no such table")
        col = None
        if code == "42703" or msg.lower().startswith("no such column"):
            m = re.search(r'column "?([^"]+?)"? does not exist', msg) or re.search(r"no such column: (.+)$", msg)
            col = m.group(1) if m else msg
        if missing_table:
            return SqlDataError(f"{self.label} does not exist ({msg}); check the table name, its schema "
                                f"and the connection's database")
        if col is not None:
            present = self._table_columns(conn)
            listing = f"; the table has columns {present}" if present else ""
            return SqlDataError(f"{self.label}: column {col!r} does not exist{listing}")
        return SqlDataError(f"{self.where()}: the query failed: {type(e).__name__}: {msg}")

    def _fetch_error(self, e: BaseException, driver: str) -> SqlDataError:
        if _is_connection_error(e, driver):
            return SqlDataError(f"{self.where()}: the connection to the database was lost after {self.rows} "
                                f"rows ({type(e).__name__}: {_first_line(e)}); the read is incomplete, run it "
                                "again")
        return SqlDataError(f"{self.where()}: reading rows failed after {self.rows} rows: "
                            f"{type(e).__name__}: {_first_line(e)}")

    def _table_columns(self, conn: Any) -> list[str] | None:
        """The columns of a table source (a second, empty query), for messages; ``None`` when unknown."""
        if self.source is None or self.source.table is None:
            return None
        try:
            with contextlib.suppress(Exception):
                conn.rollback()
            cur = conn.cursor()
            try:
                cur.execute(f"SELECT * FROM {self.dialect.quote_name(self.source.table)} WHERE 1 = 0")
                return [d[0] for d in cur.description]
            finally:
                cur.close()
        except Exception:  # noqa: BLE001 - only for the message
            return None

    def _check_sqlite_table(self, conn: Any) -> dict[str, str]:
        """The declared types of a SQLite table source's columns (``PRAGMA table_info``), after checking
        the table and every column the source names exist: SQLite reads an unknown double-quoted name as a
        string literal, so a misspelt column would otherwise select a constant (or filter on one)."""
        if self.source is None or self.source.table is None:
            return {}
        parts = split_name(self.source.table)
        prefix = (self.dialect.quote(parts[0]) + ".") if len(parts) > 1 else ""
        cur = conn.cursor()
        try:
            cur.execute(f"PRAGMA {prefix}table_info({self.dialect.quote(parts[-1])})")
            declared = {str(r[1]): str(r[2] or "") for r in cur.fetchall()}  # one row per column: small
        except Exception as e:  # noqa: BLE001 - translated
            raise self._query_error(e, conn, "sqlite3") from e
        finally:
            cur.close()
        if not declared:
            raise SqlDataError(f"{self.label} does not exist (no such table); check the table name and the "
                               "connection's database file")
        named = [self.source.date_column, *self.source.columns, *self.source.order_by]
        for col in named:
            if col is not None and col not in declared:
                raise SqlDataError(f"{self.label}: column {col!r} does not exist; the table has columns "
                                   f"{list(declared)}")
        return declared


class _Schema:
    """The Arrow schema of a result and the conversion of its rows, fixed at the first batch."""

    def __init__(self, reader: _Reader, description: Sequence[Any] | None, driver: str) -> None:
        import pyarrow as pa

        self.reader = reader
        if not description:
            raise SqlDataError(f"{reader.where()}: the statement returned no result set (is it a SELECT?)")
        self.names = [str(_desc(d, "name", 0)) for d in description]
        dupes = sorted({n for n in self.names if self.names.count(n) > 1})
        if dupes:
            raise SqlDataError(f"{reader.where()}: the result has more than one column named {dupes}; "
                               "select them under different names")
        declared = reader.declared
        self.types: list[pa.DataType | None] = []
        self.converters: list[Callable[[Any], Any] | None] = []
        for name, d in zip(self.names, description, strict=True):
            typ: pa.DataType | None
            conv: Callable[[Any], Any] | None
            if name in reader.types:
                typ = reader.types[name]
                conv = _generic_converter(typ)
            elif driver in ("psycopg2", "psycopg") or reader.dialect.name in ("postgres", "redshift"):
                typ, conv = _pg_type(reader, name, d)
            elif name in declared and declared[name]:
                typ = _sqlite_type(declared[name])
                conv = _generic_converter(typ) if typ is not None else None
            else:
                typ, conv = None, None  # from the values
            self.types.append(typ)
            self.converters.append(conv)
        self.pa = pa

    def schema(self) -> pa.Schema:
        return self.pa.schema([(n, t if t is not None else self.pa.null())
                               for n, t in zip(self.names, self.types, strict=True)])

    def batch(self, rows: Sequence[Sequence[Any]], offset: int) -> pa.RecordBatch:
        pa = self.pa
        if not rows:
            return pa.RecordBatch.from_pylist([], schema=self.schema())
        columns = list(zip(*rows, strict=True))
        arrays = []
        for i, (name, values) in enumerate(zip(self.names, columns, strict=True)):
            typ = self.types[i]
            if typ is None or pa.types.is_null(typ):
                inferred = _infer_type(values)
                if inferred is None:
                    typ = pa.null()
                elif typ is not None:  # null in the first batch, values now
                    first = offset + next(j for j, v in enumerate(values) if v is not None) + 1
                    raise SqlDataError(f"{self.reader.where()}: column {name!r} has no declared type and was "
                                       f"NULL throughout the first batch, then has {inferred} values from row "
                                       f"{first}; give its type: types={{{name!r}: {str(inferred)!r}}}")
                else:
                    typ = inferred
                self.types[i] = typ
                if self.converters[i] is None and not pa.types.is_null(typ):
                    self.converters[i] = _generic_converter(typ)
            arrays.append(self._array(name, values, typ, self.converters[i], offset))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema())

    def _array(self, name: str, values: Sequence[Any], typ: pa.DataType, conv: Callable[[Any], Any] | None,
               offset: int) -> pa.Array:
        pa = self.pa
        try:
            if conv is not None:
                values = [None if v is None else conv(v) for v in values]
            return pa.array(values, type=typ)
        except (ValueError, TypeError, OverflowError, ArithmeticError, pa.ArrowException) as e:
            row, bad = _first_bad(values, typ, conv)
            at = f" at row {offset + row + 1}" if row is not None else ""
            kind = f" (a {type(bad).__name__} value)" if row is not None else ""
            raise SqlDataError(f"{self.reader.where()}: column {name!r}: a value does not fit the column's type "
                               f"{typ}{at}{kind}: {type(e).__name__}") from None


def _first_bad(values: Sequence[Any], typ: pa.DataType, conv: Callable[[Any], Any] | None) -> tuple[int | None, Any]:
    import pyarrow as pa

    for i, v in enumerate(values):
        if v is None:
            continue
        try:
            pa.array([conv(v) if conv is not None else v], type=typ)
        except Exception:  # noqa: BLE001 - looking for the culprit
            return i, v
    return None, None


def _desc(d: Any, attr: str, index: int) -> Any:
    value = getattr(d, attr, None)
    if value is None:
        with contextlib.suppress(Exception):
            value = d[index]
    return value


def _pg_type(reader: _Reader, name: str, d: Any) -> tuple[pa.DataType, Callable[[Any], Any] | None]:
    import pyarrow as pa

    oid = _desc(d, "type_code", 1)
    simple: dict[int, pa.DataType] = {
        PG_BOOL: pa.bool_(), PG_INT2: pa.int16(), PG_INT4: pa.int32(), PG_INT8: pa.int64(), PG_OID: pa.int64(),
        PG_FLOAT4: pa.float32(), PG_FLOAT8: pa.float64(), PG_DATE: pa.date32(), PG_TIME: pa.time64("us"),
        PG_TIMESTAMP: pa.timestamp("us"), PG_TIMESTAMPTZ: pa.timestamp("us", tz="UTC"), PG_BYTEA: pa.binary(),
    }
    if oid in simple:
        return simple[oid], (bytes if oid == PG_BYTEA else None)
    if oid in _PG_TEXT_OIDS:
        return pa.string(), None
    if oid in _PG_AS_TEXT_OIDS:
        return pa.string(), _to_text
    if oid == PG_NUMERIC:
        precision, scale = _desc(d, "precision", 4), _desc(d, "scale", 5)
        if isinstance(precision, int) and isinstance(scale, int) and 0 < precision <= 38 and 0 <= scale <= precision:
            return pa.decimal128(precision, scale), None
        return pa.float64(), _to_float
    raise SqlDataError(f"{reader.where()}: column {name!r} has a Postgres type (OID {oid}) with no Arrow mapping; "
                       f"cast it in a query (e.g. {name}::text or {name}::double precision) or give its type with "
                       "types=")


def _sqlite_type(declared: str) -> pa.DataType | None:
    """SQLite's affinity rules (https://sqlite.org/datatype3.html, 3.1), with booleans, dates and
    timestamps (stored as ISO text) recognised first."""
    import pyarrow as pa

    t = declared.upper()
    if "BOOL" in t:
        return pa.bool_()
    if "TIMESTAMP" in t or "DATETIME" in t:
        return pa.timestamp("us")
    if "DATE" in t:
        return pa.date32()
    if "INT" in t:
        return pa.int64()
    if any(k in t for k in ("CHAR", "CLOB", "TEXT")):
        return pa.string()
    if "BLOB" in t:
        return pa.binary()
    if any(k in t for k in ("REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL")):
        return pa.float64()
    return None


def _infer_type(values: Sequence[Any]) -> pa.DataType | None:
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds <= {bool}:
        return pa.bool_()
    if kinds <= {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds <= {str}:
        return pa.string()
    if kinds <= {bytes, bytearray, memoryview}:
        return pa.binary()
    if kinds <= {decimal.Decimal, int, float}:
        return pa.float64()
    if kinds <= {dt.datetime}:
        return pa.timestamp("us")
    if kinds <= {dt.date}:
        return pa.date32()
    return pa.string()


def _arrow_type(value: Any) -> pa.DataType:
    import pyarrow as pa

    if isinstance(value, pa.DataType):
        return value
    try:
        return pa.type_for_alias(str(value))
    except (ValueError, KeyError):
        raise ValueError(f"types: {value!r} is not an Arrow type or type alias") from None


def _generic_converter(typ: pa.DataType) -> Callable[[Any], Any] | None:
    """Python values -> what pyarrow takes for ``typ``: ISO text dates/timestamps, 0/1 booleans, decimals as
    floats, JSON/UUID as text. Values that cannot be converted raise (and are reported as not fitting)."""
    import pyarrow as pa

    if pa.types.is_date(typ):
        return _to_date
    if pa.types.is_timestamp(typ):
        return _to_timestamp
    if pa.types.is_boolean(typ):
        return _to_bool
    if pa.types.is_floating(typ):
        return _to_float
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return _to_text
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return bytes
    return None


def _to_date(v: Any) -> dt.date:
    if isinstance(v, dt.datetime):
        if v.time() != dt.time(0) or v.tzinfo is not None:
            raise ValueError("a timestamp is not a date")
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        return dt.date.fromisoformat(v)
    raise TypeError(f"{type(v).__name__} is not a date")


def _to_timestamp(v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v
    if isinstance(v, dt.date):
        return dt.datetime.combine(v, dt.time(0))
    if isinstance(v, str):
        return dt.datetime.fromisoformat(v)
    raise TypeError(f"{type(v).__name__} is not a timestamp")


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise ValueError(f"{type(v).__name__} value is not a boolean")


def _to_float(v: Any) -> float:
    if isinstance(v, (float, int, decimal.Decimal)) and not isinstance(v, bool):
        return float(v)
    raise TypeError(f"{type(v).__name__} is not a number")


def _to_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    raise TypeError(f"{type(v).__name__} is not text")


def _driver_module(conn: Any) -> str:
    return type(conn).__module__.split(".")[0]


def _is_connection_error(e: BaseException, driver: str) -> bool:
    module = sys.modules.get(driver)
    classes = tuple(c for c in (getattr(module, "OperationalError", None), getattr(module, "InterfaceError", None))
                    if isinstance(c, type))
    if not classes or not isinstance(e, classes):
        return False
    if driver == "sqlite3":  # sqlite3 reports missing tables and columns as OperationalError
        return "closed" in str(e).lower() or "disk i/o" in str(e).lower()
    code = getattr(e, "pgcode", None) or getattr(e, "sqlstate", None)
    return code is None or str(code).startswith(("08", "57P"))  # connection exception, admin shutdown


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
