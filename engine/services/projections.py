"""Projections: the workflow's ready user tasks, waiting timers and work-order clocks mirrored into the
human-task and timer rows and the instance's due columns, with an audit event for each change."""
from __future__ import annotations

from datetime import datetime
from uuid import UUID

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.exceptions import TaskNotFoundException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, select

from engine.bpmn.diagram import lane_role, rule_ids
from engine.bpmn.tasktypes import ExternalTask
from engine.clock import aware, iso
from engine.services import ownership, routing
from engine.services.context import PRELOADED  # noqa: F401 - re-exported
from engine.store import chain as audit, writes
from engine.store.tables import ExternalTask as ExternalTaskRow, HumanTask, Instance, MessageWait, Timer, User, name_set

SYSTEM = "system"
PRELOADED = "kefu_preloaded"  # (engine.services.tasks keeps a copy of the name)  # session.info key: rows a firing batch loaded for all its instances at once
# Data keys the diagrams use for the two clocks of a work order (T1) and their pause (R4).
CLOCKS = ("response", "finish")


def find_task(wf, task_id: str):
    """The workflow's task with this id, or None."""
    try:
        return wf.get_task_from_id(UUID(task_id))
    except TaskNotFoundException:
        return None

# The rows a save reads when they were not loaded with the instance (built once).
_READY_ROWS = select(HumanTask).where(HumanTask.instance_id == bindparam("instance_id"), HumanTask.state == "ready")
_TIMER_ROWS = select(Timer).where(Timer.instance_id == bindparam("instance_id"))
_USER_ROLES = select(User.roles).where(User.name == bindparam("name"))


def sync_tasks(s, inst: Instance, wf, now: datetime, claimer: str | None, done_events, ready_tasks=None):
    """Mirror the workflow's ready user tasks (``ready_tasks``, if the caller has them) into the task rows."""
    completed_by = {e.task_id: e.actor for e in done_events if e.type == "task_completed"}
    timer_fired = any(e.type == "timer_fired" for e in done_events)
    events = []
    preloaded = s.info.get(PRELOADED, {}).pop(("ready", inst.id), None)
    existing = {r.id: r for r in (preloaded if preloaded is not None else
                                  s.scalars(_READY_ROWS, {"instance_id": inst.id}))}
    if ready_tasks is None:
        ready_tasks = wf.get_tasks(state=TaskState.READY, manual=True)
    ready = {str(t.id): t for t in ready_tasks}
    before = dict(existing)  # the rows as they were: who held each task when a clock stopped (K-who)
    due = boundary_due(wf)
    for tid, row in existing.items():
        if tid in ready:
            if due.get(tid, row.due_at) != row.due_at:
                writes.change(s, row, due_at=due[tid])
            continue
        task = find_task(wf, tid)
        state = task.state if task is not None else TaskState.CANCELLED
        if state == TaskState.COMPLETED:
            writes.change(s, row, state="completed", ended_at=now, completed_by=completed_by.get(tid))
        else:
            # A task gone from the tree (a multi-instance member) went with its parent's timer.
            by_timer = cancelled_by_timer(task) if task is not None else timer_fired
            writes.change(s, row, state="cancelled", ended_at=now,
                          end_reason="timer" if by_timer else "cancelled")
    starter = None

    def starter_roles():
        nonlocal starter
        if starter is None:
            starter = name_set(s.scalar(_USER_ROLES, {"name": inst.created_by}))
        return starter
    for tid, task in ready.items():
        if tid in existing:
            continue
        spec = task.task_spec
        ext = spec.extensions
        role = lane_role(spec.lane)
        if role is not None:
            assignee = expr(wf, task, ext.get("kefu_assignee"))
            group = expr(wf, task, ext.get("kefu_candidateGroups"))
            who = {"role": role, "assignee": assignee if isinstance(assignee, str) else claimer if claimer else None,
                   "candidate_group": group if isinstance(group, str) else None, "candidates": None}
        else:  # a process without role lanes: Camunda's candidates and assignee (engine.services.routing)
            who = routing.route(value(wf, task, ext.get("kefu_assignee")),
                                value(wf, task, ext.get("kefu_candidateUsers")),
                                value(wf, task, ext.get("kefu_candidateGroups")), starter_roles)
            who["candidate_group"] = None
            if who["assignee"] is None and claimer and routing.may_work(
                    claimer, starter_roles(), set(), {**who, "assignee": None}):
                who["assignee"] = claimer
        row = HumanTask(id=tid, instance_id=inst.id, bpmn_id=spec.bpmn_id, spec_name=spec.name,
                        name=spec.bpmn_name or spec.bpmn_id, state="ready", **who,
                        created_at=now, due_at=due.get(tid), ended_at=None, completed_by=None,
                        end_reason=None, offer_due=None)
        offer = ownership.offer_to_owner(s, inst, row, task.data, now,
                                         lambda: ownership.user_is_active(s, inst.owner))  # X1
        writes.add(s, row)
        rules = rule_ids(spec.documentation)
        events.append(audit.PendingEvent("task_created", SYSTEM, now, task_id=tid, bpmn_id=spec.bpmn_id,
                                         task_name=row.name,
                                         rules=rules + ["X1"] if offer and "X1" not in rules else rules,
                                         data={"role": row.role, "assignee": row.assignee,
                                               "candidate_group": row.candidate_group,
                                               **({"candidates": row.candidates} if row.candidates is not None
                                                  else {}),
                                               "due_at": iso(row.due_at),
                                               **({"owner_offer": offer} if offer else {})}))
        if offer and not offer["offered"]:
            events.append(audit.PendingEvent("task_returned_to_queue", SYSTEM, now, task_id=tid,
                                             bpmn_id=spec.bpmn_id, task_name=row.name, rules=["X1"],
                                             data={"previous_assignee": None, "role": row.role,
                                                   "owner": offer["owner"], "reason": offer["reason"]}))
        existing[tid] = row
    return events, sorted((r for r in existing.values() if r.state == "ready"), key=lambda r: r.created_at), before


