"""Human tasks: the queues each user may work, claiming and releasing, completing a task's form, reassigning,
escalating a stalled transferred task (000 §五.1), and who may act on which task."""
from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload, lazyload, undefer

from engine.errors import Conflict, FormValidationError, InvalidInput, NotAllowed, NotFound
from engine.services import ownership, queue, routing, shapes
from engine.services.context import CALENDAR_REVISION, CLOCK_OFFSET, PRELOADED, Context, setting
from engine.services.shapes import ESCALATION, START_ROLES, TRANSFERRED_ROLES
from engine.store import chain as audit
from engine.store.tables import HumanTask, Instance, User

# Listing tasks imports no SpiffWorkflow: the modules that run workflows (the runner, projections, escalations,
# care) are imported by the methods that change an instance.

TICKET_READERS = queue.TICKET_READERS  # the roles that read every ticket, so every task page too

# ready_task: a task row locked for the change, its instance (with the workflow), the acting user and the two
# shared settings, in one round trip. On SQLite FOR UPDATE is left out (the write lock is held).
_READY_TASK = (select(HumanTask, Instance, User, setting(CALENDAR_REVISION), setting(CLOCK_OFFSET))
               .join(Instance, Instance.id == HumanTask.instance_id)
               .outerjoin(User, User.name == bindparam("actor"))
               .where(HumanTask.id == bindparam("task_id"))
               # The definition (its spec is cached by id) and the customer are loaded only if used.
               .options(undefer(Instance.state), lazyload(Instance.definition), lazyload(Instance.customer))
               .with_for_update(of=HumanTask))
# The same, with the rows complete() brings up to date: the instance's ready tasks and its timers.
_READY_TASK_AND_ROWS = _READY_TASK.options(joinedload(Instance.ready_rows), joinedload(Instance.timer_rows))


