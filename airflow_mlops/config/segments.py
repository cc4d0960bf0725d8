"""Segment naming: the registered model of each value of a config's ``segments.column``
(``<model>__<slug>``), its config, and the rows it owns. The flows that train, promote and score per segment
are in :mod:`airflow_mlops.segments.flows`."""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from airflow_mlops.store.datasets import DataError

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.config.model import ModelConfig, SegmentsConfig

SEPARATOR = "__"
#: the registry's limit on model names (:func:`airflow_mlops.registry.model_registry._check_name`)
MAX_NAME_LENGTH = 128


class SegmentError(DataError):
    """Segment values that cannot be trained or scored (no champion, clashing slugs, null values)."""


def segment_slug(value: Any) -> str:
    """The registry-safe form of a segment value: lowercase, runs of characters outside
    ``[a-z0-9_]`` replaced by ``_`` (``"North-East"`` -> ``"north_east"``)."""
    slug = re.sub(r"[^a-z0-9_]+", "_", str(value).strip().lower()).strip("_")
    if not slug:
        raise SegmentError(f"segment value {value!r} has no letters or digits; it cannot name a model")
    return slug


def segments_section(config: ModelConfig) -> SegmentsConfig:
    """The config's ``segments`` section; ``ValueError`` when it has none."""
    if config.segments is None:
        raise ValueError(f"config {config.name} ({config.source}) has no segments section")
    return config.segments


def require_segments(config: ModelConfig) -> str:
    """The segment column; ``ValueError`` when the config has no ``segments`` section."""
    return segments_section(config).column


def segment_model_name(config: ModelConfig, value: Any) -> str:
    """``<model>__<slug>``: the registered model of one segment value."""
    column = require_segments(config)
    name = f"{config.name}{SEPARATOR}{segment_slug(value)}"
    if len(name) > MAX_NAME_LENGTH:
        raise SegmentError(f"segment value {str(value)[:40]!r}... of {config.name}.{column} makes "
                           f"the model name {len(name)} characters long (registry limit {MAX_NAME_LENGTH}); use "
                           "shorter segment values (codes) in the column")
    return name


def segment_config(config: ModelConfig, value: Any) -> ModelConfig:
    """The config of one segment's model: the same config named :func:`segment_model_name`
    (the ``segments`` section stays, so the segment column stays out of the features)."""
    return dataclasses.replace(config, name=segment_model_name(config, value))


def segment_rows(df: pd.DataFrame, column: str, value: Any) -> pd.DataFrame:
    """The rows of ``df`` whose ``column`` equals ``value`` compared as text (nulls never match)."""
    if column not in df.columns:
        raise DataError(f"segment column {column!r} is not in the data (columns: {sorted(map(str, df.columns))})")
    col = df[column]
    return df[col.notna() & (col.astype(str) == str(value))].reset_index(drop=True)


def check_slugs(config: ModelConfig, values: list[str]) -> None:
    """Refuse segment values whose slugs clash (two values would share one registered model)."""
    seen: dict[str, str] = {}
    for v in values:
        slug = segment_slug(v)
        if slug in seen:
            raise SegmentError(f"segment values {seen[slug]!r} and {v!r} of {config.name}.{require_segments(config)} "
                               f"both map to the model {config.name}{SEPARATOR}{slug}; clean the column so that "
                               "values differ after lowercasing")
        seen[slug] = v


__all__ = ["MAX_NAME_LENGTH", "SEPARATOR", "SegmentError", "check_slugs", "require_segments", "segment_config",
           "segment_model_name", "segment_rows", "segment_slug"]
