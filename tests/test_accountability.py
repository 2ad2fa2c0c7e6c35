"""P13 (004 第三条, 七.(5)): the complaint's accountability record, the supervisor's approval before the customer
is told, verified complaints per responsible person in the monthly report; P5: the task force drawn from the
relevant departments, membership per ticket."""
import pytest

from engine import FormValidationError, NotAllowed
from tests.factories import p13_record
from tests.test_complaint import register, transfer
from tests.webclient import Web


def test_p13_the_department_records_acceptance_cause_responsibility_handling_and_corrective_action(scenario):
    register(scenario)
    transfer(scenario)
    with pytest.raises(FormValidationError) as exc:
        scenario.complete("department_handle", "department", {"handling_result": "已处理"})
    assert {"acceptance", "cause", "corrective_action"} <= set(exc.value.errors)
    with pytest.raises(FormValidationError) as exc:  # accepted: who is responsible must be named
        scenario.complete("department_handle", "department", p13_record(responsible_person=None,
                                                                        responsible_department=None))
    assert set(exc.value.errors) == {"responsible_person", "responsible_department"}
    with pytest.raises(FormValidationError) as exc:  # not accepted: the reason is required
        scenario.complete("department_handle", "department", p13_record(acceptance="not_accepted"))
    assert set(exc.value.errors) == {"acceptance_reason"}
    scenario.complete("department_handle", "department", p13_record())
    done = scenario.events("task_completed")[-1]
    assert "P13" in done["rules"] and done["data"]["responsible_person"] == "department"
    assert done["data"]["corrective_action"] == "全员服务规范培训"


def test_p13_the_supervisor_approves_the_solution_before_the_customer_is_told(scenario, kefu):
    register(scenario)
    transfer(scenario)
    scenario.complete("department_handle", "department", p13_record())
    approval = scenario.task("approve_solution")
    assert approval["role"] == "supervisor" and "P13" in approval["rules"]
    assert scenario.ready_ids() == ["approve_solution"]  # the agent cannot tell the customer yet
    with pytest.raises(NotAllowed):
        kefu.tasks.complete(approval["id"], "agent", {"solution_approved": True})
    with pytest.raises(FormValidationError) as exc:  # a rejection gives its reason
        scenario.complete("approve_solution", "supervisor", {"solution_approved": False})
    assert set(exc.value.errors) == {"approval_note"}
    scenario.complete("approve_solution", "supervisor", {"solution_approved": False,
                                                         "approval_note": "责任人未查清"})
    assert scenario.ready_ids() == ["department_handle"]  # back to the department, with the reason
    assert scenario.show()["data"]["approval_note"] == "责任人未查清"
    scenario.handle(handling="已查清并整改")
    assert scenario.ready_ids() == ["feedback"]
    assert kefu.audit.verify(scenario.instance_id) == []


def test_p13_the_monthly_report_lists_verified_complaints_per_responsible_person(scenario, kefu):
    register(scenario)
    transfer(scenario)
    scenario.handle(person="technician", handling="已整改")
    verified = scenario.ticket_no
    register(scenario)
    transfer(scenario)
    scenario.handle(approve=None)  # recorded, not yet approved
    waiting = scenario.ticket_no
    register(scenario)
    transfer(scenario)
    scenario.handle(approve=None, acceptance="not_accepted", acceptance_reason="非本公司责任")
    refused = scenario.ticket_no
    section = kefu.kpi.live("2026-11", "supervisor")["accountability"]
    assert section["rule"] == "P13" and section["verified"] == 1
    [row] = section["people"]["technician"]["complaints"]
    assert row["ticket_no"] == verified and row["approved_by"] == "supervisor"
    assert row["responsible_department"] == "security_ops" and row["corrective_action"] == "全员服务规范培训"
    pending = {p["ticket_no"]: p["reason"] for p in section["pending"]}
    assert pending[waiting] == "awaiting the supervisor's approval"
    assert pending[refused] == "not accepted: 非本公司责任"
    page = Web(kefu).login_as("supervisor").page("/kpi/2026-11/report")
    section = page.split('id="p13"')[1].split("</section>")[0]
    assert verified in section and "待客服主管批准" in section and "不受理：非本公司责任" in section


