"""Every action checks the role and the task's lane in the view as well as in the engine: a wrong role gets
403 (or 404) and nothing changes."""
import pytest

from tests.test_complaint import register, transfer
from tests.webclient import Web


@pytest.fixture
def transferred(scenario):
    """A general complaint waiting in the department lane."""
    register(scenario)
    transfer(scenario)
    return scenario


def unchanged(scenario, before):
    after = scenario.show()
    assert after["events"] == before["events"] and after["tasks"] == before["tasks"]


@pytest.mark.parametrize("who", ["technician", "taskforce1"])
def test_viewing_another_lanes_task_is_refused(transferred, kefu, who):
    task = transferred.task("department_handle")
    r = Web(kefu).login_as(who).get(f"/tasks/{task['id']}")
    assert r.status_code == 403 and "没有权限" in r.get_data(as_text=True)


def test_a_ticket_reader_opens_its_task_pages_read_only(transferred, kefu):
    """QA reads every ticket (its page), so its task pages too, without a form to submit."""
    task = transferred.task("department_handle")
    r = Web(kefu).login_as("qa").get(f"/tasks/{task['id']}")
    assert r.status_code == 200 and 'name="handling_result"' not in r.get_data(as_text=True)


def test_guessing_a_task_id_finds_nothing(kefu):
    web = Web(kefu).login_as("agent")
    assert web.get("/tasks/00000000-0000-0000-0000-000000000000").status_code == 404
    assert web.get("/tasks/not-a-task").status_code == 404


@pytest.mark.parametrize("action, who, form", [
    ("", "agent", {"handling_result": "冒名处理"}),              # complete another lane's task
    ("", "technician", {"handling_result": "冒名处理"}),
    ("", "supervisor", {"handling_result": "冒名处理"}),
    ("/reassign", "agent", {"to_user": "department2"}),         # reassign: supervisors only
    ("/reassign", "department", {"to_user": "department2"}),
    ("/reassign", "auditor", {"to_user": "department2"}),
    ("/escalate", "department", {"reason": "部门拖延"}),          # escalate: agents and supervisors
    ("/escalate", "auditor", {"reason": "部门拖延"}),
    ("/escalate", "technician", {"reason": "部门拖延"}),
])
def test_wrong_role_actions_are_refused_and_change_nothing(transferred, kefu, action, who, form):
    task = transferred.task("department_handle")
    kefu.users.add("department2", ["department"])
    before = transferred.show()
    r = Web(kefu).login_as(who).post(f"/tasks/{task['id']}{action}", form)
    assert r.status_code == 403
    unchanged(transferred, before)


def test_claiming_another_lanes_task_is_refused(transferred, kefu):
    task = transferred.task("department_handle")
    before = transferred.show()
    for who in ("agent", "supervisor", "technician"):
        assert Web(kefu).login_as(who).post(f"/tasks/{task['id']}/claim").status_code == 403
    unchanged(transferred, before)


def test_only_the_assignee_or_a_supervisor_may_unclaim(transferred, kefu):
    task = transferred.task("department_handle")
    kefu.users.add("department2", ["department"])
    kefu.tasks.claim(task["id"], "department")
    before = transferred.show()
    assert Web(kefu).login_as("department2").post(f"/tasks/{task['id']}/unclaim").status_code == 403
    assert Web(kefu).login_as("technician").post(f"/tasks/{task['id']}/unclaim").status_code == 403
    unchanged(transferred, before)
    assert Web(kefu).login_as("supervisor").post(f"/tasks/{task['id']}/unclaim").status_code == 302
    assert kefu.tasks.get(task["id"])["assignee"] is None


def test_a_claimed_task_cannot_be_completed_by_a_colleague(transferred, kefu):
    task = transferred.task("department_handle")
    kefu.users.add("department2", ["department"])
    kefu.tasks.claim(task["id"], "department")
    before = transferred.show()
    r = Web(kefu).login_as("department2").post(f"/tasks/{task['id']}", {"handling_result": "抢着处理"})
    assert r.status_code == 403
    unchanged(transferred, before)


@pytest.mark.parametrize("who", ["department", "technician", "taskforce1"])
def test_starting_tickets_and_customer_lookup_need_agent_or_supervisor(kefu, who):
    web = Web(kefu).login_as(who)
    assert web.get("/new/complaint").status_code == 403
    assert web.post("/new/complaint", {"customer_name": "x"}).status_code == 403
    assert web.get("/api/customers?q=021").status_code == 403
    assert web.post_json("/api/customers", {"name": "偷建客户"}).status_code == 403
    assert kefu.instances.recent() == [] and not kefu.customers.find("偷建客户")


def test_instance_page_needs_a_role_or_a_task_on_the_ticket(transferred, kefu):
    ticket = transferred.ticket_no
    assert Web(kefu).login_as("technician").get(f"/instances/{ticket}").status_code == 403
    assert Web(kefu).login_as("technician").get(f"/instances/{ticket}/diagram.xml").status_code == 403
    assert Web(kefu).login_as("department").get(f"/instances/{ticket}").status_code == 200
    assert Web(kefu).login_as("auditor").get(f"/instances/{ticket}").status_code == 200


def test_customer_contact_details_only_where_the_ticket_needs_them(transferred, kefu):
    customer_id = transferred.show()["customer"]["id"]
    url = f"/customers/{customer_id}"
    assert Web(kefu).login_as("technician").get(url).status_code == 403          # no ticket of theirs
    full = Web(kefu).login_as("agent").page(url)
    assert "021-63210000" in full and "上海市黄浦区中山东一路 18 号" in full
    for who in ("supervisor", "auditor", "qa"):                                  # oversight, no ready task
        masked = Web(kefu).login_as(who).page(url)
        assert "021-63210000" not in masked and "021*****0000" in masked
        assert "上海市黄浦区中山东一路 18 号" not in masked
    dept = Web(kefu).login_as("department").page(url)                            # a ready task on their ticket
    assert "021-63210000" in dept
    transferred.handle(handling="已处理")
    assert Web(kefu).login_as("department").get(url).status_code == 403          # task done: no longer


def test_customer_profile_edits_need_agent_or_supervisor(kefu):
    vip = kefu.customers.find("021-6321")[0]
    before = kefu.customers.get(vip["id"])
    for who in ("auditor", "qa", "department"):
        r = Web(kefu).login_as(who).post(f"/customers/{vip['id']}", {"name": "改名", "phone": "1"})
        assert r.status_code == 403
    assert kefu.customers.get(vip["id"]) == before


def test_pages_need_a_login(kefu):
    client = Web(kefu).client
    for url in ("/inbox", "/new/complaint", "/overview", "/customers/1"):
        r = client.get(url)
        assert r.status_code == 302 and r.location.startswith("/login?next=")
    assert client.get("/api/customers?q=1").status_code == 401
