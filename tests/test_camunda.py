"""Diagrams drawn for Camunda 7 run on Kefu (issue 22), engine half: JUEL translated or refused with a rewrite,
every other construct run or named, lanes-less user tasks routed by their candidates, external tasks worked by
workers (locks, failures, incidents), messages, call activities across files, folders deployed all or none.
The diagrams are in tests/diagrams/camunda/ (an invoice approval, an order started and moved on by messages,
the shipping process it calls)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from engine import Conflict, DefinitionError, NotAllowed
from engine.bpmn.juel import JuelError, translate
from engine.bpmn.lint import lint_diagram
from tests.conftest import DIAGRAMS

CAMUNDA = DIAGRAMS / "camunda"
INVOICE = (CAMUNDA / "invoice.bpmn").read_text(encoding="utf-8")
ARCHIVE = "org.example.invoice.ArchiveInvoiceService"


# ---------------------------------------------------------------- JUEL
@pytest.mark.parametrize("juel, python", [
    ("${approved}", "approved"), ("${!approved}", "not approved"), ("#{not approved}", "not approved"),
    ("${amount > 1000 && vip}", "amount > 1000 and vip"), ("${a gt 1 and b le 2}", "a > 1 and b <= 2"),
    ("${a == 'x' || b ne null}", "a == 'x' or b != None"), ("${s eq \"it's\"}", "s == \"it's\""),
    ("${empty list}", "list in (None, '', [], {})"), ("${!(a && b)}", "not (a and b)"), ("${x lt 2.5e1}", "x < 2.5e1"),
    ("${ge1 ge 0 == true}", "(ge1 >= 0) == True"), ("${initiator}", "started_by"),
])
def test_the_juel_subset_becomes_python(juel, python):
    assert translate(juel, {"initiator": "started_by"}) == python


@pytest.mark.parametrize("juel, reason, suggestion", [
    ('${execution.getVariable("amount") > 5}', "method calls", "amount > 5"),
    ("${invoice.amount ge 1000}", "property access", "invoice['amount'] >= 1000"),
    ("${amount * 2 > 10}", "'*'", "amount * 2 > 10"),
    ("${vip ? 'fast' : 'slow'}", "'?'", "'fast' if vip else 'slow'"),
    ("Dear ${name}", "composite", "f'Dear {name}'"),
    ("${myBean.check()}", "method calls", None),
])
def test_juel_outside_the_subset_is_refused_with_a_rewrite(juel, reason, suggestion):
    with pytest.raises(JuelError) as exc:
        translate(juel)
    assert reason in exc.value.reason and exc.value.suggestion == suggestion


# ---------------------------------------------------------------- constructs named before deploy
def only(report, code):
    found = [f for f in report.findings if f.code == code]
    assert found, [str(f) for f in report.findings]
    return found[0]


SCRIPT = ('<bpmn:sequenceFlow id="f_archived" sourceRef="archive_invoice" targetRef="notify"/>'
          '<bpmn:scriptTask id="notify" name="Notify" scriptFormat="{fmt}"><bpmn:script>{code}</bpmn:script>'
          '</bpmn:scriptTask><bpmn:sequenceFlow id="f_notified" sourceRef="notify" targetRef="end_paid"/>')
TIMER = ('<bpmn:boundaryEvent id="remind" attachedToRef="approve_invoice" cancelActivity="false">'
         '<bpmn:timerEventDefinition><bpmn:timeCycle>{cycle}</bpmn:timeCycle></bpmn:timerEventDefinition>'
         '</bpmn:boundaryEvent><bpmn:sequenceFlow id="f_remind" sourceRef="remind" targetRef="end_reminded"/>'
         '<bpmn:endEvent id="end_reminded"/>')


def script(fmt: str, code: str) -> tuple:
    return ('<bpmn:sequenceFlow id="f_archived" sourceRef="archive_invoice" targetRef="end_paid"/>',
            SCRIPT.format(fmt=fmt, code=code))


@pytest.mark.parametrize("change, code, element, en, zh", [
    (script("javascript", "execution.setVariable('x', 1);"), "script_language", "notify",
     "JavaScript is not supported: rewrite the script in Python", "不支持 JavaScript"),
    (script("groovy", "println 'hi'"), "script_language", "notify", "Groovy is not supported", "不支持 Groovy"),
    (("</bpmn:userTask>\n    <bpmn:userTask id=\"approve_small\"",
      "</bpmn:userTask>" + TIMER.format(cycle="0 0 9 * * ?") + "<bpmn:userTask id=\"approve_small\""),
     "cron_timer", "remind", "is a cron expression", "cron 表达式"),
    (("${amount &gt; 1000}", "${invoice.amount &gt; 1000}"), "juel_unsupported", "f_large",
     "write it in Python, e.g. invoice['amount'] > 1000", "请改写为 Python"),
    (('camunda:class="org.example.invoice.ArchiveInvoiceService"', 'camunda:type="external"'),
     "external_without_topic", "archive_invoice", "needs a topic", "需要主题"),
    (('<bpmn:serviceTask id="archive_invoice"', '<bpmn:businessRuleTask id="archive_invoice" '
      'camunda:decisionRef="invoice-rules"'), "decision_ref", "archive_invoice", "DMN decision", "DMN 决策"),
    (('camunda:candidateGroups="supervisor"', 'camunda:candidateGroups="${approvers.first()}"'), "juel_unsupported",
     "approve_invoice", "camunda:candidateGroups", "无法转换"),
])
def test_what_kefu_cannot_run_is_named_with_element_line_and_rewrite(change, code, element, en, zh):
    text = INVOICE.replace(*change)
    if change[0].startswith('<bpmn:serviceTask'):
        text = text.replace("</bpmn:serviceTask>", "</bpmn:businessRuleTask>")
    assert text != INVOICE
    report = lint_diagram(text, "invoice.bpmn")
    f = only(report, code)
    assert f.severity == "error" and f.element == element and f.line, str(f)
    assert en in f.en and zh in f.zh, str(f)
    assert not report.ok
    # one name for one problem: the sandbox does not repeat it as a syntax error
    assert not [x for x in report.errors if x.element == element and x.code != code], [str(x) for x in report.errors]


def test_harmless_camunda_attributes_are_silent_and_forms_that_kefu_cannot_read_warn():
    assert lint_diagram(INVOICE, "invoice.bpmn").findings == []  # historyTimeToLive, versionTag, asyncBefore
    text = INVOICE.replace('<bpmn:userTask id="approve_invoice"',
                           '<bpmn:userTask id="approve_invoice" camunda:formKey="embedded:app:forms/approve.html"')
    text = text.replace('<bpmn:userTask id="review_invoice" name="Review invoice"',
                        '<bpmn:userTask id="review_invoice" name="Review invoice" camunda:formRef="review"')
    text = re.sub(r'(<bpmn:userTask id="review_invoice".*?)<bpmn:extensionElements>.*?</bpmn:extensionElements>',
                  r"\1", text, flags=re.S)
    warned = {f.element: f for f in lint_diagram(text, "invoice.bpmn").warnings if f.code == "form_not_read"}
    assert "shows its form fields" in warned["approve_invoice"].en
    assert "the task has no fields" in warned["review_invoice"].en and "没有表单字段" in warned["review_invoice"].zh


def test_lint_reports_every_problem_in_one_pass():
    text = INVOICE.replace('<bpmn:endEvent id="end_paid" name="Invoice paid">',
                           '<bpmn:endEvent id="end_paid" name="Invoice paid"><bpmn:teleport/>')  # schema
    text = text.replace('type="long"', 'type="money"')  # Kefu's form check
    text = text.replace("${!approved}", "${approved.no()}")  # JUEL refused
    text = text.replace('<bpmn:exclusiveGateway id="gw_clarified" name="Clarified?">',
                        '<bpmn:complexGateway id="gw_clarified" name="Clarified?">').replace(
        '<bpmn:outgoing>f_rejected</bpmn:outgoing>\n    </bpmn:exclusiveGateway>',
        '<bpmn:outgoing>f_rejected</bpmn:outgoing>\n    </bpmn:complexGateway>')  # SpiffWorkflow refuses it
    text = text.replace('calledElement', 'x').replace('<bpmn:endEvent id="end_rejected"',
                                                      '<bpmn:callActivity id="call_x" calledElement="nowhere"/>'
                                                      '<bpmn:endEvent id="end_rejected"')  # unresolved call
    report = lint_diagram(text, "invoice.bpmn")
    codes = {f.code: f for f in report.errors}
    assert {"schema", "field_unknown_type", "juel_unsupported", "engine_parse", "call_unresolved"} <= set(codes), \
        [str(f) for f in report.findings]
    assert codes["engine_parse"].element == "gw_clarified" and codes["call_unresolved"].element == "call_x"
    assert all(f.line for f in report.errors)


def test_a_gateway_whose_conditions_may_all_be_false_warns_and_stops_as_an_incident(kefu, scenario, tmp_path):
    text = INVOICE.replace("${amount &gt; 1000}", "${category == 'travel'}").replace(
        "${amount le 1000}", "${category eq 'software'}")
    report = lint_diagram(text, "invoice.bpmn")
    assert report.ok and only(report, "gateway_without_default").element == "gw_amount"
    (tmp_path / "invoice.bpmn").write_text(text, encoding="utf-8")
    kefu.definitions.deploy([tmp_path])
    scenario.start("invoice-approval")
    r = scenario.complete("enter_invoice", "agent", {"creditor": "ACME", "amount": 10})  # no category
    assert r["status"] == "incident" and r["incident"]["bpmn_id"] == "gw_amount"
    again = scenario.k.instances.retry_incident(scenario.ticket_no, "supervisor", {"category": "software"})
    assert again["status"] == "active" and scenario.ready_ids() == ["approve_small"]


# ---------------------------------------------------------------- lanes optional, external tasks: the invoice
def test_the_invoice_approval_runs_with_candidates_and_a_worker(kefu, scenario):
    """The new user's scenario: a Camunda 7 invoice approval without lanes, with JUEL conditions and a
    camunda:class service task, deploys as it stands; people work its tasks, a worker the service task."""
    (deployed,) = kefu.definitions.deploy([CAMUNDA / "invoice.bpmn"])
    assert deployed["process_id"] == "invoice-approval" and deployed["status"] == "deployed"
    started = scenario.start("invoice-approval", actor="agent")
    assert started["ticket_no"].startswith("IN")  # derived from the id: no kefu:ticketPrefix
    enter = scenario.task("enter_invoice")
    assert (enter["role"], enter["assignee"]) == ("agent", "agent")  # no candidates: the starter's role
    scenario.complete("enter_invoice", "agent", {"creditor": "ACME", "amount": 5000, "category": "travel"})
    approve = scenario.task("approve_invoice")
    assert approve["candidates"] == ["role:supervisor"] and approve["assignee"] is None
    assert [t["bpmn_id"] for t in scenario.k.tasks.ready(actor="agent")] == []
    with pytest.raises(NotAllowed):
        scenario.complete("approve_invoice", "agent", {"approved": True})
    scenario.complete("approve_invoice", "supervisor", {"approved": False})
    review = scenario.task("review_invoice")
    assert review["assignee"] == "agent"  # ${initiator}, the start event's camunda:initiator
    scenario.complete("review_invoice", "agent", {"clarified": True})
    scenario.complete("enter_invoice", "agent", {"creditor": "ACME", "amount": 800})
    small = scenario.task("approve_small")
    assert small["candidates"] == ["user:agent2", "user:supervisor"] and small["role"] is None
    with pytest.raises(NotAllowed):
        scenario.complete("approve_small", "agent", {"approved": True})
    scenario.k.tasks.claim(small["id"], "agent2")
    scenario.complete("approve_small", "agent2", {"approved": True})

    k = scenario.k
    (open_task,) = k.external.list(topic=ARCHIVE)
    (got,) = k.external.fetch_and_lock("w1", [ARCHIVE], timedelta(minutes=5))
    assert got["id"] == open_task["id"] and got["variables"]["creditor"] == "ACME" and got["variables"]["approved"]
    assert k.external.fetch_and_lock("w2", [ARCHIVE], timedelta(minutes=5)) == []  # held by w1
    with pytest.raises(NotAllowed, match="locked by another worker"):
        k.external.complete(got["id"], "w2", {})
    scenario.advance(minutes=6)  # the lock expires: another worker may take it
    (again,) = k.external.fetch_and_lock("w2", None, timedelta(minutes=5))
    with pytest.raises(NotAllowed):
        k.external.complete(got["id"], "w1", {})
    k.external.extend_lock(again["id"], "w2", timedelta(minutes=30))
    done = k.external.complete(again["id"], "w2", {"archive_id": "A-17"})
    assert done["status"] == "completed"
    shown = scenario.show()
    assert shown["data"]["archive_id"] == "A-17" and shown["external_tasks"][0]["state"] == "completed"
    with pytest.raises(Conflict):
        k.external.complete(again["id"], "w2", {})
    assert [e["data"]["worker_id"] for e in scenario.events("external_task_completed")] == ["w2"]


def test_a_failing_worker_uses_up_its_retries_then_the_instance_has_an_incident(kefu, scenario):
    kefu.definitions.deploy([CAMUNDA / "invoice.bpmn"])
    scenario.start("invoice-approval")
    scenario.complete("enter_invoice", "agent", {"creditor": "ACME", "amount": 10})
    scenario.complete("approve_small", "agent2", {"approved": True})
    k = scenario.k
    (t,) = k.external.fetch_and_lock("w1", [ARCHIVE], timedelta(minutes=5))
    r = k.external.fail(t["id"], "w1", "archive unreachable", retry_in=timedelta(minutes=10))
    assert r["retries"] == 2 and r["status"] == "active"
    assert k.external.fetch_and_lock("w1", [ARCHIVE], timedelta(minutes=5)) == []  # not before 10 minutes
    scenario.advance(minutes=11)
    (t,) = k.external.fetch_and_lock("w1", [ARCHIVE], timedelta(minutes=5))
    r = k.external.fail(t["id"], "w1", "archive full", retries=0)
    assert r["status"] == "incident" and "archive full" in r["incident"]["message"]
    assert k.external.fetch_and_lock("w1", [ARCHIVE], timedelta(minutes=5)) == []
    k.instances.retry_incident(scenario.ticket_no, "supervisor", {"archive_hint": "use B"})
    (t,) = k.external.fetch_and_lock("w1", [ARCHIVE], timedelta(minutes=5))
    assert t["retries"] == 3 and t["variables"]["archive_hint"] == "use B"
    assert k.external.complete(t["id"], "w1")["status"] == "completed"


# ---------------------------------------------------------------- messages, call activities, folders
def test_messages_start_and_move_an_order_that_calls_a_process_of_another_file(kefu, scenario):
    deployed = kefu.definitions.deploy([CAMUNDA / "order.bpmn", CAMUNDA / "ship_order.bpmn"])
    assert {d["process_id"] for d in deployed} == {"order-fulfilment", "ship-order"}
    kefu.users.add("keeper", ["technician"], groups=["warehouse"])
    k = scenario.k
    first = k.messages.correlate("order-placed", "agent", {"total": 100})["started"]
    second = k.messages.correlate("order-placed", "agent", {"total": 50})["started"]
    assert first["ticket_no"].startswith("OF")  # kefu:ticketPrefix
    scenario.instance_id, scenario.ticket_no = first["instance_id"], first["ticket_no"]
    stock = {t["instance_id"]: t for t in k.external.fetch_and_lock("w", ["stock"], timedelta(minutes=5), 5)}
    k.external.complete(stock[first["instance_id"]]["id"], "w", {"reserved": True})
    cancelled = k.messages.correlate("order-cancelled", "agent", {"reason": "changed mind"})  # only one waits
    assert [c["ticket_no"] for c in cancelled["correlated"]] == [second["ticket_no"]]
    assert k.instances.show(second["ticket_no"])["status"] == "completed"
    assert k.instances.show(second["ticket_no"])["external_tasks"][0]["state"] == "cancelled"
    paid = k.messages.correlate("payment-received", "agent", {"paid_amount": 100}, instance=first["ticket_no"])
    assert paid["correlated"][0]["element"] == "wait_payment"
    pack = scenario.task("pack")  # in the called process, for the user group "warehouse"
    assert pack["candidates"] == ["group:warehouse"]
    with pytest.raises(NotAllowed):
        scenario.complete("pack", "technician", {"tracking_no": "SF123"})
    scenario.complete("pack", "keeper", {"tracking_no": "SF123"})
    shown = scenario.show()
    assert shown["status"] == "completed" and shown["data"]["tracking_no"] == "SF123"
    with pytest.raises(Exception, match="no instance waits"):
        k.messages.correlate("payment-received", "agent", {})


def test_a_call_activity_finds_a_deployed_process_and_keeps_it_after_a_restart(kefu, scenario):
    kefu.definitions.deploy([CAMUNDA / "ship_order.bpmn"])
    (order,) = kefu.definitions.deploy([CAMUNDA / "order.bpmn"])  # the called process is deployed already
    assert order["status"] == "deployed"
    started = scenario.k.messages.correlate("order-placed", "agent", {"total": 1})["started"]
    scenario.instance_id = started["instance_id"]
    k = scenario.k  # a new engine: the order's spec is parsed again, with the version it called at deploy
    (t,) = k.external.fetch_and_lock("w", ["stock"], timedelta(minutes=5))
    k.external.complete(t["id"], "w")
    scenario.k.messages.correlate("payment-received", "agent", {"paid_amount": 1})
    assert scenario.ready_ids() == ["pack"]


def test_a_folder_deploys_all_or_none_and_says_what_failed_in_each_file(kefu, tmp_path):
    (tmp_path / "invoice.bpmn").write_text(INVOICE, encoding="utf-8")
    (tmp_path / "order.bpmn").write_text((CAMUNDA / "order.bpmn").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "broken.bpmn").write_text(INVOICE.replace('id="invoice-approval"', 'id="invoice-2"')
                                          .replace("${!approved}", "${approved.no()}"), encoding="utf-8")
    with pytest.raises(DefinitionError) as exc:
        kefu.definitions.deploy([tmp_path])
    failed = {f["file"]: f for f in exc.value.details["files"]}
    assert set(failed) == {"broken.bpmn", "order.bpmn"}  # order.bpmn: its call activity finds nothing
    assert "JUEL" in failed["broken.bpmn"]["message"] and "ship-order" in failed["order.bpmn"]["message"]
    assert "nothing was deployed" in exc.value.message
    assert not [d for d in kefu.definitions.all() if d["process_id"] == "invoice-approval"]
    (tmp_path / "broken.bpmn").unlink()
    (tmp_path / "ship_order.bpmn").write_text((CAMUNDA / "ship_order.bpmn").read_text(encoding="utf-8"),
                                              encoding="utf-8")
    assert len(kefu.definitions.deploy([tmp_path])) == 3


def test_a_message_waited_for_by_several_instances_needs_one_named(kefu):
    kefu.definitions.deploy([CAMUNDA])
    for total in (1, 2):
        kefu.messages.correlate("order-placed", "agent", {"total": total})
    with pytest.raises(Conflict, match="2 instances wait for message 'order-cancelled'"):
        kefu.messages.correlate("order-cancelled", "agent")
    assert len(kefu.messages.correlate("order-cancelled", "agent", all_instances=True)["correlated"]) == 2
    with pytest.raises(NotAllowed):
        kefu.messages.correlate("order-placed", "auditor")



REVIEW = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="Defs_review" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="peer-review" name="Peer review" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="choose"/>
    <bpmn:userTask id="choose" name="Choose reviewers">
      <bpmn:extensionElements><camunda:formData>
        <camunda:formField id="reviewers" label="Reviewers" type="users"/>
      </camunda:formData></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f2" sourceRef="choose" targetRef="review"/>
    <bpmn:userTask id="review" name="Review" camunda:assignee="${reviewer}">
      <bpmn:multiInstanceLoopCharacteristics camunda:collection="${reviewers}" camunda:elementVariable="reviewer"/>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f3" sourceRef="review" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_camunda_collection_makes_one_task_per_item_assigned_by_its_element_variable(kefu, scenario, tmp_path):
    (tmp_path / "review.bpmn").write_text(REVIEW, encoding="utf-8")
    kefu.definitions.deploy([tmp_path])
    scenario.start("peer-review", actor="supervisor")
    scenario.complete("choose", "supervisor", {"reviewers": ["agent", "agent2"]})
    assert sorted(t["assignee"] for t in scenario.ready() if t["bpmn_id"] == "review") == ["agent", "agent2"]
    scenario.complete("review", "agent", assignee="agent")
    scenario.complete("review", "agent2", assignee="agent2")
    assert scenario.show()["status"] == "completed"


def test_a_literal_assignee_gets_the_task_and_nobody_else(kefu, scenario, tmp_path):
    text = INVOICE.replace('camunda:assignee="${initiator}"', 'camunda:assignee="agent2"')
    (tmp_path / "invoice.bpmn").write_text(text, encoding="utf-8")
    kefu.definitions.deploy([tmp_path])
    scenario.start("invoice-approval")
    scenario.complete("enter_invoice", "agent", {"creditor": "ACME", "amount": 10})
    scenario.complete("approve_small", "supervisor", {"approved": False})
    review = scenario.task("review_invoice")
    assert review["assignee"] == "agent2" and review["candidates"] == []
    with pytest.raises(NotAllowed):
        scenario.complete("review_invoice", "agent", {"clarified": False})
    scenario.complete("review_invoice", "agent2", {"clarified": False})
    assert scenario.show()["status"] == "completed"
