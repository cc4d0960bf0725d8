"""Batch scoring: stream one input partition through a registered model into the prediction log.

The steps are plain functions over ``(config, store)``, like :mod:`airflow_mlops.pipeline`;
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
  :mod:`airflow_mlops.ml.explain` (shap for tree and linear models, perturbation otherwise).

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.hooks.datasets import DataError, Dataset, partition_name, redact_parse_error
from airflow_mlops.hooks.registry import AliasNotFoundError, ModelRegistry, PolicyError, RegistryError
from airflow_mlops.hooks.storage import ArtifactStore, join

if TYPE_CHECKING:
    import pyarrow as pa

    from airflow_mlops.ml.config import ExplainConfig, ModelConfig

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "LOG_COLUMNS",
    "ModelSelectionError",
    "SchemaMismatchError",
    "canary_mask",
    "check_input_schema",
    "fallback_baseline",
    "key_hash",
    "switch_is_on",
    "end_of_day",
    "merge_parts",
    "partition_input_files",
    "prediction_log_schema",
    "predictions_dataset",
    "select_model",
    "score_partition",
    "scoring_input",
]

DEFAULT_BATCH_SIZE = 131072
#: Columns every prediction-log partition has after the keys, ``prediction`` and ``proba_<class>``.
LOG_COLUMNS = ("shadow_prediction", "shadow_model_version", "model_name", "model_version", "scored_by",
               "logical_date", "scored_at", "run_id")
PARTS_DIR = "_parts"
#: ``scored_by`` of rows routed to the canary alias's version
CANARY = "canary"
#: ``scored_by`` of rows written by the kill switch's naive baseline (no model involved)
FALLBACK = "fallback"
#: ``scored_by`` of rows scored by the alias's first version (``if_alias_missing="first"``)
FIRST_VERSION = "first_version"


class SchemaMismatchError(DataError):
    """The input partition does not have the columns/dtypes the model was trained on.

    ``differences`` lists every problem as ``{"column", "expected", "found", "file"}``.
    """

    def __init__(self, message: str, differences: Sequence[dict[str, str]] = ()) -> None:
        super().__init__(message)
        self.differences = list(differences)

    def __reduce__(self) -> tuple[Any, ...]:  # keep .differences across pickling
        return (self.__class__, (str(self), self.differences))


class ModelSelectionError(AliasNotFoundError):
    """No model can be chosen for the logical date (the alias did not exist then)."""


# ------------------------------------------------------------------------------------------
# model selection
# ------------------------------------------------------------------------------------------
def end_of_day(ds: str | dt.date) -> dt.datetime:
    """The last microsecond (UTC) of the logical day ``ds``."""
    day = dt.date.fromisoformat(str(ds)[:10])
    return dt.datetime.combine(day, dt.time.max, tzinfo=dt.timezone.utc)


def _as_utc(ts: str | dt.datetime) -> dt.datetime:
    if isinstance(ts, str):
        ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.timezone.utc)


def _format_history(events: list[dict]) -> str:
    """The alias changes in the order that decides :meth:`ModelRegistry.alias_as_of`: each by its
    ``effective_at`` (the logical date it counts from; its write time ``at`` when it named none), the
    write time only added, as secondary information, when it differs."""
    if not events:
        return "no changes recorded"

    def effective(ev: dict) -> str:
        return str(ev.get("effective_at") or ev.get("at"))

    def order(ev: dict) -> tuple[dt.datetime, int]:
        try:
            return _as_utc(effective(ev)), int(ev.get("seq") or 0)
        except (TypeError, ValueError):
            return dt.datetime.max.replace(tzinfo=dt.timezone.utc), int(ev.get("seq") or 0)

    parts = []
    for ev in sorted(events, key=order):
        text = (f"effective {effective(ev)} {ev.get('action')} {ev.get('from')} -> {ev.get('to')}"
                f" by {ev.get('actor')}")
        if ev.get("effective_at") and ev.get("at") and str(ev["at"]) != str(ev["effective_at"]):
            text += f" (recorded {ev['at']})"
        parts.append(text)
    return "; ".join(parts)


def select_model(registry: ModelRegistry, name: str, ds: str, *, alias: str = "champion",
                 version: int | str | None = None, as_of: str | dt.datetime | None = None,
                 as_of_logical_date: bool = False, if_alias_missing: str = "fail") -> dict[str, Any]:
    """Which version scores ``ds``: ``{"version", "scored_by", "selection", "alias", "as_of"}``.

    * ``version`` given: that version, ``scored_by="pinned"``, ``selection="version"``;
    * ``as_of`` (timestamp) or ``as_of_logical_date`` (= the end of the logical day ``ds``): the
      version ``alias`` pointed to at that moment, from the audit log (``selection="alias_as_of"``).
      If the alias did not exist then, :class:`ModelSelectionError` names the moment and lists the
      alias history: a backfill never silently uses today's model. Opt-in
      ``if_alias_missing="first"`` uses instead the first version the alias ever pointed to (fixed
      by the append-only audit log, so still reproducible), with ``scored_by="first_version"`` and
      ``selection="alias_first"``: for backfilling dates older than the first promotion;
    * otherwise the version ``alias`` points to now (``selection="alias"``).
    """
    if if_alias_missing not in ("fail", "first"):
        raise ValueError(f"if_alias_missing must be 'fail' or 'first', not {if_alias_missing!r}")
    if version not in (None, ""):
        v = registry.resolve(name, version=version)
        return {"version": v, "scored_by": "pinned", "selection": "version", "alias": None, "as_of": None}
    alias = alias or "champion"
    explicit = as_of is not None
    if as_of is None and as_of_logical_date:
        as_of = end_of_day(ds)
    if as_of is not None:
        ts = _as_utc(as_of)
        registry.list_versions(name)  # unknown model -> ModelNotFoundError
        v = registry.alias_as_of(name, alias, ts)
        if v is not None:
            return {"version": int(v), "scored_by": alias, "selection": "alias_as_of", "alias": alias,
                    "as_of": ts.isoformat()}
        history = registry.alias_history(name, alias)
        first = next((ev.get("to") for ev in history if ev.get("to") is not None), None)
        if if_alias_missing == "first" and first is not None:
            log.warning("alias %r of %s did not exist at %s; scoring %s with its first version v%s",
                        alias, name, ts.isoformat(), str(ds)[:10], first)
            return {"version": int(first), "scored_by": FIRST_VERSION, "selection": "alias_first", "alias": alias,
                    "as_of": ts.isoformat()}
        when = ts.isoformat() if explicit else f"{ts.isoformat()} (end of logical date {str(ds)[:10]})"
        raise ModelSelectionError(
            f"alias {alias!r} of model {name!r} pointed to no version at {when} - alias history: "
            f"{_format_history(history)}. Scoring this date with today's model would not be reproducible; "
            f"pin a version with version=<n> (or opt in to if_alias_missing='first') to score it anyway."
        )
    v = registry.resolve(name, alias=alias)
    return {"version": v, "scored_by": alias, "selection": "alias", "alias": alias, "as_of": None}


# ------------------------------------------------------------------------------------------
# schemas
# ------------------------------------------------------------------------------------------
_DICT_RE = re.compile(r"^dictionary<values=([^,]+),")


def _kind(type_str: str) -> str:
    """numeric / string / bool / null / other:<type> for an Arrow (or pandas) dtype string."""
    from airflow_mlops.ml.config import is_numeric_dtype

    t = type_str.strip()
    m = _DICT_RE.match(t)
    if m:
        t = m.group(1)
    if t in ("null", "na"):
        return "null"
    if t in ("bool", "boolean"):
        return "bool"
    if is_numeric_dtype(t):
        return "numeric"
    if t in ("string", "large_string", "utf8", "large_utf8", "str", "object", "category") or t.startswith("string"):
        return "string"
    return f"other:{t}"


def check_input_schema(found: pa.Schema | dict[str, str], meta: dict, *, keys: Sequence[str] = (),
                       source: str = "") -> list[dict[str, str]]:
    """Differences between an input schema and a model's feature schema.

    Missing key/feature columns, and features whose dtype kind (numeric / string / bool) differs
    from the training dtype (``metadata["feature_dtypes"]``); an all-null column fits any kind.
    Returns ``[{"column", "expected", "found", "file"}, ...]`` (empty when compatible).
    """
    if not isinstance(found, dict):
        found = {f.name: str(f.type) for f in found}
    dtypes = meta.get("feature_dtypes") or {}
    diffs: list[dict[str, str]] = []
    for k in list(dict.fromkeys([*(meta.get("keys") or []), *keys])):
        if k not in found:
            diffs.append({"column": k, "expected": "key column", "found": "missing", "file": source})
    for f in meta.get("features") or []:
        expected = dtypes.get(f, "any")
        if f not in found:
            diffs.append({"column": f, "expected": expected, "found": "missing", "file": source})
            continue
        if expected == "any":
            continue
        want, have = _kind(expected), _kind(found[f])
        if have != "null" and want != have:
            diffs.append({"column": f, "expected": f"{expected} ({want})", "found": f"{found[f]} ({have})",
                          "file": source})
    return diffs


def _mismatch_error(diffs: list[dict[str, str]], model: str, version: int, input_uri: str) -> SchemaMismatchError:
    lines = [f"  - {d['column']}: expected {d['expected']}, found {d['found']}"
             + (f" in {d['file']}" if d.get("file") else "") for d in diffs]
    return SchemaMismatchError(
        f"input {input_uri} does not match the feature schema of {model} v{version} "
        f"({len(diffs)} difference(s)); nothing was written:\n" + "\n".join(lines), diffs)


def _normal_key_type(t: pa.DataType) -> pa.DataType:
    """Stable key types in the prediction log: integers -> int64, strings -> string."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) and t != pa.uint64():
        return pa.int64()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pa.string()
    return t


