"""Inferring a suite from reference data (the training window): types, nulls, tail-based ranges and batch
medians for numeric columns, value sets for categorical ones. See docs/validation-suites.md for the rules."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from airflow_mlops.validation.suites import BOOL_TYPES, DATETIME_TYPES, NUMERIC_TYPES, STRING_TYPES, plain_value

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)


def infer_suite(
    reference: pd.DataFrame,
    *,
    columns: list[str] | None = None,
    categorical: list[str] | None = None,
    mostly: float = 1.0,
    name: str = "inferred",
    range_margin: float | None = None,
    null_margin: float | None = None,
    max_categories: int = 50,
) -> dict[str, Any]:
    """Infer a plain-JSON expectation suite from a model's training reference frame.

    Expectations, in order:

    * ``expect_table_row_count_to_be_between`` with ``min_value=1`` (an empty batch fails);
    * ``expect_table_columns_to_match_set`` with the selected columns and ``exact_match=False``
      (the required columns must be present; extra columns are allowed);
    * per column:
        - ``expect_column_values_to_be_in_type_list`` for the dtype family: ints and floats accept
          :data:`NUMERIC_TYPES` (an int column with missing values becomes float), strings
          :data:`STRING_TYPES`, booleans :data:`BOOL_TYPES`, naive datetimes :data:`DATETIME_TYPES`;
          other dtypes (tz-aware datetimes, mixed objects, ...) get no type check;
        - ``expect_column_values_to_not_be_null`` with ``mostly = 1 - (p + margin)``, where ``p``
          is the observed null rate and ``margin`` is ``null_margin`` if given, else ``0.05`` when
          ``p > 0`` and ``min(0.05, 3 / n)`` when the column had no null in ``n`` rows (the "rule
          of three" 95 % upper bound of a rate never observed); omitted when ``mostly <= 0``;
        - numeric (not bool) columns: ``expect_column_values_to_be_between``. By default
          (``range_margin=None``) each bound comes from the column's tail, see :func:`_tail_bounds`:
          ``hi = max(max, q90 + t * s * (1 + 1/sqrt(k)))`` with ``s`` the mean excess of the ``k``
          values above the 90th percentile ``q90`` and ``t = ln(0.1 * max(n, 1000) / 0.0001)``
          (likewise below ``q10`` for ``lo``; ``lo >= 0`` if no reference value is negative); plus a batch-level
          ``expect_column_median_to_be_between`` over ``median ± 2 * IQR`` (a whole column
          shifted or rescaled fails the batch even where single values stay in range). With a number, the old
          rule: the observed range widened by ``range_margin * (max - min)`` on each side (a constant column by
          ``range_margin * max(|value|, 1)``). Int bounds are rounded outwards;
        - categorical columns: ``expect_column_values_to_be_in_set`` with the observed non-null
          values. Columns listed in ``categorical`` always get one (and must have at most
          ``max_categories`` distinct values); with ``categorical=None`` string and pandas
          ``category`` columns with at most ``max_categories`` distinct values are used
          (``categorical=[]`` disables the check). Its ``mostly`` is
          ``min(mostly, 1 - f1 / n)``, ``f1`` being the number of values seen exactly once (the
          Good-Turing estimate of the share of rows holding a value the reference never showed).

    ``mostly`` is passed to the range and set expectations. The result contains only JSON types
    (it can be stored next to a model version) and can be passed to :func:`validate_dataframe`.
    Observed minima/maxima are not stored in ``meta``; only the widened bounds appear in kwargs.

    Raises:
        ValueError: a parameter is out of range, the reference is empty, or ``columns`` or
            ``categorical`` name columns the reference lacks (the message names the parameter).
    """
    import pandas as pd  # noqa: PLC0415

    if not isinstance(reference, pd.DataFrame):
        raise ValueError(f"reference must be a pandas DataFrame, got {type(reference).__name__}")
    _check_parameters(mostly, range_margin, null_margin, max_categories, name)
    if len(reference) == 0:
        raise ValueError("reference frame is empty: cannot infer a suite from 0 rows")
    frame = normalize_frame(reference)
    available = list(frame.columns)
    if columns is None:
        selected = available
    else:
        selected = [str(c) for c in columns]
        missing = [c for c in selected if c not in available]
        if missing:
            raise ValueError(f"columns: {missing} not in the reference frame (columns: {available})")
    if categorical is not None:
        categorical = [str(c) for c in categorical]
        missing = [c for c in categorical if c not in selected]
        if missing:
            raise ValueError(f"categorical: {missing} not among the selected columns {selected}")

    n_rows = len(frame)
    original_dtypes = {str(c): str(d) for c, d in reference.dtypes.items()}
    expectations: list[dict[str, Any]] = [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": None}},
        {"type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": list(selected), "exact_match": False}},
    ]
    for col in selected:
        series = frame[col]
        family = _dtype_family(series)
        type_list = {"int": NUMERIC_TYPES, "float": NUMERIC_TYPES, "string": STRING_TYPES,
                     "bool": BOOL_TYPES, "datetime": DATETIME_TYPES}.get(family) if family is not None else None
        if type_list is not None:
            expectations.append({"type": "expect_column_values_to_be_in_type_list",
                                 "kwargs": {"column": col, "type_list": list(type_list)},
                                 "meta": {"inferred_dtype": original_dtypes.get(col, str(series.dtype))}})
        expectations += _not_null_expectation(col, series, null_margin, n_rows)
        if family in ("int", "float"):
            expectations += _range_expectations(col, series, family, range_margin, mostly)
        explicit = categorical is not None and col in categorical
        if explicit or (categorical is None and family == "string"):
            expectations += _set_expectation(col, series, mostly, max_categories, explicit=explicit)
    return {
        "name": name,
        "expectations": expectations,
        "meta": {
            "generated_by": "airflow_mlops.validation.infer.infer_suite",
            "reference_rows": n_rows,
            "parameters": {"mostly": float(mostly),
                           "range_margin": "tail" if range_margin is None else float(range_margin),
                           "null_margin": "adaptive" if null_margin is None else float(null_margin),
                           "max_categories": int(max_categories),
                           "categorical": categorical},
        },
    }


def _check_parameters(mostly: float, range_margin: float | None, null_margin: float | None, max_categories: int,
                      name: str) -> None:
    if not 0.0 < float(mostly) <= 1.0:
        raise ValueError(f"mostly must be in (0, 1], got {mostly}")
    if range_margin is not None and range_margin < 0:
        raise ValueError(f"range_margin must be >= 0, got {range_margin}")
    if null_margin is not None and null_margin < 0:
        raise ValueError(f"null_margin must be >= 0, got {null_margin}")
    if int(max_categories) < 1:
        raise ValueError(f"max_categories must be >= 1, got {max_categories}")
    if not isinstance(name, str) or not name:
        raise ValueError("name must be a non-empty string")


def _not_null_expectation(col: str, series: pd.Series, null_margin: float | None,
                          n_rows: int) -> list[dict[str, Any]]:
    """``expect_column_values_to_not_be_null`` with ``mostly = 1 - (null rate + margin)``; none when <= 0."""
    null_rate = float(series.isna().mean())
    if null_margin is not None:
        margin_nulls = float(null_margin)
    else:
        margin_nulls = _DEFAULT_NULL_MARGIN if null_rate > 0 else min(_DEFAULT_NULL_MARGIN, 3.0 / n_rows)
    not_null_mostly = 1.0 - (null_rate + margin_nulls)
    if not_null_mostly <= 0:
        return []
    not_null_mostly = math.floor(min(not_null_mostly, 1.0) * 10_000) / 10_000
    if not_null_mostly <= 0:
        return []
    return [{"type": "expect_column_values_to_not_be_null",
             "kwargs": {"column": col, "mostly": not_null_mostly},
             "meta": {"reference_null_rate": round(null_rate, 6)}}]


def _range_expectations(col: str, series: pd.Series, family: str, range_margin: float | None,
                        mostly: float) -> list[dict[str, Any]]:
    """The value range of a numeric column (tail bounds, or the observed range widened by ``range_margin``)
    and, with tail bounds, the batch median's range."""
    import numpy as np  # noqa: PLC0415

    values = series.to_numpy(dtype="float64", na_value=np.nan)
    values = values[np.isfinite(values)]
    if not values.size:
        return []
    if range_margin is None:
        lo, hi = _tail_bounds(values)
    else:
        lo, hi = float(values.min()), float(values.max())
        span = hi - lo
        margin = float(range_margin) * (span if span > 0 else max(abs(hi), 1.0))
        lo, hi = lo - margin, hi + margin
    bounds: tuple[Any, Any] = (math.floor(lo), math.ceil(hi)) if family == "int" else (lo, hi)
    out: list[dict[str, Any]] = [{"type": "expect_column_values_to_be_between",
                                  "kwargs": {"column": col, "min_value": bounds[0], "max_value": bounds[1],
                                             "mostly": float(mostly)}}]
    if range_margin is None:
        m_lo, m_hi = _median_bounds(values)
        out.append({"type": "expect_column_median_to_be_between",
                    "kwargs": {"column": col, "min_value": m_lo, "max_value": m_hi}})
    return out


def _set_expectation(col: str, series: pd.Series, mostly: float, max_categories: int, *,
                     explicit: bool) -> list[dict[str, Any]]:
    """``expect_column_values_to_be_in_set`` with the observed values; ``mostly`` lowered by the share of
    values seen once (Good-Turing). Too many values: an error for a column named in ``categorical``, else no
    expectation."""
    uniques = series.dropna().unique()
    if len(uniques) > int(max_categories):
        if explicit:
            raise ValueError(
                f"categorical: column {col!r} has {len(uniques)} distinct values, more than "
                f"max_categories={max_categories}"
            )
        return []
    value_set = sorted((plain_value(v) for v in uniques), key=lambda v: (type(v).__name__, v))
    counts = series.dropna().value_counts()
    non_null = int(counts.sum())
    singletons = int((counts == 1).sum())
    set_mostly = float(mostly)
    if non_null and singletons:
        set_mostly = min(set_mostly, math.floor((1.0 - singletons / non_null) * 10_000) / 10_000)
    entry: dict[str, Any] = {"type": "expect_column_values_to_be_in_set",
                             "kwargs": {"column": col, "value_set": value_set, "mostly": set_mostly}}
    if set_mostly < float(mostly):
        entry["meta"] = {"reference_singletons": singletons}
    return [entry]


_DEFAULT_NULL_MARGIN = 0.05


_TAIL_QUANTILE = 0.9          # the tail starts at the 10th / 90th percentile


_TAIL_ALPHA = 1e-4            # target chance that a clean partition breaks one bound of one column


_TAIL_MIN_PARTITION = 1000    # partitions are assumed to hold at least this many rows


def _tail_bounds(values: np.ndarray) -> tuple[float, float]:
    """Range bounds for a clean partition from the reference's finite values (peaks over threshold).

    Per side (upper shown): the tail above ``u = q90`` is modelled as exponential with scale ``s``,
    the mean excess ``mean(x - u | x > u)`` of the ``k`` values above ``u`` (its maximum-likelihood
    estimate). Then ``P(X > u + s*t) = 0.1 * exp(-t)`` per row, and a partition of ``m`` rows stays
    inside with probability ``>= 1 - alpha`` when ``t = ln(0.1 * m / alpha)``; ``m`` is taken as
    ``max(n, 1000)`` and ``alpha = 0.0001``. ``s`` is inflated by ``1 + 1/sqrt(k)`` (its relative
    standard error), so small references get wider bounds. The bound never cuts the observed range:
    ``hi = max(max(x), u + t * s * (1 + 1/sqrt(k)))``. A column never negative in the reference
    gets ``lo >= 0``. Without a tail (``k = 0`` or ``s = 0``, e.g.
    a constant or mostly-constant column) ``s`` falls back to ``IQR / 1.349``, then the standard
    deviation, then ``0.05 * max(|median|, 1)``.
    """
    import numpy as np  # noqa: PLC0415

    n = int(values.size)
    q_lo, q25, median, q75, q_hi = (float(q) for q in np.quantile(
        values, [1 - _TAIL_QUANTILE, 0.25, 0.5, 0.75, _TAIL_QUANTILE]))
    fallback = (q75 - q25) / 1.349
    if not fallback > 0:
        fallback = float(np.std(values))
    if not fallback > 0:
        fallback = 0.05 * max(abs(median), 1.0)
    t = math.log((1 - _TAIL_QUANTILE) * max(n, _TAIL_MIN_PARTITION) / _TAIL_ALPHA)

    def _reach(excess: np.ndarray) -> float:
        k = int(excess.size)
        scale = float(excess.mean()) if k else 0.0
        if not scale > 0:
            return t * fallback
        return t * scale * (1.0 + 1.0 / math.sqrt(k))

    lo = min(float(values.min()), q_lo - _reach(q_lo - values[values < q_lo]))
    hi = max(float(values.max()), q_hi + _reach(values[values > q_hi] - q_hi))
    if float(values.min()) >= 0:  # never negative in the reference: a sign flip or -1/-999 code is an error
        lo = max(lo, 0.0)
    return lo, hi


def _median_bounds(values: np.ndarray) -> tuple[float, float]:
    """``median ± 2 * IQR`` (IQR falling back to ``1.349 * std``, then ``0.05 * max(|median|, 1)``).

    A partition's median wanders by about ``0.93 * IQR / sqrt(m)`` (normal data, ``m`` rows), so
    ``2 * IQR`` is more than 5 standard errors even for a 10-row partition.
    """
    import numpy as np  # noqa: PLC0415

    q25, median, q75 = (float(q) for q in np.quantile(values, [0.25, 0.5, 0.75]))
    scale = q75 - q25
    if not scale > 0:
        scale = 1.349 * float(np.std(values))
    if not scale > 0:
        scale = 0.05 * max(abs(median), 1.0)
    return median - 2.0 * scale, median + 2.0 * scale


def _dtype_family(series: pd.Series) -> str | None:
    import pandas as pd  # noqa: PLC0415
    from pandas.api import types as pdt  # noqa: PLC0415

    dtype = series.dtype
    if pdt.is_bool_dtype(dtype):
        return "bool"
    if pdt.is_integer_dtype(dtype):
        return "int"
    if pdt.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return None
    if pdt.is_datetime64_dtype(dtype):
        return "datetime"
    if pdt.is_string_dtype(dtype) or pdt.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("string", "empty"):
            return "string"
        if inferred == "boolean":
            return "bool"
    return None


def normalize_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Positional index, string column names, and dtypes GX's pandas checks understand.

    pandas ``category`` columns become their categories' values (object/float for missing ones)
    and non-python string dtypes (``string[pyarrow]``, the future ``str``) become object columns.
    """
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    frame = df.reset_index(drop=True)
    if any(not isinstance(c, str) for c in frame.columns):
        frame.columns = [str(c) for c in frame.columns]
    if frame.columns.has_duplicates:
        dups = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise ValueError(f"duplicate column names in the frame: {dups}")
    for col in frame.columns:
        dtype = frame[col].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            frame[col] = np.asarray(frame[col])
        elif isinstance(dtype, pd.StringDtype):
            frame[col] = frame[col].astype(object)
        elif isinstance(dtype, pd.ArrowDtype) and pd.api.types.is_string_dtype(dtype):
            frame[col] = frame[col].astype(object)
    return frame
