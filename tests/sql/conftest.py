"""Fixtures of the SQL-data tests: a real PostgreSQL server and SQLite file databases, reached through Airflow
connections given as ``AIRFLOW_CONN_<ID>`` environment variables (URI form).

The Postgres server is a private cluster on a free 127.0.0.1 port in a temp dir, started with the functions
of ``scripts/celery_multiworker.py`` (``initdb`` + ``postgres`` from Debian's binaries; as the
``postgres``/``nobody`` user when the tests run as root). Debian's ``postgresql`` is installed with
``apt-get`` when missing; the Postgres tests are skipped only when that is impossible.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from churn_tables import CHURN_DAYS, CHURN_ROWS, PG_CONN_ID

REPO = Path(__file__).resolve().parents[2]


def _script() -> Any:
    """``scripts/celery_multiworker.py`` as a module (its Postgres helpers)."""
    name = "_mlops_celery_multiworker"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "celery_multiworker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _ensure_postgresql(script: Any) -> Path:
    bindir = script.pg_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() == 0:
        apt = ["apt-get"]
    elif shutil.which("sudo"):
        apt = ["sudo", "-n", "apt-get"]
    else:
        pytest.skip("Debian postgresql is not installed and this user cannot install it (not root, no sudo)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([*apt, "update", "-qq"], [*apt, "install", "-y", "-qq", "postgresql"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"could not install postgresql ({' '.join(cmd)}: {proc.stderr[-500:]})")
    bindir = script.pg_bindir()
    if bindir is None:
        pytest.skip("postgresql still missing after apt-get install")
    return bindir


class PgServer:
    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlparse(url.replace("postgresql+psycopg2://", "postgresql://"))
        self.host, self.port = parsed.hostname or "127.0.0.1", int(parsed.port or 5432)
        self.user, self.dbname = parsed.username or "airflow", parsed.path.lstrip("/") or "airflow"

    def connect(self, **kw: Any) -> Any:
        """A psycopg2 connection of the test's own (setup, checks), autocommit."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=self.dbname, **kw)
        conn.autocommit = True
        return conn


@contextlib.contextmanager
def _connection_env(conn_id: str, uri: str) -> Iterator[None]:
    """An Airflow connection ``conn_id`` given by its ``AIRFLOW_CONN_<ID>`` variable, restored afterwards."""
    env = f"AIRFLOW_CONN_{conn_id.upper()}"
    old = os.environ.get(env)
    os.environ[env] = uri
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = old


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    pytest.importorskip("psycopg2")
    pytest.importorskip("airflow.providers.postgres")
    script = _script()
    bindir = _ensure_postgresql(script)
    work = Path(tempfile.mkdtemp(prefix="mlops-sql-test-"))
    stack = script.Stack(work)
    try:
        url = script.start_postgres(stack, bindir)
        server = PgServer(url)
        with _connection_env(PG_CONN_ID, f"postgres://{server.user}@{server.host}:{server.port}/{server.dbname}"):
            yield server
    finally:
        stack.stop_all()
        with contextlib.suppress(Exception):
            shutil.rmtree(getattr(stack, "pgdir", work / "none"), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def pg(pg_server: PgServer) -> Iterator[Any]:
    """A psycopg2 autocommit connection of the test's own."""
    conn = pg_server.connect()
    try:
        yield conn
    finally:
        conn.close()


def _psycopg2_hook_class() -> type:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    class Psycopg2PostgresHook(PostgresHook):  # type: ignore[misc]
        """The ``PostgresHook`` of an installation without psycopg 3 (or with SQLAlchemy 1.4): psycopg2
        connections, here with a cursor class that records ``copy_expert`` calls."""

        copy_calls: list[str] = []

        def get_conn(self) -> Any:
            import psycopg2
            import psycopg2.extensions

            calls = self.copy_calls

            class SpyCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
                def copy_expert(self, sql: str, file: Any, size: int = 8192) -> Any:
                    calls.append(sql)
                    return super().copy_expert(sql, file, size)

            c = self.connection
            return psycopg2.connect(host=c.host, port=c.port, user=c.login, dbname=c.schema,
                                    cursor_factory=SpyCursor)

    return Psycopg2PostgresHook


@pytest.fixture(params=["psycopg", "psycopg2"])
def pg_hook(request: pytest.FixtureRequest, pg_server: PgServer) -> Any:
    """A ``PostgresHook`` on the test server: as installed (psycopg 3 with SQLAlchemy 2), and with psycopg2."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    if request.param == "psycopg2":
        cls = _psycopg2_hook_class()
        cls.copy_calls = []
        return cls(postgres_conn_id=PG_CONN_ID)
    hook = PostgresHook(postgres_conn_id=PG_CONN_ID)
    driver = type(hook.get_conn()).__module__.split(".")[0]
    if driver != "psycopg":
        pytest.skip(f"PostgresHook connects with {driver} here, covered by the psycopg2 case")
    return hook


@pytest.fixture
def table_name() -> str:
    """A fresh table name with mixed case, spaces, double quotes and a percent sign."""
    return f'Preds "{uuid.uuid4().hex[:8]}" Mixed 100%'


@pytest.fixture
def sqlite_hook(tmp_path: Path) -> Iterator[Any]:
    """A ``SqliteHook`` on a file database of the test (``AIRFLOW_CONN_MLOPS_SQL_SQLITE``)."""
    pytest.importorskip("airflow.providers.sqlite")
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    db = tmp_path / "data.db"
    with _connection_env("mlops_sql_sqlite", "sqlite://" + urllib.parse.quote(str(db), safe="")):
        hook = SqliteHook(sqlite_conn_id="mlops_sql_sqlite")
        hook.db_path = db  # for the tests' own connections
        yield hook


@pytest.fixture(scope="session")
def churn_tables(pg_server: Any) -> dict[str, str]:
    """``churn_<id>`` (features, an ``event_date`` per row) and ``labels_<id>`` (late labels, ``label_date``)."""
    import pyarrow as pa
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from airflow_mlops.demo.data import churn_day
    from airflow_mlops.sql.write import write_predictions

    hook = PostgresHook(postgres_conn_id=PG_CONN_ID)
    suffix = uuid.uuid4().hex[:8]
    names = {"events": f"churn_{suffix}", "labels": f"labels_{suffix}"}
    for i, day in enumerate(CHURN_DAYS):
        frame = churn_day(day, rows=CHURN_ROWS, seed=i, drift=1.0 if day == CHURN_DAYS[-1] else 0.0)
        write_predictions(hook, names["events"], pa.Table.from_pandas(frame.drop(columns=["churned"]),
                                                                       preserve_index=False), day,
                          date_column="event_date")
        write_predictions(hook, names["labels"], pa.Table.from_pandas(frame[["customer_id", "churned"]],
                                                                       preserve_index=False), day,
                          date_column="label_date")
    # training reads features and label together: a view joins them
    conn = pg_server.connect()
    with conn.cursor() as cur:
        cur.execute(f'CREATE VIEW "train_{suffix}" AS SELECT e.*, l.churned FROM "{names["events"]}" e '
                    f'JOIN "{names["labels"]}" l ON l.customer_id = e.customer_id AND l.label_date = e.event_date')
    conn.close()
    names["train"] = f"train_{suffix}"
    names["preds"] = f"preds_{suffix}"
    return names


