"""Consultation procedure (RULES.md C1–C5, T1) driven through processes/consultation.bpmn."""
from datetime import datetime

import pytest

from engine import FormValidationError, NotAllowed
from tests.pg import on_both_databases


def register(sc, on_spot, **over):
    data = {"customer_name": "李先生", "contact_phone": "13800138000", "region": "北京", "channel": "phone",
            "question": "家用报警器每月服务费包含哪些项目？", "answered_on_spot": on_spot}
    if on_spot is True:
        data["answer"] = "包含 7×24 小时监控。"  # answered on the spot: the answer is recorded (C2; required_if)
    data.update(over)
    return sc.start("consultation", data)


def to_department(sc, department="finance", hours=8, question="服务费明细", accept=True):
    """C3 + C4: the agent promises a reply and transfers the question to a department, which accepts it."""
    register(sc, on_spot=False)
    sc.complete("promise_reply", "agent", {"promised_reply_time": sc.later(days=1), "needs_department": True})
    sc.complete("transfer", "agent", {"department": department, "transfer_question": question,
                                      "required_reply_time": sc.later(hours=hours)})
    if accept:
        sc.complete("department_accept", "department", {"accept_note": "已接单"})


def test_c1_registration_records_customer_region_channel_and_question(scenario):
    r = register(scenario, on_spot=True, answer="包含 7×24 小时监控与每季度巡检。")
    assert r["ticket_no"].startswith("ZX20261123-")
    done = scenario.events("task_completed")[0]
    assert done["bpmn_id"] == "register" and "C1" in done["rules"]
    assert {k: done["data"][k] for k in ("customer_name", "contact_phone", "region", "channel", "question")} == {
        "customer_name": "李先生", "contact_phone": "13800138000", "region": "北京", "channel": "phone",
        "question": "家用报警器每月服务费包含哪些项目？"}
    assert scenario.show()["customer"]["phone"] == "13800138000"


def test_c1_channel_is_phone_or_online(scenario):
    with pytest.raises(FormValidationError) as exc:
        register(scenario, on_spot=True, channel="fax")
    assert "channel" in exc.value.errors


def test_c2_answered_on_the_spot_then_satisfaction_confirmed_and_closed(scenario):
    register(scenario, on_spot=True, answer="包含 7×24 小时监控与每季度巡检。")
    t = scenario.task("confirm_on_spot")
    assert "C2" in t["rules"]
    scenario.complete("confirm_on_spot", "agent", {"satisfied": True})
    shown = scenario.show()
    assert shown["status"] == "completed"
    assert [e["bpmn_id"] for e in scenario.events("end_reached")] == ["end_on_spot"]


def test_c3_complex_question_gets_a_promised_reply_time(scenario):
    register(scenario, on_spot=False)
    t = scenario.task("promise_reply")
    assert "C3" in t["rules"]
    with pytest.raises(FormValidationError) as exc:   # a promise in the past is no promise
        scenario.complete("promise_reply", "agent", {"promised_reply_time": scenario.later(hours=-1),
                                                     "needs_department": False})
    assert "promised_reply_time" in exc.value.errors
    scenario.complete("promise_reply", "agent", {"promised_reply_time": scenario.later(hours=4),
                                                 "needs_department": False})
    assert scenario.ready_ids() == ["relay_answer"]
    assert scenario.show()["data"]["promised_reply_time"] == "2026-11-23T13:00:00+08:00"


def test_c4_transfer_form_to_a_department_with_required_reply_time(scenario):
    register(scenario, on_spot=False)
    scenario.complete("promise_reply", "agent", {"promised_reply_time": scenario.later(days=1),
                                                 "needs_department": True})
    t = scenario.task("transfer")
    assert "C4" in t["rules"]
    assert {f["id"]: f["required"] for f in t["form"]} == {
        "department": True, "transfer_question": True, "required_reply_time": True}
    scenario.complete("transfer", "agent", {"department": "finance", "transfer_question": "服务费明细",
                                            "required_reply_time": scenario.later(hours=8)})
    a = scenario.task("department_accept")   # T1: the department accepts the work order within 30 minutes
    assert a["role"] == "department" and a["candidate_group"] == "finance"
    assert datetime.fromisoformat(a["due_at"]) == datetime.fromisoformat(scenario.later(minutes=30))
    assert datetime.fromisoformat(a["finish_due"]) == datetime.fromisoformat(scenario.later(hours=8))
    scenario.complete("department_accept", "department", {})
    d = scenario.task("department_answer")
    assert d["role"] == "department" and d["candidate_group"] == "finance"
    assert datetime.fromisoformat(d["due_at"]) == datetime.fromisoformat(scenario.later(hours=8))


def test_c5_department_answer_is_relayed_and_satisfaction_confirmed(scenario):
    to_department(scenario)
    scenario.complete("department_answer", "department", {"department_reply": "月费含监控、巡检与一次免费维修。"})
    t = scenario.task("relay_answer")
    assert "C5" in t["rules"]
    scenario.complete("relay_answer", "agent", {"answer": "月费含监控、巡检与一次免费维修。", "satisfied": True})
    shown = scenario.show()
    assert shown["status"] == "completed" and shown["data"]["satisfied"] is True
    assert [e["actor"] for e in scenario.events("task_completed")] == ["agent", "agent", "agent", "department", "department",
                                                                         "agent"]


@on_both_databases
def test_t1_overdue_department_reply_is_redispatched_and_supervisor_warned(scenario):
    to_department(scenario, hours=2)
    scenario.advance(hours=2, seconds=1)
    assert {t["bpmn_id"]: t["role"] for t in scenario.ready()} == {"redispatch": "agent",
                                                                   "overdue_warning": "supervisor"}
    scenario.complete("redispatch", "agent", {"department": "sales", "required_reply_time": scenario.later(hours=4),
                                              "redispatch_reason": "财务部超时"})
    assert scenario.task("department_accept")["candidate_group"] == "sales"
    assert len(scenario.events("timer_fired")) == 1


def test_c4_department_staff_see_only_their_own_department_transfers(scenario):
    scenario.base.users.add("fin1", ["department"], groups=["finance"])
    scenario.base.users.add("sales1", ["department"], groups=["sales"])
    to_department(scenario, question="发票")
    assert [t["bpmn_id"] for t in scenario.ready("fin1")] == ["department_answer"]
    assert scenario.ready("sales1") == []
    with pytest.raises(NotAllowed, match="group finance"):
        scenario.k.tasks.complete(scenario.task("department_answer")["id"], "sales1", {"department_reply": "x"})
    scenario.complete("department_answer", "fin1", {"department_reply": "可开具增值税专用发票"})
