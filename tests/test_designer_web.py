"""Changing a procedure through the web: the definitions page, downloads, upload of a Camunda Modeler file,
the check before deploy and the deploy itself; every route for every role; bad uploads with a clear message."""
from __future__ import annotations

import re

import pytest

from tests.conftest import PROCESSES
from tests.test_complaint import register
from tests.webclient import Web

COMPLAINT = (PROCESSES / "complaint.bpmn").read_bytes()
OLD_LABEL, NEW_LABEL = 'id="place" label="事发地点"', 'id="place" label="事发地点（详细地址）"'
ROLES = ["agent", "supervisor", "department", "technician", "taskforce1", "qa", "auditor", "owner"]


def relabelled() -> bytes:
    assert COMPLAINT.count(OLD_LABEL.encode()) == 1
    return COMPLAINT.replace(OLD_LABEL.encode(), NEW_LABEL.encode())


def versions(kefu, process_id="complaint") -> list[int]:
    return sorted(d["version"] for d in kefu.definitions.all() if d["process_id"] == process_id)


def owner(kefu) -> Web:
    return Web(kefu).login_as("owner")


def upload(web, data: bytes, name="diagram.bpmn"):
    """A browser's multipart upload (encoded here: the test client spools a large body to a file it never
    closes)."""
    boundary = "kefu-test-boundary"
    body = b"".join([
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{web.csrf()}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode(), data, f"\r\n--{boundary}--\r\n".encode()])
    return web.client.post("/designer/upload", data=body, content_type=f"multipart/form-data; boundary={boundary}")


# ---------------------------------------------------------------- authorization
READ_ROUTES = ["/definitions", "/definitions/complaint/v/1.bpmn"]
OWNER_GETS = ["/designer/complaint"]
OWNER_POSTS = ["/designer/upload", "/designer/check", "/designer/deploy"]


@pytest.mark.parametrize("who", ROLES)
def test_every_route_answers_each_role_as_its_rights_say(kefu, who):
    web = Web(kefu).login_as(who)
    reader, is_owner = who in ("owner", "auditor"), who == "owner"
    for url in READ_ROUTES:
        assert web.get(url).status_code == (200 if reader else 403), url
    for url in OWNER_GETS:
        assert web.get(url).status_code == (200 if is_owner else 403), url
    for url in OWNER_POSTS:
        r = web.post_json(url, {"xml": relabelled().decode(), "filename": "complaint.bpmn"})
        assert r.status_code == (200 if is_owner else 403), (url, r.get_data(as_text=True)[:300])
    assert versions(kefu) == ([1, 2] if is_owner else [1])  # only the owner's deploy made a version


def test_anonymous_visitors_are_sent_to_the_login(kefu):
    client = Web(kefu).client
    for url in READ_ROUTES + OWNER_GETS:
        r = client.get(url)
        assert r.status_code == 302 and "/login" in r.headers["Location"], url
    assert client.post("/designer/deploy", json={"xml": relabelled().decode()}).status_code in (400, 302)
    assert versions(kefu) == [1]


def test_nav_links_to_the_definitions_for_owner_and_auditor_only(kefu):
    for who in ROLES:
        html = Web(kefu).login_as(who).page("/inbox")
        assert ('href="/definitions"' in html) == (who in ("owner", "auditor")), who


# ---------------------------------------------------------------- definitions page and downloads
def test_definitions_page_lists_every_process_with_versions_and_instance_counts(kefu, scenario):
    register(scenario)
    html = owner(kefu).page("/definitions")
    for pid in ("complaint", "consultation", "repair", "escalation"):
        assert f'id="p-{pid}"' in html
    complaint = html.split('id="p-complaint"')[1].split("</section>")[0]
    sha = next(d["sha256"] for d in kefu.definitions.all() if d["process_id"] == "complaint")
    assert sha[:12] in complaint and "system" in complaint
    assert re.search(r'<b class="running">1</b> / <span class="total">1</span>', complaint)
    assert 'href="/definitions/complaint/v/1.bpmn"' in complaint and 'href="/designer/complaint"' in complaint
    assert 'action="/designer/upload"' in html


def test_auditors_read_the_versions_but_get_no_editing(kefu):
    html = Web(kefu).login_as("auditor").page("/definitions")
    assert 'id="p-complaint"' in html and 'href="/definitions/complaint/v/1.bpmn"' in html
    assert "/designer/" not in html and 'action="/designer/upload"' not in html


