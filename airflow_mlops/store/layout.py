"""The storage layout: every key of the artifact store outside the registry's own tree is built (or
recognised) here; the registry's ``registry/<model>/...`` keys are built by
:class:`~airflow_mlops.registry.model_registry.ModelRegistry` alone.

::

    data/<dataset>/ds=YYYY-MM-DD/*.parquet                 input datasets (or data.uri, its own store)
    predictions/<model>/ds=YYYY-MM-DD/part-*.parquet       the prediction log
    validation/<model>/ds=YYYY-MM-DD/{report.html,...}     validation results of a partition
    quarantine/<dataset>/ds=YYYY-MM-DD/*.parquet           rows that failed validation
    monitoring/<model>/ds=YYYY-MM-DD/{drift,performance,data_quality}.json (+ .html reports)
    monitoring/<model>/retrain_requests.json               the retraining requests drift raised

See docs/registry-layout.md for the whole tree.
"""

from __future__ import annotations

import re

from airflow_mlops.store.dates import DateLike, logical_ds


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def partition_dir(ds: DateLike) -> str:
    """``ds=YYYY-MM-DD``; ``ValueError`` when ``ds`` is not a date."""
    return f"ds={logical_ds(ds)}"


def data_prefix(dataset: str) -> str:
    """``data/<dataset>``: a named input dataset under the store root."""
    return _join("data", dataset)


def predictions_prefix(model: str, output_prefix: str | None = None) -> str:
    """``predictions/<model>``, the prediction log (``output_prefix`` when the task overrides it)."""
    return (output_prefix or _join("predictions", model)).strip("/")


def validation_prefix(model: str, ds: DateLike) -> str:
    """``validation/<model>/ds=<ds>``: the validation results of one partition."""
    return _join("validation", model, partition_dir(ds))


def quarantine_prefix(dataset: str) -> str:
    """``quarantine/<dataset>``: the rows of a dataset that failed validation, per partition."""
    return _join("quarantine", dataset)


def monitoring_prefix(model: str, ds: DateLike) -> str:
    """``monitoring/<model>/ds=<ds>``: the monitoring outputs of one day."""
    return _join("monitoring", model, partition_dir(ds))


def monitoring_key(model: str, ds: DateLike, name: str) -> str:
    """``monitoring/<model>/ds=<ds>/<name>`` (``drift.json``, ``performance.json``, ``data_quality.json``)."""
    return _join(monitoring_prefix(model, ds), name)


def monitoring_root(model: str) -> str:
    """``monitoring/<model>``: every monitoring output of a model."""
    return _join("monitoring", model)


def retrain_requests_key(model: str) -> str:
    """``monitoring/<model>/retrain_requests.json``."""
    return _join(monitoring_root(model), "retrain_requests.json")


#: Store keys the report route serves (besides nothing else): registry reports, validation and drift reports.
_REPORT_KEY_PATTERNS = (
    # registry/<model>/versions/<n>/reports/<file>
    re.compile(r"registry/(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/versions/(?P<version>[0-9]{1,9})/"
               r"(?P<rel>reports/[A-Za-z0-9_.=-]+(?:/[A-Za-z0-9_.=-]+)*\.(?:html|json))"),
    # validation/<model>/ds=YYYY-MM-DD/{report.html,result.json}
    re.compile(r"(?P<area>validation)/(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/ds=(?P<ds>\d{4}-\d{2}-\d{2})/"
               r"(?P<rel>[A-Za-z0-9_.-]+\.(?:html|json))"),
    # monitoring/<model>/ds=YYYY-MM-DD/{drift.html,drift.json,...}
    re.compile(r"(?P<area>monitoring)/(?P<model>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})/ds=(?P<ds>\d{4}-\d{2}-\d{2})/"
               r"(?P<rel>[A-Za-z0-9_.-]+\.(?:html|json))"),
)


def match_report_key(key: str) -> dict[str, str] | None:
    """The parts of a store key the report route may serve, or ``None``.

    Only ``registry/<model>/versions/<n>/reports/...``, ``validation/<model>/ds=<ds>/...`` and
    ``monitoring/<model>/ds=<ds>/...`` HTML/JSON files qualify; anything else (datasets, models, the
    registry state, ``..`` segments, absolute paths) does not.
    """
    if not isinstance(key, str) or not key or len(key) > 1024:
        return None
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments) or "\\" in key or "\x00" in key:
        return None
    for pattern in _REPORT_KEY_PATTERNS:
        m = pattern.fullmatch(key)
        if m:
            parts = m.groupdict()
            if ".." in parts["rel"]:
                return None
            parts.setdefault("area", "registry")
            return {k: v for k, v in parts.items() if v is not None}
    return None


__all__ = ["data_prefix", "match_report_key", "monitoring_key", "monitoring_prefix", "monitoring_root",
           "partition_dir", "predictions_prefix", "quarantine_prefix", "retrain_requests_key", "validation_prefix"]
