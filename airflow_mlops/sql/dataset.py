"""A model's data in a SQL database, seen through the same read interface as a date-partitioned dataset of the
store (:class:`~airflow_mlops.store.datasets.Dataset`), so training, validation, scoring, drift and performance
monitoring read a table or a query the way they read ``ds=`` folders.

* A **day** (a partition) is the rows whose ``date_column`` falls on it (table sources) or the rows the query
  returns for ``{{ ds }}`` (query sources); a training **window** is one query over ``date_column`` ranges, or
  for a query source that uses ``{{ ds }}``, one query per day (so each row keeps its day).
* The table's ``date_column`` plays the part of the ``ds=`` folder: it is not returned as a data column
  (a model never learns the date its rows were filed under; ``features`` may not list it).
* :meth:`SqlDataset.uri` names the data the way OpenLineage names SQL datasets, from the connection:
  ``postgres://host:port/database.schema.table`` (a query: ``postgres://host:port/database.query_<sha256
  prefix>``), never credentials; a day adds ``/ds=YYYY-MM-DD``.
* Reads stream (:mod:`airflow_mlops.sql.read`); :meth:`SqlDataset.batches` gives scoring its record batches.

Writing goes the other way, through :func:`airflow_mlops.sql.write.write_predictions`; this dataset is read-only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from airflow_mlops.sql.errors import SqlDataError
from airflow_mlops.sql.read import DEFAULT_BATCH_ROWS, read_bound, read_day
from airflow_mlops.sql.source import SqlSource, template_names
from airflow_mlops.store.datasets import DataError, Dataset, EmptyPartitionError
from airflow_mlops.store.dates import DateLike, logical_date

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

__all__ = ["SqlDataset", "sql_hook"]


def sql_hook(conn_id: str) -> Any:
    """The ``common.sql`` ``DbApiHook`` of the Airflow connection ``conn_id`` (its provider's hook)."""
    from airflow_mlops import platform

    try:
        conn = platform.connection(conn_id)
    except platform.ConnectionNotFoundError as e:
        raise SqlDataError(f"{e}; define it (e.g. AIRFLOW_CONN_{conn_id.upper()}) or fix conn_id") from None
    try:
        hook = conn.get_hook()  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001 - the provider of the connection type is missing, or it has no hook
        raise SqlDataError(f"Airflow connection {conn_id!r} (type {getattr(conn, 'conn_type', '?')!r}) gives no "
                           f"SQL hook: {type(e).__name__}: {e}; install the connection type's provider "
                           "(e.g. apache-airflow-providers-postgres)") from None
    if not callable(getattr(hook, "get_conn", None)):
        raise SqlDataError(f"Airflow connection {conn_id!r} gives a {type(hook).__name__}, not a SQL (DbApiHook) hook")
    return hook


class SqlDataset(Dataset):
    """A table or query of the connection ``conn_id`` as a day-partitioned dataset (see the module docstring).

    :param conn_id: the Airflow connection.
    :param source: the table (with its date column) or the templated query.
    :param hook: a ``DbApiHook`` to use instead of the connection's own (tests, callers that hold one).
    """

    def __init__(self, conn_id: str, source: SqlSource, hook: Any = None) -> None:
        self.conn_id = conn_id
        self.source = source
        self._hook = hook
        self._base: str | None = None
        self.store = None  # type: ignore[assignment]  # not in the artifact store
        self.prefix = ""
        self.fmt = "sql"

    # -- naming ----------------------------------------------------------------------------------
    @property
    def hook(self) -> Any:
        if self._hook is None:
            self._hook = sql_hook(self.conn_id)
        return self._hook

    def base_uri(self) -> str:
        """``<scheme>://host:port/database[.schema.table]`` from the connection (no credentials)."""
        if self._base is None:
            from airflow_mlops.sql.dialects import detect_dialect

            scheme = detect_dialect(self.hook).name
            try:
                conn = self.hook.get_connection(self.conn_id)
                host, port, database = conn.host or "", conn.port, conn.schema or ""
            except Exception:  # noqa: BLE001 - a hook built without a connection (tests)
                host, port, database = "", None, ""
            where = f"{host}:{port}" if port else host
            if scheme == "sqlite":
                where, database = "", host or database
            self._base = f"{scheme}://{where}/{'.'.join(p for p in (database, self._source_name()) if p)}"
        return self._base

    def uri(self, ds: DateLike | None = None) -> str:
        """The source's name (see the module docstring); a day adds ``/ds=YYYY-MM-DD`` as a store partition does,
        so lineage splits both the same way."""
        base = self.base_uri()
        return base if ds is None else f"{base}/ds={logical_date(ds).isoformat()}"

    def asset_uri(self) -> str:
        """A name for Airflow assets, built without opening the connection (a Dag file is parsed without
        looking connections up): ``mlops-sql://<conn_id>/<table>`` or ``.../query_<sha256 prefix>``."""
        return f"mlops-sql://{self.conn_id}/{self._source_name()}"

    def _source_name(self) -> str:
        """``schema.table`` (the name parts joined), or ``query_<sha256 prefix of the query text>``."""
        from airflow_mlops.sql.dialects import split_name

        if self.source.table is not None:
            return ".".join(split_name(self.source.table))
        return "query_" + hashlib.sha256((self.source.query or "").encode()).hexdigest()[:12]

    def key(self, ds: DateLike) -> str:
        return f"ds={logical_date(ds).isoformat()}"

    def describe(self) -> dict[str, Any]:
        """What lineage records about the source: connection id, table and date column or the query text."""
        if self.source.table is not None:
            return {"conn_id": self.conn_id, "table": self._source_name(),
                    "date_column": self.source.date_column, "uri": self.uri()}
        return {"conn_id": self.conn_id, "query": self.source.query, "uri": self.uri()}

    # -- reading ---------------------------------------------------------------------------------
    def batches(self, ds: DateLike, columns: list[str] | None = None,
                batch_rows: int = DEFAULT_BATCH_ROWS) -> Generator[pa.RecordBatch, None, None]:
        """Record batches of day ``ds`` (one empty batch with the schema when it has no rows)."""
        for batch in read_day(self.hook, self._with(columns), ds, batch_rows=batch_rows):
            yield self._drop_date(batch, columns)

    def read_table(self, ds: DateLike, columns: list[str] | None = None) -> pa.Table:
        import pyarrow as pa

        table = pa.Table.from_batches(list(self.batches(ds, columns)))
        if table.num_rows == 0:
            raise EmptyPartitionError(f"{self.source.label()} has no rows for {logical_date(ds)} ({self.uri(ds)})")
        return table

    def read(self, ds: DateLike, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read_table(ds, columns).to_pandas()

    def exists(self, ds: DateLike) -> bool:
        rows = read_day(self.hook, self.source, ds, batch_rows=1)
        try:
            return bool(next(rows).num_rows > 0)
        finally:
            rows.close()

    def files(self, ds: DateLike) -> list[str]:
        """One pseudo-file per day (the day's rows), for callers that list a partition's files."""
        return [self.key(ds)] if self.exists(ds) else []

    def partitions(self) -> list[str]:
        """Days with rows (tables: distinct dates of ``date_column``); a query source cannot be listed: ``[]``."""
        if self.source.table is None:
            return []
        from airflow_mlops.sql.dialects import detect_dialect
        from airflow_mlops.sql.source import BoundQuery

        dialect = detect_dialect(self.hook)
        col = dialect.quote(self.source.date_column or "")
        sql = f"SELECT DISTINCT {col} FROM {dialect.quote_name(self.source.table)}"
        days: set[str] = set()
        for batch in read_bound(self.hook, BoundQuery(sql, ()), source=self.source, what="partitions",
                                dialect=dialect):
            for v in batch.column(0).to_pylist():
                if v is not None:
                    days.add(logical_date(v).isoformat())
        return sorted(days)

    def read_window(self, end: DateLike, days: int, columns: list[str] | None = None,
                    require_end: bool = True, partition_column: str | None = None) -> tuple[pd.DataFrame, list[str]]:
        """The rows of the ``days`` days ending ``end`` and the days that had rows (see :meth:`Dataset.read_window`)."""
        import pandas as pd
        import pyarrow as pa

        end_date = logical_date(end)
        start = end_date - dt.timedelta(days=days - 1)
        window_names = {"window_start", "window_end"} & set(template_names(self.source.query or ""))
        if self.source.table is None and not window_names:
            frames = []  # a query of one day ({{ ds }}): one query per day, each row keeps its day
            for i in range(days):
                day = start + dt.timedelta(days=i)
                table = pa.Table.from_batches(list(self.batches(day, columns)))
                if table.num_rows:
                    frame = table.to_pandas()
                    if partition_column is not None:
                        frame[partition_column] = day.isoformat()
                    frames.append((day.isoformat(), frame))
            used = [d for d, _ in frames]
            data = pd.concat([f for _, f in frames], ignore_index=True) if frames else None
        else:
            data, used = self._window_query(start, end_date, columns, partition_column)
        if require_end and end_date.isoformat() not in used and self.source.table is not None:
            raise DataError(f"{self.source.label()} has no rows for {end_date} ({self.uri(end_date)})")
        if data is None or not len(data):
            raise DataError(f"{self.source.label()} has no rows in the {days} day(s) ending {end_date} ({self.uri()})")
        return data, used

    def _window_query(self, start: dt.date, end: dt.date, columns: list[str] | None,
                      partition_column: str | None) -> tuple[pd.DataFrame | None, list[str]]:
        import pyarrow as pa

        from airflow_mlops.sql.dialects import detect_dialect

        dialect = detect_dialect(self.hook)
        source = self._with(columns)
        batches = list(read_bound(self.hook, source.for_window(start, end, dialect), source=source,
                                  what=f"{start} .. {end}", dialect=dialect))
        table = pa.Table.from_batches(batches)
        date_col = self.source.date_column
        if date_col is None:  # a window query: the days of its rows are not known
            if partition_column is not None:
                raise DataError(f"{self.source.label()}: a query over {{{{ window_start }}}} .. {{{{ window_end }}}} "
                                "does not say which day each row belongs to, which training.split: time needs; "
                                "use a table with date_column, or a query of one day ({{ ds }})")
            return (table.to_pandas() if table.num_rows else None), [end.isoformat()] if table.num_rows else []
        if date_col not in table.column_names:
            raise SqlDataError(f"{self.source.label()}: date_column {date_col!r} is not a column of the table")
        day_strings = [None if v is None else logical_date(v).isoformat()
                       for v in table.column(date_col).to_pylist()]
        used = sorted({d for d in day_strings if d is not None})
        if date_col not in (columns or ()):
            table = table.drop_columns([date_col])
        frame = table.to_pandas()
        if partition_column is not None:
            if partition_column in frame.columns:
                raise DataError(f"{self.source.label()} has a column {partition_column!r}, the name reserved for the "
                                "partition date of each row")
            frame[partition_column] = day_strings
        return (frame if len(frame) else None), used

    def schema(self, ds: DateLike | None = None) -> dict[str, str] | None:
        """Column -> Arrow type string of a day's rows (the latest day by default; a query: ``ds`` needed)."""
        if ds is None:
            days = self.partitions()
            if not days:
                return None
            ds = days[-1]
        rows = self.batches(ds, None, batch_rows=1)
        try:
            first = next(rows)
        except SqlDataError:
            return None
        finally:
            rows.close()
        return {f.name: str(f.type) for f in first.schema}

    def write(self, ds: DateLike, data: Any, **manifest: Any) -> dict[str, Any]:
        raise DataError(f"{self.source.label()} ({self.uri()}) is read through its connection; the package does not "
                        "write input data to SQL (predictions go to the predictions table)")

    # -- helpers ---------------------------------------------------------------------------------
    def _with(self, columns: list[str] | None) -> SqlSource:
        """The source selecting ``columns`` (plus the date column) when it is a table."""
        if not columns or self.source.table is None:
            return self.source
        wanted = list(dict.fromkeys([*columns, *((self.source.date_column,) if self.source.date_column else ())]))
        return SqlSource(table=self.source.table, date_column=self.source.date_column, columns=tuple(wanted),
                         order_by=self.source.order_by, name=self.source.name)

    def _drop_date(self, batch: pa.RecordBatch, columns: list[str] | None) -> pa.RecordBatch:
        """A table's batch without its date column (unless asked for); a query's batch cut to ``columns``."""
        if self.source.table is None:  # the query selected what it selected: keep the columns asked for
            if not columns:
                return batch
            missing = [c for c in columns if c not in batch.schema.names]
            if missing:
                raise SqlDataError(f"{self.source.label()}: the query returns no column(s) {missing}")
            return batch.select(columns)
        date_col = self.source.date_column
        if date_col in (columns or ()) or date_col not in batch.schema.names:
            return batch
        return batch.drop_columns([date_col])
