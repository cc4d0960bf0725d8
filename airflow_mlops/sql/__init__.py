"""SQL data: training, scoring and ground-truth data read from SQL databases, predictions written to a table.

The library layer of SQL data (docs/sql-data.md), plain Python over any Airflow ``common.sql``
``DbApiHook`` (or an object with the same few members: ``get_conn()``, ``placeholder``,
``escape_word_format``, ``conn_type`` / ``dialect_name``). No Airflow import: the hook is passed in.

- :mod:`.dialects`: which database a hook talks to, identifier quoting, the driver's parameter style;
- :mod:`.source`: :class:`~.source.SqlSource` (a table with a date column, or a templated query) and the
  ``(sql, params)`` of one day or a window of days, values always bound as parameters;
- :mod:`.read`: streaming reads into Arrow record batches (bounded memory, typed from the driver's
  column description);
- :mod:`.write`: predictions of one logical date into a table, replaced in one transaction;
- :mod:`.errors`: :class:`~.errors.SqlDataError` (a :class:`~airflow_mlops.store.datasets.DataError`) and
  :class:`~.errors.SqlSourceError`.
"""

from airflow_mlops.sql.dialects import SqlDialect, detect_dialect, dialect_for
from airflow_mlops.sql.errors import SqlDataError, SqlSourceError
from airflow_mlops.sql.read import read_bound, read_day, read_window
from airflow_mlops.sql.source import BoundQuery, SqlSource
from airflow_mlops.sql.write import WriteSummary, sql_type, write_predictions

__all__ = [
    "BoundQuery", "SqlDataError", "SqlDialect", "SqlSource", "SqlSourceError", "WriteSummary", "detect_dialect",
    "dialect_for", "read_bound", "read_day", "read_window", "sql_type", "write_predictions",
]
