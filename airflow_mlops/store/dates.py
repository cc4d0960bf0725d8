"""The logical date: one type, one parser, and the day arithmetic every package uses.

A run's logical date arrives as Airflow's ``logical_date`` (a datetime), a ``ds`` string (``2024-01-03``), a
timestamp string (``2024-01-03T00:00:00+00:00``) or a :class:`datetime.date`. The operators parse it once at
their boundary into a :class:`LogicalDate` (``MLOpsBaseOperator.logical_ds``); below them the capability
packages pass that value on. A :class:`LogicalDate` *is* its ``YYYY-MM-DD`` text (a ``str`` subclass: the
partition name ``ds=YYYY-MM-DD``, the key of every output, a JSON/XCom value as-is), so parsing it again
(:func:`logical_ds` at a package's public entry, for callers outside Airflow) returns it unchanged.
"""

from __future__ import annotations

import datetime as dt

#: What may stand for a logical date.
DateLike = str | dt.date | dt.datetime


class LogicalDate(str):
    """A validated logical day: the ``YYYY-MM-DD`` string itself, with day arithmetic.

    ``LogicalDate(value)`` accepts every :data:`DateLike` form and raises ``ValueError`` naming the value
    otherwise; a :class:`LogicalDate` passed in is returned as is (no second parse). Its ``repr`` is the
    string's, so a list of dates written into generated code or a message reads as plain strings."""

    __slots__ = ()

    def __new__(cls, value: DateLike) -> LogicalDate:
        if isinstance(value, LogicalDate):
            return value
        return super().__new__(cls, _parse(value).isoformat())

    @property
    def day(self) -> dt.date:
        """The calendar day."""
        return dt.date.fromisoformat(self)

    def end_of_day(self) -> dt.datetime:
        """The last microsecond (UTC) of the day."""
        return dt.datetime.combine(self.day, dt.time.max, tzinfo=dt.UTC)

    def shift(self, days: int) -> LogicalDate:
        """The logical date ``days`` later (earlier when negative)."""
        return LogicalDate(self.day + dt.timedelta(days=days))


def _parse(value: DateLike) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"logical date {value!r} is not YYYY-MM-DD") from None


def logical_date(value: DateLike) -> dt.date:
    """The calendar day of ``value``; ``ValueError`` naming the value when it is not a date.

    A datetime counts by its own calendar day (a timestamp string by its first ten characters), as Airflow's
    ``ds`` does."""
    if isinstance(value, LogicalDate):
        return value.day
    return _parse(value)


def logical_ds(value: DateLike) -> LogicalDate:
    """The :class:`LogicalDate` of ``value`` (``YYYY-MM-DD``; see :func:`logical_date`)."""
    return LogicalDate(value)


def end_of_day(value: DateLike) -> dt.datetime:
    """The last microsecond (UTC) of the logical day ``value``."""
    return LogicalDate(value).end_of_day()


def days_ending(end: DateLike, days: int) -> list[str]:
    """The ``days`` dates ending at ``end`` (inclusive), oldest first (:class:`LogicalDate` values)."""
    if days < 1:
        raise ValueError(f"window days must be >= 1, got {days!r}")
    last = LogicalDate(end)
    return [last.shift(-i) for i in range(days - 1, -1, -1)]


def days_before(end: DateLike, days: int) -> list[str]:
    """The ``days`` dates before ``end`` (excluded), oldest first (:class:`LogicalDate` values)."""
    last = LogicalDate(end)
    return [last.shift(-i) for i in range(days, 0, -1)]


def days_from(start: DateLike, days: int) -> list[str]:
    """``days`` consecutive dates starting at ``start`` (:class:`LogicalDate` values)."""
    first = LogicalDate(start)
    return [first.shift(i) for i in range(days)]


__all__ = ["DateLike", "LogicalDate", "days_before", "days_ending", "days_from", "end_of_day", "logical_date",
           "logical_ds"]
