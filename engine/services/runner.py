"""Running an instance: open it, load it, let SpiffWorkflow run to the next wait, complete a user task inside a
unit of work, and save the workflow with its projections and audit events. Every user action and timer
firing goes through here, so they all save the same way.

    load (with the lock version) → run SpiffWorkflow → project tasks, timers, clocks → audit events → save

A stale lock version (someone else saved the instance meanwhile) is a Conflict, never an overwrite.
"""
from __future__ import annotations

import copy
from datetime import datetime

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent
from SpiffWorkflow.bpmn.specs.mixins.exclusive_gateway import ExclusiveGateway
from SpiffWorkflow.bpmn.specs.mixins.script_task import ScriptTask
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from engine.bpmn import sandbox as scripting
from engine.bpmn.camunda import derived_prefix
from engine.bpmn.tasktypes import deliver
from engine.bpmn.diagram import rule_ids
from engine.bpmn.forms import FormValidator, build_fields
from engine.clock import SHANGHAI, aware, iso
from engine.errors import Conflict, DefinitionError, FormValidationError, IncidentError, NotFound
from engine.services import clocks, ownership, projections
from engine.services.context import SYSTEM, Context
from engine.services import repeats
from engine.services.customers import created_changes, new_customer, phone_digits, record_change
from engine.services.shapes import ESCALATION, START_ROLES  # noqa: F401 - START_ROLES re-exported
from engine.services.warm import PENDING, SIZE_FACTOR
from engine.store import chain as audit, writes
from engine.store.database import on_commit
from engine.store.tables import Customer, Instance, User, next_counter
from engine.store.versions import latest

TICKET_PREFIX = {"consultation": "ZX", "complaint": "TS", "repair": "BX", "escalation": "SJ", "care": "GH"}
SUMMARY_FIELDS = ("question", "content", "fault_symptom")
MAX_ENGINE_ROUNDS = 20


