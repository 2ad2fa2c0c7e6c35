"""I3, I4: customer contact data is confidential. One policy (engine.services.masking) shows it in full only to
the agent who owns the case and to whoever holds a ready task on it; everyone else, auditors, supervisors, QA
and process owners included, reads ``138****5678`` on every page, API answer, trace, export and CLI output.
A permitted user reveals a value with a reason, recorded as ``value_revealed``; every profile change is
recorded (I3). Task pages open only to those who may act on the task or read its ticket."""
from __future__ import annotations

import json
import re

import pytest

from tests.factories import p13_record

from engine import cli, clock as clock_mod
from engine.services.demo import DEMO_USERS
from tests.test_complaint import register, transfer
from tests.webclient import Web

PHONE, MASKED = "13812345678", "138****5678"
EMAIL, ADDRESS = "zhang.san@example.com", "上海市徐汇区漕溪北路 595 号"
SECRETS = (PHONE, EMAIL, ADDRESS)
EVERYONE = [name for name, _roles, _display in DEMO_USERS]
# After registration (by "agent") and the transfer, only the department's task is ready: the case owner and
# the department hold the case; nobody else does.
SERVING = {"agent", "department"}


@pytest.fixture
def case(scenario, kefu):
    """A complaint of a new customer (phone, e-mail, address), registered by ``agent``, with the department."""
    register(scenario, customer_name="张三", contact_phone=PHONE)
    customer_id = scenario.show()["customer"]["id"]
    kefu.customers.update(customer_id, {"email": EMAIL, "address": ADDRESS}, actor="agent")
    transfer(scenario)
    assert scenario.ready_ids() == ["department_handle"]
    return {"ticket": scenario.ticket_no, "instance_id": scenario.instance_id, "customer_id": customer_id,
            "task_id": scenario.task("department_handle")["id"], "scenario": scenario}


def _fill(rule, case, fmt) -> str:
    values = {"ref": case["ticket"], "instance": case["ticket"], "ticket": case["ticket"],
              "task_id": case["task_id"], "customer_id": case["customer_id"], "kind": "complaint",
              "fmt": fmt, "process_id": "complaint", "version": "1", "month": "2026-11", "key": "K2",
              "code": "en"}

    def value(match):
        name = match[1].split(":")[-1]
        return str(values.get(name, "1"))
    return re.sub(r"<([^>]+)>", value, rule.rule)


def _read_urls(app, case) -> list[str]:
    """Every readable URL of the app (its URL map, so routes added later are walked too), path parameters
    filled with the case's ticket, task and customer, and the search pages asked for the customer."""
    urls = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        for fmt in ("csv", "json"):
            urls.add(_fill(rule, case, fmt))
    queries = {"/customers": "?q=张三", "/api/customers": "?q=张三", "/api/v1/customers": "?q=张三",
               "/audit": "?customer=张三", "/audit/export.csv": "?customer=张三",
               "/audit/export.json": "?customer=张三", "/api/v1/tasks": f"?instance={case['ticket']}"}
    return sorted(urls | {u + q for u, q in queries.items()})


def test_i4_no_route_or_api_endpoint_shows_a_full_phone_to_whom_it_is_masked(case, kefu):
    web = Web(kefu)
    web.app.config["LIVE_STREAM_SECONDS"] = 0.2  # the live event stream is walked too, but ends at once
    urls = _read_urls(web.app, case)
    assert len(urls) >= 40 and any(u.startswith("/api/v1/instances/") for u in urls), urls
    seen_by = {}
    for who in EVERYONE:
        web.login_as(who)
        token = kefu.users.create_token(who, label="i4")["token"]
        answered = []
        for url in urls:
            r = web.client.get(url, headers={"Authorization": f"Bearer {token}"})
            body = r.get_data(as_text=True)
            if who not in SERVING:
                for secret in SECRETS:
                    assert secret not in body, (who, url, r.status_code, secret)
            if PHONE in body or MASKED in body:
                answered.append(url)
            seen_by.setdefault(who, {})[url] = (r.status_code, PHONE in body, MASKED in body)
        assert answered or who in ("technician", "technician2", "taskforce1", "taskforce2"), who
    ticket_page, api_one = f"/instances/{case['ticket']}", f"/api/v1/instances/{case['ticket']}"
    task_page = f"/tasks/{case['task_id']}"
    for who in SERVING:  # the case owner and the holder of the ready task read it in full
        for url in (ticket_page, api_one, task_page):
            assert seen_by[who][url][:2] == (200, True), (who, url, seen_by[who][url])
    for who in ("supervisor", "qa", "auditor", "owner", "agent2"):  # everyone else reads it masked
        for url in (ticket_page, api_one, task_page):
            assert seen_by[who][url] == (200, False, True), (who, url, seen_by[who][url])
    for url in (f"/audit/{case['ticket']}", f"/audit/{case['ticket']}.json", f"/audit/{case['ticket']}.csv"):
        assert seen_by["auditor"][url] == (200, False, True), url


