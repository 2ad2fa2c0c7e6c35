"""P12 (004 七.(4)): the staff a complaint names never act on it; the supervisor is told when one owns it."""
import json
import os
import subprocess
import sys

import pytest

from engine import FormValidationError, NotAllowed
from tests.conftest import ROOT
from tests.test_complaint import register, transfer
from tests.webclient import Web


def test_p12_staff_named_in_a_complaint_cannot_claim_complete_reassign_or_escalate_its_tasks(scenario, kefu):
    register(scenario, staff_involved=["agent2", "department"])
    shown = scenario.show()
    assert shown["staff_involved"] == ["agent2", "department"] and shown["owner"] == "agent"
    done = scenario.events("task_completed")[0]
    assert "P12" in done["rules"] and done["data"]["staff_involved"] == ["agent2", "department"]
    transfer(scenario, accept=False)
    accept = scenario.task("department_accept")
    for act in (lambda: kefu.tasks.claim(accept["id"], "department"),
                lambda: kefu.tasks.complete(accept["id"], "department", {}),
                lambda: kefu.tasks.escalate(accept["id"], "agent2", "部门拖延")):
        with pytest.raises(NotAllowed) as exc:
            act()
        assert exc.value.details["rule"] == "P12"
    with pytest.raises(NotAllowed):  # nor may a supervisor give them the work
        kefu.tasks.reassign(accept["id"], "supervisor", "department")
    kefu.users.add("department2", ["department"], groups=["security_ops"])
    kefu.tasks.complete(accept["id"], "department2", {})
    scenario.handle(actor="department2", person="department")  # the person responsible may be the one named
    fb = scenario.task("feedback")
    kefu.tasks.unclaim(fb["id"], "agent")  # the owner puts it in the queue: still not for agent2
    with pytest.raises(NotAllowed):
        kefu.tasks.claim(fb["id"], "agent2")
    with pytest.raises(NotAllowed):
        kefu.tasks.complete(fb["id"], "agent2", {"satisfied": True})
    with pytest.raises(NotAllowed):  # nor be handed the case
        kefu.instances.set_owner(scenario.ticket_no, "agent2", "agent", "交班")
    kefu.tasks.complete(fb["id"], "agent", {"satisfied": True})
    assert kefu.audit.verify(scenario.instance_id) == []


def test_p12_when_the_owner_is_named_the_case_leaves_them_and_the_supervisor_is_told(scenario, kefu):
    register(scenario, staff_involved=["agent"])  # the agent took a complaint about themselves
    shown = scenario.show()
    assert shown["owner"] is None
    [found] = scenario.events("conflict_of_interest_found")
    assert found["rules"] == ["P12", "X1"] and found["data"]["owner"] == "agent"
    assert found["data"]["notify"] == "supervisor"
    t = scenario.task("transfer")
    assert t["assignee"] is None  # not offered to the named agent
    with pytest.raises(NotAllowed):
        kefu.tasks.claim(t["id"], "agent")
    assert [c["ticket_no"] for c in kefu.instances.needing_owner("supervisor")] == [scenario.ticket_no]
    with pytest.raises(NotAllowed):
        kefu.instances.needing_owner("agent")
    page = Web(kefu).login_as("supervisor").page("/inbox")
    assert 'id="q-needing"' in page and scenario.ticket_no in page.split('id="q-needing"')[1]
    with pytest.raises(NotAllowed):
        kefu.instances.set_owner(scenario.ticket_no, "agent", "supervisor", "回避")
    sup = Web(kefu).login_as("supervisor")
    assert Web(kefu).login_as("agent2").post(f"/cases/{scenario.ticket_no}/owner",
                                            {"to_user": "agent2", "reason": "我来"}).status_code == 403
    r = sup.post(f"/cases/{scenario.ticket_no}/owner", {"to_user": "agent2", "reason": "回避（P12）"})
    assert r.status_code == 302
    assert kefu.instances.needing_owner() == [] and scenario.show()["owner"] == "agent2"
    assert scenario.events("owner_changed")[-1]["actor"] == "supervisor"
    assert kefu.audit.verify(scenario.instance_id) == []


def test_p12_the_named_agent_gets_403_on_the_web_and_the_api(scenario, kefu):
    register(scenario, staff_involved=["agent2"])
    t = scenario.task("transfer")
    kefu.tasks.unclaim(t["id"], "agent")  # offered to the owner: into the queue
    web = Web(kefu).login_as("agent2")
    page = web.page(f"/tasks/{t['id']}")
    assert 'id="f-department"' not in page or "disabled" in page  # no form to submit
    assert web.post(f"/tasks/{t['id']}/claim", {}).status_code == 403
    form = {"department": "security_ops", "handling_requirement": "x", "handling_deadline": scenario.later(hours=2)}
    assert web.post(f"/tasks/{t['id']}", form).status_code == 403
    token = kefu.users.create_token("agent2")["token"]
    api = Web(kefu).client
    r = api.post(f"/api/v1/tasks/{t['id']}/claim", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and "P12" in r.get_json()["error"]["message"]
    assert scenario.events("task_claimed") == [] and scenario.task("transfer")["id"] == t["id"]


def test_p12_staff_named_in_a_major_complaint_cannot_join_its_task_force(scenario, kefu):
    register(scenario, severity="major", staff_involved=["department"])
    with pytest.raises(FormValidationError) as exc:
        scenario.complete("form_taskforce", "supervisor", {
            "task_force_members": ["department", "technician"], "handling_requirement": "彻查",
            "handling_deadline": scenario.later(days=1)})
    assert set(exc.value.errors) == {"task_force_members"} and "P12" in exc.value.errors["task_force_members"]


def test_p12_the_cli_refuses_the_named_agent_with_exit_code_3(tmp_path):
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "KEFU_ENV": "test",
           "KEFU_CLOCK": "2026-11-23T09:00:00+08:00"}

    def kefu_cli(*args, expect=0):
        p = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=120)
        assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
        return p
    kefu_cli("deploy", str(ROOT / "processes"))
    kefu_cli("demo")
    data = {"customer_name": "李先生", "contact_phone": "13800138000", "complaint_time": "2026-11-23T08:50",
            "content": "客服态度差", "nature": "service_attitude", "severity": "general",
            "staff_involved": ["agent2"]}
    started = json.loads(kefu_cli("start", "complaint", "--as", "agent", "--data", json.dumps(data), "--json").stdout)
    task = started["tasks"][0]["id"]
    kefu_cli("unclaim", task, "--as", "agent")
    p = kefu_cli("claim", task, "--as", "agent2", expect=3)
    assert "P12" in p.stderr
    kefu_cli("complete", task, "--as", "agent2", "--data", "{}", expect=3)
    p = kefu_cli("hand-over", started["ticket_no"], "--to", "agent2", "--as", "agent", "--reason", "交班", expect=3)
    assert "P12" in p.stderr
    [case] = json.loads(kefu_cli("cases", "--as", "agent", "--json").stdout)
    assert case["ticket_no"] == started["ticket_no"] and case["staff_involved"] == ["agent2"]
    assert [t["bpmn_id"] for t in case["tasks"]] == ["transfer"]
