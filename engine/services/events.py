"""Customer events (Q4, 000 §四.5 客户活动): a seminar, a safety training or a product trial, with attendees
picked from the customer registry and the feedback collected from each of them."""
from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from engine.clock import iso
from engine.errors import InvalidInput, NotAllowed, NotFound
from engine.limits import is_blank
from engine.services.context import SYSTEM, Context, row_id
from engine.store.tables import Customer, CustomerEvent, EventAttendee

EVENT_KINDS = ("seminar", "training", "trial", "other")  # 客户座谈会, 安全知识培训, 新品体验活动, 其他
EDIT_ROLES = frozenset({"agent", "supervisor"})
MAX_ATTENDEES = 500


class EventService:
    """Record customer events, their attendees and the feedback collected."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def _check(self, s, actor: str) -> None:
        if actor != SYSTEM and not self.ctx.user(s, actor).role_set & EDIT_ROLES:
            raise NotAllowed(f"user {actor} may not record customer events (needs role agent or supervisor)")

    def add(self, name: str, day, place: str | None = None, kind: str = "seminar", attendees=(),
            notes: str | None = None, actor: str = SYSTEM) -> dict:
        """Record an event (Q4) with the customers invited to it."""
        if not isinstance(name, str) or is_blank(name) or len(name.strip()) > 200:
            raise InvalidInput("an event needs a name of at most 200 characters", fields=["name"])
        if kind not in EVENT_KINDS:
            raise InvalidInput(f"event kind must be one of {', '.join(EVENT_KINDS)}", fields=["kind"])
        if place is not None and len(str(place)) > 300:
            raise InvalidInput("the place is longer than 300 characters", fields=["place"])
        if notes is not None and len(str(notes)) > 2000:
            raise InvalidInput("the notes are longer than 2000 characters", fields=["notes"])
        day = _day(day)
        ids = _ids(attendees)
        with self.ctx.db.unit_of_work() as s:
            self._check(s, actor)
            ev = CustomerEvent(name=name.strip(), kind=kind, day=day, place=(str(place).strip() or None) if place
                               else None, notes=notes or None, created_by=actor, created_at=self.ctx.now())
            s.add(ev)
            s.flush()
            self._invite(s, ev, ids)
            return self._dict(s, ev)

    def invite(self, event_id: int, attendees, actor: str = SYSTEM) -> dict:
        """Add customers to an event's attendees (already invited ones are left as they are)."""
        ids = _ids(attendees)
        with self.ctx.db.unit_of_work() as s:
            self._check(s, actor)
            ev = self._event(s, event_id)
            self._invite(s, ev, ids)
            return self._dict(s, ev)

    def feedback(self, event_id: int, customer_id: int, text: str, score=None, actor: str = SYSTEM) -> dict:
        """Record what an attendee said about the event (Q4)."""
        if not isinstance(text, str) or is_blank(text) or len(text) > 2000:
            raise InvalidInput("feedback must be text of at most 2000 characters", fields=["feedback"])
        if score not in (None, ""):
            try:
                score = int(score)
            except (TypeError, ValueError):
                raise InvalidInput("score must be a whole number from 0 to 100", fields=["score"]) from None
            if not 0 <= score <= 100:
                raise InvalidInput("score must be a whole number from 0 to 100", fields=["score"])
        else:
            score = None
        with self.ctx.db.unit_of_work() as s:
            self._check(s, actor)
            ev = self._event(s, event_id)
            row = s.scalar(select(EventAttendee).where(EventAttendee.event_id == ev.id,
                                                       EventAttendee.customer_id == customer_id)) \
                if row_id(customer_id) else None
            if row is None:
                raise NotFound(f"customer {customer_id} is not an attendee of event {ev.id}")
            row.feedback, row.score, row.feedback_by, row.feedback_at = text.strip(), score, actor, self.ctx.now()
            return self._dict(s, ev)

    def get(self, event_id: int) -> dict:
        with self.ctx.db.reading() as s:
            return self._dict(s, self._event(s, event_id))

    def list(self, limit: int = 100) -> list[dict]:
        with self.ctx.db.reading() as s:
            counts = dict(s.execute(select(EventAttendee.event_id, func.count()).group_by(EventAttendee.event_id)).all())
            fed = dict(s.execute(select(EventAttendee.event_id, func.count()).where(EventAttendee.feedback.is_not(None))
                                 .group_by(EventAttendee.event_id)).all())
            return [{**_brief(e), "attendees": counts.get(e.id, 0), "feedback": fed.get(e.id, 0)}
                    for e in s.scalars(select(CustomerEvent).order_by(CustomerEvent.day.desc(), CustomerEvent.id.desc())
                                       .limit(max(1, min(int(limit), 500))))]

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _event(s, event_id) -> CustomerEvent:
        ev = s.get(CustomerEvent, int(event_id)) if isinstance(event_id, int) or str(event_id).isdigit() and \
            row_id(int(event_id)) else None
        if ev is None:
            raise NotFound(f"no customer event {event_id}")
        return ev

    @staticmethod
    def _invite(s, ev: CustomerEvent, ids: list[int]) -> None:
        have = set(s.scalars(select(EventAttendee.customer_id).where(EventAttendee.event_id == ev.id)))
        if len(have | set(ids)) > MAX_ATTENDEES:
            raise InvalidInput(f"an event takes at most {MAX_ATTENDEES} attendees", fields=["attendees"])
        found = set(s.scalars(select(Customer.id).where(Customer.id.in_(ids)))) if ids else set()
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"no customer {', '.join(map(str, missing))}")
        for cid in ids:
            if cid not in have:
                s.add(EventAttendee(event_id=ev.id, customer_id=cid))
        s.flush()

    @staticmethod
    def _dict(s, ev: CustomerEvent) -> dict:
        rows = s.execute(select(EventAttendee, Customer).join(Customer, Customer.id == EventAttendee.customer_id)
                         .where(EventAttendee.event_id == ev.id).order_by(Customer.name)).all()
        scores = [a.score for a, _c in rows if a.score is not None]
        return {**_brief(ev), "notes": ev.notes, "created_by": ev.created_by, "created_at": iso(ev.created_at),
                "attendees": [{"customer_id": c.id, "name": c.name, "company": c.company, "vip": bool(c.vip),
                               "feedback": a.feedback, "score": a.score, "feedback_by": a.feedback_by,
                               "feedback_at": iso(a.feedback_at)} for a, c in rows],
                "feedback_count": sum(1 for a, _c in rows if a.feedback),
                "mean_score": round(sum(scores) / len(scores), 1) if scores else None}


def _brief(e: CustomerEvent) -> dict:
    return {"id": e.id, "name": e.name, "kind": e.kind, "date": e.day.isoformat(), "place": e.place}


def _day(value) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value or "").strip())
    except ValueError:
        raise InvalidInput("the event date must be a date (YYYY-MM-DD)", fields=["date"]) from None


def _ids(values) -> list[int]:
    if isinstance(values, str):
        values = [v for v in values.replace(",", " ").split() if v]
    out = []
    for v in values or ():
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise InvalidInput(f"attendees are customer ids, not {v!r}", fields=["attendees"]) from None
        if not row_id(n):
            raise NotFound(f"no customer {v}")
        if n not in out:
            out.append(n)
    return out
