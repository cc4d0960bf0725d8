"""Batch scoring: stream one input partition through a registered model into the prediction log.

The steps are plain functions over ``(config, store)``, like :mod:`airflow_mlops.registry.lifecycle`;
:class:`~airflow_mlops.operators.inference.BatchInferenceOperator` is a thin wrapper.

* :func:`score_partition` picks the model (pinned version, alias, or the alias *as of* the end of
  the logical day, from the registry's audit log), checks the input schema against the model's
  feature schema **before writing anything**, then streams Arrow record batches file by file
  (``ParquetFile.iter_batches`` / ``pyarrow.csv.open_csv``), predicts each batch and writes it with
  one ``ParquetWriter`` per output file into ``store.partition_writer(...)``: the partition is
  committed atomically (a re-run replaces exactly that partition; a failure or a crash leaves the
  previous one untouched). Memory is bounded by the batch size (and the input row-group size),
  not by the partition size; ``s3://`` inputs are downloaded one file at a time to a temp file.
* :func:`partition_input_files` + :func:`score_partition` ``(files=[...])`` + :func:`merge_parts`:
  fan-out over the input files with dynamic task mapping, then one atomic commit of the partition.

The output has the prediction-log schema of ``docs/prediction-log.md`` (same columns for every
model): keys, ``prediction``, ``proba_<class>``, ``shadow_prediction``, ``shadow_model_version``,
``model_name``, ``model_version``, ``scored_by``, ``logical_date``, ``scored_at``, ``run_id``
(+ ``explain_<i>_feature`` / ``explain_<i>_value`` when explanations are on).

Rollout controls, all applied per record batch (memory stays bounded):

* **canary** (``config.canary`` or ``canary_alias``/``canary_share``): a stable share of the rows,
  chosen by :func:`canary_mask` (a deterministic hash of the key values, the same on every re-run
  and backfill), is scored - for real - by the version of another alias; those rows say
  ``scored_by="canary"`` and carry that version in ``model_version``.
* **kill switch** (registry flag :meth:`ModelRegistry.set_model_disabled`, or a caller's switch
  such as the Airflow Variable ``mlops_<model>_disabled`` read by the operator): no model is
  loaded; every row gets the naive training baseline of :func:`fallback_baseline` (majority class
  + class prior / training mean) with ``scored_by="fallback"``.
* **explanations** (``config.explain``): top-k per-row feature contributions from
  :mod:`airflow_mlops.scoring.explain` (shap for tree and linear models, perturbation otherwise).

No Airflow imports here (the hooks used define Airflow hook classes next to the plain
classes); pyarrow, pandas and scikit-learn are imported inside functions.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from airflow_mlops.registry.model_registry import ModelRegistry
from airflow_mlops.scoring.assemble import BatchAssembler
from airflow_mlops.scoring.io import BackgroundWriter, file_schema, iter_batches, local_file, prefetch
from airflow_mlops.scoring.plan import KillSwitch, ScoringPlan, build_plan
from airflow_mlops.scoring.schema import (
    check_input_schema,
    csv_column_types,
    mismatch_error,
    physical_schema,
    prediction_log_schema,
)
from airflow_mlops.store.artifacts import ArtifactStore, join
from airflow_mlops.store.datasets import DataError, Dataset, EmptyPartitionError, partition_name
from airflow_mlops.store.dates import logical_ds

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.config.model import ExplainConfig, ModelConfig

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH_SIZE", "ScoringSummary", "partition_input_files", "predictions_dataset", "score_partition",
           "scoring_input"]

DEFAULT_BATCH_SIZE = 131072
PARTS_DIR = "_parts"


# ------------------------------------------------------------------------------------------
# input files
# ------------------------------------------------------------------------------------------
def predictions_dataset(config: ModelConfig, store: ArtifactStore, output_prefix: str | None = None) -> Dataset:
    """The prediction log of a model: ``<root>/predictions/<model>/ds=YYYY-MM-DD/`` (:class:`Locations`)."""
    from airflow_mlops.config.locations import Locations

    return Locations(config, store).predictions(output_prefix)


def scoring_input(config: ModelConfig, store: ArtifactStore) -> Dataset:
    """The dataset scored daily (:attr:`Locations.scoring`): ``data.scoring_dataset`` when set
    (``<root>/data/<name>``), else the model's input dataset (``data.uri`` or ``data.dataset``)."""
    from airflow_mlops.config.locations import Locations

    return Locations(config, store).scoring