def test_i4_an_auditor_reading_any_ticket_task_or_export_sees_the_masked_phone(case, kefu):
    """Tried as a new user would: the auditor opens the ticket, its task, its trace and the exports."""
    web = Web(kefu).login_as("auditor")
    for url in (f"/instances/{case['ticket']}", f"/tasks/{case['task_id']}", f"/audit/{case['ticket']}",
                f"/audit/{case['ticket']}.json", f"/audit/{case['ticket']}.csv", f"/customers/{case['customer_id']}"):
        body = web.page(url)
        assert MASKED in body and PHONE not in body, url
    task = web.page(f"/tasks/{case['task_id']}")
    panel = task[task.index("前序环节"):]
    assert MASKED in panel and PHONE not in panel  # the earlier steps' intake form, masked by field
    assert 'action="/instances/%s/reveal"' % case["ticket"] in task  # with the reveal form beside it
    trace = json.loads(web.page(f"/audit/{case['ticket']}.json"))
    registered = next(e for e in trace["events"] if e["type"] == "task_completed")
    assert registered["data"]["contact_phone"] == MASKED


def test_i4_the_cli_masks_show_and_exports_unless_run_as_the_case_owner(case, kefu, monkeypatch, capsys):
    monkeypatch.setenv("KEFU_DATABASE_URL", kefu.config.database_url)
    monkeypatch.setenv("KEFU_ENV", "test")
    try:
        for argv, full in ((["show", case["ticket"], "--json"], False),
                           (["show", case["ticket"], "--json", "--as", "auditor"], False),
                           (["show", case["ticket"], "--json", "--as", "agent"], True),
                           (["audit", "export", case["ticket"]], False),
                           (["audit", "export", case["ticket"], "--format", "csv", "--as", "supervisor"], False),
                           (["customers", "show", str(case["customer_id"]), "--json"], False),
                           (["customers", "find", "张三", "--json", "--as", "department"], True)):
            assert cli.main(argv) == 0, argv
            out = capsys.readouterr().out
            assert (PHONE in out) is full and (MASKED in out) is not full, argv
    finally:
        clock_mod.use(kefu.clock)


def test_i4_the_holder_of_a_ready_task_loses_the_full_value_when_the_task_is_done(case, kefu):
    assert kefu.masking.sees_full("department", case["ticket"])
    case["scenario"].complete("department_handle", "department", p13_record("已整改"))
    assert not kefu.masking.sees_full("department", case["ticket"])
    assert kefu.masking.sees_full("agent", case["ticket"])  # the owner, until the case closes and after


# ------------------------------------------------------------------------------------------------ reveal
def test_i4_a_supervisor_reveals_a_value_with_a_reason_and_it_is_recorded(case, kefu):
    web = Web(kefu).login_as("supervisor")
    page = web.page(f"/instances/{case['ticket']}")
    assert 'action="/instances/%s/reveal"' % case["ticket"] in page
    r = web.post(f"/instances/{case['ticket']}/reveal", {"field": "phone", "reason": "客户来电要求回拨"})
    assert r.status_code == 200 and PHONE in r.get_data(as_text=True)
    revealed = [e for e in kefu.instances.show(case["ticket"])["events"] if e["type"] == "value_revealed"]
    assert len(revealed) == 1 and revealed[0]["actor"] == "supervisor" and revealed[0]["rules"] == ["I4"]
    assert revealed[0]["data"] == {"field": "phone", "reason": "客户来电要求回拨"}  # never the value
    assert kefu.audit.verify(case["ticket"]) == []  # the chain holds the reveal
    assert PHONE not in web.page(f"/instances/{case['ticket']}")  # a reveal shows once, it grants nothing


