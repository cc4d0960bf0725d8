"""Async trigger polling a version's approval status in the registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal, NotRequired, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_mlops.hooks.registry import ModelRegistryHook

# The ``# type: ignore[no-untyped-call]`` below: airflow's BaseTrigger.__init__ and TriggerEvent.__init__
# are unannotated (a gap in airflow's own typing).


class ApprovalEvent(TypedDict):
    """The event of :class:`ApprovalTrigger`: ``decided`` (with ``verdict``, the version's approval record:
    ``status`` ``approved``, ``rejected`` or ``not_required``, ``by``, ``at``, ``reason``) or ``error`` (with
    ``message``)."""

    status: Literal["decided", "error"]
    verdict: NotRequired[dict[str, Any]]
    message: NotRequired[str]


class ApprovalTrigger(BaseTrigger):
    """Fires once the approval of ``model`` v``version`` is decided (approved, rejected, not required)."""

    def __init__(self, model: str, version: int, storage_uri: str | None = None, aws_conn_id: str | None = None,
                 poke_interval: float = 300.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.model, self.version = model, int(version)
        self.storage_uri, self.aws_conn_id, self.poke_interval = storage_uri, aws_conn_id, poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("airflow_mlops.triggers.registry.ApprovalTrigger", {
            "model": self.model, "version": self.version, "storage_uri": self.storage_uri,
            "aws_conn_id": self.aws_conn_id, "poke_interval": self.poke_interval})

    def _verdict(self) -> dict[str, Any]:
        """``{"status", "by", "at", "reason"}`` of the version's approval (``pending`` until someone decides)."""
        return ModelRegistryHook(self.storage_uri, self.aws_conn_id).get_conn().approval(self.model, self.version)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                verdict = await asyncio.to_thread(self._verdict)
            except Exception as e:
                yield TriggerEvent(ApprovalEvent(status="error", message=str(e)))  # type: ignore[no-untyped-call]
                return
            if verdict.get("status") in ("approved", "rejected", "not_required"):
                yield TriggerEvent(ApprovalEvent(status="decided", verdict=verdict))  # type: ignore[no-untyped-call]
                return
            await asyncio.sleep(self.poke_interval)
