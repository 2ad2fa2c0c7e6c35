"""The functions diagram expressions and scripts may call: times as ISO text, deadlines and working days.

``now``, ``due_at``, ``add_hours``, ``add_minutes``, ``add_seconds``, ``seconds_until``, ``add_working_days``
and ``is_working_day`` take ISO strings (or dates and times) and give ISO strings, whole seconds or a
boolean, so what a script leaves behind is plain data; a bare date means the end of that day in Shanghai.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from engine import calendar, clock


def iso(value) -> str:
    """A date or time as ISO text; a time without a zone is taken as Shanghai time and given in UTC."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=clock.SHANGHAI)
        return value.astimezone(timezone.utc).isoformat()
    return value.isoformat()


def _now() -> str:
    return clock.now().isoformat()


def _due_at(value) -> str:
    """A date or time (ISO string) as an aware ISO time; a bare date means the end of that day locally."""
    if isinstance(value, (datetime, date)) and not isinstance(value, datetime):
        value = value.isoformat()
    if isinstance(value, str) and len(value.strip()) == 10:
        day = date.fromisoformat(value.strip())
        return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=clock.SHANGHAI).astimezone(
            timezone.utc).isoformat()
    if isinstance(value, datetime):
        return iso(value)
    return clock.parse_instant(value).isoformat()


def _add_hours(start, hours) -> str:
    return (clock.parse_instant(_due_at(start)) + timedelta(hours=float(hours))).isoformat()


def _add_minutes(start, minutes) -> str:
    return (clock.parse_instant(_due_at(start)) + timedelta(minutes=float(minutes))).isoformat()


def _add_seconds(start, seconds) -> str:
    return (clock.parse_instant(_due_at(start)) + timedelta(seconds=float(seconds))).isoformat()


def _seconds_until(when) -> int:
    """Whole seconds from now until ``when`` (negative once it has passed): what is left of a deadline."""
    return int((clock.parse_instant(_due_at(when)) - clock.now()).total_seconds())


def _add_working_days(start, days) -> str:
    return calendar.add_working_days(start, int(days)).isoformat()


def _window_opens(start, days) -> str:
    """T-window: the start (00:00 Asia/Shanghai) of the ``days``-th working day after ``start``."""
    return calendar.add_working_days(start, int(days), at_hour=0).isoformat()


def _window_closes(start, days) -> str:
    """T-window: the end of the ``days``-th working day after ``start`` (24:00 Asia/Shanghai, the next day's 00:00)."""
    return (calendar.add_working_days(start, int(days), at_hour=0) + timedelta(days=1)).isoformat()


def _earliest(*times) -> str:
    """The earliest of the given times (ISO strings or dates; empty ones skipped), as an aware ISO time."""
    found = [clock.parse_instant(_due_at(t)) for t in times if t]
    if not found:
        raise ValueError("earliest() needs at least one time")
    return min(found).isoformat()


def _is_working_day(day) -> bool:
    if isinstance(day, str):
        day = clock.parse_instant(day).astimezone(clock.SHANGHAI).date()
    return calendar.is_working_day(day)


HELPERS = {
    "now": _now,
    "due_at": _due_at,
    "add_hours": _add_hours,
    "add_minutes": _add_minutes,
    "add_seconds": _add_seconds,
    "seconds_until": _seconds_until,
    "add_working_days": _add_working_days,
    "window_opens": _window_opens,
    "window_closes": _window_closes,
    "earliest": _earliest,
    "is_working_day": _is_working_day,
}
