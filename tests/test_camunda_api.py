"""Diagrams drawn for Camunda 7 run on Kefu (issue 22), the outside: a worker completes the invoice approval's
service task through the Camunda-shaped JSON API, messages and starting by key through the API, and the CLI a
worker or an operator uses (kefu external, kefu message, kefu lint and kefu deploy on folders)."""
from __future__ import annotations

import json

import pytest

from engine.cli import main as kefu_main
from tests.conftest import DIAGRAMS
from webapp import create_app

CAMUNDA = DIAGRAMS / "camunda"
ARCHIVE = "org.example.invoice.ArchiveInvoiceService"


class Client:
    def __init__(self, app, token):
        self.client, self.token = app.test_client(), token

    def post(self, url, body=None):
        r = self.client.post("/api/v1" + url, json=body, headers={"Authorization": f"Bearer {self.token}"})
        return r.status_code, (r.get_json() if r.data else None)

    def get(self, url):
        r = self.client.get("/api/v1" + url, headers={"Authorization": f"Bearer {self.token}"})
        return r.status_code, r.get_json()


@pytest.fixture
def api(kefu):
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret"}, kefu=kefu)
    kefu.users.add("archiver", ["integration"], display_name="Archive worker")

    def make(name):
        return Client(app, kefu.users.create_token(name, label="tests")["token"])
    return make


def test_a_worker_completes_the_invoice_service_task_through_the_api(kefu, scenario, api):
    kefu.definitions.deploy([CAMUNDA / "invoice.bpmn"])
    system, agent = api("archiver"), api("agent")
    status, started = system.post("/process-definition/key/invoice-approval/start",
                                  {"variables": {"source": {"value": "scanner", "type": "String"}}})
    assert status == 201 and started["ticket_no"].startswith("IN"), started
    scenario.instance_id = started["instance_id"]
    task = started["tasks"][0]
    assert (task["bpmn_id"], task["role"], task["assignee"]) == ("enter_invoice", "agent", None)  # no lane role
    status, _ = agent.post(f"/tasks/{task['id']}/complete", {"data": {"creditor": "ACME", "amount": 99}})
    assert status == 200
    scenario.complete("approve_small", "supervisor", {"approved": True})

    body = {"workerId": "archiver-1", "maxTasks": 5,
            "topics": [{"topicName": ARCHIVE, "lockDuration": 300000, "variables": ["creditor", "amount"]}]}
    assert agent.post("/external-task/fetchAndLock", body)[0] == 403  # agents are not workers
    status, locked = system.post("/external-task/fetchAndLock", body)
    assert status == 200 and len(locked) == 1, locked
    t = locked[0]
    assert t["topicName"] == ARCHIVE and t["workerId"] == "archiver-1" and t["businessKey"] == scenario.show()[
        "ticket_no"]
    assert t["variables"] == {"creditor": {"value": "ACME", "type": "String", "valueInfo": {}},
                              "amount": {"value": 99, "type": "Integer", "valueInfo": {}}}
    assert t["lockExpirationTime"].startswith("2026-11-23T09:05:00.000")
    assert system.post("/external-task/fetchAndLock", body) == (200, [])
    status, err = system.post(f"/external-task/{t['id']}/complete", {"workerId": "someone-else"})
    assert status == 403 and "locked by another worker" in err["error"]["message"]
    assert system.post(f"/external-task/{t['id']}/extendLock", {"workerId": "archiver-1", "newDuration": 60000}) \
        == (204, None)
    assert system.post(f"/external-task/{t['id']}/failure", {"workerId": "archiver-1", "errorMessage": "busy",
                                                              "retries": 2, "retryTimeout": 0}) == (204, None)
    status, listed = system.get(f"/external-task?topicName={ARCHIVE}")
    assert status == 200 and listed[0]["retries"] == 2 and listed[0]["errorMessage"] == "busy"
    (t,) = system.post("/external-task/fetchAndLock", body)[1]
    status, _ = system.post(f"/external-task/{t['id']}/complete",
                            {"workerId": "archiver-1", "variables": {"archived": {"value": True, "type": "Boolean"}}})
    assert status == 204
    shown = scenario.show()
    assert shown["status"] == "completed" and shown["data"]["archived"] is True and shown["data"]["source"] == "scanner"
    status, err = system.post(f"/external-task/{t['id']}/complete", {"workerId": "archiver-1"})
    assert status == 409


