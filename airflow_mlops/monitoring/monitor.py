"""Monitoring steps as plain functions. Outputs go to ``<root>/monitoring/<model>/ds=<ds>/``.

* :func:`detect_drift`: drift of a scored partition against the reference of the model version that
  scored it, globally and per slice (``slices``); ``drift.json`` / ``drift.html``.
* :func:`monitor_performance`: late-arriving ground truth joined to the prediction log over a
  window; metrics globally and per slice; floor / relative-change alerts; ``performance.json`` /
  ``performance.html``.
* :func:`raise_alerts`: hands alert records to :func:`airflow_mlops.alerts.delivery.raise_alert` (imported
  lazily), which deduplicates them per (model, check, window, slice).
* Retraining requests and their cooldown (``monitoring.drift_cooldown_days``):
  :func:`retrain_cooldown` and :func:`record_retrain_request` keep
  ``monitoring/<model>/retrain_requests.json``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from airflow_mlops.config.locations import Locations
from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.store.artifacts import ArtifactNotFoundError, ArtifactStore, PreconditionFailedError, join
from airflow_mlops.store.datasets import DataError, Dataset
from airflow_mlops.store.dates import days_ending, logical_date
from airflow_mlops.store.layout import monitoring_key, monitoring_prefix, predictions_prefix, retrain_requests_key

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.alerts.delivery import Alert
    from airflow_mlops.config.model import ModelConfig

log = logging.getLogger(__name__)

__all__ = ["DriftSegmentXCom", "DriftSliceXCom", "DriftXCom", "PerformanceAlertXCom", "PerformanceXCom",
           "detect_drift", "drift_alerts", "drift_by_slice", "drift_key", "ground_truth_dataset", "monitor_performance",
           "performance_key", "performance_xcom", "raise_alerts", "read_drift_summary", "read_performance_summary",
           "read_retrain_requests", "record_retrain_request", "retrain_cooldown", "verdict_text", "xcom_summary"]


class DriftSliceXCom(TypedDict):
    """One slice in a :class:`DriftXCom` (a row of :func:`drift_by_slice`, shortened)."""

    slice: str | None  #: ``column=value``; None for a slice column the data lacks
    rows: dict[str, int] | None  #: ``{"reference", "current"}``
    skipped: bool  #: too small to test, or its column is missing (reported, not alerted)
    share_drifted: float | None  #: None when skipped
    dataset_drift: bool | None  #: None when skipped


class DriftSegmentXCom(TypedDict):
    """One segment model in a :class:`DriftXCom` of a segmented model."""

    model: str  #: the segment model's name
    version: int
    share_drifted: float
    dataset_drift: bool


class DriftXCom(TypedDict):
    """The XCom of ``DriftDetectionOperator`` and ``DriftSensor``: :func:`xcom_summary` of a drift summary.

    ``DriftDetectionOperator`` adds ``retrain_requested`` (and, when no request was emitted on drift,
    ``retrain_skipped_reason``) and ``alert_errors`` when an alert could not be delivered.
    """

    model: str
    version: int  #: the version that scored most rows (the worst segment's, for a segmented model)
    ds: str
    share_drifted: float  #: share of drifted features
    n_drifted: int
    n_features: int
    counted: str | None  #: what the counts count (features only)
    threshold: float
    share_drift: bool | None  #: the ``share`` clause alone
    dataset_drift: bool  #: the verdict of the drift rule
    rule: str | None  #: None for a summary written before drift rules
    report_uri: str | None  #: drift.html; None without the HTML report
    summary_uri: str | None  #: drift.json
    drifted_columns: list[str]
    prediction_drift: bool | None  #: None when no prediction column was tested
    fired: list[str]  #: the clauses of the rule that fired
    top_features: list[str]  #: the most important features the ``top_features`` clause watched
    reason: str  #: :func:`verdict_text`
    slices: list[DriftSliceXCom]
    drifted_slices: list[str]
    alerts: int  #: alert records in the summary
    segments: NotRequired[list[DriftSegmentXCom]]  #: segmented models only
    retrain_requested: NotRequired[bool]
    retrain_skipped_reason: NotRequired[str]
    alert_errors: NotRequired[str]


class PerformanceAlertXCom(TypedDict):
    """One alert in a :class:`PerformanceXCom`."""

    slice: str | None  #: None for the whole data
    metric: str | None  #: the first breached metric
    value: float | str | None
    threshold: float | str | None


class PerformanceXCom(TypedDict):
    """The XCom of ``PerformanceMonitorOperator``: :func:`performance_xcom` of a performance summary."""

    model: str
    ds: str
    window: str  #: ``<first>..<last>``
    status: str  #: ``ok``, ``alert`` or ``skipped``
    reason: NotRequired[str | None]  #: why the window was not evaluated (``skipped`` only)
    metrics: dict[str, float]  #: empty when skipped
    primary_metric: str
    report_uri: NotRequired[str]  #: performance.html, when written
    summary_uri: str  #: performance.json
    rows: int  #: labelled rows joined in the window
    previous_metrics: dict[str, float]  #: the previous window's
    #: per slice: ``slice``, ``rows``, ``alertable`` and the primary metric's value under its own name
    slices: list[dict[str, Any]]
    alerts: list[PerformanceAlertXCom]


def drift_key(model: str, ds: str) -> str:
    """``monitoring/<model>/ds=<ds>/drift.json``."""
    return monitoring_key(model, ds, "drift.json")


def _summary(store: ArtifactStore, key: str) -> dict[str, Any] | None:
    try:
        summary: dict[str, Any] = store.read_json(key)
        return summary
    except ArtifactNotFoundError:
        return None


def read_drift_summary(store: ArtifactStore, model: str, ds: str) -> dict[str, Any] | None:
    """The day's drift summary, ``None`` before the drift task ran."""
    return _summary(store, drift_key(model, ds))