class TaskService:
    """Queues, claims, completion, reassignment and escalation of human tasks."""

    def __init__(self, ctx: Context, runner):
        self.ctx = ctx
        self.runner = runner

    def ready(self, actor: str | None = None, instance=None, role: str | None = None) -> list[dict]:
        """Ready human tasks; with ``actor`` only those the user may work (their roles, lanes, claims): read
        without the ORM (``engine.services.queue``)."""
        return queue.ready(self.ctx, actor, instance, role)

    def get(self, task_id: str, actor: str | None = None) -> dict:
        """One task (any state); with ``actor`` only if that user may see it (``engine.services.queue.one``)."""
        return queue.one(self.ctx, task_id, actor)

    def claim(self, task_id: str, actor: str) -> dict:
        """Take a ready task of one's queue as one's own."""
        with self.ctx.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor)
            ownership.check_not_involved(inst, actor, "claim")  # P12
            self._authorize(user, row)
            offered = row.offer_due is not None
            if row.assignee == actor and not offered:
                return shapes.task_dict(self.ctx, row, inst)
            row.assignee, row.offer_due = actor, None
            if offered:  # X1: the owner took the task offered to them; its claim deadline is gone
                ownership.drop_claim_timer(s, row.id)
            self.runner.touch(s, inst, [audit.PendingEvent("task_claimed", actor, self.ctx.now(), task_id=row.id,
                                                     bpmn_id=row.bpmn_id, task_name=row.name,
                                                     **({"rules": ["X1"], "data": {"offer": True}}
                                                        if offered else {}))])
            return shapes.task_dict(self.ctx, row, inst)

    def unclaim(self, task_id: str, actor: str) -> dict:
        """Put a claimed task back into its queue (the assignee or a supervisor)."""
        with self.ctx.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor)
            if row.assignee != actor and "supervisor" not in user.role_set:
                raise NotAllowed(f"only {row.assignee or 'the assignee'} or a supervisor may release this task")
            if row.assignee is not None:
                if row.offer_due is not None:
                    ownership.drop_claim_timer(s, row.id)
                previous, row.assignee, row.offer_due = row.assignee, None, None
                self.runner.touch(s, inst, [audit.PendingEvent("task_unclaimed", actor, self.ctx.now(), task_id=row.id,
                                                         bpmn_id=row.bpmn_id, task_name=row.name,
                                                         data={"previous_assignee": previous})])
            return shapes.task_dict(self.ctx, row, inst)

    def escalate(self, task_id: str, actor: str, reason: str) -> dict:
        """Escalate a transferred task whose department stalls (000 §五.1): the supervisor gets an escalation
        ticket naming the task and the reason; the task itself stays where it is."""
        reason = (reason or "").strip() if isinstance(reason, str) or reason is None else None
        if not reason:
            raise FormValidationError({"reason": "请填写升级原因"}, "escalate")
        if len(reason) > 2000:
            raise FormValidationError({"reason": "升级原因不能超过 2000 字"}, "escalate")
        with self.ctx.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor)
            ownership.check_not_involved(inst, actor, "escalate")  # P12
            if not user.role_set & START_ROLES:
                raise NotAllowed(f"user {actor} may not escalate (needs role agent or supervisor)")
            if row.role not in TRANSFERRED_ROLES or inst.kind == ESCALATION:
                raise InvalidInput(f"task {row.name} is not a transferred task; only tasks of a department, "
                                   "technician or task force can be escalated")
            open_escalation = s.scalar(select(Instance).where(
                Instance.parent_id == inst.id, Instance.kind == ESCALATION, Instance.status != "completed",
                Instance.parent_task_id == row.id))
            if open_escalation is not None:
                raise Conflict(f"task {row.name} is already escalated ({open_escalation.ticket_no}); "
                               "the supervisor has not decided yet")
            child, ready = self.runner.open(s, ESCALATION, user, inst.customer, None, initial={
                "parent_ticket_no": inst.ticket_no, "parent_instance_id": inst.id,
                "escalated_task_id": row.id, "escalated_task_name": row.name, "escalated_role": row.role,
                "escalated_assignee": row.assignee, "escalated_group": row.candidate_group,
                "escalation_reason": reason}, parent=inst)
            child.parent_task_id = row.id  # one open escalation per task
            child.summary = f"{inst.ticket_no} {row.name}: {reason}"[:200]
            child.severity = inst.severity
            self.runner.touch(s, inst, [audit.PendingEvent(
                "task_escalated", actor, self.ctx.now(), task_id=row.id, bpmn_id=row.bpmn_id, task_name=row.name,
                data={"reason": reason, "escalation": child.ticket_no, "role": row.role,
                      "assignee": row.assignee, "candidate_group": row.candidate_group})])
            return {"instance_id": child.id, "ticket_no": child.ticket_no, "kind": ESCALATION,
                    "parent": inst.ticket_no, "tasks": [shapes.task_brief(t) for t in ready]}

    def complete(self, task_id: str, actor: str, data: dict | None) -> dict:
        """Validate ``data`` against the task's form, complete the task and run the engine to the next wait."""
        from SpiffWorkflow.util.task import TaskState

        from engine.services import care, escalations
        from engine.services.projections import find_task
        with self.ctx.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor, with_rows=True)
            ownership.check_not_involved(inst, actor, "complete")  # P12
            self._authorize(user, row)
            wf = self.runner.load(s, inst, change=True)
            task = find_task(wf, row.id)
            if task is None or task.state != TaskState.READY:
                raise Conflict(f"task {row.name} ({row.id}) is not ready in the workflow; reload and try again")
            events: list[audit.PendingEvent] = []
            before = self.runner.states(wf)
            incident = self.runner.complete_in(s, inst, wf, task, user, data or {}, events)
            ready = self.runner.save(s, inst, wf, events, actor, before, incident)
            if inst.kind == ESCALATION and row.bpmn_id == escalations.DECISION_TASK:
                escalations.apply_decision(self.ctx, self.runner, s, inst, events_data(events, row.id), actor)
            cared = care.after_task(self.ctx, self.runner, s, inst, row, events_data(events, row.id), actor)
            return {**cared, "instance_id": inst.id, "ticket_no": inst.ticket_no, "status": inst.status,
                    "incident": inst.incident, "tasks": [shapes.task_brief(t) for t in ready],
                    "task": shapes.task_dict(self.ctx, row, inst)}  # the completed task (the JSON API answers with it)

    def reassign(self, task_id: str, actor: str, to_user: str) -> dict:
        """A supervisor hands a ready task to another user who holds the task's role."""
        with self.ctx.db.unit_of_work() as s:
            row, inst, user = self._ready_task(s, task_id, actor)
            if "supervisor" not in user.role_set:
                raise NotAllowed(f"only a supervisor may reassign tasks; user {actor} may not")
            ownership.check_not_involved(inst, actor, "reassign")  # P12
            if to_user in ownership.involved(inst):
                raise NotAllowed(f"{to_user} is named in complaint {inst.ticket_no} and may not be given its "
                                 "tasks (P12, conflict of interest)", rule="P12")
            target = s.scalar(select(User).where(User.name == to_user)) if to_user else None
            if target is None or not target.active:
                raise InvalidInput(f"no active user {to_user!r}", fields=["to_user"])
            if row.candidates is not None:
                if row.candidates and not routing.is_candidate(to_user, target.role_set, target.group_set, row):
                    raise InvalidInput(f"user {to_user} is not among the candidates of task {row.name} "
                                       f"({row.candidates})", fields=["to_user"])
            elif row.role not in target.role_set or not self._group_ok(target, row):
                raise InvalidInput(f"user {to_user} cannot work task {row.name} (needs role {row.role}"
                                   + (f", group {row.candidate_group}" if row.candidate_group else "") + ")",
                                   fields=["to_user"])
            if row.assignee != to_user or row.offer_due is not None:
                if row.offer_due is not None:
                    ownership.drop_claim_timer(s, row.id)
                previous, row.assignee, row.offer_due = row.assignee, to_user, None
                self.runner.touch(s, inst, [audit.PendingEvent("task_reassigned", actor, self.ctx.now(), task_id=row.id,
                                                         bpmn_id=row.bpmn_id, task_name=row.name,
                                                         data={"previous_assignee": previous,
                                                               "assignee": to_user})])
            return shapes.task_dict(self.ctx, row, inst)

    @staticmethod
    def _task_id(task_id) -> str:
        """``task_id`` as text if it can name a task (a UUID); NotFound otherwise."""
        return queue.task_key(task_id)

    def _task_row(self, s, task_id: str) -> HumanTask:
        row = s.get(HumanTask, self._task_id(task_id))
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return row

    def _ready_task(self, s, task_id: str, actor: str, with_rows: bool = False):
        """The task row (locked), its instance and the acting user; Conflict unless the task is ready.

        One statement: the task row (``FOR UPDATE``), its instance with the workflow state, the actor and the
        shared settings ``_sync_calendar`` needs, where four round trips did the same before. ``with_rows``:
        also the instance's ready task rows and timer rows, for the ``_save`` that follows."""
        params = {"task_id": self._task_id(task_id), "actor": actor or ""}
        if with_rows:
            rows = s.execute(_READY_TASK_AND_ROWS, params).unique().all()
            found = rows[0] if rows else None
        else:
            found = s.execute(_READY_TASK, params).first()
        if found is None:
            raise NotFound(f"no task {task_id!r}")
        row, inst, user, revision, offset = found
        if with_rows:
            preloaded = s.info.setdefault(PRELOADED, {})
            preloaded[("ready", inst.id)] = list(inst.ready_rows)
            preloaded[("timers", inst.id)] = list(inst.timer_rows)
        self.ctx.active(user, actor)
        self._check_ready(row)
        self.ctx.sync_calendar(s, {CALENDAR_REVISION: revision, CLOCK_OFFSET: offset})
        return row, inst, user

    @staticmethod
    def _check_ready(row: HumanTask) -> None:
        if row.state != "ready":
            raise Conflict(f"task {row.name} is already {row.state}"
                           + (f" by {row.completed_by}" if row.completed_by else "")
                           + "; nothing was changed", task_state=row.state)

    @staticmethod
    def _group_ok(user: User, row: HumanTask) -> bool:
        return routing.group_ok(user.group_set, row)

    @staticmethod
    def _may_work(user: User, row: HumanTask) -> bool:
        return routing.may_work(user.name, user.role_set, user.group_set, row)

    def _authorize(self, user: User, row: HumanTask) -> None:
        if row.candidates is not None:  # a task of a process without role lanes
            if row.assignee and row.assignee != user.name:
                raise NotAllowed(f"task {row.name} is assigned to {row.assignee}")
            if not row.assignee and not routing.is_candidate(user.name, user.role_set, user.group_set, row):
                raise NotAllowed(f"task {row.name} is offered to {row.candidates or 'its assignee'}; user "
                                 f"{user.name} is not among them")
            return
        if row.role == routing.TASK_FORCE and row.assignee == user.name:
            return  # P5: this ticket's task force member
        if row.role not in user.role_set:
            raise NotAllowed(f"task {row.name} belongs to the {row.role} lane; user {user.name} "
                             f"has role(s) {', '.join(sorted(user.role_set)) or 'none'}")
        if row.assignee and row.assignee != user.name:
            raise NotAllowed(f"task {row.name} is assigned to {row.assignee}")
        if not self._group_ok(user, row):
            raise NotAllowed(f"task {row.name} is for group {row.candidate_group}")


def events_data(events, task_id: str) -> dict:
    """The data a task was completed with, as recorded in this unit of work's ``task_completed`` event."""
    return next((e.data for e in events if e.type == "task_completed" and e.task_id == task_id), {}) or {}