def _prediction_type(meta: dict) -> pa.DataType:
    import pyarrow as pa

    if meta.get("task") == "regression" or not meta.get("classes"):
        return pa.float64()
    classes = list(meta["classes"])
    if all(isinstance(c, bool) for c in classes):
        return pa.bool_()
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return pa.int64()
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return pa.float64()
    return pa.string()


def _proba_columns(meta: dict) -> list[str]:
    from airflow_mlops.ml.training import _label

    if meta.get("task") == "regression" or not meta.get("classes"):
        return []
    return [f"proba_{_label(c)}" for c in meta["classes"]]


def prediction_log_schema(meta: dict, key_types: dict[str, pa.DataType], *, has_proba: bool = True,
                          explain_k: int = 0) -> pa.Schema:
    """The Arrow schema of a prediction-log partition for a model (see docs/prediction-log.md);
    ``explain_k > 0`` appends ``explain_<i>_feature`` (string) / ``explain_<i>_value`` (double)."""
    import pyarrow as pa

    pred = _prediction_type(meta)
    fields = [pa.field(k, _normal_key_type(t)) for k, t in key_types.items()]
    fields.append(pa.field("prediction", pred))
    if has_proba:
        fields += [pa.field(c, pa.float64()) for c in _proba_columns(meta)]
    fields += [
        pa.field("shadow_prediction", pred),
        pa.field("shadow_model_version", pa.int64()),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.int64(), nullable=False),
        pa.field("scored_by", pa.string(), nullable=False),
        pa.field("logical_date", pa.string(), nullable=False),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
    for i in range(1, explain_k + 1):
        fields += [pa.field(f"explain_{i}_feature", pa.string()), pa.field(f"explain_{i}_value", pa.float64())]
    return pa.schema(fields)


# ------------------------------------------------------------------------------------------
# input files
# ------------------------------------------------------------------------------------------
def predictions_dataset(config: ModelConfig, store: ArtifactStore, output_prefix: str | None = None) -> Dataset:
    """The prediction log of a model: ``<root>/predictions/<model>/ds=YYYY-MM-DD/`` (:class:`Locations`)."""
    from airflow_mlops.hooks.datasets import Locations

    return Locations(config, store).predictions(output_prefix)


def scoring_input(config: ModelConfig, store: ArtifactStore) -> Dataset:
    """The dataset scored daily (:attr:`Locations.scoring`): ``data.scoring_dataset`` when set
    (``<root>/data/<name>``), else the model's input dataset (``data.uri`` or ``data.dataset``)."""
    from airflow_mlops.hooks.datasets import Locations

    return Locations(config, store).scoring


