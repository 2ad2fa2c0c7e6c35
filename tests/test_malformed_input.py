"""Malformed input is refused at the boundary with a clear 4xx (exit code 2 in the CLI), never a 500: odd
numbers, deep JSON, bodies over the limit, fields over their length, text that only looks filled in, diagrams
in another encoding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import InvalidInput
from engine.cli import main as kefu_main
from tests.conftest import PROCESSES
from tests.webclient import Web

HUGE = "9223372036854775808"  # 2**63: overflows SQLite's INTEGER and PostgreSQL's bigint
CURSOR_TAIL = "2026-11-23T09:00:00+08:00_" + "9" * 30


def deep(levels: int):
    value: dict = {}
    node = value
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return value


@pytest.fixture
def supervisor(kefu, scenario):
    scenario.start("complaint")
    return Web(kefu).login_as("supervisor")


def test_audit_search_refuses_numbers_no_row_can_have(supervisor):
    assert supervisor.get(f"/audit?customer={HUGE}").status_code == 400
    assert supervisor.get("/audit?customer=99999999999").status_code == 400
    assert supervisor.get(f"/audit?after={CURSOR_TAIL}").status_code == 400
    assert supervisor.get("/audit?customer=²").status_code == 200  # not a number: a (part of a) name
    assert supervisor.get("/audit?customer=1").status_code == 200


@pytest.mark.parametrize("query", [f"customer={HUGE}", f"after={CURSOR_TAIL}"])
@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_exports_check_their_filters_before_sending_headers(supervisor, fmt, query):
    r = supervisor.get(f"/audit/export.{fmt}?{query}")
    assert r.status_code == 400 and "attachment" not in r.headers.get("Content-Disposition", "")


def test_intake_refuses_customer_numbers_that_are_not_numbers(kefu):
    web = Web(kefu).login_as("agent")
    assert web.get("/new/complaint?customer=²").status_code == 400
    assert web.get(f"/new/complaint?customer={HUGE}").status_code == 400
    assert web.get("/new/complaint?customer=1").status_code == 200
    r = web.post("/new/complaint", {"kefu_customer_id": "²", "customer_name": "李先生"})
    assert r.status_code == 422 and "²" in r.get_data(as_text=True)
    assert kefu.instances.recent() == []


def test_cli_audit_search_with_a_huge_customer_number_exits_2(kefu, monkeypatch, capsys):
    monkeypatch.setenv("KEFU_DATABASE_URL", kefu.config.database_url)
    monkeypatch.setenv("KEFU_ENV", "test")
    assert kefu_main(["audit", "search", "--customer", "9" * 40]) == 2
    assert kefu_main(["audit", "search", "--after", CURSOR_TAIL]) == 2
    err = capsys.readouterr().err
    assert "out of range" in err and "not a page cursor" in err and "Traceback" not in err


@pytest.mark.parametrize("path, body", [
    ("/api/v1/tickets", lambda: {"kind": "complaint", "data": deep(400)}),
    ("/api/v1/tasks/{task}/complete", lambda: {"data": {"note": deep(400)}}),
])
def test_deeply_nested_json_to_the_api_is_400(kefu, scenario, path, body):
    scenario.start("complaint")
    task = scenario.ready()[0]["id"]
    token = kefu.users.create_token("agent")["token"]
    client = Web(kefu).client
    r = client.post(path.format(task=task), json=body(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and "deeper" in r.get_json()["error"]["message"]


def test_deeply_nested_json_to_the_web_is_400(kefu):
    web = Web(kefu).login_as("agent")
    r = web.post_json("/api/customers", {"name": "李先生", "phone": deep(400)})
    assert r.status_code == 400
    raw = "[" * 5000 + "]" * 5000  # deeper than Python's own recursion limit
    r = web.client.post("/api/customers", data=raw, content_type="application/json",
                        headers={"X-CSRFToken": web.csrf()})
    assert r.status_code == 400


def test_every_web_route_has_a_body_limit(kefu, scenario):
    scenario.start("complaint")
    task = scenario.ready()[0]["id"]
    web = Web(kefu).login_as("agent")
    big = "x" * (2 * 1024 * 1024)
    for path in ("/login", f"/tasks/{task}", "/new/complaint", "/customers/1", "/calendar"):
        assert web.post(path, {"note": big}).status_code == 413, path
    r = web.client.post("/api/customers", data=json.dumps({"name": big}), content_type="application/json",
                        headers={"X-CSRFToken": web.csrf()})
    assert r.status_code == 413
    assert [c for c in kefu.customers.find("xxxx")] == []
    owner = Web(kefu).login_as("owner")  # a diagram may be larger: the designer has its own limit
    assert owner.post("/designer/check", {"xml": "<x/>" + " " * 400_000}).status_code != 413


def test_customer_fields_over_their_length_are_refused_not_cut(kefu):
    with pytest.raises(InvalidInput, match="needs is longer than 2000"):
        kefu.customers.create({"name": "李先生", "needs": "需" * 2001})
    with pytest.raises(InvalidInput, match="name is longer than 128"):
        kefu.customers.create({"name": "名" * 129})
    web = Web(kefu).login_as("agent")
    r = web.post("/customers/1", {"name": "华东银行", "special_note": "注" * 5000})
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "最多 2000 个字符" in html
    assert kefu.customers.get(1)["special_note"] == "重点客户，7×24 小时响应"
    r = web.post_json("/api/customers", {"name": "李" * 200})
    assert r.status_code == 400 and r.get_json()["error"]["errors"]["name"] == "最多 128 个字符"


@pytest.mark.parametrize("name", ["\u200b", " \u200b\ufeff ", "\u3164", "\u2060\u200d"])
def test_a_name_of_invisible_characters_is_empty(kefu, scenario, name):
    with pytest.raises(InvalidInput, match="needs a name"):
        kefu.customers.create({"name": name})
    from engine import FormValidationError
    with pytest.raises(FormValidationError) as refused:
        scenario.start("complaint", data={"customer_name": name, "contact_phone": "13800138000"})
    assert refused.value.errors["customer_name"] == "required"
    assert kefu.customers.create({"name": "李\u200b先生"})["name"] == "李\u200b先生"  # visible text stays as typed


@pytest.mark.parametrize("encoding, declared", [("gbk", "GBK"), ("utf-16", "UTF-16"), ("gb18030", None)])
def test_lint_refuses_what_deploy_refuses(kefu, tmp_path, capsys, encoding, declared):
    text = (PROCESSES / "complaint.bpmn").read_text(encoding="utf-8")
    text = text.replace('encoding="UTF-8"', f'encoding="{declared}"') if declared else \
        text.replace('<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0"?>')
    path = tmp_path / "complaint.bpmn"
    path.write_bytes(text.encode(encoding))
    assert kefu_main(["lint", str(path)]) == 2
    assert "UTF-8" in capsys.readouterr().out
    with pytest.raises(Exception, match="UTF-8"):
        kefu.designer.deploy_xml(path.read_bytes(), "complaint.bpmn", "owner")


def test_logout_tells_the_browser_to_forget_stored_drafts(kefu):
    web = Web(kefu).login_as("agent")
    r = web.post("/logout")
    assert r.headers["Clear-Site-Data"] == '"storage"'
    page = Web(kefu).login_as("agent").page("/new/complaint")
    assert 'data-user="agent"' in page and "session.js" in page
    script = (Path(__file__).parent.parent / "webapp/static/kefu.js").read_text(encoding="utf-8")
    assert 'DRAFTS + document.body.dataset.user + ":"' in script
