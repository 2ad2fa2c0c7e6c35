"""What the supervisor's decision on an escalation does to the escalated task (000 §五.1, T-cap): ``extend``
moves the deadline of the task's running clocks to the new time, ``reassign`` hands the task to another user
who holds its role; either is recorded on the original ticket. ``urge`` and ``other`` change nothing there."""
from __future__ import annotations

from sqlalchemy import select

from engine.clock import aware, iso
from engine.errors import FormValidationError
from engine.services.context import WITH_STATE, Context
from engine.bpmn.deadlines import move_deadline
from engine.services.projections import find_task
from engine.services.runner import Runner
from engine.store import chain as audit, writes
from engine.store.tables import HumanTask, Instance, User

DECISION_TASK = "handle_escalation"


def apply_decision(ctx: Context, runner: Runner, s, child: Instance, clean: dict, actor: str) -> None:
    """Carry out ``clean`` (the completed decision form) on the escalated task of ``child``'s parent ticket."""
    decision = clean.get("decision")
    if decision == "extend" and not clean.get("new_deadline"):
        raise FormValidationError({"new_deadline": "required"}, DECISION_TASK)
    if decision == "reassign" and not clean.get("new_assignee"):
        raise FormValidationError({"new_assignee": "required"}, DECISION_TASK)
    if decision not in ("extend", "reassign") or child.parent_id is None or child.parent_task_id is None:
        return
    parent = s.scalar(select(Instance).where(Instance.id == child.parent_id).options(*WITH_STATE)
                      .with_for_update(of=Instance))
    row = s.get(HumanTask, child.parent_task_id)
    if parent is None or row is None or row.state != "ready":
        return  # the task was done or withdrawn meanwhile: nothing left to change
    common = dict(task_id=row.id, bpmn_id=row.bpmn_id, task_name=row.name)
    now = ctx.now()
    if decision == "reassign":
        target = s.scalar(select(User).where(User.name == clean["new_assignee"]))
        if target is None or not target.active or row.role not in target.role_set:
            raise FormValidationError({"new_assignee": f"user {clean['new_assignee']} does not have the role "
                                                       f"{row.role}"}, DECISION_TASK)
        previous = row.assignee
        writes.change(s, row, assignee=target.name)
        runner.touch(s, parent, [audit.PendingEvent("task_reassigned", actor, now, **common, data={
            "previous_assignee": previous, "assignee": target.name, "escalation": child.ticket_no})])
        return
    new_due = aware(clean["new_deadline"])
    wf = runner.load(s, parent, change=True)
    task = find_task(wf, row.id)
    moved = [{"timer": timer, "from": iso(aware(old)), "to": iso(new_due)}
             for timer, old in (move_deadline(task, new_due.isoformat()) if task is not None else [])]
    events = [audit.PendingEvent("deadline_extended", actor, now, **common, data={
        "escalation": child.ticket_no, "due_at": iso(new_due), "timers": moved,
        "instruction": clean.get("instruction")})]
    runner.save(s, parent, wf, events, actor, runner.states(wf), None)
