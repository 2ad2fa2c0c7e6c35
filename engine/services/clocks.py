"""The clocks of a ticket (T1, T-stop): each deadline a boundary timer guards, from the moment it starts until its
work is done (met, or missed when done late) or its overdue timer fires (missed), paused while the customer is
waited for (R4).

A boundary timer whose expression is ``due_at(<name>_due)``, or whose id is ``timer_<name>_late``, is the clock
``<name>`` of the task it is attached to (``response``, ``finish``, ``arrival``, ``revisit``, ``promise``, ``formation``, ``feedback``, ``reply``,
``emergency``). The clocks live in the workflow's own data (``kefu_clocks``), so they are saved, versioned and
replayed with the instance; every start and stop is an audit event (``clock_started``, ``clock_stopped``) naming
who held the work when it stopped — the person a miss is charged to (K-who).
"""
from __future__ import annotations


import re
from datetime import datetime, timedelta

from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.util.task import TaskState

from engine.clock import SHANGHAI, aware, iso
from engine.errors import FormValidationError
from engine.services.projections import find_task
from engine.store import chain as audit

SYSTEM = "system"
KEY = "kefu_clocks"
CLOCK_EXPR = re.compile(r"^\s*due_at\(\s*([a-z][a-z0-9]*(?:_[a-z0-9]+)*?)_due\s*\)\s*$")
CLOCK_ID = re.compile(r"^timer_([a-z][a-z0-9]*(?:_[a-z0-9]+)*?)_late$")  # or a warning timer named timer_<name>_late
# A clock that stops when the work reports a time of its own rather than when the task is completed.
STOP_FIELDS = {"arrival": "arrived_at"}
LABELS = {
    "response": ("响应时限", "Response"), "finish": ("完成时限", "Finish"), "arrival": ("到场时限", "Arrival"),
    "revisit": ("回访时限", "Revisit"), "promise": ("承诺答复时限", "Promised reply"),
    "formation": ("组建专项小组时限", "Task force formed"), "feedback": ("投诉反馈时限", "Complaint feedback"),
    "reply": ("咨询回复时限", "Consultation reply"), "emergency": ("紧急响应时限", "Emergency response"),
}


def clock_name(spec) -> str | None:
    """The clock a boundary timer guards, or None for any other timer."""
    if not isinstance(spec, BoundaryEvent):
        return None
    m = CLOCK_EXPR.match(getattr(spec.event_definition, "expression", None) or "")
    if m:
        return m.group(1)
    m = CLOCK_ID.match(spec.bpmn_id or "")
    return m.group(1) if m else None


def label(name: str, lang: str = "zh") -> str:
    zh, en = LABELS.get(name, (name, name))
    return zh if lang == "zh" else en


def _holder(row, owner: str | None, done_by: str | None = None) -> str | None:
    """Who held the guarded task: whoever completed it, its assignee, or for the agent lane the ticket's owner."""
    if done_by is not None:
        return done_by
    if row is None:
        return None
    if row.assignee is None and row.role == "agent":
        return owner
    return row.assignee


def _stop(clock: dict, at: datetime, state: str, row, holder, now: datetime, common: dict,
          by: str = "work") -> audit.PendingEvent:
    """Stop ``clock``; ``by``: ``work`` (its task ended) or ``timer`` (its overdue timer took the task away)."""
    clock.update(stopped_at=iso(at), state=state, responsible=holder, ended_by=by)
    if row is not None:
        clock.update(role=row.role, group=row.candidate_group)
    return audit.PendingEvent("clock_stopped", SYSTEM, now, **common, data={
        k: clock.get(k) for k in ("clock", "task", "role", "group", "responsible", "started_at", "due_at",
                                  "stopped_at", "state", "ended_by")})


def _done_at(clock: dict, completed_data: dict | None, now: datetime) -> datetime:
    field = STOP_FIELDS.get(clock["clock"])
    reported = aware((completed_data or {}).get(field)) if field else None
    return reported if reported is not None and reported <= now else now


