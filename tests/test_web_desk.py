"""The agent's desk in the browser's terms: intake from the diagram's first form, customer lookup, inbox
queues, claiming, reassigning and completing tasks with server-side validation that loses nothing."""
from datetime import timedelta

from tests.test_complaint import register, transfer
from tests.webclient import Web, field_error, field_value

COMPLAINT = {"kefu_customer_id": "", "customer_name": "王女士", "contact_phone": "139 1234 5678",
             "complaint_time": "2026-11-23T08:40", "place": "浦东营业部", "content": "保安拒绝登记访客",
             "customer_demand": "说明原因", "nature": "service_quality", "severity": "urgent"}


def test_intake_form_is_the_first_task_of_the_diagram(web):
    web.login_as("agent")
    page = web.page("/new/complaint")
    for label in ("客户姓名", "联系电话", "投诉时间", "投诉内容", "客户要求", "投诉性质", "严重程度"):
        assert label in page
    assert 'type="datetime-local"' in page and "<textarea" in page and '<option value="major">重大</option>' in page
    repair = web.page("/new/repair")
    assert "故障现象" in repair and 'name="emergency" value="true"' in repair


def test_intake_opens_the_ticket_and_leads_to_the_next_task(web, kefu):
    web.login_as("agent")
    r = web.post("/new/complaint", COMPLAINT)
    assert r.status_code == 302
    [inst] = kefu.instances.recent()
    assert inst["severity"] == "urgent" and inst["customer"] == "王女士"
    [task] = kefu.tasks.ready(instance=inst["instance_id"])
    assert task["bpmn_id"] == "transfer" and r.location == f"/tasks/{task['id']}"
    assert inst["ticket_no"] in web.page(r.location)  # flash + the ticket beside the transfer form


def test_invalid_intake_keeps_everything_typed_and_creates_nothing(web, kefu):
    web.login_as("agent")
    typed = {**COMPLAINT, "content": "", "complaint_time": "昨天下午", "severity": "catastrophic"}
    r = web.post("/new/complaint", typed)
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    assert field_error(html, "content") == "必填"
    assert field_error(html, "complaint_time") == "请填写日期和时间"
    assert field_error(html, "severity") == "请从选项中选择"
    assert field_error(html, "place") is None
    assert field_value(html, "place") == "浦东营业部" and field_value(html, "customer_demand") == "说明原因"
    assert field_value(html, "complaint_time") == "昨天下午"
    assert '<option value="service_quality" selected>' in html
    assert kefu.instances.recent() == [] and len(kefu.customers.find("王女士")) == 0


def test_intake_for_a_chosen_customer_links_the_profile_and_shows_vip(web, kefu):
    web.login_as("agent")
    vip = kefu.customers.find("021-6321")[0]
    page = web.page(f"/new/complaint?customer={vip['id']}")
    # I4: the profile's number is prefilled masked (the agent has no case of this customer yet) ...
    assert field_value(page, "contact_phone") == "021*****0000" and 'class="vip"' in page
    assert "021-63210000" not in page
    r = web.post("/new/complaint", {**COMPLAINT, "kefu_customer_id": str(vip["id"]), "customer_name": vip["name"],
                                    "contact_phone": "021*****0000", "severity": "major"})
    assert r.status_code == 302
    shown = kefu.instances.show(kefu.instances.recent()[0]["instance_id"])
    assert shown["customer"]["id"] == vip["id"] and shown["vip"] is True
    assert shown["data"]["contact_phone"] == "021-63210000"  # ... and the ticket takes the profile's own


def test_customer_lookup_by_phone_digits_or_name_vip_first(web):
    web.login_as("agent")
    found = web.get("/api/customers?q=0216321").get_json()
    assert [c["name"] for c in found] == ["华东银行股份有限公司"] and found[0]["vip"] is True
    assert [c["name"] for c in web.get("/api/customers?q=李").get_json()] == ["李先生"]
    assert web.get("/api/customers?q=").get_json() == []