def test_download_gives_the_deployed_file_byte_for_byte(kefu):
    r = owner(kefu).get("/definitions/complaint/v/1.bpmn")
    assert r.status_code == 200 and r.data == COMPLAINT
    assert 'filename="complaint-v1.bpmn"' in r.headers["Content-Disposition"]
    table = owner(kefu).get("/definitions/sla/v/1.bpmn")
    assert table.status_code == 200 and 'filename="sla-v1.dmn"' in table.headers["Content-Disposition"]


@pytest.mark.parametrize("url", ["/definitions/nosuch/v/1.bpmn", "/definitions/complaint/v/99.bpmn",
                                 "/designer/nosuch", "/designer/complaint?v=99"])
def test_unknown_processes_and_versions_are_not_found(kefu, url):
    r = owner(kefu).get(url)
    assert r.status_code == 404 and "Traceback" not in r.get_data(as_text=True)


def test_the_decision_table_is_not_opened_in_the_modeler(kefu):
    r = owner(kefu).get("/designer/sla")
    assert r.status_code == 400 and "决策表" in r.get_data(as_text=True)
    assert 'href="/designer/sla"' not in owner(kefu).page("/definitions")


def test_the_modeler_page_carries_the_version_and_the_vendored_bundle(kefu):
    html = owner(kefu).page("/designer/complaint")
    assert "vendor/bpmn-modeler/bpmn-modeler.min.js" in html and "designer.js" in html
    assert 'data-base-version="1"' in html and 'id="diagram-xml"' in html
    assert 'id=\\"register\\"' in html  # the diagram itself, as JSON text for the modeler
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing from outside the service


# ---------------------------------------------------------------- upload
CAMUNDA_MODELER_FILE = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Definitions_1" targetNamespace="http://bpmn.io/schema/bpmn"
  exporter="Camunda Modeler" exporterVersion="5.31.0">
  <bpmn:process id="callback" name="Callback" isExecutable="true" camunda:historyTimeToLive="180">
    <bpmn:laneSet id="LaneSet_1">
      <bpmn:lane id="Lane_agent" name="agent"><bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>call</bpmn:flowNodeRef><bpmn:flowNodeRef>done</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="call" name="Call back" camunda:asyncBefore="true" camunda:dueDate="${tomorrow}">
      <bpmn:extensionElements><camunda:formData>
        <camunda:formField id="note" label="Note" type="string"/>
      </camunda:formData></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="done"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="call"/>
    <bpmn:sequenceFlow id="f2" sourceRef="call" targetRef="done"/>
  </bpmn:process>
  <bpmndi:BPMNDiagram id="d"><bpmndi:BPMNPlane id="pl" bpmnElement="callback">
    <bpmndi:BPMNShape id="s_start" bpmnElement="start"><dc:Bounds x="100" y="100" width="36" height="36"/></bpmndi:BPMNShape>
    <bpmndi:BPMNShape id="s_call" bpmnElement="call"><dc:Bounds x="200" y="80" width="100" height="80"/></bpmndi:BPMNShape>
    <bpmndi:BPMNShape id="s_done" bpmnElement="done"><dc:Bounds x="360" y="100" width="36" height="36"/></bpmndi:BPMNShape>
  </bpmndi:BPMNPlane></bpmndi:BPMNDiagram>