def partition_input_files(config: ModelConfig, store: ArtifactStore, ds: str,
                          input_dataset: Dataset | None = None) -> list[str]:
    """Keys (inside the input dataset's store) of the data files of the input partition ``ds``,
    for fan-out with dynamic task mapping. A missing/empty partition raises :class:`DataError`."""
    dataset = input_dataset or scoring_input(config, store)
    files = dataset.files(ds)
    if not files and dataset.fmt == "sql":
        raise _no_rows(dataset, ds)
    if not files:
        raise DataError(
            f"partition {dataset.uri(ds)} has no {dataset.fmt} files; expected data for {logical_ds(ds)} "
            f"(present partitions: {dataset.partitions()[-5:] or 'none'})"
        )
    return files


def _no_rows(dataset: Dataset, ds: str) -> DataError:
    """The error of a SQL source's day without rows."""
    return DataError(f"{dataset.uri()} has no rows for {logical_ds(ds)}")


# ------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------
class ScoringSummary(TypedDict):
    """What :func:`score_partition` returns (and :class:`BatchInferenceOperator` pushes to XCom): JSON only,
    counts and URIs, never row values."""

    model: str
    version: int
    #: alias that scored (``champion``...), ``pinned``, ``first_version`` or ``fallback``
    scored_by: str
    #: ``version``, ``alias``, ``alias_as_of`` or ``alias_first``
    selection: str
    as_of: str | None
    rows: int
    files: int
    output_files: int
    output_uri: str
    output_key: str
    input_uri: str
    seconds: float
    shadow_alias: str | None
    shadow_version: int | None
    shadow_error: str | None
    scored_at: str
    run_id: str
    ds: str
    #: True when a part (file subset or segment) was written for :func:`merge_parts`
    part: bool
    canary_alias: str | None
    canary_version: int | None
    canary_share: float | None
    canary_rows: int
    canary_error: str | None
    kill_switch: KillSwitch | None
    #: ``{"source", "rows", "prediction", "proba"}`` of the kill switch's fallback
    fallback: dict[str, Any] | None
    #: ``{"top_k", "requested", "method", "seconds", "setup_seconds", "rows"[, "canary_method"]}``
    explain: dict[str, Any] | None
    segment: str | None
    #: what :func:`~airflow_mlops.scoring.publish.publish_predictions` did (``predictions: {conn_id, table}``)
    predictions_table: NotRequired[dict[str, Any] | None]


def _part_id(files: Sequence[str]) -> str:
    stem = os.path.splitext(files[0].rsplit("/", 1)[-1])[0]
    stem = re.sub(r"[^A-Za-z0-9_.=-]", "_", stem)[:80] or "part"
    digest = hashlib.sha1("\n".join(files).encode()).hexdigest()[:10]
    return f"{stem}-{digest}" if len(files) == 1 else f"{stem}+{len(files) - 1}-{digest}"


