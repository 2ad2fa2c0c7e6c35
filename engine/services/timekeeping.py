"""Time: the service's clock (moved forward only in demo and test), the working-day calendar with the process
owner's overrides (T2), and the SLA table in force."""
from __future__ import annotations

import logging
from datetime import date, timedelta

from sqlalchemy import select

from engine import calendar as calendar_mod
from engine.clock import SHANGHAI, iso
from engine.errors import ClockError, InvalidInput, NotAllowed, NotFound
from engine.services.context import CALENDAR_REVISION, CLOCK_OFFSET, SYSTEM, Context
from engine.store.tables import CalendarDay, Setting

log = logging.getLogger("kefu.engine")
CALENDAR_ROLES = {"process_owner"}
CLOCK_ROLES = {"supervisor", "process_owner"}  # who may move the demo clock (the service itself may too)


class TimeService:
    """The clock, the calendar and the SLA table, as people and the scheduler see them."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def sync(self) -> None:
        """Read what another process changed (clock offset, calendar overrides) now."""
        self.ctx.sync()

    def clock_status(self) -> dict:
        """What the service takes for now, and whether the demo/test time controls are on."""
        self.ctx.sync()
        return {"now": iso(self.ctx.now()), "env": self.ctx.config.env, "pinned": self.ctx.clock.pinned,
                "offset_seconds": self.ctx.clock.offset.total_seconds(),
                "controls": self.ctx.config.time_controls_allowed}

    def advance_clock(self, delta: timedelta, actor: str = SYSTEM) -> dict:
        """Move the service's clock (every process sharing the database) forward; demo and test only."""
        if not self.ctx.config.time_controls_allowed:
            raise ClockError(f"the clock cannot be moved when KEFU_ENV={self.ctx.config.env!r}; "
                             "time controls exist only in 'demo' and 'test'")
        if delta < timedelta(0):
            raise InvalidInput("the clock only moves forward (timers already fired cannot be undone)")
        with self.ctx.db.unit_of_work() as s:
            if actor != SYSTEM and not self.ctx.user(s, actor).role_set & CLOCK_ROLES:
                raise NotAllowed(f"user {actor} may not move the clock (needs role supervisor or process_owner)")
            row = s.get(Setting, CLOCK_OFFSET, with_for_update=True)
            if row is None:
                row = Setting(key=CLOCK_OFFSET, value="0")
                s.add(row)
            row.value = repr(float(row.value) + delta.total_seconds())
            self.ctx.clock.offset = timedelta(seconds=float(row.value))
        log.info("%s advanced the clock by %s to %s", actor, delta, iso(self.ctx.now()))
        return self.clock_status()

    def sla_table(self) -> dict | None:
        """The SLA targets in force for new tickets (the latest deployed ``sla.dmn``), case by case."""
        with self.ctx.db.reading() as s:
            found = self.ctx.sla(s)
            if found is None:
                return None
            d, table = found
            return {"version": d.version, "sha256": d.sha256, "deployed_at": iso(d.deployed_at),
                    "deployed_by": d.deployed_by, "name": table.name,
                    "cases": [{"case": case, "label": (table.labels.get(case) or {}).get("zh"),
                               "label_en": (table.labels.get(case) or {}).get("en"), **targets}
                              for case, targets in table.targets.items()]}

    def calendar_days(self, year: int | None = None) -> list[dict]:
        """The process owner's overrides of the official calendar (of one year)."""
        with self.ctx.db.reading() as s:
            q = select(CalendarDay).order_by(CalendarDay.day)
            if year is not None:
                q = q.where(CalendarDay.day >= date(year, 1, 1), CalendarDay.day <= date(year, 12, 31))
            return [{"day": r.day.isoformat(), "working": r.working, "note": r.note, "updated_by": r.updated_by,
                     "updated_at": iso(r.updated_at)} for r in s.scalars(q)]

    def calendar_status(self, years=None) -> dict:
        """Which years the official working-day calendar covers, and the overrides' revision."""
        self.ctx.sync()
        this = self.ctx.now().astimezone(SHANGHAI).year
        years = list(years or range(this - 1, this + 2))
        return {"library": calendar_mod.LIBRARY, "library_years": list(calendar_mod.LIBRARY_YEARS),
                "revision": self.ctx.calendar.revision, "years": self.ctx.calendar.status(years)}

    def set_calendar_day(self, day, working: bool | None, actor: str, note: str | None = None) -> dict:
        """Override one day (``working`` True/False), or drop the override (``working`` None)."""
        if isinstance(day, str):
            try:
                day = date.fromisoformat(day.strip())
            except ValueError:
                raise InvalidInput(f"not a date (YYYY-MM-DD): {day!r}") from None
        if not 2000 <= day.year <= 2100:
            raise InvalidInput(f"a day between 2000 and 2100, not {day}")
        if note is not None and len(note) > 200:
            raise InvalidInput("the note is longer than 200 characters")
        with self.ctx.db.unit_of_work() as s:
            user = self.ctx.user(s, actor)
            if not user.role_set & CALENDAR_ROLES:
                raise NotAllowed(f"user {actor} may not change the working-day calendar (needs process_owner)")
            row = s.get(CalendarDay, day)
            if working is None:
                if row is None:
                    raise NotFound(f"no override for {day}")
                s.delete(row)
            elif row is None:
                s.add(CalendarDay(day=day, working=working, note=note, updated_by=actor, updated_at=self.ctx.now()))
            else:
                row.working, row.note, row.updated_by, row.updated_at = working, note, actor, self.ctx.now()
            rev = s.get(Setting, CALENDAR_REVISION, with_for_update=True)
            if rev is None:
                rev = Setting(key=CALENDAR_REVISION, value="0")
                s.add(rev)
            rev.value = str(int(rev.value) + 1)
        self.ctx.sync()
        return {"day": day.isoformat(), "working": self.ctx.calendar.is_working_day(day),
                "source": self.ctx.calendar.source(day), "note": note if working is not None else None}

    def add_working_days(self, start, days: int) -> dict:
        """Where ``days`` working days after ``start`` fall, and what decided it (for people checking)."""
        self.ctx.sync()
        try:
            when = self.ctx.calendar.add_working_days(start, int(days))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(str(exc)) from None
        return {"start": start if isinstance(start, str) else iso(start), "working_days": int(days),
                "due_at": iso(when), "calendar": self.ctx.calendar.describe(start, when)}