def test_i4_a_reveal_without_a_reason_or_by_a_role_without_oversight_is_refused(case, kefu):
    before = len(kefu.instances.show(case["ticket"])["events"])
    r = Web(kefu).login_as("auditor").post(f"/instances/{case['ticket']}/reveal", {"field": "phone", "reason": " "})
    assert r.status_code == 400 and PHONE not in r.get_data(as_text=True)
    r = Web(kefu).login_as("agent2").post(f"/instances/{case['ticket']}/reveal", {"field": "phone", "reason": "看看"})
    assert r.status_code == 403 and PHONE not in r.get_data(as_text=True)
    r = Web(kefu).login_as("auditor").post(f"/instances/{case['ticket']}/reveal",
                                           {"field": "severity", "reason": "审计抽查"})
    assert r.status_code == 400
    assert len(kefu.instances.show(case["ticket"])["events"]) == before
    # the auditor (read-only everywhere else) may reveal: it changes no record and is itself recorded
    r = Web(kefu).login_as("auditor").post(f"/instances/{case['ticket']}/reveal",
                                           {"field": "contact_phone", "reason": "审计抽查"})
    assert r.status_code == 200 and PHONE in r.get_data(as_text=True)
    assert len(kefu.instances.show(case["ticket"])["events"]) == before + 1


def test_i4_reveal_through_the_api_and_the_cli(case, kefu, monkeypatch, capsys):
    from tests.test_api import Api
    web = Web(kefu)
    qa = Api(web.app, kefu.users.create_token("qa", label="t")["token"])
    status, body = qa.post(f"/instances/{case['ticket']}/reveal", {"field": "phone"})
    assert status == 400 and body["error"]["code"] == "invalid_input"
    status, body = qa.post(f"/instances/{case['ticket']}/reveal", {"field": "phone", "reason": "质检回访核对"})
    assert status == 200 and body["value"] == PHONE
    status, body = qa.post(f"/customers/{case['customer_id']}/reveal", {"field": "email", "reason": "质检回访核对"})
    assert status == 200 and body["value"] == EMAIL
    dept = Api(web.app, kefu.users.create_token("technician", label="t")["token"])
    status, body = dept.post(f"/instances/{case['ticket']}/reveal", {"field": "phone", "reason": "x"})
    assert status == 403
    monkeypatch.setenv("KEFU_DATABASE_URL", kefu.config.database_url)
    monkeypatch.setenv("KEFU_ENV", "test")
    try:
        assert cli.main(["reveal", case["ticket"], "--field", "phone", "--as", "auditor", "--reason", " "]) == 2
        assert cli.main(["reveal", case["ticket"], "--field", "phone", "--as", "agent2", "--reason", "x"]) == 3
        capsys.readouterr()
        assert cli.main(["reveal", case["ticket"], "--field", "phone", "--as", "auditor", "--reason", "抽查"]) == 0
        assert PHONE in capsys.readouterr().out
        with pytest.raises(SystemExit) as no_reason:
            cli.main(["reveal", case["ticket"], "--field", "phone", "--as", "auditor"])
        assert no_reason.value.code == 2
    finally:
        clock_mod.use(kefu.clock)
    revealed = [e for e in kefu.instances.show(case["ticket"])["events"] if e["type"] == "value_revealed"]
    assert [e["actor"] for e in revealed] == ["qa", "auditor"]
    log = kefu.customers.history(case["customer_id"])
    assert log[0]["type"] == "value_revealed" and log[0]["actor"] == "qa" and EMAIL not in json.dumps(log)


