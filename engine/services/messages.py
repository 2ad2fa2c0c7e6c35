"""Messages from outside (Camunda's message correlation): a named message with variables reaches the instance
whose intermediate or boundary message event (or receive task) waits for it, or starts a new instance of the
process whose start event it names."""
from __future__ import annotations

import copy

from sqlalchemy import select
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent

from engine.bpmn.tasktypes import deliver
from engine.errors import Conflict, InvalidInput, NotAllowed, NotFound
from engine.services.context import Context
from engine.services.external import _variables
from engine.services.runner import Runner
from engine.store import chain as audit
from engine.store.tables import Definition, Instance, MessageWait
from engine.store.versions import latest

MESSAGE_ROLES = {"agent", "supervisor", "integration", "process_owner"}


class MessageService:
    """Correlate named messages with waiting instances, or start an instance with one."""

    def __init__(self, ctx: Context, runner: Runner):
        self.ctx = ctx
        self.runner = runner

    def correlate(self, name: str, actor: str, variables: dict | None = None, instance=None,
                  all_instances: bool = False) -> dict:
        """Deliver message ``name`` with ``variables``: to the instance waiting for it (``instance`` picks one
        of several; ``all_instances`` delivers to every one), else start the process whose start event names
        it. ``{"correlated": [instances], "started": instance or None}``."""
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise InvalidInput("a message name (1 to 255 characters) is needed", fields=["messageName"])
        payload = _variables(variables)
        with self.ctx.db.unit_of_work() as s:
            user = self.ctx.user(s, actor)
            if not user.role_set & MESSAGE_ROLES:
                raise NotAllowed(f"user {actor} may not send messages (needs role "
                                 f"{' or '.join(sorted(MESSAGE_ROLES))})")
            q = select(MessageWait.instance_id).where(MessageWait.name == name).distinct()
            if instance is not None:
                q = q.where(MessageWait.instance_id == self.ctx.instance(s, instance).id)
            waiting = sorted(s.scalars(q))
            if len(waiting) > 1 and not all_instances:
                tickets = list(s.scalars(select(Instance.ticket_no).where(Instance.id.in_(waiting))))
                raise Conflict(f"{len(waiting)} instances wait for message {name!r} ({', '.join(tickets[:10])}); "
                               "name one (--instance), or deliver it to all (--all)")
            if waiting:
                return {"message": name, "started": None,
                        "correlated": [self._deliver(s, i, name, payload, actor) for i in waiting]}
            if instance is not None:
                raise NotFound(f"instance {instance} does not wait for message {name!r}")
            kinds = self._starting(s, name)
            if not kinds:
                raise NotFound(f"no instance waits for message {name!r} and no deployed process starts with it")
            if len(kinds) > 1:
                raise Conflict(f"message {name!r} starts several processes ({', '.join(kinds)}); give it one")
            inst, ready = self.runner.open(s, kinds[0], user, None, None, message=(name, copy.deepcopy(payload)))
            return {"message": name, "correlated": [],
                    "started": {"instance_id": inst.id, "ticket_no": inst.ticket_no, "kind": inst.kind,
                                "status": inst.status,
                                "tasks": [{"id": r.id, "name": r.name, "role": r.role} for r in ready]}}

    def _deliver(self, s, instance_id: int, name: str, payload: dict, actor: str) -> dict:
        inst = self.ctx.instance(s, instance_id, with_state=True)  # saved under its version check
        wf = self.runner.load(s, inst, change=True)
        before = self.runner.states(wf)
        caught = deliver(wf, name, copy.deepcopy(payload))
        if caught is None:
            raise Conflict(f"instance {inst.ticket_no} no longer waits for message {name!r}; nothing was changed")
        events = [audit.PendingEvent("message_received", actor, self.ctx.now(), bpmn_id=caught,
                                     data={"name": name, "payload": payload})]
        incident = self.runner.run(wf)
        self.runner.save(s, inst, wf, events, actor, before, incident)
        return {"instance_id": inst.id, "ticket_no": inst.ticket_no, "status": inst.status, "element": caught}

    def _starting(self, s, name: str) -> list[str]:
        """The processes whose newest version starts with the message ``name``."""
        out = []
        for pid in sorted(set(s.scalars(select(Definition.process_id)))):
            d = latest(s, pid)
            if d is None or d.filename.lower().endswith(".dmn"):
                continue
            spec, _subs = self.ctx.specs.get(d)
            if any(isinstance(ts, StartEvent) and isinstance(getattr(ts, "event_definition", None),
                                                              MessageEventDefinition)
                   and ts.event_definition.name == name for ts in spec.task_specs.values()):
                out.append(pid)
        return out
