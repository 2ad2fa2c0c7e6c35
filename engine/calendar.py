"""Working days (T2): the PRC statutory calendar with make-up working days (调休).

Known years come from ``chinese-calendar``. For a date it does not know, the weekday rule applies
(Monday to Friday) and a warning names the year, so a process never stops on a missing calendar.
"""
from __future__ import annotations

import warnings
from datetime import date, datetime, timedelta, timezone

import chinese_calendar

from .clock import SHANGHAI, parse_instant

_missing_years_warned: set[int] = set()


class CalendarDataMissing(UserWarning):
    """The official working-day calendar of a year is not known; the weekday rule is used."""


def is_working_day(day: date) -> bool:
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        if day.year not in _missing_years_warned:
            _missing_years_warned.add(day.year)
            warnings.warn(f"no official working-day calendar for {day.year}; using Monday-Friday",
                          CalendarDataMissing, stacklevel=2)
        return day.weekday() < 5


def add_working_days(start, days: int, at_hour: int = 9) -> datetime:
    """The ``days``-th working day after ``start`` (its local date), at ``at_hour``:00 Asia/Shanghai."""
    if isinstance(start, str):
        start = parse_instant(start)
    if isinstance(start, datetime):
        start = start.astimezone(SHANGHAI).date()
    day, counted = start, 0
    while counted < int(days):
        day += timedelta(days=1)
        if is_working_day(day):
            counted += 1
    return datetime(day.year, day.month, day.day, at_hour, tzinfo=SHANGHAI).astimezone(timezone.utc)