def detect_drift(config: ModelConfig, store: ArtifactStore, ds: str, *, run_info: dict[str, Any] | None = None,
                 html: bool = True) -> dict[str, Any]:
    """Drift of the day's scored inputs vs the reference stored with the version that scored them.

    Features come from the scoring input partition, predictions from the prediction log (joined on
    the key columns). Writes ``drift.json`` (the summary) and ``drift.html`` (evidently's report)
    and returns the summary with their URIs.
    """
    name = config.name
    registry = ModelRegistry(store)
    predictions = Dataset(store, predictions_prefix(name))
    try:
        log_df = predictions.read(ds)
    except DataError as e:
        raise DataError(f"no prediction log to monitor for {name} on {ds}: {e}") from None
    scored = log_df[log_df["scored_by"].isin(["champion", "pinned", "canary"])] if "scored_by" in log_df else log_df
    if scored.empty:
        raise DataError(f"the prediction log {predictions.uri(ds)} has no model-scored rows (all fallback?)")
    prefix = monitoring_prefix(name, ds)
    if config.segments is not None and "model_name" in scored:
        summary = _segmented_drift(config, store, registry, ds, scored, predictions, prefix, html)
    else:
        summary, report = _drift_of(config, store, registry, name, ds, scored, html)
        if report is not None:
            summary["report_uri"] = store.write_bytes(join(prefix, "drift.html"), report.encode())
    summary.update({"model": name, "ds": ds, "input_uri": Locations(config, store).scoring.uri(ds),
                    "predictions_uri": predictions.uri(ds), **(run_info or {})})
    summary["summary_uri"] = store.uri(join(prefix, "drift.json"))
    summary["alerts"] = [a.to_dict() for a in drift_alerts(summary)]
    store.write_json(join(prefix, "drift.json"), summary)
    log.info("drift %s v%s %s: %d/%d features drifted (share %.2f, threshold %.2f; features only) -> %s "
             "(rule %s: %s)", name, summary["version"], ds, summary["n_drifted"], summary["n_features"],
             summary["share_drifted"], summary["threshold"], "DRIFT" if summary["dataset_drift"] else "no drift",
             summary.get("rule"), verdict_text(summary))
    return summary