def track(wf, waiting, events: list, rows: dict, owner: str | None, now: datetime, ended: bool) -> list:
    """Bring the clocks up to date after the engine ran; returns the audit events for what started and stopped.

    ``waiting``: (timer task, due, attached task) of the waiting timers; ``events``: this unit of work's events so
    far (``timer_fired``, ``task_completed``); ``rows``: task id → its human-task row as it was before this save;
    ``ended``: the instance is completed, so nothing may keep running."""
    clocks = wf.data.setdefault(KEY, [])
    fired = {e.task_id for e in events if e.type == "timer_fired"}
    completed = {e.task_id: e for e in events if e.type == "task_completed"}
    live = {}
    for t, due, attached in waiting:
        name = clock_name(t.task_spec)
        if name is not None and attached is not None:
            live[str(t.id)] = (name, due, attached)
    out = []
    for clock in clocks:
        if clock["stopped_at"] is not None:
            continue
        timer, task = clock.get("timer"), clock.get("task_id")
        common = dict(task_id=task, bpmn_id=clock["task"], task_name=clock.get("task_name"))
        row = rows.get(task)
        if timer in live:
            _name, due, _attached = live.pop(timer)
            clock["due_at"] = iso(due)
        elif timer in fired and clock.get("interrupting", True):
            out.append(_stop(clock, now, "missed", row, _holder(row, owner), now, common, by="timer"))
        elif timer in fired and _alive(wf, task):
            clock["late"] = True  # a warning timer: the work goes on, already late
        elif timer in fired:  # warned and withdrawn at once (another timer took the task away)
            out.append(_stop(clock, now, "missed", row, _holder(row, owner), now, common, by="timer"))
        elif clock["state"] == "running" and _paused(wf, clock["clock"]):
            clock.update(state="paused", timer=None)  # R4: waiting for the customer stops nothing
        elif task in completed:
            done = completed[task]
            at = _done_at(clock, done.data, now)
            # a time the work reports (the arrival) decides by itself, even when reported after the warning
            late = at > aware(clock["due_at"]) or (clock.get("late") and at == now)
            out.append(_stop(clock, at, "missed" if late else "met", row, _holder(row, owner, done.actor), now,
                             common))
        elif clock["state"] == "paused" and not ended:
            continue
        else:  # its task ended another way (a multi-instance's members, a withdrawn task): judged by the time
            late = clock.get("late") or now > aware(clock["due_at"])
            out.append(_stop(clock, now, "missed" if late else "met", row, _holder(row, owner), now, common))
    for timer, (name, due, attached) in live.items():
        paused = next((c for c in clocks if c["clock"] == name and c["state"] == "paused"), None)
        spec = attached.task_spec
        if paused is not None:
            paused.update(state="running", timer=timer, task_id=str(attached.id), due_at=iso(due))
            continue
        clock = {"clock": name, "task": spec.bpmn_id, "task_name": spec.bpmn_name, "task_id": str(attached.id),
                 "timer": timer, "interrupting": bool(getattr(next(
                     (t.task_spec for t, _d, _a in waiting if str(t.id) == timer), None), "cancel_activity", True)),
                 "started_at": iso(now), "due_at": iso(due), "stopped_at": None, "state": "running",
                 "responsible": None, "role": None, "group": None}
        clocks.append(clock)
        out.append(audit.PendingEvent("clock_started", SYSTEM, now, task_id=clock["task_id"], bpmn_id=spec.bpmn_id,
                                      task_name=spec.bpmn_name, data={k: clock[k] for k in (
                                          "clock", "task", "started_at", "due_at")}))
    if ended:
        for clock in clocks:
            if clock["stopped_at"] is None:
                late = clock.get("late") or now > aware(clock["due_at"])
                common = dict(task_id=clock.get("task_id"), bpmn_id=clock["task"], task_name=clock.get("task_name"))
                row = rows.get(clock.get("task_id"))
                out.append(_stop(clock, now, "missed" if late else "met", row, _holder(row, owner), now, common))
    return out