def partition_input_files(config: ModelConfig, store: ArtifactStore, ds: str,
                          input_dataset: Dataset | None = None) -> list[str]:
    """Keys (inside the input dataset's store) of the data files of the input partition ``ds``,
    for fan-out with dynamic task mapping. A missing/empty partition raises :class:`DataError`."""
    dataset = input_dataset or scoring_input(config, store)
    files = dataset.files(ds)
    if not files:
        raise DataError(
            f"partition {dataset.uri(ds)} has no {dataset.fmt} files; expected data for {str(ds)[:10]} "
            f"(present partitions: {dataset.partitions()[-5:] or 'none'})"
        )
    return files


@contextlib.contextmanager
def _local_file(store: ArtifactStore, key: str, tmpdir: str) -> Iterator[str]:
    """A local path holding ``key``: the file itself on file://, else a temp copy streamed to disk
    (memory stays bounded; disk use is one input file at a time)."""
    if store.is_local:
        yield store.local_path(key)
        return
    fd, path = tempfile.mkstemp(prefix="in-", suffix=os.path.splitext(key)[1], dir=tmpdir)
    os.close(fd)
    try:
        _download(store, key, path)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _download(store: ArtifactStore, key: str, path: str) -> None:
    b = store._b
    client = getattr(b, "client", None)
    if client is not None and hasattr(client, "download_file"):
        b._call("download", key, client.download_file, b.bucket, b.key(key), path)  # streams to disk
    else:  # pragma: no cover - other backends
        with open(path, "wb") as f:
            f.write(store.read_bytes(key))


def _file_schema(path: str, fmt: str, uri: str) -> pa.Schema:
    """Arrow schema of one input file from its metadata (parquet footer / CSV header + first block)."""
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(path)
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(path)
        try:
            return reader.schema
        finally:
            reader.close()
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{uri} is not a readable {fmt} file ({redact_parse_error(e)}); "
                        "re-deliver the file or remove it from the partition") from None


def _iter_batches(path: str, fmt: str, columns: list[str], batch_size: int, uri: str,
                  csv_types: dict[str, pa.DataType] | None = None) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path, pre_buffer=False)  # decode column chunk by column chunk: less memory
            try:
                yield from pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=True)
            finally:
                pf.close()
        else:
            import pyarrow.csv as pcsv

            block = int(min(max(batch_size * 16 * max(len(columns), 1), 1 << 20), 256 << 20))
            reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=block),
                                   convert_options=pcsv.ConvertOptions(include_columns=columns,
                                                                       column_types=csv_types or {}))
            try:
                for batch in reader:
                    for start in range(0, batch.num_rows, batch_size):
                        yield batch.slice(start, batch_size)
            finally:
                reader.close()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
        raise DataError(f"{uri} cannot be read as {fmt} ({redact_parse_error(e)}); "
                        "re-deliver the file or remove it from the partition") from None


# ------------------------------------------------------------------------------------------
# overlap IO with compute (bounded: a couple of batches in flight)
# ------------------------------------------------------------------------------------------
class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def _prefetch(make_iter: Any, depth: int = 2) -> Iterator[Any]:
    """Run the iterator returned by ``make_iter()`` in a background thread, at most ``depth``
    items ahead (Arrow decoding releases the GIL, so reading overlaps with prediction).
    Exceptions are re-raised in the consumer; closing the consumer stops the producer."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        it = None
        try:
            it = make_iter()
            for item in it:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(_Failure(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    thread = threading.Thread(target=run, name="mlops-score-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class _BackgroundWriter:
    """A ``ParquetWriter`` whose ``write_batch`` runs in a helper thread, one batch at a time
    (Parquet encoding and compression release the GIL), so writing overlaps with prediction."""

    def __init__(self, path: str, schema: pa.Schema, options: dict[str, Any]) -> None:
        import pyarrow.parquet as pq
        from concurrent.futures import ThreadPoolExecutor

        self._writer = pq.ParquetWriter(path, schema, **options)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlops-score-writer")
        self._pending: Any = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._writer.write_batch, batch)

    def close(self) -> None:
        try:
            if self._pending is not None:
                self._pending.result()
        finally:
            self._pending = None
            self._pool.shutdown(wait=True)
            self._writer.close()


# ------------------------------------------------------------------------------------------
# prediction
# ------------------------------------------------------------------------------------------
class _TransformOnce:
    """A fitted sklearn ``Pipeline`` seen by :func:`predict_frame` as a model whose ``predict`` and
    ``predict_proba`` on the same frame share one preprocessing pass (``Pipeline.predict`` would run
    the ColumnTransformer twice). Results are identical: the final estimator sees the same matrix."""

    def __init__(self, pipeline: Any) -> None:
        self._pre = pipeline[:-1]
        self._est = pipeline[-1]
        self.classes_ = getattr(self._est, "classes_", None)
        self._last: tuple[Any, Any] | None = None
        if hasattr(self._est, "predict_proba"):
            self.predict_proba = self._predict_proba

    def _xt(self, X: Any) -> Any:
        if self._last is None or self._last[0] is not X:
            self._last = (X, self._pre.transform(X))
        return self._last[1]

    def predict(self, X: Any) -> Any:
        return self._est.predict(self._xt(X))

    def _predict_proba(self, X: Any) -> Any:
        return self._est.predict_proba(self._xt(X))

    def reset(self) -> None:
        self._last = None


def _fast(model: Any) -> Any:
    try:
        from sklearn.pipeline import Pipeline
    except ImportError:  # pragma: no cover
        return model
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        return _TransformOnce(model)
    return model


@dataclass
class _Scorer:
    """A loaded model plus what is needed to turn record batches into prediction-log columns."""

    name: str
    version: int
    meta: dict
    model: Any
    features: list[str] = field(default_factory=list)
    task: str = "binary"
    classes: list | None = None

    pipeline: Any = None
    explainer: Any = None
    #: seconds spent in ``explainer.contributions`` (summed over batches)
    explain_seconds: float = 0.0

    @classmethod
    def load(cls, registry: ModelRegistry, name: str, version: int) -> _Scorer:
        model, meta = registry.load_model(name, version=version)
        return cls(name, version, meta, _fast(model), list(meta.get("features") or []), meta.get("task", "binary"),
                   meta.get("classes"), pipeline=model)

    @property
    def has_proba(self) -> bool:
        return hasattr(self.model, "predict_proba") and self.task != "regression"

    def predict(self, batch: pa.RecordBatch) -> tuple[Any, Any, Any]:
        """``(predictions, DataFrame of proba_<class> columns, contributions or None)`` for one
        record batch; contributions (rows x features) only when an explainer is set."""
        from airflow_mlops.ml.training import predict_frame

        frame = batch.select(self.features).to_pandas()  # one consolidated block: cheap to_numpy()
        out = predict_frame(self.model, frame, self.features, self.task, self.classes)
        pred = out["prediction"].to_numpy()
        contrib = None
        if self.explainer is not None:
            t = time.perf_counter()
            last = getattr(self.model, "_last", None)
            contrib = self.explainer.contributions(frame, transformed=last[1] if last else None, prediction=pred)
            self.explain_seconds += time.perf_counter() - t
        if isinstance(self.model, _TransformOnce):
            self.model.reset()
        return pred, out, contrib


class _FallbackScorer:
    """The kill switch's scorer: every row gets the version's naive training baseline
    (:func:`fallback_baseline`); no model is loaded."""

    explainer = None
    explain_seconds = 0.0

    def __init__(self, name: str, version: int, meta: dict, baseline: dict, has_proba: bool) -> None:
        self.name, self.version, self.meta, self.baseline = name, version, meta, baseline
        self.features: list[str] = []
        self.task = meta.get("task", "binary")
        self.has_proba = has_proba

    def predict(self, batch: pa.RecordBatch) -> tuple[Any, Any, None]:
        import numpy as np
        import pandas as pd

        n = batch.num_rows
        pred = np.full(n, self.baseline["prediction"], dtype=object if isinstance(self.baseline["prediction"], str)
                       else None)
        out = pd.DataFrame({"prediction": pred})
        for label, p in (self.baseline.get("proba") or {}).items():
            out[f"proba_{label}"] = np.full(n, p, dtype="float64")
        return pred, out, None


# ------------------------------------------------------------------------------------------
# kill switch: naive fallback from the training baseline
# ------------------------------------------------------------------------------------------
_FALSY = ("", "0", "false", "no", "off", "none", "null")


def switch_is_on(value: Any) -> bool:
    """Whether a kill-switch value (e.g. the Airflow Variable ``mlops_<model>_disabled``) is on:
    ``None`` and ``""``/``0``/``false``/``no``/``off``/``none``/``null`` (any case) are off; every
    other value (``true``, ``1``, ``yes``, a reason text...) is on - an unclear value stops the model."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    return str(value).strip().lower() not in _FALSY


