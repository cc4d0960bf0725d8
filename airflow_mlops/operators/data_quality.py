"""DataQualityMonitorOperator: freshness, volume and duplicate-delivery checks of the day's input partition.

The logic is :func:`check_data_quality` (plain function, testable without a scheduler); the verdicts
come from :mod:`airflow_mlops.ml.freshness`; alerts go through :func:`airflow_mlops.alerts.raise_alert`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.operators.base import MLOpsBaseOperator, fail

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_mlops.hooks.datasets import Dataset
    from airflow_mlops.hooks.storage import ArtifactStore
    from airflow_mlops.ml.config import ModelConfig

__all__ = ["DATA_QUALITY_CHECKS", "DataQualityMonitorOperator", "check_data_quality", "data_quality_key",
           "monitored_dataset", "partition_stats"]

log = logging.getLogger(__name__)

#: the alert checks this monitor raises
DATA_QUALITY_CHECKS = ("freshness", "volume", "duplicate")


def data_quality_key(model: str, ds: str) -> str:
    """``monitoring/<model>/ds=<ds>/data_quality.json``."""
    return f"monitoring/{model}/ds={str(ds)[:10]}/data_quality.json"


def monitored_dataset(config: ModelConfig, store: ArtifactStore, dataset: str | None = None) -> Dataset:
    """The partitioned dataset checked: ``dataset`` (a name under ``<root>/data/``) when given, else the
    model's scoring dataset (``data.scoring_dataset``), else its input dataset (``data.dataset``/``data.uri``)."""
    from airflow_mlops.hooks.datasets import Dataset, Locations

    if dataset:
        return Dataset.for_name(store, dataset, config.data.format)
    return Locations(config, store).scoring


def partition_stats(dataset: Dataset, ds: str, keys: Sequence[str] = ()) -> dict[str, Any] | None:
    """``{"rows", "content_hash", "schema_hash", "files"}`` of a partition; ``None`` when it has no data file.

    The content hash is :func:`~airflow_mlops.ml.fingerprint.fingerprint_table` with the key columns
    present (rows canonically ordered), so the same data re-delivered under another file name, split
    or row order hashes the same.
    """
    from airflow_mlops.hooks.datasets import DataError
    from airflow_mlops.ml.fingerprint import fingerprint_table

    files = dataset.files(ds)
    if not files:
        return None
    names = [f.rsplit("/", 1)[-1] for f in files]
    try:
        table = dataset.read_table(ds)
    except DataError as e:
        if " is empty (0 rows" in str(e):
            return {"rows": 0, "content_hash": None, "schema_hash": None, "files": names}
        raise
    fp = fingerprint_table(table, keys=[k for k in keys if k in table.column_names])
    return {"rows": int(table.num_rows), "content_hash": fp["content_hash"], "schema_hash": fp["schema_hash"],
            "files": names}


def _history_stats(config: ModelConfig, store: ArtifactStore, dataset: Dataset, dates: Sequence[str],
                   present: set[str]) -> dict[str, dict[str, Any]]:
    """Stats of earlier partitions: from their own ``data_quality.json`` when it describes the same
    files, else computed now."""
    from airflow_mlops.hooks.datasets import DataError
    from airflow_mlops.hooks.storage import ArtifactNotFoundError, StorageError

    out: dict[str, dict[str, Any]] = {}
    for d in dates:
        if d not in present:
            continue
        names = [f.rsplit("/", 1)[-1] for f in dataset.files(d)]
        if not names:
            continue
        try:
            cached = (store.read_json(data_quality_key(config.name, d)) or {}).get("partition") or {}
        except (ArtifactNotFoundError, StorageError):
            cached = {}
        if cached.get("files") == names and "rows" in cached:
            out[d] = cached
            continue
        try:
            stats = partition_stats(dataset, d, config.keys)
        except DataError as e:  # an unreadable earlier day is left out of the baseline, not fatal
            log.warning("data quality: earlier partition %s left out of the baseline: %s", dataset.uri(d), e)
            continue
        if stats is not None:
            out[d] = stats
    return out


