"""DriftDetectionOperator (evidently drift of a scored partition, per slice; emits a retraining request
with a cooldown) and PerformanceMonitorOperator (late ground truth joined to the prediction log; floor
and relative-change alerts, per slice)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.assets import retrain_alias_name, retrain_request_asset
from airflow_mlops.operators.base import MLOpsBaseOperator, fail

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.monitoring.monitor import DriftXCom, PerformanceXCom



class DriftDetectionOperator(MLOpsBaseOperator):
    """Drift of the day's scored data against the reference stored with the model version that scored it.

    Features come from the scoring input partition and predictions from the prediction log (joined on
    the key columns); both sides are sampled to ``drift.sample_size`` rows with the training seed.
    evidently 0.7's ``DataDriftPreset`` picks the test per column (K-S / chi-square for small samples,
    Wasserstein / Jensen-Shannon for large ones). The JSON summary (per-feature test, score, threshold,
    drifted; share of drifted features; prediction drift) and the HTML report go to
    ``<root>/monitoring/<model>/ds=<ds>/drift.json`` / ``drift.html``; a small summary goes to XCom
    (:class:`~airflow_mlops.monitoring.monitor.DriftXCom`).

    The verdict follows ``drift.rule`` (default ``combined``: the share of drifted features reaches
    ``drift.threshold``, OR the prediction distribution drifts, OR any of the ``drift.top_k`` most
    important features of the version drifts; ``share``: the share alone); the summary, the XCom
    (``fired``, ``reason``), the alert and the log name the clause(s) that fired. On drift the
    operator emits an asset event on
    ``mlops://<model>/retrain-request`` (through the asset alias ``mlops.<model>.retrain_request_alias``),
    which schedules ``<model>_training``. No drift, no event. Within ``monitoring.drift_cooldown_days``
    after the previous request (by logical date, recorded in ``monitoring/<model>/retrain_requests.json``)
    no new request is emitted; the log and the XCom say why (``retrain_skipped_reason``).

    Drift is also computed per value of every ``slices`` column (slices under
    ``monitoring.min_slice_size`` rows are reported, not tested); the summary and the HTML report carry
    the per-slice table. Dataset drift of the whole data or of a slice raises an alert (check ``drift``,
    deduplicated per model, date and slice) through :func:`airflow_mlops.alerts.delivery.raise_alert` when
    ``send_alerts`` is true.

    Example::

        DriftDetectionOperator(task_id="drift", config_path="dags/configs/churn.yaml")
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields,)
    ui_color = "#ffe0cc"
    openlineage_default_inputs: Sequence[str] = ("scoring_data", "predictions")

    def __init__(self, *, emit_retrain_request: bool = True, send_alerts: bool = True,
                 fail_on_alert_error: bool = False, **kwargs: Any) -> None:
        """``outlets`` must include ``AssetAlias(retrain_alias_name(<model>))`` for the event to be
        emitted (the DAG factory does this).

        :param send_alerts: raise drift alerts through :func:`airflow_mlops.alerts.delivery.raise_alert`.
        :param fail_on_alert_error: fail the task when an alert cannot be delivered (its retry
            re-sends the failed channels). Default False: the retraining request is this task's
            main output and a failed task would drop its asset event, so a delivery error is logged
            and reported in XCom (``alert_errors``); the alert record stays ``failed`` and the next
            run of the same date re-sends it.
        """
        super().__init__(**kwargs)
        self.emit_retrain_request = emit_retrain_request
        self.send_alerts = send_alerts
        self.fail_on_alert_error = fail_on_alert_error

    def execute(self, context: Context) -> DriftXCom:
        from airflow_mlops.monitoring.monitor import detect_drift, xcom_summary
        from airflow_mlops.store.datasets import DataError

        ds = self.logical_ds(context)
        try:
            summary = detect_drift(self.config, self.store, ds, run_info=self.run_info(context))
        except DataError as e:
            fail(str(e))
            raise
        out = xcom_summary(summary)
        self.log.info("drift of %s on %s: %s (rule %s; %s/%s features drifted, share %.2f, features only): %s",
                      self.config.name, ds, "DRIFT" if summary["dataset_drift"] else "no drift", out.get("rule"),
                      out.get("n_drifted"), out.get("n_features"), out.get("share_drifted") or 0.0, out["reason"])
        out["retrain_requested"] = False
        if summary["dataset_drift"] and self.emit_retrain_request:
            self._request_retraining(context, ds, summary, out)
        if self.send_alerts and summary.get("alerts"):
            from airflow_mlops.alerts.delivery import AlertDeliveryError
            from airflow_mlops.monitoring.monitor import raise_alerts

            try:
                raise_alerts(self.config, self.store, summary["alerts"], context=context)
            except AlertDeliveryError as e:
                if self.fail_on_alert_error:
                    raise
                out["alert_errors"] = str(e)[:1000]
                self.log.error("drift alert(s) of %s on %s not delivered: %s", self.config.name, ds, e)
        return out

    def _request_retraining(self, context: Context, ds: str, summary: dict[str, Any], out: DriftXCom) -> None:
        from airflow.sdk import AssetAlias

        from airflow_mlops.monitoring.monitor import (
            read_retrain_requests,
            record_retrain_request,
            retrain_cooldown,
            verdict_text,
        )

        name = self.config.name
        decision = retrain_cooldown(read_retrain_requests(self.store, name), ds,
                                    self.config.monitoring.drift_cooldown_days)
        if not decision["allowed"]:
            out["retrain_skipped_reason"] = decision["reason"]
            self.log.warning("drift of %s on %s (%s), but no retraining request: %s",
                             name, ds, verdict_text(summary), decision["reason"])
            return
        extra = {"ds": ds, "reason": "drift", "share_drifted": summary["share_drifted"],
                 "threshold": summary["threshold"], "version": summary["version"],
                 "rule": summary.get("rule"), "fired": list((summary.get("verdict") or {}).get("fired") or []),
                 "report_uri": summary.get("report_uri")}
        record_retrain_request(self.store, name, ds, {**extra, "run_id": context["ti"].run_id})
        alias = AssetAlias(retrain_alias_name(name))
        context["outlet_events"][alias].add(retrain_request_asset(name), extra=extra)
        out["retrain_requested"] = True
        self.log.warning("drift (%s): retraining of %s requested (%s)", verdict_text(summary), name,
                         decision["reason"])


