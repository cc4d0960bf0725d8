"""The functions inside every pipeline :mod:`airflow_mlops.training.trainer` builds.

A skops model file names them by their full path, so a stored model loads only while that path imports: the
path of a function here must never change. Models registered before the capability packages existed name
``airflow_mlops.ml.training.*`` (still importable, see :mod:`airflow_mlops.ml`): :data:`LEGACY_PIPELINE_TYPES`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np


#: Fully qualified names of the non-scikit-learn callables inside every pipeline built here; a
#: skops loader must trust them (in addition to the estimator's own types).
PIPELINE_CUSTOM_TYPES: tuple[str, ...] = (
    "airflow_mlops.training.steps.categorical_as_strings",
    "airflow_mlops.training.steps.numeric_as_float",
)

#: The same functions under the path models registered by earlier releases name; trusted when loading.
LEGACY_PIPELINE_TYPES: tuple[str, ...] = (
    "airflow_mlops.ml.training.categorical_as_strings",
    "airflow_mlops.ml.training.numeric_as_float",
)


def category_label(value: Any) -> str:
    """One category label as a string; integral floats lose their ``.0`` so that an int column
    that became float because of missing values keeps the same labels."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        value = item()
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def categorical_as_strings(X: Any) -> np.ndarray:
    """Categorical input -> 2-D ``object`` array of ``str`` labels with ``np.nan`` for missing.

    Handles ``None``/``NaN``/``pd.NA``, pandas ``string``/``category``/``boolean`` dtypes and
    mixed-type object columns (which scikit-learn's imputer and encoder reject).
    """
    import numpy as np
    import pandas as pd

    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
    out = np.empty(frame.shape, dtype=object)
    for j in range(frame.shape[1]):
        values = frame.iloc[:, j].to_numpy(dtype=object, na_value=np.nan)
        missing = pd.isna(values)
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            labels = values.copy()
            labels[missing] = np.nan
        else:
            labels = np.array([np.nan if m else category_label(v) for v, m in zip(values, missing)] or [], dtype=object)
        out[:, j] = labels
    return out


def numeric_as_float(X: Any) -> np.ndarray:
    """Numeric input -> 2-D ``float64`` array with ``np.nan`` for missing (nullable ``Int64``,
    ``Float64``, Arrow-backed and object columns of numbers included; non-numeric values raise)."""
    import numpy as np
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        values: np.ndarray = X.to_numpy(dtype="float64", na_value=np.nan)
        return values
    return np.asarray(X, dtype="float64")


__all__ = ["LEGACY_PIPELINE_TYPES", "PIPELINE_CUSTOM_TYPES", "categorical_as_strings", "category_label", "json_safe",
           "numeric_as_float"]


def json_safe(value: Any) -> Any:
    """numpy scalars -> Python, tuples -> lists, non-finite floats and objects -> strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        value = item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return repr(value)
