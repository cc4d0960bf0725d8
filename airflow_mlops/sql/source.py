"""Where SQL data lives: a table with a date column, or a templated query; the SQL of one day or a window.

A :class:`SqlSource` is either

- **a table** (``table`` + ``date_column``): the rows of a day are ``date_column >= day AND date_column <
  day + 1``, so a ``DATE`` and a ``TIMESTAMP`` column both work; a window ``[start, end]`` (both days
  included) is ``>= start AND < end + 1``. ``SELECT <columns or *> FROM <table> WHERE ... [ORDER BY ...]``
  with every identifier quoted (:meth:`~airflow_mlops.sql.dialects.SqlDialect.quote_name`);
- **a query** with placeholders ``{{ ds }}`` (the logical date: the day, or the window's last day),
  ``{{ window_start }}`` (the first day, included) and ``{{ window_end }}`` (the day after the last one,
  excluded): ``WHERE d >= {{ window_start }} AND d < {{ window_end }}``. Spaces inside the braces are
  optional. Each placeholder becomes the driver's placeholder (``%s`` / ``?``) and its value is bound;
  values are never formatted into the SQL. Write the placeholders bare, not inside quotes. Any other
  ``{{ ... }}`` is a :class:`~airflow_mlops.sql.errors.SqlSourceError` naming it. With the ``format``
  parameter style a literal ``%`` in the query is sent as ``%%`` (the driver turns it back into ``%``).
  ``columns`` / ``order_by`` wrap the query: ``SELECT <columns> FROM (<query>) AS mlops_source ORDER BY``.

Bound day values are :class:`datetime.date` (ISO text for SQLite).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from airflow_mlops.sql.dialects import SqlDialect, detect_dialect, split_name
from airflow_mlops.sql.errors import SqlSourceError
from airflow_mlops.store.dates import DateLike, logical_date

#: The placeholders a query may use.
PLACEHOLDERS = ("ds", "window_start", "window_end")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_QUOTED = re.compile(r"""(['"])\s*\{\{[^{}]*\}\}\s*\1""")


class BoundQuery(NamedTuple):
    """SQL text with the driver's placeholders, and the values they bind (a tuple, in order)."""

    sql: str
    params: tuple[Any, ...]


@dataclass(frozen=True)
class Window:
    """Days ``start`` .. ``end``, both included; ``ds`` is ``end`` (the logical date of a window)."""

    start: dt.date
    end: dt.date

    @classmethod
    def of(cls, start: DateLike, end: DateLike) -> Window:
        s, e = logical_date(start), logical_date(end)
        if s > e:
            raise SqlSourceError(f"window start {s} is after its end {e}")
        return cls(s, e)

    @property
    def end_exclusive(self) -> dt.date:
        return self.end + dt.timedelta(days=1)


@dataclass(frozen=True)
class SqlSource:
    """A table with a date column, or a templated query (see the module docstring).

    :param table: table name, ``schema.table`` or a tuple of name parts (for parts containing dots).
    :param date_column: the table's ``DATE`` or ``TIMESTAMP`` column that places a row on a day.
    :param query: a ``SELECT`` with ``{{ ds }}`` / ``{{ window_start }}`` / ``{{ window_end }}``.
    :param columns: the columns to select (all when empty).
    :param order_by: columns to order the rows by (ascending), e.g. for reproducible reads.
    :param name: what messages call the source (default ``table <name>`` / ``query``).
    """

    table: str | tuple[str, ...] | None = None
    date_column: str | None = None
    query: str | None = None
    columns: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # tuples, so a source is hashable and cannot change under a caller
        for attr in ("columns", "order_by"):
            value = getattr(self, attr)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, attr, tuple(value or ()))
        if isinstance(self.table, list):
            object.__setattr__(self, "table", tuple(self.table))
        if (self.table is None) == (self.query is None):
            raise SqlSourceError("a SQL source is either a table (with date_column) or a query, not "
                                 + ("both" if self.table is not None else "neither"))
        if self.table is not None:
            split_name(self.table)
            if not self.date_column:
                raise SqlSourceError(f"SQL {self.label()}: date_column is required (the column that "
                                     "places a row on a day)")
        else:
            if self.date_column:
                raise SqlSourceError("a SQL query source has no date_column: filter by day in the query with "
                                     "{{ ds }} or {{ window_start }} / {{ window_end }}")
            if not isinstance(self.query, str) or not self.query.strip():
                raise SqlSourceError("the SQL query is empty")
            template_names(self.query)  # unknown placeholders fail here, before any connection
        for col in (*self.columns, *self.order_by, *((self.date_column,) if self.date_column else ())):
            if not isinstance(col, str) or not col or "\x00" in col:
                raise SqlSourceError(f"SQL source {self.label()}: column name {col!r} is empty or has a NUL "
                                     "character")
        if len(set(self.columns)) != len(self.columns):
            raise SqlSourceError(f"SQL source {self.label()}: columns {list(self.columns)} repeat a name")

    # ------------------------------------------------------------------------------------------
    def label(self) -> str:
        """What messages call this source: ``table "sales"."orders"``-like text or ``query``."""
        if self.name:
            return self.name
        if self.table is not None:
            return "table " + ".".join(split_name(self.table))
        return "query"

    @property
    def is_table(self) -> bool:
        return self.table is not None

    def for_day(self, ds: DateLike, dialect: SqlDialect | Any) -> BoundQuery:
        """The SQL and parameters of the rows of day ``ds``. ``dialect``: a :class:`SqlDialect`, a hook or a
        connection type."""
        day = logical_date(ds)
        return self._build(Window(day, day), _as_dialect(dialect))

    def for_window(self, start: DateLike, end: DateLike, dialect: SqlDialect | Any) -> BoundQuery:
        """The SQL and parameters of the rows of days ``start`` .. ``end`` (both included)."""
        return self._build(Window.of(start, end), _as_dialect(dialect))

    def _build(self, window: Window, d: SqlDialect) -> BoundQuery:
        order = (" ORDER BY " + ", ".join(d.quote(c) for c in self.order_by)) if self.order_by else ""
        cols = ", ".join(d.quote(c) for c in self.columns) if self.columns else "*"
        if self.table is not None:
            assert self.date_column is not None
            col = d.quote(self.date_column)
            text = (f"SELECT {d.escape_text(cols)} FROM {d.escape_text(d.quote_name(self.table))} "
                    f"WHERE {d.escape_text(col)} >= {d.placeholder} AND {d.escape_text(col)} < {d.placeholder}"
                    f"{d.escape_text(order)}")
            return BoundQuery(text, (d.date_param(window.start), d.date_param(window.end_exclusive)))
        assert self.query is not None
        values = {"ds": window.end, "window_start": window.start, "window_end": window.end_exclusive}
        params: list[Any] = []
        pieces: list[str] = []
        pos = 0
        body = self.query.strip().rstrip(";").rstrip()
        for m in _TEMPLATE.finditer(body):
            pieces.append(d.escape_text(body[pos:m.start()]))
            pieces.append(d.placeholder)
            params.append(d.date_param(values[m.group(1).strip()]))
            pos = m.end()
        pieces.append(d.escape_text(body[pos:]))
        text = "".join(pieces)
        if self.columns or self.order_by:
            text = f"SELECT {d.escape_text(cols)} FROM ({text}) AS mlops_source{d.escape_text(order)}"
        return BoundQuery(text, tuple(params))


def template_names(query: str) -> list[str]:
    """The placeholder names a query uses, in order; :class:`SqlSourceError` naming an unknown one, or a
    placeholder written inside quotes (it would be a string literal, not a bound value)."""
    names = []
    for m in _TEMPLATE.finditer(query):
        name = m.group(1).strip()
        if name not in PLACEHOLDERS:
            raise SqlSourceError(f"unknown placeholder {m.group(0)!r} in the SQL query; the query may use "
                                 + ", ".join("{{ " + p + " }}" for p in PLACEHOLDERS))
        names.append(name)
    quoted = _QUOTED.search(query)
    if quoted:
        raise SqlSourceError(f"placeholder {quoted.group(0)!r} is inside quotes in the SQL query; write it bare "
                             "(its value is bound as a parameter, e.g. WHERE d = {{ ds }})")
    rest = _TEMPLATE.sub("", query)
    if "{{" in rest or "}}" in rest:
        raise SqlSourceError("the SQL query has an unbalanced '{{' or '}}'")
    return names


def _as_dialect(dialect: SqlDialect | Any) -> SqlDialect:
    return dialect if isinstance(dialect, SqlDialect) else detect_dialect(dialect)


def quoted_columns(dialect: SqlDialect, columns: Sequence[str]) -> str:
    """``"a", "b"``: a column list, each name quoted."""
    return ", ".join(dialect.quote(c) for c in columns)
