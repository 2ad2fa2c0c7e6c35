"""Notifications: who wants to hear about what, the outbox, and its delivery.

A user's preferences (``notification_prefs``) name the channels (an e-mail address, a webhook for an SMS or
WeCom gateway) and the events they want:

    task             a new task assigned to me
    queue            a new task in a queue I work (my role, my group)
    major_complaint  a complaint registered as major (supervisors)
    due_soon         a clock of a task I may work runs out within KEFU_NOTIFY_DUE_SOON_MINUTES (default 30)
    overdue          an overdue warning in my queue (T1: the supervisor is warned)

Messages are rows of the ``outbox`` table, written at commit by the unit of work whose audit events cause them
(a listener over the audit feed, ``chain.FEED``): nothing is sent inside a unit of work, so a mail server that
is down never blocks or fails one. The scheduler delivers them (``deliver``) with retries and a growing pause;
after ``MAX_ATTEMPTS`` a message is ``failed`` and listed for the supervisor (``/notifications/outbox``).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from types import SimpleNamespace
from datetime import datetime, timedelta

from sqlalchemy import and_, event as sa_event, insert, or_, select, update
from sqlalchemy.orm import Session

from engine import clock
from engine.clock import iso
from engine.errors import InvalidInput, NotAllowed, NotFound
from engine.services import channels, routing
from engine.services.context import Context
from engine.store import chain
from engine.store.tables import HumanTask, Instance, NotificationPref, OutboxMessage, User, name_set

EVENTS = ("task", "queue", "major_complaint", "due_soon", "overdue")
DEFAULT_EVENTS = ("task", "major_complaint", "due_soon", "overdue")
MAX_ATTEMPTS = 6
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)
LEASE = timedelta(minutes=5)  # a message being sent is taken again after this (its sender died)
SYSTEM = "system"
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SUBJECTS = {"task": "新任务 New task", "queue": "队列新任务 New task in your queue",
            "major_complaint": "重大投诉 Major complaint", "due_soon": "即将超时 Due soon",
            "overdue": "超时预警 Overdue warning"}


def due_soon_window() -> timedelta:
    try:
        return timedelta(minutes=max(1, int(os.environ.get("KEFU_NOTIFY_DUE_SOON_MINUTES") or 30)))
    except ValueError:
        return timedelta(minutes=30)


def backoff(attempts: int) -> timedelta:
    """The pause after the ``attempts``-th failed try: 30 s, 1 min, 2 min … at most an hour."""
    return min(LAST_RETRY, FIRST_RETRY * (2 ** max(0, attempts - 1)))


def link(ticket_no: str | None) -> str:
    base = (os.environ.get("KEFU_BASE_URL") or "").rstrip("/")
    return f"{base}/instances/{ticket_no}" if ticket_no else base or "/"


@dataclass
class Cause:
    event: str
    inst: Instance
    task: dict | None  # the task's routing (role, assignee, candidate_group, candidates), id, name, due
    actors: set


def parse_events(value) -> list[str]:
    events = routing.names(value) if not isinstance(value, (list, tuple)) else [str(v).strip() for v in value]
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise InvalidInput(f"unknown notification event(s) {', '.join(unknown)}; choose from {', '.join(EVENTS)}",
                           fields=["events"])
    return [e for e in EVENTS if e in events]


def pref_dict(p: NotificationPref | None, name: str) -> dict:
    if p is None:
        return {"user": name, "email": None, "webhook": None, "events": []}
    return {"user": name, "email": p.email, "webhook": p.webhook_url,
            "events": [e for e in EVENTS if e in name_set(p.events)], "updated_at": iso(p.updated_at)}


def message_dict(m: OutboxMessage) -> dict:
    return {"id": m.id, "created_at": iso(m.created_at), "user": m.user_name, "channel": m.channel,
            "target": m.target, "event": m.event, "ticket_no": m.ticket_no, "subject": m.subject,
            "state": m.state, "attempts": m.attempts, "next_attempt_at": iso(m.next_attempt_at),
            "last_error": m.last_error, "sent_at": iso(m.sent_at)}


# ---------------------------------------------------------------- what causes a message
def causes(feed) -> list[Cause]:
    """The notification causes among a unit of work's audit events: new tasks (overdue warnings among them)
    and a complaint registered as major."""
    out = []
    for inst, rows in feed:
        actors = {r["actor"] for r in rows if r["actor"] != SYSTEM}
        for r in rows:
            data = r["data"] if isinstance(r["data"], dict) else {}
            if r["type"] == "task_created":
                task = {"id": r["task_id"], "name": r["task_name"], "due_at": data.get("due_at"),
                        **{k: data.get(k) for k in ("role", "assignee", "candidate_group", "candidates")}}
                kind = "overdue" if "overdue_warning" in (r["bpmn_id"] or "") else "task"
                out.append(Cause(kind, inst, task, actors))
            elif r["type"] == "task_completed" and data.get("severity") == "major" and inst.kind == "complaint":
                out.append(Cause("major_complaint", inst, None, actors))
    return out


def recipients(cause: Cause, people: list[tuple]) -> list[tuple[str, str, NotificationPref]]:
    """(user, event, preferences) for everyone ``cause`` concerns who asked to hear about it."""
    out = []
    for user, pref in people:
        wanted = name_set(pref.events)
        if cause.event == "major_complaint":
            if "supervisor" in user.role_set and "major_complaint" in wanted:
                out.append((user.name, "major_complaint", pref))
            continue
        task = cause.task
        if not routing.may_work(user.name, user.role_set, user.group_set, task):
            continue
        if cause.event == "overdue" or cause.event == "due_soon":
            if cause.event in wanted:
                out.append((user.name, cause.event, pref))
        elif task.get("assignee"):
            if "task" in wanted and user.name not in cause.actors:
                out.append((user.name, "task", pref))
        elif "queue" in wanted and user.name not in cause.actors:
            out.append((user.name, "queue", pref))
    return out


def compose(event: str, inst: Instance, task: dict | None, user: str) -> tuple[str, str, dict]:
    ticket = inst.ticket_no
    subject = f"[Kefu] {SUBJECTS[event]}: {ticket}"
    lines = [SUBJECTS[event], f"工单 Ticket: {ticket}"]
    if task:
        subject += f" · {task.get('name') or ''}"
        lines.append(f"任务 Task: {task.get('name') or ''}")
        if task.get("due_at"):
            lines.append(f"时限 Due: {task['due_at']}")
    if inst.summary:
        lines.append(f"摘要 Summary: {inst.summary}")
    lines.append(link(ticket))
    payload = {"event": event, "user": user, "ticket_no": ticket, "kind": inst.kind, "severity": inst.severity,
               "task": task and {k: task.get(k) for k in ("id", "name", "due_at")}, "subject": subject[:300],
               "text": "\n".join(lines), "link": link(ticket)}
    return subject[:300], "\n".join(lines), payload


def outbox_rows(s, found: list[tuple[Cause, str, str, NotificationPref]], now: datetime) -> list[dict]:
    """One row per message and channel, less those already in the outbox (same cause, user and channel)."""
    rows = []
    for cause, user, event, pref in found:
        subject, body, payload = compose(event, cause.inst, cause.task, user)
        task_id = cause.task.get("id") if cause.task else ""
        for channel, target in (("email", pref.email), ("webhook", pref.webhook_url)):
            if not target:
                continue
            rows.append({"created_at": now, "user_name": user, "channel": channel, "target": target,
                         "event": event, "ticket_no": cause.inst.ticket_no, "subject": subject,
                         "body": body if channel == "email" else _json(payload),
                         "dedup_key": f"{event}:{cause.inst.ticket_no}:{task_id}:{user}:{channel}"[:200],
                         "state": "pending", "attempts": 0, "next_attempt_at": now, "last_error": None,
                         "sent_at": None})
    if not rows:
        return []
    keys = [r["dedup_key"] for r in rows]
    known = set(s.scalars(select(OutboxMessage.dedup_key).where(OutboxMessage.dedup_key.in_(keys))))
    seen: set = set()
    fresh = []
    for r in rows:
        if r["dedup_key"] not in known and r["dedup_key"] not in seen:
            seen.add(r["dedup_key"])
            fresh.append(r)
    return fresh


def _json(payload: dict) -> str:
    return json.dumps(payload, ensure_ascii=False)


def subscribers(s) -> list[tuple]:
    return list(s.execute(select(User, NotificationPref).join(NotificationPref,
                                                              NotificationPref.user_name == User.name)
                          .where(User.active.is_(True), NotificationPref.events != "")).all())


@sa_event.listens_for(Session, "before_commit")
def _enqueue(session: Session) -> None:
    """Write the messages a unit of work's audit events cause, in its own transaction."""
    feed = session.info.pop(chain.FEED, None)
    if not feed:
        return
    found_causes = causes(feed)
    if not found_causes:
        return
    people = subscribers(session)
    if not people:
        return
    found = [(c, user, ev, pref) for c in found_causes for user, ev, pref in recipients(c, people)]
    if not found:
        return
    now = max((r["at"] for _i, rows in feed for r in rows), default=None) or clock.now()
    rows = outbox_rows(session, found, now)
    if rows:
        session.connection().execute(insert(OutboxMessage.__table__), rows)


