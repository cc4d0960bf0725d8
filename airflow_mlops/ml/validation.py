"""Data validation with Great Expectations 1.x suites: specs, inference, validation, reports.

Pure Python (no Airflow imports). ``great_expectations``, ``pandas``, ``numpy`` and ``yaml`` are
imported lazily inside the functions that need them, so importing this module is cheap.

Suites are written in the GX 1.x ``ExpectationSuite`` JSON form::

    {"name": "customers",
     "expectations": [
        {"type": "expect_column_values_to_not_be_null",
         "kwargs": {"column": "age", "mostly": 0.99},
         "meta": {"owner": "data-team"}}]}

and can be given as a dict, a ``.json``/``.yaml``/``.yml`` file, JSON/YAML text, or a
``gx.ExpectationSuite`` (see :func:`load_suite_spec`). :func:`infer_suite` derives a plain-JSON
suite from a model's training reference. :func:`validate_dataframe` runs a suite on a pandas
DataFrame in an ephemeral GX context and returns a :class:`ValidationOutcome` that says which rows
failed (row-level failures, candidates for quarantine) and whether the batch as a whole failed.

Privacy: nothing produced here (log lines, summaries, ``result_json``, HTML) contains values of
the validated rows. GX's ``unexpected_list``/``partial_unexpected_*`` are dropped, exception
messages are redacted, and observed values are only reported for aggregates that are not row
values (row count, column count, null/unique proportions, dtype names, missing column names).
"""

from __future__ import annotations

import copy
import difflib
import html
import json
import logging
import math
import re
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd
    from great_expectations.core.expectation_suite import ExpectationSuite

    SuiteSource = Union[Mapping[str, Any], str, Path, ExpectationSuite]
else:
    SuiteSource = Any

__all__ = [
    "BOOL_TYPES",
    "DATETIME_TYPES",
    "NUMERIC_TYPES",
    "STRING_TYPES",
    "SuiteError",
    "ValidationOutcome",
    "build_suite",
    "infer_suite",
    "load_suite_spec",
    "summarize_failures",
    "validate_dataframe",
]

log = logging.getLogger(__name__)

#: dtype names accepted for numeric (int and float) columns by ``expect_column_values_to_be_in_type_list``.
#: Integers and floats accept each other: an int column with missing values becomes float64.
#: ``int``/``float`` match Python numbers in object-dtype columns (GX checks those value by value).
NUMERIC_TYPES: tuple[str, ...] = (
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype",
    "UInt8Dtype", "UInt16Dtype", "UInt32Dtype", "UInt64Dtype",
    "float16", "float32", "float64", "Float32Dtype", "Float64Dtype",
    "int", "float",
)
#: dtype names accepted for string columns (object dtype holding ``str``, pandas ``string`` dtype).
STRING_TYPES: tuple[str, ...] = ("object", "str", "string", "StringDtype")
#: dtype names accepted for boolean columns (numpy bool, pandas ``boolean``, object holding bools).
BOOL_TYPES: tuple[str, ...] = ("bool", "boolean", "BooleanDtype", "object")
#: dtype names accepted for timezone-naive datetime columns.
DATETIME_TYPES: tuple[str, ...] = ("datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]")

_TYPE_EXPECTATIONS = frozenset({"expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type"})
# Aggregate expectations whose observed value is a statistic, never a row value.
_SAFE_OBSERVED = frozenset({
    "expect_table_row_count_to_be_between",
    "expect_table_row_count_to_equal",
    "expect_table_column_count_to_be_between",
    "expect_table_column_count_to_equal",
    "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
    "expect_column_unique_value_count_to_be_between",
})
_SUITE_KEYS = frozenset({"name", "expectations", "meta", "notes", "suite_parameters", "id",
                         # GX 0.x names, accepted for compatibility
                         "expectation_suite_name", "data_asset_type", "ge_cloud_id"})
_EXPECTATION_KEYS = frozenset({"type", "kwargs", "meta", "notes", "description", "severity", "id",
                               "rendered_content", "expectation_type", "expectation_context"})
_MAX_LIST_ITEMS = 20
_INDEX_META_KEY = "_airflow_mlops_index"


#: GX loggers that report its own registration of functions, renderers and datasource types, at
#: INFO ("Skipping registering function ...", about 200 lines per process) or DEBUG. Raised to
#: WARNING by :func:`_quiet_gx_logging` unless the application configured a level for them itself.
_GX_CHATTY_LOGGERS = (
    "great_expectations._docs_decorators",
    "great_expectations.expectations.registry",
    "great_expectations.datasource.fluent.sources",
    "great_expectations.datasource.fluent.dynamic_pandas",
    "great_expectations.datasource.fluent.type_lookup",
    "great_expectations.datasource.fluent.metadatasource",
    "great_expectations.datasource.fluent.config",  # "Loading 'datasources' -> []" on every context
)
_gx_logging_quieted = False