def _drift_of(config: ModelConfig, store: ArtifactStore, registry: ModelRegistry, model: str, ds: str,
              scored: pd.DataFrame, html: bool) -> tuple[dict[str, Any], str | None]:
    """Drift of the rows ``model`` scored (its most-used version) vs that version's reference:
    ``(summary, html report or None)``."""
    from airflow_mlops.monitoring.drift import compute_drift

    version, n = Counter(scored["model_version"].astype(int)).most_common(1)[0]
    meta = registry.get_metadata(model, version)
    keys = list(meta.get("keys") or config.keys)
    features = list(meta["features"])
    input_dataset = Locations(config, store).scoring  # data.scoring_dataset, else the input (data.uri)
    input_schema = input_dataset.schema(ds) or {}
    extra = [c for c in config.slices if c not in features and c not in keys and c in input_schema]
    inputs = input_dataset.read(ds, columns=[*keys, *features, *extra])
    current = inputs.merge(scored.loc[scored["model_version"] == version, [*keys, "prediction"]], on=keys,
                           how="inner")
    reference = registry.load_reference(model, version)
    result = compute_drift(
        reference, current, numeric=list(meta.get("numeric_features") or []),
        categorical=list(meta.get("categorical_features") or []), prediction_column="prediction",
        threshold=config.drift.threshold, stattest_threshold=config.drift.stattest_threshold,
        sample_size=config.drift.sample_size, seed=config.training.seed, html=html,
        rule=config.drift.rule, top_k=config.drift.top_k, importance=meta.get("feature_importance") or [],
    )
    summary = dict(result.summary)
    summary["slices"] = drift_by_slice(config, reference, current, meta)
    summary["min_slice_size"] = config.monitoring.min_slice_size
    summary.update({"version": int(version), "rows_scored_by_version": int(n)})
    report = None
    if result.html is not None:
        from airflow_mlops.reports.html import drift_slices_section, insert_section

        report = insert_section(result.html, drift_slices_section(summary["slices"], summary["min_slice_size"]))
    return summary, report


def _segmented_drift(config: ModelConfig, store: ArtifactStore, registry: ModelRegistry, ds: str,
                     scored: pd.DataFrame, predictions: Dataset, prefix: str, html: bool) -> dict[str, Any]:
    """A segmented model (``segments``): each segment model's rows against its own reference.

    The summary is the most drifted segment's (its share, features and report, so the alerts and the
    retraining request follow the worst segment), with a ``segments`` table of every segment; each
    segment's report is ``drift__<segment model>.html``. The model drifts when any segment does."""
    per: dict[str, dict[str, Any]] = {}
    for model, rows in sorted(scored.groupby("model_name"), key=lambda kv: str(kv[0])):
        summary, report = _drift_of(config, store, registry, str(model), ds, rows, html)
        if report is not None:
            summary["report_uri"] = store.write_bytes(join(prefix, f"drift__{model}.html"), report.encode())
        per[str(model)] = summary
    # the worst segment: a drifting one first (its verdict names the clause), then the largest share
    worst_model = max(per, key=lambda m: (bool(per[m]["dataset_drift"]), per[m]["share_drifted"], m))
    combined = dict(per[worst_model])
    combined["segment_model"] = worst_model
    combined["dataset_drift"] = any(s["dataset_drift"] for s in per.values())
    combined["segments"] = [
        {"model": m, "version": s["version"], "rows": s["rows_scored_by_version"],
         "share_drifted": s["share_drifted"], "n_drifted": s["n_drifted"], "n_features": s["n_features"],
         "dataset_drift": s["dataset_drift"], "fired": (s.get("verdict") or {}).get("fired", []),
         "report_uri": s.get("report_uri")}
        for m, s in per.items()
    ]
    log.info("drift of %d segment model(s) of %s on %s: worst %s (share %.2f)", len(per), config.name, ds,
             worst_model, combined["share_drifted"])
    return combined


def xcom_summary(summary: dict[str, Any]) -> DriftXCom:
    """The small part of a drift summary that goes to XCom."""
    keep = ("model", "version", "ds", "share_drifted", "n_drifted", "n_features", "counted", "threshold",
            "share_drift", "dataset_drift", "rule", "report_uri", "summary_uri")
    out = {k: summary.get(k) for k in keep}
    out["drifted_columns"] = [c["column"] for c in summary.get("columns", []) if c.get("drifted")]
    out["prediction_drift"] = (summary.get("prediction_drift") or {}).get("drifted")
    verdict = summary.get("verdict") or {}
    out["fired"] = list(verdict.get("fired") or [])
    out["top_features"] = list((verdict.get("top_features") or {}).get("features") or [])
    out["reason"] = verdict_text(summary)
    out["slices"] = [{k: s.get(k) for k in ("slice", "rows", "skipped", "share_drifted", "dataset_drift")}
                     for s in summary.get("slices", [])]
    out["drifted_slices"] = [s["slice"] for s in summary.get("slices", []) if s.get("dataset_drift")]
    out["alerts"] = len(summary.get("alerts", []))
    if summary.get("segments"):
        out["segments"] = [{k: s.get(k) for k in ("model", "version", "share_drifted", "dataset_drift")}
                           for s in summary["segments"]]
    return cast(DriftXCom, out)


