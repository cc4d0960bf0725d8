"""The errors of SQL data: a bad source definition, and data that cannot be read or written."""

from __future__ import annotations

from airflow_mlops.store.datasets import DataError


class SqlSourceError(ValueError):
    """A source or identifier that cannot be turned into SQL: an identifier with a NUL character, a table
    without a date column, an unknown ``{{ ... }}`` placeholder in a query. Raised before any connection."""


class SqlDataError(DataError):
    """SQL data that cannot be read or written: a missing table or column, a value that does not fit the
    column's type, no rows where rows are required, a connection dropped mid-read, a failed write (rolled
    back). The message names the table (or query) and, where it is one column's fault, the column; it never
    quotes row values. A :class:`~airflow_mlops.store.datasets.DataError`, so code handling partition
    errors handles these too."""