# ---------------------------------------------------------------- the service
class NotificationService:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    # ---- preferences
    def prefs(self, name: str) -> dict:
        with self.ctx.db.reading() as s:
            if s.scalar(select(User.id).where(User.name == name)) is None:
                raise NotFound(f"no user {name!r}")
            return pref_dict(s.get(NotificationPref, name), name)

    def all_prefs(self) -> dict[str, dict]:
        with self.ctx.db.reading() as s:
            return {p.user_name: pref_dict(p, p.user_name) for p in s.scalars(select(NotificationPref))}

    def set_prefs(self, name: str, actor: str, email=None, webhook=None, events=None) -> dict:
        """Change user ``name``'s channels and events; ``None`` keeps a value, ``""`` clears it. A user sets
        their own; a supervisor (or the CLI, actor ``system``) anyone's."""
        if email not in (None, ""):
            email = str(email).strip()
            if len(email) > 200 or not EMAIL.fullmatch(email):
                raise InvalidInput(f"not an e-mail address: {email!r}", fields=["email"])
        if webhook not in (None, ""):
            webhook = str(webhook).strip()
            if len(webhook) > 500 or not re.fullmatch(r"https?://[^\s]+", webhook):
                raise InvalidInput("the webhook must be an http:// or https:// address", fields=["webhook"])
        chosen = parse_events(events) if events is not None else None
        with self.ctx.db.unit_of_work() as s:
            user = s.scalar(select(User).where(User.name == name)) if name else None
            if user is None:
                raise NotFound(f"no user {name!r}")
            if actor not in (SYSTEM, name) and "supervisor" not in (self.ctx.user_roles(s, actor) or set()):
                raise NotAllowed(f"user {actor} may not change the notifications of {name}")
            pref = s.get(NotificationPref, name)
            if pref is None:
                pref = NotificationPref(user_name=name, events=",".join(DEFAULT_EVENTS))
                s.add(pref)
            if email is not None:
                pref.email = email or None
            if webhook is not None:
                pref.webhook_url = webhook or None
            if chosen is not None:
                pref.events = ",".join(chosen)
            pref.updated_at = self.ctx.now()
            s.flush()
            return pref_dict(pref, name)

    # ---- the outbox
    def outbox(self, states=("pending", "sending", "failed"), limit: int = 200) -> list[dict]:
        with self.ctx.db.reading() as s:
            q = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
            if states:
                q = q.where(OutboxMessage.state.in_(states))
            return [message_dict(m) for m in s.scalars(q)]

    def retry(self, message_id: int, actor: str) -> dict:
        """Send a failed message again (a supervisor, after fixing the address or the server)."""
        with self.ctx.db.unit_of_work() as s:
            if actor != SYSTEM and "supervisor" not in (self.ctx.user_roles(s, actor) or set()):
                raise NotAllowed(f"user {actor} may not retry notifications (needs role supervisor)")
            m = s.get(OutboxMessage, message_id) if isinstance(message_id, int) else None
            if m is None:
                raise NotFound(f"no message {message_id!r}")
            m.state, m.attempts, m.next_attempt_at = "pending", 0, self.ctx.now()
            s.flush()
            return message_dict(m)

    def enqueue_due_soon(self, now: datetime | None = None) -> int:
        """Messages for the ready tasks whose clock runs out within the window (once per task and user)."""
        now = now or self.ctx.now()
        with self.ctx.db.reading() as s:
            people = subscribers(s)
            if not any("due_soon" in name_set(p.events) for _u, p in people):
                return 0
            tasks = s.execute(select(HumanTask, Instance).join(Instance, Instance.id == HumanTask.instance_id)
                              .where(HumanTask.state == "ready", HumanTask.due_at > now,
                                     HumanTask.due_at <= now + due_soon_window())).all()
            found = []
            for t, inst in tasks:
                task = {"id": t.id, "name": t.name, "due_at": iso(t.due_at), "role": t.role,
                        "assignee": t.assignee, "candidate_group": t.candidate_group, "candidates": t.candidates}
                facts = SimpleNamespace(ticket_no=inst.ticket_no, kind=inst.kind, severity=inst.severity,
                                        summary=inst.summary)  # used after this reading session ends
                cause = Cause("due_soon", facts, task, set())
                found += [(cause, u, ev, p) for u, ev, p in recipients(cause, people)]
            rows = outbox_rows(s, found, now) if found else []
        if not rows:
            return 0
        with self.ctx.db.unit_of_work() as s:  # another scheduler may have written some meanwhile
            known = set(s.scalars(select(OutboxMessage.dedup_key).where(
                OutboxMessage.dedup_key.in_([r["dedup_key"] for r in rows]))))
            rows = [r for r in rows if r["dedup_key"] not in known]
            if rows:
                s.connection().execute(insert(OutboxMessage.__table__), rows)
            return len(rows)

    def deliver(self, limit: int = 50, now: datetime | None = None) -> dict:
        """Send the messages that are due: claim them (a short transaction), send each outside any
        transaction, then record each outcome. Any number of schedulers may run this at once."""
        now = now or self.ctx.now()
        due = or_(OutboxMessage.state == "pending", OutboxMessage.state == "sending")
        with self.ctx.db.reading() as s:
            if s.scalar(select(OutboxMessage.id).where(due, OutboxMessage.next_attempt_at <= now).limit(1)) is None:
                return {"sent": 0, "retrying": 0, "failed": 0}
        with self.ctx.db.unit_of_work() as s:
            q = select(OutboxMessage).where(due, OutboxMessage.next_attempt_at <= now) \
                .order_by(OutboxMessage.id).limit(limit)
            if self.ctx.db.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)
            claimed = []
            for m in s.scalars(q):
                m.state, m.attempts, m.next_attempt_at = "sending", m.attempts + 1, now + LEASE
                claimed.append((m.id, m.channel, m.target, m.subject, m.body, m.attempts))
        outcome = {"sent": 0, "retrying": 0, "failed": 0}
        settings = channels.smtp_settings()
        for mid, channel, target, subject, body, attempts in claimed:
            error = None
            try:
                if channel == "email":
                    channels.send_email(target, subject, body, settings)
                else:
                    channels.post_webhook(target, json.loads(body))
            except channels.SendFailed as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - one bad message never stops the others
                error = f"{type(exc).__name__}: {exc}"[:500]
            values = {"state": "sent", "sent_at": now, "last_error": None} if error is None else (
                {"state": "failed", "last_error": error} if attempts >= MAX_ATTEMPTS else
                {"state": "pending", "last_error": error, "next_attempt_at": now + backoff(attempts)})
            with self.ctx.db.unit_of_work() as s:
                s.execute(update(OutboxMessage).where(and_(OutboxMessage.id == mid,
                                                           OutboxMessage.state == "sending")).values(**values))
            outcome["sent" if error is None else "failed" if attempts >= MAX_ATTEMPTS else "retrying"] += 1
        return outcome

    def tick(self) -> dict:
        """The scheduler's job: announce clocks about to run out, then deliver what is due."""
        queued = self.enqueue_due_soon()
        return {"queued": queued, **self.deliver()}
