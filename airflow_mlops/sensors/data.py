"""DataPartitionSensor: wait for the day's input partition (deferrable)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


def _default_deferrable() -> bool:
    try:
        from airflow.sdk import conf

        return conf.getboolean("operators", "default_deferrable", fallback=False)
    except Exception:  # pragma: no cover
        return False


class DataPartitionSensor(BaseSensorOperator):
    """Wait until ``<dataset>/ds=<logical date>/`` holds data files.

    Give ``config_path`` (the model's input dataset), ``dataset`` (a name under ``<root>/data/``) or
    ``prefix`` (any partitioned prefix of the store, e.g. ``predictions/churn``). With ``deferrable=True`` (default: ``[operators] default_deferrable``) the wait
    runs in the triggerer and holds no worker slot. When ``timeout`` passes the task fails with a
    message naming the partition and the deadline, so a missing day raises an alert instead of a
    silent skip.

    Example::

        DataPartitionSensor(task_id="wait_for_data", config_path="dags/configs/churn.yaml",
                            poke_interval=300, timeout=6 * 3600, deferrable=True)
    """

    template_fields: Sequence[str] = ("config_path", "dataset", "prefix", "ds", "storage_uri")
    ui_color = "#f0f0f0"

    def __init__(self, *, config_path: str | None = None, dataset: str | None = None, prefix: str | None = None,
                 ds: str | None = None, fmt: str = "parquet", storage_uri: str | None = None,
                 aws_conn_id: str | None = None, deferrable: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (config_path or dataset or prefix):
            raise ValueError("DataPartitionSensor needs config_path=, dataset= or prefix=")
        self.config_path, self.dataset, self.prefix, self.ds, self.fmt = config_path, dataset, prefix, ds, fmt
        self.storage_uri, self.aws_conn_id = storage_uri, aws_conn_id
        self.deferrable = _default_deferrable() if deferrable is None else deferrable

    def _dataset(self):
        from airflow_mlops.hooks.datasets import Dataset
        from airflow_mlops.hooks.storage import ArtifactStore

        store = ArtifactStore(self.storage_uri, conn_id=self.aws_conn_id)
        if self.prefix:
            return Dataset(store, self.prefix, self.fmt)
        if self.config_path:
            from airflow_mlops.ml.config import load_model_config

            return Dataset.from_config(load_model_config(self.config_path), store)
        return Dataset.for_name(store, self.dataset, self.fmt)

    def _ds(self, context: Context) -> str:
        from airflow_mlops.operators.base import context_ds

        return str(self.ds or context_ds(context))[:10]

    def poke(self, context: Context) -> bool:
        d = self._dataset()
        found = d.exists(self._ds(context))
        self.log.info("partition %s: %s", d.uri(self._ds(context)), "present" if found else "not yet")
        return found

    def execute(self, context: Context) -> Any:
        if not self.deferrable or self.poke(context):
            return super().execute(context)
        from airflow_mlops.triggers.storage import DataPartitionTrigger

        d = self._dataset()
        self.defer(
            trigger=DataPartitionTrigger(storage_uri=d.store.root, prefix=d.prefix, ds=self._ds(context), fmt=d.fmt,
                                         aws_conn_id=self.aws_conn_id, poke_interval=float(self.poke_interval)),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=float(self.timeout)),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        if not event or event.get("status") != "success":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"waiting for the partition failed: {(event or {}).get('message')}")
        self.log.info("partition ds=%s arrived", event.get("ds"))
