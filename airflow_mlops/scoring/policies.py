"""Rollout policies of batch scoring, apart from I/O: the kill switch (:func:`switch_is_on`) and its naive
fallback (:func:`fallback_baseline`, :class:`FallbackScorer`), the canary's stable row assignment by key hash
(:func:`key_hash`, :func:`canary_mask`), and the rows of one segment (:func:`segment_mask`)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.registry.model_registry import ModelRegistry, RegistryError
from airflow_mlops.store.datasets import (
    DataError,
    Dataset,
)
from airflow_mlops.store.layout import data_prefix

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


class FallbackScorer:
    """The kill switch's scorer: every row gets the version's naive training baseline
    (:func:`fallback_baseline`); no model is loaded."""

    explainer = None
    explain_seconds = 0.0

    def __init__(self, name: str, version: int, meta: dict[str, Any], baseline: dict[str, Any],
                 has_proba: bool) -> None:
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

    from airflow_mlops.training.steps import category_label

    s = pd.Series(values).dropna()
    if task == "regression":
        v = s.to_numpy(dtype="float64")
        return {}, float(v.sum()), int(len(v))
    counts: dict[str, int] = {}
    for value, c in s.value_counts(sort=False).items():
        label = category_label(value)
        counts[label] = counts.get(label, 0) + int(c)
    return counts, 0.0, int(np.sum(list(counts.values()))) if counts else 0


def _baseline_from(counts: dict[str, int], total: float, n: int, meta: dict[str, Any], source: str) -> dict[str, Any]:
    from airflow_mlops.training.steps import category_label

    task = meta.get("task", "binary")
    if task == "regression":
        return {"task": task, "source": source, "rows": n, "prediction": total / n, "proba": None}
    classes = list(meta.get("classes") or [])
    labels = [category_label(c) for c in classes]
    proba = {lab: counts.get(lab, 0) / n for lab in labels}
    best = max(range(len(classes)), key=lambda i: (proba[labels[i]], -i))  # ties: first class
    cls = classes[best]
    return {"task": task, "source": source, "rows": n, "prediction": cls, "proba": proba}


def fallback_baseline(registry: ModelRegistry, name: str, version: int,
                      meta: dict[str, Any] | None = None) -> dict[str, Any]:
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
        prefix = data_prefix(data_cfg["dataset"])
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
    from airflow_mlops.training.steps import category_label

    classes = list(meta.get("classes") or [])
    labels = [category_label(c) for c in classes]
    if all(f"proba_{lab}" in ref.columns for lab in labels):
        means = {lab: float(ref[f"proba_{lab}"].mean()) for lab in labels}
        total = sum(means.values()) or 1.0
        proba = {lab: v / total for lab, v in means.items()}
    else:
        counts, _, n = _target_counts(ref[target] if target in ref.columns else ref["prediction"], task)
        proba = {lab: counts.get(lab, 0) / max(n, 1) for lab in labels}
    best = max(range(len(classes)), key=lambda i: (proba[labels[i]], -i))
    return {**out, "prediction": classes[best], "proba": proba}


#: SipHash key for string keys (16 bytes; changing it would reshuffle every canary assignment)
_SIP_KEY = "mlops-canary-v1!"


# ------------------------------------------------------------------------------------------
# canary: stable row assignment by key hash
# ------------------------------------------------------------------------------------------
_M1, _M2, _GOLDEN = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15


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
            col = (col.cast(pa.int64()) if pa.types.is_timestamp(t) or pa.types.is_date64(t)
                   else col.cast(pa.int32()).cast(pa.int64()))
        v = pc.fill_null(col.cast(pa.int64(), safe=False), 0).to_numpy(zero_copy_only=False)
        v = v.astype(np.int64, copy=False)
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


def segment_mask(column: pa.Array | pa.ChunkedArray, value: Any) -> Any:
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


__all__ = ["FallbackScorer", "canary_mask", "fallback_baseline", "key_hash", "segment_mask", "switch_is_on"]
