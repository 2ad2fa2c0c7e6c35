"""The one clock of the engine.

Everything that asks for "now" — services, helper functions in diagrams and SpiffWorkflow's own timer
code — asks the active clock. SpiffWorkflow 3.2 calls ``datetime.now(timezone.utc)`` inside its timer
module with no injection point, so that module's ``datetime`` name is replaced once by a subclass whose
``now()`` delegates to the active clock: by ``engine.bpmn.diagram`` (through which every workflow is parsed or
restored) calling ``use_in_spiffworkflow()``, not here, so that a command that runs no workflow (``kefu tasks``)
does not import SpiffWorkflow at all.
"""
from __future__ import annotations

import re
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from engine.errors import InvalidInput

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


def iso(value: datetime | None) -> str | None:
    """A stored instant as ISO-8601 text in Asia/Shanghai time (None stays None): how every output shows time."""
    return None if value is None else value.astimezone(SHANGHAI).isoformat()


def aware(text: str | None) -> datetime | None:
    """An ISO-8601 text kept in workflow data as an aware instant (no offset: UTC); None if it is not one."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class Clock:
    """Wall-clock time, or a pinned time that only moves when told to (test and demo), plus an offset.

    The offset is how far the demo/test clock has been advanced (``kefu clock advance 3d``); the service keeps
    it in the database so every process (web, scheduler, CLI) sees the same time.
    """

    def __init__(self, pinned: datetime | None = None, offset: timedelta = timedelta(0)):
        self._pinned = pinned.astimezone(timezone.utc) if pinned else None
        self.offset = offset

    @property
    def pinned(self) -> bool:
        return self._pinned is not None

    def now(self) -> datetime:
        base = self._pinned if self._pinned is not None else datetime.now(timezone.utc)
        return base + self.offset if self.offset else base

    def set(self, when: datetime) -> None:
        self._pinned = when.astimezone(timezone.utc) - self.offset

    def advance(self, delta: timedelta) -> datetime:
        if self._pinned is not None:
            self._pinned += delta
        else:
            self.offset += delta
        return self.now()

    def real_time_of(self, instant: datetime) -> datetime | None:
        """When the wall clock will show ``instant`` on this clock; None for a pinned clock (it never gets
        there by itself)."""
        if self._pinned is not None:
            return None
        return instant - self.offset

    @classmethod
    def from_config(cls, config) -> "Clock":
        if config.clock and config.time_controls_allowed:
            return cls(parse_instant(config.clock))
        if config.clock:
            print(f"kefu: KEFU_CLOCK is ignored because KEFU_ENV={config.env!r} "
                  "(time can be pinned only in 'test' or 'demo')", file=sys.stderr)
        return cls()


def parse_duration(text: str) -> timedelta:
    """``3d``, ``2h``, ``30m``, ``45s``, combinations like ``1d12h``, or ISO ``P3DT2H``; may start with ``-``."""
    raw = str(text).strip()
    sign = -1 if raw.startswith("-") else 1
    body = raw.lstrip("+-").upper()
    if body.startswith("P"):
        m = re.fullmatch(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", body)
        parts = m and [int(g or 0) for g in m.groups()]
        if not m or body in ("P", "PT"):
            raise InvalidInput(f"not a duration: {text!r} (try 3d, 2h30m or P3DT2H)")
        delta = timedelta(weeks=parts[0], days=parts[1], hours=parts[2], minutes=parts[3], seconds=parts[4])
    else:
        found = re.findall(r"(\d+(?:\.\d+)?)([WDHMS])", body)
        if not found or "".join(n + u for n, u in found) != body:
            raise InvalidInput(f"not a duration: {text!r} (try 3d, 2h30m or P3DT2H)")
        unit = {"W": "weeks", "D": "days", "H": "hours", "M": "minutes", "S": "seconds"}
        delta = timedelta()
        for n, u in found:
            delta += timedelta(**{unit[u]: float(n)})
    if delta > timedelta(days=3660):
        raise InvalidInput(f"a duration of at most ten years, not {text!r}")
    return sign * delta


_active = Clock()


def active() -> Clock:
    return _active


def use(clock: Clock) -> Clock:
    """Make ``clock`` the engine-wide clock (SpiffWorkflow's timers included); returns it."""
    global _active
    _active = clock
    return clock


_unit = threading.local()  # per thread: the instant of the unit of work in progress (see one_instant)


@contextmanager
def one_instant():
    """Inside a unit of work every reading of the clock — the service's, the diagrams' helpers and
    SpiffWorkflow's timer code — gives the same instant: the one read first, once the work holds its locks.
    Deadlines and the audit events that record them then agree, and a replay pinned to the events' times
    rebuilds the same state. Nested blocks share the outer instant; each thread has its own."""
    if getattr(_unit, "depth", 0):
        _unit.depth += 1
        try:
            yield
        finally:
            _unit.depth -= 1
        return
    _unit.depth, _unit.at = 1, None
    try:
        yield
    finally:
        _unit.depth, _unit.at = 0, None


def now() -> datetime:
    if getattr(_unit, "depth", 0):
        if _unit.at is None:
            _unit.at = _active.now()
        return _unit.at
    return _active.now()


class _SpiffDatetime(datetime):
    @classmethod
    def now(cls, tz=None):
        current = now()
        return current.astimezone(tz) if tz else current.astimezone().replace(tzinfo=None)


SPIFF_TIMER = "SpiffWorkflow.bpmn.specs.event_definitions.timer"


def use_in_spiffworkflow() -> None:
    """Make SpiffWorkflow's timer code read this clock (idempotent; imports SpiffWorkflow's timer module)."""
    import importlib
    module = sys.modules.get(SPIFF_TIMER) or importlib.import_module(SPIFF_TIMER)
    if module.datetime is not _SpiffDatetime:
        module.datetime = _SpiffDatetime


if SPIFF_TIMER in sys.modules:  # SpiffWorkflow is loaded already: patch it now
    use_in_spiffworkflow()
