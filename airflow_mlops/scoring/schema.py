"""The schemas of batch scoring: the input a version was trained on (:func:`check_input_schema`, with every
difference named) and the prediction log it writes (:func:`prediction_log_schema`, ``scored_by`` values)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_mlops.store.datasets import (
    DataError,
)

if TYPE_CHECKING:
    import pyarrow as pa


log = logging.getLogger(__name__)


#: Columns every prediction-log partition has after the keys, ``prediction`` and ``proba_<class>``.
LOG_COLUMNS = ("shadow_prediction", "shadow_model_version", "model_name", "model_version", "scored_by",
               "logical_date", "scored_at", "run_id")


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


def _kind(type_str: str) -> str:
    """numeric / string / bool / null / other:<type> for an Arrow (or pandas) dtype string."""
    from airflow_mlops.config.data_check import is_numeric_dtype

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


def check_input_schema(found: pa.Schema | dict[str, str], meta: dict[str, Any], *, keys: Sequence[str] = (),
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


def mismatch_error(diffs: list[dict[str, str]], model: str, version: int, input_uri: str) -> SchemaMismatchError:
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


def prediction_type(meta: dict[str, Any]) -> pa.DataType:
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


def proba_columns(meta: dict[str, Any]) -> list[str]:
    from airflow_mlops.training.steps import category_label

    if meta.get("task") == "regression" or not meta.get("classes"):
        return []
    return [f"proba_{category_label(c)}" for c in meta["classes"]]


def prediction_log_schema(meta: dict[str, Any], key_types: dict[str, pa.DataType], *, has_proba: bool = True,
                          explain_k: int = 0) -> pa.Schema:
    """The Arrow schema of a prediction-log partition for a model (see docs/prediction-log.md);
    ``explain_k > 0`` appends ``explain_<i>_feature`` (string) / ``explain_<i>_value`` (double)."""
    import pyarrow as pa

    pred = prediction_type(meta)
    fields = [pa.field(k, _normal_key_type(t)) for k, t in key_types.items()]
    fields.append(pa.field("prediction", pred))
    if has_proba:
        fields += [pa.field(c, pa.float64()) for c in proba_columns(meta)]
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


def physical_schema(schema: pa.Schema) -> pa.Schema:
    import pyarrow as pa

    explain = [f.name for f in schema if f.name.startswith("explain_") and f.name.endswith("_feature")]
    for name in (*_DICT_CONSTANTS, *explain):
        i = schema.get_field_index(name)
        schema = schema.set(i, schema.field(i).with_type(pa.dictionary(pa.int32(), pa.string())))
    return schema


def csv_column_types(found: pa.Schema, needed: list[str], dtypes: dict[str, str]) -> dict[str, pa.DataType]:
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
# schemas
# ------------------------------------------------------------------------------------------
_DICT_RE = re.compile(r"^dictionary<values=([^,]+),")


#: Run constants written as one-entry dictionary arrays: the Parquet writer stores them dictionary-
#: encoded without hashing every value. Files are written without the Arrow schema so that readers
#: see plain ``string`` columns (timestamps keep their UTC zone via the Parquet logical type).
_DICT_CONSTANTS = ("model_name", "scored_by", "logical_date", "run_id")


__all__ = ["CANARY", "FALLBACK", "FIRST_VERSION", "LOG_COLUMNS", "SchemaMismatchError", "check_input_schema",
           "csv_column_types", "mismatch_error", "physical_schema", "prediction_log_schema",
           "prediction_type", "proba_columns"]