def test_messages_through_the_api_start_an_order_and_reach_the_waiting_one(kefu, api):
    kefu.definitions.deploy([CAMUNDA])
    system = api("archiver")
    status, r = system.post("/message", {"messageName": "order-placed",
                                         "processVariables": {"total": {"value": 10, "type": "Integer"}}})
    assert status == 200 and r["started"]["ticket_no"].startswith("OF") and r["correlated"] == []
    status, r2 = system.post("/message", {"messageName": "order-cancelled", "businessKey": r["started"]["ticket_no"]})
    assert status == 200 and r2["correlated"][0]["status"] == "completed"
    status, err = system.post("/message", {"messageName": "nobody-waits"})
    assert status == 404 and "no instance waits" in err["error"]["message"]
    assert system.post("/message", {"messageName": "x", "correlationKeys": {"a": 1}})[0] == 400


@pytest.fixture
def cli(kefu, monkeypatch, capsys):
    monkeypatch.setenv("KEFU_DATABASE_URL", kefu.config.database_url)
    monkeypatch.setenv("KEFU_ENV", "test")
    monkeypatch.setenv("KEFU_CLOCK", "2026-11-23T09:00:00+08:00")

    def run(*args, expect=0):
        rc = kefu_main(list(args))
        out = capsys.readouterr()
        assert rc == expect, (args, rc, out.out, out.err)
        return out
    return run


def test_a_worker_and_an_operator_on_the_command_line(kefu, scenario, cli, tmp_path):
    out = cli("lint", str(CAMUNDA)).out  # a folder: the order's call activity finds ship_order.bpmn
    assert "invoice.bpmn: ok" in out and "order.bpmn: ok" in out and "ship_order.bpmn: ok" in out
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "invoice.bpmn").write_bytes((CAMUNDA / "invoice.bpmn").read_bytes())
    (bad / "order.bpmn").write_bytes((CAMUNDA / "order.bpmn").read_bytes())  # calls a process not there
    err = cli("deploy", str(bad), "--as", "owner", expect=2).err
    assert "order.bpmn" in err and "ship-order" in err and "nothing was deployed" in err
    assert "invoice-approval" not in cli("definitions").out
    cli("deploy", str(CAMUNDA), "--as", "owner")

    started = json.loads(cli("message", "order-placed", "--data", '{"total": 5}', "--as", "agent", "--json").out)
    ticket = started["started"]["ticket_no"]
    fetched = json.loads(cli("external", "fetch", "--topic", "stock", "--worker", "w1", "--lock", "5m",
                             "--json").out)
    assert [(t["topic"], t["instance_id"], t["variables"]["total"]) for t in fetched] == \
        [("stock", started["started"]["instance_id"], 5)] and fetched[0]["id"]
    task_id = fetched[0]["id"]
    assert "locked by another worker" in cli("external", "complete", task_id, "--worker", "w2", expect=3).err
    out = cli("external", "fail", task_id, "--worker", "w1", "--error", "scanner down", "--retries", "0").out
    assert "incident" in out and "incident" == kefu.instances.show(ticket)["status"]
    cli("incident", "retry", ticket, "--as", "supervisor")
    (t,) = json.loads(cli("external", "fetch", "--worker", "w1", "--json").out)
    cli("external", "complete", t["id"], "--worker", "w1", "--data", '{"reserved": 5}')
    out = cli("message", "payment-received", "--data", '{"paid_amount": 5}', "--as", "agent").out
    assert f"reached {ticket} at wait_payment" in out
    assert kefu.instances.show(ticket)["data"]["reserved"] == 5
    assert "no open external tasks" in cli("external", "list").out


def test_a_candidate_works_a_lanes_less_task_in_the_browser(kefu, scenario):
    from tests.webclient import Web
    kefu.definitions.deploy([CAMUNDA / "invoice.bpmn"])
    scenario.start("invoice-approval", actor="agent")
    scenario.complete("enter_invoice", "agent", {"creditor": "ACME", "amount": 50})
    task = scenario.task("approve_small")  # offered to agent2 and supervisor, no role
    web = Web(kefu).login_as("agent2")
    inbox = web.page("/inbox")
    assert 'id="q-offered"' in inbox and task["id"] in inbox.split('id="q-offered"')[1]
    assert "None" not in web.page(f"/tasks/{task['id']}")
    r = web.post(f"/tasks/{task['id']}", {"approved": "true"})
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    assert kefu.external.list()[0]["bpmn_id"] == "archive_invoice"
    other = Web(kefu).login_as("agent")
    assert task["id"] not in other.page("/inbox")
