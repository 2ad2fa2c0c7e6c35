"""Repeat complaints (X3, 002 第四章.3): a new complaint from the same customer (the same phone digits) on the same
nature within the repeat window (90 days unless a supervisor changed it) is a repeat. It is linked both ways to
the earlier complaints (``ticket_links``), recorded on both trails (``repeat_complaint_detected`` on the new one,
``repeat_complaint_linked`` on each earlier one, rule X3), flagged to the supervisor and counted in the
repeat-complaint rate of the KPI page.

A ticket opened with ``repeat_of`` in its start data (ticket numbers: the complaint-care follow-up of an unhappy
customer) is linked to those tickets whatever its nature and phone."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select

from engine.errors import InvalidInput, NotAllowed
from engine.services.context import Context
from engine.services.customers import phone_digits
from engine.store import chain as audit
from engine.store.tables import Customer, Instance, Setting, TicketLink

KIND = "repeat"
COMPLAINT = "complaint"
WINDOW_KEY = "repeat_window_days"
DEFAULT_WINDOW_DAYS = 90
MAX_WINDOW_DAYS = 3660
SET_ROLES = {"supervisor", "process_owner"}


def window_days(s) -> int:
    """The repeat window in days in force (a shared setting; 90 by default, 002 第四章.3)."""
    row = s.get(Setting, WINDOW_KEY)
    try:
        return int(row.value) if row is not None else DEFAULT_WINDOW_DAYS
    except ValueError:
        return DEFAULT_WINDOW_DAYS


def _linked(s, inst: Instance) -> set[int]:
    return set(s.scalars(select(TicketLink.earlier_id).where(TicketLink.instance_id == inst.id,
                                                             TicketLink.kind == KIND)))


def _link(runner, s, inst: Instance, earlier: list[Instance], actor: str, now: datetime, basis: str,
          events: list, data: dict) -> None:
    """Store the links and write both sides' audit events (the new ticket's go into ``events``)."""
    if not earlier:
        return
    for e in earlier:
        s.add(TicketLink(kind=KIND, instance_id=inst.id, earlier_id=e.id, created_at=now, created_by=actor,
                         basis=basis))
    s.flush()
    events.append(audit.PendingEvent("repeat_complaint_detected", actor, now, rules=["X3"], data={
        **data, "basis": basis, "repeat_of": [e.ticket_no for e in earlier]}))
    for e in earlier:
        runner.touch(s, e, [audit.PendingEvent("repeat_complaint_linked", actor, now, rules=["X3"], data={
            "basis": basis, "repeated_by": inst.ticket_no})])


def detect(runner, s, inst: Instance, clean: dict, actor: str, now: datetime, events: list) -> None:
    """After a complaint's form named the nature: link it to the same customer's complaints of that nature in
    the window (the ones not linked yet)."""
    if inst.kind != COMPLAINT or not inst.nature:
        return
    digits = (inst.customer.phone_digits if inst.customer is not None else None) \
        or phone_digits(clean.get("contact_phone"))
    if not digits and inst.customer_id is None:
        return
    days = window_days(s)
    same_customer = [Customer.phone_digits == digits] if digits else []
    if inst.customer_id is not None:
        same_customer.append(Instance.customer_id == inst.customer_id)
    q = (select(Instance).outerjoin(Customer, Customer.id == Instance.customer_id)
         .where(Instance.kind == COMPLAINT, Instance.id != inst.id, Instance.nature == inst.nature,
                Instance.created_at >= now - timedelta(days=days), Instance.created_at <= inst.created_at,
                or_(*same_customer))
         .order_by(Instance.created_at))
    known = _linked(s, inst)
    earlier = [e for e in s.scalars(q) if e.id not in known and e.id < inst.id]
    _link(runner, s, inst, earlier, actor, now, "detected", events,
          {"nature": inst.nature, "phone_digits": digits, "window_days": days})


def link_explicit(runner, s, inst: Instance, refs, actor: str, now: datetime, events: list) -> None:
    """``repeat_of`` given in the start data: a ticket number or a list of them."""
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) and r.strip() for r in refs):
        raise InvalidInput("repeat_of must be a ticket number or a list of ticket numbers")
    found = []
    for ref in dict.fromkeys(r.strip() for r in refs):
        e = s.scalar(select(Instance).where(Instance.ticket_no == ref))
        if e is None:
            raise InvalidInput(f"repeat_of names no ticket {ref!r}")
        if e.id != inst.id and e.id not in _linked(s, inst):
            found.append(e)
    _link(runner, s, inst, found, actor, now, "explicit", events, {"nature": inst.nature})


def links_of(s, inst: Instance) -> dict:
    """``repeat_of``: the earlier tickets this one repeats; ``repeated_by``: the later ones repeating it."""
    earlier = s.execute(select(Instance.ticket_no).join(TicketLink, TicketLink.earlier_id == Instance.id)
                        .where(TicketLink.instance_id == inst.id, TicketLink.kind == KIND)
                        .order_by(Instance.id)).scalars().all()
    later = s.execute(select(Instance.ticket_no).join(TicketLink, TicketLink.instance_id == Instance.id)
                      .where(TicketLink.earlier_id == inst.id, TicketLink.kind == KIND)
                      .order_by(Instance.id)).scalars().all()
    return {"repeat_of": list(earlier), "repeated_by": list(later)}


class RepeatService:
    """The repeat window and the open repeat complaints the supervisor is shown."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def window(self) -> dict:
        with self.ctx.db.reading() as s:
            return {"window_days": window_days(s), "default": DEFAULT_WINDOW_DAYS}

    def set_window(self, days, actor: str) -> dict:
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_WINDOW_DAYS:
            raise InvalidInput(f"the repeat window is a whole number of days from 1 to {MAX_WINDOW_DAYS}")
        with self.ctx.db.unit_of_work() as s:
            user = self.ctx.user(s, actor)
            if not user.role_set & SET_ROLES:
                raise NotAllowed("only a supervisor or the process owner may change the repeat window")
            row = s.get(Setting, WINDOW_KEY)
            previous = window_days(s)
            if row is None:
                s.add(Setting(key=WINDOW_KEY, value=str(days)))
            else:
                row.value = str(days)
            from engine.store.tables import SecurityEvent
            s.add(SecurityEvent(at=self.ctx.now(), type="repeat_window_changed", actor=actor, subject=WINDOW_KEY,
                                data={"from": previous, "to": days, "rules": ["X3"]}))
            return {"window_days": days, "previous": previous}

    def open_repeats(self, limit: int = 50) -> list[dict]:
        """Repeat complaints still open, newest first: the supervisor's flag (X3)."""
        with self.ctx.db.reading() as s:
            linked = select(TicketLink.instance_id).where(TicketLink.kind == KIND)
            q = (select(Instance).where(Instance.id.in_(linked), Instance.status != "completed")
                 .order_by(Instance.id.desc()).limit(limit))
            out = []
            for inst in s.scalars(q):
                out.append({"ticket_no": inst.ticket_no, "kind": inst.kind, "nature": inst.nature,
                            "severity": inst.severity,
                            "owner": inst.owner, "customer": inst.customer.name if inst.customer else None,
                            **links_of(s, inst)})
            return out
