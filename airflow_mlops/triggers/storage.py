"""Async triggers polling the artifact store (run in the triggerer; storage calls go to a thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal, NotRequired, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

# The ``# type: ignore[no-untyped-call]`` below: airflow's BaseTrigger.__init__ and TriggerEvent.__init__
# are unannotated (a gap in airflow's own typing).


class DataPartitionEvent(TypedDict):
    """The event of :class:`DataPartitionTrigger`: ``success`` (with ``ds``), ``timeout`` (with ``ds`` and
    ``deadline``) or ``error`` (with ``message``)."""

    status: Literal["success", "timeout", "error"]
    ds: NotRequired[str]
    deadline: NotRequired[str | None]
    message: NotRequired[str]


class StorageKeyEvent(TypedDict):
    """The event of :class:`StorageKeyTrigger`: ``success`` (with ``key`` and ``content``: the key's JSON,
    or True when not read) or ``error`` (with ``message``)."""

    status: Literal["success", "error"]
    key: NotRequired[str]
    content: NotRequired[Any]
    message: NotRequired[str]


class DataPartitionTrigger(BaseTrigger):
    """Fires when the partition ``<dataset>/ds=<ds>/`` holds at least one data file (or, for SQL data, when
    the day has rows).

    :param storage_uri: root URI of the dataset's store.
    :param prefix: the dataset's key prefix in that store.
    :param ds: the partition date (YYYY-MM-DD).
    :param fmt: ``parquet`` or ``csv``.
    :param aws_conn_id: Airflow AWS connection for ``s3://``.
    :param poke_interval: seconds between checks.
    :param deadline: ISO timestamp (UTC when naive) of the freshness deadline: once it passes without
        the partition, the trigger fires ``{"status": "timeout", "deadline": ...}``.
    :param sql: data in SQL instead (``{"conn_id", "table", "date_column"}`` or ``{"conn_id", "query"}``): fires
        when the day has rows (``storage_uri`` and ``prefix`` are then unused).
    """

    def __init__(self, storage_uri: str, prefix: str, ds: str, fmt: str = "parquet",
                 aws_conn_id: str | None = None, poke_interval: float = 60.0, deadline: str | None = None,
                 sql: dict[str, Any] | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.storage_uri, self.prefix, self.ds, self.fmt = storage_uri, prefix, ds, fmt
        self.aws_conn_id, self.poke_interval, self.deadline = aws_conn_id, poke_interval, deadline
        self.sql = sql

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airflow_mlops.triggers.storage.DataPartitionTrigger", {
            "storage_uri": self.storage_uri, "prefix": self.prefix, "ds": self.ds, "fmt": self.fmt,
            "aws_conn_id": self.aws_conn_id, "poke_interval": self.poke_interval, "deadline": self.deadline,
            "sql": self.sql})

    def _deadline_passed(self) -> bool:
        if not self.deadline:
            return False
        import datetime as dt

        deadline = dt.datetime.fromisoformat(self.deadline)
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=dt.UTC)
        return dt.datetime.now(dt.UTC) >= deadline

    def _exists(self) -> bool:
        if self.sql is not None:
            from airflow_mlops.sql.dataset import SqlDataset
            from airflow_mlops.sql.source import SqlSource

            fields = {k: v for k, v in self.sql.items() if k != "conn_id"}
            return SqlDataset(self.sql["conn_id"], SqlSource(**fields)).exists(self.ds)
        from airflow_mlops.hooks.storage import ArtifactStoreHook
        from airflow_mlops.store.datasets import Dataset

        store = ArtifactStoreHook(self.storage_uri, self.aws_conn_id).get_conn()
        return Dataset(store, self.prefix, self.fmt).exists(self.ds)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                if await asyncio.to_thread(self._exists):
                    yield TriggerEvent(DataPartitionEvent(status="success", ds=self.ds))  # type: ignore[no-untyped-call]
                    return
                if self._deadline_passed():
                    yield TriggerEvent(DataPartitionEvent(status="timeout", ds=self.ds, deadline=self.deadline))  # type: ignore[no-untyped-call]
                    return
            except Exception as e:  # report, let the sensor fail with the message
                yield TriggerEvent(DataPartitionEvent(status="error", message=str(e)))  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poke_interval)


class StorageKeyTrigger(BaseTrigger):
    """Fires when ``key`` exists in the store rooted at ``storage_uri``; the event carries its JSON
    content when ``read_json`` (e.g. a drift verdict).
    """

    def __init__(self, storage_uri: str, key: str, aws_conn_id: str | None = None, poke_interval: float = 60.0,
                 read_json: bool = True) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.storage_uri, self.key, self.aws_conn_id = storage_uri, key, aws_conn_id
        self.poke_interval, self.read_json = poke_interval, read_json

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airflow_mlops.triggers.storage.StorageKeyTrigger", {
            "storage_uri": self.storage_uri, "key": self.key, "aws_conn_id": self.aws_conn_id,
            "poke_interval": self.poke_interval, "read_json": self.read_json})

    def _check(self) -> tuple[bool, Any]:
        from airflow_mlops.hooks.storage import ArtifactStoreHook
        from airflow_mlops.store.artifacts import ArtifactNotFoundError

        store = ArtifactStoreHook(self.storage_uri, self.aws_conn_id).get_conn()
        try:
            return True, store.read_json(self.key) if self.read_json else store.exists(self.key) or None
        except ArtifactNotFoundError:
            return False, None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                found, content = await asyncio.to_thread(self._check)
                if found:
                    yield TriggerEvent(StorageKeyEvent(status="success", key=self.key, content=content))  # type: ignore[no-untyped-call]
                    return
            except Exception as e:
                yield TriggerEvent(StorageKeyEvent(status="error", message=str(e)))  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poke_interval)
