"""The JSON API (/api/v1) through the real app, engine and database: tokens, every endpoint, every error."""
from __future__ import annotations

import json

import pytest

from webapp import create_app

CONSULTATION = {"customer_name": "李先生", "contact_phone": "13800138000", "region": "北京", "channel": "phone",
                "question": "家用报警器每月服务费包含哪些项目？", "answered_on_spot": False}


class Api:
    """A client for one token; every call returns (status, JSON body)."""

    def __init__(self, app, token: str | None):
        self.client = app.test_client()
        self.token = token

    def headers(self, extra=None):
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**h, **(extra or {})}

    def call(self, method, url, body=None, headers=None, raw=None):
        kw = {"headers": self.headers(headers)}
        if raw is not None:
            kw["data"] = raw
        elif body is not None:
            kw["json"] = body
        r = self.client.open("/api/v1" + url, method=method, **kw)
        assert r.mimetype == "application/json", (url, r.status_code, r.get_data(as_text=True)[:300])
        assert "Set-Cookie" not in r.headers  # no session is ever made
        return r.status_code, r.get_json()

    def get(self, url, **kw):
        return self.call("GET", url, **kw)

    def post(self, url, body=None, **kw):
        return self.call("POST", url, body, **kw)


@pytest.fixture
def app(kefu):
    return create_app({"TESTING": True, "SECRET_KEY": "test-secret"}, kefu=kefu)


@pytest.fixture
def api(app, kefu):
    """A client acting as user ``name`` through a fresh token."""
    def make(name="agent"):
        return Api(app, kefu.users.create_token(name, label="tests")["token"])
    return make


def error_of(status_body, status, code):
    got_status, body = status_body
    assert got_status == status, body
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"], body
    return body["error"]


def counts(kefu):
    """What a refused request must leave unchanged: instances, audit events, completed tasks."""
    shown = [kefu.instances.show(i["instance_id"]) for i in kefu.instances.recent(limit=500)]
    return (len(shown), sum(len(s["events"]) for s in shown),
            sorted((t["id"], t["state"], t["assignee"]) for s in shown for t in s["tasks"]))


# ---------------------------------------------------------------- authentication
def test_missing_bad_and_revoked_tokens_are_401(app, kefu, api):
    error_of(Api(app, None).get("/tasks"), 401, "unauthorized")
    error_of(Api(app, "kefu_not-a-token").get("/tasks"), 401, "unauthorized")
    error_of(Api(app, None).get("/tasks", headers={"Authorization": "Basic YWdlbnQ6eA=="}), 401, "unauthorized")
    error_of(Api(app, None).get("/tasks", headers={"Authorization": "Bearer "}), 401, "unauthorized")
    error_of(Api(app, "x" * 5000).get("/tasks"), 401, "unauthorized")
    good = api("agent")
    assert good.get("/tasks")[0] == 200
    assert kefu.users.revoke_tokens("agent") == {"user": "agent", "revoked": 1}
    error_of(good.get("/tasks"), 401, "unauthorized")


def test_only_the_hash_of_a_token_is_stored(kefu):
    from sqlalchemy import select
    from engine.store.tables import ApiToken
    made = kefu.users.create_token("agent", label="telephony")
    assert made["token"].startswith("kefu_") and len(made["token"]) > 40
    with kefu.db.reading() as s:
        row = s.scalar(select(ApiToken))
        assert row.token_hash != made["token"] and made["token"] not in row.token_hash and row.label == "telephony"
    assert kefu.users.token_user(made["token"])["name"] == "agent"


def test_a_token_for_an_unknown_user_is_refused(kefu):
    from engine import NotFound
    with pytest.raises(NotFound):
        kefu.users.create_token("nobody")


def test_a_session_cookie_does_not_authenticate_the_api(app, kefu):
    client = app.test_client()
    with client.session_transaction() as s:
        s["_user_id"] = "agent"
        s["_fresh"] = True
    r = client.get("/api/v1/tasks")
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"


def test_the_api_needs_no_csrf_token(api):
    status, body = api("agent").post("/tickets", {"kind": "consultation"})
    assert status == 201, body