def _target_counts(values: Any, task: str) -> tuple[dict[str, int], float, int]:
    """``(counts by class label, sum, n)`` of the non-null target values."""
    import numpy as np
    import pandas as pd

    from airflow_mlops.ml.training import _label

    s = pd.Series(values).dropna()
    if task == "regression":
        v = s.to_numpy(dtype="float64")
        return {}, float(v.sum()), int(len(v))
    counts: dict[str, int] = {}
    for value, c in s.value_counts(sort=False).items():
        label = _label(value)
        counts[label] = counts.get(label, 0) + int(c)
    return counts, 0.0, int(np.sum(list(counts.values()))) if counts else 0


def _baseline_from(counts: dict[str, int], total: float, n: int, meta: dict, source: str) -> dict[str, Any]:
    from airflow_mlops.ml.training import _label

    task = meta.get("task", "binary")
    if task == "regression":
        return {"task": task, "source": source, "rows": n, "prediction": total / n, "proba": None}
    classes = list(meta.get("classes") or [])
    labels = [_label(c) for c in classes]
    proba = {lab: counts.get(lab, 0) / n for lab in labels}
    best = max(range(len(classes)), key=lambda i: (proba[labels[i]], -i))  # ties: first class
    cls = classes[best]
    return {"task": task, "source": source, "rows": n, "prediction": cls, "proba": proba}


