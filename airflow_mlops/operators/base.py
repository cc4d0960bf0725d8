"""Shared plumbing of the airflow-mlops operators: config, store, registry, logical date, context."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_mlops.hooks.registry import ModelRegistry
from airflow_mlops.hooks.storage import ArtifactStore

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.ml.config import ModelConfig


class MLOpsBaseOperator(BaseOperator):
    """Base of the airflow-mlops operators.

    :param config_path: the model's YAML config (``dags/configs/<model>.yaml``). (templated)
    :param ds: logical date ``YYYY-MM-DD`` of the partition to work on; default the run's ``ds``. (templated)
    :param storage_uri: artifact store root; default ``[mlops] storage_uri``. (templated)
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots; default ``[mlops] storage_conn_id``.
    """

    template_fields: Sequence[str] = ("config_path", "ds", "storage_uri")
    ui_color = "#d6ecff"

    def __init__(self, *, config_path: str, ds: str | None = None, storage_uri: str | None = None,
                 aws_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config_path = config_path
        self.ds = ds
        self.storage_uri = storage_uri
        self.aws_conn_id = aws_conn_id

    @cached_property
    def config(self) -> ModelConfig:
        from airflow_mlops.ml.config import load_model_config

        return load_model_config(self.config_path)

    @cached_property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.storage_uri, conn_id=self.aws_conn_id)

    @cached_property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.store)

    def logical_ds(self, context: Context) -> str:
        return str(self.ds or context_ds(context))[:10]

    @staticmethod
    def run_info(context: Context) -> dict[str, Any]:
        """dag_id, run_id, task_id, try_number and logical date of the running task."""
        ti = context["ti"]
        logical = context.get("logical_date")
        return {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
                "try_number": getattr(ti, "try_number", None),
                "logical_date": logical.isoformat() if logical is not None else None,
                "hostname": os.uname().nodename}


def context_ds(context: Context) -> str:
    """The run's date: ``ds`` for scheduled runs; for asset-triggered runs (no logical date in
    Airflow 3) the ``ds`` carried by the triggering asset event, else the run's ``run_after`` date."""
    ds = context.get("ds")
    if ds:
        return str(ds)[:10]
    events = context.get("triggering_asset_events") or {}
    for evs in events.values():
        for ev in evs:
            extra = getattr(ev, "extra", None) or {}
            if extra.get("ds"):
                return str(extra["ds"])[:10]
    run = context.get("dag_run")
    when = getattr(run, "run_after", None) or getattr(run, "start_date", None)
    if when is None:
        raise ValueError("cannot tell the logical date of this run; pass ds=")
    return when.date().isoformat()


def fail(message: str) -> None:
    """Fail the task without retries (a gate or a bad input: retrying cannot help)."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)
