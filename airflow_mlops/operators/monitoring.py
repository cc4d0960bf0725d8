"""DriftDetectionOperator: evidently drift of a scored partition; emits a retraining request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MLOpsBaseOperator, fail

if TYPE_CHECKING:
    from airflow.sdk import Context


def retrain_alias_name(model: str) -> str:
    return f"mlops.{model}.retrain_request_alias"


class DriftDetectionOperator(MLOpsBaseOperator):
    """Drift of the day's scored data against the reference stored with the model version that scored it.

    Features come from the scoring input partition and predictions from the prediction log (joined on
    the key columns); both sides are sampled to ``drift.sample_size`` rows with the training seed.
    evidently 0.7's ``DataDriftPreset`` picks the test per column (K-S / chi-square for small samples,
    Wasserstein / Jensen-Shannon for large ones). The JSON summary (per-feature test, score, threshold,
    drifted; share of drifted features; prediction drift) and the HTML report go to
    ``<root>/monitoring/<model>/ds=<ds>/drift.json`` / ``drift.html``; a small summary goes to XCom.

    When the share of drifted features reaches ``drift.threshold`` the operator emits an asset event on
    ``mlops://<model>/retrain-request`` (through the asset alias ``mlops.<model>.retrain_request_alias``),
    which schedules ``<model>_training``. No drift, no event.

    Example::

        DriftDetectionOperator(task_id="drift", config_path="dags/configs/churn.yaml")
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields,)
    ui_color = "#ffe0cc"

    def __init__(self, *, emit_retrain_request: bool = True, **kwargs: Any) -> None:
        """``outlets`` must include ``AssetAlias(retrain_alias_name(<model>))`` for the event to be
        emitted (the DAG factory does this)."""
        super().__init__(**kwargs)
        self.emit_retrain_request = emit_retrain_request

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_mlops.hooks.datasets import DataError
        from airflow_mlops.monitoring import detect_drift, xcom_summary

        ds = self.logical_ds(context)
        try:
            summary = detect_drift(self.config, self.store, ds, run_info=self.run_info(context))
        except DataError as e:
            fail(str(e))
            raise
        out = xcom_summary(summary)
        if summary["dataset_drift"] and self.emit_retrain_request:
            from airflow.sdk import AssetAlias

            from airflow_mlops.dag_factory import retrain_request_asset

            alias = AssetAlias(retrain_alias_name(self.config.name))
            context["outlet_events"][alias].add(
                retrain_request_asset(self.config.name),
                extra={"ds": ds, "reason": "drift", "share_drifted": summary["share_drifted"],
                       "threshold": summary["threshold"], "version": summary["version"],
                       "report_uri": summary.get("report_uri")},
            )
            out["retrain_requested"] = True
            self.log.warning("drift share %.2f >= %.2f: retraining of %s requested", summary["share_drifted"],
                             summary["threshold"], self.config.name)
        else:
            out["retrain_requested"] = False
        return out
