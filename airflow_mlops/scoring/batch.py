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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.registry.model_registry import ModelRegistry, PolicyError, RegistryError
from airflow_mlops.scoring.io import BackgroundWriter, file_schema, iter_batches, local_file, prefetch
from airflow_mlops.scoring.policies import FallbackScorer, canary_mask, fallback_baseline, segment_mask, switch_is_on
from airflow_mlops.scoring.schema import (
    CANARY,
    FALLBACK,
    check_input_schema,
    csv_column_types,
    mismatch_error,
    physical_schema,
    prediction_log_schema,
    proba_columns,
)
from airflow_mlops.scoring.scorer import ConstantColumns, Scorer, has_proba_columns, to_arrow, unfit_reason
from airflow_mlops.scoring.selection import select_model
from airflow_mlops.store.artifacts import ArtifactStore, join
from airflow_mlops.store.datasets import DataError, Dataset, EmptyPartitionError, partition_name
from airflow_mlops.store.dates import logical_ds

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.config.model import ExplainConfig, ModelConfig

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH_SIZE", "partition_input_files", "predictions_dataset", "score_partition", "scoring_input"]

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
    if not files:
        raise DataError(
            f"partition {dataset.uri(ds)} has no {dataset.fmt} files; expected data for {logical_ds(ds)} "
            f"(present partitions: {dataset.partitions()[-5:] or 'none'})"
        )
    return files