def test_p5_the_supervisor_forms_the_task_force_from_department_staff_and_technicians(scenario, kefu):
    register(scenario, severity="major")
    with pytest.raises(FormValidationError) as exc:  # from the relevant departments, not any role
        scenario.complete("form_taskforce", "supervisor", {
            "task_force_members": ["qa"], "handling_requirement": "彻查", "handling_deadline": scenario.later(days=1)})
    assert set(exc.value.errors) == {"task_force_members"}
    scenario.complete("form_taskforce", "supervisor", {
        "task_force_members": ["department", "technician"], "handling_requirement": "彻查",
        "handling_deadline": scenario.later(days=1)})
    mine = {u: [t for t in kefu.tasks.ready(actor=u) if t["bpmn_id"] == "taskforce_investigate"]
            for u in ("department", "technician", "taskforce1")}
    assert [t["assignee"] for t in mine["department"]] == ["department"]
    assert [t["assignee"] for t in mine["technician"]] == ["technician"]
    assert mine["taskforce1"] == []  # a standing member not named for this ticket
    with pytest.raises(NotAllowed):  # a member works their own task, not a colleague's
        kefu.tasks.complete(mine["technician"][0]["id"], "department", {"finding": "x"})
    page = Web(kefu).login_as("department").page(f"/tasks/{mine['department'][0]['id']}")
    assert 'id="f-finding"' in page
    kefu.tasks.complete(mine["department"][0]["id"], "department", {"finding": "排班过长"})
    kefu.tasks.complete(mine["technician"][0]["id"], "technician", {"finding": "监控录像属实"})
    assert scenario.ready_ids() == ["consolidate"]
    first = scenario.ticket_no
    # membership is per ticket: another major complaint's task force is not theirs
    register(scenario, severity="major")
    scenario.complete("form_taskforce", "supervisor", {
        "task_force_members": ["taskforce1"], "handling_requirement": "彻查",
        "handling_deadline": scenario.later(days=1)})
    other = scenario.task("taskforce_investigate")
    with pytest.raises(NotAllowed):
        kefu.tasks.complete(other["id"], "department", {"finding": "x"})
    assert Web(kefu).login_as("department").get(f"/tasks/{other['id']}").status_code == 403
    assert first != scenario.ticket_no


def test_p13_running_complaints_finish_on_their_version(db_url, clock):
    """Item 5 of the issue: a complaint opened on the diagram before P12/P13 cannot move to the new version (its
    completed intake form changed), so it finishes on its own: no accountability record, no approval step."""
    from tests.conftest import PROCESSES
    from tests.factories import Scenario, diagram, make_kefu
    k = make_kefu(db_url, clock, deploy=(diagram("complaint_before_p13.bpmn"), PROCESSES / "sla.dmn"))
    old = Scenario(k)
    register(old)
    transfer(old)
    k.definitions.deploy([PROCESSES])
    new_version = max(d["version"] for d in k.definitions.all() if d["process_id"] == "complaint")
    reasons = k.designer.migration_check(old.instance_id, new_version)
    assert reasons and any("register" in r for r in reasons)
    old.complete("department_handle", "department", {"handling_result": "已整改"})  # the old form still holds
    assert old.ready_ids() == ["feedback"] and old.show()["definition"]["version"] < new_version
    fresh = Scenario(k)
    register(fresh)
    transfer(fresh)
    assert fresh.show()["definition"]["version"] == new_version
    fresh.handle()
    assert fresh.ready_ids() == ["feedback"]
    pending = {p["ticket_no"]: p["reason"] for p in k.kpi.live("2026-11")["accountability"]["pending"]}
    assert "earlier diagram version" in pending[old.ticket_no]
    k.db.dispose()