def cancelled_by_timer(task) -> bool:
    if task is None or task.parent is None:
        return False
    return any(isinstance(c.task_spec, BoundaryEvent) and c.state == TaskState.COMPLETED
               and isinstance(c.task_spec.event_definition, TimerEventDefinition)
               for c in task.parent.children)


def expr(wf, task, text):
    """The value of an assignee or group expression, or None when it is missing, fails or is not text."""
    result = value(wf, task, text)
    return result if isinstance(result, str) and result else None


def value(wf, task, text):
    """The value of a routing expression (any type), or None when it is missing or fails."""
    if not text:
        return None
    try:
        return wf.script_engine.evaluate(task, text)
    except Exception:  # noqa: BLE001 - a bad assignee leaves the task in its role's queue
        return None


def waiting_timers(wf):
    for t in list(wf.event_manager.tasks.values()):
        spec = t.task_spec
        if not isinstance(spec.event_definition, TimerEventDefinition) or t.state != TaskState.WAITING:
            continue
        value = t.internal_data.get("event_value")
        if isinstance(value, dict):
            value = value.get("next")
        due = aware(value) if isinstance(value, str) else None
        if due is None:
            continue
        attached = None
        if isinstance(spec, BoundaryEvent) and t.parent is not None:
            attached = next((c for c in t.parent.children if not isinstance(c.task_spec, BoundaryEvent)),
                            None)
        yield t, due, attached


def boundary_due(wf) -> dict:
    """Task id → the moment it escalates: the earliest of its interrupting boundary timers (the work is taken
    away and re-dispatched), or, without one, of its warning timers (a late revisit, a late reply)."""
    due, interrupting = {}, {}
    for timer, when, attached in waiting_timers(wf):
        if attached is None:
            continue
        cuts = bool(getattr(timer.task_spec, "cancel_activity", True))
        targets = [attached] + [c for c in attached.children if c.state == TaskState.READY]
        for target in targets:
            key = str(target.id)
            if key in due and interrupting[key] and not cuts:
                continue
            if key not in due or (cuts and not interrupting[key]) or when < due[key]:
                due[key], interrupting[key] = when, cuts
    return due


