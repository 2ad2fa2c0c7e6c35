"""Instances (tickets): open one, read it whole or as a summary row, retry a failed step, and the forms and
diagram of the version it runs on."""
from __future__ import annotations

import copy

from sqlalchemy import select
from sqlalchemy.orm import undefer
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.util.task import TaskState

from engine.bpmn import sandbox as scripting
from engine.clock import iso
from engine.errors import Conflict, DefinitionError, InvalidInput, NotAllowed, NotFound
from engine.services import casefile, clocks, ownership, projections, repeats, shapes
from engine.services.context import Context, row_id
from engine.services.shapes import ESCALATION
from engine.services.runner import START_ROLES, Runner
from engine.store import chain as audit
from engine.store.tables import Customer, Definition, ExternalTask, HumanTask, Instance, Timer, User
from engine.store.versions import latest

OPEN_ROLES = START_ROLES | {"integration"}  # may open tickets (the JSON API's integration users)
INCIDENT_ROLES = {"supervisor", "process_owner"}


def change_owner(runner: Runner, s, inst: Instance, target: User | None, new_owner, actor: str, reason: str, now,
                 rules=("X1",), extra: dict | None = None, move_tasks: bool = True) -> str | None:
    """Move the case ``inst`` to the agent ``target`` (X1) with the audit event ``owner_changed``; with
    ``move_tasks`` the previous owner's ready agent tasks of the ticket go with it, offered anew (X1; the shift
    handover moves the tasks it listed itself, X2). The caller decided that ``actor`` may. Returns the previous
    owner. Shared by ``set_owner`` and the shift handover (X2)."""
    if target is None or not target.active or "agent" not in target.role_set:
        raise InvalidInput(f"{new_owner!r} is not an active agent")
    if target.name == inst.owner:
        raise Conflict(f"{target.name} already owns {inst.ticket_no}")
    if target.name in ownership.involved(inst):
        raise NotAllowed(f"{target.name} is named in complaint {inst.ticket_no} and may not own it "
                         "(P12, conflict of interest)", rule="P12")
    previous = inst.owner
    inst.owner = target.name
    events = [audit.PendingEvent("owner_changed", actor, now, rules=list(rules),
                                 data={"from": previous, "to": target.name, "reason": reason, **(extra or {})})]
    data = None
    if move_tasks and previous and s.scalar(select(HumanTask.id).where(  # the workflow is read only when needed
            HumanTask.instance_id == inst.id, HumanTask.state == "ready",
            HumanTask.assignee == previous, HumanTask.role == ownership.OWNER_ROLE).limit(1)):
        data = runner.load(s, inst).task_tree.data
    if move_tasks:
        events += ownership.hand_over(s, inst, previous, target.name, now, actor, data)
    runner.touch(s, inst, events)
    return previous


