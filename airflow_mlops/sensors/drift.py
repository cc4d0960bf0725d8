"""DriftSensor: wait for the drift verdict of a model on a date (deferrable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_mlops.sensors.base import PokeOnceThenDefer
from airflow_mlops.sensors.data import default_deferrable
from airflow_mlops.store.dates import logical_ds

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.monitoring.monitor import DriftXCom
    from airflow_mlops.triggers.storage import StorageKeyEvent, StorageKeyTrigger


class DriftSensor(PokeOnceThenDefer, BaseSensorOperator):
    """Wait until ``DriftDetectionOperator`` has written its verdict for ``model`` on the logical date.

    :param model: model name.
    :param require_drift: when True, succeed only if the verdict says drift (else the sensor fails
        fast with the verdict's share and threshold — a downstream "retrain only on drift" branch);
        when False (default) succeed on any verdict.
    :param deferrable: wait in the triggerer (default ``[operators] default_deferrable``).

    XCom: the drift summary's small form (share, threshold, drifted columns, report URI):
    :class:`~airflow_mlops.monitoring.monitor.DriftXCom`.

    Example::

        DriftSensor(task_id="wait_for_drift_verdict", model="churn", deferrable=True, timeout=3600)
    """

    template_fields: Sequence[str] = ("model", "ds", "storage_uri")

    def __init__(self, *, model: str, ds: str | None = None, require_drift: bool = False,
                 storage_uri: str | None = None, aws_conn_id: str | None = None, deferrable: bool | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.ds, self.require_drift = model, ds, require_drift
        self.storage_uri, self.aws_conn_id = storage_uri, aws_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _ds(self, context: Context) -> str:
        from airflow_mlops.operators.base import context_ds

        return logical_ds(self.ds or context_ds(context))

    def _verdict(self, summary: dict[str, Any]) -> DriftXCom:
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_mlops.monitoring.monitor import xcom_summary

        out = xcom_summary(summary)
        if self.require_drift and not summary.get("dataset_drift"):
            raise AirflowFailException(
                f"{self.model} on {summary.get('ds')}: no drift (share {summary.get('share_drifted')} < "
                f"threshold {summary.get('threshold')})")
        return out

    def poke(self, context: Context) -> PokeReturnValue:
        from airflow_mlops.hooks.storage import ArtifactStoreHook
        from airflow_mlops.monitoring.monitor import read_drift_summary

        summary = read_drift_summary(ArtifactStoreHook(self.storage_uri, self.aws_conn_id).get_conn(), self.model,
                                     self._ds(context))
        if summary is None:
            return PokeReturnValue(is_done=False)
        return PokeReturnValue(is_done=True, xcom_value=self._verdict(summary))

    def trigger(self, context: Context) -> StorageKeyTrigger:
        from airflow_mlops.hooks.storage import ArtifactStoreHook
        from airflow_mlops.monitoring.monitor import drift_key
        from airflow_mlops.triggers.storage import StorageKeyTrigger

        store = ArtifactStoreHook(self.storage_uri, self.aws_conn_id).get_conn()
        return StorageKeyTrigger(storage_uri=store.root, key=drift_key(self.model, self._ds(context)),
                                 aws_conn_id=self.aws_conn_id, poke_interval=float(self.poke_interval))

    def execute_complete(self, context: Context, event: StorageKeyEvent | None = None) -> DriftXCom:
        if not event or event.get("status") != "success":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"waiting for the drift verdict failed: {event.get('message') if event else None}")
        return self._verdict(event["content"])
