"""Segmented models: one registered model per value of a config's ``segments.column``.

A config with ``segments: {column: region, min_rows: 200}`` trains, promotes and scores one model per
segment value. Each segment's model is an ordinary registered model named
``<model>__<slug of the value>`` (:func:`segment_model_name`), so versions, aliases, the promotion
gate, model cards and the audit log are per segment with no registry changes. :func:`segment_config`
derives that model's config (``dataclasses.replace`` with the segment model's name); the pipeline
functions (:func:`~airflow_mlops.registry.lifecycle.train_and_register`, ``promote_candidate``,
``notify_promotion``, :func:`~airflow_mlops.scoring.batch.score_partition`) run unchanged on it.

* training: :func:`list_training_segments` (values in the training window, segments under
  ``min_rows`` skipped) -> :func:`train_segment` per value (window filtered to the segment; the
  segment column is never a feature) -> promote / notify per value;
* scoring: :func:`plan_segment_scoring` (values in the scoring partition, each segment's champion as
  of the logical date, resolved once; fails listing the segments without one, before anything is
  written) -> :func:`score_segment` per value (a part of the output partition, optionally per input
  file) -> :func:`merge_segment_parts` (one atomic commit of ``predictions/<model>/ds=<ds>/``; the
  ``model_name`` column says which segment model scored each row). :func:`score_segments` runs all
  three in one process.

The DAG factory maps these steps over the segment values with dynamic task mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_mlops.config.locations import Locations
from airflow_mlops.config.segments import (
    SegmentError,
    check_slugs,
    require_segments,
    segment_config,
    segment_model_name,
    segment_rows,
    segments_section,
)
from airflow_mlops.registry.lifecycle import PromotionSummary, TrainingSummary
from airflow_mlops.store.artifacts import ArtifactStore
from airflow_mlops.store.datasets import DataError, Dataset
from airflow_mlops.store.dates import logical_ds
from airflow_mlops.store.layout import predictions_prefix

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.config.model import ModelConfig
    from airflow_mlops.scoring.batch import ScoringSummary
    from airflow_mlops.scoring.merge import MergeSummary

log = logging.getLogger(__name__)

__all__ = ["SegmentPromotionSkipped", "SegmentPromotionSummary", "SegmentScoringPlan", "SegmentTrainingPlan",
           "SegmentTrainingSkipped", "SegmentTrainingSummary", "SkippedSegment", "list_training_segments",
           "merge_segment_parts", "plan_segment_scoring", "promote_segment", "score_segment", "score_segments",
           "train_segment"]


class SkippedSegment(TypedDict):
    """A segment :func:`list_training_segments` leaves out, and why."""

    segment: str
    rows: int  #: rows in the training window
    min_rows: int  #: ``segments.min_rows``
    reason: str


class SegmentTrainingPlan(TypedDict):
    """What :func:`list_training_segments` returns (the training Dag's ``list_segments`` task returns
    ``segments``, the mapped list, and pushes ``skipped`` and ``rows`` to XCom)."""

    segments: list[str]  #: the values to train, one mapped task group each
    skipped: list[SkippedSegment]
    rows: dict[str, int]  #: rows per value, skipped ones included


class SegmentTrainingSummary(TrainingSummary):
    """What :func:`train_segment` returns for a trained segment (the ``train`` XCom of a mapped segment): the
    :class:`~airflow_mlops.registry.lifecycle.TrainingSummary` of the segment's model, and the value."""

    segment: str


class SegmentTrainingSkipped(TypedDict):
    """What :func:`train_segment` returns for a segment it does not train (fewer than ``segments.min_rows``
    rows, or a single class); the promote and notify steps pass it through."""

    segment: str
    model: str  #: the segment model's name (``<model>__<slug>``)
    skipped: str  #: why it was not trained
    rows: int  #: the segment's rows in the training window


class SegmentPromotionSummary(PromotionSummary):
    """What :func:`promote_segment` returns for a trained segment (the ``promote`` XCom of a mapped segment):
    the :class:`~airflow_mlops.registry.lifecycle.PromotionSummary` of the segment's model, and the value."""

    segment: str


class SegmentPromotionSkipped(TypedDict):
    """What :func:`promote_segment` returns for a segment training skipped (nothing was gated)."""

    segment: str
    model: str | None  #: the segment model's name, from the training result
    skipped: str  #: why the segment was not trained


class SegmentScoringPlan(TypedDict):
    """What :func:`plan_segment_scoring` returns (the scoring Dag's ``plan_segments`` task returns ``tasks``,
    the kwargs of the mapped scoring tasks, and pushes ``versions`` and ``rows`` to XCom)."""

    tasks: list[dict[str, Any]]  #: ``{"segment"}``, + ``"files"`` with ``segments.map_files``
    versions: dict[str, int]  #: the version of each segment's model that scores
    rows: dict[str, int]  #: rows per value in the scoring partition

