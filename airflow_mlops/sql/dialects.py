"""Which database a hook talks to: its dialect name, identifier quoting and the driver's parameter style.

Built on what Airflow's ``common.sql`` already knows about a connection rather than a second registry:

- the **dialect name** from the hook's class ``conn_type`` (``postgres``, ``sqlite``, ``mysql``, ...) or,
  failing that, ``DbApiHook.dialect_name`` (the SQLAlchemy dialect of the connection URI);
- the **quote characters** from ``DbApiHook.escape_word_format`` (``"{}"`` by default, settable per
  connection with the extra ``escape_word_format``; MySQL and BigQuery connections that do not set it get
  backticks);
- the **placeholder** from ``DbApiHook.placeholder`` (``%s`` by default, ``?`` for SQLite, settable per
  connection with the extra ``placeholder``).

What ``common.sql`` lacks is added here: ``Dialect.escape_word`` of ``common.sql`` wraps a word in the quote
characters only when it thinks it must, and never doubles a quote character inside the name, so a name such
as ``my "odd" col`` would break out of its quotes. :meth:`SqlDialect.quote` always quotes, doubles the closing
quote character inside the name and refuses a NUL character; :meth:`SqlDialect.quote_name` splits
``schema.table`` on its dots and quotes each part (pass a tuple of parts for names that contain a dot).

Dialect names (:data:`KNOWN_DIALECTS`): ``postgres`` (also ``postgresql``), ``redshift``, ``sqlite``,
``mysql`` (also ``mariadb``), ``snowflake``, ``bigquery`` (also ``google_cloud_platform``, ``gcpbigquery``),
``trino``. ``postgres`` and ``sqlite`` are tested against real databases; the others have their documented
quoting, parameter style and type names but no test database here. Any other connection type works with
the generic defaults (double quotes, ``%s`` or the hook's own placeholder).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_mlops.sql.errors import SqlSourceError

#: Canonical dialect names, and the connection types / SQLAlchemy dialect names that mean them.
KNOWN_DIALECTS: dict[str, tuple[str, ...]] = {
    "postgres": ("postgres", "postgresql"),
    "redshift": ("redshift",),
    "sqlite": ("sqlite",),
    "mysql": ("mysql", "mariadb"),
    "snowflake": ("snowflake",),
    "bigquery": ("bigquery", "google_cloud_platform", "gcpbigquery"),
    "trino": ("trino",),
}
_ALIASES = {alias: name for name, aliases in KNOWN_DIALECTS.items() for alias in aliases}

#: The DB-API ``paramstyle`` of each driver placeholder common.sql allows.
_PARAMSTYLES = {"%s": "format", "?": "qmark"}

#: Defaults when no hook says otherwise: (open quote, close quote, placeholder).
_DEFAULTS: dict[str, tuple[str, str, str]] = {
    "postgres": ('"', '"', "%s"),  # psycopg2 / psycopg 3
    "redshift": ('"', '"', "%s"),  # redshift_connector / psycopg2
    "sqlite": ('"', '"', "?"),  # sqlite3
    "mysql": ("`", "`", "%s"),  # mysqlclient / PyMySQL
    "snowflake": ('"', '"', "%s"),  # snowflake-connector (pyformat)
    "bigquery": ("`", "`", "%s"),  # google.cloud.bigquery.dbapi (pyformat)
    "trino": ('"', '"', "?"),  # trino (qmark)
}
_GENERIC = ('"', '"', "%s")


@dataclass(frozen=True)
class SqlDialect:
    """How to write SQL for one database: quoting and parameter placeholders.

    :param name: canonical dialect name (a key of :data:`KNOWN_DIALECTS`, or the connection type as given).
    :param quote_open: / :param quote_close: the identifier quote characters.
    :param placeholder: the driver's positional placeholder, ``%s`` (``format``) or ``?`` (``qmark``).
    """

    name: str
    quote_open: str = '"'
    quote_close: str = '"'
    placeholder: str = "%s"

    def __post_init__(self) -> None:
        if self.placeholder not in _PARAMSTYLES:
            raise SqlSourceError(f"placeholder {self.placeholder!r} is not supported; use one of "
                                 f"{sorted(_PARAMSTYLES)}")

    @property
    def paramstyle(self) -> str:
        """The DB-API ``paramstyle`` of :attr:`placeholder`: ``format`` or ``qmark``."""
        return _PARAMSTYLES[self.placeholder]

    def quote(self, identifier: str) -> str:
        """One identifier, always quoted: the closing quote character inside it doubled (``"a""b"``,
        ```a``b```); :class:`SqlSourceError` for an empty name or one with a NUL character."""
        if not isinstance(identifier, str) or not identifier:
            raise SqlSourceError(f"identifier {identifier!r} must be a non-empty string")
        if "\x00" in identifier:
            raise SqlSourceError(f"identifier {identifier!r} contains a NUL character")
        return self.quote_open + identifier.replace(self.quote_close, self.quote_close * 2) + self.quote_close

    def quote_name(self, name: str | Sequence[str]) -> str:
        """A possibly qualified name (``schema.table``, ``db.schema.table``) quoted part by part. A string
        is split on every dot; pass a tuple of parts for a name whose parts contain dots."""
        parts = split_name(name)
        return ".".join(self.quote(p) for p in parts)

    def escape_text(self, sql: str) -> str:
        """``sql`` text safe to send with parameters: with the ``format`` style a literal ``%`` is ``%%``."""
        return sql.replace("%", "%%") if self.paramstyle == "format" else sql

    def date_param(self, day: dt.date) -> Any:
        """A day as a bound value: a :class:`datetime.date`, or its ISO text for SQLite (which stores dates
        and timestamps as ISO text, so text comparison orders them)."""
        return day.isoformat() if self.name == "sqlite" else day


def split_name(name: str | Sequence[str]) -> tuple[str, ...]:
    """The parts of a qualified name: a string split on its dots, a sequence of parts as is."""
    parts = tuple(name.split(".")) if isinstance(name, str) else tuple(name)
    if not parts or any(not isinstance(p, str) or not p for p in parts):
        raise SqlSourceError(f"table name {name!r} has an empty part")
    for p in parts:
        if "\x00" in p:
            raise SqlSourceError(f"identifier {p!r} contains a NUL character")
    return parts


def canonical_name(conn_type: str) -> str:
    """The canonical dialect name of a connection type or SQLAlchemy dialect name (``postgresql`` ->
    ``postgres``, ``postgresql+psycopg2`` -> ``postgres``); unknown names are returned lower-cased."""
    base = conn_type.strip().lower().split("+")[0]
    return _ALIASES.get(base, base)


def dialect_for(conn_type: str, *, escape_word_format: str | None = None,
                placeholder: str | None = None) -> SqlDialect:
    """The dialect of a connection type, with the quote characters of ``escape_word_format`` (``"{}"``)
    and ``placeholder`` when given (as a hook knows them), else the dialect's defaults."""
    name = canonical_name(conn_type)
    q_open, q_close, default_placeholder = _DEFAULTS.get(name, _GENERIC)
    if escape_word_format:
        if escape_word_format.count("{}") != 1:
            raise SqlSourceError(f"escape_word_format {escape_word_format!r} must contain '{{}}' once")
        q_open, q_close = escape_word_format.split("{}")
        if not q_open or not q_close:
            raise SqlSourceError(f"escape_word_format {escape_word_format!r} must quote on both sides")
    return SqlDialect(name, q_open, q_close, placeholder or default_placeholder)


