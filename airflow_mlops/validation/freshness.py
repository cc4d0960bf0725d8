"""Data freshness, volume and duplicate-delivery checks of a daily partition (pure logic, no Airflow).

* **Freshness** — a partition must arrive ``freshness_deadline_hours`` after the end of its logical
  day (:func:`freshness_deadline`, :func:`freshness_check`).
* **Volume** — the row count is compared with the *trailing median* of the partitions present in the
  ``volume_window_days`` days before the logical date (:func:`volume_check`): an alert when
  ``rows / median`` leaves ``[volume_min_ratio, volume_max_ratio]`` or, when ``volume_max_z`` is set,
  when ``|rows - mean| / sd`` exceeds it. ``sd`` is floored at ``sqrt(mean)`` (the Poisson noise of a
  count), so a perfectly flat history does not turn a one-row difference into an infinite z-score.
  Days missing from the window are not counted as zero rows (that is a freshness problem).
* **Duplicate** — a partition whose canonical content hash
  (:func:`airflow_mlops.store.fingerprint.fingerprint_table` with the key columns: independent of file
  names, file split, row order and encoding) equals an earlier day's is a re-delivered file
  (:func:`duplicate_check`).

All results are small JSON-able dicts of counts, ratios and hashes — never row values.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from airflow_mlops.store.dates import logical_date

__all__ = [
    "MIN_VOLUME_HISTORY",
    "DuplicateCheck",
    "FreshnessCheck",
    "duplicate_check",
    "freshness_check",
    "freshness_deadline",
    "volume_check",
]

#: fewer trailing days than this with data: the volume check reports ``insufficient_history``
MIN_VOLUME_HISTORY = 3


class FreshnessCheck(TypedDict):
    """What :func:`freshness_check` returns."""

    status: Literal["ok", "waiting", "late"]
    alert: bool  #: True when ``late``
    deadline: str  #: ISO timestamp (UTC)
    hours_late: float | None  #: set when ``late``


class DuplicateCheck(TypedDict):
    """What :func:`duplicate_check` returns."""

    status: Literal["ok", "duplicate", "skipped"]
    alert: bool  #: True when ``duplicate``
    duplicate_of: list[str]  #: earlier dates with the same content hash, newest first
    n_compared: int  #: earlier days with a content hash


def freshness_deadline(ds: str | dt.date, deadline_hours: float) -> dt.datetime:
    """``deadline_hours`` after the end of the logical day ``ds`` (UTC)."""
    day = logical_date(ds)
    end_of_day = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
    return end_of_day + dt.timedelta(hours=float(deadline_hours))


def freshness_check(ds: str | dt.date, present: bool, deadline_hours: float,
                    now: dt.datetime | None = None) -> FreshnessCheck:
    """Is the partition of ``ds`` late?

    Returns ``{"status": "ok" | "waiting" | "late", "alert": bool, "deadline": iso, "hours_late": float | None}``:
    ``waiting`` when it is missing but the deadline has not passed yet, ``late`` (alert) when it is
    missing after the deadline.
    """
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    deadline = freshness_deadline(ds, deadline_hours)
    if present:
        return {"status": "ok", "alert": False, "deadline": deadline.isoformat(), "hours_late": None}
    late = (now - deadline).total_seconds() / 3600.0
    if late < 0:
        return {"status": "waiting", "alert": False, "deadline": deadline.isoformat(), "hours_late": None}
    return {"status": "late", "alert": True, "deadline": deadline.isoformat(), "hours_late": round(late, 2)}


def volume_check(rows: int, history: Mapping[str, int], *, min_ratio: float, max_ratio: float,
                 max_z: float | None = None, min_history: int = MIN_VOLUME_HISTORY) -> dict[str, Any]:
    """Compare today's row count with the trailing window.

    Args:
        rows: rows in today's partition.
        history: date -> rows of the trailing partitions present (today excluded).
        min_ratio, max_ratio: bounds of ``rows / median(history)``.
        max_z: optional bound of ``|rows - mean| / max(sd, sqrt(mean))``.
        min_history: fewer trailing days than this: no verdict (``insufficient_history``).

    Returns:
        ``{"status": "ok" | "low" | "high" | "insufficient_history", "alert", "rows", "median",
        "mean", "sd", "ratio", "z", "n_history", "min_ratio", "max_ratio", "max_z", "reasons"}``.
    """
    counts = [int(v) for v in history.values()]
    out: dict[str, Any] = {"rows": int(rows), "n_history": len(counts), "min_ratio": min_ratio,
                           "max_ratio": max_ratio, "max_z": max_z, "median": None, "mean": None, "sd": None,
                           "ratio": None, "z": None, "reasons": []}
    if len(counts) < min_history:
        return {**out, "status": "insufficient_history", "alert": False,
                "reasons": [f"{len(counts)} trailing day(s) with data, need {min_history}"]}
    median = float(statistics.median(counts))
    mean = float(statistics.fmean(counts))
    sd = float(statistics.stdev(counts)) if len(counts) > 1 else 0.0
    ratio = rows / median if median > 0 else (math.inf if rows > 0 else 1.0)
    sigma = max(sd, math.sqrt(mean) if mean > 0 else 1.0)
    z = (rows - mean) / sigma
    reasons = []
    status = "ok"
    if ratio < min_ratio:
        status = "low"
        reasons.append(f"rows/median {ratio:.3f} < volume_min_ratio {min_ratio}")
    elif ratio > max_ratio:
        status = "high"
        reasons.append(f"rows/median {ratio:.3f} > volume_max_ratio {max_ratio}")
    if max_z is not None and abs(z) > max_z:
        if status == "ok":
            status = "low" if z < 0 else "high"
        reasons.append(f"|z| {abs(z):.2f} > volume_max_z {max_z}")
    return {**out, "status": status, "alert": status != "ok", "median": median, "mean": round(mean, 3),
            "sd": round(sd, 3), "ratio": round(ratio, 6) if math.isfinite(ratio) else None,
            "z": round(z, 3), "reasons": reasons}


def duplicate_check(content_hash: str | None, history: Mapping[str, str | None]) -> DuplicateCheck:
    """Earlier days whose content hash equals today's.

    Args:
        content_hash: today's canonical content hash (``None``: nothing to compare, e.g. 0 rows).
        history: date -> content hash of earlier partitions.

    Returns:
        ``{"status": "ok" | "duplicate" | "skipped", "alert": bool, "duplicate_of": [dates, newest first],
        "n_compared": int}``.
    """
    if not content_hash:
        return {"status": "skipped", "alert": False, "duplicate_of": [], "n_compared": 0}
    same = sorted((d for d, h in history.items() if h and h == content_hash), reverse=True)
    return {"status": "duplicate" if same else "ok", "alert": bool(same), "duplicate_of": same,
            "n_compared": sum(1 for h in history.values() if h)}
