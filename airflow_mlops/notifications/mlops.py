"""MLOpsAlertNotifier: turn a failed task (gate rejection, sensor timeout) into a routed, deduplicated alert.

:func:`alert_notifier` builds it for ``on_failure_callback``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.alerts.delivery import Alert
    from airflow_mlops.config.model import ModelConfig

__all__ = ["MLOpsAlertNotifier", "alert_notifier"]


class MLOpsAlertNotifier(BaseNotifier):
    """``on_failure_callback`` that raises an :class:`~airflow_mlops.alerts.delivery.Alert` for the model.

    The alert goes through :func:`~airflow_mlops.alerts.delivery.raise_alert`, so it follows the model's
    ``alerts`` routing and is sent once per (model, check, logical date): a retried task or a second
    failing task of the same day does not send it again.

    :param config: the model config (its ``alerts`` section and ``owner`` route the alert).
    :param storage_uri: artifact store root holding the dedup records; default ``[mlops] storage_uri``.
    :param check: the alert's check; default ``freshness`` for a sensor timeout, ``gate`` otherwise.
    :param aws_conn_id: Airflow AWS connection for ``s3://`` roots.

    Build it with :func:`alert_notifier`.
    """

    template_fields: Sequence[str] = ()

    def __init__(self, *, config: ModelConfig, storage_uri: str | None = None, check: str | None = None,
                 aws_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from airflow_mlops.config.model import ALERT_CHECKS

        if check is not None and check not in ALERT_CHECKS:
            raise ValueError(f"check must be one of {', '.join(ALERT_CHECKS)}; got {check!r}")
        self.config = config
        self.storage_uri = storage_uri
        self.check = check
        self.aws_conn_id = aws_conn_id

    def build_alert(self, context: Context) -> Alert:
        """The alert describing the failure in ``context`` (no row values: the error's first line only)."""
        from airflow.sdk import BaseSensorOperator
        from airflow.sdk.exceptions import AirflowSensorTimeout

        from airflow_mlops.alerts.delivery import Alert
        from airflow_mlops.operators.base import context_ds

        ti = context.get("ti")
        task = context.get("task")
        error = context.get("exception")
        timed_out = isinstance(error, AirflowSensorTimeout) or isinstance(task, BaseSensorOperator)
        check = self.check or getattr(error, "mlops_check", None) or ("freshness" if timed_out else "gate")
        ds = context_ds(context)
        dag_id, task_id = getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?")
        first = (str(error).splitlines() or [""])[0][:400] if error is not None else "no error message"
        if timed_out:
            value, threshold = "missing", f"within the sensor timeout ({getattr(task, 'timeout', '?')}s)"
            message = (f"{dag_id}.{task_id} gave up waiting for the {ds} data: {first}. Deliver the partition, "
                       "then clear the task to resume the run.")
        else:
            value, threshold = "failed", "task succeeds"
            message = (f"{dag_id}.{task_id} failed for {ds}: {type(error).__name__ if error else 'error'}: "
                       f"{first}. See the task log.")
        log_url = None
        try:
            log_url = getattr(ti, "log_url", None)
        except Exception:  # noqa: BLE001 - the link is optional (no webserver config in some runs)
            log_url = None
        return Alert(model=self.config.name, check=check, window=ds, value=value, threshold=threshold,
                     message=message, report_uri=log_url,
                     details={"dag_id": dag_id, "task_id": task_id, "error_type": type(error).__name__
                              if error is not None else None})

    def notify(self, context: Context) -> None:
        from airflow_mlops.alerts.delivery import raise_alert
        from airflow_mlops.store.artifacts import ArtifactStore

        store = ArtifactStore(self.storage_uri, conn_id=self.aws_conn_id)
        raise_alert(self.config, store, self.build_alert(context), context=context)


def alert_notifier(config: ModelConfig, *, storage_uri: str | None = None, check: str | None = None,
                   aws_conn_id: str | None = None) -> list[MLOpsAlertNotifier]:
    """Airflow notifier(s) for ``on_failure_callback``: a failed task becomes an
    :class:`~airflow_mlops.alerts.delivery.Alert` routed (and deduplicated) like any other.

    The check is ``check`` when given, else ``freshness`` for a sensor timeout and ``gate`` for any
    other failure (a promotion gate rejection, a validation gate). Window = the run's logical date.

    Example::

        DataPartitionSensor(..., on_failure_callback=alert_notifier(config))
    """
    return [MLOpsAlertNotifier(config=config, storage_uri=storage_uri, check=check, aws_conn_id=aws_conn_id)]
