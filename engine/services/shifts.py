"""The shifts of the call centre (X2, 002 第三章): names and times (Asia/Shanghai), a shared setting a supervisor
edits (``kefu shifts``); by default a day shift 白班 08:00–20:00 and a night shift 夜班 20:00–08:00 (002: the
night shift runs from 20:00 to 08:00 the next morning). A shift whose end is not after its start ends the next
day. ``next_window(now)`` is the shift a handover made at ``now`` hands over to."""
from __future__ import annotations

import json
import re
from datetime import datetime, time, timedelta

from engine.clock import SHANGHAI
from engine.errors import InvalidInput, NotAllowed, NotFound
from engine.services.context import Context
from engine.store.tables import SecurityEvent, Setting

KEY = "shifts"
DEFAULT_SHIFTS = [{"name": "白班", "start": "08:00", "end": "20:00"},
                  {"name": "夜班", "start": "20:00", "end": "08:00"}]
EDIT_ROLES = {"supervisor"}
HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# A handover up to this long after a shift began still hands over to that shift (the outgoing agent stays
# until the incoming one has taken over, 002 第三章.5).
LATE_GRACE = timedelta(hours=1)


def read(s) -> list[dict]:
    row = s.get(Setting, KEY)
    if row is None:
        return [dict(x) for x in DEFAULT_SHIFTS]
    try:
        value = json.loads(row.value)
        return value if isinstance(value, list) and value else [dict(x) for x in DEFAULT_SHIFTS]
    except ValueError:
        return [dict(x) for x in DEFAULT_SHIFTS]


def _clock_time(text: str) -> time:
    h, m = text.split(":")
    return time(int(h), int(m))


def window(shift: dict, day) -> tuple[datetime, datetime]:
    """The shift's start and end on ``day`` (a Shanghai date): the end the next day when not after the start."""
    start = datetime.combine(day, _clock_time(shift["start"]), SHANGHAI)
    end = datetime.combine(day, _clock_time(shift["end"]), SHANGHAI)
    if end <= start:
        end += timedelta(days=1)
    return start, end


def next_window(shifts: list[dict], now: datetime) -> tuple[dict, datetime, datetime]:
    """The shift that begins next after ``now`` (or began less than an hour ago): (shift, start, end)."""
    today = now.astimezone(SHANGHAI).date()
    best = None
    for offset in (-1, 0, 1, 2):
        for shift in shifts:
            start, end = window(shift, today + timedelta(days=offset))
            if start >= now - LATE_GRACE and (best is None or start < best[1]):
                best = (shift, start, end)
    return best


def _check(name, start, end) -> tuple[str, str, str]:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > 32:
        raise InvalidInput("a shift needs a name of 1 to 32 characters")
    for label, value in (("start", start), ("end", end)):
        if not isinstance(value, str) or not HHMM.match(value.strip()):
            raise InvalidInput(f"the shift's {label} must be a time HH:MM (00:00–23:59), not {value!r}")
    if start.strip() == end.strip():
        raise InvalidInput("a shift's start and end must differ")
    return name, start.strip(), end.strip()


class ShiftService:
    """Read and edit the shifts."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def all(self) -> list[dict]:
        with self.ctx.db.reading() as s:
            return read(s)

    def next(self, at: datetime | None = None) -> dict:
        """The shift a handover made now hands over to, with its window."""
        with self.ctx.db.reading() as s:
            shift, start, end = next_window(read(s), at or self.ctx.now())
        return {"name": shift["name"], "start": start.isoformat(), "end": end.isoformat()}

    def set(self, name: str, start: str, end: str, actor: str) -> list[dict]:
        """Add a shift or change its times (a supervisor); a security-log event ``shift_changed``."""
        name, start, end = _check(name, start, end)
        return self._write(actor, lambda shifts: [x for x in shifts if x["name"] != name]
                           + [{"name": name, "start": start, "end": end}], name)

    def remove(self, name: str, actor: str) -> list[dict]:
        def drop(shifts):
            kept = [x for x in shifts if x["name"] != name]
            if len(kept) == len(shifts):
                raise NotFound(f"no shift {name!r}")
            if not kept:
                raise InvalidInput("the last shift cannot be removed")
            return kept
        return self._write(actor, drop, name)

    def _write(self, actor: str, change, name: str) -> list[dict]:
        with self.ctx.db.unit_of_work() as s:
            user = self.ctx.user(s, actor)
            if not user.role_set & EDIT_ROLES:
                raise NotAllowed(f"only a supervisor may change the shifts; user {actor} may not")
            before = read(s)
            after = sorted(change(before), key=lambda x: x["start"])
            row = s.get(Setting, KEY)
            text = json.dumps(after, ensure_ascii=False)
            if row is None:
                s.add(Setting(key=KEY, value=text))
            else:
                row.value = text
            s.add(SecurityEvent(at=self.ctx.now(), type="shift_changed", actor=actor, subject=name,
                                data={"from": before, "to": after, "rules": ["X2"]}))
            return after
