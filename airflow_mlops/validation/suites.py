"""Great Expectations 1.x suites: reading, checking and building suite specs (shared by inference and runs).

Pure Python (no Airflow imports). ``great_expectations``, ``pandas``, ``numpy`` and ``yaml`` are
imported lazily inside the functions that need them, so importing this module is cheap.

Suites are written in the GX 1.x ``ExpectationSuite`` JSON form::

    {"name": "customers",
     "expectations": [
        {"type": "expect_column_values_to_not_be_null",
         "kwargs": {"column": "age", "mostly": 0.99},
         "meta": {"owner": "data-team"}}]}

and can be given as a dict, a ``.json``/``.yaml``/``.yml`` file, JSON/YAML text, or a
``gx.ExpectationSuite`` (see :func:`load_suite_spec`). :func:`~airflow_mlops.validation.infer.infer_suite`
derives a plain-JSON suite from a model's training reference.
:func:`~airflow_mlops.validation.run.validate_dataframe` runs a suite on a pandas DataFrame in an ephemeral GX
context and returns a ``ValidationOutcome`` that says which rows failed (row-level failures, candidates for
quarantine) and whether the batch as a whole failed.

Privacy: nothing produced here (log lines, summaries, ``result_json``, HTML) contains values of
the validated rows. GX's ``unexpected_list``/``partial_unexpected_*`` are dropped, exception
messages are redacted, and observed values are only reported for aggregates that are not row
values (row count, column count, null/unique proportions, dtype names, missing column names).
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from great_expectations.core.expectation_suite import ExpectationSuite

    SuiteSource = Mapping[str, Any] | str | Path | ExpectationSuite
else:
    SuiteSource = Any

__all__ = ["BOOL_TYPES", "DATETIME_TYPES", "NUMERIC_TYPES", "STRING_TYPES", "SuiteError", "SuiteSource", "build_suite",
           "load_suite_spec", "plain_value"]

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

TYPE_EXPECTATIONS = frozenset({"expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type"})
# Aggregate expectations whose observed value is a statistic, never a row value.
SAFE_OBSERVED = frozenset({
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
MAX_LIST_ITEMS = 20
INDEX_META_KEY = "_airflow_mlops_index"


#: GX loggers that report its own registration of functions, renderers and datasource types, at
#: INFO ("Skipping registering function ...", about 200 lines per process) or DEBUG. Raised to
#: WARNING by :func:`quiet_gx_logging` unless the application configured a level for them itself.
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


def quiet_gx_logging() -> None:
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


def build_suite(spec: SuiteSource) -> ExpectationSuite:
    """Build a new ``gx.ExpectationSuite`` from anything :func:`load_suite_spec` accepts.

    Unlike ``gx.ExpectationSuite(...)`` itself, which logs and silently drops invalid
    expectations, every problem raises :class:`SuiteError`. The suite is not attached to any
    data context.
    """
    normalized = load_suite_spec(spec, validate=False)
    label = label_for(spec)
    return build_gx_suite(normalized, label)


def label_for(source: Any) -> str:
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
    quiet_gx_logging()
    from great_expectations.core.expectation_suite import ExpectationSuite as GXSuite  # noqa: PLC0415

    return isinstance(source, GXSuite)


def _read_source(source: Any) -> tuple[Any, str, str]:
    """Return (raw parsed object, label for messages, default suite name)."""
    label = label_for(source)
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
        entry: dict[str, Any] = {"type": etype.strip(), "kwargs": plain_value(copy.deepcopy(dict(kwargs)))}
        entry["kwargs"].pop("batch_id", None)  # present in dumped validation results, not in specs
        meta = exp.get("meta")
        if meta:
            if not isinstance(meta, Mapping):
                errors.append((i, f"{where}: 'meta' must be a mapping, got {type(meta).__name__}"))
            else:
                entry["meta"] = plain_value(copy.deepcopy(dict(meta)))
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
            out["meta"] = plain_value(copy.deepcopy(dict(meta)))
    if raw.get("notes"):
        out["notes"] = copy.deepcopy(raw["notes"])
    params = raw.get("suite_parameters")
    if params:
        if not isinstance(params, Mapping):
            errors.append((-1, f"'suite_parameters' must be a mapping, got {type(params).__name__}"))
        else:
            out["suite_parameters"] = plain_value(copy.deepcopy(dict(params)))
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
    quiet_gx_logging()
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
    quiet_gx_logging()
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


def build_gx_suite(spec: Mapping[str, Any], label: str, *, tag_index: bool = False) -> ExpectationSuite:
    quiet_gx_logging()
    import great_expectations as gx  # noqa: PLC0415

    built = []
    errors = []
    for i, exp in enumerate(spec["expectations"]):
        entry = dict(exp)
        if tag_index:
            entry["meta"] = {**(exp.get("meta") or {}), INDEX_META_KEY: i}
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


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def plain_value(value: Any) -> Any:
    """Recursively convert numpy/pandas scalars and containers to JSON-compatible Python values."""
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain_value(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and type(value).__module__ == "numpy":
        try:
            return plain_value(item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return plain_value(value.tolist())
    return str(value)