def _alive(wf, task_id) -> bool:
    task = find_task(wf, task_id) if task_id else None
    return task is not None and task.state in (TaskState.READY, TaskState.WAITING, TaskState.STARTED)


def _paused(wf, name: str) -> bool:
    data = wf.last_task.data if wf.last_task is not None else wf.data
    return bool(data.get(f"{name}_paused_at"))


def of(wf) -> list[dict]:
    """The ticket's clocks for people: name, label, task, due and stop times, state."""
    out = []
    for c in wf.data.get(KEY, []):
        out.append({"name": c["clock"], "label": label(c["clock"]), "label_en": label(c["clock"], "en"),
                    "task": c["task"], "task_id": c.get("task_id"), "task_name": c.get("task_name"),
                    "started_at": c["started_at"],
                    "due_at": c["due_at"], "stopped_at": c["stopped_at"], "state": c["state"],
                    "responsible": c.get("responsible"), "ended_by": c.get("ended_by")})
    return out


def open_due(wf, name: str, pending: str | None, ended: bool | None = None) -> str | None:
    """The due time of the clock ``name`` while the ticket is open: its open entry's, ``pending`` (the deadline a
    script set, whose task is not ready yet), or a deadline that ran out and was not re-dispatched yet; None once the
    work was done in time or the ticket ended (T-stop). ``ended``: whether the workflow is completed, if known."""
    for c in reversed(wf.data.get(KEY, [])):
        if c["clock"] != name:
            continue
        if c["stopped_at"] is None:
            return c["due_at"]
        if ended if ended is not None else _ended(wf):
            return None
        if pending and aware(pending) != aware(c["due_at"]):
            return pending  # a new deadline is set, its task not ready yet
        return c["due_at"] if c["state"] == "missed" else None  # ran out: overdue until re-dispatched
    return None if (ended if ended is not None else _ended(wf)) else pending


def _ended(wf) -> bool:
    return wf.is_completed()


CAP_UNITS = {"finish_hours": ("h", timedelta(hours=1)), "respond_minutes": ("min", timedelta(minutes=1))}


def check_caps(wf, task, fields, clean: dict, now: datetime) -> None:
    """T-cap and T-promise: a deadline typed into a form may not be later than its SLA target counted from now
    (the cap names the case and says how to extend it); a field with ``cap_reason`` asks for a reason instead."""
    errors = {}
    data = task.data
    for f in fields:
        value = aware(_as_instant(clean.get(f.id))) if f.cap in CAP_UNITS else None
        if value is None:
            continue
        case = wf.script_engine.evaluate(task, f.cap_case) if f.cap_case else ("vip" if data.get("vip")
                                                                                 else "work_order")
        target = ((data.get("sla_targets") or {}).get(case) or {}).get(f.cap)
        if target is None:
            continue
        unit, step = CAP_UNITS[f.cap]
        limit = now + step * float(target)
        if value <= limit:
            continue
        when = limit.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        if f.cap_reason:
            if not str(clean.get(f.cap_reason) or "").strip():
                errors[f.cap_reason] = (f"required: the time is later than the {case} target "
                                        f"({_number(target)} {unit}, {when}); give the reason")
        else:
            errors[f.id] = (f"must be no later than {when} (the {case} target: {_number(target)} {unit} from now); "
                            "to extend it, escalate to the supervisor")
    if errors:
        raise FormValidationError(errors, task.task_spec.bpmn_name or task.task_spec.bpmn_id)


def _as_instant(value):
    if not isinstance(value, str) or not value.strip():
        return None
    from engine.bpmn.helpers import HELPERS
    try:
        return HELPERS["due_at"](value)
    except (TypeError, ValueError):
        return None


def _number(value) -> str:
    return str(int(value)) if float(value) == int(value) else str(value)
