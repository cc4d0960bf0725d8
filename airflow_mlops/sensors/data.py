"""DataPartitionSensor: wait for the day's input partition (deferrable)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_mlops.store.dates import logical_ds

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.store.datasets import Dataset
    from airflow_mlops.triggers.storage import DataPartitionEvent


class PartitionNotArrived(AirflowSensorTimeout):
    """The partition did not arrive in time; the freshness alert has already been raised."""


def default_deferrable() -> bool:
    try:
        from airflow.sdk import conf

        return conf.getboolean("operators", "default_deferrable", fallback=False)
    except Exception:  # pragma: no cover
        return False


class DataPartitionSensor(BaseSensorOperator):
    """Wait until ``<dataset>/ds=<logical date>/`` holds data files.

    Give ``config_path`` (with ``location``: the model's ``input`` dataset (default), ``scoring``
    dataset, ``ground_truth`` or ``predictions``, as :class:`~airflow_mlops.config.locations.Locations`
    resolves them, so ``data.uri`` is honoured), ``dataset`` (a name under ``<root>/data/``) or
    ``prefix`` (any partitioned prefix of the store, e.g. ``predictions/churn``). With ``deferrable=True``
    (default: ``[operators] default_deferrable``) the wait
    runs in the triggerer and holds no worker slot. When ``timeout`` passes the task fails with a
    message naming the partition and the deadline, so a missing day raises an alert instead of a
    silent skip.

    Freshness deadline: with ``deadline_hours`` the sensor also gives up at that many hours after the
    end of the logical day (``monitoring.freshness_deadline_hours`` in the DAG factory), whatever
    ``timeout`` says. On either timeout, when a model config is known (``alert_config_path``, else
    ``config_path``), a ``freshness`` alert is raised through :func:`airflow_mlops.alerts.delivery.raise_alert`
    (once per model and day) *before* ``AirflowSensorTimeout`` fails the task.

    Example::

        DataPartitionSensor(task_id="wait_for_data", config_path="dags/configs/churn.yaml",
                            poke_interval=300, timeout=30 * 3600, deadline_hours=6, deferrable=True)
    """

    template_fields: Sequence[str] = ("config_path", "dataset", "prefix", "ds", "storage_uri", "alert_config_path",
                                      "location")
    ui_color = "#f0f0f0"

    def __init__(self, *, config_path: str | None = None, dataset: str | None = None, prefix: str | None = None,
                 ds: str | None = None, fmt: str = "parquet", storage_uri: str | None = None,
                 aws_conn_id: str | None = None, deferrable: bool | None = None, deadline_hours: float | None = None,
                 alert_config_path: str | None = None, location: str = "input", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (config_path or dataset or prefix):
            raise ValueError("DataPartitionSensor needs config_path=, dataset= or prefix=")
        if deadline_hours is not None and float(deadline_hours) < 0:
            raise ValueError(f"DataPartitionSensor deadline_hours must be >= 0, got {deadline_hours}")
        self.config_path, self.dataset, self.prefix, self.ds, self.fmt = config_path, dataset, prefix, ds, fmt
        self.storage_uri, self.aws_conn_id = storage_uri, aws_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.deadline_hours = None if deadline_hours is None else float(deadline_hours)
        self.alert_config_path = alert_config_path
        if location not in ("input", "scoring", "ground_truth", "predictions"):
            raise ValueError(f"DataPartitionSensor location must be input, scoring, ground_truth or predictions, "
                             f"got {location!r}")
        self.location = location

    def _deadline(self, context: Context) -> dt.datetime | None:
        if self.deadline_hours is None:
            return None
        from airflow_mlops.validation.freshness import freshness_deadline

        return freshness_deadline(self._ds(context), self.deadline_hours)

    def _time_out(self, context: Context, reason: str) -> NoReturn:
        """Raise the freshness alert (when a model config is known), then ``AirflowSensorTimeout``."""
        ds = self._ds(context)
        uri = self._dataset().uri(ds)
        message = f"partition {uri} did not arrive: {reason}"
        path = self.alert_config_path or self.config_path
        if path:
            from airflow_mlops.alerts.delivery import Alert, raise_alert
            from airflow_mlops.config.parser import load_model_config
            from airflow_mlops.hooks.storage import ArtifactStoreHook

            config = load_model_config(path)
            deadline = self._deadline(context)
            raise_alert(config, ArtifactStoreHook(self.storage_uri, self.aws_conn_id).get_conn(), Alert(
                model=config.name, check="freshness", window=ds, value="missing",
                threshold=f"by {deadline.isoformat()}" if deadline else f"within {float(self.timeout):g}s of waiting",
                message=f"{message}. Ask the upstream owner to deliver it, then clear {self.task_id} to resume.",
                report_uri=uri, details={"partition_uri": uri, "task_id": self.task_id}), context=context)
        raise PartitionNotArrived(f"{message}; the downstream tasks of {ds} will not run")

    def _dataset(self) -> Dataset:
        from airflow_mlops.config.locations import Locations
        from airflow_mlops.hooks.storage import ArtifactStoreHook
        from airflow_mlops.store.datasets import Dataset

        store = ArtifactStoreHook(self.storage_uri, self.aws_conn_id).get_conn()
        if self.prefix:
            return Dataset(store, self.prefix, self.fmt)
        if self.config_path:
            from airflow_mlops.config.parser import load_model_config

            return Locations(load_model_config(self.config_path), store).dataset(self.location)
        if self.dataset is None:  # __init__ requires config_path, dataset or prefix
            raise ValueError("DataPartitionSensor needs config_path=, dataset= or prefix=")
        return Dataset.for_name(store, self.dataset, self.fmt)

    def _ds(self, context: Context) -> str:
        from airflow_mlops.operators.base import context_ds

        return logical_ds(self.ds or context_ds(context))

    def _limits(self, deadline: dt.datetime | None, *, deferring: bool = False) -> str:
        """How long the sensor waits: the freshness deadline (when set) and the timeout."""
        parts = []
        if deadline is not None:
            parts.append(f"freshness deadline {deadline.isoformat()} ({self.deadline_hours:g} h after the end "
                         "of the logical day)")
        timeout = float(self.timeout)
        if deferring:
            gives_up = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=timeout)
            parts.append(f"timeout {timeout:g}s (at {gives_up.isoformat(timespec='seconds')})")
        else:
            parts.append(f"timeout {timeout:g}s of waiting")
        return "; ".join(parts)

    def poke(self, context: Context) -> bool:
        d = self._dataset()
        found = d.exists(self._ds(context))
        deadline = self._deadline(context)
        if found:
            self.log.info("partition %s: present", d.uri(self._ds(context)))
        else:
            self.log.info("partition %s: not yet (poking every %gs); gives up at the %s",
                          d.uri(self._ds(context)), float(self.poke_interval), self._limits(deadline))
        if not found and deadline is not None and dt.datetime.now(dt.UTC) >= deadline:
            self._time_out(context, f"freshness deadline {deadline.isoformat()} ({self.deadline_hours:g} h after "
                                    "the end of the logical day) has passed")
        return found

    def execute(self, context: Context) -> Any:
        if not self.deferrable or self.poke(context):
            try:
                return super().execute(context)
            except PartitionNotArrived:  # already alerted by poke
                raise
            except AirflowSensorTimeout:
                self._time_out(context, f"sensor timeout of {float(self.timeout):g}s reached")
        from airflow_mlops.triggers.storage import DataPartitionTrigger

        d = self._dataset()
        deadline = self._deadline(context)
        self.log.info("deferring: the triggerer waits for partition %s (poking every %gs); gives up at the %s",
                      d.uri(self._ds(context)), float(self.poke_interval), self._limits(deadline, deferring=True))
        sql = None
        if d.fmt == "sql":  # a SqlDataset: the triggerer asks the database whether the day has rows
            source = d.source  # type: ignore[attr-defined]
            sql = {"conn_id": d.conn_id, "table": source.table, "date_column": source.date_column,  # type: ignore[attr-defined]
                   "query": source.query}
        self.defer(
            trigger=DataPartitionTrigger(storage_uri=d.store.root if sql is None else "", prefix=d.prefix,
                                         ds=self._ds(context), fmt=d.fmt, aws_conn_id=self.aws_conn_id,
                                         poke_interval=float(self.poke_interval),
                                         deadline=deadline.isoformat() if deadline else None, sql=sql),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=float(self.timeout)),
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except PartitionNotArrived:
            raise
        except AirflowSensorTimeout:
            self._time_out(context, f"sensor timeout of {float(self.timeout):g}s reached")

    def execute_complete(self, context: Context, event: DataPartitionEvent | None = None) -> None:
        if event and event.get("status") == "timeout":
            self._time_out(context, f"freshness deadline {event.get('deadline')} ({self.deadline_hours:g} h after "
                                    "the end of the logical day) has passed")
        if not event or event.get("status") != "success":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"waiting for the partition failed: {event.get('message') if event else None}")
        self.log.info("partition ds=%s arrived", event.get("ds"))