</bpmn:definitions>
"""


def test_a_camunda_modeler_file_opens_in_the_modeler_with_its_unsupported_attributes_named(kefu):
    r = upload(owner(kefu), CAMUNDA_MODELER_FILE, "callback.bpmn")
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html[:500]
    assert 'id="diagram-xml"' in html and "Call back" in html and 'data-filename="callback.bpmn"' in html
    warning = re.search(r'<li class="finding warning" data-element="call">.*?</li>', html, re.S)
    assert warning and "camunda:dueDate" in warning[0]
    # historyTimeToLive and asyncBefore mean nothing in Kefu and are left alone without a word
    assert "historyTimeToLive" not in html.split('id="diagram-xml"')[0] and "camunda:asyncBefore" not in warning[0]
    assert 'data-base-version=""' in html
    assert versions(kefu, "callback") == []  # uploading deploys nothing


def test_an_uploaded_diagram_with_errors_still_opens_so_they_can_be_fixed(kefu):
    bad = CAMUNDA_MODELER_FILE.replace(b'label="Note" type="string"', b'label="Note" type="money"')
    html = upload(owner(kefu), bad, "callback.bpmn").get_data(as_text=True)
    assert re.search(r'<li class="finding error" data-element="call">', html)
    assert 'id="diagram-xml"' in html


@pytest.mark.parametrize("data, name, says", [
    (b"this is not a diagram", "notes.bpmn", "不是有效的 BPMN"),
    (b"%PDF-1.7 \x00\xff\xfe binary", "scan.bpmn", "不是有效的 BPMN"),
    (b"", "empty.bpmn", "文件为空"),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
     b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&lol2;</bpmn:definitions>',
     "laughs.bpmn", "DOCTYPE"),
    (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
     b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&xxe;</bpmn:definitions>',
     "xxe.bpmn", "DOCTYPE"),
    (b'<?xml version="1.0"?><html><body>hello</body></html>', "page.bpmn", "bpmn:definitions"),
    (b"<a>" + b"x" * (5 * 1024 * 1024) + b"</a>", "huge.bpmn", "文件太大"),
])
def test_bad_uploads_are_refused_with_a_clear_message(kefu, data, name, says):
    r = upload(owner(kefu), data, name)
    html = r.get_data(as_text=True)
    assert r.status_code == 422, html[:300]
    error = re.search(r'<div class="flash error upload-error" role="alert">(.*?)</div>(.*?)</section>', html, re.S)
    assert error and says in error[0], html[:2000]
    assert "root:" not in html and "Traceback" not in html
    assert 'id="diagram-xml"' not in html


def test_bad_uploads_speak_english_to_english_readers(kefu):
    web = owner(kefu)
    web.client.set_cookie("kefu_lang", "en")
    html = upload(web, b"", "empty.bpmn").get_data(as_text=True)
    assert "The file is empty" in html


# ---------------------------------------------------------------- check
def test_check_names_each_element_and_speaks_the_readers_language(kefu):
    web = owner(kefu)
    bad = COMPLAINT.replace(b"severity == 'major'</bpmn:conditionExpression>",
                            b"${severity.length() > 0}</bpmn:conditionExpression>", 1)
    res = web.post_json("/designer/check", {"xml": bad.decode(), "filename": "complaint.bpmn"}).get_json()
    assert res["lint"]["ok"] is False and res["testrun"] is None
    juel = [f for f in res["lint"]["findings"] if "JUEL" in f["text"] and f["severity"] == "error"]
    assert juel and juel[0]["element"] and "无法转换" in juel[0]["text"]
    web.client.set_cookie("kefu_lang", "en")
    res = web.post_json("/designer/check", {"xml": bad.decode(), "filename": "complaint.bpmn"}).get_json()
    juel_en = [f for f in res["lint"]["findings"] if f["element"] == juel[0]["element"]]
    assert juel_en and "does not translate" in juel_en[0]["text"] and "无法转换" not in juel_en[0]["text"]


def test_check_of_a_good_diagram_runs_it_along_each_path(kefu):
    res = owner(kefu).post_json("/designer/check", {"xml": relabelled().decode(),
                                                    "filename": "complaint.bpmn"}).get_json()
    assert res["lint"]["ok"] is True
    assert res["testrun"] and res["testrun"][0]["process_id"] == "complaint"
    paths = res["testrun"][0]["paths"]
    assert len(paths) > 1 and all(p["failure"] is None for p in paths)
    assert any("register" in p["steps"] for p in paths)


def test_check_refuses_a_request_without_a_diagram(kefu):
    web = owner(kefu)
    r = web.post_json("/designer/check", {"nothing": 1})
    assert r.status_code == 400 and r.get_json()["error"]["message"]
    r = web.client.post("/designer/check", data="not json", headers={"X-CSRFToken": web.csrf(),
                                                                     "Content-Type": "application/json"})
    assert r.status_code == 400


# ---------------------------------------------------------------- deploy
def test_deploy_through_the_web_makes_one_new_version_even_when_sent_twice(kefu):
    web = owner(kefu)
    body = {"xml": relabelled().decode(), "filename": "complaint.bpmn", "base_version": 1}
    first = web.post_json("/designer/deploy", body)
    assert first.status_code == 200, first.get_data(as_text=True)
    res = first.get_json()
    assert res["process_id"] == "complaint" and res["version"] == 2 and res["created"] is True
    again = web.post_json("/designer/deploy", body).get_json()  # a double click, a resent request
    assert again["version"] == 2 and again["created"] is False
    assert versions(kefu) == [1, 2]
    newest = next(d for d in kefu.definitions.all() if d["process_id"] == "complaint" and d["version"] == 2)
    assert newest["deployed_by"] == "owner"
    html = web.page("/definitions")
    row = re.search(r'<tr data-version="2" class="latest">(.*?)</tr>', html, re.S)[1]
    assert "owner" in row and "place" in row and "事发地点（详细地址）" in row  # the change summary
    assert owner(kefu).get("/definitions/complaint/v/2.bpmn").data == relabelled()


def test_deploy_without_the_csrf_token_changes_nothing(kefu):
    web = owner(kefu)
    r = web.client.post("/designer/deploy", json={"xml": relabelled().decode(), "filename": "complaint.bpmn"},
                        headers={"Accept": "application/json"})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "csrf"
    r = web.client.post("/designer/deploy", data={"xml": relabelled().decode()})
    assert r.status_code == 400
    assert versions(kefu) == [1]


def test_deploy_refuses_a_diagram_with_lint_errors_and_names_them(kefu):
    bad = COMPLAINT.replace(b"severity == 'major'</bpmn:conditionExpression>",
                            b"${severity.length() > 0}</bpmn:conditionExpression>", 1)
    r = owner(kefu).post_json("/designer/deploy", {"xml": bad.decode(), "filename": "complaint.bpmn"})
    assert r.status_code == 422
    err = r.get_json()["error"]
    assert "不能部署" in err["message"] and err["findings"] and all(f["element"] for f in err["findings"])
    assert versions(kefu) == [1]


def test_deploy_on_a_stale_version_is_refused_so_nobody_overwrites_a_colleague(kefu):
    web = owner(kefu)
    assert web.post_json("/designer/deploy", {"xml": relabelled().decode(), "base_version": 1}).status_code == 200
    other = COMPLAINT.replace('label="客户要求"'.encode(), 'label="客户诉求"'.encode())
    r = web.post_json("/designer/deploy", {"xml": other.decode(), "base_version": 1})
    assert r.status_code == 409 and "第 2 版" in r.get_json()["error"]["message"]
    assert versions(kefu) == [1, 2]


def test_deploy_from_a_plain_form_redirects_to_the_definitions_with_a_message(kefu):
    web = owner(kefu)
    r = web.post("/designer/deploy", {"xml": relabelled().decode(), "filename": "complaint.bpmn"})
    assert r.status_code == 302 and "/definitions" in r.headers["Location"]
    html = web.page("/definitions")
    assert "已部署 complaint 第 2 版" in html
    r = web.post("/designer/deploy", {"xml": "<not-xml"})
    assert r.status_code == 302
    assert "不能部署" in web.page("/definitions") and versions(kefu) == [1, 2]


def test_new_tickets_use_the_new_version_and_running_ones_keep_theirs(kefu, scenario):
    register(scenario)
    old = scenario.ticket_no
    assert owner(kefu).post_json("/designer/deploy", {"xml": relabelled().decode()}).status_code == 200
    agent = Web(kefu).login_as("agent")
    assert "事发地点（详细地址）" in agent.page("/new/complaint")
    assert kefu.instances.show(old)["definition"]["version"] == 1
    html = owner(kefu).page("/definitions")
    complaint = html.split('id="p-complaint"')[1].split("</section>")[0]
    v1 = re.search(r'<tr data-version="1"[^>]*>(.*?)</tr>', complaint, re.S)[1]
    assert '<b class="running">1</b>' in v1


# ---------------------------------------------------------------- moving a running ticket
def later_step_relabelled() -> bytes:
    old = 'id="satisfied" label="客户是否满意"'.encode()
    assert COMPLAINT.count(old) == 1
    return COMPLAINT.replace(old, 'id="satisfied" label="客户对处理结果是否满意"'.encode())


def test_a_ticket_moves_to_a_version_that_changed_only_steps_ahead_of_it(kefu, scenario):
    register(scenario)
    web = owner(kefu)
    assert web.post_json("/designer/deploy", {"xml": later_step_relabelled().decode()}).status_code == 200
    page = web.page(f"/instances/{scenario.ticket_no}")
    assert f'href="/instances/{scenario.ticket_no}/migrate"' in page
    v1 = re.search(r'<tr data-version="1"[^>]*>(.*?)</tr>', web.page("/definitions").split('id="p-complaint"')[1], re.S)[1]
    assert f'href="/instances/{scenario.ticket_no}/migrate"' in v1  # the tickets left on an older version
    html = web.page(f"/instances/{scenario.ticket_no}/migrate")
    assert re.search(r'<tr data-version="2">.*?可以安全迁移.*?name="to_version" value="2"', html, re.S)
    r = web.post(f"/instances/{scenario.ticket_no}/migrate", {"to_version": "2"})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/instances/{scenario.ticket_no}")
    shown = kefu.instances.show(scenario.ticket_no)
    assert shown["definition"]["version"] == 2
    moved = [e for e in shown["events"] if e["type"] == "instance_migrated"]
    assert moved and moved[0]["actor"] == "owner"
    assert "已从第 1 版迁移到第 2 版" in web.page(f"/instances/{scenario.ticket_no}")


def test_a_ticket_does_not_move_when_a_step_it_ran_changed_and_the_page_says_why(kefu, scenario):
    register(scenario)
    web = owner(kefu)
    assert web.post_json("/designer/deploy", {"xml": relabelled().decode()}).status_code == 200
    html = web.page(f"/instances/{scenario.ticket_no}/migrate")
    row = re.search(r'<tr data-version="2">(.*?)</tr>', html, re.S)[1]
    assert "不能迁移" in row and "register" in row and 'name="to_version"' not in row
    before = kefu.instances.show(scenario.ticket_no)
    r = web.post(f"/instances/{scenario.ticket_no}/migrate", {"to_version": "2"})  # a forged or stale form
    assert r.status_code == 409 and "register" in r.get_data(as_text=True)
    after = kefu.instances.show(scenario.ticket_no)
    assert after["definition"]["version"] == 1 and after["events"] == before["events"]


def test_the_ticket_page_offers_a_move_only_when_a_newer_version_exists_and_only_to_the_owner(kefu, scenario):
    register(scenario)
    link = f'href="/instances/{scenario.ticket_no}/migrate"'
    page = owner(kefu).page(f"/instances/{scenario.ticket_no}")
    assert link not in page and "迁移到新版本" not in page  # v1 is the newest version
    assert owner(kefu).post_json("/designer/deploy", {"xml": later_step_relabelled().decode()}).status_code == 200
    for who in ROLES:
        page = Web(kefu).login_as(who).get(f"/instances/{scenario.ticket_no}").get_data(as_text=True)
        assert (link in page) == (who == "owner"), who
    consultation = kefu.instances.start("consultation", "agent")  # another process, still on its only version
    assert "迁移到新版本" not in owner(kefu).page(f"/instances/{consultation['ticket_no']}")


@pytest.mark.parametrize("lang, said, not_said", [
    ("zh", "已完成的步骤 'register'（登记投诉） 在版本 2 中有改动（表单或属性）", "changed in version 2"),
    ("en", "completed step 'register' (登记投诉) changed in version 2 (form or properties)", "有改动"),
], ids=["zh", "en"])
def test_the_reasons_a_move_is_refused_are_in_the_readers_language(kefu, scenario, lang, said, not_said):
    register(scenario)
    web = owner(kefu)
    assert web.post_json("/designer/deploy", {"xml": relabelled().decode()}).status_code == 200
    web.client.set_cookie("kefu_lang", lang)
    html = web.page(f"/instances/{scenario.ticket_no}/migrate").replace("&#39;", "'")
    row = re.search(r'<tr data-version="2">(.*?)</tr>', html, re.S)[1]
    assert said in row and not_said not in row
    r = web.post(f"/instances/{scenario.ticket_no}/migrate", {"to_version": "2"})
    text = r.get_data(as_text=True).replace("&#39;", "'")
    assert r.status_code == 409
    refusal = re.search(r'class="flash error migrate-refused"[^>]*>(.*?)</div>', text, re.S)[1]
    row = re.search(r'<tr data-version="2">(.*?)</tr>', text, re.S)[1]
    assert said in refusal and said in row and not_said not in refusal + row


@pytest.mark.parametrize("lang, said", [("zh", "这张工单刚刚被其他人修改"), ("en", "changed by someone else")])
def test_a_move_lost_to_a_concurrent_change_is_refused_in_the_readers_language(kefu, scenario, monkeypatch,
                                                                              lang, said):
    from engine import Conflict
    register(scenario)
    web = owner(kefu)
    assert web.post_json("/designer/deploy", {"xml": later_step_relabelled().decode()}).status_code == 200

    def stale(*args, **kwargs):
        raise Conflict(f"instance {scenario.ticket_no} was changed by someone else meanwhile; nothing was saved")
    monkeypatch.setattr(kefu.designer, "migrate_instance", stale)
    web.client.set_cookie("kefu_lang", lang)
    r = web.post(f"/instances/{scenario.ticket_no}/migrate", {"to_version": "2"})
    assert r.status_code == 409
    assert said in re.search(r'migrate-refused[^>]*>(.*?)</div>', r.get_data(as_text=True), re.S)[1]


@pytest.mark.parametrize("who", [r for r in ROLES if r != "owner"])
def test_only_the_process_owner_may_move_a_ticket(kefu, scenario, who):
    register(scenario)
    assert owner(kefu).post_json("/designer/deploy", {"xml": later_step_relabelled().decode()}).status_code == 200
    web = Web(kefu).login_as(who)
    assert web.get(f"/instances/{scenario.ticket_no}/migrate").status_code == 403
    assert web.post(f"/instances/{scenario.ticket_no}/migrate", {"to_version": "2"}).status_code == 403
    assert kefu.instances.show(scenario.ticket_no)["definition"]["version"] == 1


@pytest.mark.parametrize("form, status", [({"to_version": "99"}, 404), ({"to_version": "abc"}, 400), ({}, 400)])
def test_moving_to_a_version_that_does_not_exist_is_refused_clearly(kefu, scenario, form, status):
    register(scenario)
    r = owner(kefu).post(f"/instances/{scenario.ticket_no}/migrate", form)
    assert r.status_code == status and "Traceback" not in r.get_data(as_text=True)
    assert owner(kefu).get("/instances/NO-SUCH/migrate").status_code == 404


# ---------------------------------------------------------------- odd requests
def test_a_huge_or_malformed_json_diagram_is_refused_with_a_message(kefu):
    web = owner(kefu)
    huge = "<a>" + "x" * (5 * 1024 * 1024 + 10) + "</a>"
    for url in ("/designer/check", "/designer/deploy"):
        r = web.post_json(url, {"xml": huge})
        assert r.status_code in (400, 422) and "5 MB" in r.get_json()["error"]["message"], url
        r = web.post_json(url, {"xml": 42})
        assert r.status_code in (400, 422) and r.get_json()["error"]["message"], url
        r = web.post_json(url, ["not", "an", "object"])
        assert r.status_code in (400, 422), url
    r = web.post_json("/designer/deploy", {"xml": relabelled().decode(), "base_version": "seven"})
    assert r.status_code == 422 and r.get_json()["error"]["message"]
    assert versions(kefu) == [1]


def test_the_modeler_speaks_english_to_english_readers(kefu):
    web = owner(kefu)
    web.client.set_cookie("kefu_lang", "en")
    html = web.page("/designer/complaint")
    assert "Deploy new version" in html and '"Form fields": "Form fields"' in html
    web.client.set_cookie("kefu_lang", "zh")
    assert '"Form fields": "\\u8868\\u5355\\u5b57\\u6bb5"' in web.page("/designer/complaint")  # 表单字段


def test_an_upload_without_the_csrf_token_is_refused(kefu):
    web = owner(kefu)
    from io import BytesIO
    r = web.client.post("/designer/upload", data={"file": (BytesIO(CAMUNDA_MODELER_FILE), "callback.bpmn")},
                        content_type="multipart/form-data")
    assert r.status_code == 400 and 'id="diagram-xml"' not in r.get_data(as_text=True)


def test_markup_inside_an_uploaded_diagram_stays_text(kefu):
    evil = CAMUNDA_MODELER_FILE.replace(b'name="Call back"',
                                        b'name="&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"')
    html = upload(owner(kefu), evil, "callback.bpmn").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "</script><script>" not in html
    assert 'id="diagram-xml"' in html