def test_customer_created_on_the_spot(web, kefu):
    web.login_as("agent")
    r = web.post_json("/api/customers", {"name": "赵总", "phone": "13700001111", "company": "赵氏物流", "vip": True})
    assert r.status_code == 201 and r.get_json()["vip"] is True
    assert kefu.customers.get(r.get_json()["id"])["company"] == "赵氏物流"
    bad = web.post_json("/api/customers", {"name": " ", "phone": "1"})
    assert bad.status_code == 400 and bad.get_json()["error"]["errors"]["name"] == "客户名称必填"
    no_token = web.client.post("/api/customers", json={"name": "无令牌"})
    assert no_token.status_code == 400 and not kefu.customers.find("无令牌")


def test_inbox_queues_counts_sorting_and_due_highlighting(scenario, kefu):
    register(scenario)
    transfer(scenario, hours=5)           # due in 5 h: plain (T-cap: a VIP work order, at most 6 h)
    first = scenario.ticket_no
    register(scenario)
    transfer(scenario, hours=2)           # due in 2 h: near
    near = scenario.ticket_no
    register(scenario, severity="major")  # supervisor's queue, no department task
    web = Web(kefu).login_as("department")
    page = web.page("/inbox")
    assert page.index(near) < page.index(first)  # soonest due first
    assert 'data-queue="department">2<' in page and 'data-queue="mine">0<' in page
    assert "剩余 2小时0分" in page and 'class="task-row near"' in page
    scenario.base.clock.advance(timedelta(hours=3))
    page = web.page("/inbox")
    assert 'class="task-row overdue"' in page and "已超时 1小时0分" in page
    sup = Web(kefu).login_as("supervisor").page("/inbox?severity=major")
    assert 'data-queue="supervisor">1<' in sup and "组建专项处理小组" in sup and near not in sup


def test_inbox_filters_by_kind(scenario, kefu):
    register(scenario)
    scenario.start("repair", {"customer_name": "李先生", "contact_phone": "13800138000", "fault_symptom": "门禁失灵",
                              "location": "北京", "emergency": False})
    web = Web(kefu).login_as("agent")
    assert 'data-queue="mine">2<' in web.page("/inbox")  # X1: offered to the agent who registered them
    repair_only = web.page("/inbox?kind=repair")
    assert 'data-queue="mine">1<' in repair_only and "填写报修派工单" in repair_only


def test_claim_unclaim_and_supervisor_reassign(scenario, kefu):
    register(scenario)
    transfer(scenario)
    task = scenario.task("department_handle")
    kefu.users.add("department2", ["department"])
    web = Web(kefu).login_as("department")
    assert web.post(f"/tasks/{task['id']}/claim").status_code == 302
    assert kefu.tasks.get(task["id"])["assignee"] == "department"
    assert 'data-queue="mine">1<' in web.page("/inbox")
    assert web.post(f"/tasks/{task['id']}/unclaim").status_code == 302
    assert kefu.tasks.get(task["id"])["assignee"] is None
    sup = Web(kefu).login_as("supervisor")
    sup.post(f"/tasks/{task['id']}/reassign", {"to_user": "department2"})
    assert kefu.tasks.get(task["id"])["assignee"] == "department2"
    refused = sup.post(f"/tasks/{task['id']}/reassign", {"to_user": "agent"}, follow_redirects=True)
    assert "不具备任务所需的角色" in refused.get_data(as_text=True)
    assert kefu.tasks.get(task["id"])["assignee"] == "department2"
    events = [e for e in scenario.events() if e["type"] == "task_reassigned"]
    assert [(e["actor"], e["data"]["assignee"]) for e in events] == [("supervisor", "department2")]


def test_task_page_shows_form_customer_history_and_earlier_steps(scenario, kefu):
    register(scenario)
    transfer(scenario)
    task = scenario.task("department_handle")
    page = Web(kefu).login_as("department").page(f"/tasks/{task['id']}")
    assert "处理措施" in page and "<textarea" in page                       # the form from the diagram (P13)
    assert "华东银行股份有限公司" in page and 'class="vip"' in page              # the customer, VIP
    assert "021-63210000" in page                                            # ready task: contact shown
    assert "登记投诉" in page and "保安值班时态度恶劣" in page and "服务态度" in page  # earlier steps, enum label
    assert "安保勤务部" in page and "调查并整改" in page                        # the transfer form's data
    assert "完成任务" in page and "P4" in page                                 # history with rule IDs