def fallback_baseline(registry: ModelRegistry, name: str, version: int, meta: dict | None = None) -> dict[str, Any]:
    """The naive prediction the kill switch writes for version ``version``: what the training's
    naive baseline (``DummyClassifier(strategy="prior")`` / ``DummyRegressor(strategy="mean")``,
    scored in ``metrics.baseline``) predicts - the majority class with the class prior as
    probabilities for classifiers, the training mean for regression.

    ``metadata.json`` records the baseline's metrics but not its prediction, so it is recomputed
    from the first source available:

    1. ``training_data`` - the training window's target column (only that column is read) minus the
       holdout rows (``holdout.parquet``): exactly the rows the baseline was fitted on. Used when the
       window still holds ``split.n_train + split.n_holdout`` labelled rows;
    2. ``holdout`` - the target of ``holdout.parquet`` (a stratified sample of the same window, so
       the same class proportions up to rounding);
    3. ``reference`` - ``reference.parquet`` (training features + the model's predictions, no
       target): the mean predicted probabilities / mean prediction of that training sample.

    Returns ``{"task", "source", "rows", "prediction", "proba": {label: p} | None}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = meta or registry.get_metadata(name, version)
    task = meta.get("task", "binary")
    target = meta.get("target")
    artifacts = meta.get("artifacts") or {}
    hold = None
    if target and "holdout.parquet" in artifacts:
        try:
            t = pq.read_table(pa.BufferReader(registry.read_artifact(name, version, "holdout.parquet")),
                              columns=[target])
            hold = _target_counts(t.column(0).to_pandas(), task)
        except (RegistryError, KeyError, pa.ArrowInvalid) as e:
            log.warning("%s v%d: holdout.parquet not usable for the fallback baseline: %s", name, version, e)
    # 1. training window minus holdout
    td = meta.get("training_data") or {}
    split = meta.get("split") or {}
    root = registry.store.uri("").rstrip("/") + "/"
    data_cfg = (meta.get("config") or {}).get("data") or {}
    prefix = None
    if td.get("uri", "").startswith(root):
        prefix = td["uri"][len(root):]
    elif data_cfg.get("dataset"):  # the store was moved/copied: the same dataset under this root
        prefix = join("data", data_cfg["dataset"])
    if hold is not None and target and prefix and td.get("partitions"):
        data = Dataset(registry.store, prefix, data_cfg.get("format") or "parquet")
        try:
            parts = [data.read_table(p, columns=[target]).column(0).to_pandas() for p in td["partitions"]]
            import pandas as pd

            win = _target_counts(pd.concat(parts, ignore_index=True), task)
            expected = int(split.get("n_train", -1)) + int(split.get("n_holdout", -1))
            if win[2] == expected and expected - hold[2] > 0:
                counts = {k: v - hold[0].get(k, 0) for k, v in win[0].items()}
                return _baseline_from(counts, win[1] - hold[1], expected - hold[2], meta, "training_data")
            log.info("%s v%d: training window has %d labelled rows, the model was trained on %d; "
                     "fallback baseline from the holdout instead", name, version, win[2], expected)
        except (DataError, OSError, pa.ArrowInvalid, KeyError) as e:
            log.info("%s v%d: training data not readable for the fallback baseline (%s); using the holdout",
                     name, version, str(e).splitlines()[0])
    # 2. holdout
    if hold is not None and hold[2] > 0:
        return _baseline_from(hold[0], hold[1], hold[2], meta, "holdout")
    # 3. reference sample (features + the model's predictions)
    ref = registry.load_reference(name, version)
    if ref.empty:
        raise DataError(f"{name} v{version}: no training target, holdout or reference rows to compute the "
                        f"fallback baseline from; re-register the version with its artifacts")
    out = {"task": task, "source": "reference", "rows": int(len(ref))}
    if task == "regression":
        col = target if target in ref.columns else "prediction"
        return {**out, "prediction": float(ref[col].mean()), "proba": None}
    from airflow_mlops.ml.training import _label

    classes = list(meta.get("classes") or [])
    labels = [_label(c) for c in classes]
    if all(f"proba_{lab}" in ref.columns for lab in labels):
        means = {lab: float(ref[f"proba_{lab}"].mean()) for lab in labels}
        total = sum(means.values()) or 1.0
        proba = {lab: v / total for lab, v in means.items()}
    else:
        counts, _, n = _target_counts(ref[target] if target in ref.columns else ref["prediction"], task)
        proba = {lab: counts.get(lab, 0) / max(n, 1) for lab in labels}
    best = max(range(len(classes)), key=lambda i: (proba[labels[i]], -i))
    return {**out, "prediction": classes[best], "proba": proba}


def _has_proba_columns(registry: ModelRegistry, name: str, version: int, meta: dict) -> bool:
    """Whether the version's predictions include ``proba_<class>`` (from its reference schema), so
    that fallback partitions have the same columns as the model's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if meta.get("task") == "regression" or not meta.get("classes"):
        return False
    try:
        schema = pq.read_schema(pa.BufferReader(registry.read_artifact(name, version, "reference.parquet")))
        return any(n.startswith("proba_") for n in schema.names)
    except (RegistryError, pa.ArrowInvalid):
        return True


# ------------------------------------------------------------------------------------------
# canary: stable row assignment by key hash
# ------------------------------------------------------------------------------------------
_M1, _M2, _GOLDEN = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15
#: SipHash key for string keys (16 bytes; changing it would reshuffle every canary assignment)
_SIP_KEY = "mlops-canary-v1!"


def _splitmix64(x: Any) -> Any:
    """splitmix64 finaliser on a uint64 numpy array (wrapping arithmetic)."""
    import numpy as np

    with np.errstate(over="ignore"):
        z = x + np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        return z ^ (z >> np.uint64(31))


def _column_hash(col: pa.Array | pa.ChunkedArray) -> Any:
    """uint64 hash of each value's canonical form: integers (any width), booleans, dates and
    timestamps as int64; floats by their float64 bits (``-0.0`` = ``0.0``); strings/binary by
    SipHash-2-4 of their UTF-8 bytes; nulls hash to a fixed value."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = t.value_type
    nulls = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else None
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
        if pa.types.is_temporal(t):
            col = col.cast(pa.int64()) if pa.types.is_timestamp(t) or pa.types.is_date64(t) else                 col.cast(pa.int32()).cast(pa.int64())
        v = pc.fill_null(col.cast(pa.int64(), safe=False), 0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        h = _splitmix64(v.view(np.uint64))
    elif pa.types.is_floating(t):
        v = pc.fill_null(col.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        v = np.where(v == 0.0, 0.0, v)
        h = _splitmix64(v.view(np.uint64))
    else:
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            col = col.cast(pa.string())
        values = pc.fill_null(col, "").to_numpy(zero_copy_only=False).astype(object)
        h = pd.util.hash_array(values, encoding="utf8", hash_key=_SIP_KEY, categorize=False).astype(np.uint64)
    if nulls is not None:
        h = np.where(nulls, np.uint64(0x6E756C6C), h)
    return h


def key_hash(batch: pa.RecordBatch | pa.Table, keys: Sequence[str], salt: str = "") -> Any:
    """A deterministic uint64 per row from the key columns' values (vectorised; independent of the
    process, the row order, the batch size and Python's salted ``hash()``)."""
    import numpy as np

    seed = int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "little")
    h = np.full(batch.num_rows, seed, dtype=np.uint64)
    for k in keys:
        with np.errstate(over="ignore"):
            h = _splitmix64(h * np.uint64(_GOLDEN) ^ _column_hash(batch.column(k)))
    return h


