"""The OpenAPI document stays true: it names exactly the /api/v1 routes and methods, real responses of a
scenario validate against its schemas, and schemathesis (bounded, fixed seed, in-process WSGI) finds no server
error and no response that breaks the document."""
from __future__ import annotations

import re

import jsonschema_rs  # schemathesis' own JSON Schema validator
import pytest

from tests.test_api import CONSULTATION, Api
from webapp import create_app
from webapp.openapi import document

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def app(kefu):
    return create_app({"TESTING": True, "SECRET_KEY": "test-secret"}, kefu=kefu)


def test_every_api_route_is_documented_and_nothing_else(app):
    served = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            served.setdefault(path, set()).update(m.lower() for m in rule.methods - IGNORED_METHODS)
    documented = {path: set(ops) for path, ops in document()["paths"].items()}
    assert served == documented


def test_the_document_is_served_without_a_token(app):
    r = app.test_client().get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.get_json() == document()
    assert r.get_json()["openapi"].startswith("3.")


def test_every_operation_documents_the_errors_it_can_answer():
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            assert {"405", "500"} <= set(op["responses"]), (method, path)
            if path != "/api/v1/openapi.json":
                assert "401" in op["responses"], (method, path)
                assert all(p["in"] != "path" or p["required"] for p in op.get("parameters", []))


class Checked:
    """Every response of a real scenario, validated against the documented schema of its status."""

    def __init__(self, app, token):
        self.api = Api(app, token)
        self.doc = document()
        self.seen = set()

    def schema(self, method, url, status):
        path = url.split("?")[0]
        for template, ops in self.doc["paths"].items():
            if not re.fullmatch(re.sub(r"\{[a-z_]+\}", "[^/]+", template), "/api/v1" + path):
                continue
            if method not in ops:  # a method the path does not have: the documented error body
                assert status == 405, (method, path, status)
                self.seen.add((method, template, status))
                return {"$ref": "#/components/schemas/Error", "components": self.doc["components"]}
            response = ops[method]["responses"].get(str(status))
            assert response is not None, f"{method.upper()} {template} answered undocumented {status}"
            self.seen.add((method, template, status))
            return {**response["content"]["application/json"]["schema"], "components": self.doc["components"]}
        raise AssertionError(f"{method} {path} is not documented")

    def __call__(self, method, url, body=None, expect=200, **kw):
        status, data = self.api.call(method.upper(), url, body, **kw)
        assert status == expect, (method, url, data)
        validator = jsonschema_rs.Draft202012Validator(self.schema(method, url, status))
        errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(data)]
        assert not errors, (method, url, errors[:5])
        return data


