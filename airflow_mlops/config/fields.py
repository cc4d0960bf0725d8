"""The field-level checks of the model-config parser: one method per kind of value (mapping, string,
integer, number, column list, section), each raising :class:`ConfigError` naming the dotted field path and the
source file. :class:`~airflow_mlops.config.parser` builds the sections on top of them."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_mlops.config.model import (
    ConfigError,
)

SECTION_FIELDS: dict[str, tuple[str, ...]] = {
    "data": ("dataset", "uri", "format", "conn_id", "table", "date_column", "query", "training_window_days",
             "ground_truth_dataset", "scoring_dataset", "example_rows"),
    "predictions": ("conn_id", "table"),
    "estimator": ("class", "params", "trusted_types", "categorical"),
    "search": ("method", "n_iter", "space", "n_jobs"),
    "training": ("test_size", "cv_folds", "seed", "reference_sample_size", "split", "holdout_days"),
    "metrics": ("primary", "floors", "ceilings"),
    "promotion": ("min_improvement", "require_approval", "allow_self_approval", "approval_poke_seconds",
                  "approval_timeout_hours"),
    "validation": ("suite", "mostly"),
    "schedules": ("training", "nightly_retraining", "scoring", "monitoring", "start_date", "max_active_runs",
                  "scoring_catchup"),
    "drift": ("threshold", "sample_size", "stattest_threshold", "rule", "top_k"),
    "monitoring": ("min_slice_size", "performance_window_days", "max_relative_change", "drift_cooldown_days",
                   "freshness_deadline_hours", "volume_window_days", "volume_min_ratio", "volume_max_ratio",
                   "volume_max_z"),
    "fairness": ("metric", "max_gap", "max_primary_gap"),
    "explain": ("top_k", "method"),
    "canary": ("alias", "share"),
    "alerts": ("email", "smtp_conn_id", "webhook", "checks"),
    "segments": ("column", "min_rows", "map_files"),
}


_MISSING = object()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name

class FieldParser:
    """Validates one config's values; every error names the field and the source."""

    def __init__(self, source: str, check_estimator: bool = True) -> None:
        self.source = source
        self.check_estimator = check_estimator

    # -- primitives ---------------------------------------------------------------------------


    def error(self, field_path: str | None, reason: str) -> ConfigError:
        return ConfigError(reason, field=field_path, source=self.source)

    def mapping(self, value: Any, path: str, allowed: Sequence[str] | None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path or None, f"must be a mapping, got {type(value).__name__} {value!r}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(path or None, f"field names must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(
                    _join(path, key), f"unknown field {key!r}{hint}; allowed fields: {', '.join(allowed)}"
                )
        return value

    def get(self, section: Mapping[str, Any], name: str, path: str, default: Any = _MISSING) -> Any:
        if name in section:
            return section[name]
        if default is _MISSING:
            raise self.error(_join(path, name), "required field is missing")
        return default

    def string(self, value: Any, path: str, *, nullable: bool = False, nonempty: bool = True,
               pattern: re.Pattern[str] | None = None, choices: Sequence[str] | None = None) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.error(path, f"must be a string{' or null' if nullable else ''}, got {value!r}")
        if nonempty and not value.strip():
            raise self.error(path, "must not be empty")
        if choices is not None and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(path, f"must be one of {', '.join(choices)}; got {value!r}{hint}")
        if pattern is not None and not pattern.match(value):
            raise self.error(path, f"{value!r} does not match {pattern.pattern}")
        return value

    def text(self, value: Any, path: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(path, f"must be a string, got {value!r}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"must be true or false, got {value!r}")
        return value

    def integer(self, value: Any, path: str, low: int | None = None, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"must be an integer, got {value!r}")
        self._check_range(value, path, low, high, low_open=False, high_open=False)
        return value

    def number(self, value: Any, path: str, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False, nullable: bool = False) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(path, f"must be a number{' or null' if nullable else ''}, got {value!r}")
        if not math.isfinite(value):
            raise self.error(path, f"must be a finite number, got {value!r}")
        self._check_range(value, path, low, high, low_open=low_open, high_open=high_open)
        return float(value)

    def _check_range(self, value: float, path: str, low: float | None, high: float | None, *,
                     low_open: bool, high_open: bool) -> None:
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            lo = "-inf" if low is None else repr(low)
            hi = "inf" if high is None else repr(high)
            raise self.error(path, f"must be in {left}{lo}, {hi}{right}; got {value!r}")

    def columns(self, value: Any, path: str, *, nullable: bool, min_len: int = 1) -> tuple[str, ...] | None:
        if value is None and nullable:
            return None
        if not isinstance(value, (list, tuple)):
            raise self.error(path, f"must be a list of column names{' or null' if nullable else ''}, got {value!r}")
        if len(value) < min_len:
            raise self.error(path, f"must list at least {min_len} column(s)")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{path}[{i}]", f"must be a non-empty column name, got {item!r}")
        dupes = sorted({c for c in value if list(value).count(c) > 1})
        if dupes:
            raise self.error(path, f"duplicate column(s): {', '.join(dupes)}")
        return tuple(value)

    def section(self, raw: Mapping[str, Any], name: str, *, required: bool = False) -> Mapping[str, Any]:
        value = raw.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise self.error(name, "required section is missing")
            return {}
        return self.mapping(value, name, SECTION_FIELDS[name])

    # -- sections -----------------------------------------------------------------------------


__all__ = ["SECTION_FIELDS", "FieldParser"]
