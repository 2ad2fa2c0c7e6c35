"""Shift handover (交接班, X2, 002 第三章): the outgoing agent hands the incoming one what they hold.

``start`` lists the outgoing agent's open cases (``instances.owner``), their ready tasks (assigned to them, and the
unclaimed agent tasks of their cases), the clocks of those cases falling due before the next shift ends (the
promises to customers) and the open escalations of those cases; the outgoing agent may leave a case out and add a
note per case and one for the shift. Until the incoming agent ``accept``s (互签: both names and times are kept),
everything stays with the outgoing agent. On acceptance each listed case still owned by the outgoing agent
passes to the incoming one (``owner_changed``, reason "交接班 #id") and each listed task still ready and held as
it was listed is assigned to them (``task_reassigned``); a task someone took meanwhile stays with whoever took it
until it is done (002 第三章.4), and acceptance says which items it skipped and why.

A case left out that later misses a clock is charged to the outgoing agent (漏交); one listed but not taken over
when the next shift had begun, to the incoming agent (漏接): ``engine.kpi_who``.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select

from engine.clock import SHANGHAI, aware, iso
from engine.errors import Conflict, InvalidInput, NotAllowed, NotFound
from engine.limits import MAX_ROW_ID
from engine.services import clocks
from engine.services.context import WITH_STATE, Context
from engine.services import ownership
from engine.services.instances import change_owner
from engine.services.runner import Runner
from engine.services.shapes import ESCALATION
from engine.services.shifts import next_window, read as read_shifts
from engine.store import chain as audit
from engine.store.tables import AuditEvent, Handover, HandoverItem, HumanTask, Instance, SecurityEvent, User

READ_ROLES = {"supervisor", "auditor", "process_owner"}
MAX_NOTE = 2000
KINDS = ("case", "task", "promise", "escalation")


def handover_id(ref) -> int:
    """A handover number (``12`` or ``#12``); NotFound for anything else."""
    text = str(ref).strip().lstrip("#") if ref is not None else ""
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_ROW_ID:
        raise NotFound(f"no handover {ref!r}")
    return int(text)


def _note(text, what: str) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidInput(f"the {what} must be text")
    text = text.strip()
    if len(text) > MAX_NOTE:
        raise InvalidInput(f"the {what} is longer than {MAX_NOTE} characters")
    return text or None


def item_dict(i: HandoverItem) -> dict:
    return {"id": i.id, "kind": i.kind, "ticket_no": i.ticket_no, "instance_id": i.instance_id,
            "task_id": i.task_id, "label": i.label, "holder": i.holder, "due_at": iso(i.due_at),
            "included": i.included, "note": i.note, "outcome": i.outcome, "outcome_note": i.outcome_note}


def handover_dict(h: Handover, items: list[HandoverItem] | None = None) -> dict:
    out = {"id": h.id, "shift": h.shift, "window_start": iso(h.window_start), "window_end": iso(h.window_end),
           "outgoing": h.outgoing, "incoming": h.incoming, "state": h.state, "note": h.note,
           "started_at": iso(h.started_at), "accepted_at": iso(h.accepted_at),
           "signatures": {"outgoing": {"name": h.outgoing, "at": iso(h.started_at)},
                          "incoming": {"name": h.incoming, "at": iso(h.accepted_at)} if h.accepted_at else None}}
    if items is not None:
        out["items"] = [item_dict(i) for i in items]
        out["cases"] = sum(1 for i in items if i.kind == "case" and i.included)
        out["left_out"] = sorted(i.ticket_no for i in items if i.kind == "case" and not i.included)
        out["skipped"] = [item_dict(i) for i in items if i.outcome == "skipped"]
    return out


class HandoverService:
    """Start, accept and read shift handovers."""

    def __init__(self, ctx: Context, runner: Runner):
        self.ctx = ctx
        self.runner = runner

    # ------------------------------------------------------------------ what a handover lists
    def _agent(self, s, name: str) -> User:
        user = self.ctx.user(s, name)
        if "agent" not in user.role_set:
            raise NotAllowed(f"user {name} is not an agent; only an agent hands a shift over")
        return user

    def _collect(self, s, outgoing: str, window_end: datetime) -> list[dict]:
        """The lines a handover by ``outgoing`` lists now (as dicts, not stored)."""
        cases = list(s.scalars(select(Instance).where(Instance.owner == outgoing, Instance.status != "completed")
                               .options(*WITH_STATE).order_by(Instance.id)))
        ids = [c.id for c in cases]
        lines = []
        for inst in cases:
            lines.append({"kind": "case", "instance_id": inst.id, "ticket_no": inst.ticket_no,
                          "label": inst.summary or inst.kind, "due_at": inst.finish_due or inst.response_due})
        q = select(HumanTask).where(HumanTask.state == "ready", or_(
            HumanTask.assignee == outgoing,
            HumanTask.instance_id.in_(ids or [0]) & HumanTask.assignee.is_(None) & (HumanTask.role == "agent")
            & HumanTask.candidates.is_(None))).order_by(HumanTask.instance_id, HumanTask.created_at)
        numbers = {c.id: c.ticket_no for c in cases}
        tasks = list(s.scalars(q))
        missing = {t.instance_id for t in tasks} - set(numbers)
        if missing:
            numbers.update({i.id: i.ticket_no for i in s.scalars(select(Instance).where(Instance.id.in_(missing)))})
        for t in tasks:
            lines.append({"kind": "task", "instance_id": t.instance_id, "ticket_no": numbers[t.instance_id],
                          "task_id": t.id, "label": t.name, "holder": t.assignee, "due_at": t.due_at})
        for inst in cases:
            wf = self.runner.load(s, inst)
            for c in clocks.of(wf):
                due = aware(c["due_at"]) if c["due_at"] else None
                if c["stopped_at"] is None and due is not None and due <= window_end:
                    lines.append({"kind": "promise", "instance_id": inst.id, "ticket_no": inst.ticket_no,
                                  "label": f"{c['label']} · {c['task_name'] or c['task']}", "due_at": due})
        if ids:
            for e in s.scalars(select(Instance).where(Instance.kind == ESCALATION, Instance.status != "completed",
                                                      Instance.parent_id.in_(ids)).order_by(Instance.id)):
                lines.append({"kind": "escalation", "instance_id": e.id, "ticket_no": e.ticket_no,
                              "label": e.summary, "case": numbers.get(e.parent_id)})
        return lines

    def preview(self, outgoing: str) -> dict:
        """What a handover started now by ``outgoing`` would list, and the shift it hands over to."""
        with self.ctx.db.reading() as s:
            self._agent(s, outgoing)
            shift, start, end = next_window(read_shifts(s), self.ctx.now())
            lines = self._collect(s, outgoing, end)
            return {"outgoing": outgoing, "shift": shift["name"], "window_start": iso(start),
                    "window_end": iso(end),
                    "items": [{**line, "due_at": iso(line.get("due_at")), "included": True} for line in lines]}

    # ------------------------------------------------------------------ start and accept
    def start(self, outgoing: str, incoming: str, note: str | None = None, case_notes: dict | None = None,
              leave=()) -> dict:
        """The outgoing agent starts a handover to ``incoming``; ``case_notes``: ticket → note, ``leave``: the
        tickets left out of it."""
        note = _note(note, "shift note")
        case_notes = {str(k).strip(): _note(v, f"note of {k}") for k, v in (case_notes or {}).items()}
        leave = {str(t).strip() for t in (leave or ()) if str(t).strip()}
        with self.ctx.db.unit_of_work() as s:
            self._agent(s, outgoing)
            target = s.scalar(select(User).where(User.name == incoming)) if isinstance(incoming, str) else None
            if target is None or not target.active:
                raise InvalidInput(f"no active user {incoming!r} to hand over to")
            if "agent" not in target.role_set:
                raise InvalidInput(f"user {incoming} is not an agent; a shift is handed over to an agent")
            if target.name == outgoing:
                raise InvalidInput("a shift is handed over to another agent, not to oneself")
            pending = s.scalar(select(Handover).where(Handover.outgoing == outgoing, Handover.state == "open"))
            if pending is not None:
                raise Conflict(f"{outgoing} already has an open handover #{pending.id} to {pending.incoming}; "
                               "it must be accepted first")
            now = self.ctx.now()
            shift, start, end = next_window(read_shifts(s), now)
            lines = self._collect(s, outgoing, end)
            cases = {line["ticket_no"] for line in lines if line["kind"] == "case"}
            unknown = (leave | set(case_notes)) - cases
            if unknown:
                raise InvalidInput(f"not among {outgoing}'s open cases: {', '.join(sorted(unknown))}")
            h = Handover(shift=shift["name"], window_start=start, window_end=end, outgoing=outgoing,
                         incoming=target.name, state="open", note=note, started_at=now)
            s.add(h)
            s.flush()
            items = []
            for line in lines:
                ticket = line["ticket_no"] if line["kind"] != "escalation" else line.get("case")
                items.append(HandoverItem(
                    handover_id=h.id, kind=line["kind"], instance_id=line["instance_id"],
                    ticket_no=line["ticket_no"], task_id=line.get("task_id"), label=(line.get("label") or "")[:200],
                    holder=line.get("holder"), due_at=line.get("due_at"), included=ticket not in leave,
                    note=case_notes.get(line["ticket_no"]) if line["kind"] == "case" else None))
            s.add_all(items)
            s.flush()
            for item in items:
                if item.kind != "case":
                    continue
                inst = s.get(Instance, item.instance_id)
                self.runner.touch(s, inst, [audit.PendingEvent(
                    "handover_listed", outgoing, now, rules=["X2"],
                    data={"handover": h.id, "from": outgoing, "to": target.name, "shift": h.shift,
                          "included": item.included, "note": item.note})])
            s.add(SecurityEvent(at=now, type="handover_started", actor=outgoing, subject=f"handover #{h.id}",
                                data={"from": outgoing, "to": target.name, "shift": h.shift,
                                      "cases": sorted(cases - leave), "left_out": sorted(leave)}))
            return handover_dict(h, items)

    def accept(self, ref, actor: str) -> dict:
        """The incoming agent signs the handover: the listed cases and tasks pass to them (those still as
        listed); the answer names what was skipped and why."""
        hid = handover_id(ref)
        with self.ctx.db.unit_of_work() as s:
            user = self.ctx.user(s, actor)
            h = s.get(Handover, hid, with_for_update=True)
            if h is None:
                raise NotFound(f"no handover #{hid}")
            if actor != h.incoming:
                raise NotAllowed(f"handover #{hid} is to {h.incoming}; only {h.incoming} may accept it")
            if h.state != "open":
                raise InvalidInput(f"handover #{hid} was already accepted by {h.incoming} at "
                                   f"{h.accepted_at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}")
            if "agent" not in user.role_set:
                raise NotAllowed(f"user {actor} is not an agent")
            now = self.ctx.now()
            items = list(s.scalars(select(HandoverItem).where(HandoverItem.handover_id == hid)
                                   .order_by(HandoverItem.id)))
            reason = f"交接班 #{hid}"
            case_outcome = {}
            for item in items:
                if item.kind == "case":
                    item.outcome, item.outcome_note = self._take_case(s, h, item, user, reason, now)
                    case_outcome[item.instance_id] = item.outcome
            for item in items:
                if item.kind == "task":
                    item.outcome, item.outcome_note = self._take_task(s, h, item, user, now)
                elif item.kind in ("promise", "escalation"):
                    item.outcome = "left_out" if not item.included else case_outcome.get(item.instance_id, "noted")
            h.state, h.accepted_at = "accepted", now
            s.add(SecurityEvent(at=now, type="handover_accepted", actor=actor, subject=f"handover #{hid}",
                                data={"from": h.outgoing, "to": h.incoming,
                                      "taken": sorted(i.ticket_no for i in items
                                                      if i.kind == "case" and i.outcome == "taken"),
                                      "skipped": [i.ticket_no for i in items if i.outcome == "skipped"]}))
            return handover_dict(h, items)

    def _take_case(self, s, h: Handover, item: HandoverItem, user: User, reason: str, now) -> tuple:
        if not item.included:
            return "left_out", "left out by the outgoing agent (漏交)"
        inst = s.get(Instance, item.instance_id)
        if inst.status == "completed":
            return "skipped", "closed during the handover"
        if inst.owner != h.outgoing:
            return "skipped", f"owned by {inst.owner or 'nobody'} meanwhile"
        change_owner(self.runner, s, inst, user, user.name, user.name, reason, now, rules=("X1", "X2"),
                     extra={"handover": h.id}, move_tasks=False)  # the listed tasks move below (X2)
        return "taken", None

    def _take_task(self, s, h: Handover, item: HandoverItem, user: User, now) -> tuple:
        if not item.included:
            return "left_out", "its case was left out (漏交)"
        row = s.get(HumanTask, item.task_id, with_for_update=True)
        if row is None or row.state != "ready":
            who = f" by {row.completed_by}" if row is not None and row.completed_by else ""
            return "skipped", f"done during the handover{who}"
        claimed = s.scalar(select(AuditEvent.id).where(  # an owner's offered task claimed meanwhile (X1)
            AuditEvent.instance_id == row.instance_id, AuditEvent.task_id == row.id,
            AuditEvent.type == "task_claimed", AuditEvent.at >= h.started_at).limit(1))
        if row.assignee != item.holder or claimed is not None:
            return "skipped", f"taken by {row.assignee} during the handover; stays with them until done"
        if row.candidates is None and row.role not in user.role_set:
            return "skipped", f"needs role {row.role}"
        previous, row.assignee = row.assignee, user.name
        # Accepting the handover takes the task: no owner's claim deadline runs on it any more (X1).
        row.offer_due = None
        ownership.drop_claim_timer(s, row.id)
        inst = s.get(Instance, row.instance_id)
        self.runner.touch(s, inst, [audit.PendingEvent(
            "task_reassigned", user.name, now, task_id=row.id, bpmn_id=row.bpmn_id, task_name=row.name,
            rules=["X2"], data={"previous_assignee": previous, "assignee": user.name, "handover": h.id,
                                "reason": f"交接班 #{h.id}"})])
        return "taken", None

    # ------------------------------------------------------------------ reading
    def show(self, ref, actor: str | None = None) -> dict:
        hid = handover_id(ref)
        with self.ctx.db.reading() as s:
            h = s.get(Handover, hid)
            if h is None:
                raise NotFound(f"no handover #{hid}")
            if actor is not None:
                user = self.ctx.user(s, actor)
                if actor not in (h.outgoing, h.incoming) and not user.role_set & READ_ROLES:
                    raise NotAllowed(f"user {actor} may not read handover #{hid}")
            items = list(s.scalars(select(HandoverItem).where(HandoverItem.handover_id == hid)
                                   .order_by(HandoverItem.id)))
            return handover_dict(h, items)

    def day(self, day=None, actor: str | None = None) -> list[dict]:
        """The handovers started on ``day`` (a Shanghai date, today by default) and every one still open; a
        supervisor (or auditor) sees all of them, an agent their own."""
        day = day or self.ctx.now().astimezone(SHANGHAI).date()
        start = datetime.combine(day, datetime.min.time(), SHANGHAI)
        with self.ctx.db.reading() as s:
            q = select(Handover).where(or_(Handover.state == "open", (Handover.started_at >= start)
                                           & (Handover.started_at < start + timedelta(days=1))))
            if actor is not None:
                user = self.ctx.user(s, actor)
                if not user.role_set & READ_ROLES:
                    q = q.where(or_(Handover.outgoing == actor, Handover.incoming == actor))
            rows = list(s.scalars(q.order_by(Handover.started_at.desc())))
            out = []
            for h in rows:
                items = list(s.scalars(select(HandoverItem).where(HandoverItem.handover_id == h.id)))
                out.append(handover_dict(h, items))
            return out
