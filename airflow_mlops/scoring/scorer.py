"""The loaded model of a scoring run: :class:`Scorer` predicts one Arrow batch (preprocessing once per batch,
labels and probabilities), plus the constant prediction-log columns and the checks that a shadow or canary
version fits the main one."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_mlops.registry.model_registry import ModelRegistry, RegistryError
from airflow_mlops.scoring.schema import (
    check_input_schema,
    prediction_type,
)

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)


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

    def final_and_input(self, X: Any) -> tuple[Any, Any]:
        """``(final estimator, preprocessed X)`` for :func:`~airflow_mlops.training.predict.final_step`, so
        labels and probabilities come from the final estimator itself (one tree pass where its labels
        follow from its probabilities) while the preprocessing stays cached for the explainer."""
        return self._est, self._xt(X)

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
class Scorer:
    """A loaded model plus what is needed to turn record batches into prediction-log columns."""

    name: str
    version: int
    meta: dict[str, Any]
    model: Any
    features: list[str] = field(default_factory=list)
    task: str = "binary"
    classes: list[Any] | None = None

    pipeline: Any = None
    explainer: Any = None
    #: seconds spent in ``explainer.contributions`` (summed over batches)
    explain_seconds: float = 0.0

    @classmethod
    def load(cls, registry: ModelRegistry, name: str, version: int) -> Scorer:
        model, meta = registry.load_model(name, version=version)
        return cls(name, version, meta, _fast(model), list(meta.get("features") or []), meta.get("task", "binary"),
                   meta.get("classes"), pipeline=model)

    @property
    def has_proba(self) -> bool:
        return hasattr(self.model, "predict_proba") and self.task != "regression"

    def predict(self, batch: pa.RecordBatch) -> tuple[Any, Any, Any]:
        """``(predictions, DataFrame of proba_<class> columns, contributions or None)`` for one
        record batch; contributions (rows x features) only when an explainer is set."""
        from airflow_mlops.training.predict import predict_frame

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


def has_proba_columns(registry: ModelRegistry, name: str, version: int, meta: dict[str, Any]) -> bool:
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


class ConstantColumns:
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


def to_arrow(values: Any, t: pa.DataType) -> pa.Array:
    import pyarrow as pa

    arr = pa.array(values)
    return arr if arr.type == t else arr.cast(t)


def unfit_reason(role: str, meta: dict[str, Any], main_meta: dict[str, Any], schema: Any,
                  keys: Sequence[str]) -> str | None:
    """Why a second model (``shadow`` / ``canary``) cannot score this input beside the main model, or None."""
    diffs = check_input_schema(schema, meta, keys=keys)
    if diffs:
        return f"{role} model does not fit the input: " + ", ".join(
            f"{d['column']} (expected {d['expected']}, found {d['found']})" for d in diffs)
    if prediction_type(meta) != prediction_type(main_meta):
        return f"{role} predictions are {prediction_type(meta)}, the model's are {prediction_type(main_meta)}"
    return None


__all__ = ["ConstantColumns", "Scorer", "has_proba_columns", "to_arrow", "unfit_reason"]
