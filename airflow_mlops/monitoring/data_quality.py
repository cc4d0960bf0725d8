"""Data quality of an input dataset, per logical date: freshness (did the partition arrive), volume (row
count against the trailing window) and duplicates (the same content as an earlier partition). The verdicts
come from :mod:`airflow_mlops.validation.freshness`; alerts go through
:func:`airflow_mlops.alerts.delivery.raise_alert`; the day's record is ``monitoring/<model>/ds=<ds>/data_quality.json``.
See docs/data-quality.md."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Required, TypedDict

from airflow_mlops.store.dates import days_before, logical_ds
from airflow_mlops.store.layout import monitoring_key

if TYPE_CHECKING:
    from airflow_mlops.config.model import ModelConfig
    from airflow_mlops.store.artifacts import ArtifactStore
    from airflow_mlops.store.datasets import Dataset
    from airflow_mlops.validation.freshness import DuplicateCheck, FreshnessCheck

log = logging.getLogger(__name__)

#: the alert checks this monitor raises
DATA_QUALITY_CHECKS = ("freshness", "volume", "duplicate")


class PartitionStats(TypedDict):
    """What :func:`partition_stats` returns (``files``: the data files' names)."""

    rows: int
    content_hash: str | None  #: None for a partition of 0 rows
    schema_hash: str | None
    files: list[str]


class DataQualityPartition(TypedDict, total=False):
    """``partition`` of a :class:`DataQualitySummary`: ``present``, and the :class:`PartitionStats` when it is."""

    present: Required[bool]
    rows: int
    content_hash: str | None
    schema_hash: str | None
    files: list[str]


class DataQualityAlertRecord(TypedDict):
    """One alert of a :class:`DataQualitySummary` and whether it was delivered."""

    check: str  #: one of :data:`DATA_QUALITY_CHECKS`
    value: float | str | None
    threshold: float | str | None
    delivered: bool | None  #: None until sent; False: already sent, or its delivery failed (``error``)
    error: NotRequired[str]  #: why the delivery failed


class DataQualitySummary(TypedDict):
    """What :func:`check_data_quality` returns and writes to ``monitoring/<model>/ds=<ds>/data_quality.json``.

    ``volume`` and ``duplicate`` are None when the partition is missing. ``volume`` is
    :func:`~airflow_mlops.validation.freshness.volume_check`'s result plus ``history`` (date -> rows) and
    ``window_days``.
    """

    model: str
    ds: str
    dataset_uri: str
    partition_uri: str
    checked_at: str  #: ISO timestamp (UTC)
    run: dict[str, Any]  #: the run that checked (dag_id, run_id, task_id, ...)
    partition: DataQualityPartition
    freshness: FreshnessCheck
    volume: dict[str, Any] | None
    duplicate: DuplicateCheck | None
    report_uri: str  #: this summary's URI
    alerts: list[DataQualityAlertRecord]
    status: NotRequired[Literal["ok", "alert", "waiting"]]  #: set once the checks ran: always in the returned summary


class DataQualityXCom(TypedDict):
    """The XCom of ``DataQualityMonitorOperator``: the short form of a :class:`DataQualitySummary`."""

    status: Literal["ok", "alert", "waiting"]
    ds: str
    rows: int | None  #: None when the partition is missing
    alerts: list[str]  #: the checks that alerted
    report_uri: str


def data_quality_key(model: str, ds: str) -> str:
    """``monitoring/<model>/ds=<ds>/data_quality.json``."""
    return monitoring_key(model, ds, "data_quality.json")


def monitored_dataset(config: ModelConfig, store: ArtifactStore, dataset: str | None = None) -> Dataset:
    """The partitioned dataset checked: ``dataset`` (a name under ``<root>/data/``) when given, else the
    model's scoring dataset (``data.scoring_dataset``), else its input dataset (``data.dataset``/``data.uri``)."""
    from airflow_mlops.config.locations import Locations
    from airflow_mlops.store.datasets import Dataset

    if dataset:
        return Dataset.for_name(store, dataset, config.data.format)
    return Locations(config, store).scoring


def partition_stats(dataset: Dataset, ds: str, keys: Sequence[str] = ()) -> PartitionStats | None:
    """``{"rows", "content_hash", "schema_hash", "files"}`` of a partition; ``None`` when it has no data file.

    The content hash is :func:`~airflow_mlops.store.fingerprint.fingerprint_table` with the key columns
    present (rows canonically ordered), so the same data re-delivered under another file name, split
    or row order hashes the same.
    """
    from airflow_mlops.store.datasets import EmptyPartitionError
    from airflow_mlops.store.fingerprint import fingerprint_table

    files = dataset.files(ds)
    if not files:
        return None
    names = [f.rsplit("/", 1)[-1] for f in files]
    try:
        table = dataset.read_table(ds)
    except EmptyPartitionError:
        return {"rows": 0, "content_hash": None, "schema_hash": None, "files": names}
    fp = fingerprint_table(table, keys=[k for k in keys if k in table.column_names])
    return {"rows": int(table.num_rows), "content_hash": fp["content_hash"], "schema_hash": fp["schema_hash"],
            "files": names}


def _history_stats(config: ModelConfig, store: ArtifactStore, dataset: Dataset, dates: Sequence[str],
                   present: set[str]) -> dict[str, PartitionStats]:
    """Stats of earlier partitions: from their own ``data_quality.json`` when it describes the same
    files, else computed now."""
    from airflow_mlops.store.artifacts import ArtifactNotFoundError, StorageError
    from airflow_mlops.store.datasets import DataError

    out: dict[str, PartitionStats] = {}
    for d in dates:
        if d not in present:
            continue
        names = [f.rsplit("/", 1)[-1] for f in dataset.files(d)]
        if not names:
            continue
        cached: Any  # the "partition" record of that day's data_quality.json
        try:
            cached = (store.read_json(data_quality_key(config.name, d)) or {}).get("partition") or {}
        except (ArtifactNotFoundError, StorageError):
            cached = {}
        # a SQL day has no files whose names would change with its rows: always counted again
        if dataset.fmt != "sql" and cached.get("files") == names and "rows" in cached:
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
                       now: dt.datetime | None = None, context: Mapping[str, Any] | None = None,
                       run_info: Mapping[str, Any] | None = None) -> DataQualitySummary:
    """Freshness, volume and duplicate checks of the partition ``ds``; one alert per failing check.

    Uses ``monitoring.freshness_deadline_hours``, ``volume_window_days``, ``volume_min_ratio``,
    ``volume_max_ratio`` and ``volume_max_z``. Writes the summary to
    ``monitoring/<model>/ds=<ds>/data_quality.json`` (replaced on a re-run; the alerts are
    deduplicated by :func:`~airflow_mlops.alerts.delivery.raise_alert`, so a re-run sends nothing new).

    Returns:
        the summary: ``status`` (``ok`` / ``alert`` / ``waiting``), ``partition``, ``freshness``,
        ``volume``, ``duplicate``, ``alerts`` (check, delivered, error) and ``report_uri``.
        Delivery errors are listed, not raised (the operator raises after the summary is written).
    """
    from airflow_mlops.alerts.delivery import Alert, raise_alert
    from airflow_mlops.validation.freshness import duplicate_check, freshness_check, volume_check

    ds = logical_ds(ds)
    mon = config.monitoring
    data = monitored_dataset(config, store, dataset)
    key = data_quality_key(config.name, ds)
    report_uri = store.uri(key)
    part_uri = data.uri(ds)
    today = partition_stats(data, ds, config.keys)
    fresh = freshness_check(ds, today is not None, mon.freshness_deadline_hours, now=now)

    summary: DataQualitySummary = {
        "model": config.name, "ds": ds, "dataset_uri": data.uri(), "partition_uri": part_uri,
        "checked_at": dt.datetime.now(dt.UTC).isoformat(), "run": dict(run_info or {}),
        "partition": {"present": True, **today} if today is not None else {"present": False},
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
        window = days_before(ds, mon.volume_window_days)
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
            max_z = mon.volume_max_z  # set whenever the alert is a z-score one
            threshold = max_z if by_z and max_z is not None else (mon.volume_min_ratio if vol["status"] == "low"
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
                         f"{(today['content_hash'] or '')[:16]}…, {today['rows']} rows) as "
                         f"ds={', ds='.join(dup['duplicate_of'])}: "
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
             (summary["volume"] or {}).get("status"),
             summary["duplicate"]["status"] if summary["duplicate"] else None,
             fresh["status"], report_uri)
    return summary


__all__ = ["DATA_QUALITY_CHECKS", "DataQualityAlertRecord", "DataQualityPartition", "DataQualitySummary",
           "DataQualityXCom", "PartitionStats", "check_data_quality", "data_quality_key", "monitored_dataset",
           "partition_stats"]