def verdict_text(summary: dict[str, Any]) -> str:
    """One line naming the clause(s) of the drift rule that fired (or why none did)."""
    verdict = summary.get("verdict") or {}
    if not verdict:  # a summary written before drift rules: the share alone decided
        return (f"share {summary.get('share_drifted', 0.0):.2f} "
                f"{'>=' if summary.get('dataset_drift') else '<'} threshold {summary.get('threshold', 0.0):.2f}")
    fired = verdict.get("fired") or []
    head = f"fired: {', '.join(fired)}" if fired else "no clause fired"
    reason = verdict.get("reason", "")
    return f"{head}: {reason.removeprefix('no clause fired: ')}" if reason else head


# --------------------------------------------------------------------------------------------
# drift per slice and drift alerts
# --------------------------------------------------------------------------------------------
def drift_by_slice(config: ModelConfig, reference: pd.DataFrame, current: pd.DataFrame,
                   meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Drift per value of every ``config.slices`` column: one table row per slice.

    Each row: ``column``, ``value``, ``slice`` (``"column=value"``), ``rows`` (``{reference,
    current}``), ``skipped`` (+ ``reason``) for slices with fewer than ``monitoring.min_slice_size``
    rows on either side (reported, never alerted), else ``share_drifted``, ``n_drifted``,
    ``n_features``, ``dataset_drift``, ``drifted_columns`` and ``prediction_drift``. A slice column
    the reference sample does not carry (not a model feature) cannot be compared: one row with
    ``value: null`` and the reason.
    """
    from airflow_mlops.monitoring.drift import slice_drift
    from airflow_mlops.monitoring.performance import slice_label

    rows: list[dict[str, Any]] = []
    min_rows = config.monitoring.min_slice_size
    for col in config.slices:
        where = [side for side, df in (("reference", reference), ("current", current)) if col not in df.columns]
        if where:
            rows.append({"column": col, "value": None, "slice": None, "skipped": True, "rows": None,
                         "reason": f"slice column {col!r} is missing from the {' and '.join(where)} data "
                                   f"(the reference holds the model's features only; add {col!r} to the features "
                                   "or drop it from slices)"})
            continue
        per_value = slice_drift(
            reference, current, col, min_rows=min_rows,
            numeric=list(meta.get("numeric_features") or []), categorical=list(meta.get("categorical_features") or []),
            prediction_column="prediction", threshold=config.drift.threshold,
            stattest_threshold=config.drift.stattest_threshold, sample_size=config.drift.sample_size,
            seed=config.training.seed, rule=config.drift.rule, top_k=config.drift.top_k,
            importance=meta.get("feature_importance") or [])
        for value, s in per_value.items():
            row: dict[str, Any] = {"column": col, "value": value, "slice": slice_label(col, value),
                                   "rows": s["rows"] if s["skipped"] else {"reference": s["rows"]["reference"],
                                                                             "current": s["rows"]["current"]},
                                   "skipped": bool(s["skipped"])}
            if s["skipped"]:
                row["reason"] = s["reason"] + " (monitoring.min_slice_size): reported, not alerted"
            else:
                row.update({"share_drifted": s["share_drifted"], "n_drifted": s["n_drifted"],
                            "n_features": s["n_features"], "dataset_drift": bool(s["dataset_drift"]),
                            "drifted_columns": [c["column"] for c in s["columns"] if c["drifted"]],
                            "prediction_drift": (s.get("prediction_drift") or {}).get("drifted"),
                            "fired": list((s.get("verdict") or {}).get("fired") or []),
                            "reason": verdict_text(s)})
            rows.append(row)
    return rows


def drift_alerts(summary: dict[str, Any]) -> list[Alert]:
    """Alert records (check ``drift``, window = the logical date) for dataset drift of the whole
    data and of every slice that was tested (slices under ``min_slice_size`` never alert)."""
    from airflow_mlops.alerts.delivery import Alert

    model, ds = summary["model"], summary["ds"]
    report = summary.get("report_uri")
    out: list[Alert] = []
    drifted = [c["column"] for c in summary.get("columns", []) if c.get("drifted")]
    if summary.get("dataset_drift"):
        fired = list((summary.get("verdict") or {}).get("fired") or [])
        out.append(Alert(
            model=model, check="drift", window=ds, value=summary["share_drifted"], threshold=summary["threshold"],
            message=(f"{model} on {ds}: drift (rule {summary.get('rule', 'share')}, {verdict_text(summary)}); "
                     f"{summary['n_drifted']}/{summary['n_features']} features drifted "
                     f"(share {summary['share_drifted']:.2f}, threshold {summary['threshold']:.2f}): "
                     f"{', '.join(drifted) or 'none'}"),
            report_uri=report, details={"drifted_columns": drifted, "version": summary.get("version"),
                                        "rule": summary.get("rule"), "fired": fired}))
    for s in summary.get("slices", []):
        if s.get("skipped") or not s.get("dataset_drift"):
            continue
        out.append(Alert(
            model=model, check="drift", window=ds, value=s["share_drifted"], threshold=summary["threshold"],
            message=(f"{model} slice {s['slice']} on {ds}: drift ({s.get('reason') or 'share'}); "
                     f"{s['n_drifted']}/{s['n_features']} features drifted "
                     f"(share {s['share_drifted']:.2f}, threshold {summary['threshold']:.2f}): "
                     f"{', '.join(s['drifted_columns']) or 'none'}; rows {s['rows']['current']} "
                     f"(reference {s['rows']['reference']})"),
            report_uri=report, slice=s["slice"],
            details={"drifted_columns": s["drifted_columns"], "version": summary.get("version"),
                     "rows": s["rows"], "fired": s.get("fired", [])}))
    return out


def raise_alerts(config: ModelConfig, store: ArtifactStore, records: list[Alert] | list[dict[str, Any]], *,
                 context: Any = None) -> list[Any]:
    """Send every record through :func:`airflow_mlops.alerts.delivery.raise_alert` (deduplicated there per
    model, check, window and slice); returns what it returns for each record (True: sent now,
    False: already sent, or not routed).

    Every record is attempted even when one fails; then one
    :class:`~airflow_mlops.alerts.delivery.AlertDeliveryError` names all failures (each failed record is
    marked so that a retry re-sends only the failed channels)."""
    from airflow_mlops.alerts.delivery import Alert, AlertDeliveryError, raise_alert

    out: list[Any] = []
    errors: list[str] = []
    for rec in records:
        try:
            alert = rec if isinstance(rec, Alert) else Alert(**rec)
            out.append(raise_alert(config, store, alert, context=context))
        except AlertDeliveryError as e:
            out.append(False)
            errors.append(str(e))
    if errors:
        raise AlertDeliveryError(f"{len(errors)} of {len(out)} alert(s) not delivered: " + " | ".join(errors))
    return out


# --------------------------------------------------------------------------------------------
# performance on ground truth
# --------------------------------------------------------------------------------------------
def performance_key(model: str, ds: str) -> str:
    """``monitoring/<model>/ds=<ds>/performance.json``."""
    return monitoring_key(model, ds, "performance.json")


def read_performance_summary(store: ArtifactStore, model: str, ds: str) -> dict[str, Any] | None:
    """The day's performance summary, ``None`` before the performance task ran."""
    return _summary(store, performance_key(model, ds))


def ground_truth_dataset(config: ModelConfig, store: ArtifactStore) -> Dataset:
    """``<root>/data/<data.ground_truth_dataset>/ds=YYYY-MM-DD/`` (format ``data.format``)."""
    if not config.data.has_ground_truth:
        raise DataError(f"{config.source}: data.ground_truth_dataset is not set for model {config.name}; set it to "
                        "the dataset holding the late-arriving labels (key columns + target) to monitor performance")
    from airflow_mlops.config.locations import Locations

    found = Locations(config, store).ground_truth
    assert found is not None  # data.ground_truth_dataset is set (checked above)
    return found


def _read_labelled_window(config: ModelConfig, store: ArtifactStore, dates: list[str]) -> dict[str, Any]:
    """Prediction log and ground truth of ``dates`` joined on the keys, slice columns added.

    Returns ``{"joined": DataFrame | None, "stats": {...}, "dates": {...}, "reason": str | None,
    "slice_sources": {...}}``; ``reason`` says why there is nothing to evaluate.
    """
    import pandas as pd

    from airflow_mlops.monitoring.performance import join_ground_truth
    from airflow_mlops.scoring.batch import predictions_dataset, scoring_input

    keys, target = list(config.keys), config.target
    log_ds = predictions_dataset(config, store)
    truth_ds = ground_truth_dataset(config, store)
    wanted = set(dates)
    pred_dates = sorted(wanted & set(log_ds.partitions()))
    truth_dates = sorted(wanted & set(truth_ds.partitions()))
    both = sorted(set(pred_dates) & set(truth_dates))
    info: dict[str, Any] = {"joined": None, "stats": {}, "reason": None, "slice_sources": {},
                            "dates": {"predictions": pred_dates, "ground_truth": truth_dates, "joined": both}}
    if not truth_dates:
        present = truth_ds.partitions()
        info["reason"] = (f"no ground truth for {dates[0]}..{dates[-1]}: {truth_ds.uri()} has no partition in the "
                          f"window (latest: {present[-3:] or 'none'}); labels arrive late — the window is "
                          "evaluated once they land")
        return info
    if not both:
        info["reason"] = (f"ground truth exists for {', '.join(truth_dates)} but the prediction log "
                          f"{log_ds.uri()} has no partition for those dates")
        return info
    preds, truths = [], []
    scoring = scoring_input(config, store)
    for d in both:
        p = log_ds.read(d)
        if "logical_date" not in p.columns:
            p["logical_date"] = d
        needed = [c for c in config.slices if c not in p.columns]
        if needed:
            schema = scoring.schema(d) or {}
            have = [c for c in needed if c in schema]
            for c in needed:
                info["slice_sources"].setdefault(c, "scoring input" if c in have else "missing")
            if have:
                inp = scoring.read(d, columns=[*keys, *have]).drop_duplicates(keys, keep="last")
                p = p.merge(inp, on=keys, how="left")
        for c in config.slices:
            info["slice_sources"].setdefault(c, "prediction log")
        preds.append(p)
        t = truth_ds.read(d)
        missing = [c for c in [*keys, target] if c not in t.columns]
        if missing:
            raise DataError(f"ground truth partition {truth_ds.uri(d)} lacks column(s) {', '.join(missing)}; it needs "
                            f"the key columns {keys} and the target {target!r}")
        truths.append(t[[*keys, target]].assign(ds=d))
    predictions = pd.concat(preds, ignore_index=True)
    truth = pd.concat(truths, ignore_index=True)
    joined, stats = join_ground_truth(predictions, truth, keys, target)
    info["stats"] = stats
    if joined.empty:
        info["reason"] = (f"none of the {stats['ground_truth']} ground-truth rows of {', '.join(both)} matches a "
                          f"logged prediction on the keys {keys}; check that {truth_ds.uri()} uses the same keys "
                          "and that ds= is the date the entities were scored")
        return info
    info["joined"] = joined
    return info


def _classes(registry: ModelRegistry, config: ModelConfig, joined: pd.DataFrame) -> tuple[list[Any] | None, list[str],
                                                                                         dict[str, int]]:
    """Classes (from the metadata of the version that scored most rows), their proba columns present
    in the log, and rows per version."""
    from airflow_mlops.training.steps import category_label

    versions = Counter(int(v) for v in joined["model_version"]) if "model_version" in joined else Counter()
    if not config.is_classification:
        return None, [], {str(k): v for k, v in sorted(versions.items())}
    classes = None
    if versions:
        # segmented models (``segments``): the log's model_name names the segment model of each row
        names = Counter(zip(joined["model_name"].astype(str), joined["model_version"].astype(int))) \
            if "model_name" in joined else Counter({(config.name, versions.most_common(1)[0][0]): 1})
        model, version = names.most_common(1)[0][0]
        meta = registry.get_metadata(model, version)
        classes = meta.get("classes")
    if classes is None:
        classes = sorted(set(joined[config.target].dropna().tolist()) | set(joined["prediction"].dropna().tolist()))
    proba = [f"proba_{category_label(c)}" for c in classes]
    if not all(p in joined.columns for p in proba):
        proba = []
    return list(classes), proba, {str(k): v for k, v in sorted(versions.items())}


def _evaluate_window(config: ModelConfig, store: ArtifactStore, dates: list[str]) -> dict[str, Any]:
    from airflow_mlops.monitoring.performance import evaluate, slice_performance

    info = _read_labelled_window(config, store, dates)
    if info["joined"] is None:
        return info
    joined = info["joined"]
    classes, proba, versions = _classes(ModelRegistry(store), config, joined)
    info.update({
        "versions": versions,
        "metrics": evaluate(joined, config.task, config.target, classes, proba),
        "slices": slice_performance(joined, config.slices, config.task, config.target, classes, proba,
                                    config.monitoring.min_slice_size),
        "proba_columns": proba,
    })
    return info


def monitor_performance(config: ModelConfig, store: ArtifactStore, ds: str, *, run_info: dict[str, Any] | None = None,
                        html: bool = True) -> dict[str, Any]:
    """Performance of the logged predictions on the ground truth of the window ending at ``ds``.

    Window: ``monitoring.performance_window_days`` dates ending at ``ds``. Prediction-log partitions
    and ground-truth partitions (``data.ground_truth_dataset``) of the same dates are joined on the
    key columns; slice columns missing from the log are joined from the scoring input by key. Metrics
    (:func:`airflow_mlops.evaluation.metrics.compute_metrics`; classifiers use the ``proba_<class>``
    columns) are computed for the window, the previous window and every slice, and checked by
    :func:`airflow_mlops.monitoring.performance.performance_alerts`.

    Writes ``performance.json`` and ``performance.html`` under ``monitoring/<model>/ds=<ds>/`` (a
    re-run replaces them) and returns the summary; ``summary["alerts"]`` holds the alert records
    (dicts) and ``summary["status"]`` is ``"ok"``, ``"alert"`` or ``"skipped"`` (no ground truth
    for the window yet: ``summary["reason"]`` says why; nothing is alerted).
    """
    from airflow_mlops.monitoring.performance import performance_alerts, previous_window_end, window_id
    from airflow_mlops.reports import html as reports

    name = config.name
    days = config.monitoring.performance_window_days
    dates = days_ending(ds, days)
    window = window_id(ds, days)
    prefix = monitoring_prefix(name, ds)
    summary_key, report_key = join(prefix, "performance.json"), join(prefix, "performance.html")
    report_uri = store.uri(report_key) if html else None
    summary: dict[str, Any] = {
        "model": name, "ds": ds, "window": window, "window_days": days, "task": config.task,
        "ground_truth_uri": ground_truth_dataset(config, store).uri(),
        "primary_metric": config.metrics.primary, "floors": dict(config.metrics.floors),
        "ceilings": dict(config.metrics.ceilings), "max_relative_change": config.monitoring.max_relative_change,
        "min_slice_size": config.monitoring.min_slice_size, "slice_columns": list(config.slices),
        **(run_info or {}),
    }
    current = _evaluate_window(config, store, dates)
    summary["dates"] = current["dates"]
    summary["rows"] = current["stats"]
    if current["joined"] is None:
        summary.update({"status": "skipped", "reason": current["reason"], "metrics": {}, "slices": [], "alerts": []})
        log.warning("performance %s %s: skipped: %s", name, window, current["reason"])
    else:
        prev_end = previous_window_end(ds, days)
        prev_window = window_id(prev_end, days)
        previous = _evaluate_window(config, store, days_ending(prev_end, days))
        prev_metrics = previous.get("metrics") if previous["joined"] is not None else None
        prev_slices = previous.get("slices", []) if previous["joined"] is not None else []
        n = current["stats"]["joined"]
        alerts = performance_alerts(
            name, window, current["metrics"], rows=n, previous=prev_metrics, previous_window=prev_window,
            floors=config.metrics.floors, ceilings=config.metrics.ceilings, primary=config.metrics.primary,
            max_relative_change=config.monitoring.max_relative_change, slices=current["slices"],
            previous_slices=prev_slices, report_uri=report_uri)
        prev_by_slice = {s["slice"]: s for s in prev_slices if s.get("slice")}
        alert_by_slice = {a.slice: a for a in alerts}
        for s in current["slices"]:
            p = prev_by_slice.get(s.get("slice"))
            s["previous_rows"] = p["rows"] if p else 0
            s["previous_metrics"] = p["metrics"] if p else {}
            s["alert"] = alert_by_slice[s["slice"]].message if s.get("slice") in alert_by_slice else None
        summary.update({
            "status": "alert" if alerts else "ok",
            "metrics": current["metrics"], "versions": current["versions"],
            "coverage": n / current["stats"]["predictions"] if current["stats"]["predictions"] else None,
            "slice_sources": current["slice_sources"],
            "previous": {"window": prev_window, "metrics": prev_metrics or {},
                         "rows": previous["stats"].get("joined", 0),
                         "reason": previous["reason"]},
            "slices": current["slices"],
            "alerts": [a.to_dict() for a in alerts],
        })
        log.info("performance %s %s: %d labelled rows, %s=%s (previous window %s), %d slice(s), %d alert(s)", name,
                 window, n, config.metrics.primary, current["metrics"].get(config.metrics.primary),
                 (prev_metrics or {}).get(config.metrics.primary), len(current["slices"]), len(alerts))
    summary["summary_uri"] = store.uri(summary_key)
    if html:
        summary["report_uri"] = store.write_bytes(report_key, reports.performance_html(summary).encode())
    store.write_json(summary_key, summary)
    return summary


def performance_xcom(summary: dict[str, Any]) -> PerformanceXCom:
    """The small part of a performance summary that goes to XCom."""
    keep = ("model", "ds", "window", "status", "reason", "metrics", "primary_metric", "report_uri", "summary_uri")
    out = {k: summary.get(k) for k in keep if k in summary}
    out["rows"] = (summary.get("rows") or {}).get("joined", 0)
    out["previous_metrics"] = (summary.get("previous") or {}).get("metrics", {})
    primary = summary.get("primary_metric")
    out["slices"] = [{"slice": s.get("slice"), "rows": s.get("rows"), "alertable": s.get("alertable"),
                      primary: (s.get("metrics") or {}).get(primary)} for s in summary.get("slices", [])]
    out["alerts"] = [{"slice": a.get("slice"), "metric": (a.get("details") or {}).get("metric"),
                      "value": a.get("value"), "threshold": a.get("threshold")} for a in summary.get("alerts", [])]
    return cast(PerformanceXCom, out)


# --------------------------------------------------------------------------------------------
# retraining requests and their cooldown
# --------------------------------------------------------------------------------------------
def read_retrain_requests(store: ArtifactStore, model: str) -> list[dict[str, Any]]:
    """Retraining requests emitted by drift monitoring, one per logical date, ascending by ``ds``."""
    try:
        doc = store.read_json(retrain_requests_key(model))
    except ArtifactNotFoundError:
        return []
    return sorted(doc.get("requests", []), key=lambda r: r["ds"])


def retrain_cooldown(requests: list[dict[str, Any]], ds: str, cooldown_days: int) -> dict[str, Any]:
    """Whether a retraining request may be emitted for ``ds``.

    Only requests of *earlier* logical dates count, so re-running a date gives the same decision,
    and a backfill is judged by what was requested before that date. Blocked when the latest
    earlier request is less than ``cooldown_days`` days before ``ds``.
    Returns ``{"allowed", "reason", "previous" (the request or None), "cooldown_days",
    "next_allowed" (date or None)}``.
    """
    day = logical_date(ds)
    ds = day.isoformat()
    earlier = [r for r in requests if r["ds"] < ds]
    previous = earlier[-1] if earlier else None
    out: dict[str, Any] = {"allowed": True, "previous": previous, "cooldown_days": cooldown_days,
                           "next_allowed": None}
    if cooldown_days <= 0 or previous is None:
        out["reason"] = ("no cooldown configured" if cooldown_days <= 0 else "no earlier retraining request")
        return out
    age = (day - dt.date.fromisoformat(previous["ds"])).days
    next_allowed = (dt.date.fromisoformat(previous["ds"]) + dt.timedelta(days=cooldown_days)).isoformat()
    if age < cooldown_days:
        out.update({"allowed": False, "next_allowed": next_allowed,
                    "reason": (f"cooldown: retraining was requested for {previous['ds']}, {age} day(s) before "
                               f"{ds}; monitoring.drift_cooldown_days={cooldown_days}, next request allowed from "
                               f"{next_allowed}")})
    else:
        out["reason"] = f"last request {previous['ds']} is {age} day(s) old (cooldown {cooldown_days})"
    return out


def record_retrain_request(store: ArtifactStore, model: str, ds: str, info: dict[str, Any],
                           attempts: int = 10) -> list[dict[str, Any]]:
    """Add (or replace) the request of ``ds`` in ``retrain_requests.json`` with compare-and-swap,
    so concurrent monitors never lose each other's request. Returns the requests."""
    import json

    key = retrain_requests_key(model)
    for _ in range(attempts):
        try:
            raw, etag = store.read_versioned(key)
            requests = json.loads(raw).get("requests", [])
        except ArtifactNotFoundError:
            requests, etag = [], None
        requests = sorted([r for r in requests if r["ds"] != ds] + [{**info, "ds": ds}],
                          key=lambda r: r["ds"])
        try:
            store.write_bytes_if_match(key, store.dumps({"model": model, "requests": requests}), etag)
            return requests
        except PreconditionFailedError:
            continue
    raise PreconditionFailedError(f"{store.uri(key)} kept changing during {attempts} attempts to record the "
                                  f"retraining request of {ds}; retry the task")
