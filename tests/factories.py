"""Tiny factories for tests: an engine on a fresh database, and a scenario driver that reloads the
engine (a new ``Kefu``, so a new spec cache and nothing kept in memory) before every step."""
from __future__ import annotations

from datetime import timedelta

from engine import Config, Kefu
from engine.services.demo import seed_demo

from tests.conftest import DIAGRAMS, PROCESSES


def make_kefu(db_url, clock, deploy=(PROCESSES,), demo=True) -> Kefu:
    k = Kefu(Config(database_url=db_url, env="test"), clock=clock)
    k.init()
    if deploy:
        k.definitions.deploy(list(deploy))
    if demo:
        seed_demo(k, password=None)  # hashing passwords is slow on purpose
    return k


def diagram(name: str) -> str:
    return str(DIAGRAMS / name)


def p13_record(handling="已批评教育当班保安并调整岗位", person="department", **over) -> dict:
    """P13: the accountability record a department (or the supervisor consolidating a task force) fills."""
    return {"acceptance": "accepted", "cause": "当班保安未按规范接待客户", "responsible_department": "security_ops",
            "responsible_person": person, "handling_result": handling, "corrective_action": "全员服务规范培训",
            **over}


class Scenario:
    """Drives one instance through the real diagrams by task id (bpmn id), as the rules read."""

    def __init__(self, kefu: Kefu):
        self.base = kefu
        self.instance_id = None
        self.ticket_no = None

    @property
    def k(self) -> Kefu:
        # A fresh engine over the same database and clock: state must survive a reload between steps.
        return Kefu(self.base.config, database=self.base.db, clock=self.base.clock)

    def start(self, kind, data=None, actor="agent", customer_id=None):
        r = self.k.instances.start(kind, actor, data=data, customer_id=customer_id)
        self.instance_id, self.ticket_no = r["instance_id"], r["ticket_no"]
        return r

    def ready(self, actor=None):
        return self.k.tasks.ready(actor=actor, instance=self.instance_id)

    def ready_ids(self):
        return sorted(t["bpmn_id"] for t in self.ready())

    def task(self, bpmn_id, assignee=None):
        found = [t for t in self.ready() if t["bpmn_id"] == bpmn_id
                 and (assignee is None or t["assignee"] == assignee)]
        assert found, f"{bpmn_id} is not ready; ready: {self.ready_ids()}"
        return found[0]

    def complete(self, bpmn_id, actor, data=None, assignee=None):
        t = self.task(bpmn_id, assignee)
        return self.k.tasks.complete(t["id"], actor, data or {})

    def handle(self, actor="department", approve=True, approver="supervisor", **record):
        """P13: the department records the accountability record, the supervisor approves the solution."""
        self.complete("department_handle", actor, p13_record(**record))
        if approve is not None:
            self.complete("approve_solution", approver, {"solution_approved": approve} if approve else
                          {"solution_approved": False, "approval_note": "原因调查不充分，请补充"})

    def advance(self, **delta):
        self.base.clock.advance(timedelta(**delta))
        return self.k.timers.fire_due()

    def show(self):
        return self.k.instances.show(self.instance_id)

    def events(self, type_=None):
        return [e for e in self.show()["events"] if type_ is None or e["type"] == type_]

    def later(self, **delta) -> str:
        """An ISO time ``delta`` after the scenario clock (for deadline fields)."""
        return (self.base.clock.now() + timedelta(**delta)).isoformat()