def test_completing_a_task_validates_on_the_server_and_keeps_what_was_typed(scenario, kefu):
    register(scenario, severity="major")
    task = scenario.task("form_taskforce")
    web = Web(kefu).login_as("supervisor")
    past = "2026-11-22T18:00"
    r = web.post(f"/tasks/{task['id']}", {"task_force_members": ["taskforce1", "taskforce2"],
                                          "handling_requirement": "彻查当班记录", "handling_deadline": past})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and field_error(html, "handling_deadline") == "必须晚于当前时间"
    assert field_value(html, "handling_requirement") == "彻查当班记录" and field_value(html, "handling_deadline") == past
    assert 'value="taskforce1" checked' in html and 'value="taskforce2" checked' in html
    assert scenario.ready_ids() == ["form_taskforce"]
    r = web.post(f"/tasks/{task['id']}", {"task_force_members": ["taskforce1", "agent"],
                                          "handling_requirement": "彻查", "handling_deadline": "2026-11-25T18:00"})
    assert field_error(r.get_data(as_text=True), "task_force_members") == "用户 agent 不具备“责任部门/维修人员/专项处理小组”角色"
    r = web.post(f"/tasks/{task['id']}", {"task_force_members": ["taskforce1", "taskforce2"],
                                          "handling_requirement": "彻查", "handling_deadline": "2026-11-25T18:00"})
    assert r.status_code == 302 and r.location == "/inbox"
    assert sorted(t["assignee"] for t in scenario.ready()) == ["taskforce1", "taskforce2"]


def test_double_submission_says_so_and_changes_nothing(scenario, kefu):
    register(scenario)
    task = scenario.task("transfer")
    web = Web(kefu).login_as("agent")
    form = {"department": "security_ops", "handling_requirement": "调查", "handling_deadline": "2026-11-23T14:00"}
    assert web.post(f"/tasks/{task['id']}", form).status_code == 302
    before = scenario.show()
    again = web.post(f"/tasks/{task['id']}", {**form, "handling_requirement": "第二次提交"})
    html = again.get_data(as_text=True)
    assert again.status_code == 409 and "这个任务已经被处理过了" in html and "没有保存" in html
    after = scenario.show()
    assert after["events"] == before["events"] and after["data"]["handling_requirement"] == "调查"


def test_agent_escalates_a_transferred_task_from_the_ticket(scenario, kefu):
    register(scenario)
    transfer(scenario)
    task = scenario.task("department_handle")
    agent = Web(kefu).login_as("agent")
    page = agent.page(f"/instances/{scenario.ticket_no}")
    assert f'/tasks/{task["id"]}/escalate' in page and "升级至主管" in page
    back = f"/instances/{scenario.ticket_no}"
    r = agent.post(f"/tasks/{task['id']}/escalate", {"reason": "  ", "next": back}, follow_redirects=True)
    assert "请填写升级原因" in r.get_data(as_text=True) and scenario.events("task_escalated") == []
    r = agent.post(f"/tasks/{task['id']}/escalate", {"reason": "安保勤务部两次催办未回复", "next": back})
    assert r.status_code == 302 and r.location == back
    [escalated] = scenario.events("task_escalated")
    ticket = escalated["data"]["escalation"]
    assert ticket.startswith("SJ") and scenario.task("department_handle")["id"] == task["id"]
    page = agent.page(back)
    assert ticket in page and "安保勤务部两次催办未回复" in page
    again = agent.post(f"/tasks/{task['id']}/escalate", {"reason": "再次升级", "next": back}, follow_redirects=True)
    assert "已经升级过" in again.get_data(as_text=True) and len(scenario.events("task_escalated")) == 1
    inbox = Web(kefu).login_as("supervisor").page("/inbox")
    assert ticket in inbox and "升级工单" in inbox
    # the agent's own tasks are not transferred: no escalate button there
    register(scenario)
    own = scenario.task("transfer")
    assert f'/tasks/{own["id"]}/escalate' not in agent.page(f"/tasks/{own['id']}")


def test_intake_with_a_vanished_customer_keeps_the_typing(web, kefu):
    web.login_as("agent")
    r = web.post("/new/complaint", {**COMPLAINT, "kefu_customer_id": "999"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "无法登记" in html and field_value(html, "place") == "浦东营业部"
    assert kefu.instances.recent() == []