def detect_dialect(hook: Any) -> SqlDialect:
    """The dialect of a ``common.sql`` ``DbApiHook`` (or a connection type string).

    The name is the hook class's ``conn_type`` (``PostgresHook`` -> ``postgres``, ``SqliteHook`` ->
    ``sqlite``), else ``hook.dialect_name``; quoting from ``hook.escape_word_format`` and the placeholder
    from ``hook.placeholder`` (both honour the connection's extras), else the dialect's defaults."""
    if isinstance(hook, str):
        return dialect_for(hook)
    if isinstance(hook, SqlDialect):
        return hook
    conn_type = getattr(type(hook), "conn_type", None) or getattr(hook, "conn_type", None)
    if not conn_type:
        try:
            conn_type = hook.dialect_name
        except Exception:  # noqa: BLE001 - a hook that cannot tell: generic SQL
            conn_type = None
    if not isinstance(conn_type, str) or not conn_type:
        conn_type = "default"
    name = canonical_name(conn_type)
    escape = _hook_attr(hook, "escape_word_format")
    placeholder = _hook_attr(hook, "placeholder")
    if placeholder not in _PARAMSTYLES:
        placeholder = None
    # common.sql's default escape format is '"{}"' for every hook; keep a dialect's own default (MySQL,
    # BigQuery backticks) unless the connection chose one.
    if escape == '"{}"' and _DEFAULTS.get(name, _GENERIC)[0] != '"':
        extra = _hook_attr(hook, "connection_extra")
        if not (isinstance(extra, dict) and extra.get("escape_word_format")):
            escape = None
    return dialect_for(name, escape_word_format=escape if isinstance(escape, str) else None,
                       placeholder=placeholder if isinstance(placeholder, str) else None)


def _hook_attr(hook: Any, attr: str) -> Any:
    try:
        return getattr(hook, attr, None)
    except Exception:  # noqa: BLE001 - a property that needs the connection, absent here
        return None
