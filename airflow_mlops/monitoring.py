"""Monitoring steps as plain functions: drift of a scored partition against the reference of the
model version that scored it. Outputs go to ``<root>/monitoring/<model>/ds=<ds>/``."""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from airflow_mlops.hooks.datasets import DataError, Dataset, partition_name
from airflow_mlops.hooks.registry import ModelRegistry
from airflow_mlops.hooks.storage import ArtifactNotFoundError, ArtifactStore, join

if TYPE_CHECKING:
    from airflow_mlops.ml.config import ModelConfig

log = logging.getLogger(__name__)


def monitoring_prefix(model: str, ds: str) -> str:
    return join("monitoring", model, partition_name(ds))


def drift_key(model: str, ds: str) -> str:
    return join(monitoring_prefix(model, ds), "drift.json")


def read_drift_summary(store: ArtifactStore, model: str, ds: str) -> dict | None:
    try:
        return store.read_json(drift_key(model, ds))
    except ArtifactNotFoundError:
        return None


def detect_drift(config: ModelConfig, store: ArtifactStore, ds: str, *, run_info: dict[str, Any] | None = None,
                 html: bool = True) -> dict[str, Any]:
    """Drift of the day's scored inputs vs the reference stored with the version that scored them.

    Features come from the scoring input partition, predictions from the prediction log (joined on
    the key columns). Writes ``drift.json`` (the summary) and ``drift.html`` (evidently's report)
    and returns the summary with their URIs.
    """
    from airflow_mlops.ml.drift import compute_drift

    name = config.name
    registry = ModelRegistry(store)
    predictions = Dataset(store, join("predictions", name))
    try:
        log_df = predictions.read(ds)
    except DataError as e:
        raise DataError(f"no prediction log to monitor for {name} on {ds}: {e}") from None
    scored = log_df[log_df["scored_by"].isin(["champion", "pinned", "canary"])] if "scored_by" in log_df else log_df
    if scored.empty:
        raise DataError(f"the prediction log {predictions.uri(ds)} has no model-scored rows (all fallback?)")
    version, n = Counter(scored["model_version"].astype(int)).most_common(1)[0]
    meta = registry.get_metadata(name, version)
    keys = list(meta.get("keys") or config.keys)
    features = list(meta["features"])
    inputs = Dataset.for_name(store, config.data.scoring, config.data.format).read(ds, columns=[*keys, *features])
    current = inputs.merge(scored.loc[scored["model_version"] == version, [*keys, "prediction"]], on=keys,
                           how="inner")
    reference = registry.load_reference(name, version)
    result = compute_drift(
        reference, current, numeric=list(meta.get("numeric_features") or []),
        categorical=list(meta.get("categorical_features") or []), prediction_column="prediction",
        threshold=config.drift.threshold, stattest_threshold=config.drift.stattest_threshold,
        sample_size=config.drift.sample_size, seed=config.training.seed, html=html,
    )
    summary = dict(result.summary)
    prefix = monitoring_prefix(name, ds)
    summary.update({"model": name, "version": int(version), "ds": ds, "rows_scored_by_version": int(n),
                    "input_uri": Dataset.for_name(store, config.data.scoring).uri(ds),
                    "predictions_uri": predictions.uri(ds), **(run_info or {})})
    if result.html is not None:
        summary["report_uri"] = store.write_bytes(join(prefix, "drift.html"), result.html.encode())
    summary["summary_uri"] = store.uri(join(prefix, "drift.json"))
    store.write_json(join(prefix, "drift.json"), summary)
    log.info("drift %s v%d %s: %d/%d features drifted (share %.2f, threshold %.2f) -> %s", name, version, ds,
             summary["n_drifted"], summary["n_features"], summary["share_drifted"], summary["threshold"],
             "DRIFT" if summary["dataset_drift"] else "no drift")
    return summary


def xcom_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The small part of a drift summary that goes to XCom."""
    keep = ("model", "version", "ds", "share_drifted", "n_drifted", "n_features", "threshold", "dataset_drift",
            "report_uri", "summary_uri")
    out = {k: summary.get(k) for k in keep}
    out["drifted_columns"] = [c["column"] for c in summary.get("columns", []) if c.get("drifted")]
    out["prediction_drift"] = (summary.get("prediction_drift") or {}).get("drifted")
    return out
