"""Model performance on late-arriving ground truth: window, join, metrics per slice, alert rules.

Pure Python, no Airflow imports; pandas and scikit-learn are imported inside the functions. The
storage side (reading the prediction log and the ground truth, writing ``performance.json``,
raising the alerts) is :func:`airflow_mlops.monitoring.monitor.monitor_performance`; this module holds
the parts that can be tested on plain DataFrames. See ``docs/performance-monitoring.md``.

* A **window** is the ``window_days`` logical dates ending at (and including) the logical date;
  its id is ``"<first>..<last>"`` (``2024-01-08..2024-01-14``). The previous window is the one
  just before it, of the same length.
* **Join**: a ground-truth partition ``ds=D`` holds the labels of the entities scored on ``D``;
  prediction-log rows of ``D`` are joined to it on the model's key columns (within the same date,
  so an entity scored every day is labelled per day).
* **Alert rules** (:func:`performance_alerts`): a metric below its floor (``metrics.floors``) or,
  for lower-is-better metrics, above its ceiling (``metrics.ceilings``); or a watched metric that
  moved by more than ``max_relative_change`` relative to the previous window, either way. The
  same rules apply to every slice holding at least ``min_slice_size`` labelled rows in the window;
  smaller slices are reported, never alerted on.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from airflow_mlops.alerts.delivery import Alert
from airflow_mlops.store.dates import days_ending, logical_date

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

__all__ = ["window_id", "previous_window_end", "join_ground_truth",
           "evaluate", "slice_performance", "relative_change", "performance_alerts", "watched_metrics",
           "slice_label", "GLOBAL", "SlicePerformance"]

#: The ``slice`` of a global (whole-window) result.
GLOBAL = None


class SlicePerformance(TypedDict):
    """One row of :func:`slice_performance`; the last three keys are added by
    :func:`airflow_mlops.monitoring.monitor.monitor_performance`."""

    column: str
    value: str | None  #: None for a slice column missing from the data
    slice: str | None  #: ``column=value``
    rows: int  #: labelled rows in the window
    metrics: dict[str, float]
    alertable: bool  #: ``rows >= min_size``
    note: NotRequired[str]  #: why it is not alertable
    previous_rows: NotRequired[int]  #: labelled rows of the slice in the previous window
    previous_metrics: NotRequired[dict[str, float]]
    alert: NotRequired[str | None]  #: the message of the slice's alert


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------
def window_id(end: str | dt.date, days: int) -> str:
    """``"<first date>..<last date>"`` of the window ending at ``end``."""
    dates = days_ending(end, days)
    return f"{dates[0]}..{dates[-1]}"


def previous_window_end(end: str | dt.date, days: int) -> str:
    """Last date of the window just before the one ending at ``end``."""
    return (logical_date(end) - dt.timedelta(days=days)).isoformat()


# --------------------------------------------------------------------------------------------
# join and metrics
# --------------------------------------------------------------------------------------------
def join_ground_truth(predictions: pd.DataFrame, truth: pd.DataFrame, keys: Sequence[str], target: str, *,
                      date_column: str = "logical_date", truth_date_column: str = "ds"
                      ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Inner join of prediction-log rows and ground truth on ``(date, *keys)``.

    ``predictions`` carries ``date_column`` (the log's ``logical_date``), ``truth`` carries
    ``truth_date_column`` (its partition date) and ``target``. Ground-truth rows with the same
    date and key are collapsed to the last one (a re-delivered label wins); their number is
    reported. Returns the joined frame (prediction columns + ``target``) and counts:
    ``predictions``, ``ground_truth``, ``duplicate_ground_truth``, ``joined``,
    ``unmatched_ground_truth`` (labels with no prediction), ``unlabelled_predictions``.
    """
    keys = list(keys)
    for what, df, cols in (("prediction log", predictions, [date_column, *keys]),
                           ("ground truth", truth, [truth_date_column, *keys, target])):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}")
    t = truth[[truth_date_column, *keys, target]].rename(columns={truth_date_column: date_column})
    t = t.assign(**{date_column: t[date_column].astype(str).str[:10]})
    n_truth = len(t)
    t = t.drop_duplicates([date_column, *keys], keep="last")
    p = predictions.assign(**{date_column: predictions[date_column].astype(str).str[:10]})
    if target in p.columns:
        p = p.drop(columns=[target])
    joined = p.merge(t, on=[date_column, *keys], how="inner", validate="many_to_one")
    stats = {
        "predictions": int(len(p)),
        "ground_truth": int(n_truth),
        "duplicate_ground_truth": int(n_truth - len(t)),
        "joined": int(len(joined)),
        "unmatched_ground_truth": int(len(t) - len(joined)),
        "unlabelled_predictions": int(len(p) - len(joined)),
    }
    return joined, stats