# ---------------------------------------------------------------- tickets
def test_start_a_ticket_with_the_intake_form(api, kefu):
    status, body = api("agent").post("/tickets", {"kind": "consultation", "data": CONSULTATION})
    assert status == 201, body
    assert body["ticket_no"].startswith("ZX") and body["kind"] == "consultation" and body["status"] == "active"
    assert [t["bpmn_id"] for t in body["tasks"]] == ["promise_reply"]
    shown = kefu.instances.show(body["instance_id"])
    done = [e for e in shown["events"] if e["type"] == "task_completed"]
    assert done[0]["bpmn_id"] == "register" and done[0]["actor"] == "agent"


def test_start_without_data_leaves_the_intake_task_with_the_caller(api):
    status, body = api("agent").post("/tickets", {"kind": "repair"})
    assert status == 201 and body["tasks"][0]["assignee"] == "agent", body


def test_start_with_a_customer_prefills_its_contact(api, kefu):
    customer = kefu.customers.find("13800138000")[0]
    data = {k: v for k, v in CONSULTATION.items() if k not in ("customer_name", "contact_phone", "region")}
    status, body = api("agent").post("/tickets", {"kind": "consultation", "customer_id": customer["id"],
                                                  "data": data})
    assert status == 201, body
    assert body["customer_id"] == customer["id"]


def test_invalid_intake_data_is_400_with_fields_and_creates_nothing(api, kefu):
    before = counts(kefu)
    status, body = api("agent").post("/tickets", {"kind": "consultation",
                                                  "data": {**CONSULTATION, "channel": "fax", "region": ["x"]}})
    err = error_of((status, body), 400, "invalid_input")
    assert set(err["fields"]) == {"channel", "region"}
    assert "phone" in err["fields"]["channel"]
    assert counts(kefu) == before


@pytest.mark.parametrize("payload, field", [
    ({"kind": "escalation"}, "kind"), ({"kind": "nonsense"}, "kind"), ({}, "kind"), ({"kind": None}, "kind"),
    ({"kind": "repair", "customer_id": "1"}, "customer_id"), ({"kind": "repair", "customer_id": True}, "customer_id"),
    ({"kind": "repair", "data": []}, "data"), ({"kind": "repair", "data": "x"}, "data"),
    ({"kind": "repair", "colour": "red"}, "colour"),
])
def test_bad_ticket_bodies_are_400_naming_the_field(api, kefu, payload, field):
    before = counts(kefu)
    err = error_of(api("agent").post("/tickets", payload), 400, "invalid_input")
    assert field in err["fields"], err
    assert counts(kefu) == before


def test_unknown_customer_is_404(api, kefu):
    before = counts(kefu)
    error_of(api("agent").post("/tickets", {"kind": "repair", "customer_id": 99999}), 404, "not_found")
    assert counts(kefu) == before


def test_a_lane_without_the_right_to_open_tickets_is_403(api, kefu):
    before = counts(kefu)
    error_of(api("technician").post("/tickets", {"kind": "repair"}), 403, "forbidden")
    assert counts(kefu) == before


