"""Reproducibility check: retrain a registered version from its metadata and compare the results.

:func:`reproduce_version` reads only what registration recorded in ``metadata.json``:

* the config snapshot (``config``: estimator + params, CV folds, split, seed, features, target),
* the training data (``training_data``: dataset URI, the exact partitions read, the fingerprint),
* the metrics (CV mean/std, holdout, naive baseline, per class) and the library versions,

re-reads the same partitions, checks the data fingerprint, retrains with the existing training
function (:func:`airflow_mlops.training.trainer.train_model`, same seed) and compares every recorded
metric (recorded, reproduced, absolute difference) within a tolerance, plus the holdout
predictions stored with the version (``holdout.parquet``). The reproduced model is **not**
registered. Verdicts:

``reproduced``
    the data fingerprint matches and every metric is within the tolerance.
``mismatch``
    same data, different metrics: the report lists each metric off by more than the tolerance and
    every library whose version differs from the recorded one (the usual cause).
``data_changed``
    the input is not the data the version was trained on (fingerprint differs, a partition is
    missing): "data changed: fingerprint X recorded, Y now". That is a data event, not a model
    problem, so the model is not retrained.

The report JSON is attached to the version as ``reports/reproduce-<UTC timestamp>.json`` (the
registry's reports are append-only: every check keeps its own report). The pure comparison helpers
(:func:`compare_metrics`, :func:`library_differences`) have no Airflow or storage dependency.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

if TYPE_CHECKING:
    from airflow_mlops.config.model import ModelConfig
    from airflow_mlops.registry.model_registry import ModelRegistry

log = logging.getLogger(__name__)

#: Default absolute tolerance per metric.
DEFAULT_TOLERANCE = 1e-9

VERDICTS = ("reproduced", "mismatch", "data_changed")


class MetricComparison(TypedDict):
    """One row of :func:`compare_metrics`."""

    metric: str  #: the flattened metric name, e.g. ``cv.roc_auc.mean``
    recorded: Any
    reproduced: Any
    abs_diff: float | None  #: None when not numeric or missing on one side
    within_tolerance: bool


class LibraryDifference(TypedDict):
    """One row of :func:`library_differences`."""

    library: str
    recorded: str | None
    current: str | None


class ReproduceXCom(TypedDict):
    """The XCom of ``ReproduceModelOperator`` (and the CLI's short output): :func:`summary_for_xcom` of a
    :func:`reproduce_version` report."""

    model: str
    version: int
    verdict: Literal["reproduced", "mismatch", "data_changed"]  #: one of :data:`VERDICTS`
    summary: str
    tolerance: float
    max_abs_diff: float | None  #: None when the data changed (nothing was compared)
    report_uri: str | None  #: None when the report was not written
    metrics_off: list[str]  #: metrics off by more than the tolerance
    libraries_differing: list[str]
    data_changed: bool


class ReproduceError(ValueError):
    """The version lacks what a reproduction needs (no training data URI, no config snapshot)."""


# --------------------------------------------------------------------------------------------
# pure comparison helpers
# --------------------------------------------------------------------------------------------
def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"cv": {"roc_auc": {"mean": .9}}}`` -> ``{"cv.roc_auc.mean": .9}`` (leaves only)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_metrics(v, key + "."))
        else:
            out[key] = v
    return out


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):  # non-finite floats are stored as strings in metadata.json
        try:
            return float(v)
        except ValueError:
            return None
    return None


def compare_metrics(recorded: Mapping[str, Any], reproduced: Mapping[str, Any],
                    tolerance: float = DEFAULT_TOLERANCE) -> list[MetricComparison]:
    """One row per metric leaf present on either side: ``metric``, ``recorded``, ``reproduced``,
    ``abs_diff`` (None when not numeric or missing on one side) and ``within_tolerance``.
    NaN equals NaN (a metric undefined both times is reproduced)."""
    rec, rep = flatten_metrics(recorded), flatten_metrics(reproduced)
    rows: list[MetricComparison] = []
    for key in sorted(set(rec) | set(rep)):
        a, b = rec.get(key), rep.get(key)
        fa, fb = _number(a), _number(b)
        if key not in rec or key not in rep:
            diff, ok = None, False
        elif fa is not None and fb is not None:
            if math.isnan(fa) and math.isnan(fb):
                diff, ok = 0.0, True
            else:
                diff = abs(fa - fb)
                ok = diff <= tolerance
        else:
            diff, ok = None, a == b
        rows.append({"metric": key, "recorded": a, "reproduced": b, "abs_diff": diff, "within_tolerance": bool(ok)})
    return rows


def library_differences(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[LibraryDifference]:
    """Libraries whose version differs between the recorded environment and this one."""
    return [{"library": lib, "recorded": recorded.get(lib), "current": current.get(lib)}
            for lib in sorted(set(recorded) | set(current)) if recorded.get(lib) != current.get(lib)]


# --------------------------------------------------------------------------------------------
# the check
# --------------------------------------------------------------------------------------------
def _config_from_metadata(meta: dict[str, Any], name: str, version: int,
                          fallback: ModelConfig | None) -> tuple[ModelConfig, str]:
    from airflow_mlops.config.parser import parse_model_config

    snapshot = meta.get("config")
    if snapshot:
        return parse_model_config(snapshot, source=f"<metadata.json of {name} v{version}>"), "metadata.json"
    if fallback is not None:
        return fallback, f"config file {fallback.source} (metadata.json of {name} v{version} has no snapshot)"
    raise ReproduceError(
        f"metadata.json of {name} v{version} has no config snapshot (registered before snapshots were "
        "recorded); pass the model config (ReproduceModelOperator config_path / CLI --config) to retrain with it"
    )


def _read_training_data(meta: dict[str, Any], config: ModelConfig,
                        conn_id: str | None) -> tuple[Any, list[str], list[str]]:
    """The recorded partitions of the recorded dataset URI, concatenated in the recorded order (the
    order :meth:`Dataset.read_window` produced at training time). Returns ``(frame or None,
    partitions read, partitions missing now)``."""
    import pandas as pd

    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import PARTITION_DATE_COLUMN, Dataset

    td = meta["training_data"]
    dataset = Dataset(ArtifactStore(td["uri"], conn_id=config.data.conn_id or conn_id), "", config.data.format)
    present = set(dataset.partitions())
    wanted = list(td.get("partitions") or [])
    time_split = config.training.split == "time"  # the time split needs each row's partition date
    if not wanted and td.get("window_end"):  # partitions not recorded: the window the pipeline reads
        df, dates = dataset.read_window(td["window_end"], config.data.training_window_days, require_end=False,
                                        partition_column=PARTITION_DATE_COLUMN if time_split else None)
        return df, dates, []
    missing = [d for d in wanted if d not in present or not dataset.exists(d)]
    read = [d for d in wanted if d not in missing]
    if not read:
        return None, read, missing
    frames = [dataset.read(d) for d in read]
    if time_split:
        frames = [f.assign(**{PARTITION_DATE_COLUMN: d}) for f, d in zip(frames, read)]
    return pd.concat(frames, ignore_index=True), read, missing


def _holdout_check(registry: ModelRegistry, name: str, version: int, result: Any,
                   tolerance: float) -> dict[str, Any] | None:
    """The reproduced holdout predictions (labels/values exactly, probabilities within ``tolerance``)
    vs the ones stored with the version (``holdout.parquet``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_mlops.registry.model_registry import RegistryError
    from airflow_mlops.store.artifacts import StorageError

    try:
        stored = pq.read_table(pa.BufferReader(registry.read_artifact(name, version, "holdout.parquet"))).to_pandas()
    except (RegistryError, StorageError):
        return None
    if "_training_prediction" not in stored.columns:
        return None
    recorded = stored["_training_prediction"].to_numpy()
    now = np.asarray(result.holdout_predictions)
    if len(recorded) != len(now):
        return {"rows_recorded": int(len(recorded)), "rows_reproduced": int(len(now)), "identical": False}
    same_keys = True
    keys = [k for k in result.keys if k in stored.columns and k in result.holdout.columns]
    if keys:
        same_keys = bool((stored[keys].reset_index(drop=True) == result.holdout[keys].reset_index(drop=True))
                         .all(axis=None))
    out: dict[str, Any] = {"rows": int(len(now)), "same_rows": same_keys}
    if np.issubdtype(recorded.dtype, np.number) and np.issubdtype(now.dtype, np.number):
        diff = np.abs(recorded.astype("float64") - now.astype("float64"))
        out["max_abs_diff"] = float(np.nanmax(diff)) if len(diff) else 0.0
        out["differing"] = int((diff > tolerance).sum())
    else:
        out["differing"] = int((recorded != now).sum())
    proba_cols = [c for c in stored.columns if c.startswith("_training_proba_")]
    proba_now = getattr(result, "holdout_proba", None)
    if proba_cols and proba_now is not None and result.classes is not None:
        from airflow_mlops.training.steps import category_label

        labels = [f"_training_proba_{category_label(c)}" for c in result.classes]
        if labels == proba_cols:
            diff = np.abs(stored[proba_cols].to_numpy(dtype="float64") - np.asarray(proba_now, dtype="float64"))
            out["proba_max_abs_diff"] = float(np.nanmax(diff)) if diff.size else 0.0
    out["identical"] = bool(same_keys and out["differing"] == 0 and out.get("proba_max_abs_diff", 0.0) <= tolerance)
    return out


def reproduce_version(registry: ModelRegistry, name: str, version: int, *, tolerance: float = DEFAULT_TOLERANCE,
                      config: ModelConfig | None = None, write_report: bool = True,
                      actor: str | None = None) -> dict[str, Any]:
    """Retrain ``name`` v``version`` from its metadata and compare (see the module docstring).

    :param config: used only when metadata.json has no config snapshot.
    :param write_report: attach the report as ``reports/reproduce-<timestamp>.json``.
    :returns: the report (``verdict``, ``summary``, ``metrics`` rows, ``max_abs_diff``,
        ``predictions``, ``data``, ``libraries``, ``report_uri``).
    """
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import pop_partition_dates
    from airflow_mlops.store.fingerprint import fingerprint_table
    from airflow_mlops.training.trainer import library_versions, train_model

    if not (tolerance >= 0):
        raise ReproduceError(f"tolerance must be >= 0, got {tolerance!r}")
    started = time.perf_counter()
    meta = registry.get_metadata(name, version)
    td = meta.get("training_data") or {}
    if not td.get("uri"):
        raise ReproduceError(f"metadata.json of {name} v{version} records no training data URI "
                             "(training_data.uri); it was not registered by the training pipeline")
    cfg, config_source = _config_from_metadata(meta, name, version, config)
    recorded_fp = (td.get("fingerprint") or {})
    current_libs = library_versions()
    libs: dict[str, Any] = {"recorded": meta.get("libraries") or {}, "current": current_libs,
                            "differing": library_differences(meta.get("libraries") or {}, current_libs)}
    report: dict[str, Any] = {
        "model": name, "version": int(version), "tolerance": float(tolerance),
        "reproduced_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reproduced_by": actor, "config_source": config_source, "seed": cfg.training.seed,
        "recorded_seed": (meta.get("split") or {}).get("seed"), "libraries": libs,
        "registered": False,
    }

    df, read, missing = _read_training_data(meta, cfg, registry.store.conn_id)
    row_dates = None
    if df is not None:
        df, row_dates = pop_partition_dates(df)
    current_fp = fingerprint_table(df, keys=list(cfg.keys)) if df is not None else None
    data = {"uri": td["uri"], "partitions": td.get("partitions"), "missing_partitions": missing,
            "recorded_fingerprint": recorded_fp.get("content_hash"),
            "current_fingerprint": (current_fp or {}).get("content_hash"),
            "rows_recorded": recorded_fp.get("rows"), "rows_now": (current_fp or {}).get("rows"),
            "schema_changed": bool(current_fp and recorded_fp.get("schema_hash")
                                   and current_fp.get("schema_hash") != recorded_fp.get("schema_hash"))}
    changed = bool(missing) or data["current_fingerprint"] != data["recorded_fingerprint"]
    data["changed"] = changed
    report["data"] = data
    if changed:
        msg = (f"data changed: fingerprint {data['recorded_fingerprint']} recorded, "
               f"{data['current_fingerprint'] or 'none (no data)'} now")
        if missing:
            msg += f"; partition(s) {missing} of {td['uri']} missing now"
        if data["rows_recorded"] != data["rows_now"]:
            msg += f"; {data['rows_recorded']} rows recorded, {data['rows_now']} now"
        if data["schema_changed"]:
            msg += "; the schema changed"
        report.update({
            "verdict": "data_changed", "metrics": [], "max_abs_diff": None, "predictions": None,
            "summary": msg + (". The input is not the data this version was trained on, so its metrics cannot be "
                              "reproduced; this is a data event, not a model problem (see the lineage of the "
                              "dataset: python -m airflow_mlops.cli lineage <uri>)."),
        })
    else:
        # metrics and predictions are compared, not importance
        result = train_model(cfg, df, importance=False, row_dates=row_dates)
        reproduced = result.summary()
        rows = compare_metrics(meta.get("metrics") or {}, reproduced["metrics"], tolerance)
        diffs = [r["abs_diff"] for r in rows if r["abs_diff"] is not None]
        bad = [r for r in rows if not r["within_tolerance"]]
        predictions = _holdout_check(registry, name, version, result, tolerance)
        params_match = reproduced.get("params") == meta.get("params") and \
            reproduced.get("best_params") == meta.get("best_params")
        report.update({"metrics": rows, "max_abs_diff": max(diffs) if diffs else 0.0,
                       "predictions": predictions, "params_match": bool(params_match)})
        if not bad and (predictions is None or predictions.get("identical", True)):
            exact = all(r["abs_diff"] in (0.0, None) for r in rows)
            report["verdict"] = "reproduced"
            report["summary"] = (f"{name} v{version} reproduced: {len(rows)} metric(s) "
                                 f"{'identical' if exact else 'within ' + format(tolerance, 'g')} "
                                 f"(max abs diff {report['max_abs_diff']:.3g})"
                                 + (f", {predictions['rows']} holdout predictions identical" if predictions else ""))
        else:
            parts = [f"{r['metric']} recorded {r['recorded']}, reproduced {r['reproduced']}"
                     + (f" (abs diff {r['abs_diff']:.3g})" if r["abs_diff"] is not None else "") for r in bad[:5]]
            if predictions and not predictions.get("identical", True):
                parts.append(f"{predictions.get('differing')} holdout prediction(s) differ")
            libs_txt = (", ".join(f"{d['library']} {d['recorded']} recorded, {d['current']} now"
                                  for d in libs["differing"]) or "none")
            report["verdict"] = "mismatch"
            report["summary"] = (f"{name} v{version} NOT reproduced on the same data (fingerprint matches): "
                                 f"{len(bad)} metric(s) off by more than {tolerance:g}: " + "; ".join(parts)
                                 + f". Library versions that differ from the recorded ones: {libs_txt}.")
    report["seconds"] = round(time.perf_counter() - started, 3)
    if write_report:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        report["report_uri"] = registry.version_uri(name, version, f"reports/reproduce-{stamp}.json")
        registry.add_report(name, version, f"reproduce-{stamp}.json", ArtifactStore.dumps(report))
    log.info("reproduce %s v%s: %s", name, version, report["summary"])
    return report


def summary_for_xcom(report: Mapping[str, Any]) -> ReproduceXCom:
    """The small part of a report for XCom / the CLI's short output."""
    keys = ("model", "version", "verdict", "summary", "tolerance", "max_abs_diff", "report_uri")
    out = {k: report.get(k) for k in keys}
    out["metrics_off"] = [r["metric"] for r in report.get("metrics") or [] if not r["within_tolerance"]]
    out["libraries_differing"] = [d["library"] for d in (report.get("libraries") or {}).get("differing", [])]
    out["data_changed"] = bool((report.get("data") or {}).get("changed"))
    return cast(ReproduceXCom, out)


__all__ = ["DEFAULT_TOLERANCE", "LibraryDifference", "MetricComparison", "ReproduceError", "ReproduceXCom", "VERDICTS",
           "compare_metrics", "flatten_metrics", "library_differences", "reproduce_version", "summary_for_xcom"]
