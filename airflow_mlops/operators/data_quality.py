"""DataQualityMonitorOperator: freshness, volume and duplicate-delivery checks of the day's input partition.

The logic is :func:`airflow_mlops.monitoring.data_quality.check_data_quality` (plain, testable without a
scheduler).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.monitoring.data_quality import DataQualityXCom, check_data_quality
from airflow_mlops.operators.base import MLOpsBaseOperator, fail

if TYPE_CHECKING:
    from airflow.sdk import Context


__all__ = ["DataQualityMonitorOperator"]

log = logging.getLogger(__name__)


class DataQualityMonitorOperator(MLOpsBaseOperator):
    """Freshness, volume and duplicate-delivery checks of the day's input partition, each with its own alert.

    * **freshness** — the partition is missing ``monitoring.freshness_deadline_hours`` after the end of
      the logical day: alert, then the task fails (no retry). Missing before the deadline: the task
      fails with a retryable error naming the deadline.
    * **volume** — rows / trailing median of the last ``monitoring.volume_window_days`` days outside
      ``[volume_min_ratio, volume_max_ratio]`` (or ``|z| > volume_max_z`` when set): alert.
    * **duplicate** — the canonical content hash equals an earlier day's (a re-delivered file): alert.

    Alerts are routed by the model's ``alerts`` config and sent once per (model, check, day). The
    summary goes to ``<root>/monitoring/<model>/ds=<ds>/data_quality.json``; a small dict to XCom
    (:class:`~airflow_mlops.monitoring.data_quality.DataQualityXCom`: ``status``, ``ds``, ``rows``, ``alerts``,
    ``report_uri``).

    :param dataset: dataset name under ``<root>/data/`` to check; default the model's scoring dataset,
        else its input dataset. (templated)
    :param fail_on: checks (``volume``, ``duplicate``) that also fail the task after alerting, to stop
        downstream tasks from using the partition; default none (alert only).

    Example::

        DataQualityMonitorOperator(task_id="data_quality", config_path="dags/configs/churn.yaml",
                                   fail_on=["duplicate"])
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields, "dataset")
    ui_color = "#fff4c2"
    openlineage_default_inputs: Sequence[str] = ("scoring_data",)

    def __init__(self, *, dataset: str | None = None, fail_on: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        unknown = [c for c in fail_on if c not in ("volume", "duplicate")]
        if unknown:
            raise ValueError(f"fail_on accepts 'volume' and 'duplicate' (freshness always fails); got {unknown}")
        self.dataset = dataset
        self.fail_on = tuple(fail_on)

    def execute(self, context: Context) -> DataQualityXCom:
        from airflow.sdk.exceptions import AirflowException

        from airflow_mlops.alerts.delivery import AlertDeliveryError
        from airflow_mlops.store.datasets import DataError

        ds = self.logical_ds(context)
        try:
            summary = check_data_quality(self.config, self.store, ds, dataset=self.dataset, context=context,
                                         run_info=self.run_info(context))
        except DataError as e:
            fail(f"data quality check of {self.config.name} ds={ds}: {e}")
            raise
        out: DataQualityXCom = {"status": summary["status"], "ds": ds, "rows": summary["partition"].get("rows"),
                                "alerts": [a["check"] for a in summary["alerts"]], "report_uri": summary["report_uri"]}
        undelivered = [a for a in summary["alerts"] if a.get("error")]
        if undelivered:
            raise AlertDeliveryError("; ".join(f"{a['check']}: {a['error']}" for a in undelivered)
                                     + f" (summary {summary['report_uri']}); the retry re-sends them")
        fresh = summary["freshness"]
        if fresh["status"] == "late":
            fail(f"partition {summary['partition_uri']} is missing {fresh['hours_late']} h after its deadline "
                 f"{fresh['deadline']}; the freshness alert was raised. Deliver the partition and clear this task.")
        if fresh["status"] == "waiting":
            raise AirflowException(f"partition {summary['partition_uri']} has not arrived yet (deadline "
                                   f"{fresh['deadline']}); run this check after the data sensor")
        blocking = [a["check"] for a in summary["alerts"] if a["check"] in self.fail_on]
        if blocking:
            fail(f"data quality of {summary['partition_uri']} failed {', '.join(blocking)} (fail_on); alerts raised, "
                 f"details in {summary['report_uri']}")
        return out