def sync_timers(ctx, s, inst: Instance, wf, now: datetime) -> list[audit.PendingEvent]:
    """Mirror the waiting timers into the timer table; each new or moved due time gets an audit event
    naming what produced it (the SLA version and case, the calendar)."""
    current = {}
    for t, when, attached in waiting_timers(wf):
        current[str(t.id)] = (t, when, attached)
    preloaded = s.info.get(PRELOADED, {}).pop(("timers", inst.id), None)
    existing = {r.id: r for r in (preloaded if preloaded is not None else
                                  s.scalars(_TIMER_ROWS, {"instance_id": inst.id}))}
    ready = None
    for tid, row in existing.items():
        if row.kind == ownership.CLAIM_KIND:  # X1: an owner's claim deadline lives while its task is ready
            if ready is None:
                ready = {str(r.id) for r in wf.get_tasks(state=TaskState.READY, manual=True)}
            if row.attached_task_id not in ready:
                writes.remove(s, row)
        elif tid not in current:
            writes.remove(s, row)
    events = []
    for tid, (t, when, attached) in current.items():
        row = existing.get(tid)
        if row is not None and row.due_at == when:
            continue
        spec = t.task_spec
        if row is None:
            writes.add(s, Timer(id=tid, instance_id=inst.id, bpmn_id=spec.bpmn_id, name=spec.bpmn_name,
                              kind="boundary" if isinstance(spec, BoundaryEvent) else "intermediate",
                              interrupting=bool(getattr(spec, "cancel_activity", True)),
                              attached_task_id=str(attached.id) if attached is not None else None,
                              due_at=when, created_at=now))
        else:
            writes.change(s, row, due_at=when)
        s.info.setdefault("kefu_timers_due", []).append(when)
        events.append(audit.PendingEvent("timer_set", SYSTEM, now, task_id=tid, bpmn_id=spec.bpmn_id,
                                         task_name=spec.bpmn_name, rules=rule_ids(spec.documentation),
                                         data=due_basis(ctx, t, when, attached, now)))
    return events


def due_basis(ctx, timer, when: datetime, attached, now: datetime) -> dict:
    data = timer.data
    basis = {"due_at": iso(when), "expression": getattr(timer.task_spec.event_definition, "expression", None),
             "calendar": ctx.calendar.describe(now, when)}
    if attached is not None:
        basis["task"] = attached.task_spec.bpmn_id
    version, case = data.get("sla_version"), data.get("sla_case")
    if version is not None:
        basis["sla_version"] = version
    if isinstance(case, str):
        basis["sla_case"] = case
        target = (data.get("sla_targets") or {}).get(case)
        if isinstance(target, dict):
            basis["sla_target"] = target
    return basis


def clock_events(task, now: datetime, common: dict) -> list[audit.PendingEvent]:
    """Deadlines set, paused and resumed by a script (T1, R4): read from the clock keys it changed."""
    parent = task.parent.data if task.parent is not None else {}
    out = []
    for clock in CLOCKS:
        due_key, paused_key = f"{clock}_due", f"{clock}_paused_at"
        was_paused, paused = parent.get(paused_key), task.data.get(paused_key)
        if paused and paused != was_paused:
            out.append(audit.PendingEvent("clock_paused", SYSTEM, now, **common, data={
                "clock": clock, "paused_at": paused, "due_at": task.data.get(due_key),
                "remaining_seconds": task.data.get(f"{clock}_remaining_seconds")}))
        elif was_paused and not paused:
            out.append(audit.PendingEvent("clock_resumed", SYSTEM, now, **common, data={
                "clock": clock, "paused_at": was_paused, "due_at": task.data.get(due_key)}))
        elif task.data.get(due_key) and task.data.get(due_key) != parent.get(due_key):
            out.append(audit.PendingEvent("deadline_set", SYSTEM, now, **common, data={
                "clock": clock, "due_at": task.data.get(due_key), "sla_case": task.data.get("sla_case"),
                "sla_version": task.data.get("sla_version")}))
    return out