def canary_mask(batch: pa.RecordBatch | pa.Table, keys: Sequence[str], share: float, salt: str = "") -> Any:
    """Boolean numpy mask of the rows that go to the canary: ``u < share`` where ``u`` in [0, 1) is
    the top 53 bits of :func:`key_hash`. The same keys always get the same answer, and raising
    ``share`` only adds rows (a row in the canary at 5 % stays in it at 10 %)."""
    import numpy as np

    if not keys:
        raise ValueError("canary routing needs key columns (config keys) to hash")
    u = (key_hash(batch, keys, salt) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return u < share


#: Run constants written as one-entry dictionary arrays: the Parquet writer stores them dictionary-
#: encoded without hashing every value. Files are written without the Arrow schema so that readers
#: see plain ``string`` columns (timestamps keep their UTC zone via the Parquet logical type).
_DICT_CONSTANTS = ("model_name", "scored_by", "logical_date", "run_id")


def _physical_schema(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    explain = [f.name for f in schema if f.name.startswith("explain_") and f.name.endswith("_feature")]
    for name in (*_DICT_CONSTANTS, *explain):
        i = schema.get_field_index(name)
        schema = schema.set(i, schema.field(i).with_type(pa.dictionary(pa.int32(), pa.string())))
    return schema


class _Constants:
    """Per-run constant columns, built once and sliced per batch."""

    def __init__(self, schema: pa.Schema, values: dict[str, Any]) -> None:
        self.schema = schema
        self.values = values
        self.arrays: dict[str, pa.Array] = {}
        self.length = 0

    def get(self, n: int) -> dict[str, pa.Array]:
        import pyarrow as pa

        if n > self.length:
            self.length = n
            self.arrays = {}
            for name, value in self.values.items():
                t = self.schema.field(name).type
                if value is None:
                    self.arrays[name] = pa.nulls(n, type=t)
                elif pa.types.is_dictionary(t):
                    self.arrays[name] = pa.DictionaryArray.from_arrays(
                        pa.repeat(pa.scalar(0, type=t.index_type), n), pa.array([value], type=t.value_type))
                else:
                    self.arrays[name] = pa.repeat(pa.scalar(value, type=t), n)
        return {name: arr.slice(0, n) for name, arr in self.arrays.items()}


def _to_arrow(values: Any, t: pa.DataType) -> pa.Array:
    import pyarrow as pa

    arr = pa.array(values)
    return arr if arr.type == t else arr.cast(t)


# ------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------
def _part_id(files: Sequence[str]) -> str:
    stem = os.path.splitext(files[0].rsplit("/", 1)[-1])[0]
    stem = re.sub(r"[^A-Za-z0-9_.=-]", "_", stem)[:80] or "part"
    digest = hashlib.sha1("\n".join(files).encode()).hexdigest()[:10]
    return f"{stem}-{digest}" if len(files) == 1 else f"{stem}+{len(files) - 1}-{digest}"


def _unfit_reason(role: str, meta: dict, main_meta: dict, schema: Any, keys: Sequence[str]) -> str | None:
    """Why a second model (``shadow`` / ``canary``) cannot score this input beside the main model, or None."""
    diffs = check_input_schema(schema, meta, keys=keys)
    if diffs:
        return f"{role} model does not fit the input: " + ", ".join(
            f"{d['column']} (expected {d['expected']}, found {d['found']})" for d in diffs)
    if _prediction_type(meta) != _prediction_type(main_meta):
        return f"{role} predictions are {_prediction_type(meta)}, the model's are {_prediction_type(main_meta)}"
    return None


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
    :param explain: explanations: an :class:`~airflow_mlops.ml.config.ExplainConfig`, ``True``
        (defaults), ``False`` (off) or ``None`` = ``config.explain``.
    :param segment: ``(column, value)``: score only the rows whose ``column`` equals ``value``
        (compared as text) into a part (all files unless ``files``), for :func:`merge_parts`;
        see :mod:`airflow_mlops.segments`.
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

    from airflow_mlops.hooks.registry import LifecycleError
    from airflow_mlops.ml.config import ExplainConfig

    started = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ds = str(ds)[:10]
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

    scorer: _Scorer | _FallbackScorer
    fallback: dict[str, Any] | None = None
    if kill is not None:
        meta = registry.get_metadata(name, chosen["version"])
        fallback = fallback_baseline(registry, name, chosen["version"], meta)
        scorer = _FallbackScorer(name, chosen["version"], meta, fallback,
                                 _has_proba_columns(registry, name, chosen["version"], meta))
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
            scorer = _Scorer.load(registry, name, chosen["version"])
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
    shadow: _Scorer | None = None
    shadow_version: int | None = None
    shadow_error: str | None = None
    if shadow_alias and kill is None:
        try:
            sel = select_model(registry, name, ds, alias=shadow_alias, as_of=chosen["as_of"])
            shadow_version = sel["version"]
            shadow = _Scorer.load(registry, name, shadow_version)
            if (shadow.task == "regression") != (scorer.task == "regression"):
                raise RegistryError(f"shadow v{shadow_version} is a {shadow.task} model, "
                                    f"v{scorer.version} a {scorer.task} model")
        except RegistryError as e:
            shadow, shadow_error = None, f"{type(e).__name__}: {e}"
            log.warning("shadow alias %r of %s not used: %s; shadow columns are null", shadow_alias, name, e)
    elif shadow_alias:
        shadow_error = "kill switch on: no model scored"

    canary: _Scorer | None = None
    canary_version: int | None = None
    canary_error: str | None = None
    if canary_alias and canary_share > 0:
        if kill is not None:
            canary_error = "kill switch on: every row got the fallback"
        else:
            try:
                sel = select_model(registry, name, ds, alias=canary_alias, as_of=chosen["as_of"])
                canary_version = sel["version"]
                if canary_version == scorer.version:
                    raise RegistryError(f"alias {canary_alias!r} points to v{canary_version}, the version scoring "
                                        "every row already")
                registry.check_serving(name, canary_version, role="canary")  # canary rows are real predictions
                canary = _Scorer.load(registry, name, canary_version)
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
            from airflow_mlops.ml.explain import ExplainError, make_explainer

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
                schemas[f] = _file_schema(in_store.local_path(f), dataset.fmt, in_store.uri(f))
                diffs += check_input_schema(schemas[f], scorer.meta, keys=keys, source=in_store.uri(f))
        else:  # remote: check the first file now, the others as they are downloaded (before commit)
            with _local_file(in_store, files[0], tmpdir) as p:
                schemas[files[0]] = _file_schema(p, dataset.fmt, in_store.uri(files[0]))
            diffs += check_input_schema(schemas[files[0]], scorer.meta, keys=keys, source=in_store.uri(files[0]))
        if diffs:
            raise _mismatch_error(diffs, name, scorer.version, input_uri)
        if shadow is not None:
            shadow_error = _unfit_reason("shadow", shadow.meta, scorer.meta, schemas[files[0]], keys) or shadow_error
            if shadow_error:
                log.warning("shadow %s v%s not used: %s", name, shadow_version, shadow_error)
                shadow = None
        if canary is not None:
            canary_error = _unfit_reason("canary", canary.meta, scorer.meta, schemas[files[0]], keys) or canary_error
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
        proba_cols = _proba_columns(scorer.meta) if has_proba else []
        pred_type = schema.field("prediction").type
        write_options = _write_options(schema, keys)
        physical = _physical_schema(schema)
        dtypes = {**((shadow.meta.get("feature_dtypes") or {}) if shadow else {}),
                  **((canary.meta.get("feature_dtypes") or {}) if canary else {}),
                  **(scorer.meta.get("feature_dtypes") or {})}
        # explanation feature names: one dictionary for every batch (main model's features first)
        explain_names = list(dict.fromkeys([*scorer.features, *(canary.features if canary else [])]))
        explain_dict = pa.array(explain_names, type=pa.string())
        explain_pos = {f: i for i, f in enumerate(explain_names)}

        scored_at = dt.datetime.now(dt.timezone.utc)
        run_id = run_id or f"manual__{scored_at.isoformat()}"
        consts = _Constants(physical, {
            "model_name": name, "model_version": scorer.version, "scored_by": chosen["scored_by"],
            "logical_date": ds, "scored_at": scored_at, "run_id": run_id,
            **({"shadow_prediction": None, "shadow_model_version": None} if shadow is None
               else {"shadow_model_version": shadow_version}),
        })
        scored_by_dict = pa.array([chosen["scored_by"], CANARY], type=pa.string())
        index_type = physical.field("scored_by").type.index_type

        def explain_arrays(contrib: Any, features: list[str]) -> tuple[Any, Any]:
            """(global feature index, value) of the top-k, (n, explain_k), -1 / nan where absent."""
            from airflow_mlops.ml.explain import top_k

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
                with _local_file(in_store, f, tmpdir) as path:
                    if f not in schemas:
                        schemas[f] = _file_schema(path, dataset.fmt, uri)
                        d = check_input_schema(schemas[f], scorer.meta, keys=keys, source=uri)
                        if d:
                            raise _mismatch_error(d, name, scorer.version, input_uri)
                    csv_types = _csv_types(schemas[f], needed, dtypes) if dataset.fmt == "csv" else None
                    writer = _BackgroundWriter(w.new_file(), physical, write_options)
                    batches = _prefetch(functools.partial(_iter_batches, path, dataset.fmt, needed, batch_size,
                                                          uri, csv_types))
                    try:
                        for batch in batches:
                            if segment is not None:
                                batch = batch.filter(_segment_mask(batch.column(segment[0]), segment[1]))
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
                            if nc:
                                pieces.append((canary, *canary.predict(batch.slice(n - nc))))
                            cols: dict[str, pa.Array] = {}
                            for k in keys:
                                col = batch.column(k)
                                cols[k] = col if col.type == schema.field(k).type else col.cast(schema.field(k).type)
                            pred = (pieces[0][1] if len(pieces) == 1
                                    else np.concatenate([np.asarray(p[1], dtype=object if pred_type == pa.string()
                                                                    else None) for p in pieces]))
                            cols["prediction"] = _to_arrow(pred, pred_type)
                            for c in proba_cols:
                                cols[c] = pa.array(np.concatenate([p[2][c].to_numpy() for p in pieces]),
                                                   type=pa.float64())
                            cols.update(consts.get(n))
                            if nc:
                                cols["scored_by"] = pa.DictionaryArray.from_arrays(
                                    pa.array(np.r_[np.zeros(n - nc, np.int32), np.ones(nc, np.int32)],
                                             type=index_type), scored_by_dict)
                                cols["model_version"] = pa.array(
                                    np.r_[np.full(n - nc, scorer.version), np.full(nc, canary_version)].astype(np.int64))
                                canary_rows += nc
                            if shadow is not None:
                                spred, _, _ = shadow.predict(batch)
                                cols["shadow_prediction"] = _to_arrow(spred, pred_type)
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
                raise DataError(f"partition {input_uri} is empty (0 rows in {len(files)} file(s)); nothing written")
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
    if kill is not None:
        log.warning("kill switch ON (%s): %d fallback row(s) (prediction %s, from %s)", kill["source"], rows,
                    summary["fallback"]["prediction"], fallback["source"])
    if explain_info is not None and explain_info["method"]:
        log.info("explanations (%s, top %d): %.2f s for %d row(s) (setup %.2f s) of %.2f s scoring",
                 explain_info["method"]["method"], explain_k, explain_info["seconds"], rows,
                 explain_info["setup_seconds"], seconds)
    return summary


def _segment_slug(value: Any) -> str:
    from airflow_mlops.segments import segment_slug

    return segment_slug(value)


def _segment_mask(column: pa.Array | pa.ChunkedArray, value: Any) -> Any:
    """Rows of a batch whose segment column equals ``value`` compared as text (nulls: never)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or pa.types.is_integer(column.type)):
        raise DataError(f"segment column has type {column.type}; segments need a string or integer column")
    text = column if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) \
        else pc.cast(column, pa.string())
    return pc.fill_null(pc.equal(text, pa.scalar(str(value), type=text.type)), False)


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


def _csv_types(found: pa.Schema, needed: list[str], dtypes: dict[str, str]) -> dict[str, pa.DataType]:
    """Explicit CSV column types so that a later block cannot change a column's inferred type:
    numeric features -> float64, string features -> string, bool -> bool; keys as inferred."""
    import pyarrow as pa

    out: dict[str, pa.DataType] = {}
    for c in needed:
        kind = _kind(dtypes[c]) if c in dtypes else None
        if kind == "numeric":
            out[c] = pa.float64()
        elif kind == "string":
            out[c] = pa.string()
        elif kind == "bool":
            out[c] = pa.bool_()
        elif c in found.names and not pa.types.is_null(found.field(c).type):
            t = found.field(c).type
            out[c] = pa.string() if pa.types.is_string(t) else (pa.int64() if pa.types.is_integer(t) else t)
    return out


# ------------------------------------------------------------------------------------------
# fan-out merge
# ------------------------------------------------------------------------------------------
def _part_key(part: str | dict) -> str:
    if isinstance(part, dict):
        if "output_key" not in part:
            raise DataError(f"part summary {part!r} has no output_key")
        return part["output_key"]
    return str(part)


def _copy_local(store: ArtifactStore, key: str, dest: str) -> None:
    if store.is_local:
        src = store.local_path(key)
        try:
            os.link(src, dest)  # same filesystem: no copy, and deleting the part keeps the data
        except OSError:
            shutil.copyfile(src, dest)
    else:
        _download(store, key, dest)


def merge_parts(config: ModelConfig, store: ArtifactStore, ds: str, parts: Sequence[str | dict], *,
                output_prefix: str | None = None, input_dataset: Dataset | None = None,
                require_complete: bool = True, cleanup: bool = True) -> dict[str, Any]:
    """Commit the prediction partition ``ds`` atomically from parts written by
    ``score_partition(files=...)``.

    ``parts`` are the part summaries (XComs of the mapped tasks) or their ``output_key``. Every part
    must be committed, scored by the same model version, and (``require_complete``) the parts
    together must cover exactly the files of the input partition, each once. The files are
    hard-linked (file://) or copied into one new partition commit; then the parts are removed.

    Segment parts (``score_partition(segment=...)``) are checked per segment: one model per segment,
    each segment covering the input files once; the manifest records ``segments`` (value -> model,
    version, rows).
    """
    started = time.perf_counter()
    ds = str(ds)[:10]
    keys = [_part_key(p) for p in parts]
    if not keys:
        raise DataError(f"no parts to merge for {config.name} {ds}")
    manifests = []
    for k in keys:
        m = store.read_manifest(k)
        if m is None:
            raise DataError(f"part {store.uri(k)} is not committed (no _SUCCESS); re-run its scoring task")
        if m.get("ds") != ds:
            raise DataError(f"part {store.uri(k)} is for {m.get('ds')}, not {ds}")
        manifests.append(m)
    segmented = {bool(m.get("segment")) for m in manifests}
    if len(segmented) > 1:
        raise DataError(f"parts of {config.name} {ds} mix segment parts and whole-partition parts; re-run the scoring")
    if len({_json_key(m.get("schema")) for m in manifests}) > 1:
        raise DataError(f"parts of {config.name} {ds} have different output schemas; re-run the scoring")
    by_segment: dict[Any, list[dict]] = {}
    for m in manifests:
        by_segment.setdefault((m.get("segment") or {}).get("value"), []).append(m)
    for seg, group in by_segment.items():
        _check_parts(config, ds, seg, group, require_complete, input_dataset, store)
    first = manifests[0]
    if segmented == {True}:
        return _merge_files(config, store, ds, keys, manifests, output_prefix, cleanup, started, extra={
            "model": config.name, "version": None, "scored_by": first.get("scored_by"), "selection": "segments",
            "segments": {str(seg): {"model": g[0].get("model"), "version": g[0].get("version"),
                                    "rows": sum(int(m.get("rows", 0)) for m in g)}
                         for seg, g in sorted(by_segment.items(), key=lambda kv: str(kv[0]))}})
    return _merge_files(config, store, ds, keys, manifests, output_prefix, cleanup, started)


def _check_parts(config: ModelConfig, ds: str, segment: Any, manifests: list[dict], require_complete: bool,
                 input_dataset: Dataset | None, store: ArtifactStore) -> None:
    """The parts of one segment (or of the whole partition) were scored by one model and cover the input
    files exactly once."""
    where = f"{config.name} {ds}" + (f" segment {segment!r}" if segment is not None else "")
    models = {(m.get("model"), m.get("version"), m.get("scored_by"), m.get("shadow_version"), m.get("canary_version"),
               m.get("canary_share")) for m in manifests}
    if len(models) > 1:
        raise DataError(
            f"parts of {where} were scored by different models {sorted(models, key=str)} (model, version, "
            "scored_by, shadow, canary version, canary share); an alias or the kill switch changed during the "
            "fan-out. Resolve the version once (version=...) and re-run the parts")
    covered: list[str] = [f for m in manifests for f in m.get("input_files", [])]
    dupes = sorted({f for f in covered if covered.count(f) > 1})
    if dupes:
        raise DataError(f"input file(s) of {where} scored by more than one part: {dupes}")
    if require_complete:
        expected = set(partition_input_files(config, store, ds, input_dataset))
        missing, extra = sorted(expected - set(covered)), sorted(set(covered) - expected)
        if missing or extra:
            raise DataError(f"parts of {where} do not cover the input partition of {ds}: missing "
                            f"{missing or 'none'}, not in the partition {extra or 'none'}")


def _merge_files(config: ModelConfig, store: ArtifactStore, ds: str, keys: list[str], manifests: list[dict],
                 output_prefix: str | None, cleanup: bool, started: float,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    import pyarrow.parquet as pq

    covered: list[str] = list(dict.fromkeys(f for m in manifests for f in m.get("input_files", [])))
    rows = sum(int(m.get("rows", 0)) for m in manifests)
    if rows == 0:
        raise DataError(f"input partition of {config.name} {ds} is empty (0 rows in all parts)")
    first = manifests[0]
    output = predictions_dataset(config, store, output_prefix)
    extra_manifest = {k: first.get(k) for k in ("model", "version", "scored_by", "selection", "as_of", "ds",
                                                "run_id", "scored_at", "input_uri", "shadow_version", "schema",
                                                "canary_alias", "canary_version", "canary_share", "kill_switch",
                                                "fallback", "explain")}
    extra_manifest.update({"input_files": covered, "part": False, "merged_from": keys, **(extra or {})})
    with store.partition_writer(output.key(ds), **extra_manifest) as w:
        for k, m in zip(keys, manifests):
            for fname in m.get("files", []):
                dest = w.new_file()
                _copy_local(store, join(k, fname), dest)
                pq.read_metadata(dest)  # a truncated copy fails here, before the commit
        w.add_rows(rows)
        n_out = len(w.files)
    if cleanup:
        for k in keys:
            store.delete_prefix(k)
        if store.is_local:  # drop the directories left empty (rmdir refuses non-empty ones)
            for leftover in (join(output.prefix, PARTS_DIR, partition_name(ds)), join(output.prefix, PARTS_DIR)):
                with contextlib.suppress(OSError):
                    os.rmdir(store.local_path(leftover))
    summary = {"model": extra_manifest["model"], "version": extra_manifest["version"],
               "scored_by": extra_manifest["scored_by"], "selection": extra_manifest["selection"], "rows": rows,
               "files": len(covered), "parts": len(keys), "segments": extra_manifest.get("segments"),
               "output_files": n_out, "output_uri": output.uri(ds), "output_key": output.key(ds),
               "input_uri": first.get("input_uri"), "shadow_version": first.get("shadow_version"),
               "seconds": round(time.perf_counter() - started, 3), "ds": ds}
    log.info("merged %d part(s) of %s %s: %d row(s) -> %s", len(keys), config.name, ds, rows, summary["output_uri"])
    return summary


def _json_key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)