class InstanceService:
    """Open, read and repair instances."""

    def __init__(self, ctx: Context, runner: Runner):
        self.ctx = ctx
        self.runner = runner

    def start(self, kind: str, actor: str, data: dict | None = None, customer_id: int | None = None,
              variables: dict | None = None) -> dict:
        """Open a ticket. With ``data`` the first task (the intake form) is completed at once; ``variables``
        are start data (as Camunda starts a process with variables)."""
        if variables is not None:
            from engine.services.external import _variables
            variables = _variables(variables)
        with self.ctx.db.unit_of_work() as s:
            user = self.ctx.user(s, actor)
            if not user.role_set & OPEN_ROLES:
                raise NotAllowed(f"user {actor} may not open tickets (needs role agent, supervisor or integration)")
            if kind == ESCALATION:
                raise InvalidInput("an escalation is opened from the task it escalates ('escalate'), not directly")
            customer = None
            if customer_id is not None:
                customer = s.get(Customer, customer_id) if row_id(customer_id) else None
                if customer is None:
                    raise NotFound(f"no customer {customer_id}")
            inst, ready = self.runner.open(s, kind, user, customer, data, initial=variables or None)
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "kind": kind,
                    "status": inst.status, "customer_id": inst.customer_id,
                    "tasks": [shapes.task_brief(t) for t in ready]}

    def retry_incident(self, instance_ref, actor: str, data: dict | None = None) -> dict:
        """Reset the failed step, apply ``data`` fixes to its task data and run the engine again."""
        with self.ctx.db.unit_of_work() as s:
            inst = self.ctx.instance(s, instance_ref, with_state=True)
            user = self.ctx.user(s, actor)
            if not user.role_set & INCIDENT_ROLES:
                raise NotAllowed("only a supervisor or process owner may retry an incident")
            if not inst.incident:
                raise Conflict(f"instance {inst.ticket_no} has no incident")
            if data is not None and (not isinstance(data, dict) or any(
                    not isinstance(k, str) or k.startswith("_") for k in data)):
                raise InvalidInput("the fix must be a JSON object whose keys do not start with '_'")
            fix = {k: scripting._plain(v, k) for k, v in (data or {}).items()}
            wf = self.runner.load(s, inst, change=True)
            if inst.incident.get("external_task_id"):
                return self._retry_external(s, inst, wf, actor, fix)
            failed = wf.get_tasks(state=TaskState.ERROR)
            if not failed:
                raise Conflict("the workflow has no failed step to retry")
            events = [audit.PendingEvent("incident_retried", actor, self.ctx.now(), task_id=str(failed[0].id),
                                         bpmn_id=failed[0].task_spec.bpmn_id,
                                         task_name=failed[0].task_spec.bpmn_name, data={"fix": fix})]
            before = self.runner.states(wf)
            for task in failed:
                wf.reset_from_task_id(task.id)
                again = wf.get_task_from_id(task.id)
                again.data.update(copy.deepcopy(fix))
            inst.incident = None
            incident = self.runner.run(wf)
            self.runner.save(s, inst, wf, events, actor, before, incident)
            return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "status": inst.status,
                    "incident": inst.incident}

    def _retry_external(self, s, inst, wf, actor: str, fix: dict) -> dict:
        """An external task out of retries: it gets its retries back (and the data fixes) and waits for a
        worker again."""
        row = s.get(ExternalTask, inst.incident["external_task_id"], with_for_update=True)
        task = projections.find_task(wf, row.id) if row is not None else None
        if row is None or row.state != "open" or task is None or task.state != TaskState.STARTED:
            raise Conflict("the external task of this incident no longer waits; nothing to retry")
        task.data.update(copy.deepcopy(fix))
        row.retries, row.retry_at, row.lock_expires_at = task.task_spec.retries, None, None
        events = [audit.PendingEvent("incident_retried", actor, self.ctx.now(), task_id=row.id, bpmn_id=row.bpmn_id,
                                     task_name=row.name, data={"fix": fix, "external_task": row.id,
                                                               "retries": row.retries})]
        inst.incident = None
        self.runner.save(s, inst, wf, events, actor, None, None)
        return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "status": inst.status, "incident": None}

    def set_owner(self, instance_ref, new_owner: str, actor: str, reason: str) -> dict:
        """Hand a case to another agent (X1): its owner, the first responsible agent until it closes.
        The owner may hand it over; a supervisor may reassign it. An audit event ``owner_changed``."""
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("say why the case changes hands (a reason)")
        if len(reason) > 500:
            raise InvalidInput("the reason is longer than 500 characters")
        with self.ctx.db.unit_of_work() as s:
            inst = self.ctx.instance(s, instance_ref)
            user = self.ctx.user(s, actor)
            if inst.owner != actor and "supervisor" not in user.role_set:
                raise NotAllowed(f"only the case's owner or a supervisor may hand {inst.ticket_no} over")
            if inst.status != "active":
                raise Conflict(f"{inst.ticket_no} is {inst.status}; only an open case changes hands")
            target = s.scalar(select(User).where(User.name == new_owner)) if isinstance(new_owner, str) else None
            previous = change_owner(self.runner, s, inst, target, new_owner, actor, reason, self.ctx.now())
            return {"ticket_no": inst.ticket_no, "owner": inst.owner, "previous_owner": previous}

    def owned(self, actor: str) -> list[dict]:
        """我的工单 (X1): the open tickets ``actor`` owns, newest first, each with its ready tasks."""
        with self.ctx.db.reading() as s:
            self.ctx.user(s, actor)
            return self._cases(s, select(Instance).where(Instance.owner == actor, Instance.status != "completed"))

    def needing_owner(self, actor: str | None = None) -> list[dict]:
        """Open complaints whose owner was named in them (P12) and that no agent owns now: a supervisor hands
        each to another agent (``set_owner``). With ``actor``: only for a supervisor."""
        with self.ctx.db.reading() as s:
            if actor is not None and "supervisor" not in self.ctx.user(s, actor).role_set:
                raise NotAllowed("only a supervisor sees the cases waiting for an owner")
            return self._cases(s, select(Instance).where(
                Instance.owner.is_(None), Instance.staff_involved.is_not(None), Instance.parent_id.is_(None),
                Instance.status != "completed"))

    def _cases(self, s, q) -> list[dict]:
        cases = list(s.scalars(q.order_by(Instance.id.desc()).limit(500)))
        tasks: dict[int, list] = {}
        if cases:
            for r in s.scalars(select(HumanTask).where(HumanTask.instance_id.in_([i.id for i in cases]),
                                                      HumanTask.state == "ready").order_by(HumanTask.created_at)):
                tasks.setdefault(r.instance_id, []).append(shapes.task_brief(r))
        return [{"instance_id": i.id, "ticket_no": i.ticket_no, "kind": i.kind, "status": i.status,
                 "severity": i.severity, "vip": i.vip, "summary": i.summary, "owner": i.owner,
                 "created_by": i.created_by, "staff_involved": sorted(ownership.involved(i)),
                 "customer": i.customer.name if i.customer else None, "created_at": iso(i.created_at),
                 "updated_at": iso(i.updated_at), "tasks": tasks.get(i.id, [])} for i in cases]

    def show(self, instance_ref) -> dict:
        """Everything about one ticket: status, customer, data, deadlines, tasks, timers and audit events."""
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, instance_ref, with_state=True)
            d = inst.definition
            rows = list(s.scalars(select(HumanTask).where(HumanTask.instance_id == inst.id)
                                  .order_by(HumanTask.created_at)))
            wf = self.runner.load(s, inst)
            data = {k: v for k, v in (wf.last_task.data if wf.last_task else wf.data).items()}
            events = [{"seq": e.seq, "type": e.type, "actor": e.actor, "at": iso(e.at), "task_id": e.task_id,
                       "bpmn_id": e.bpmn_id, "task_name": e.task_name,
                       "rules": e.rules.split(",") if e.rules else [], "data": e.data, "hash": e.hash}
                      for e in audit.events_of(s, inst.id)]
            return {
                "instance_id": inst.id, "ticket_no": inst.ticket_no, "kind": inst.kind, "status": inst.status,
                "definition": {"process_id": d.process_id, "version": d.version, "sha256": d.sha256},
                "customer": shapes.customer_dict(inst.customer) if inst.customer else None,
                "severity": inst.severity, "nature": inst.nature, "vip": inst.vip, "summary": inst.summary,
                "created_by": inst.created_by, "owner": inst.owner, "created_at": iso(inst.created_at),
                "staff_involved": sorted(ownership.involved(inst)),
                "updated_at": iso(inst.updated_at), "completed_at": iso(inst.completed_at),
                "incident": inst.incident, "data": data,
                "deadlines": projections.deadlines(wf),
                "clocks": clocks.of(wf),
                "sla": {"version": data.get("sla_version"), "case": data.get("sla_case"),
                        "targets": data.get("sla_targets")} if data.get("sla_version") else None,
                "parent_id": inst.parent_id,
                **repeats.links_of(s, inst),  # X3: repeat_of (earlier tickets), repeated_by (later ones)
                "tasks": [shapes.task_brief(r) for r in rows],
                "timers": [shapes.timer_dict(t) for t in s.scalars(
                    select(Timer).where(Timer.instance_id == inst.id, Timer.kind != ownership.CLAIM_KIND)
                    .order_by(Timer.due_at))],
                "external_tasks": [shapes.external_dict(x) for x in s.scalars(
                    select(ExternalTask).where(ExternalTask.instance_id == inst.id).order_by(ExternalTask.created_at))],
                "events": events,
                **casefile.entries(events, casefile.CaseFileService.attachment_rows(s, inst.id)),
            }

    def recent(self, status: str | None = None, kind: str | None = None, limit: int = 50,
                  customer_id: int | None = None) -> list[dict]:
        """Most recent instances first, as summary rows."""
        with self.ctx.db.reading() as s:
            q = select(Instance).order_by(Instance.id.desc()).limit(max(1, min(int(limit), 500)))
            if status:
                q = q.where(Instance.status == status)
            if kind:
                q = q.where(Instance.kind == kind)
            if customer_id is not None:
                q = q.where(Instance.customer_id == customer_id)
            return [{"instance_id": i.id, "ticket_no": i.ticket_no, "kind": i.kind, "status": i.status,
                     "severity": i.severity, "vip": i.vip, "summary": i.summary, "owner": i.owner,
                     "customer": i.customer.name if i.customer else None, "created_at": iso(i.created_at),
                     "version": i.definition.version} for i in s.scalars(q)]

    def start_form(self, kind: str) -> dict:
        """The first user task of the latest version of ``kind`` with its form: the intake form."""
        with self.ctx.db.reading() as s:
            definition = latest(s, kind)
            if definition is None:
                raise NotFound(f"no deployed process {kind!r}; deploy it with 'kefu deploy'")
            spec, _subs = self.ctx.specs.get(definition)
            about = {"kind": kind, "name": definition.name, "version": definition.version}
        seen, queue = set(), [spec.start]
        while queue:
            tspec = queue.pop(0)
            if isinstance(tspec, UserTask):
                return {**about, **shapes.step_dict(tspec)}
            if tspec.name not in seen:
                seen.add(tspec.name)
                queue.extend(tspec.outputs)
        raise DefinitionError(f"process {kind!r} has no user task", element=kind)

    def steps(self, instance_ref) -> dict:
        """bpmn id → name, English name and form of every user task of the instance's definition version."""
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, instance_ref)
            spec, _subs = self.ctx.specs.get(inst.definition)
        return {t.bpmn_id: shapes.step_dict(t) for t in spec.task_specs.values() if isinstance(t, UserTask)}

    def diagram_xml(self, instance_ref) -> dict:
        """The BPMN XML of the definition version an instance runs on (for drawing it)."""
        with self.ctx.db.reading() as s:
            inst = self.ctx.instance(s, instance_ref)
            d = s.scalar(select(Definition).where(Definition.id == inst.definition_id)
                         .options(undefer(Definition.xml)))
            return {"process_id": d.process_id, "version": d.version, "sha256": d.sha256, "xml": d.xml}
