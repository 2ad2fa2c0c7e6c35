"""The engine methods the web layer needs: reassigning (supervisor only, to a user holding the role, audited),
the intake form of a process, the forms of an instance's steps, its diagram XML and one user by name."""
import pytest

from engine import Conflict, InvalidInput, NotAllowed, NotFound
from tests.test_complaint import register, transfer
from tests.test_repair import dispatch, register as register_repair
from tests.factories import p13_record
from tests.webclient import Web


def test_reassign_is_for_supervisors_to_a_user_holding_the_role_and_is_audited(scenario):
    register(scenario)
    transfer(scenario)
    k = scenario.k
    task = scenario.task("department_handle")
    k.users.add("department2", ["department"])
    with pytest.raises(NotAllowed):
        k.tasks.reassign(task["id"], "agent", "department2")
    with pytest.raises(InvalidInput):
        k.tasks.reassign(task["id"], "supervisor", "technician")
    with pytest.raises(InvalidInput):
        k.tasks.reassign(task["id"], "supervisor", "ghost")
    k.users.add("dept_hr", ["department"], groups=["hr"])
    with pytest.raises(InvalidInput, match="group security_ops"):
        k.tasks.reassign(task["id"], "supervisor", "dept_hr")
    assert scenario.events("task_reassigned") == []
    assert k.tasks.reassign(task["id"], "supervisor", "department2")["assignee"] == "department2"
    assert k.tasks.reassign(task["id"], "supervisor", "department2")["assignee"] == "department2"  # no-op
    [event] = scenario.events("task_reassigned")
    assert event["actor"] == "supervisor" and event["data"] == {"previous_assignee": None, "assignee": "department2"}
    with pytest.raises(NotAllowed):
        k.tasks.complete(task["id"], "department", p13_record("不是我的了"))
    k.tasks.complete(task["id"], "department2", p13_record("已处理"))
    with pytest.raises(Conflict):
        k.tasks.reassign(task["id"], "supervisor", "department")
    assert k.audit.verify(scenario.instance_id) == []


def test_start_form_is_the_first_user_task_of_the_latest_version(kefu):
    for kind in ("consultation", "complaint", "repair"):
        form = kefu.instances.start_form(kind)
        assert form["bpmn_id"] == "register" and form["version"] == 1
        assert {"customer_name", "contact_phone"} <= {f["id"] for f in form["form"]}
    assert kefu.instances.start_form("complaint")["name_en"] == "Register complaint"
    with pytest.raises(NotFound):
        kefu.instances.start_form("weather")


def test_steps_and_diagram_of_an_instance(scenario):
    register(scenario)
    steps = scenario.k.instances.steps(scenario.ticket_no)
    assert steps["transfer"]["name_en"] == "Fill complaint transfer form"
    assert [f["id"] for f in steps["transfer"]["form"]] == ["department", "handling_requirement", "handling_deadline"]
    diagram = scenario.k.instances.diagram_xml(scenario.instance_id)
    assert diagram["process_id"] == "complaint" and '<bpmn:userTask id="transfer"' in diagram["xml"]
    assert scenario.k.users.get("agent")["roles"] == ["agent"] and scenario.k.users.get("ghost") is None


def test_repair_ticket_page_shows_its_work_order_deadlines(scenario, kefu):
    register_repair(scenario)
    dispatch(scenario, accept=False)
    shown = scenario.show()
    assert shown["deadlines"], "the repair diagram sets its work-order clocks"
    page = Web(kefu).login_as("agent").page(f"/instances/{scenario.ticket_no}?trail=audit")  # with the engine's steps
    for key in shown["deadlines"]:
        assert {"response": "响应时限", "finish": "完成时限"}[key] in page