class Runner:
    """Opens, loads, runs and saves instances inside the caller's unit of work."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def open(self, s, kind: str, user: User, customer: Customer | None, data: dict | None,
              initial: dict | None = None, parent: Instance | None = None, message: tuple | None = None):
        """Create an instance of the latest version of ``kind`` and run it to its first wait; ``message``
        (name, payload): the message its start event waits for."""
        actor = user.name
        definition = latest(s, kind)
        if definition is None:
            raise NotFound(f"no deployed process {kind!r}; deploy it with 'kefu deploy'")
        self.ctx.sync_calendar(s)
        spec, subs = self.ctx.specs.get(definition)
        wf = BpmnWorkflow(spec, subs, script_engine=scripting.make_script_engine())
        now = self.ctx.now()
        ticket_no = self.next_ticket_no(s, kind, now, getattr(spec, "kefu_ticket_prefix", None))
        sla = self.ctx.sla(s) if kind != ESCALATION else None
        if sla is not None:
            sla_def, table = sla
            initial = {**(initial or {}), "sla_targets": copy.deepcopy(table.targets),
                       "sla_version": sla_def.version}
        initiator = getattr(spec, "kefu_initiator", None)  # camunda:initiator names a variable for the starter
        wf.task_tree.data.update({**(initial or {}), **({initiator: actor} if initiator else {}),
                                  "ticket_no": ticket_no, "kind": kind, "started_by": actor,
                                  "customer_id": customer.id if customer else None,
                                  "vip": bool(customer.vip) if customer else False})
        inst = Instance(ticket_no=ticket_no, kind=kind, definition=definition, customer=customer,
                        status="active", vip=bool(customer.vip) if customer else False,
                        created_by=actor, owner=actor if parent is None and "agent" in user.role_set else None,
                         created_at=now, updated_at=now, state="", audit_count=0,
                        audit_head="", parent_id=parent.id if parent is not None else None)
        s.add(inst)
        s.flush()
        events = [audit.PendingEvent("instance_started", actor, now, data={
            "definition": definition.process_id, "version": definition.version,
            "sha256": definition.sha256, "customer_id": inst.customer_id,
            **({"sla": {"decision": sla[0].process_id, "version": sla[0].version, "sha256": sla[0].sha256,
                        "targets": sla[1].targets}} if sla is not None else {}),
            "calendar": self.ctx.calendar.describe(),
            **({"parent": parent.ticket_no} if parent is not None else {})})]
        if (initial or {}).get("repeat_of"):  # X3: opened as a repeat of named tickets (complaint care)
            repeats.link_explicit(self, s, inst, initial["repeat_of"], actor, now, events)
        before = self.states(wf)
        incident = self.run(wf)
        if message is not None and not incident:
            caught = deliver(wf, *message)
            if caught is None:
                raise NotFound(f"process {kind!r} does not start with message {message[0]!r}")
            events.append(audit.PendingEvent("message_received", actor, now, bpmn_id=caught,
                                             data={"name": message[0], "payload": message[1]}))
            incident = self.run(wf)
        if incident:
            raise IncidentError(f"process {kind!r} failed before its first task: {incident['message']}",
                                incident=incident)
        first = next(iter(wf.get_tasks(state=TaskState.READY, manual=True)), None)
        if data is not None:
            if first is None:
                raise DefinitionError(f"process {kind!r} has no first user task to take the data")
            if customer is not None:
                data = {**{k: v for k, v in self.customer_prefill(first, customer).items()
                           if k not in data}, **data}
            events.extend(self.step_events(wf, before, actor, now))
            before = self.states(wf)
            incident = self.complete_in(s, inst, wf, first, user, data, events)
        # An integration user (no lane) leaves the intake task in the agents' queue.
        claimer = None if data is not None or parent is not None or message is not None \
            or not user.role_set & START_ROLES else actor
        ready = self.save(s, inst, wf, events, actor, before, incident, claimer=claimer)
        return inst, ready

    def customer_prefill(self, task, customer: Customer) -> dict:
        fields = {f.id for f in self.fields(task)}
        mapping = {"customer_name": customer.name, "contact_phone": customer.phone, "region": customer.region}
        return {k: v for k, v in mapping.items() if k in fields and v}

    def next_ticket_no(self, s, kind: str, now: datetime, prefix: str | None = None) -> str:
        """The next ticket number of a process: its prefix (Kefu's own processes, else the diagram's
        ``kefu:ticketPrefix`` property, else derived from the process id), the Shanghai date and a counter."""
        prefix = TICKET_PREFIX.get(kind) or prefix or derived_prefix(kind)
        key = f"{prefix}{now.astimezone(SHANGHAI):%Y%m%d}"
        return f"{key}-{next_counter(s, key):04d}"

    def load(self, s, inst: Instance, change: bool = False) -> BpmnWorkflow:
        """The instance's workflow. ``change``: the caller will change and save it in this unit of work, so
        the workflow this process kept after saving it last (``engine.services.warm``) serves if it is of the
        version just read; else, and for every reader, it is restored from the stored JSON."""
        self.ctx.sync_calendar(s)
        if change and self.ctx.warm.enabled and inst.id is not None:
            wf = self.ctx.warm.take(inst.id, inst.lock_version)
            if wf is not None:
                return wf
        self.ctx.spec_of(inst)
        return self.ctx.serializer.deserialize_json(inst.state)

    def keep_warm(self, s, inst: Instance, wf) -> None:
        """Keep ``wf`` (just serialized into ``inst.state``) once this unit of work has committed."""
        if self.ctx.warm.enabled:
            self._pending(s)[inst.id] = (inst, wf, len(inst.state) * SIZE_FACTOR)

    def forget_warm(self, s, inst: Instance) -> None:
        """Keep nothing of ``inst`` from this unit of work (its workflow was changed in a way a restore
        should redo, e.g. moved to another definition version)."""
        if self.ctx.warm.enabled:
            self._pending(s)[inst.id] = (inst, None, None)

    def _pending(self, s) -> dict:
        pending = s.info.get(PENDING)
        if pending is None:
            pending = s.info[PENDING] = {}
            on_commit(s, lambda: self._warm_up(pending))
        return pending

    def _warm_up(self, pending: dict) -> None:
        """After the commit: keep each saved workflow at the version its save committed."""
        warm = self.ctx.warm
        for instance_id, (inst, wf, size) in pending.items():
            version = inst.__dict__.get("lock_version")
            if version is None or (wf is None and size is None):
                warm.discard(instance_id)
            elif wf is None:  # saved without a change of its workflow: from version ``size`` to ``version``
                warm.rekey(instance_id, size, version)
            else:
                warm.put(instance_id, version, wf, size)

    def complete_in(self, s, inst, wf, task, user, data, events):
        """Validate and complete one ready task inside the current unit of work; returns an incident or None."""
        fields = self.fields(task)
        clean = FormValidator(fields, lambda n: self.ctx.user_roles(s, n), opened=inst.created_at).validate(
            data, task_name=task.task_spec.bpmn_name or task.task_spec.bpmn_id)
        now = self.ctx.now()
        named = ownership.involved(inst) | set(clean.get(ownership.CONFLICT_FIELD) or ())
        clashes = {f.id: f"user {n} is named in the complaint (P12)" for f in fields if f.assigns and named
                   for n in ([clean.get(f.id)] if isinstance(clean.get(f.id), str) else clean.get(f.id) or [])
                   if n in named}
        if clashes:  # P12: work on the complaint is never given to the staff it is about
            raise FormValidationError(clashes, task.task_spec.bpmn_name or task.task_spec.bpmn_id)
        clocks.check_caps(wf, task, fields, clean, now)
        task.data.update(copy.deepcopy(clean))
        self.link_customer(s, inst, wf, clean, user.name)
        task.run()
        events.append(audit.PendingEvent("task_completed", user.name, now, task_id=str(task.id),
                                         bpmn_id=task.task_spec.bpmn_id, task_name=task.task_spec.bpmn_name,
                                         rules=rule_ids(task.task_spec.documentation), data=clean))
        events.extend(ownership.note_conflict(inst, clean, user.name, now))  # P12
        for key in ("severity", "nature"):
            if clean.get(key):
                setattr(inst, key, clean[key])
        if clean.get("nature"):  # X3: the same customer's complaint of this nature again within the window
            repeats.detect(self, s, inst, clean, user.name, now, events)
        if isinstance(clean.get("emergency"), bool):  # R2: an emergency repair is urgent wherever it is listed
            inst.severity = "urgent" if clean["emergency"] else (inst.severity or "general")
        for key in SUMMARY_FIELDS:
            if clean.get(key):
                inst.summary = str(clean[key])[:200]
                break
        return self.run(wf)

    def link_customer(self, s, inst: Instance, wf, clean: dict, actor: str) -> None:
        """I2: the first form naming the customer links the ticket to a profile, created if new."""
        if inst.customer_id is not None or not clean.get("customer_name"):
            return
        phone = clean.get("contact_phone")
        digits = phone_digits(phone)
        customer = s.scalar(select(Customer).where(Customer.phone_digits == digits)
                            .order_by(Customer.id).limit(1)) if digits else None
        if customer is None:
            customer = new_customer(s, self.ctx.now(), {"name": clean["customer_name"], "phone": phone,
                                                        "region": clean.get("region")})
            record_change(s, self.ctx.now(), "customer_created", actor, customer, created_changes(customer))
        inst.customer = customer
        inst.vip = bool(customer.vip)
        wf.task_tree.data["customer_id"] = customer.id
        for t in wf.get_tasks(state=TaskState.READY):
            t.data["customer_id"] = customer.id
            t.data["vip"] = bool(customer.vip)

    def run(self, wf: BpmnWorkflow) -> dict | None:
        """Run the engine until nothing is left to do now; a failing step becomes an incident."""
        try:
            for _ in range(MAX_ENGINE_ROUNDS):
                wf.refresh_timers()
                wf.do_engine_steps()
                if not any(True for _t in wf.get_tasks_iterator(state=TaskState.READY, manual=False)):
                    break
        except SpiffWorkflowException as exc:
            return self.incident(wf, exc)
        except scripting.ScriptRejected as exc:  # pragma: no cover - wrapped by SpiffWorkflow normally
            return self.incident(wf, exc)
        return None

    def incident(self, wf, exc) -> dict:
        task = getattr(exc, "task", None)
        if task is None:
            failed = wf.get_tasks(state=TaskState.ERROR)
            task = failed[0] if failed else None
        spec = task.task_spec if task is not None else getattr(exc, "task_spec", None)
        cause = getattr(exc, "__cause__", None) or getattr(exc, "exception", None) \
            or getattr(exc, "__context__", None)  # SpiffWorkflow raises an expression's error inside its except
        message = str(exc).split("\n")[0]
        reason = str(cause).split("\n")[0] if cause is not None else ""
        if reason and reason not in message:  # a condition's or timer's "Error evaluating expression" says no more
            message = f"{message.rstrip(' .')}: {type(cause).__name__}: {reason}"
        return {"task_id": str(task.id) if task is not None else None,
                "bpmn_id": getattr(spec, "bpmn_id", None), "name": getattr(spec, "bpmn_name", None),
                "error_type": type(cause).__name__ if cause else type(exc).__name__,
                "message": message[:500],
                "line_number": getattr(exc, "line_number", None) or None,
                "error_line": getattr(exc, "error_line", None) or None,
                "at": iso(self.ctx.now())}

    @staticmethod
    def states(wf) -> dict:
        return {t.id: t.state for t in wf.get_tasks_iterator()}

    def fields(self, task):
        return build_fields(task.task_spec.extensions.get("form"))

    def save(self, s, inst: Instance, wf, events, actor, before, incident, claimer: str | None = None,
              flush: bool = True):
        with s.no_autoflush:  # one flush at the end, not one per projection query
            ready = self.project(s, inst, wf, events, actor, before, incident, claimer)
        if flush:
            self.flush(s, inst)
        return ready

    def project(self, s, inst: Instance, wf, events, actor, before, incident, claimer, warm: bool = True):
        """Bring the instance's rows, columns and audit events up to date with ``wf`` (recorded in ``s``);
        ``warm``: keep ``wf`` for the next change once ``s`` commits."""
        now = self.ctx.now()
        if before is not None:
            events.extend(self.step_events(wf, before, actor, now))
        if incident:
            inst.incident = incident
            events.append(audit.PendingEvent("incident_raised", SYSTEM, now, task_id=incident["task_id"],
                                             bpmn_id=incident["bpmn_id"], task_name=incident["name"],
                                             data=incident))
        finished = wf.is_completed()  # (asked once: each asking walks the task tree)
        inst.status = "incident" if inst.incident else ("completed" if finished else "active")
        if inst.status == "completed" and inst.completed_at is None:
            inst.completed_at = now
            events.append(audit.PendingEvent("instance_completed", SYSTEM, now))
        ready_tasks = wf.get_tasks(state=TaskState.READY, manual=True)
        created, ready, rows_before = projections.sync_tasks(s, inst, wf, now, claimer, events, ready_tasks)
        events.extend(created)
        events.extend(clocks.track(wf, list(projections.waiting_timers(wf)), events, rows_before,
                                   inst.owner or inst.created_by,  # K-who: the first responsible agent (X1)
                                   now, ended=inst.status == "completed"))
        events.extend(projections.sync_timers(self.ctx, s, inst, wf, now))
        events.extend(projections.sync_external(s, inst, wf, now))
        projections.sync_messages(s, inst, wf, now)
        deadlines = projections.deadlines(wf, ready_tasks)
        # T-stop: a due column names a clock that still runs (or waits, paused); a stopped clock has none.
        inst.response_due = aware(clocks.open_due(wf, "response", deadlines.get("response", {}).get("due_at"),
                                                  finished))
        inst.finish_due = aware(clocks.open_due(wf, "finish", deadlines.get("finish", {}).get("due_at"), finished))
        inst.clock_paused_at = aware(deadlines.get("finish", {}).get("paused_at")) if inst.finish_due else None
        inst.state = self.ctx.serializer.serialize_json(wf)
        if warm:
            self.keep_warm(s, inst, wf)
        inst.updated_at = now
        audit.append(s, inst, events)
        return ready

    def touch(self, s, inst: Instance, events) -> None:
        if self.ctx.warm.enabled and inst.id not in self._pending(s) and inst.lock_version is not None:
            self._pending(s)[inst.id] = (inst, None, inst.lock_version)  # the workflow stays as it was
        inst.updated_at = self.ctx.now()
        audit.append(s, inst, events)
        self.flush(s, inst)

    @staticmethod
    def flush(s, inst: Instance) -> None:
        """Write what the unit of work changed so far: the mirrored rows, then the instance (one version-checked
        UPDATE when it is the only changed object, else the ORM's flush of everything)."""
        ticket = inst.ticket_no
        try:
            writes.write(s)
            if not writes.save_instance(s, inst):
                s.flush()
        except StaleDataError:
            raise Conflict(f"instance {ticket} was changed by someone else meanwhile; nothing was saved, "
                           "reload and try again") from None

    def step_events(self, wf, before: dict, actor: str, now: datetime) -> list[audit.PendingEvent]:
        """Audit events for what the engine did on its own: scripts, gateways, timers, ends."""
        out = []
        for t in wf.get_tasks_iterator():
            was = before.get(t.id)
            spec = t.task_spec
            if not getattr(spec, "bpmn_id", None) or t.state == was:
                continue
            common = dict(task_id=str(t.id), bpmn_id=spec.bpmn_id, task_name=spec.bpmn_name,
                          rules=rule_ids(spec.documentation))
            if t.state == TaskState.COMPLETED and not isinstance(spec, UserTask):
                if isinstance(spec, CatchingEvent) and isinstance(spec.event_definition, TimerEventDefinition):
                    out.append(audit.PendingEvent("timer_fired", SYSTEM, now, **common, data={
                        "due_at": t.internal_data.get("event_value")}))
                elif isinstance(spec, ScriptTask):
                    out.append(audit.PendingEvent("script_ran", SYSTEM, now, **common,
                                                  data=self.changed(t)))
                    out.extend(projections.clock_events(t, now, common))
                elif isinstance(spec, ExclusiveGateway):
                    taken = [c.task_spec.bpmn_id for c in t.children if c.state == TaskState.COMPLETED or
                             c.state in (TaskState.READY, TaskState.WAITING, TaskState.STARTED)]
                    out.append(audit.PendingEvent("gateway_passed", SYSTEM, now, **common,
                                                  data={"to": taken}))
                elif isinstance(spec, EndEvent):
                    out.append(audit.PendingEvent("end_reached", SYSTEM, now, **common))
                elif isinstance(spec, StartEvent):
                    out.append(audit.PendingEvent("start_passed", SYSTEM, now, **common))
            elif t.state == TaskState.CANCELLED and was == TaskState.READY and isinstance(spec, UserTask):
                out.append(audit.PendingEvent("task_cancelled", SYSTEM, now, **common))
        # A timer firing explains the cancellations it causes, so it comes first.
        return sorted(out, key=lambda e: e.type != "timer_fired")

    @staticmethod
    def changed(task) -> dict:
        parent = task.parent.data if task.parent is not None else {}
        return {k: v for k, v in task.data.items() if parent.get(k, object()) != v and not k.startswith("_")}
