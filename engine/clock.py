"""The one clock of the engine.

Everything that asks for "now" — services, helper functions in diagrams and SpiffWorkflow's own timer
code — asks the active clock. SpiffWorkflow 3.2 calls ``datetime.now(timezone.utc)`` inside its timer
module with no injection point, so that module's ``datetime`` name is replaced once, at import, by a
subclass whose ``now()`` delegates to the active clock.
"""
from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import SpiffWorkflow.bpmn.specs.event_definitions.timer as _spiff_timer

from .errors import InvalidInput

SHANGHAI = ZoneInfo("Asia/Shanghai")


def parse_instant(text: str) -> datetime:
    """An ISO-8601 time; a time without offset is Asia/Shanghai local time."""
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise InvalidInput(f"not an ISO-8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value.astimezone(timezone.utc)


class Clock:
    """Wall-clock time, or a pinned time that only moves when told to (test and demo)."""

    def __init__(self, pinned: datetime | None = None):
        self._pinned = pinned.astimezone(timezone.utc) if pinned else None

    @property
    def pinned(self) -> bool:
        return self._pinned is not None

    def now(self) -> datetime:
        return self._pinned if self._pinned is not None else datetime.now(timezone.utc)

    def set(self, when: datetime) -> None:
        self._pinned = when.astimezone(timezone.utc)

    def advance(self, delta: timedelta) -> datetime:
        self._pinned = self.now() + delta
        return self._pinned

    @classmethod
    def from_config(cls, config) -> "Clock":
        if config.clock and config.time_controls_allowed:
            return cls(parse_instant(config.clock))
        if config.clock:
            print(f"kefu: KEFU_CLOCK is ignored because KEFU_ENV={config.env!r} "
                  "(time can be pinned only in 'test' or 'demo')", file=sys.stderr)
        return cls()


_active = Clock()


def active() -> Clock:
    return _active


def use(clock: Clock) -> Clock:
    """Make ``clock`` the engine-wide clock (SpiffWorkflow's timers included); returns it."""
    global _active
    _active = clock
    return clock


def now() -> datetime:
    return _active.now()


class _SpiffDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        current = _active.now()
        return current.astimezone(tz) if tz else current.astimezone().replace(tzinfo=None)


_spiff_timer.datetime = _SpiffDatetime