def check_data_quality(config: ModelConfig, store: ArtifactStore, ds: str, *, dataset: str | None = None,
                       now: dt.datetime | None = None, context: Mapping | None = None,
                       run_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Freshness, volume and duplicate checks of the partition ``ds``; one alert per failing check.

    Uses ``monitoring.freshness_deadline_hours``, ``volume_window_days``, ``volume_min_ratio``,
    ``volume_max_ratio`` and ``volume_max_z``. Writes the summary to
    ``monitoring/<model>/ds=<ds>/data_quality.json`` (replaced on a re-run; the alerts are
    deduplicated by :func:`~airflow_mlops.alerts.raise_alert`, so a re-run sends nothing new).

    Returns:
        the summary: ``status`` (``ok`` / ``alert`` / ``waiting``), ``partition``, ``freshness``,
        ``volume``, ``duplicate``, ``alerts`` (check, delivered, error) and ``report_uri``.
        Delivery errors are listed, not raised (the operator raises after the summary is written).
    """
    from airflow_mlops.alerts import Alert, raise_alert
    from airflow_mlops.ml.freshness import duplicate_check, freshness_check, trailing_dates, volume_check

    ds = str(ds)[:10]
    mon = config.monitoring
    data = monitored_dataset(config, store, dataset)
    key = data_quality_key(config.name, ds)
    report_uri = store.uri(key)
    part_uri = data.uri(ds)
    today = partition_stats(data, ds, config.keys)
    fresh = freshness_check(ds, today is not None, mon.freshness_deadline_hours, now=now)

    summary: dict[str, Any] = {
        "model": config.name, "ds": ds, "dataset_uri": data.uri(), "partition_uri": part_uri,
        "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(), "run": dict(run_info or {}),
        "partition": {"present": today is not None, **(today or {})},
        "freshness": fresh, "volume": None, "duplicate": None, "report_uri": report_uri, "alerts": [],
    }
    alerts: list[Alert] = []
    if today is None:
        if fresh["alert"]:
            alerts.append(Alert(
                model=config.name, check="freshness", window=ds, value="missing",
                threshold=f"by {fresh['deadline']}", report_uri=report_uri,
                message=(f"Partition {part_uri} has not arrived {fresh['hours_late']:.1f} h after its deadline "
                         f"({mon.freshness_deadline_hours:g} h after the end of {ds}). Ask the upstream owner to "
                         "deliver it, then re-run this day."),
                details={"partition_uri": part_uri, "deadline": fresh["deadline"], "hours_late": fresh["hours_late"]}))
    else:
        present = set(data.partitions())
        window = trailing_dates(ds, mon.volume_window_days)
        history = _history_stats(config, store, data, window, present)
        vol = volume_check(today["rows"], {d: s["rows"] for d, s in history.items()},
                           min_ratio=mon.volume_min_ratio, max_ratio=mon.volume_max_ratio, max_z=mon.volume_max_z)
        vol["history"] = {d: s["rows"] for d, s in sorted(history.items())}
        vol["window_days"] = mon.volume_window_days
        dup = duplicate_check(today.get("content_hash"), {d: s.get("content_hash") for d, s in history.items()})
        summary["volume"], summary["duplicate"] = vol, dup
        if vol["alert"]:
            by_z = vol["ratio"] is not None and mon.volume_min_ratio <= vol["ratio"] <= mon.volume_max_ratio
            value = vol["z"] if by_z else (vol["ratio"] if vol["ratio"] is not None else "inf")
            threshold = mon.volume_max_z if by_z else (mon.volume_min_ratio if vol["status"] == "low"
                                                       else mon.volume_max_ratio)
            what = "z-score" if by_z else "rows / trailing median"
            alerts.append(Alert(
                model=config.name, check="volume", window=ds, value=value, threshold=threshold, report_uri=report_uri,
                message=(f"Partition {part_uri} has {vol['rows']} rows, {what} {value} "
                         f"({'below' if vol['status'] == 'low' else 'above'} {threshold}); the median of the "
                         f"{vol['n_history']} earlier day(s) in the last {mon.volume_window_days} is "
                         f"{vol['median']:g}. Check the upstream extract for a partial or doubled delivery."),
                details={k: vol[k] for k in ("rows", "median", "mean", "sd", "ratio", "z", "n_history", "status")}))
        if dup["alert"]:
            first = dup["duplicate_of"][0]
            alerts.append(Alert(
                model=config.name, check="duplicate", window=ds, value=f"same content as {first}",
                threshold="content differs from every earlier day", report_uri=report_uri,
                message=(f"Partition {part_uri} has exactly the same content (hash "
                         f"{today['content_hash'][:16]}…, {today['rows']} rows) as ds={', ds='.join(dup['duplicate_of'])}: "
                         "a re-delivered file. Replace it with the day's data and re-run this day."),
                details={"duplicate_of": dup["duplicate_of"], "content_hash": today["content_hash"],
                         "rows": today["rows"]}))

    summary["status"] = "alert" if alerts else ("waiting" if fresh["status"] == "waiting" else "ok")
    summary["alerts"] = [{"check": a.check, "value": a.value, "threshold": a.threshold, "delivered": None}
                         for a in alerts]
    store.write_json(key, summary)  # the report exists before any alert links to it
    if alerts:
        for entry, alert in zip(summary["alerts"], alerts):
            try:
                entry["delivered"] = raise_alert(config, store, alert, context=context)
            except Exception as e:  # noqa: BLE001 - recorded; the operator fails after the summary is written
                entry["delivered"] = False
                entry["error"] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:400]}"
        store.write_json(key, summary)
    log.info("data quality of %s ds=%s: %s (rows=%s, volume=%s, duplicate=%s, freshness=%s); summary %s",
             config.name, ds, summary["status"], summary["partition"].get("rows"),
             (summary["volume"] or {}).get("status"), (summary["duplicate"] or {}).get("status"),
             fresh["status"], report_uri)
    return summary


class DataQualityMonitorOperator(MLOpsBaseOperator):
    """Freshness, volume and duplicate-delivery checks of the day's input partition, each with its own alert.

    * **freshness** — the partition is missing ``monitoring.freshness_deadline_hours`` after the end of
      the logical day: alert, then the task fails (no retry). Missing before the deadline: the task
      fails with a retryable error naming the deadline.
    * **volume** — rows / trailing median of the last ``monitoring.volume_window_days`` days outside
      ``[volume_min_ratio, volume_max_ratio]`` (or ``|z| > volume_max_z`` when set): alert.
    * **duplicate** — the canonical content hash equals an earlier day's (a re-delivered file): alert.

    Alerts are routed by the model's ``alerts`` config and sent once per (model, check, day). The
    summary goes to ``<root>/monitoring/<model>/ds=<ds>/data_quality.json``; a small dict to XCom.

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

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException

        from airflow_mlops.alerts import AlertDeliveryError
        from airflow_mlops.hooks.datasets import DataError

        ds = self.logical_ds(context)
        try:
            summary = check_data_quality(self.config, self.store, ds, dataset=self.dataset, context=context,
                                         run_info=self.run_info(context))
        except DataError as e:
            fail(f"data quality check of {self.config.name} ds={ds}: {e}")
            raise
        out = {"status": summary["status"], "ds": ds, "rows": summary["partition"].get("rows"),
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