@pytest.mark.parametrize("raw, content_type, status, code", [
    ("kind=repair", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ('{"kind": "repair"}', "text/plain", 415, "unsupported_media_type"),
    ("{not json", "application/json", 400, "invalid_input"),
    ('["repair"]', "application/json", 400, "invalid_input"),
    ('"repair"', "application/json", 400, "invalid_input"),
    (b'{"kind": "\xff"}', "application/json", 400, "invalid_input"),
])
def test_bodies_that_are_not_a_json_object_are_refused(api, kefu, raw, content_type, status, code):
    before = counts(kefu)
    error_of(api("agent").post("/tickets", raw=raw, headers={"Content-Type": content_type}), status, code)
    assert counts(kefu) == before


def test_a_huge_body_is_413_and_creates_nothing(api, kefu):
    before = counts(kefu)
    huge = json.dumps({"kind": "consultation", "data": {**CONSULTATION, "question": "长" * 400_000}})
    error_of(api("agent").post("/tickets", raw=huge, headers={"Content-Type": "application/json"}),
             413, "payload_too_large")
    assert counts(kefu) == before


# ---------------------------------------------------------------- customers
def test_find_and_read_customers(api):
    agent = api("agent")
    status, body = agent.get("/customers?q=6321")
    assert status == 200 and [c["name"] for c in body["customers"]] == ["华东银行股份有限公司"]
    assert agent.get("/customers?q=")[1] == {"customers": []}
    cid = body["customers"][0]["id"]
    status, one = agent.get(f"/customers/{cid}")
    # I4: an agent without a case of this customer reads the number masked
    assert status == 200 and one["phone"] == "021*****0000" and one["masked"] is True and one["vip"] is True
    error_of(agent.get("/customers/424242"), 404, "not_found")
    error_of(agent.get("/customers/abc"), 404, "not_found")
    error_of(agent.get("/customers?q=" + "1" * 500), 400, "invalid_input")
    error_of(agent.get("/customers?phone=1"), 400, "invalid_input")


def test_customer_contact_is_refused_to_lanes_without_a_task_on_it(api):
    cid = api("agent").get("/customers?q=6321")[1]["customers"][0]["id"]
    error_of(api("technician").get("/customers?q=6321"), 403, "forbidden")
    error_of(api("technician").get(f"/customers/{cid}"), 403, "forbidden")


# ---------------------------------------------------------------- tasks
def _promise_reply(api):
    """An open consultation waiting for the agent's promised reply time; returns (client, task)."""
    agent = api("agent")
    started = agent.post("/tickets", {"kind": "consultation", "data": CONSULTATION})[1]
    return agent, started["tasks"][0], started


def test_list_read_claim_unclaim_and_complete(api, kefu, scenario):
    agent, brief, started = _promise_reply(api)
    status, listed = agent.get("/tasks")
    assert status == 200 and brief["id"] in [t["id"] for t in listed["tasks"]]
    assert agent.get(f"/tasks?instance={started['ticket_no']}")[1]["tasks"][0]["id"] == brief["id"]
    assert agent.get("/tasks?kind=repair")[1] == {"tasks": []}
    assert agent.get("/tasks?role=qa")[1] == {"tasks": []}
    status, t = agent.get(f"/tasks/{brief['id']}")
    assert status == 200 and t["bpmn_id"] == "promise_reply" and t["state"] == "ready"
    assert {f["id"] for f in t["form"]} >= {"promised_reply_time", "needs_department"}
    assert {"id", "label", "type", "required"} <= set(t["form"][0])

    status, claimed = agent.post(f"/tasks/{brief['id']}/claim")
    assert status == 200 and claimed["assignee"] == "agent"
    error_of(api("agent2").post(f"/tasks/{brief['id']}/claim"), 403, "forbidden")
    status, released = agent.post(f"/tasks/{brief['id']}/unclaim", {})
    assert status == 200 and released["assignee"] is None

    status, done = agent.post(f"/tasks/{brief['id']}/complete",
                              {"data": {"promised_reply_time": scenario.later(days=1), "needs_department": True}})
    assert status == 200, done
    assert done["task"]["id"] == brief["id"] and done["task"]["state"] == "completed"
    assert done["task"]["completed_by"] == "agent"
    assert done["instance"]["ticket_no"] == started["ticket_no"] and done["instance"]["status"] == "active"
    assert [t["bpmn_id"] for t in done["tasks"]] == ["transfer"]


def test_double_completion_is_409_and_changes_nothing(api, kefu, scenario):
    agent, brief, _ = _promise_reply(api)
    data = {"data": {"promised_reply_time": scenario.later(days=1), "needs_department": False}}
    assert agent.post(f"/tasks/{brief['id']}/complete", data)[0] == 200
    before = counts(kefu)
    err = error_of(agent.post(f"/tasks/{brief['id']}/complete", data), 409, "conflict")
    assert "already completed" in err["message"]
    error_of(agent.post(f"/tasks/{brief['id']}/claim"), 409, "conflict")
    assert counts(kefu) == before


def test_invalid_form_value_is_400_with_fields_and_changes_nothing(api, kefu):
    agent, brief, _ = _promise_reply(api)
    before = counts(kefu)
    err = error_of(agent.post(f"/tasks/{brief['id']}/complete",
                              {"data": {"promised_reply_time": "tomorrow", "needs_department": "perhaps",
                                        "surprise": 1}}), 400, "invalid_input")
    assert set(err["fields"]) == {"promised_reply_time", "needs_department", "surprise"}
    error_of(agent.post(f"/tasks/{brief['id']}/complete", {"data": [1]}), 400, "invalid_input")
    error_of(agent.post(f"/tasks/{brief['id']}/complete", {"values": {}}), 400, "invalid_input")
    error_of(agent.post(f"/tasks/{brief['id']}/claim", {"x": 1}), 400, "invalid_input")
    assert counts(kefu) == before


def test_another_lane_may_not_read_or_complete_a_task(api, kefu, scenario):
    _, brief, _ = _promise_reply(api)
    before = counts(kefu)
    tech = api("technician")
    error_of(tech.get(f"/tasks/{brief['id']}"), 403, "forbidden")
    error_of(tech.post(f"/tasks/{brief['id']}/claim"), 403, "forbidden")
    error_of(tech.post(f"/tasks/{brief['id']}/complete",
                       {"data": {"promised_reply_time": scenario.later(days=1), "needs_department": False}}),
             403, "forbidden")
    assert counts(kefu) == before


def test_unknown_tasks_and_instances_are_404(api):
    agent = api("agent")
    for url in ("/tasks/not-a-uuid", "/tasks/00000000-0000-0000-0000-000000000000"):
        error_of(agent.get(url), 404, "not_found")
        error_of(agent.post(url + "/claim"), 404, "not_found")
        error_of(agent.post(url + "/complete", {"data": {}}), 404, "not_found")
    error_of(agent.get("/tasks?instance=ZX20990101-0001"), 404, "not_found")
    error_of(agent.get("/tasks?role=pilot"), 400, "invalid_input")
    error_of(agent.get("/instances/ZX20990101-0001"), 404, "not_found")
    error_of(agent.get("/instances/" + "9" * 300), 404, "not_found")
    error_of(agent.get("/instances/" + "9" * 30), 404, "not_found")  # beyond any row id: no database error
    error_of(agent.get("/instances/²"), 404, "not_found")  # a digit, but not a number
    error_of(agent.get("/tasks?instance=" + "9" * 30), 404, "not_found")
    error_of(agent.get("/customers/" + "9" * 30), 404, "not_found")
    error_of(agent.post("/tickets", {"kind": "repair", "customer_id": 10**30}), 404, "not_found")
    error_of(agent.post("/tickets", {"kind": "repair", "customer_id": -1}), 404, "not_found")
    error_of(agent.get("/nothing-here"), 404, "not_found")


def test_wrong_methods_are_405_with_allow(api):
    agent = api("agent")
    status, body = agent.call("DELETE", "/tickets")
    error_of((status, body), 405, "method_not_allowed")
    error_of(agent.get("/tasks/00000000-0000-0000-0000-000000000000/complete"), 405, "method_not_allowed")
    r = agent.client.put("/api/v1/tasks", headers=agent.headers())
    assert r.status_code == 405 and "GET" in r.headers["Allow"]


# ---------------------------------------------------------------- instances
def test_instance_with_its_trace(api, kefu):
    agent, _, started = _promise_reply(api)
    for ref in (started["ticket_no"], str(started["instance_id"])):
        status, body = agent.get(f"/instances/{ref}")
        assert status == 200 and body["ticket_no"] == started["ticket_no"]
        types = [e["type"] for e in body["trace"]]
        assert types[0] == "instance_started" and "task_completed" in types
        assert [e["seq"] for e in body["trace"]] == list(range(1, len(body["trace"]) + 1))
        assert "events" not in body and body["tasks"]


def test_an_instance_is_hidden_from_lanes_without_a_task_on_it(api):
    _, _, started = _promise_reply(api)
    error_of(api("technician").get(f"/instances/{started['ticket_no']}"), 403, "forbidden")
    assert api("auditor").get(f"/instances/{started['ticket_no']}")[0] == 200


def test_an_unexpected_failure_is_a_json_500(app, api, monkeypatch):
    agent = api("agent")

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(app.extensions["kefu"].tasks, "ready", broken)
    err = error_of(agent.get("/tasks"), 500, "internal_error")
    assert "disk" not in err["message"]  # details go to the log, not to the caller


# ---------------------------------------------------------------- integration users
@pytest.fixture
def telephony(kefu, api):
    kefu.users.add("telephony", ["integration"], display_name="呼叫中心电话系统")
    return api("telephony")


def test_an_integration_user_opens_tickets_and_reads_them(telephony, api, kefu):
    status, body = telephony.post("/tickets", {"kind": "repair"})
    assert status == 201, body
    intake = body["tasks"][0]
    assert intake["role"] == "agent" and intake["assignee"] is None  # in the agents' queue, not with the system
    assert intake["id"] in [t["id"] for t in api("agent2").get("/tasks")[1]["tasks"]]
    status, full = telephony.post("/tickets", {"kind": "consultation", "data": CONSULTATION})
    assert status == 201 and full["tasks"][0]["bpmn_id"] == "promise_reply"
    status, shown = telephony.get(f"/instances/{full['ticket_no']}")
    assert status == 200 and shown["status"] == "active" and shown["created_by"] == "telephony"
    assert telephony.get("/customers?q=13800138000")[1]["customers"][0]["name"] == "李先生"


def test_an_integration_user_works_no_task(telephony, kefu, scenario):
    started = telephony.post("/tickets", {"kind": "consultation", "data": CONSULTATION})[1]
    task_id = started["tasks"][0]["id"]
    before = counts(kefu)
    assert telephony.get("/tasks")[1] == {"tasks": []}
    error_of(telephony.get(f"/tasks/{task_id}"), 403, "forbidden")
    error_of(telephony.post(f"/tasks/{task_id}/claim"), 403, "forbidden")
    error_of(telephony.post(f"/tasks/{task_id}/complete",
                            {"data": {"promised_reply_time": scenario.later(days=1), "needs_department": False}}),
             403, "forbidden")
    assert counts(kefu) == before


def test_integration_is_a_role_for_users_token_cli(kefu, tmp_path, monkeypatch, capsys):
    from engine.cli import main
    monkeypatch.setenv("KEFU_DATABASE_URL", kefu.config.database_url)
    assert main(["users", "add", "telephony", "--role", "integration"]) == 0
    capsys.readouterr()
    assert main(["users", "token", "telephony", "--label", "PBX"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("kefu_") and kefu.users.token_user(token)["roles"] == ["integration"]
    assert main(["users", "token", "nobody"]) == 4
    assert "no user 'nobody'" in capsys.readouterr().err
    assert main(["users", "token", "telephony", "--revoke", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"user": "telephony", "revoked": 1}
    assert kefu.users.token_user(token) is None


def test_nul_characters_are_refused_everywhere_and_store_nothing(app, api, kefu):
    """PostgreSQL cannot store NUL and no field needs it: query, path, JSON body and form data are refused
    with a clear 400 on either database, never a server error."""
    before = counts(kefu)
    a = api("agent")
    error_of(a.get("/customers?q=ab%00cd"), 400, "invalid_input")
    error_of(a.get("/instances/T%00X"), 400, "invalid_input")
    error_of(a.post("/tickets", {"kind": "consultation", "data": {**CONSULTATION, "question": "a\x00b"}}),
             400, "invalid_input")
    error_of(a.post("/tickets", {"kind": "consultation", "data": {"x\x00": 1}}), 400, "invalid_input")
    page = app.test_client().get("/login?next=%00")
    assert page.status_code == 400 and "NUL" in page.get_data(as_text=True)
    assert counts(kefu) == before


def test_control_characters_in_form_text_are_invalid_input(kefu):
    from engine.errors import InvalidInput
    with pytest.raises(InvalidInput) as caught:
        kefu.instances.start("consultation", "agent", data={**CONSULTATION, "question": "bell\x07"})
    assert "control characters" in str(caught.value.to_dict())
    # tabs and line breaks are ordinary text
    kefu.instances.start("consultation", "agent", data={**CONSULTATION, "question": "第一行\n第二行\t完"})