def _value_counts(frame: pd.DataFrame, column: str, where: str) -> dict[str, int]:
    col = frame[column]
    nulls = int(col.isna().sum())
    if nulls:
        raise SegmentError(f"{nulls} row(s) of {where} have no {column!r} value, so no segment model can take "
                           f"them; fill the column upstream")
    counts = col.astype(str).value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------
def list_training_segments(config: ModelConfig, store: ArtifactStore, ds: str) -> SegmentTrainingPlan:
    """The segment values of the training window ending at ``ds`` (only the segment column is read).

    Returns ``{"segments": [trainable values], "skipped": [{"segment", "rows", "min_rows", "reason"}],
    "rows": {value: rows}}``. A segment is skipped (logged with its row count) when it has fewer than
    ``segments.min_rows`` rows or, for classification, a single target class.
    """
    column = require_segments(config)
    dataset = Locations(config, store).input
    df, dates = dataset.read_window(ds, config.data.training_window_days, columns=[column, config.target])
    counts = _value_counts(df, column, f"the training window of {dataset.uri()} ending {logical_ds(ds)}")
    check_slugs(config, list(counts))
    min_rows = segments_section(config).min_rows
    keep: list[str] = []
    skipped: list[SkippedSegment] = []
    for value, n in counts.items():
        reason = _skip_reason(config, segment_rows(df, column, value))
        if reason:
            skipped.append({"segment": value, "rows": n, "min_rows": min_rows, "reason": reason})
            log.warning("segment %s=%s of %s skipped: %s", column, value, config.name, reason)
        else:
            keep.append(value)
    log.info("%s: %d segment(s) of %r to train from %d partition(s), %d skipped", config.name, len(keep), column,
             len(dates), len(skipped))
    return {"segments": keep, "skipped": skipped, "rows": counts}


def _skip_reason(config: ModelConfig, rows: pd.DataFrame) -> str | None:
    """Why a segment's training rows cannot be trained on, or None."""
    n, min_rows = len(rows), segments_section(config).min_rows
    if n < min_rows:
        return f"{n} row(s) in the training window, fewer than segments.min_rows={min_rows}"
    if config.is_classification:
        classes = rows[config.target].dropna().nunique()
        if classes < 2:
            return f"{n} row(s) in the training window but {classes} target class(es); a classifier needs 2 or more"
    return None


def train_segment(config: ModelConfig, store: ArtifactStore, ds: str, value: Any,
                  run_info: dict[str, Any] | None = None, *,
                  actor: str | None = None) -> SegmentTrainingSummary | SegmentTrainingSkipped:
    """Train and register the model of one segment on the window's rows of that segment.

    A segment with fewer than ``segments.min_rows`` rows (or a single class) is not trained: the result is
    ``{"segment", "model", "skipped": <reason>, "rows"}`` (the promote/notify steps pass it through).
    """
    from airflow_mlops.registry.lifecycle import train_and_register

    column = require_segments(config)
    cfg = segment_config(config, value)
    dataset = Locations(config, store).input
    df, _ = dataset.read_window(ds, config.data.training_window_days, columns=[column, config.target])
    rows_df = segment_rows(df, column, value)
    rows = int(len(rows_df))
    reason = _skip_reason(config, rows_df)
    if reason:
        log.warning("segment %s=%s of %s not trained: %s", column, value, config.name, reason)
        return {"segment": str(value), "model": cfg.name, "skipped": reason, "rows": rows}
    out = train_and_register(cfg, store, ds, run_info, actor=actor, segment=(column, value))
    return {**out, "segment": str(value)}


def promote_segment(config: ModelConfig, store: ArtifactStore, value: Any, trained: dict[str, Any], *,
                    run_info: dict[str, Any] | None = None) -> SegmentPromotionSummary | SegmentPromotionSkipped:
    """The promotion gate of one segment's candidate (``trained``: the :func:`train_segment` result)."""
    from airflow_mlops.registry.lifecycle import promote_candidate

    if trained.get("skipped"):
        return {"segment": str(value), "model": trained.get("model"), "skipped": trained["skipped"]}
    out = promote_candidate(segment_config(config, value), store, int(trained["version"]), run_info=run_info)
    return {**out, "segment": str(value)}


