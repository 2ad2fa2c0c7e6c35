"""Escalate a stalling department to the supervisor (000 §五.1; C5, P6, R4) via processes/escalation.bpmn."""
import pytest

from engine import Conflict, FormValidationError, InvalidInput, NotAllowed
from tests.test_consultation import to_department


def test_agent_escalates_a_transferred_task_and_the_supervisor_decides(scenario):
    to_department(scenario)
    task = scenario.task("department_answer")
    assert task["escalatable"] is True
    k = scenario.k
    esc = k.tasks.escalate(task["id"], "agent", "财务部两次催办未回复")
    assert esc["ticket_no"].startswith("SJ20261123-") and esc["parent"] == scenario.ticket_no
    # The escalated task stays with the department; the supervisor gets a task on the escalation ticket.
    assert scenario.task("department_answer")["id"] == task["id"]
    sup = [t for t in k.tasks.ready(actor="supervisor") if t["ticket_no"] == esc["ticket_no"]]
    assert [t["bpmn_id"] for t in sup] == ["handle_escalation"]
    assert [t for t in k.tasks.ready(actor="agent") if t["ticket_no"] == esc["ticket_no"]] == []
    escalated = scenario.events("task_escalated")
    assert escalated[0]["actor"] == "agent" and escalated[0]["data"]["escalation"] == esc["ticket_no"]
    assert escalated[0]["data"]["reason"] == "财务部两次催办未回复"
    shown = k.instances.show(esc["ticket_no"])
    assert shown["kind"] == "escalation"
    # A second escalation of the same task waits for the supervisor's decision.
    with pytest.raises(Conflict):
        k.tasks.escalate(task["id"], "agent", "再次升级")
    k.tasks.complete(sup[0]["id"], "supervisor", {"decision": "urge", "instruction": "已电话督促财务部今日答复"})
    assert k.instances.show(esc["ticket_no"])["status"] == "completed"
    assert k.tasks.escalate(task["id"], "agent", "仍未答复")["ticket_no"].endswith("-0002")


def test_escalation_needs_a_reason_a_transferred_task_and_the_right_role(scenario):
    to_department(scenario)
    k = scenario.k
    task = scenario.task("department_answer")
    with pytest.raises(FormValidationError) as exc:
        k.tasks.escalate(task["id"], "agent", "   ")
    assert "reason" in exc.value.errors
    with pytest.raises(NotAllowed):
        k.tasks.escalate(task["id"], "department", "自己升级自己")
    with pytest.raises(NotAllowed):
        k.tasks.escalate(task["id"], "auditor", "审计不能操作")
    overdue_free = [t for t in k.tasks.ready(instance=scenario.instance_id)]
    assert len(overdue_free) == 1
    assert scenario.events("task_escalated") == []


def test_agent_tasks_are_not_escalatable(scenario):
    from tests.test_consultation import register
    register(scenario, on_spot=False)
    t = scenario.task("promise_reply")
    assert t["escalatable"] is False
    with pytest.raises(InvalidInput):
        scenario.k.tasks.escalate(t["id"], "agent", "这不是转办任务")


def test_escalation_cannot_be_started_directly(kefu):
    with pytest.raises(InvalidInput):
        kefu.instances.start("escalation", "agent", {})