# ------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------
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
) -> dict[str, Any]:
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
    import numpy as np
    import pyarrow as pa

    from airflow_mlops.config.model import ExplainConfig
    from airflow_mlops.registry.model_registry import LifecycleError

    started = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = logical_ds(ds)
    partition_name(ds)  # validates the date
    registry = ModelRegistry(store)
    name = config.name
    dataset = input_dataset or scoring_input(config, store)
    in_store = dataset.store
    input_uri = dataset.uri(ds)

    # -- rollout settings --------------------------------------------------------------------
    if canary_alias is None and config.canary is not None:
        canary_alias = config.canary.alias
    if canary_share is None:
        canary_share = config.canary.share if config.canary is not None else 0.0
    canary_share = float(canary_share)
    if not 0.0 <= canary_share <= 1.0:
        raise ValueError(f"canary_share must be between 0 and 1, got {canary_share}")
    if explain is None:
        explain = config.explain
    elif explain is True:
        explain = config.explain or ExplainConfig()
    elif explain is False:
        explain = None

    chosen = select_model(registry, name, ds, alias=alias, version=version, as_of=as_of,
                          as_of_logical_date=as_of_logical_date, if_alias_missing=if_alias_missing)

    # -- kill switch ---------------------------------------------------------------------------
    kill: dict[str, Any] | None = None
    flag = registry.is_model_disabled(name)
    if flag:
        kill = {"source": "registry", "by": flag.get("by"), "at": flag.get("at"), "reason": flag.get("reason")}
    elif switch_is_on(disabled):
        kill = {"source": disabled_source, "by": None, "at": None, "reason": str(disabled)}

    scorer: Scorer | FallbackScorer
    fallback: dict[str, Any] | None = None
    if kill is not None:
        meta = registry.get_metadata(name, chosen["version"])
        fallback = fallback_baseline(registry, name, chosen["version"], meta)
        scorer = FallbackScorer(name, chosen["version"], meta, fallback,
                                 has_proba_columns(registry, name, chosen["version"], meta))
        chosen = {**chosen, "scored_by": FALLBACK}
        log.warning("kill switch of %s is ON (%s%s): writing the naive fallback (%s from %s, v%d's training "
                    "baseline) instead of scoring with the model", name, kill["source"],
                    f", by {kill['by']}" if kill.get("by") else "", fallback["prediction"], fallback["source"],
                    chosen["version"])
    else:
        try:
            # the promotion policy first (retired, rejected, awaiting approval), then the signed, hash-verified,
            # type-checked load: a refused model never has a row scored
            registry.check_serving(name, chosen["version"], role=str(chosen["scored_by"]))
            scorer = Scorer.load(registry, name, chosen["version"])
        except (LifecycleError, PolicyError) as e:
            how = {"version": "pinned with version=", "alias": f"alias {chosen['alias']!r}",
                   "alias_as_of": f"alias {chosen['alias']!r} as of {chosen['as_of']}",
                   "alias_first": f"first version of alias {chosen['alias']!r}"}.get(chosen["selection"], "")
            raise type(e)(f"cannot score {input_uri} for {ds}: {name} v{chosen['version']} ({how}) - {e}. "
                          f"Score with an allowed version (version=<n>) or point the alias elsewhere") from None
    keys = list(scorer.meta.get("keys") or config.keys)

    all_files = partition_input_files(config, store, ds, dataset)
    if files is not None:
        files = [files] if isinstance(files, str) else list(files)
        unknown = [f for f in files if f not in all_files]
        if unknown or not files:
            raise DataError(f"file(s) {unknown or files} are not data files of partition {input_uri}; "
                            f"its files: {all_files}")
    part = files is not None or segment is not None
    if files is None:
        files = all_files

    # -- shadow and canary models (never with the kill switch on) ---------------------------------
    shadow: Scorer | None = None
    shadow_version: int | None = None
    shadow_error: str | None = None
    if shadow_alias and kill is None:
        try:
            sel = select_model(registry, name, ds, alias=shadow_alias, as_of=chosen["as_of"])
            shadow_version = sel["version"]
            shadow = Scorer.load(registry, name, shadow_version)
            if (shadow.task == "regression") != (scorer.task == "regression"):
                raise RegistryError(f"shadow v{shadow_version} is a {shadow.task} model, "
                                    f"v{scorer.version} a {scorer.task} model")
        except RegistryError as e:
            shadow, shadow_error = None, f"{type(e).__name__}: {e}"
            log.warning("shadow alias %r of %s not used: %s; shadow columns are null", shadow_alias, name, e)
    elif shadow_alias:
        shadow_error = "kill switch on: no model scored"

    canary: Scorer | None = None
    canary_version: int | None = None
    canary_error: str | None = None
    if canary_alias and canary_share > 0:
        if kill is not None:
            canary_error = "kill switch on: every row got the fallback"
        else:
            assert isinstance(scorer, Scorer)  # kill switch off: the model itself scores
            try:
                sel = select_model(registry, name, ds, alias=canary_alias, as_of=chosen["as_of"])
                canary_version = sel["version"]
                if canary_version == scorer.version:
                    raise RegistryError(f"alias {canary_alias!r} points to v{canary_version}, the version scoring "
                                        "every row already")
                registry.check_serving(name, canary_version, role="canary")  # canary rows are real predictions
                canary = Scorer.load(registry, name, canary_version)
                if canary.task != scorer.task or list(canary.classes or []) != list(scorer.classes or []):
                    raise RegistryError(f"canary v{canary_version} ({canary.task}, classes {canary.classes}) does "
                                        f"not predict like v{scorer.version} ({scorer.task}, classes {scorer.classes})")
                if canary.has_proba != scorer.has_proba:
                    raise RegistryError(f"canary v{canary_version} and v{scorer.version} differ in predict_proba")
            except RegistryError as e:
                canary, canary_error = None, f"{type(e).__name__}: {e}"
            if canary is None:
                log.warning("canary alias %r of %s not used: %s; every row scored by v%d", canary_alias, name,
                            canary_error, scorer.version)

    # -- explanations ----------------------------------------------------------------------------
    explain_k = int(explain.top_k) if explain is not None else 0
    explain_info: dict[str, Any] | None = None
    if explain is not None:
        explain_info = {"top_k": explain_k, "requested": explain.method, "method": None, "seconds": 0.0,
                        "setup_seconds": 0.0, "rows": 0}
        if kill is None:
            assert isinstance(scorer, Scorer)  # kill switch off: the model itself scores
            from airflow_mlops.scoring.explain import ExplainError, make_explainer

            t = time.perf_counter()
            for sc in (scorer, canary):
                if sc is None:
                    continue
                try:
                    sc.explainer = make_explainer(sc.pipeline, sc.meta, registry.load_reference(name, sc.version),
                                                  explain.method)
                except ExplainError as e:
                    raise DataError(f"explanations for {name} v{sc.version} cannot be computed: {e}") from None
            explain_info["setup_seconds"] = round(time.perf_counter() - t, 3)
            explain_info["method"] = scorer.explainer.describe()
            if canary is not None:
                explain_info["canary_method"] = canary.explainer.describe()

    # -- schema check of every file BEFORE writing anything ----------------------------------
    tmpdir = tempfile.mkdtemp(prefix="mlops-score-")
    try:
        schemas: dict[str, pa.Schema] = {}
        diffs: list[dict[str, str]] = []
        if in_store.is_local:  # footers are cheap to read: check all files up front
            for f in files:
                schemas[f] = file_schema(in_store.local_path(f), dataset.fmt, in_store.uri(f))
                diffs += check_input_schema(schemas[f], scorer.meta, keys=keys, source=in_store.uri(f))
        else:  # remote: check the first file now, the others as they are downloaded (before commit)
            with local_file(in_store, files[0], tmpdir) as p:
                schemas[files[0]] = file_schema(p, dataset.fmt, in_store.uri(files[0]))
            diffs += check_input_schema(schemas[files[0]], scorer.meta, keys=keys, source=in_store.uri(files[0]))
        if diffs:
            raise mismatch_error(diffs, name, scorer.version, input_uri)
        if shadow is not None:
            shadow_error = unfit_reason("shadow", shadow.meta, scorer.meta, schemas[files[0]], keys) or shadow_error
            if shadow_error:
                log.warning("shadow %s v%s not used: %s", name, shadow_version, shadow_error)
                shadow = None
        if canary is not None:
            canary_error = unfit_reason("canary", canary.meta, scorer.meta, schemas[files[0]], keys) or canary_error
            if canary_error:
                log.warning("canary %s v%s not used: %s; every row scored by v%d", name, canary_version,
                            canary_error, scorer.version)
                canary = None
        first = schemas[files[0]]
        key_types = {k: first.field(k).type for k in keys}
        needed = list(dict.fromkeys([*keys, *scorer.features, *(shadow.features if shadow else []),
                                     *(canary.features if canary else []), *([segment[0]] if segment else [])]))
        has_proba = scorer.has_proba
        schema = prediction_log_schema(scorer.meta, key_types, has_proba=has_proba, explain_k=explain_k)
        proba_cols = proba_columns(scorer.meta) if has_proba else []
        pred_type = schema.field("prediction").type
        write_options = _write_options(schema, keys)
        physical = physical_schema(schema)
        dtypes = {**((shadow.meta.get("feature_dtypes") or {}) if shadow else {}),
                  **((canary.meta.get("feature_dtypes") or {}) if canary else {}),
                  **(scorer.meta.get("feature_dtypes") or {})}
        # explanation feature names: one dictionary for every batch (main model's features first)
        explain_names = list(dict.fromkeys([*scorer.features, *(canary.features if canary else [])]))
        explain_dict = pa.array(explain_names, type=pa.string())
        explain_pos = {f: i for i, f in enumerate(explain_names)}

        scored_at = dt.datetime.now(dt.UTC)
        run_id = run_id or f"manual__{scored_at.isoformat()}"
        consts = ConstantColumns(physical, {
            "model_name": name, "model_version": scorer.version, "scored_by": chosen["scored_by"],
            "logical_date": ds, "scored_at": scored_at, "run_id": run_id,
            **({"shadow_prediction": None, "shadow_model_version": None} if shadow is None
               else {"shadow_model_version": shadow_version}),
        })
        scored_by_dict = pa.array([chosen["scored_by"], CANARY], type=pa.string())
        index_type = physical.field("scored_by").type.index_type

        def explain_arrays(contrib: Any, features: list[str]) -> tuple[Any, Any]:
            """(global feature index, value) of the top-k, (n, explain_k), -1 / nan where absent."""
            from airflow_mlops.scoring.explain import top_k

            idx, val = top_k(contrib, explain_k)
            gidx = np.full((len(contrib), explain_k), -1, dtype=np.int32)
            gval = np.full((len(contrib), explain_k), np.nan)
            remap = np.array([explain_pos[f] for f in features], dtype=np.int32)
            gidx[:, :idx.shape[1]] = remap[idx]
            gval[:, :idx.shape[1]] = val
            return gidx, gval

        output = predictions_dataset(config, store, output_prefix)
        part_id = _part_id(files) if segment is None else f"seg={_segment_slug(segment[1])}--{_part_id(files)}"
        out_key = (join(output.prefix, PARTS_DIR, partition_name(ds), part_id) if part
                   else output.key(ds))
        canary_salt = name
        manifest = {"model": name, "version": scorer.version, "scored_by": chosen["scored_by"],
                    "selection": chosen["selection"], "as_of": chosen["as_of"], "ds": ds, "run_id": run_id,
                    "scored_at": scored_at.isoformat(), "input_uri": input_uri, "input_files": list(files),
                    "shadow_version": shadow_version if shadow is not None else None, "part": part,
                    "canary_alias": canary_alias if canary is not None else None,
                    "canary_version": canary_version if canary is not None else None,
                    "canary_share": canary_share if canary is not None else None,
                    "kill_switch": kill, "fallback": fallback,
                    "explain": ({"top_k": explain_k, "method": explain_info["method"]} if explain_info else None),
                    "schema": {f.name: str(f.type) for f in schema},
                    "segment": {"column": segment[0], "value": str(segment[1])} if segment else None}
        rows = canary_rows = 0
        with store.partition_writer(out_key, **manifest) as w:
            for f in files:
                uri = in_store.uri(f)
                with local_file(in_store, f, tmpdir) as path:
                    if f not in schemas:
                        schemas[f] = file_schema(path, dataset.fmt, uri)
                        d = check_input_schema(schemas[f], scorer.meta, keys=keys, source=uri)
                        if d:
                            raise mismatch_error(d, name, scorer.version, input_uri)
                    csv_types = csv_column_types(schemas[f], needed, dtypes) if dataset.fmt == "csv" else None
                    writer = BackgroundWriter(w.new_file(), physical, write_options)
                    batches = prefetch(functools.partial(iter_batches, path, dataset.fmt, needed, batch_size,
                                                          uri, csv_types))
                    try:
                        for batch in batches:
                            if segment is not None:
                                batch = batch.filter(segment_mask(batch.column(segment[0]), segment[1]))
                            n = batch.num_rows
                            if n == 0:
                                continue
                            nc = 0
                            if canary is not None:
                                mask = canary_mask(batch, keys, canary_share, canary_salt)
                                nc = int(mask.sum())
                                if nc:  # main rows first, canary rows last: two contiguous slices
                                    order = np.concatenate([np.flatnonzero(~mask), np.flatnonzero(mask)])
                                    batch = batch.take(pa.array(order))
                            pieces = []
                            if n - nc:
                                pieces.append((scorer, *scorer.predict(batch.slice(0, n - nc) if nc else batch)))
                            if nc and canary is not None:  # nc > 0 only with a canary
                                pieces.append((canary, *canary.predict(batch.slice(n - nc))))
                            cols: dict[str, pa.Array] = {}
                            for k in keys:
                                col = batch.column(k)
                                cols[k] = col if col.type == schema.field(k).type else col.cast(schema.field(k).type)
                            pred = (pieces[0][1] if len(pieces) == 1
                                    else np.concatenate([np.asarray(p[1], dtype=object if pred_type == pa.string()
                                                                    else None) for p in pieces]))
                            cols["prediction"] = to_arrow(pred, pred_type)
                            for c in proba_cols:
                                cols[c] = pa.array(np.concatenate([p[2][c].to_numpy() for p in pieces]),
                                                   type=pa.float64())
                            cols.update(consts.get(n))
                            if nc:
                                cols["scored_by"] = pa.DictionaryArray.from_arrays(
                                    pa.array(np.r_[np.zeros(n - nc, np.int32), np.ones(nc, np.int32)],
                                             type=index_type), scored_by_dict)
                                cols["model_version"] = pa.array(
                                    np.r_[np.full(n - nc, scorer.version),
                                          np.full(nc, canary_version)].astype(np.int64))
                                canary_rows += nc
                            if shadow is not None:
                                spred, _, _ = shadow.predict(batch)
                                cols["shadow_prediction"] = to_arrow(spred, pred_type)
                            if explain_k:
                                if pieces[0][0].explainer is None:  # kill switch: no model, no explanation
                                    for i in range(1, explain_k + 1):
                                        cols[f"explain_{i}_feature"] = pa.nulls(
                                            n, type=physical.field(f"explain_{i}_feature").type)
                                        cols[f"explain_{i}_value"] = pa.nulls(n, type=pa.float64())
                                else:
                                    parts_ = [explain_arrays(p[3], p[0].features) for p in pieces]
                                    gidx = np.concatenate([g for g, _ in parts_])
                                    gval = np.concatenate([v for _, v in parts_])
                                    for i in range(explain_k):
                                        absent = gidx[:, i] < 0
                                        cols[f"explain_{i + 1}_feature"] = pa.DictionaryArray.from_arrays(
                                            pa.array(gidx[:, i], type=pa.int32(), mask=absent), explain_dict)
                                        cols[f"explain_{i + 1}_value"] = pa.array(gval[:, i], type=pa.float64(),
                                                                                  mask=absent)
                            writer.write(pa.record_batch([cols[fld.name] for fld in physical], schema=physical))
                            rows += n
                        writer.close()
                    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
                        raise DataError(f"{uri}: cannot convert a batch to the prediction log schema "
                                        f"({str(e).splitlines()[0]})") from None
                    finally:
                        batches.close()
                        with contextlib.suppress(Exception):
                            writer.close()
            if rows == 0 and not part:
                raise EmptyPartitionError(f"partition {input_uri} is empty (0 rows in {len(files)} file(s)); "
                                          "nothing written")
            w.add_rows(rows)
            n_out = len(w.files)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    seconds = time.perf_counter() - started
    if explain_info is not None:
        explain_info["seconds"] = round(scorer.explain_seconds + (canary.explain_seconds if canary else 0.0), 3)
        explain_info["rows"] = rows if kill is None else 0
    summary = {
        "model": name, "version": scorer.version, "scored_by": chosen["scored_by"],
        "selection": chosen["selection"], "as_of": chosen["as_of"], "rows": rows, "files": len(files),
        "output_files": n_out, "output_uri": store.uri(out_key), "output_key": out_key,
        "input_uri": input_uri, "seconds": round(seconds, 3),
        "shadow_alias": shadow_alias, "shadow_version": shadow_version if shadow is not None else None,
        "shadow_error": shadow_error, "scored_at": scored_at.isoformat(), "run_id": run_id, "ds": ds,
        "part": part,
        "canary_alias": canary_alias if canary_share > 0 else None,
        "canary_version": canary_version if canary is not None else None,
        "canary_share": canary_share if canary_alias else None, "canary_rows": canary_rows,
        "canary_error": canary_error, "kill_switch": kill,
        "fallback": ({k: fallback[k] for k in ("source", "rows", "prediction", "proba")} if fallback else None),
        "explain": explain_info,
        "segment": str(segment[1]) if segment else None,
    }
    if fallback is not None:  # JSON-safe (numpy scalars from the target column)
        summary["fallback"]["prediction"] = _plain_value(fallback["prediction"])
    log.info("scored %s with %s v%d (%s): %d row(s) from %d file(s) in %.1f s -> %s", input_uri, name,
             scorer.version, chosen["scored_by"], rows, len(files), seconds, summary["output_uri"])
    if canary_alias and canary_share > 0:
        if canary is not None:
            log.info("canary %r v%s scored %d of %d row(s) (%.2f%%, share %.3f)", canary_alias, canary_version,
                     canary_rows, rows, 100.0 * canary_rows / max(rows, 1), canary_share)
        else:
            log.warning("canary %r not used, all %d row(s) scored by v%d: %s", canary_alias, rows, scorer.version,
                        canary_error)
    if kill is not None and fallback is not None:  # the kill switch always has its fallback
        log.warning("kill switch ON (%s): %d fallback row(s) (prediction %s, from %s)", kill["source"], rows,
                    summary["fallback"]["prediction"], fallback["source"])
    if explain_info is not None and explain_info["method"]:
        log.info("explanations (%s, top %d): %.2f s for %d row(s) (setup %.2f s) of %.2f s scoring",
                 explain_info["method"]["method"], explain_k, explain_info["seconds"], rows,
                 explain_info["setup_seconds"], seconds)
    return summary


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