def evaluate(joined: pd.DataFrame, task: str, target: str, classes: Sequence[Any] | None = None,
             proba_columns: Sequence[str] | None = None) -> dict[str, float]:
    """:func:`~airflow_mlops.evaluation.metrics.compute_metrics` of ``prediction`` (and, for classifiers,
    the ``proba_<class>`` columns in ``classes`` order, which give ``roc_auc`` / ``log_loss``) against
    ``target``. Rows with a missing label or prediction are left out. Undefined metrics (e.g.
    ``roc_auc`` on a slice holding one class) are omitted."""
    from airflow_mlops.evaluation.metrics import compute_metrics

    cols = ["prediction", target, *(proba_columns or [])]
    df = joined[cols].dropna()
    if df.empty:
        return {}
    proba = None
    if task != "regression" and proba_columns and classes is not None and len(proba_columns) == len(classes):
        proba = df[list(proba_columns)].to_numpy(dtype="float64")
    y_true = df[target].to_numpy()
    y_pred = df["prediction"].to_numpy()
    if task != "regression" and classes is not None:
        y_true = _align_labels(y_true, classes)
        y_pred = _align_labels(y_pred, classes)
    return compute_metrics(task, y_true, y_pred, proba, list(classes) if classes is not None else None)


def _align_labels(values: Any, classes: Sequence[Any]) -> Any:
    """Labels as the same Python type as ``classes`` when they differ only in spelling (``1`` vs
    ``"1"``, ``1.0`` vs ``1``): ground truth read from CSV often has another dtype than the model's
    classes."""
    import numpy as np

    by_str = {_label_str(c): c for c in classes}
    out = [by_str.get(_label_str(v), v) for v in values.tolist()]
    return np.asarray(out, dtype=object) if any(isinstance(c, str) for c in classes) else np.asarray(out)