def _quiet_gx_logging() -> None:
    """Silence GX's registration chatter before GX is imported; real warnings and errors still pass.

    Only loggers whose level is unset (NOTSET) are changed, so an explicit logging configuration wins.
    """
    global _gx_logging_quieted  # noqa: PLW0603
    if _gx_logging_quieted:
        return
    for logger_name in _GX_CHATTY_LOGGERS:
        logger = logging.getLogger(logger_name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    _gx_logging_quieted = True


class SuiteError(ValueError):
    """An expectation suite spec is unreadable or invalid. The message names the source and the problem."""


# --------------------------------------------------------------------------------------------
# Suite specs
# --------------------------------------------------------------------------------------------


def load_suite_spec(source: SuiteSource, *, validate: bool = True) -> dict[str, Any]:
    """Load and check an expectation suite spec; return it as a plain, JSON-form dict.

    Args:
        source: one of
            * a mapping in GX 1.x ``ExpectationSuite`` JSON form
              (``{"name": ..., "expectations": [{"type": ..., "kwargs": {...}, "meta": {...}}]}``;
              the GX 0.x keys ``expectation_suite_name``/``expectation_type`` are accepted too),
            * a path (``str`` or :class:`pathlib.Path`) to a ``.json``, ``.yaml`` or ``.yml`` file
              (other existing files are parsed as YAML, which includes JSON),
            * JSON or YAML text holding such a mapping,
            * a ``great_expectations.ExpectationSuite`` instance.
        validate: also check every expectation against the GX registry (known type, required
            kwargs present, kwargs valid). This imports great_expectations (a few seconds).

    Returns:
        A new dict ``{"name", "expectations": [{"type", "kwargs", ...}], "meta"?, ...}``; the input
        is never modified. Without a name, a file's stem (or ``"suite"``) is used.

    Raises:
        SuiteError: the source cannot be read or parsed, or the spec is invalid. The message
            names the file (or ``suite dict``/``suite text``), the expectation index and type, and
            what is wrong: unknown type (with close matches), missing or invalid kwargs, unknown keys.
    """
    raw, label, default_name = _read_source(source)
    spec, errors, positions = _normalize_spec(raw, label, default_name)
    if validate:
        for pos, exp in zip(positions, spec["expectations"]):
            problem = _expectation_problem(exp)
            if problem:
                errors.append((pos, f"expectations[{pos}] ({exp['type']}): {problem}"))
    if errors:
        errors.sort(key=lambda item: item[0])
        raise SuiteError(_format_errors(label, [message for _, message in errors]))
    return spec


def build_suite(spec: SuiteSource) -> "ExpectationSuite":
    """Build a new ``gx.ExpectationSuite`` from anything :func:`load_suite_spec` accepts.

    Unlike ``gx.ExpectationSuite(...)`` itself, which logs and silently drops invalid
    expectations, every problem raises :class:`SuiteError`. The suite is not attached to any
    data context.
    """
    normalized = load_suite_spec(spec, validate=False)
    label = _label_for(spec)
    return _build_gx_suite(normalized, label)


def _label_for(source: Any) -> str:
    if _is_gx_suite(source):
        return f"suite object '{source.name}'"
    if isinstance(source, Path):
        return f"suite file '{source}'"
    if isinstance(source, str):
        return "suite text" if _is_text(source) else f"suite file '{source}'"
    if isinstance(source, Mapping):
        return "suite dict"
    return f"suite source of type {type(source).__name__}"


def _is_text(source: str) -> bool:
    """Whether a string is suite text (JSON/YAML) rather than a file path."""
    stripped = source.strip()
    if "\n" in stripped or stripped.startswith(("{", "[")):
        return True
    if Path(stripped).suffix.lower() in (".json", ".yaml", ".yml") or Path(stripped).is_file():
        return False
    return ":" in stripped  # a one-line YAML mapping such as "name: x"


def _is_gx_suite(source: Any) -> bool:
    """isinstance check against gx.ExpectationSuite without importing GX when it is not loaded."""
    if "great_expectations" not in sys.modules:
        return False
    _quiet_gx_logging()
    from great_expectations.core.expectation_suite import ExpectationSuite as GXSuite  # noqa: PLC0415

    return isinstance(source, GXSuite)


def _read_source(source: Any) -> tuple[Any, str, str]:
    """Return (raw parsed object, label for messages, default suite name)."""
    label = _label_for(source)
    if _is_gx_suite(source):
        return source.to_json_dict(), label, source.name
    if isinstance(source, Mapping):
        return source, label, "suite"
    if isinstance(source, str) and _is_text(source):
        fmt = "json" if source.lstrip().startswith("{") else "yaml"
        return _parse_text(source, label, fmt), label, "suite"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise SuiteError(f"{label}: file not found")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SuiteError(f"{label}: cannot read file ({type(exc).__name__}: {exc})") from exc
        fmt = "json" if path.suffix.lower() == ".json" else "yaml"
        return _parse_text(text, label, fmt), label, path.stem
    raise SuiteError(
        f"{label}: expected a dict, a path to a .json/.yaml/.yml file, JSON/YAML text or a "
        "great_expectations.ExpectationSuite"
    )


def _parse_text(text: str, label: str, fmt: str) -> Any:
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{label}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    import yaml  # noqa: PLC0415

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise SuiteError(f"{label}: invalid YAML{where}: {problem}") from exc


def _normalize_spec(
    raw: Any, label: str, default_name: str
) -> tuple[dict[str, Any], list[tuple[int, str]], list[int]]:
    """Normalize a parsed suite; return (spec, [(position, problem)], original index of each expectation).

    Suite-level problems get position -1 so they are listed first.
    """
    if not isinstance(raw, Mapping):
        raise SuiteError(
            f"{label}: a suite must be a mapping with 'name' and 'expectations', got {type(raw).__name__}"
        )
    errors: list[tuple[int, str]] = []
    positions: list[int] = []
    unknown = sorted(str(k) for k in raw if k not in _SUITE_KEYS)
    if unknown:
        hints = _hints(unknown, ["name", "expectations", "meta", "notes", "suite_parameters"])
        errors.append((-1, f"unknown top-level key(s) {unknown}{hints}; allowed: name, expectations, meta, "
                           "notes, suite_parameters"))
    name = raw.get("name", raw.get("expectation_suite_name")) or default_name
    if not isinstance(name, str) or not name.strip():
        errors.append((-1, f"'name' must be a non-empty string, got {type(name).__name__}"))
        name = default_name
    expectations = raw.get("expectations", [])
    if expectations is None:
        expectations = []
    if not isinstance(expectations, Sequence) or isinstance(expectations, (str, bytes)):
        errors.append((-1, f"'expectations' must be a list, got {type(expectations).__name__}"))
        expectations = []
    out: dict[str, Any] = {"name": name, "expectations": []}
    for i, exp in enumerate(expectations):
        where = f"expectations[{i}]"
        if not isinstance(exp, Mapping):
            errors.append((i, f"{where}: must be a mapping with 'type' and 'kwargs', got {type(exp).__name__}"))
            continue
        etype = exp.get("type", exp.get("expectation_type"))
        if not isinstance(etype, str) or not etype.strip():
            errors.append((i, f"{where}: missing 'type' (the expectation name, e.g. "
                               "'expect_column_values_to_not_be_null')"))
            continue
        where = f"{where} ({etype})"
        bad_keys = sorted(str(k) for k in exp if k not in _EXPECTATION_KEYS)
        if bad_keys:
            errors.append((i, f"{where}: unknown key(s) {bad_keys}; expectation arguments such as 'column' "
                               "belong under 'kwargs'"))
        if "kwargs" not in exp:
            errors.append((i, f"{where}: missing 'kwargs' (use an empty mapping if the expectation takes none)"))
            continue
        kwargs = exp.get("kwargs")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            errors.append((i, f"{where}: 'kwargs' must be a mapping, got {type(kwargs).__name__}"))
            continue
        entry: dict[str, Any] = {"type": etype.strip(), "kwargs": _plain(copy.deepcopy(dict(kwargs)))}
        entry["kwargs"].pop("batch_id", None)  # present in dumped validation results, not in specs
        meta = exp.get("meta")
        if meta:
            if not isinstance(meta, Mapping):
                errors.append((i, f"{where}: 'meta' must be a mapping, got {type(meta).__name__}"))
            else:
                entry["meta"] = _plain(copy.deepcopy(dict(meta)))
        for key in ("notes", "description"):
            if exp.get(key):
                entry[key] = copy.deepcopy(exp[key])
        severity = exp.get("severity")
        if severity is not None:
            severity = getattr(severity, "value", severity)
            if severity not in ("critical", "warning", "info"):
                errors.append((i, f"{where}: 'severity' must be one of critical, warning, info, got {severity!r}"))
            elif severity != "critical":
                entry["severity"] = severity
        out["expectations"].append(entry)
        positions.append(i)
    meta = raw.get("meta")
    if meta:
        if not isinstance(meta, Mapping):
            errors.append((-1, f"'meta' must be a mapping, got {type(meta).__name__}"))
        else:
            out["meta"] = _plain(copy.deepcopy(dict(meta)))
    if raw.get("notes"):
        out["notes"] = copy.deepcopy(raw["notes"])
    params = raw.get("suite_parameters")
    if params:
        if not isinstance(params, Mapping):
            errors.append((-1, f"'suite_parameters' must be a mapping, got {type(params).__name__}"))
        else:
            out["suite_parameters"] = _plain(copy.deepcopy(dict(params)))
    return out, errors, positions


def _format_errors(label: str, errors: list[str]) -> str:
    if len(errors) == 1:
        return f"{label}: {errors[0]}"
    return f"{label}: {len(errors)} problems:\n" + "\n".join(f"  - {e}" for e in errors)


def _hints(names: list[str], candidates: Sequence[str]) -> str:
    found = []
    for n in names:
        close = difflib.get_close_matches(n, candidates, n=1, cutoff=0.6)
        if close:
            found.append(f"{close[0]!r} instead of {n!r}")
    return f" (did you mean {', '.join(found)}?)" if found else ""


def _registered_types() -> list[str]:
    """Names of all registered GX expectation types (core ones are registered on import)."""
    _quiet_gx_logging()
    import great_expectations  # noqa: F401, PLC0415
    from great_expectations.expectations.registry import (  # noqa: PLC0415
        list_registered_expectation_implementations,
    )

    return sorted(list_registered_expectation_implementations())


def _expectation_problem(exp: Mapping[str, Any]) -> str | None:
    """Return a description of what is wrong with one normalized expectation, or None."""
    _, problem = _make_expectation(exp)
    return problem


def _make_expectation(exp: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Instantiate a GX Expectation from a normalized spec entry: (expectation, None) or (None, problem)."""
    _quiet_gx_logging()
    import great_expectations  # noqa: F401, PLC0415
    from great_expectations.compatibility import pydantic  # noqa: PLC0415
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration  # noqa: PLC0415

    etype = exp["type"]
    registered = _registered_types()
    if etype not in registered:
        close = difflib.get_close_matches(etype, registered, n=3, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}?" if close else "; see the GX expectation gallery"
        return None, f"unknown expectation type {etype!r}{hint}"
    config_kwargs: dict[str, Any] = {"type": etype, "kwargs": copy.deepcopy(dict(exp["kwargs"]))}
    for key in ("meta", "notes", "description", "severity"):
        if exp.get(key) is not None:
            config_kwargs[key] = copy.deepcopy(exp[key])
    try:
        return ExpectationConfiguration(**config_kwargs).to_domain_obj(), None
    except pydantic.ValidationError as exc:
        return None, _describe_pydantic_errors(exc)
    except Exception as exc:  # noqa: BLE001 - report any construction problem as a spec error
        message = getattr(exc, "message", None) or str(exc)
        return None, f"invalid expectation ({type(exc).__name__}: {message})"


def _describe_pydantic_errors(exc: Any) -> str:
    missing: list[str] = []
    extra: list[str] = []
    invalid: dict[str, str] = {}
    other: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        kind = err.get("type", "")
        msg = err.get("msg", "invalid")
        if kind == "value_error.missing":
            missing.append(loc)
        elif kind == "value_error.extra":
            extra.append(loc)
        elif loc:
            invalid.setdefault(loc, msg)  # unions report one error per member; keep the first
        elif msg not in other:
            other.append(msg)
    parts = []
    if missing:
        parts.append(f"missing required kwargs: {', '.join(missing)}")
    if extra:
        parts.append(f"unknown kwargs: {', '.join(extra)}")
    if invalid:
        parts.append("invalid kwargs: " + "; ".join(f"{k} ({v})" for k, v in invalid.items()))
    if other and not missing:
        parts.append("; ".join(other))
    return "; ".join(parts) or "invalid kwargs"


def _build_gx_suite(spec: Mapping[str, Any], label: str, *, tag_index: bool = False) -> "ExpectationSuite":
    _quiet_gx_logging()
    import great_expectations as gx  # noqa: PLC0415

    built = []
    errors = []
    for i, exp in enumerate(spec["expectations"]):
        entry = dict(exp)
        if tag_index:
            entry["meta"] = {**(exp.get("meta") or {}), _INDEX_META_KEY: i}
        obj, problem = _make_expectation(entry)
        if problem:
            errors.append(f"expectations[{i}] ({exp['type']}): {problem}")
        else:
            built.append(obj)
    if errors:
        raise SuiteError(_format_errors(label, errors))
    suite = gx.ExpectationSuite(
        name=spec["name"],
        expectations=built,
        meta=copy.deepcopy(spec.get("meta")) or None,
        notes=copy.deepcopy(spec.get("notes")),
        suite_parameters=copy.deepcopy(spec.get("suite_parameters")) or None,
    )
    if len(suite.expectations) != len(built):  # pragma: no cover - GX dropped one silently
        raise SuiteError(f"{label}: great_expectations rejected {len(built) - len(suite.expectations)} expectation(s)")
    return suite


# --------------------------------------------------------------------------------------------
# Inference from a training reference
# --------------------------------------------------------------------------------------------


def infer_suite(
    reference: "pd.DataFrame",
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
          shifted or rescaled fails the batch even where single values stay in range). With a number, the old rule: the observed range
          widened by ``range_margin * (max - min)`` on each side (a constant column by
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
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    if not isinstance(reference, pd.DataFrame):
        raise ValueError(f"reference must be a pandas DataFrame, got {type(reference).__name__}")
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
    if len(reference) == 0:
        raise ValueError("reference frame is empty: cannot infer a suite from 0 rows")
    frame = _normalize_frame(reference)
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
                     "bool": BOOL_TYPES, "datetime": DATETIME_TYPES}.get(family)
        if type_list is not None:
            expectations.append({"type": "expect_column_values_to_be_in_type_list",
                                 "kwargs": {"column": col, "type_list": list(type_list)},
                                 "meta": {"inferred_dtype": original_dtypes.get(col, str(series.dtype))}})
        null_rate = float(series.isna().mean())
        if null_margin is not None:
            margin_nulls = float(null_margin)
        else:
            margin_nulls = _DEFAULT_NULL_MARGIN if null_rate > 0 else min(_DEFAULT_NULL_MARGIN, 3.0 / n_rows)
        not_null_mostly = 1.0 - (null_rate + margin_nulls)
        if not_null_mostly > 0:
            not_null_mostly = math.floor(min(not_null_mostly, 1.0) * 10_000) / 10_000
            if not_null_mostly > 0:
                expectations.append({"type": "expect_column_values_to_not_be_null",
                                     "kwargs": {"column": col, "mostly": not_null_mostly},
                                     "meta": {"reference_null_rate": round(null_rate, 6)}})
        if family in ("int", "float"):
            values = series.to_numpy(dtype="float64", na_value=np.nan)
            values = values[np.isfinite(values)]
            if values.size:
                if range_margin is None:
                    lo, hi = _tail_bounds(values)
                else:
                    lo, hi = float(values.min()), float(values.max())
                    span = hi - lo
                    margin = float(range_margin) * (span if span > 0 else max(abs(hi), 1.0))
                    lo, hi = lo - margin, hi + margin
                bounds: tuple[Any, Any] = (math.floor(lo), math.ceil(hi)) if family == "int" else (lo, hi)
                expectations.append({"type": "expect_column_values_to_be_between",
                                     "kwargs": {"column": col, "min_value": bounds[0],
                                                "max_value": bounds[1], "mostly": float(mostly)}})
                if range_margin is None:
                    m_lo, m_hi = _median_bounds(values)
                    expectations.append({"type": "expect_column_median_to_be_between",
                                         "kwargs": {"column": col, "min_value": m_lo, "max_value": m_hi}})
        explicit = categorical is not None and col in categorical
        auto = categorical is None and family == "string"
        if explicit or auto:
            uniques = series.dropna().unique()
            if len(uniques) > int(max_categories):
                if explicit:
                    raise ValueError(
                        f"categorical: column {col!r} has {len(uniques)} distinct values, more than "
                        f"max_categories={max_categories}"
                    )
                continue
            value_set = sorted((_plain(v) for v in uniques), key=lambda v: (type(v).__name__, v))
            counts = series.dropna().value_counts()
            non_null = int(counts.sum())
            singletons = int((counts == 1).sum())
            set_mostly = float(mostly)
            if non_null and singletons:
                set_mostly = min(set_mostly, math.floor((1.0 - singletons / non_null) * 10_000) / 10_000)
            entry = {"type": "expect_column_values_to_be_in_set",
                     "kwargs": {"column": col, "value_set": value_set, "mostly": set_mostly}}
            if set_mostly < float(mostly):
                entry["meta"] = {"reference_singletons": singletons}
            expectations.append(entry)
    return {
        "name": name,
        "expectations": expectations,
        "meta": {
            "generated_by": "airflow_mlops.ml.validation.infer_suite",
            "reference_rows": n_rows,
            "parameters": {"mostly": float(mostly),
                           "range_margin": "tail" if range_margin is None else float(range_margin),
                           "null_margin": "adaptive" if null_margin is None else float(null_margin),
                           "max_categories": int(max_categories),
                           "categorical": categorical},
        },
    }


_DEFAULT_NULL_MARGIN = 0.05
_TAIL_QUANTILE = 0.9          # the tail starts at the 10th / 90th percentile
_TAIL_ALPHA = 1e-4            # target chance that a clean partition breaks one bound of one column
_TAIL_MIN_PARTITION = 1000    # partitions are assumed to hold at least this many rows


def _tail_bounds(values: "np.ndarray") -> tuple[float, float]:
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

    def _reach(excess: "np.ndarray") -> float:
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


def _median_bounds(values: "np.ndarray") -> tuple[float, float]:
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


def _dtype_family(series: "pd.Series") -> str | None:
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
    if pdt.is_string_dtype(dtype) or dtype == object:
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("string", "empty"):
            return "string"
        if inferred == "boolean":
            return "bool"
    return None


def _normalize_frame(df: "pd.DataFrame") -> "pd.DataFrame":
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


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@dataclass
class ValidationOutcome:
    """Result of :func:`validate_dataframe`, free of row values.

    Attributes:
        success: every expectation passed.
        evaluated: number of expectations evaluated (including ones that could not run).
        successful: number that passed.
        failed: one dict per failed expectation: ``expectation_type``, ``column`` (or None),
            ``kwargs`` (lists longer than 20 items replaced by ``"<list of N items>"``), ``summary``,
            ``unexpected_count``, ``unexpected_percent`` (None for aggregates), ``observed_value``
            (only for aggregates that are not row values, e.g. row count, non-null proportion,
            dtype; for ``expect_table_columns_to_match_set`` the missing column names), ``row_level``
            (its rows are in ``failing_row_mask``), ``error`` (True if it raised or its column is
            missing), ``severity`` (from the spec, default ``critical``; as in GX it is informational
            and does not change ``success``).
        failing_row_mask: numpy bool array, one entry per row of the validated frame in positional
            order: union of the unexpected rows of all failed row-level (column-map) expectations.
        batch_level_failure: a failed expectation is not row-level: table-level or column aggregate
            expectation, missing column, type mismatch, or an expectation that could not be evaluated.
        result_json: JSON-serialisable summary (suite and batch name, success, statistics, per
            expectation results without unexpected value lists or row values).
        suite_name: name of the suite.
        batch_name: the ``name`` given to :func:`validate_dataframe`.
        row_count: number of rows validated.
    """

    success: bool
    evaluated: int
    successful: int
    failed: list[dict[str, Any]]
    failing_row_mask: "np.ndarray"
    batch_level_failure: bool
    result_json: dict[str, Any]
    suite_name: str = ""
    batch_name: str = "batch"
    row_count: int = 0

    @property
    def failing_row_count(self) -> int:
        """Number of rows flagged by failed row-level expectations."""
        return int(self.failing_row_mask.sum())

    @property
    def quarantine_mask(self) -> "np.ndarray":
        """Rows to quarantine: all rows on a batch-level failure, else ``failing_row_mask``."""
        import numpy as np  # noqa: PLC0415

        if self.batch_level_failure:
            return np.ones(len(self.failing_row_mask), dtype=bool)
        return self.failing_row_mask.copy()

    def split(self, df: "pd.DataFrame") -> tuple["pd.DataFrame", "pd.DataFrame"]:
        """Split the validated frame into ``(accepted, quarantined)`` rows.

        On a batch-level failure everything is quarantined; otherwise the rows of
        ``failing_row_mask`` are. Positional, so it works for any index; the index is kept.
        """
        if len(df) != len(self.failing_row_mask):
            raise ValueError(f"frame has {len(df)} rows but the outcome covers {len(self.failing_row_mask)}")
        mask = self.quarantine_mask
        return df.iloc[~mask], df.iloc[mask]

    def to_json(self, indent: int | None = 2) -> str:
        """``result_json`` as a JSON string."""
        return json.dumps(self.result_json, indent=indent, sort_keys=False, allow_nan=False)

    def to_html(self) -> str:
        """Self-contained HTML report (inline CSS, no scripts); every text is escaped; no row values."""
        return _render_html(self)


def validate_dataframe(df: "pd.DataFrame", suite: SuiteSource, *, name: str = "batch") -> ValidationOutcome:
    """Validate a pandas DataFrame against an expectation suite with Great Expectations 1.x.

    Runs in a fresh ephemeral GX context (progress bars off, uniquely named pandas datasource,
    dataframe asset and whole-dataframe batch definition) with ``result_format="COMPLETE"``; the
    datasource is deleted and GX's current project restored afterwards, so repeated calls in one
    process do not share state. The frame is validated with a positional index (``reset_index``),
    so ``failing_row_mask`` lines up with ``df.iloc`` whatever ``df``'s index is.

    Never raises because of the data: an empty frame fails the row-count expectation (if the suite
    has one), an expectation on a column the frame lacks becomes a failed entry naming the column,
    and an expectation GX cannot evaluate (e.g. a range check on a column holding strings) becomes
    a failed entry with a redacted message. All of these are batch-level failures.

    Args:
        df: the batch.
        suite: anything :func:`load_suite_spec` accepts (dict, file path, text, ``ExpectationSuite``).
        name: batch name used in reports and messages.

    Raises:
        SuiteError: the suite is invalid.
        ValueError: ``df`` is not a DataFrame or has duplicate column names.
    """
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    spec = load_suite_spec(suite, validate=True)
    label = _label_for(suite)
    frame = _normalize_frame(df)
    n_rows = len(frame)
    columns = set(frame.columns)

    runnable: list[dict[str, Any]] = []
    records: list[dict[str, Any] | None] = [None] * len(spec["expectations"])
    for i, exp in enumerate(spec["expectations"]):
        missing = [c for c in _expectation_columns(exp["kwargs"]) if c not in columns]
        if missing:
            records[i] = _missing_column_record(exp, missing)
        else:
            runnable.append({**exp, "_index": i})

    if runnable:
        gx_spec = {**spec, "expectations": [{k: v for k, v in e.items() if k != "_index"} for e in runnable]}
        gx_suite = _build_gx_suite(gx_spec, label, tag_index=True)
        results = _run_gx(frame, gx_suite, name)
        by_position: dict[int, Any] = {}
        for res in results:
            meta = res.expectation_config.meta or {}
            pos = meta.get(_INDEX_META_KEY)
            if isinstance(pos, int) and 0 <= pos < len(runnable):
                by_position[pos] = res
        for pos, exp in enumerate(runnable):
            res = by_position.get(pos)
            i = exp["_index"]
            if res is None:  # pragma: no cover - GX returns one result per expectation
                records[i] = _error_record(exp, "no result returned by great_expectations")
            else:
                records[i] = _result_record(exp, res, frame, columns)

    mask = np.zeros(n_rows, dtype=bool)
    final: list[dict[str, Any]] = []
    for rec in records:
        assert rec is not None
        rows = rec.pop("_rows", None)
        if not rec["success"] and rec["row_level"] and rows is not None:
            idx = np.asarray([r for r in rows if isinstance(r, (int, np.integer)) and 0 <= r < n_rows],
                             dtype=np.int64)
            mask[idx] = True
        final.append(rec)

    failed_records = [r for r in final if not r["success"]]
    batch_level = any(not r["row_level"] for r in failed_records)
    evaluated = len(final)
    successful = evaluated - len(failed_records)
    success = not failed_records
    failed = [
        {
            "expectation_type": r["expectation_type"],
            "column": r["column"],
            "kwargs": copy.deepcopy(r["kwargs"]),
            "summary": r["summary"],
            "unexpected_count": r["unexpected_count"],
            "unexpected_percent": r["unexpected_percent"],
            "observed_value": copy.deepcopy(r["observed_value"]),
            "row_level": r["row_level"],
            "error": r["error"],
            "severity": r["severity"],
        }
        for r in failed_records
    ]
    result_json = _plain({
        "suite_name": spec["name"],
        "batch_name": name,
        "success": success,
        "validated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "row_count": n_rows,
        "failing_row_count": int(mask.sum()),
        "batch_level_failure": batch_level,
        "statistics": {
            "evaluated_expectations": evaluated,
            "successful_expectations": successful,
            "unsuccessful_expectations": evaluated - successful,
            "success_percent": (100.0 * successful / evaluated) if evaluated else 100.0,
        },
        "results": final,
        "great_expectations_version": _gx_version(),
    })
    outcome = ValidationOutcome(
        success=success, evaluated=evaluated, successful=successful, failed=failed,
        failing_row_mask=mask, batch_level_failure=batch_level, result_json=result_json,
        suite_name=spec["name"], batch_name=name, row_count=n_rows,
    )
    log.info(
        "Validated batch %r (%d rows) with suite %r: %d/%d expectations passed, %d rows flagged, "
        "batch-level failure: %s",
        name, n_rows, spec["name"], successful, evaluated, outcome.failing_row_count, batch_level,
    )
    return outcome


def _gx_version() -> str:
    _quiet_gx_logging()
    import great_expectations as gx  # noqa: PLC0415

    return str(gx.__version__)


def _run_gx(frame: "pd.DataFrame", suite: "ExpectationSuite", batch_name: str) -> list[Any]:
    """Validate ``frame`` with ``suite`` in a fresh ephemeral context; return the per-expectation results."""
    _quiet_gx_logging()
    import great_expectations as gx  # noqa: PLC0415
    from great_expectations.data_context.data_context.context_factory import (  # noqa: PLC0415
        project_manager,
        set_context,
    )
    from great_expectations.data_context.types.base import (  # noqa: PLC0415
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    try:
        previous = project_manager.get_current_project()
    except Exception:  # noqa: BLE001 - no current project
        previous = None
    token = uuid.uuid4().hex[:12]
    ds_name = f"airflow_mlops_{token}"
    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        ),
    )
    try:
        datasource = context.data_sources.add_pandas(ds_name)
        asset = datasource.add_dataframe_asset(f"{_safe_name(batch_name)}_{token}")
        batch_definition = asset.add_batch_definition_whole_dataframe(f"whole_{token}")
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format="COMPLETE")
        return list(result.results)
    finally:
        try:
            context.data_sources.delete(ds_name)
        except Exception:  # noqa: BLE001 - best effort cleanup
            log.debug("could not delete temporary GX datasource %s", ds_name)
        set_context(previous)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))[:60] or "batch"


def _expectation_columns(kwargs: Mapping[str, Any]) -> list[str]:
    cols: list[str] = []
    for key in ("column", "column_A", "column_B"):
        if isinstance(kwargs.get(key), str):
            cols.append(kwargs[key])
    if isinstance(kwargs.get("column_list"), (list, tuple)):
        cols.extend(c for c in kwargs["column_list"] if isinstance(c, str))
    return cols


def _is_row_level_type(etype: str) -> bool:
    """Column-map style expectations (they report unexpected rows), excluding dtype checks."""
    if etype in _TYPE_EXPECTATIONS:
        return False
    _quiet_gx_logging()
    from great_expectations.expectations.expectation import (  # noqa: PLC0415
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl  # noqa: PLC0415

    try:
        impl = get_expectation_impl(etype)
    except Exception:  # noqa: BLE001 - unknown types are rejected earlier; be safe
        return False
    return issubclass(
        impl, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
    )


def _base_record(exp: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = exp["kwargs"]
    return {
        "expectation_type": exp["type"],
        "column": kwargs.get("column") if isinstance(kwargs.get("column"), str) else None,
        "kwargs": _truncate_kwargs(kwargs),
        "severity": exp.get("severity", "critical"),
        "description": _describe(exp["type"], kwargs),
        "success": False,
        "summary": "",
        "unexpected_count": None,
        "unexpected_percent": None,
        "element_count": None,
        "missing_count": None,
        "observed_value": None,
        "row_level": False,
        "error": False,
    }


def _missing_column_record(exp: Mapping[str, Any], missing: list[str]) -> dict[str, Any]:
    rec = _base_record(exp)
    names = ", ".join(repr(c) for c in missing)
    plural = "s" if len(missing) > 1 else ""
    verb = "are" if len(missing) > 1 else "is"
    rec["summary"] = f"column{plural} {names} {verb} missing from the batch (not evaluated)"
    rec["observed_value"] = {"missing_columns": list(missing)}
    rec["error"] = True
    return rec


def _error_record(exp: Mapping[str, Any], message: str) -> dict[str, Any]:
    rec = _base_record(exp)
    rec["summary"] = f"{_subject(exp['kwargs'])}: {exp['type']} could not be evaluated: {message}"
    rec["error"] = True
    return rec


def _result_record(exp: Mapping[str, Any], res: Any, frame: "pd.DataFrame", columns: set[str]) -> dict[str, Any]:
    etype = exp["type"]
    kwargs = exp["kwargs"]
    rec = _base_record(exp)
    message = _exception_message(res.exception_info)
    if message is not None:
        known = set(columns) | set(_expectation_columns(kwargs))
        return _error_record(exp, _redact(message, known))
    result = res.result or {}
    rec["success"] = bool(res.success)
    row_level = _is_row_level_type(etype)
    if "unexpected_count" in result:
        rec["unexpected_count"] = _as_int(result.get("unexpected_count"))
        rec["unexpected_percent"] = _as_float(result.get("unexpected_percent"))
        rec["element_count"] = _as_int(result.get("element_count"))
        rec["missing_count"] = _as_int(result.get("missing_count"))
    if row_level and "unexpected_index_list" in result:
        rec["_rows"] = list(result.get("unexpected_index_list") or [])
        rec["row_level"] = True
    elif row_level and res.success:
        rec["row_level"] = True
    rec["observed_value"] = _safe_observed(etype, result, frame, kwargs)
    if not rec["success"]:
        rec["summary"] = _failure_summary(etype, kwargs, rec)
    return rec


def _exception_message(info: Any) -> str | None:
    """Message of a raised exception in a GX ``exception_info`` (flat or keyed by metric), else None."""
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "unknown error")
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message") or "unknown error")
    return None


_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


def _redact(message: str, known_names: set[str]) -> str:
    """Keep the first line of an exception message, redacting literals that may be row values.

    Quoted strings are kept only when they are known column names; bare numbers are replaced.
    """
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    first = re.sub(r"^Error:\s*", "", first)

    def _quoted(match: re.Match[str]) -> str:
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        return f"'{inner}'" if inner in known_names else "<value>"

    first = _QUOTED.sub(_quoted, first)
    first = _NUMBER.sub("<n>", first)
    return first[:200]


def _safe_observed(etype: str, result: Mapping[str, Any], frame: "pd.DataFrame", kwargs: Mapping[str, Any]) -> Any:
    """Observed value only where it is an aggregate rather than a row value."""
    if etype == "expect_table_columns_to_match_set":
        expected = [c for c in kwargs.get("column_set") or [] if isinstance(c, str)]
        present = set(frame.columns)
        observed: dict[str, Any] = {"missing_columns": [c for c in expected if c not in present]}
        if kwargs.get("exact_match", True):
            observed["unexpected_columns"] = [c for c in frame.columns if c not in set(expected)]
        return observed
    if etype in _TYPE_EXPECTATIONS:
        col = kwargs.get("column")
        return str(frame[col].dtype) if col in frame.columns else None
    if etype in _SAFE_OBSERVED:
        return _plain(result.get("observed_value"))
    return None


def _failure_summary(etype: str, kwargs: Mapping[str, Any], rec: Mapping[str, Any]) -> str:
    subject = _subject(kwargs)
    observed = rec.get("observed_value")
    mostly = kwargs.get("mostly", 1.0)
    if etype in _TYPE_EXPECTATIONS:
        expected = kwargs.get("type_list") or [kwargs.get("type_")]
        text = f"{subject}: dtype {observed} is not one of the expected types ({_abbrev(expected, 6)})"
        if rec.get("unexpected_count"):
            text += (f"; {_pct(rec.get('unexpected_percent'))} values ({_rows(rec['unexpected_count'])}) "
                     "of other types")
        return text
    if etype == "expect_table_columns_to_match_set" and isinstance(observed, Mapping):
        parts = []
        if observed.get("missing_columns"):
            parts.append(f"missing columns {observed['missing_columns']}")
        if observed.get("unexpected_columns"):
            parts.append(f"unexpected columns {observed['unexpected_columns']}")
        return f"table: {'; '.join(parts) or 'column set mismatch'}"
    if etype == "expect_column_median_to_be_between":  # the median itself may be a row value: not shown
        return f"{subject}: median outside {_interval(kwargs)} (the whole column moved)"
    if etype == "expect_table_row_count_to_be_between":
        return f"table: row count {observed} outside {_interval(kwargs)}"
    if etype == "expect_table_row_count_to_equal":
        return f"table: row count {observed}, expected {kwargs.get('value')}"
    if etype == "expect_table_column_count_to_be_between":
        return f"table: column count {observed} outside {_interval(kwargs)}"
    if etype == "expect_table_column_count_to_equal":
        return f"table: column count {observed}, expected {kwargs.get('value')}"
    if etype in _SAFE_OBSERVED and etype.startswith("expect_column_"):
        what = etype[len("expect_column_"):].split("_to_")[0].replace("_", " ")
        shown = f"{observed:.4g}" if isinstance(observed, float) else str(observed)
        return f"{subject}: {what} {shown} outside {_interval(kwargs)}"
    if rec.get("unexpected_count") is not None:
        violation = {
            "expect_column_values_to_be_between": f"outside {_interval(kwargs)}",
            "expect_column_values_to_not_be_null": "are null",
            "expect_column_values_to_be_null": "are not null",
            "expect_column_values_to_be_in_set":
                f"not in the expected set of {_count(kwargs.get('value_set'))} values",
            "expect_column_values_to_not_be_in_set":
                f"in the forbidden set of {_count(kwargs.get('value_set'))} values",
            "expect_column_values_to_be_unique": "are duplicated",
            "expect_column_values_to_match_regex": "do not match the pattern",
            "expect_column_values_to_not_match_regex": "match the forbidden pattern",
            "expect_column_value_lengths_to_be_between": f"have a length outside {_interval(kwargs)}",
        }.get(etype, f"fail {etype}")
        return (f"{subject}: {_pct(rec.get('unexpected_percent'))} values {violation} "
                f"({_rows(rec['unexpected_count'])}; mostly={mostly})")
    return f"{subject}: {etype} failed"


def _describe(etype: str, kwargs: Mapping[str, Any]) -> str:
    """Short description of what an expectation requires (from its kwargs only)."""
    subject = _subject(kwargs)
    mostly = f" (mostly={kwargs['mostly']})" if "mostly" in kwargs else ""
    text = {
        "expect_column_values_to_be_between": f"values within {_interval(kwargs)}",
        "expect_column_values_to_not_be_null": "values not null",
        "expect_column_values_to_be_null": "values null",
        "expect_column_values_to_be_in_set": f"values in a set of {_count(kwargs.get('value_set'))} values",
        "expect_column_values_to_not_be_in_set":
            f"values not in a set of {_count(kwargs.get('value_set'))} values",
        "expect_column_values_to_be_in_type_list":
            f"dtype in ({_abbrev(kwargs.get('type_list') or [], 6)})",
        "expect_column_values_to_be_of_type": f"dtype {kwargs.get('type_')}",
        "expect_column_median_to_be_between": f"median within {_interval(kwargs)}",
        "expect_table_row_count_to_be_between": f"row count within {_interval(kwargs)}",
        "expect_table_row_count_to_equal": f"row count = {kwargs.get('value')}",
        "expect_table_columns_to_match_set":
            ("columns exactly " if kwargs.get("exact_match", True) else "columns include ")
            + _abbrev(kwargs.get("column_set") or [], 10),
    }.get(etype)
    if text is None:
        text = etype.removeprefix("expect_").replace("_", " ")
    return f"{subject}: {text}{mostly}"


def _subject(kwargs: Mapping[str, Any]) -> str:
    if isinstance(kwargs.get("column"), str):
        return f"column {kwargs['column']!r}"
    cols = [kwargs[k] for k in ("column_A", "column_B") if isinstance(kwargs.get(k), str)]
    if isinstance(kwargs.get("column_list"), (list, tuple)):
        cols = [c for c in kwargs["column_list"] if isinstance(c, str)]
    if cols:
        return "columns " + ", ".join(repr(c) for c in cols)
    return "table"


def _interval(kwargs: Mapping[str, Any]) -> str:
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    left = "(" if kwargs.get("strict_min") or lo is None else "["
    right = ")" if kwargs.get("strict_max") or hi is None else "]"
    return f"{left}{'-inf' if lo is None else _num(lo)}, {'inf' if hi is None else _num(hi)}{right}"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _pct(value: Any) -> str:
    if value is None:
        return "?%"
    value = float(value)
    if 0 < value < 0.1:
        return "<0.1%"
    return f"{value:.1f}%"


def _count(values: Any) -> int | str:
    return len(values) if isinstance(values, (list, tuple, set, frozenset)) else "?"


def _abbrev(items: Sequence[Any], limit: int) -> str:
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")


def _truncate_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, (list, tuple, set, frozenset)) and len(value) > _MAX_LIST_ITEMS:
            out[key] = f"<list of {len(value)} items>"
        else:
            out[key] = _plain(copy.deepcopy(value))
    return out


def _as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """Recursively convert numpy/pandas scalars and containers to JSON-compatible Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and type(value).__module__ == "numpy":
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def summarize_failures(outcome: ValidationOutcome, limit: int = 10) -> str:
    """One human-readable message listing the failing expectations (no row values).

    Used as a task's error message: a headline with counts and the quarantine decision, then one
    line per failed expectation (at most ``limit``, then ``... and N more``).
    """
    head = (f"Data validation of batch {outcome.batch_name!r} with suite {outcome.suite_name!r}: "
            f"{outcome.successful}/{outcome.evaluated} expectations passed")
    if outcome.success:
        return f"{head}; {outcome.row_count} rows accepted."
    if outcome.batch_level_failure:
        decision = f"batch-level failure, whole batch of {outcome.row_count} rows rejected"
    else:
        decision = f"{outcome.failing_row_count} of {outcome.row_count} rows failed row-level checks"
    lines = [f"{head}; {len(outcome.failed)} failed ({decision}):"]
    for entry in outcome.failed[: max(int(limit), 0)]:
        lines.append(f"  - {entry['expectation_type']}: {entry['summary']}")
    if len(outcome.failed) > max(int(limit), 0):
        lines.append(f"  ... and {len(outcome.failed) - max(int(limit), 0)} more")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.4rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:1.6rem}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:.8rem;font-weight:600;color:#fff}
.pass{background:#1a7f37}.fail{background:#cf222e}.error{background:#9a6700}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}tr.failed td{background:#fff5f5}
table.facts{width:auto}table.facts th{width:14rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.8rem;white-space:pre-wrap;
word-break:break-word}
.num{text-align:right;white-space:nowrap}
"""


def _render_html(outcome: ValidationOutcome) -> str:
    esc = html.escape
    data = outcome.result_json
    stats = data.get("statistics", {})
    status = ('<span class="badge pass">PASSED</span>' if outcome.success
              else '<span class="badge fail">FAILED</span>')
    if outcome.success:
        decision = "accept the batch"
    elif outcome.batch_level_failure:
        decision = f"quarantine the whole batch ({outcome.row_count} rows)"
    else:
        decision = f"quarantine {outcome.failing_row_count} of {outcome.row_count} rows"
    facts = [
        ("Suite", outcome.suite_name),
        ("Batch", outcome.batch_name),
        ("Validated at", data.get("validated_at", "")),
        ("Rows", str(outcome.row_count)),
        ("Expectations", f"{outcome.evaluated} evaluated, {outcome.successful} passed, "
                         f"{outcome.evaluated - outcome.successful} failed "
                         f"({float(stats.get('success_percent', 0.0)):.1f}% success)"),
        ("Rows failing row-level checks", str(outcome.failing_row_count)),
        ("Batch-level failure", "yes" if outcome.batch_level_failure else "no"),
        ("Quarantine decision", decision),
        ("Great Expectations", str(data.get("great_expectations_version", ""))),
    ]
    fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    rows = []
    for i, r in enumerate(data.get("results", []), start=1):
        if r.get("success"):
            badge, cls = '<span class="badge pass">pass</span>', ""
        elif r.get("error"):
            badge, cls = '<span class="badge error">error</span>', ' class="failed"'
        else:
            badge, cls = '<span class="badge fail">fail</span>', ' class="failed"'
        level = "row" if r.get("row_level") else "batch"
        detail = r.get("summary") or r.get("description") or ""
        observed = r.get("observed_value")
        observed_text = "" if observed is None else json.dumps(observed, sort_keys=True)
        unexpected = "" if r.get("unexpected_count") is None else str(r["unexpected_count"])
        percent = "" if r.get("unexpected_percent") is None else f"{r['unexpected_percent']:.2f}%"
        kwargs_text = json.dumps(r.get("kwargs", {}), sort_keys=True, default=str)
        rows.append(
            f"<tr{cls}><td class=\"num\">{i}</td><td>{badge}</td>"
            f"<td><code>{esc(str(r.get('expectation_type', '')))}</code></td>"
            f"<td>{esc(str(r.get('column') or ''))}</td><td>{esc(level)}</td>"
            f"<td>{esc(str(r.get('description', '')))}"
            + ("" if r.get("success") else f"<br><strong>{esc(str(detail))}</strong>")
            + f"</td><td class=\"num\">{esc(unexpected)}</td><td class=\"num\">{esc(percent)}</td>"
            f"<td><code>{esc(observed_text)}</code></td><td><code>{esc(kwargs_text)}</code></td></tr>"
        )
    title = f"Data validation: {outcome.suite_name} / {outcome.batch_name}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>{status}</p>"
        f"<table class=\"facts\">{fact_rows}</table>"
        "<h2>Expectations</h2>"
        "<table class=\"results\"><thead><tr><th>#</th><th>Status</th><th>Expectation</th><th>Column</th>"
        "<th>Level</th><th>Summary</th><th>Unexpected rows</th><th>Unexpected %</th><th>Observed</th>"
        "<th>Parameters</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        "<p><small>Row values are never included in this report. Row-level failures quarantine the "
        "failing rows; batch-level failures quarantine the whole batch.</small></p>"
        "</body></html>\n"
    )
