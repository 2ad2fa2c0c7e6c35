"""Forms that help (issue 20): conditional required fields, dates that default to now, values prefilled from
earlier steps and an arrival time checked against the ticket, all declared in the real diagrams and enforced
by the engine; a warning for a new customer whose phone is an existing customer's."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engine.bpmn.forms import FormValidator, build_fields, lint_form, prefilled
from engine.errors import FormValidationError
from tests.test_complaint import register as register_complaint
from tests.test_consultation import register as register_consultation, to_department
from tests.test_repair import dispatch, register as register_repair


def test_answered_on_the_spot_needs_the_answer(scenario):
    with pytest.raises(FormValidationError) as exc:
        register_consultation(scenario, on_spot=True, answer="")
    assert exc.value.errors == {"answer": "required"}
    register_consultation(scenario, on_spot=False)  # not answered: no answer needed


def test_an_emergency_needs_its_scale(scenario):
    with pytest.raises(FormValidationError) as exc:
        register_repair(scenario, emergency=True, emergency_scale=None)
    assert exc.value.errors == {"emergency_scale": "required"}
    register_repair(scenario, emergency=False)


def test_the_complaint_time_defaults_to_now(scenario, clock):
    register_complaint(scenario, complaint_time="")
    data = scenario.show()["data"]
    assert datetime.fromisoformat(data["complaint_time"]) == clock.now()
    form = scenario.k.instances.start_form("complaint")["form"]
    assert next(f for f in form if f["id"] == "complaint_time")["default_now"] is True


def test_the_arrival_time_cannot_precede_the_ticket_nor_be_in_the_future(scenario):
    register_repair(scenario)
    dispatch(scenario)
    scenario.advance(minutes=40)
    base = {"repair_result": "已更换", "customer_cooperation_needed": False}
    for when, message in ((scenario.later(days=-1), "must not be before the ticket was opened"),
                          (scenario.later(hours=2), "must not be in the future")):
        with pytest.raises(FormValidationError) as exc:
            scenario.complete("repair_work", "technician", {**base, "arrived_at": when})
        assert exc.value.errors["arrived_at"].startswith(message)
    scenario.complete("repair_work", "technician", {**base, "arrived_at": scenario.later(minutes=-1)})


def test_the_relay_answer_is_prefilled_from_the_department_reply(scenario, web):
    to_department(scenario)
    scenario.complete("department_answer", "department", {"department_reply": "服务费含 7×24 小时监控"})
    task = scenario.task("relay_answer")
    assert next(f for f in task["form"] if f["id"] == "answer")["prefill"] == "department_reply"
    web.login_as("agent")
    page = web.page(f"/tasks/{task['id']}")
    assert "服务费含 7×24 小时监控</textarea>" in page


def test_prefill_of_a_list_is_one_item_a_line_and_lint_checks_the_properties():
    fields = [{"id": "result", "prefill": "findings"}, {"id": "other"}]
    assert prefilled(fields, {"findings": ["甲：属实", "乙：已整改"]}) == {"result": "甲：属实\n乙：已整改"}
    form = {"fields": [{"id": "a", "label": "A", "type": "string", "properties": {"required_if": "nope",
                                                                                  "default_now": "true"}}]}
    problems = dict(lint_form(form))
    assert "required_if names no field" in problems["a"] or "default_now" in problems["a"]
    assert len(lint_form(form)) == 2


def test_required_if_with_a_value():
    form = {"fields": [
        {"id": "severity", "label": "S", "type": "enum", "options": [{"id": "general"}, {"id": "major"}]},
        {"id": "why", "label": "W", "type": "string", "properties": {"required_if": "severity=major"}}]}
    v = FormValidator(build_fields(form))
    assert v.validate({"severity": "general"}) == {"severity": "general", "why": None}
    with pytest.raises(FormValidationError) as exc:
        v.validate({"severity": "major"})
    assert exc.value.errors == {"why": "required"}


def test_a_new_customer_with_a_known_phone_is_warned_not_refused(web, kefu):
    web.login_as("agent")
    r = web.post_json("/api/customers", {"name": "李小姐", "phone": "138-0013-8000"})
    assert r.status_code == 201
    body = r.get_json()
    assert body["same_phone"][0]["name"] == "李先生" and "李先生" in body["warning"]
    typed = {"kefu_customer_id": "", "customer_name": "王先生", "contact_phone": "13800138000",
             "fault_symptom": "门禁坏了", "location": "1 号门", "impact_scope": "", "emergency": "false"}
    done = web.post("/new/repair", typed, follow_redirects=True)
    assert done.status_code == 200 and "已属于客户" in done.get_data(as_text=True)
