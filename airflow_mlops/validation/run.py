"""Running a suite on a batch: :func:`validate_dataframe` returns a :class:`ValidationOutcome` (per-expectation
records, unexpected row indices for quarantine, an HTML report), free of row values: messages are redacted,
observed values kept only for aggregate expectations."""

from __future__ import annotations

import copy
import html
import json
import logging
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from airflow_mlops.validation.infer import normalize_frame
from airflow_mlops.validation.suites import (
    INDEX_META_KEY,
    MAX_LIST_ITEMS,
    SAFE_OBSERVED,
    TYPE_EXPECTATIONS,
    build_gx_suite,
    label_for,
    load_suite_spec,
    plain_value,
    quiet_gx_logging,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd
    from great_expectations.core.expectation_suite import ExpectationSuite

    from airflow_mlops.validation.suites import SuiteSource

log = logging.getLogger(__name__)

__all__ = ["FailedExpectation", "ValidationOutcome", "ValidationSummary", "summarize_failures", "validate_dataframe"]


class FailedExpectation(TypedDict):
    """One failed expectation in :attr:`ValidationOutcome.failed` (no row values)."""

    expectation_type: str
    column: str | None
    kwargs: dict[str, Any]  #: lists longer than 20 items replaced by ``"<list of N items>"``
    summary: str
    unexpected_count: int | None
    unexpected_percent: float | None  #: None for aggregates
    observed_value: Any  #: only for aggregates that are not row values
    row_level: bool
    error: bool
    severity: str


class ValidationSummary(TypedDict):
    """The XCom of ``DataValidationOperator``, built by
    :func:`airflow_mlops.registry.lifecycle.validate_partition` (a failed validation raises instead).

    Without a suite to run: ``{"success": True, "skipped": True, "rows"}``. Otherwise the counts, the
    URIs of ``result.json`` and ``report.html`` and the suite's name, plus ``quarantine_removed`` when a
    quarantine partition of the date left by an earlier failed run was removed.
    """

    success: bool
    rows: int
    skipped: NotRequired[bool]
    evaluated: NotRequired[int]  #: expectations evaluated
    failed: NotRequired[int]  #: expectations that failed
    result_uri: NotRequired[str]
    report_uri: NotRequired[str]
    suite: NotRequired[str | None]  #: the suite's name
    quarantine_removed: NotRequired[str]  #: URI of the removed quarantine partition


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
    failed: list[FailedExpectation]
    failing_row_mask: np.ndarray
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
    def quarantine_mask(self) -> np.ndarray:
        """Rows to quarantine: all rows on a batch-level failure, else ``failing_row_mask``."""
        import numpy as np  # noqa: PLC0415

        if self.batch_level_failure:
            return np.ones(len(self.failing_row_mask), dtype=bool)
        return self.failing_row_mask.copy()

    def split(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def validate_dataframe(df: pd.DataFrame, suite: SuiteSource, *, name: str = "batch") -> ValidationOutcome:
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
    label = label_for(suite)
    frame = normalize_frame(df)
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
        gx_suite = build_gx_suite(gx_spec, label, tag_index=True)
        results = _run_gx(frame, gx_suite, name)
        by_position: dict[int, Any] = {}
        for res in results:
            meta = res.expectation_config.meta or {}
            pos = meta.get(INDEX_META_KEY)
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
    failed: list[FailedExpectation] = [
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
    result_json = plain_value({
        "suite_name": spec["name"],
        "batch_name": name,
        "success": success,
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
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
    quiet_gx_logging()
    import great_expectations as gx  # noqa: PLC0415

    return str(gx.__version__)


def _run_gx(frame: pd.DataFrame, suite: ExpectationSuite, batch_name: str) -> list[Any]:
    """Validate ``frame`` with ``suite`` in a fresh ephemeral context; return the per-expectation results."""
    quiet_gx_logging()
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
    if etype in TYPE_EXPECTATIONS:
        return False
    quiet_gx_logging()
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


def _result_record(exp: Mapping[str, Any], res: Any, frame: pd.DataFrame, columns: set[str]) -> dict[str, Any]:
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


def _safe_observed(etype: str, result: Mapping[str, Any], frame: pd.DataFrame, kwargs: Mapping[str, Any]) -> Any:
    """Observed value only where it is an aggregate rather than a row value."""
    if etype == "expect_table_columns_to_match_set":
        expected = [c for c in kwargs.get("column_set") or [] if isinstance(c, str)]
        present = set(frame.columns)
        observed: dict[str, Any] = {"missing_columns": [c for c in expected if c not in present]}
        if kwargs.get("exact_match", True):
            observed["unexpected_columns"] = [c for c in frame.columns if c not in set(expected)]
        return observed
    if etype in TYPE_EXPECTATIONS:
        col = kwargs.get("column")
        return str(frame[col].dtype) if col in frame.columns else None
    if etype in SAFE_OBSERVED:
        return plain_value(result.get("observed_value"))
    return None


def _failure_summary(etype: str, kwargs: Mapping[str, Any], rec: Mapping[str, Any]) -> str:
    subject = _subject(kwargs)
    observed = rec.get("observed_value")
    mostly = kwargs.get("mostly", 1.0)
    if etype in TYPE_EXPECTATIONS:
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
    if etype in SAFE_OBSERVED and etype.startswith("expect_column_"):
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
        if isinstance(value, (list, tuple, set, frozenset)) and len(value) > MAX_LIST_ITEMS:
            out[key] = f"<list of {len(value)} items>"
        else:
            out[key] = plain_value(copy.deepcopy(value))
    return out


def _as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