def score_partition(
    config: ModelConfig,
    store: ArtifactStore,
    ds: str,
    *,
    alias: str = "champion",
    version: int | str | None = None,
    as_of_logical_date: bool = False,
    as_of: str | dt.datetime | None = None,
    input_dataset: Dataset | None = None,
    output_prefix: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shadow_alias: str | None = None,
    run_id: str = "",
    files: Sequence[str] | None = None,
    if_alias_missing: str = "fail",
    canary_alias: str | None = None,
    canary_share: float | None = None,
    disabled: Any = None,
    disabled_source: str = "caller",
    explain: ExplainConfig | bool | None = None,
    segment: tuple[str, Any] | None = None,
) -> ScoringSummary:
    """Score the input partition ``ds`` with a registered model into the prediction log.

    :param config: the model config (name, input dataset, keys, ``canary``, ``explain``).
    :param store: artifact store holding the registry and the prediction log.
    :param ds: logical date ``YYYY-MM-DD``.
    :param alias: alias to score with (default ``champion``); ``scored_by`` records it.
    :param version: pin a version (``scored_by="pinned"``); wins over ``alias``.
    :param as_of_logical_date: use the version ``alias`` pointed to at the end of ``ds`` (backfills);
        :class:`ModelSelectionError` if the alias did not exist then.
    :param as_of: explicit timestamp for the alias lookup (wins over ``as_of_logical_date``).
    :param if_alias_missing: ``"fail"`` (default) or ``"first"``: see :func:`select_model`.
    :param input_dataset: input override (default :func:`scoring_input`: ``data.scoring_dataset``,
        else the model's dataset).
    :param output_prefix: prediction dataset prefix (default ``predictions/<model>``); the
        partition is ``<output_prefix>/ds=<ds>``.
    :param batch_size: rows per record batch (memory is proportional to it).
    :param shadow_alias: also score with this alias into ``shadow_prediction`` /
        ``shadow_model_version`` (recorded only). If the alias does not exist or the shadow model
        cannot score this input, the shadow columns are null and the summary says why.
    :param run_id: written to ``run_id`` (default ``manual__<scored_at>``).
    :param files: score only these input files (keys from :func:`partition_input_files`) into a
        part ``<output_prefix>/_parts/ds=<ds>/<part-id>/``, for :func:`merge_parts`.
    :param canary_alias: route a share of the rows to this alias's version (default
        ``config.canary.alias`` when the config has a ``canary`` section). The version is resolved
        like the main one (as of the same moment for backfills). If the alias does not exist, or
        its model cannot score the input, every row is scored by the main model and the summary
        says why (``canary_error``).
    :param canary_share: share of rows for the canary, 0-1 (default ``config.canary.share``; 0 turns
        the canary off). Rows are chosen by :func:`canary_mask` on the key columns: the same rows
        on every re-run and backfill.
    :param disabled: a kill switch value from the caller (e.g. the Airflow Variable
        ``mlops_<model>_disabled``), parsed by :func:`switch_is_on`. The registry's flag
        (:meth:`ModelRegistry.is_model_disabled`) is always checked too. When either is on, no
        model is loaded: every row gets :func:`fallback_baseline` with ``scored_by="fallback"``.
    :param disabled_source: where ``disabled`` came from, for the summary and the log.
    :param explain: explanations: an :class:`~airflow_mlops.config.model.ExplainConfig`, ``True``
        (defaults), ``False`` (off) or ``None`` = ``config.explain``.
    :param segment: ``(column, value)``: score only the rows whose ``column`` equals ``value``
        (compared as text) into a part (all files unless ``files``), for :func:`merge_parts`;
        see :mod:`airflow_mlops.segments.flows`.
    :returns: JSON-safe summary ``{"model", "version", "scored_by", "selection", "as_of", "rows",
        "files", "output_files", "output_uri", "output_key", "input_uri", "seconds",
        "shadow_version", "shadow_error", "scored_at", "run_id", "part", "canary_alias",
        "canary_version", "canary_share", "canary_rows", "canary_error", "kill_switch",
        "fallback", "explain"}``.
    :raises SchemaMismatchError: the input lacks a key/feature column or has an incompatible dtype
        (every difference listed); nothing is written.
    :raises DataError: missing, empty or unreadable input.
    :raises RegistryError: unknown model/version/alias, retired version (naming who retired it and
        why), integrity failure.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = logical_ds(ds)
    partition_name(ds)  # validates the date
    registry = ModelRegistry(store)
    dataset = input_dataset or scoring_input(config, store)
    input_uri = dataset.uri(ds)
    plan = build_plan(config, registry, ds, input_uri, alias=alias, version=version, as_of=as_of,
                      as_of_logical_date=as_of_logical_date, if_alias_missing=if_alias_missing,
                      shadow_alias=shadow_alias, canary_alias=canary_alias, canary_share=canary_share,
                      disabled=disabled, disabled_source=disabled_source, explain=explain)
    files, part = _select_files(config, store, ds, dataset, files, segment)
    output = predictions_dataset(config, store, output_prefix)
    out_key = _output_key(output, ds, files, part, segment)
    scored_at = dt.datetime.now(dt.UTC)
    run_id = run_id or f"manual__{scored_at.isoformat()}"
    tmpdir = tempfile.mkdtemp(prefix="mlops-score-")
    sql: _SqlStream | None = None
    try:
        sql = _SqlStream.open(dataset, ds, batch_size) if dataset.fmt == "sql" else None
        schemas = _check_schemas(plan, dataset, files, tmpdir, input_uri, sql)
        plan.drop_unfit(schemas[files[0]])
        layout = _LogLayout.of(plan, schemas[files[0]], scored_at, run_id)
        assembler = BatchAssembler(plan, layout.schema, layout.physical, layout.constants, segment)
        reader = _Reader(plan, dataset, tmpdir, batch_size, input_uri, schemas,
                         plan.needed_columns(segment[0] if segment else None), sql)
        manifest = _manifest(plan, layout, input_uri, files, part, segment)
        with store.partition_writer(out_key, **manifest) as w:
            rows = sum(_score_file(reader, assembler, layout, f, w.new_file) for f in files)
            if rows == 0 and not part:
                raise EmptyPartitionError(f"partition {input_uri} is empty (0 rows in {len(files)} file(s)); "
                                          "nothing written")
            w.add_rows(rows)
            n_out = len(w.files)
    finally:
        if sql is not None:
            sql.close()
        shutil.rmtree(tmpdir, ignore_errors=True)

    summary = _summary(plan, layout, rows=rows, canary_rows=assembler.canary_rows, files=files, n_out=n_out,
                       output_uri=store.uri(out_key), out_key=out_key, input_uri=input_uri, part=part,
                       seconds=time.perf_counter() - started, shadow_alias=shadow_alias, segment=segment)
    _log_outcome(plan, summary, input_uri)
    if not part and output_prefix is None:
        from airflow_mlops.scoring.publish import publish_predictions

        summary["predictions_table"] = publish_predictions(config, output, ds)
    return summary


# ------------------------------------------------------------------------------------------
# steps of score_partition
# ------------------------------------------------------------------------------------------
def _select_files(config: ModelConfig, store: ArtifactStore, ds: str, dataset: Dataset,
                  files: Sequence[str] | str | None, segment: tuple[str, Any] | None) -> tuple[list[str], bool]:
    """``(files to score, whether the output is a part)``: the given files must be data files of the
    partition; a part is written for a file subset or a segment (merged later by :func:`merge_parts`)."""
    # a SQL source's day is one pseudo-file; whether it has rows is seen in the first batch the scoring reads
    # (_SqlStream.open), not asked in a query of its own
    all_files = [dataset.key(ds)] if dataset.fmt == "sql" else partition_input_files(config, store, ds, dataset)
    if files is None:
        return all_files, segment is not None
    chosen = [files] if isinstance(files, str) else list(files)
    unknown = [f for f in chosen if f not in all_files]
    if unknown or not chosen:
        raise DataError(f"file(s) {unknown or chosen} are not data files of partition {dataset.uri(ds)}; "
                        f"its files: {all_files}")
    return chosen, True


def _output_key(output: Dataset, ds: str, files: Sequence[str], part: bool, segment: tuple[str, Any] | None) -> str:
    """``<prefix>/ds=<ds>`` for a whole partition, ``<prefix>/_parts/ds=<ds>/<part-id>`` for a part."""
    if not part:
        return output.key(ds)
    part_id = _part_id(files) if segment is None else f"seg={_segment_slug(segment[1])}--{_part_id(files)}"
    return join(output.prefix, PARTS_DIR, partition_name(ds), part_id)


class _SqlStream:
    """The record batches of one day of a SQL source, opened before scoring so that the schema of the rows (the
    query's result) is checked before anything is written; the first batch is kept and handed back first."""

    def __init__(self, batches: Generator[pa.RecordBatch, None, None], first: pa.RecordBatch) -> None:
        self._batches, self.first = batches, first

    @classmethod
    def open(cls, dataset: Dataset, ds: str, batch_size: int) -> _SqlStream:
        # fetched ahead in one background thread, which alone uses the database connection (SQLite's may not
        # change threads), while this one predicts
        batches = prefetch(lambda: dataset.batches(ds, None, batch_rows=batch_size))  # type: ignore[attr-defined]
        try:
            first = next(batches)
            if first.num_rows == 0:  # one empty batch with the schema: the day has no rows
                raise _no_rows(dataset, ds)
        except BaseException:
            batches.close()
            raise
        return cls(batches, first)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield self.first
            yield from self._batches
        finally:
            self.close()

    def close(self) -> None:
        self._batches.close()


def _check_schemas(plan: ScoringPlan, dataset: Dataset, files: Sequence[str], tmpdir: str,
                   input_uri: str, sql: _SqlStream | None = None) -> dict[str, pa.Schema]:
    """Check the input schema against the model's BEFORE writing anything: every file of a local
    dataset (footers are cheap), the first file of a remote one (the others as they are downloaded,
    before the commit), the result of a SQL source's query. Every difference is listed in one
    :class:`SchemaMismatchError`."""
    in_store = dataset.store
    schemas: dict[str, pa.Schema] = {}
    diffs: list[dict[str, str]] = []
    if sql is not None:
        schemas[files[0]] = sql.first.schema
        diffs += check_input_schema(sql.first.schema, plan.scorer.meta, keys=plan.keys, source=input_uri)
        if diffs:
            sql.close()
    elif in_store.is_local:
        for f in files:
            schemas[f] = file_schema(in_store.local_path(f), dataset.fmt, in_store.uri(f))
            diffs += check_input_schema(schemas[f], plan.scorer.meta, keys=plan.keys, source=in_store.uri(f))
    else:
        with local_file(in_store, files[0], tmpdir) as p:
            schemas[files[0]] = file_schema(p, dataset.fmt, in_store.uri(files[0]))
        diffs += check_input_schema(schemas[files[0]], plan.scorer.meta, keys=plan.keys,
                                    source=in_store.uri(files[0]))
    if diffs:
        raise mismatch_error(diffs, plan.name, plan.scorer.version, input_uri)
    return schemas


@dataclass
class _LogLayout:
    """The output of one run: prediction-log schema, its physical form, Parquet options, constants."""

    schema: pa.Schema
    physical: pa.Schema
    write_options: dict[str, Any]
    constants: dict[str, Any]
    scored_at: dt.datetime
    run_id: str

    @classmethod
    def of(cls, plan: ScoringPlan, first: pa.Schema, scored_at: dt.datetime, run_id: str) -> _LogLayout:
        key_types = {k: first.field(k).type for k in plan.keys}
        schema = prediction_log_schema(plan.scorer.meta, key_types, has_proba=plan.scorer.has_proba,
                                       explain_k=plan.explain_k)
        shadow = plan.shadow.scorer
        constants = {
            "model_name": plan.name, "model_version": plan.scorer.version, "scored_by": plan.scored_by,
            "logical_date": plan.ds, "scored_at": scored_at, "run_id": run_id,
            **({"shadow_prediction": None, "shadow_model_version": None} if shadow is None
               else {"shadow_model_version": plan.shadow.version}),
        }
        return cls(schema, physical_schema(schema), _write_options(schema, plan.keys), constants, scored_at, run_id)


@dataclass
class _Reader:
    """Reads one input file (downloaded to ``tmpdir`` when remote) as record batches of the needed columns,
    checking the schema of a file not checked up front."""

    plan: ScoringPlan
    dataset: Dataset
    tmpdir: str
    batch_size: int
    input_uri: str
    schemas: dict[str, pa.Schema]
    needed: list[str]
    #: a SQL source's day of rows (instead of files)
    sql: _SqlStream | None = None
    #: training dtypes of the columns read (:meth:`ScoringPlan.feature_dtypes`), for typed CSV reads
    dtypes: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.dtypes = self.plan.feature_dtypes()

    @contextlib.contextmanager
    def batches(self, f: str) -> Iterator[tuple[str, Any]]:
        """``(uri, prefetched batch iterator)`` of file ``f``."""
        if self.sql is not None:
            stream, needed = self.sql, self.needed
            try:
                yield self.input_uri, (b.select(needed) for b in stream)
            finally:
                stream.close()
            return
        in_store = self.dataset.store
        uri = in_store.uri(f)
        with local_file(in_store, f, self.tmpdir) as path:
            if f not in self.schemas:
                self.schemas[f] = file_schema(path, self.dataset.fmt, uri)
                d = check_input_schema(self.schemas[f], self.plan.scorer.meta, keys=self.plan.keys, source=uri)
                if d:
                    raise mismatch_error(d, self.plan.name, self.plan.scorer.version, self.input_uri)
            csv_types = (csv_column_types(self.schemas[f], self.needed, self.dtypes)
                         if self.dataset.fmt == "csv" else None)
            batches = prefetch(functools.partial(iter_batches, path, self.dataset.fmt, self.needed, self.batch_size,
                                                 uri, csv_types))
            try:
                yield uri, batches
            finally:
                batches.close()


def _score_file(reader: _Reader, assembler: BatchAssembler, layout: _LogLayout, f: str,
                new_file: Callable[[], str]) -> int:
    """Score one input file into one output file (written by a background thread); returns its rows."""
    import pyarrow as pa

    rows = 0
    with reader.batches(f) as (uri, batches):
        writer = BackgroundWriter(new_file(), layout.physical, layout.write_options)
        try:
            for batch in batches:
                out = assembler.assemble(batch)
                if out is not None:
                    writer.write(out)
                    rows += out.num_rows
            writer.close()
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
            raise DataError(f"{uri}: cannot convert a batch to the prediction log schema "
                            f"({str(e).splitlines()[0]})") from None
        finally:
            with contextlib.suppress(Exception):
                writer.close()
    return rows


def _manifest(plan: ScoringPlan, layout: _LogLayout, input_uri: str, files: Sequence[str], part: bool,
              segment: tuple[str, Any] | None) -> dict[str, Any]:
    """The ``_SUCCESS`` manifest fields of the output partition (or part)."""
    chosen, canary, info = plan.chosen, plan.canary, plan.explain_info
    return {"model": plan.name, "version": plan.scorer.version, "scored_by": plan.scored_by,
            "selection": chosen["selection"], "as_of": chosen["as_of"], "ds": plan.ds, "run_id": layout.run_id,
            "scored_at": layout.scored_at.isoformat(), "input_uri": input_uri, "input_files": list(files),
            "shadow_version": plan.shadow.version if plan.shadow.scorer is not None else None, "part": part,
            "canary_alias": canary.alias if canary.scorer is not None else None,
            "canary_version": canary.version if canary.scorer is not None else None,
            "canary_share": plan.canary_share if canary.scorer is not None else None,
            "kill_switch": plan.kill, "fallback": plan.fallback,
            "explain": {"top_k": plan.explain_k, "method": info["method"]} if info else None,
            "schema": {f.name: str(f.type) for f in layout.schema},
            "segment": {"column": segment[0], "value": str(segment[1])} if segment else None}


def _summary(plan: ScoringPlan, layout: _LogLayout, *, rows: int, canary_rows: int, files: Sequence[str],
             n_out: int, output_uri: str, out_key: str, input_uri: str, part: bool, seconds: float,
             shadow_alias: str | None, segment: tuple[str, Any] | None) -> ScoringSummary:
    """The JSON-safe summary returned to XCom (see :class:`ScoringSummary`)."""
    chosen, canary, shadow = plan.chosen, plan.canary, plan.shadow
    info = plan.explain_info
    if info is not None:
        canary_seconds = canary.scorer.explain_seconds if canary.scorer is not None else 0.0
        info["seconds"] = round(plan.scorer.explain_seconds + canary_seconds, 3)
        info["rows"] = rows if plan.kill is None else 0
    fallback = None
    if plan.fallback is not None:  # JSON-safe (numpy scalars from the target column)
        fallback = {k: plan.fallback[k] for k in ("source", "rows", "prediction", "proba")}
        fallback["prediction"] = _plain_value(fallback["prediction"])
    return {
        "model": plan.name, "version": plan.scorer.version, "scored_by": plan.scored_by,
        "selection": chosen["selection"], "as_of": chosen["as_of"], "rows": rows, "files": len(files),
        "output_files": n_out, "output_uri": output_uri, "output_key": out_key,
        "input_uri": input_uri, "seconds": round(seconds, 3),
        "shadow_alias": shadow_alias, "shadow_version": shadow.version if shadow.scorer is not None else None,
        "shadow_error": shadow.error, "scored_at": layout.scored_at.isoformat(), "run_id": layout.run_id,
        "ds": plan.ds, "part": part,
        "canary_alias": canary.alias if plan.canary_share > 0 else None,
        "canary_version": canary.version if canary.scorer is not None else None,
        "canary_share": plan.canary_share if canary.alias else None, "canary_rows": canary_rows,
        "canary_error": canary.error, "kill_switch": plan.kill, "fallback": fallback, "explain": info,
        "segment": str(segment[1]) if segment else None,
    }


def _log_outcome(plan: ScoringPlan, summary: ScoringSummary, input_uri: str) -> None:
    """Counts and URIs only (never row values): rows, files, versions, canary share, fallback, timings."""
    rows, version = summary["rows"], plan.scorer.version
    log.info("scored %s with %s v%d (%s): %d row(s) from %d file(s) in %.1f s -> %s", input_uri, plan.name,
             version, plan.scored_by, rows, summary["files"], summary["seconds"], summary["output_uri"])
    canary = plan.canary
    if canary.alias and plan.canary_share > 0:
        if canary.scorer is not None:
            log.info("canary %r v%s scored %d of %d row(s) (%.2f%%, share %.3f)", canary.alias, canary.version,
                     summary["canary_rows"], rows, 100.0 * summary["canary_rows"] / max(rows, 1), plan.canary_share)
        else:
            log.warning("canary %r not used, all %d row(s) scored by v%d: %s", canary.alias, rows, version,
                        canary.error)
    fallback = summary["fallback"]
    if plan.kill is not None and fallback is not None:  # the kill switch always has its fallback
        log.warning("kill switch ON (%s): %d fallback row(s) (prediction %s, from %s)", plan.kill["source"], rows,
                    fallback["prediction"], fallback["source"])
    info = summary["explain"]
    if info is not None and info["method"]:
        log.info("explanations (%s, top %d): %.2f s for %d row(s) (setup %.2f s) of %.2f s scoring",
                 info["method"]["method"], plan.explain_k, info["seconds"], rows, info["setup_seconds"],
                 summary["seconds"])


def _segment_slug(value: Any) -> str:
    from airflow_mlops.config.segments import segment_slug

    return segment_slug(value)


def _plain_value(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


def _write_options(schema: pa.Schema, keys: Sequence[str]) -> dict[str, Any]:
    """Parquet encodings for the prediction log: dictionary for low-cardinality columns (labels,
    run constants), delta for integer keys and constant integers/timestamps, plain for
    probabilities and other keys (dictionary-encoding unique values only wastes time)."""
    import pyarrow as pa

    dictionary, encoding = [], {}
    for f in schema:
        t = f.type
        delta_ok = pa.types.is_integer(t) or pa.types.is_timestamp(t)
        if f.name in ("model_name", "scored_by", "logical_date", "run_id") or (
                f.name.startswith("explain_") and f.name.endswith("_feature")) or (
                f.name in ("prediction", "shadow_prediction") and not pa.types.is_floating(t)):
            dictionary.append(f.name)
        elif delta_ok and (f.name in keys or f.name in ("model_version", "shadow_model_version", "scored_at")):
            encoding[f.name] = "DELTA_BINARY_PACKED"
    return {"compression": "zstd", "use_dictionary": dictionary, "column_encoding": encoding or None,
            "store_schema": False}


