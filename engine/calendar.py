"""Working days (T2): the PRC statutory calendar with make-up working days (调休), plus overrides.

A day is a working day according to, in this order:
1. the process owner's override for that day (table ``calendar_days``: company-specific days, or the
   official calendar of a year ``chinese-calendar`` does not know yet);
2. ``chinese-calendar`` (statutory holidays and make-up working days);
3. the weekday rule (Monday to Friday) — for a year neither of the above covers. The year is then reported
   as missing (``CalendarDataMissing`` warning, the log, ``kefu calendar status`` and the audit trail of
   every due time it produced), and a process never stops on it.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from engine.clock import SHANGHAI, parse_instant

log = logging.getLogger("kefu.calendar")

@lru_cache(maxsize=1)
def _library() -> str:
    """The library and its version (``LIBRARY``), looked up when first asked: importlib.metadata is slow to
    import, and most commands never ask."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"chinese-calendar {version('chinese-calendar')}"
    except PackageNotFoundError:  # pragma: no cover - installed as a dependency
        return "chinese-calendar"


def __getattr__(name):
    if name == "LIBRARY":
        return _library()
    if name == "LIBRARY_YEARS":
        return library_years()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CalendarDataMissing(UserWarning):
    """The official working-day calendar of a year is not known; the weekday rule is used."""


def _library_years() -> tuple[int, int]:
    import chinese_calendar
    days = sorted(set(chinese_calendar.holidays) | set(chinese_calendar.workdays))
    return days[0].year, days[-1].year


def library_years() -> tuple[int, int]:
    """The first and last year the library knows (``LIBRARY_YEARS``, read from it when first asked: a command
    that computes no working day does not import it; a test may set ``LIBRARY_YEARS``)."""
    years = globals().get("LIBRARY_YEARS")
    if years is None:
        years = globals()["LIBRARY_YEARS"] = _library_years()
    return years


@dataclass
class WorkingCalendar:
    """The statutory calendar with the process owner's overrides (day → working or not)."""
    overrides: dict[date, bool] = field(default_factory=dict)
    revision: int = 0
    warned: set[int] = field(default_factory=set)

    def covered_by_overrides(self, year: int) -> bool:
        return any(d.year == year for d in self.overrides)

    def library_knows(self, year: int) -> bool:
        first, last = library_years()
        return first <= year <= last

    def source(self, day: date) -> str:
        if day in self.overrides:
            return "override"
        if self.library_knows(day.year):
            return "statutory"
        return "override-year" if self.covered_by_overrides(day.year) else "weekday-rule"

    def is_working_day(self, day: date) -> bool:
        if isinstance(day, datetime):
            day = day.astimezone(SHANGHAI).date()
        hit = self.overrides.get(day)
        if hit is not None:
            return hit
        if self.library_knows(day.year):
            import chinese_calendar
            return chinese_calendar.is_workday(day)
        if not self.covered_by_overrides(day.year) and day.year not in self.warned:
            self.warned.add(day.year)
            message = (f"no official working-day calendar for {day.year}: Monday-Friday is used; "
                       f"enter that year's holidays and make-up days with 'kefu calendar set'")
            log.warning(message)
            warnings.warn(message, CalendarDataMissing, stacklevel=3)
        return day.weekday() < 5

    def add_working_days(self, start, days: int, at_hour: int = 9) -> datetime:
        """The ``days``-th working day after ``start`` (its local date), at ``at_hour``:00 Asia/Shanghai."""
        day = _local_date(start)
        days = int(days)
        if not 0 <= days <= 366:
            raise ValueError(f"working days must be between 0 and 366, not {days}")
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return datetime(day.year, day.month, day.day, at_hour, tzinfo=SHANGHAI).astimezone(timezone.utc)

    def describe(self, start=None, end=None) -> dict:
        """What produced a working-day computation between two instants: for the audit trail."""
        years = set()
        if start is not None and end is not None:
            first, last = _local_date(start), _local_date(end)
            years = set(range(min(first, last).year, max(first, last).year + 1))
        missing = sorted(y for y in years if not self.library_knows(y) and not self.covered_by_overrides(y))
        out = {"library": _library(), "library_years": list(library_years()), "overrides": len(self.overrides),
               "revision": self.revision}
        if missing:
            out["weekday_rule_years"] = missing
        return out

    def status(self, years) -> list[dict]:
        rows = []
        for y in years:
            n = sum(1 for d in self.overrides if d.year == y)
            source = ("statutory" if self.library_knows(y) else "overrides" if n else "weekday-rule")
            rows.append({"year": y, "source": source, "overrides": n, "missing": source == "weekday-rule"})
        return rows


def _local_date(value) -> date:
    if isinstance(value, str):
        value = parse_instant(value)
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).date()
    return value


_active = WorkingCalendar()


def use(cal: WorkingCalendar) -> WorkingCalendar:
    """Make ``cal`` the calendar of the helper functions diagrams call; returns it."""
    global _active
    _active = cal
    return cal


def active() -> WorkingCalendar:
    return _active


def is_working_day(day: date) -> bool:
    return _active.is_working_day(day)


def add_working_days(start, days: int, at_hour: int = 9) -> datetime:
    return _active.add_working_days(start, days, at_hour)
