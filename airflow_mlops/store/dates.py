"""The logical date: the one parser and the day arithmetic every package uses.

A run's logical date arrives as Airflow's ``logical_date`` (a datetime), a ``ds`` string (``2024-01-03``), a
timestamp string (``2024-01-03T00:00:00+00:00``) or a :class:`datetime.date`. The operators parse it once at
their boundary with :func:`logical_ds`; below them the capability packages pass the ``YYYY-MM-DD`` string (the
partition name ``ds=YYYY-MM-DD``, the key of every output) and do day arithmetic here.
"""

from __future__ import annotations

import datetime as dt

#: What may stand for a logical date.
DateLike = str | dt.date | dt.datetime


def logical_date(value: DateLike) -> dt.date:
    """The calendar day of ``value``; ``ValueError`` naming the value when it is not a date.

    A datetime counts by its own calendar day (a timestamp string by its first ten characters), as Airflow's
    ``ds`` does."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"logical date {value!r} is not YYYY-MM-DD") from None


def logical_ds(value: DateLike) -> str:
    """``YYYY-MM-DD`` of ``value`` (see :func:`logical_date`)."""
    return logical_date(value).isoformat()


def end_of_day(value: DateLike) -> dt.datetime:
    """The last microsecond (UTC) of the logical day ``value``."""
    return dt.datetime.combine(logical_date(value), dt.time.max, tzinfo=dt.UTC)


def days_ending(end: DateLike, days: int) -> list[str]:
    """The ``days`` dates ending at ``end`` (inclusive), oldest first."""
    if days < 1:
        raise ValueError(f"window days must be >= 1, got {days!r}")
    last = logical_date(end)
    return [(last - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


def days_before(end: DateLike, days: int) -> list[str]:
    """The ``days`` dates before ``end`` (excluded), oldest first."""
    last = logical_date(end)
    return [(last - dt.timedelta(days=i)).isoformat() for i in range(days, 0, -1)]


def days_from(start: DateLike, days: int) -> list[str]:
    """``days`` consecutive dates starting at ``start``."""
    first = logical_date(start)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


__all__ = ["DateLike", "days_before", "days_ending", "days_from", "end_of_day", "logical_date", "logical_ds"]
