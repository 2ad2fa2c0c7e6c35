"""The app itself: password login, CSRF on every form, a persisted secret key, Chinese by default with an
English switch, the instance page with its diagram, and customer profiles kept up to date (I3)."""
import os
import stat

from webapp import create_app

from tests.conftest import sqlite_only
from tests.test_complaint import register, transfer
from tests.webclient import TOKEN, Web, field_error, field_value


def test_login_with_the_hashed_password_and_logout(kefu):
    kefu.users.add("wang", ["agent"], display_name="客服 王", password="s3cret-pw")
    web = Web(kefu)
    page = web.page("/login")
    assert "kefu-demo" not in page  # the demo password hint shows only when KEFU_ENV=demo
    token = TOKEN.search(page)[1]
    bad = web.client.post("/login", data={"csrf_token": token, "username": "wang", "password": "wrong"})
    assert bad.status_code == 401 and "用户名或密码不正确" in bad.get_data(as_text=True)
    ok = web.client.post("/login?next=/new/complaint", data={"csrf_token": token, "username": "wang",
                                                             "password": "s3cret-pw"})
    assert ok.status_code == 302 and ok.location == "/new/complaint"
    assert "客服 王" in web.page("/inbox")
    assert web.client.post("/logout", data={"csrf_token": web.csrf()}).status_code == 302
    assert web.get("/inbox").status_code == 302


def test_login_never_redirects_off_site(kefu):
    kefu.users.add("wang", ["agent"], password="s3cret-pw")
    web = Web(kefu)
    token = TOKEN.search(web.page("/login"))[1]
    r = web.client.post("/login?next=//evil.example/", data={"csrf_token": token, "username": "wang",
                                                             "password": "s3cret-pw"})
    assert r.location == "/inbox"


def test_forms_without_a_csrf_token_change_nothing(scenario, kefu):
    register(scenario)
    task = scenario.task("transfer")
    web = Web(kefu).login_as("agent")
    r = web.client.post(f"/tasks/{task['id']}", data={"department": "hr", "handling_requirement": "x",
                                                      "handling_deadline": "2026-11-23T14:00"})
    assert r.status_code == 400 and "安全令牌" in r.get_data(as_text=True)
    assert web.client.post("/login", data={"username": "agent", "password": "x"}).status_code == 400
    assert scenario.ready_ids() == ["transfer"]


@sqlite_only("the key file is kept beside a SQLite database file; PostgreSQL has no such folder")
def test_secret_key_is_generated_once_and_kept_beside_the_database(kefu, tmp_path, monkeypatch):
    monkeypatch.delenv("KEFU_SECRET_KEY", raising=False)
    first = create_app({"TESTING": True}, kefu=kefu).config["SECRET_KEY"]
    key_file = tmp_path / "kefu-secret.key"
    assert key_file.read_text() == first and len(first) == 64
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert create_app({"TESTING": True}, kefu=kefu).config["SECRET_KEY"] == first
    monkeypatch.setenv("KEFU_SECRET_KEY", "from-the-environment")
    assert create_app({"TESTING": True}, kefu=kefu).config["SECRET_KEY"] == "from-the-environment"


def test_chinese_by_default_english_by_switch(scenario, kefu):
    register(scenario)
    task = scenario.task("transfer")
    web = Web(kefu).login_as("agent")
    zh = web.page(f"/tasks/{task['id']}")
    assert '<html lang="zh-CN">' in zh and "填写投诉转办单" in zh and "责任部门" in zh and "安保勤务部" in zh
    r = web.get(f"/lang/en?next=/tasks/{task['id']}")
    assert r.status_code == 302 and r.location == f"/tasks/{task['id']}"
    en = web.page(f"/tasks/{task['id']}")
    assert '<html lang="en">' in en
    for text in ("Fill complaint transfer form", "Responsible department", "Security operations", "Submit",
                 "Earlier steps", "Register complaint", "Service attitude", "Inbox", "Sign out"):
        assert text in en, text
    assert "提交" not in en and "前序环节" not in en
    r = web.post(f"/tasks/{task['id']}", {"department": "", "handling_requirement": "x",
                                          "handling_deadline": "2026-11-20T10:00"})
    html = r.get_data(as_text=True)
    assert field_error(html, "department") == "Required"
    assert field_error(html, "handling_deadline") == "Must be later than now"
    web.get("/lang/zh")
    assert "提交" in web.page(f"/tasks/{task['id']}")


def test_times_are_shown_in_shanghai_time(scenario, kefu):
    register(scenario)
    transfer(scenario, hours=5)  # 09:00 Shanghai + 5 h
    task = scenario.task("department_handle")
    page = Web(kefu).login_as("department").page("/inbox")
    assert "2026-11-23 14:00" in page and task["due_at"] == "2026-11-23T14:00:00+08:00"