def _label_str(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def slice_label(column: str, value: Any) -> str:
    """The name of a slice in reports and alerts: ``"<column>=<value>"``."""
    return f"{column}={_label_str(value)}"


def slice_performance(joined: pd.DataFrame, slice_columns: Iterable[str], task: str, target: str,
                      classes: Sequence[Any] | None, proba_columns: Sequence[str] | None,
                      min_size: int) -> list[SlicePerformance]:
    """Metrics per value of each slice column: one row per slice, sorted by column then value.

    Each row: ``column``, ``value`` (a string), ``slice`` (``"column=value"``), ``rows`` (labelled
    rows in the window), ``metrics``, ``alertable`` (``rows >= min_size``) and, for small slices, a
    ``note``. A slice column missing from ``joined`` gives one row with ``value: null`` and a note.
    """
    out: list[SlicePerformance] = []
    for col in slice_columns:
        if col not in joined.columns:
            out.append({"column": col, "value": None, "slice": None, "rows": 0, "metrics": {}, "alertable": False,
                        "note": f"slice column {col!r} is neither in the prediction log nor in the scoring input"})
            continue
        groups = sorted(((_label_str(v), g) for v, g in joined.groupby(col, sort=False, observed=True, dropna=True)),
                        key=lambda kv: kv[0])
        for value, g in groups:
            row: SlicePerformance = {"column": col, "value": value, "slice": f"{col}={value}", "rows": int(len(g)),
                                     "metrics": evaluate(g, task, target, classes, proba_columns),
                                     "alertable": len(g) >= min_size}
            if not row["alertable"]:
                row["note"] = f"fewer than {min_size} labelled rows (monitoring.min_slice_size): reported, not alerted"
            out.append(row)
    return out


# --------------------------------------------------------------------------------------------
# alert rules
# --------------------------------------------------------------------------------------------
def relative_change(current: float | None, previous: float | None) -> float | None:
    """``(current - previous) / |previous|``; ``None`` when either is missing or previous is 0."""
    if current is None or previous is None or previous == 0:
        return None
    value = (current - previous) / abs(previous)
    return value if math.isfinite(value) else None


def watched_metrics(primary: str, floors: Mapping[str, float], ceilings: Mapping[str, float]) -> list[str]:
    """Metrics checked for relative change: the primary metric, then every metric with a floor or a
    ceiling (resource metrics such as ``latency_*`` excluded: they are not computed from labels)."""
    from airflow_mlops.evaluation.metrics import is_resource_metric

    names = [primary, *floors, *(m for m in ceilings if not is_resource_metric(m))]
    return list(dict.fromkeys(names))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _breaches(metrics: Mapping[str, float], previous: Mapping[str, float] | None, floors: Mapping[str, float],
              ceilings: Mapping[str, float], watched: Sequence[str], max_relative_change: float | None
              ) -> list[dict[str, Any]]:
    from airflow_mlops.evaluation.metrics import is_resource_metric

    found: list[dict[str, Any]] = []
    for metric, floor in floors.items():
        value = metrics.get(metric)
        if value is not None and value < floor:
            found.append({"rule": "floor", "metric": metric, "value": value, "threshold": float(floor),
                          "text": f"{metric} {_fmt(value)} is below its floor {_fmt(float(floor))}"})
    for metric, ceiling in ceilings.items():
        value = metrics.get(metric)
        if not is_resource_metric(metric) and value is not None and value > ceiling:
            found.append({"rule": "ceiling", "metric": metric, "value": value, "threshold": float(ceiling),
                          "text": f"{metric} {_fmt(value)} is above its ceiling {_fmt(float(ceiling))}"})
    if max_relative_change is not None and previous:
        for metric in watched:
            cur, prev = metrics.get(metric), previous.get(metric)
            change = relative_change(cur, prev)
            if change is not None and abs(change) > max_relative_change:
                direction = "rose" if change > 0 else "dropped"
                found.append({"rule": "relative_change", "metric": metric, "value": change,
                              "threshold": float(max_relative_change), "current": cur, "previous": prev,
                              "direction": "rise" if change > 0 else "drop",
                              "text": (f"{metric} {direction} by {abs(change):.1%} vs the previous window "
                                       f"({_fmt(prev)} -> {_fmt(cur)}; limit ±{max_relative_change:.0%})")})
    return found


def performance_alerts(
    model: str,
    window: str,
    metrics: Mapping[str, float],
    *,
    rows: int,
    previous: Mapping[str, float] | None = None,
    previous_window: str | None = None,
    floors: Mapping[str, float] | None = None,
    ceilings: Mapping[str, float] | None = None,
    primary: str = "roc_auc",
    max_relative_change: float | None = None,
    slices: Sequence[Mapping[str, Any]] = (),
    previous_slices: Sequence[Mapping[str, Any]] = (),
    report_uri: str | None = None,
) -> list[Alert]:
    """The performance alerts of one window: at most one per scope (the whole data, each slice).

    Rules, per scope: a metric below its floor; a (non-resource) metric above its ceiling; a
    watched metric (:func:`watched_metrics`) whose :func:`relative_change` from the previous
    window exceeds ``max_relative_change`` in absolute value (a rise alerts as well as a drop).
    Slices must be ``alertable`` (enough rows) in the current window — and, for the relative-change
    rule, in the previous one. All breaches of a scope go into one alert (check ``performance``);
    its ``value`` / ``threshold`` are those of the first breach (floors and ceilings before relative
    changes) and ``details["breaches"]`` lists them all.
    """
    floors = dict(floors or {})
    ceilings = dict(ceilings or {})
    watched = watched_metrics(primary, floors, ceilings)
    prev_by_slice = {s.get("slice"): s for s in previous_slices if s.get("slice") and s.get("alertable")}
    scopes: list[tuple[str | None, Mapping[str, float], Mapping[str, float] | None, int]] = [
        (GLOBAL, metrics, previous, rows)]
    for s in slices:
        if not s.get("alertable") or not s.get("slice"):
            continue
        prev = prev_by_slice.get(s["slice"])
        scopes.append((s["slice"], s.get("metrics") or {}, (prev or {}).get("metrics"), int(s.get("rows", 0))))
    alerts: list[Alert] = []
    for slice_name, m, prev, n in scopes:
        found = _breaches(m, prev, floors, ceilings, watched, max_relative_change)
        if not found:
            continue
        first = found[0]
        where = f"{model} slice {slice_name}" if slice_name else model
        message = (f"{where}, window {window} ({n} labelled rows): " + "; ".join(b["text"] for b in found))
        details = {"metric": first["metric"], "rule": first["rule"], "rows": n,
                   "breaches": [{k: v for k, v in b.items() if k != "text"} for b in found],
                   "metrics": dict(m)}
        if prev is not None:
            details["previous_metrics"] = dict(prev)
            details["previous_window"] = previous_window
        alerts.append(Alert(model=model, check="performance", window=window, value=first["value"],
                                  threshold=first["threshold"], message=message, report_uri=report_uri,
                                  slice=slice_name, details=details))
    return alerts