def test_real_responses_validate_against_the_documented_schemas(app, kefu, scenario):
    kefu.users.add("telephony", ["integration"])
    agent = Checked(app, kefu.users.create_token("agent")["token"])
    phone = Checked(app, kefu.users.create_token("telephony")["token"])
    customer = agent("get", "/customers?q=6321")["customers"][0]
    agent("get", f"/customers/{customer['id']}")
    agent("get", "/customers/999999", expect=404)
    started = phone("post", "/tickets", {"kind": "consultation", "customer_id": customer["id"],
                                         "data": CONSULTATION}, expect=201)
    phone("post", "/tickets", {"kind": "repair"}, expect=201)
    phone("post", "/tickets", {"kind": "nope"}, expect=400)
    task_id = started["tasks"][0]["id"]
    phone("get", f"/tasks/{task_id}", expect=403)
    agent("get", "/tasks")
    agent("get", f"/tasks?instance={started['ticket_no']}&role=agent")
    agent("get", f"/tasks/{task_id}")
    agent("post", f"/tasks/{task_id}/claim")
    agent("post", f"/tasks/{task_id}/unclaim")
    agent("post", f"/tasks/{task_id}/complete", {"data": {"promised_reply_time": "soon"}}, expect=400)
    done = agent("post", f"/tasks/{task_id}/complete",
                 {"data": {"promised_reply_time": scenario.later(hours=5), "needs_department": True}})
    agent("post", f"/tasks/{task_id}/complete", {"data": {}}, expect=409)
    transfer = done["tasks"][0]["id"]
    agent("post", f"/tasks/{transfer}/complete", {"data": {"department": "finance", "transfer_question": "明细",
                                                           "required_reply_time": scenario.later(hours=5)}})
    agent("get", f"/instances/{started['ticket_no']}")
    phone("get", f"/instances/{started['instance_id']}")
    agent("get", "/instances/nothing", expect=404)
    # the case file and the desk's search (issue 20)
    ticket = started["ticket_no"]
    agent("post", f"/instances/{ticket}/notes", {"text": "客户希望下午回电"}, expect=201)
    agent("post", f"/instances/{ticket}/notes", {"channel": "phone", "outcome": "已回电"}, expect=201)
    agent("post", f"/instances/{ticket}/notes", {"channel": "fax", "outcome": "x"}, expect=400)
    notes = agent("get", f"/instances/{ticket}/notes")
    assert [n["text"] for n in notes["notes"]] == ["客户希望下午回电"] and notes["contacts"][0]["channel"] == "phone"
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    octet = {"Content-Type": "application/octet-stream"}
    added = agent("post", f"/instances/{ticket}/attachments?filename=photo.png", raw=png, headers=octet, expect=201)
    agent("post", f"/instances/{ticket}/attachments?filename=x.png", raw=b"MZ\x90", headers=octet, expect=400)
    agent("post", f"/instances/{ticket}/attachments?filename=x.png", raw=png,
          headers={"Content-Type": "image/png"}, expect=415)
    listed = agent("get", f"/instances/{ticket}/attachments")["attachments"]
    assert [a["id"] for a in listed] == [added["id"]] and listed[0]["content_type"] == "image/png"
    agent("get", f"/instances/{ticket}")
    found = agent("get", "/search?q=6321")["rows"]
    assert ticket in [r["ticket_no"] for r in found] and all("****" in (r["customer_phone"] or "****") for r in found)
    agent("get", "/search?view=bad", expect=400)
    phone("get", "/search?q=x", expect=403)
    agent("post", "/tickets", raw="x", headers={"Content-Type": "text/plain"}, expect=415)
    agent("post", "/tickets", raw="[" * 300_000, headers={"Content-Type": "application/json"}, expect=413)
    stranger = Checked(app, "bad")
    stranger("get", "/tasks", expect=401)
    agent("delete", "/tickets", expect=405)
    statuses = {s for _m, _p, s in agent.seen | phone.seen | stranger.seen}
    assert statuses >= {200, 201, 400, 401, 403, 404, 405, 409, 413, 415}


def test_schemathesis_finds_no_server_error_and_no_schema_violation(app, kefu):
    """Generated requests (a fixed seed, at most 30 per operation) against the app in-process, with a valid
    token of a supervisor (who may open tickets and read everything) and tickets to find."""
    import hypothesis
    import schemathesis
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    for kind in ("consultation", "complaint", "repair"):
        kefu.instances.start(kind, "agent")
    token = kefu.users.create_token("supervisor")["token"]
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {f"{m.upper()} {p}" for p, ops in document()["paths"].items() for m in ops}
    assert {o.label for o in operations} == documented - {"GET /api/v1/openapi.json"}  # it skips its source
    for operation in operations:
        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=30, derandomize=True, database=None, deadline=None,
                             suppress_health_check=list(hypothesis.HealthCheck), phases=[
                                 hypothesis.Phase.explicit, hypothesis.Phase.generate])
        def run(case):
            # A task's form (and so which ``data`` is valid) comes from its diagram, not from this document:
            # a schema-valid body may rightly be refused with 400 ``fields``. Every other check runs.
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                   excluded_checks=[positive_data_acceptance])

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_schemathesis_stateful_runs_follow_the_links_through_real_tickets(app, kefu):
    """Open a ticket, then get, claim, release and complete its tasks along the document's links (generated
    form data, a fixed seed, bounded): no server error, no response outside the document."""
    import hypothesis
    import schemathesis
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    token = kefu.users.create_token("agent")["token"]
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    base = schema.as_state_machine()

    class Scenario(base):
        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": f"Bearer {token}"}}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, excluded_checks=[positive_data_acceptance],
                                   headers=kwargs.get("headers"), transport_kwargs=kwargs or None,
                                   recorder=self.recorder)

    Scenario.run(settings=hypothesis.settings(
        max_examples=15, stateful_step_count=6, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate]))
    assert kefu.instances.recent(limit=500), "the scenarios opened no ticket"
    assert not kefu.audit.verify()