def test_instance_page_shows_status_deadlines_timeline_and_diagram(scenario, kefu):
    register(scenario)
    transfer(scenario, hours=6)  # T-cap: a VIP work order
    web = Web(kefu).login_as("agent")
    page = web.page(f"/instances/{scenario.ticket_no}")
    assert scenario.ticket_no in page and "处理中" in page and "部门处理" in page
    assert 'data-current="department_handle"' in page and "register" in page.split('data-done="')[1][:60]
    assert "2026-11-23 15:00" in page                                     # the department's due time
    assert 'data-clock="finish" data-state="running"' in page and "剩余 6小时0分" in page  # T-stop: it runs
    assert "工单创建" in page and "完成任务" in page and "P4" in page          # timeline with rules
    assert "/static/vendor/bpmn-js/bpmn-navigated-viewer.production.min.js" in page
    xml = web.get(f"/instances/{scenario.ticket_no}/diagram.xml")
    assert xml.status_code == 200 and xml.mimetype == "application/xml"
    assert b'<bpmn:userTask id="department_handle"' in xml.data and b"bpmndi:BPMNDiagram" in xml.data
    js = web.get("/static/vendor/bpmn-js/bpmn-navigated-viewer.production.min.js")
    assert js.status_code == 200 and b"bpmn-js" in js.data[:200]
    js.close()


def test_customer_profile_is_kept_up_to_date_and_refusals_keep_the_typing(kefu):
    vip = kefu.customers.find("021-6321")[0]
    web = Web(kefu).login_as("agent")
    url = f"/customers/{vip['id']}"
    form = {k: vip[k] or "" for k in ("name", "phone", "email", "company", "address", "region", "needs")}
    r = web.post(url, {**form, "name": " ", "email": "security@hdbank.example", "vip": "on"})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and field_error(html, "name") == "客户名称必填"
    assert field_value(html, "email") == "security@hdbank.example"
    assert kefu.customers.get(vip["id"])["email"] is None
    r = web.post(url, {**form, "email": "security@hdbank.example", "vip": "on"})
    assert r.status_code == 302 and kefu.customers.get(vip["id"])["email"] == "security@hdbank.example"
    assert kefu.customers.get(vip["id"])["vip"] is True


def test_supervisor_edits_keep_hidden_contact_details(kefu):
    """A supervisor sees masked contact fields (I4); saving the profile must not wipe them."""
    vip = kefu.customers.find("021-6321")[0]
    web = Web(kefu).login_as("supervisor")
    page = web.page(f"/customers/{vip['id']}")
    assert "021-63210000" not in page
    r = web.post(f"/customers/{vip['id']}", {"name": vip["name"], "phone": "", "address": "", "needs": "加装监控",
                                             "vip": "on"})
    assert r.status_code == 302
    after = kefu.customers.get(vip["id"])
    assert after["phone"] == "021-63210000" and after["address"] == vip["address"] and after["needs"] == "加装监控"


def test_customer_page_lists_all_their_tickets(scenario, kefu):
    register(scenario)
    first = scenario.ticket_no
    register(scenario, severity="major")
    customer_id = scenario.show()["customer"]["id"]
    page = Web(kefu).login_as("qa").page(f"/customers/{customer_id}")
    assert first in page and scenario.ticket_no in page and 'class="vip"' in page


def test_errors_outside_the_api_are_pages_in_the_users_language(kefu, caplog):
    """A wrong month, a wrong method and a failing view show Kefu's own page in Chinese (English by the
    switch), never the framework's English one; the API keeps answering JSON."""
    web = Web(kefu, PROPAGATE_EXCEPTIONS=False).login_as("supervisor")
    r = web.get("/kpi?month=garbage")
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and "请求有误" in page and "没有保存任何内容" in page and "garbage" in page
    r = web.client.put("/inbox")
    assert r.status_code == 405 and "不支持这种操作" in r.get_data(as_text=True) and "GET" in r.headers["Allow"]
    r = web.client.put("/api/v1/tasks")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"

    def broken(*_a, **_k):
        raise RuntimeError("secret internals")
    kefu.tasks.ready = broken
    r = web.get("/inbox")
    page = r.get_data(as_text=True)
    assert r.status_code == 500 and "服务出错" in page and "错误已记录" in page
    assert "secret internals" not in page and "Traceback" not in page
    assert "secret internals" in caplog.text  # logged for the administrator
    web.client.set_cookie("kefu_lang", "en")
    page = web.get("/inbox").get_data(as_text=True)
    assert "Service error" in page and "服务出错" not in page