# --------------------------------------------------------------------------------------------- task pages
@pytest.mark.parametrize("who", ["technician", "taskforce1"])
def test_i4_a_task_page_is_refused_to_whom_neither_acts_on_it_nor_reads_its_ticket(case, kefu, who):
    assert Web(kefu).login_as(who).get(f"/tasks/{case['task_id']}").status_code == 403
    from tests.test_api import Api
    api = Api(Web(kefu).app, kefu.users.create_token(who, label="t")["token"])
    assert api.get(f"/tasks/{case['task_id']}")[0] == 403


def test_i4_a_department_user_of_another_group_cannot_open_the_task(case, kefu):
    task = kefu.tasks.get(case["task_id"])
    group = task["candidate_group"]
    assert group  # the department chosen at the transfer
    kefu.users.add("dept_other", ["department"], groups=["another_department"])
    kefu.users.add("dept_same", ["department"], groups=[group])
    assert Web(kefu).login_as("dept_other").get(f"/tasks/{case['task_id']}").status_code == 403
    assert Web(kefu).login_as("dept_other").get(f"/instances/{case['ticket']}").status_code == 403
    page = Web(kefu).login_as("dept_same").page(f"/tasks/{case['task_id']}")
    assert PHONE in page  # a candidate of the ready task serves the case


# ------------------------------------------------------------------------------------------------- I3
def test_i3_every_profile_change_is_recorded_with_masked_values(case, kefu):
    cid = case["customer_id"]
    web = Web(kefu).login_as("supervisor")
    r = web.post(f"/customers/{cid}", {"name": "张三", "phone": "", "email": "", "address": "",
                                       "company": "张氏贸易", "region": "上海"})
    assert r.status_code == 302
    kefu.customers.update(cid, {"phone": "13900001111"}, actor="agent")
    log = kefu.customers.history(cid)
    assert [e["type"] for e in log][:2] == ["customer_updated", "customer_updated"]
    assert log[0]["actor"] == "agent" and log[0]["data"]["changes"] == {
        "phone": {"from": MASKED, "to": "139****1111"}}
    assert log[1]["actor"] == "supervisor" and set(log[1]["data"]["fields"]) == {"company", "region"}
    assert log[1]["data"]["rules"] == "I3"
    rendered = json.dumps(log, ensure_ascii=False)
    assert PHONE not in rendered and "13900001111" not in rendered and EMAIL not in rendered
    security = kefu.security.events(50)  # the append-only security log auditors read
    # created at the intake, the fixture's e-mail and address, the supervisor's edit, the agent's
    assert sum(e["subject"] == f"customer:{cid}" for e in security) == 4
    created = log[-1]
    assert created["type"] == "customer_created" and created["actor"] == "agent"
    assert created["data"]["changes"]["phone"] == {"to": MASKED} and created["data"]["changes"]["name"] == {"to": "张三"}
    page = Web(kefu).login_as("auditor").page(f"/customers/{cid}")
    assert "变更记录" in page and "张氏贸易" in page and "139****1111" in page and "13900001111" not in page


def test_i3_profile_changes_from_the_api_and_cli_are_recorded(case, kefu, monkeypatch, capsys):
    monkeypatch.setenv("KEFU_DATABASE_URL", kefu.config.database_url)
    monkeypatch.setenv("KEFU_ENV", "test")
    try:
        assert cli.main(["customers", "update", str(case["customer_id"]), "--data", '{"region": "北京"}',
                         "--as", "supervisor"]) == 0
        capsys.readouterr()
        assert cli.main(["customers", "show", str(case["customer_id"]), "--history", "--json", "--as", "auditor"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["phone"] == MASKED and shown["history"][0]["data"]["changes"]["region"]["to"] == "北京"
        assert PHONE not in json.dumps(shown) and EMAIL not in json.dumps(shown)
    finally:
        clock_mod.use(kefu.clock)
    web = Web(kefu).login_as("agent")
    r = web.post_json("/api/customers", {"name": "李四", "phone": "13711112222"})
    assert r.status_code == 201
    created = kefu.customers.history(r.get_json()["id"])
    assert created[0]["type"] == "customer_created" and created[0]["data"]["changes"]["phone"] == {"to": "137****2222"}
    updated = kefu.customers.history(case["customer_id"])[0]
    assert updated["actor"] == "supervisor" and updated["data"]["changes"] == {"region": {"from": None, "to": "北京"}}