class PerformanceMonitorOperator(MLOpsBaseOperator):
    """Model performance on late-arriving ground truth, globally and per slice, with alerts.

    The ground truth is its own date-partitioned dataset ``data.ground_truth_dataset``
    (``<root>/data/<dataset>/ds=YYYY-MM-DD/``: the key columns + the target; ``ds=D`` holds the labels
    of the entities scored on ``D``). Over the window of ``monitoring.performance_window_days`` dates
    ending at the logical date, the prediction log (``predictions/<model>/ds=...``) is joined to it on
    the keys; slice columns (``slices``) missing from the log are joined by key from the scoring input.
    The model's metrics (``compute_metrics``; ``roc_auc`` from the ``proba_<class>`` columns) are
    computed for the window, for each slice and for the previous window.

    Alerts (check ``performance``, window id ``<first>..<last>``, deduplicated per model, window and
    slice by :func:`airflow_mlops.alerts.delivery.raise_alert`, so each fires once per window): a metric below
    its floor (``metrics.floors``) or above its ceiling (``metrics.ceilings``), or a change of more than
    ``monitoring.max_relative_change`` relative to the previous window, either way (a sudden rise is as
    suspicious as a drop). Slices with fewer than ``monitoring.min_slice_size`` labelled rows are
    reported, never alerted; an alert on a slice names it (``segment=enterprise``).

    Writes ``<root>/monitoring/<model>/ds=<ds>/performance.json`` and ``performance.html``; returns a
    small summary to XCom (:class:`~airflow_mlops.monitoring.monitor.PerformanceXCom`). Without ground truth
    for the window the task is skipped (``skip_if_no_ground_truth``, default) or succeeds with
    ``status: skipped``; the reason is logged and written to the summary.

    Example::

        PerformanceMonitorOperator(task_id="performance", config_path="dags/configs/churn.yaml")
    """

    template_fields: Sequence[str] = (*MLOpsBaseOperator.template_fields,)
    ui_color = "#ffd6e7"
    openlineage_default_inputs: Sequence[str] = ("predictions", "ground_truth")

    def __init__(self, *, send_alerts: bool = True, skip_if_no_ground_truth: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.send_alerts = send_alerts
        self.skip_if_no_ground_truth = skip_if_no_ground_truth

    def execute(self, context: Context) -> PerformanceXCom:
        from airflow_mlops.monitoring.monitor import monitor_performance, performance_xcom, raise_alerts
        from airflow_mlops.store.datasets import DataError

        ds = self.logical_ds(context)
        try:
            summary = monitor_performance(self.config, self.store, ds, run_info=self.run_info(context))
        except DataError as e:
            fail(str(e))
            raise
        out = performance_xcom(summary)
        if summary["status"] == "skipped":
            self.log.warning("performance of %s over %s not evaluated: %s", self.config.name, summary["window"],
                             summary["reason"])
            if self.skip_if_no_ground_truth:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(f"{self.config.name} {summary['window']}: {summary['reason']}")
            return out
        for a in summary["alerts"]:
            self.log.warning("ALERT %s", a["message"])
        if self.send_alerts and summary["alerts"]:
            raise_alerts(self.config, self.store, summary["alerts"], context=context)
        return out