# ------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------
def plan_segment_scoring(config: ModelConfig, store: ArtifactStore, ds: str, *, alias: str = "champion",
                         as_of_logical_date: bool = True, if_alias_missing: str = "fail",
                         input_dataset: Dataset | None = None, map_files: bool | None = None) -> SegmentScoringPlan:
    """The mapped scoring tasks of ``ds``: ``{"tasks": [{"segment"} (+ "files" per input file with
    ``segments.map_files``) per segment value in the scoring partition], "versions": {value: version},
    "rows": {value: rows}}``. Every segment must have a version for ``alias`` (as of the end of the
    logical day by default) before any part is scored; the scoring tasks resolve it the same way and
    :func:`merge_segment_parts` refuses a segment whose parts disagree.

    :raises SegmentError: segments of the partition without a model (all of them listed), null segment
        values or clashing slugs; nothing is written.
    """
    from airflow_mlops.registry.model_registry import ModelRegistry, RegistryError
    from airflow_mlops.scoring.batch import partition_input_files, scoring_input
    from airflow_mlops.scoring.selection import select_model

    column = require_segments(config)
    ds = logical_ds(ds)
    dataset = input_dataset or scoring_input(config, store)
    frame = dataset.read(ds, columns=[column])
    counts = _value_counts(frame, column, dataset.uri(ds))
    if not counts:
        raise DataError(f"partition {dataset.uri(ds)} is empty; nothing to score")
    check_slugs(config, list(counts))
    registry = ModelRegistry(store)
    versions: dict[str, int] = {}
    missing: list[str] = []
    for value in counts:
        name = segment_model_name(config, value)
        try:
            versions[value] = int(select_model(registry, name, ds, alias=alias, as_of_logical_date=as_of_logical_date,
                                               if_alias_missing=if_alias_missing)["version"])
        except RegistryError as e:
            missing.append(f"{value!r} ({counts[value]} row(s); {name}: {str(e).splitlines()[0]})")
    if missing:
        when = f" as of {ds}" if as_of_logical_date else ""
        raise SegmentError(f"{len(missing)} segment(s) of {dataset.uri(ds)} by {column!r} have no {alias}{when}: "
                           f"{'; '.join(missing)}. Nothing was written. Train and promote those segments (they may "
                           f"have been skipped for segments.min_rows) or remove their rows from the input")
    map_files = segments_section(config).map_files if map_files is None else map_files
    files = partition_input_files(config, store, ds, dataset) if map_files else [None]
    tasks = [{"segment": v, **({"files": f} if f is not None else {})} for v in counts for f in files]
    log.info("%s %s: %d segment(s) of %r, %d scoring task(s)", config.name, ds, len(counts), column, len(tasks))
    return {"tasks": tasks, "versions": versions, "rows": counts}


def score_segment(config: ModelConfig, store: ArtifactStore, ds: str, value: Any, *, version: int | str | None = None,
                  files: list[str] | str | None = None, output_prefix: str | None = None,
                  **kwargs: Any) -> ScoringSummary:
    """Score the rows of one segment of ``ds`` with that segment's model into a part of the model's
    prediction partition (``predictions/<model>/_parts/...``); :func:`merge_segment_parts` commits it.
    ``kwargs`` go to :func:`~airflow_mlops.scoring.batch.score_partition` (``alias``, ``as_of_logical_date``...)."""
    from airflow_mlops.scoring.batch import score_partition

    column = require_segments(config)
    if isinstance(files, str):
        files = [files]
    return score_partition(segment_config(config, value), store, ds, version=version, files=files,
                           output_prefix=predictions_prefix(config.name, output_prefix), segment=(column, value),
                           **kwargs)


def merge_segment_parts(config: ModelConfig, store: ArtifactStore, ds: str, parts: Sequence[Mapping[str, Any]], *,
                        output_prefix: str | None = None, input_dataset: Dataset | None = None) -> MergeSummary:
    """Commit ``predictions/<model>/ds=<ds>/`` from the segment parts, after checking that the parts cover
    every segment value of the input partition (one model per segment, every file once per segment)."""
    from airflow_mlops.scoring.batch import scoring_input
    from airflow_mlops.scoring.merge import merge_parts

    column = require_segments(config)
    ds = logical_ds(ds)
    dataset = input_dataset or scoring_input(config, store)
    expected = set(_value_counts(dataset.read(ds, columns=[column]), column, dataset.uri(ds)))
    got = {str(p.get("segment")) for p in parts if p}
    if expected - got or got - expected:
        raise SegmentError(f"segment parts of {config.name} {ds} do not match the segments of {dataset.uri(ds)}: "
                           f"not scored {sorted(expected - got) or 'none'}, not in the partition "
                           f"{sorted(got - expected) or 'none'}; re-run the scoring")
    return merge_parts(config, store, ds, [p for p in parts if p],
                       output_prefix=predictions_prefix(config.name, output_prefix), input_dataset=input_dataset)


def score_segments(config: ModelConfig, store: ArtifactStore, ds: str, *, alias: str = "champion",
                   as_of_logical_date: bool = True, run_id: str = "", map_files: bool | None = None,
                   **kwargs: Any) -> MergeSummary:
    """Plan, score every segment and merge, in this process (what the mapped DAG does across workers)."""
    plan = plan_segment_scoring(config, store, ds, alias=alias, as_of_logical_date=as_of_logical_date,
                                map_files=map_files)
    parts = [score_segment(config, store, ds, p["segment"], files=p.get("files"), alias=alias,
                           as_of_logical_date=as_of_logical_date, run_id=run_id, **kwargs) for p in plan["tasks"]]
    return merge_segment_parts(config, store, ds, parts)