def deadlines(wf, ready=None) -> dict:
    """The two clocks of a work order as the workflow sees them now (from the newest task data); ``ready``: the
    workflow's ready user tasks, if the caller has them."""
    if ready is None:
        ready = wf.get_tasks(state=TaskState.READY, manual=True)
    data = ready[0].data if ready else (wf.last_task.data if wf.last_task is not None else {})
    out = {}
    for clock in CLOCKS:
        due = data.get(f"{clock}_due")
        if due:
            out[clock] = {"due_at": due, "paused_at": data.get(f"{clock}_paused_at"),
                          "remaining_seconds": data.get(f"{clock}_remaining_seconds")
                          if data.get(f"{clock}_paused_at") else None}
    return out


def _waits(wf) -> tuple[bool, bool]:
    """Whether the workflow's processes have external tasks, and message events (cached on the spec)."""
    found = getattr(wf.spec, "kefu_waits", None)
    if found is None:
        specs = [wf.spec, *(getattr(wf, "subprocess_specs", None) or {}).values()]
        task_specs = [ts for sp in specs for ts in sp.task_specs.values()]
        found = (any(isinstance(ts, ExternalTask) for ts in task_specs),
                 any(isinstance(getattr(ts, "event_definition", None), MessageEventDefinition) for ts in task_specs))
        wf.spec.kefu_waits = found
    return found


def sync_external(s, inst: Instance, wf, now: datetime) -> list[audit.PendingEvent]:
    """Mirror the workflow's started external tasks into the external-task rows: new ones open (with the
    retries their spec gives), those gone from the workflow (a boundary event interrupted them) cancelled.
    Completion is written by the service that completes them."""
    if not _waits(wf)[0]:
        return []
    existing = {r.id: r for r in s.scalars(select(ExternalTaskRow).where(
        ExternalTaskRow.instance_id == inst.id, ExternalTaskRow.state == "open"))}
    started = {str(t.id): t for t in wf.get_tasks(state=TaskState.STARTED) if isinstance(t.task_spec, ExternalTask)}
    events = []
    for tid, row in existing.items():
        if tid not in started:
            task = find_task(wf, tid)
            done = task is not None and task.state == TaskState.COMPLETED
            writes.change(s, row, state="completed" if done else "cancelled", ended_at=now, lock_expires_at=None)
            if not done:
                events.append(audit.PendingEvent("external_task_cancelled", SYSTEM, now, task_id=tid,
                                                 bpmn_id=row.bpmn_id, task_name=row.name,
                                                 data={"topic": row.topic}))
    for tid, task in started.items():
        if tid in existing:
            continue
        spec = task.task_spec
        row = ExternalTaskRow(id=tid, instance_id=inst.id, bpmn_id=spec.bpmn_id, name=spec.bpmn_name,
                              topic=spec.topic, state="open", worker_id=None, lock_expires_at=None,
                              retries=spec.retries, retry_at=None, error_message=None, error_details=None,
                              created_at=now, ended_at=None)
        writes.add(s, row)
        events.append(audit.PendingEvent("external_task_created", SYSTEM, now, task_id=tid, bpmn_id=spec.bpmn_id,
                                         task_name=spec.bpmn_name, rules=rule_ids(spec.documentation),
                                         data={"topic": spec.topic, "retries": spec.retries}))
    return events


def waiting_messages(wf):
    """The workflow's events waiting for a message: (task, message name)."""
    for t in wf.get_tasks(state=TaskState.WAITING):
        definition = getattr(t.task_spec, "event_definition", None)
        if isinstance(definition, MessageEventDefinition):
            yield t, definition.name


def sync_messages(s, inst: Instance, wf, now: datetime) -> None:
    """Mirror the workflow's waiting message events into the message-wait rows (what ``kefu message``
    correlates with)."""
    if not _waits(wf)[1]:
        return
    existing = {r.id: r for r in s.scalars(select(MessageWait).where(MessageWait.instance_id == inst.id))}
    current = {str(t.id): (t, name) for t, name in waiting_messages(wf)}
    for tid, row in existing.items():
        if tid not in current:
            writes.remove(s, row)
    for tid, (t, name) in current.items():
        if tid not in existing:
            writes.add(s, MessageWait(id=tid, instance_id=inst.id, name=name[:255], bpmn_id=t.task_spec.bpmn_id,
                                      created_at=now))
