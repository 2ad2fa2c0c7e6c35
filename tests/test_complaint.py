"""Complaint procedure (RULES.md P1–P10, T1) driven through processes/complaint.bpmn."""
from datetime import datetime

import pytest

from engine import FormValidationError, NotAllowed
from tests.factories import p13_record
from tests.pg import on_both_databases


def register(sc, severity="general", **over):
    data = {"customer_name": "华东银行股份有限公司", "contact_phone": "021-63210000",
            "complaint_time": sc.later(minutes=-10), "place": "徐汇营业部", "content": "保安值班时态度恶劣",
            "customer_demand": "书面道歉", "nature": "service_attitude", "severity": severity}
    data.update(over)
    return sc.start("complaint", data)


def transfer(sc, department="security_ops", hours=6, accept=True):  # T-cap: VIP work order, 6 h
    sc.complete("transfer", "agent", {"department": department, "handling_requirement": "调查并整改",
                                      "handling_deadline": sc.later(hours=hours)})
    if accept:
        sc.complete("department_accept", "department", {})


def handle_by_department(sc):
    """P7, P13: the department handles and accounts for it; the supervisor approves the solution."""
    sc.handle()


def until_revisit(sc):
    """P4 → P7 satisfied → P9: transferred, handled, fed back, and the revisit falls due."""
    register(sc)
    transfer(sc)
    handle_by_department(sc)
    sc.complete("feedback", "agent", {"satisfied": True})
    sc.advance(days=3, seconds=1)


def test_p1_p2_p3_registration_records_content_classification_and_customer(scenario):
    r = register(scenario, severity="urgent")
    shown = scenario.show()
    assert r["ticket_no"].startswith("TS20261123-")
    assert shown["severity"] == "urgent" and shown["nature"] == "service_attitude"
    assert shown["customer"]["phone"] == "021-63210000" and shown["summary"] == "保安值班时态度恶劣"
    done = scenario.events("task_completed")[0]
    assert done["bpmn_id"] == "register" and {"P2", "P3"} <= set(done["rules"])
    assert done["data"]["customer_demand"] == "书面道歉"


def test_p3_classification_must_use_the_defined_options(scenario):
    with pytest.raises(FormValidationError) as exc:
        register(scenario, severity="catastrophic", nature="weather")
    assert set(exc.value.errors) == {"severity", "nature"}


def test_p4_general_complaint_is_transferred_to_the_department_with_requirement_and_deadline(scenario):
    register(scenario)
    assert scenario.ready_ids() == ["transfer"]
    transfer(scenario, department="security_ops", hours=6)
    t = scenario.task("department_handle")
    assert t["role"] == "department" and t["candidate_group"] == "security_ops"
    assert datetime.fromisoformat(t["due_at"]) == datetime.fromisoformat(scenario.later(hours=6))
    assert "P4" in t["rules"]
    assert [x["bpmn_id"] for x in scenario.k.timers.waiting(scenario.instance_id)] == ["timer_department_overdue"]


def test_p5_major_complaint_goes_to_supervisor_at_once(scenario):
    register(scenario, severity="major")
    ready = scenario.ready()
    assert [(t["bpmn_id"], t["role"]) for t in ready] == [("form_taskforce", "supervisor")]
    assert scenario.k.tasks.ready(actor="agent", instance=scenario.instance_id) == []


@on_both_databases
def test_p5_task_force_members_work_in_parallel_and_results_are_consolidated(scenario):
    register(scenario, severity="major")
    scenario.complete("form_taskforce", "supervisor", {
        "task_force_members": ["taskforce1", "taskforce2"], "handling_requirement": "成立专项小组彻查",
        "handling_deadline": scenario.later(days=2)})
    members = sorted((t["bpmn_id"], t["assignee"]) for t in scenario.ready())
    assert members == [("taskforce_investigate", "taskforce1"), ("taskforce_investigate", "taskforce2")]
    assert all(t["due_at"] for t in scenario.ready())
    mine = scenario.k.tasks.ready(actor="taskforce1", instance=scenario.instance_id)
    assert [t["assignee"] for t in mine] == ["taskforce1"]
    other = scenario.task("taskforce_investigate", assignee="taskforce2")
    with pytest.raises(NotAllowed, match="assigned to taskforce2"):
        scenario.k.tasks.complete(other["id"], "taskforce1", {"finding": "冒名顶替"})
    scenario.complete("taskforce_investigate", "taskforce2", {"finding": "监控显示保安言语不当"}, assignee="taskforce2")
    assert scenario.ready_ids() == ["taskforce_investigate"]
    scenario.complete("taskforce_investigate", "taskforce1", {"finding": "排班过长导致情绪失控"}, assignee="taskforce1")
    assert scenario.ready_ids() == ["consolidate"]
    assert sorted(scenario.show()["data"]["findings"]) == sorted(["监控显示保安言语不当", "排班过长导致情绪失控"])
    scenario.complete("consolidate", "supervisor", p13_record("调整排班并当面致歉"))
    assert scenario.ready_ids() == ["feedback"]


def test_p5_task_force_members_must_hold_the_taskforce_role(scenario):
    register(scenario, severity="major")
    with pytest.raises(FormValidationError) as exc:
        scenario.complete("form_taskforce", "supervisor", {
            "task_force_members": ["agent", "ghost"], "handling_requirement": "x",
            "handling_deadline": scenario.later(days=1)})
    assert "task_force_members" in exc.value.errors


def test_p7_result_is_fed_back_and_satisfaction_asked(scenario):
    register(scenario)
    transfer(scenario)
    handle_by_department(scenario)
    t = scenario.task("feedback")
    assert t["role"] == "agent" and "P7" in t["rules"]
    assert {f["id"] for f in t["form"]} >= {"satisfied", "customer_opinion"}


def test_p8_unsatisfied_customer_is_handled_again_until_satisfied(scenario):
    register(scenario)
    for round_ in (1, 2):
        transfer(scenario)
        handle_by_department(scenario)
        scenario.complete("feedback", "agent", {"satisfied": False, "customer_opinion": f"第{round_}轮仍不满意"})
        assert scenario.ready_ids() == ["transfer"]
    transfer(scenario)
    handle_by_department(scenario)
    scenario.complete("feedback", "agent", {"satisfied": True})
    shown = scenario.show()
    assert shown["data"]["handling_round"] == 3
    opinions = [e["data"]["customer_opinion"] for e in scenario.events("task_completed") if e["bpmn_id"] == "feedback"]
    assert opinions == ["第1轮仍不满意", "第2轮仍不满意", None]
    assert scenario.ready_ids() == []


def test_p8_unsatisfied_major_complaint_returns_to_the_supervisor(scenario):
    register(scenario, severity="major")
    scenario.complete("form_taskforce", "supervisor", {"task_force_members": "taskforce1",
                                                       "handling_requirement": "彻查", "handling_deadline": scenario.later(days=1)})
    scenario.complete("taskforce_investigate", "taskforce1", {"finding": "属实"})
    scenario.complete("consolidate", "supervisor", p13_record("赔偿"))
    scenario.complete("feedback", "agent", {"satisfied": False, "customer_opinion": "赔偿不足"})
    assert scenario.ready_ids() == ["form_taskforce"]


def test_p9_revisit_three_to_five_working_days_after_handling(scenario):
    register(scenario)
    transfer(scenario)
    handle_by_department(scenario)
    scenario.complete("feedback", "agent", {"satisfied": True})   # handled Monday 2026-11-23
    timers = {t["bpmn_id"]: t["due_at"] for t in scenario.k.timers.waiting(scenario.instance_id)}
    # T-window: the window opens at the start of the third working day (Thursday) ...
    assert timers == {"wait_revisit": "2026-11-26T00:00:00+08:00"}
    assert scenario.advance(days=2, hours=14) == [] and scenario.ready_ids() == []
    fired = scenario.advance(hours=1, seconds=1)
    assert [f["timer"] for f in fired] == ["wait_revisit"]
    t = scenario.task("revisit")
    # ... and closes at the end of the fifth working day (next Monday): late only from Tuesday 00:00
    assert t["due_at"] == "2026-12-01T00:00:00+08:00" and "P9" in t["rules"]
    late = {t["bpmn_id"]: t["due_at"] for t in scenario.k.timers.waiting(scenario.instance_id)}
    assert late == {"timer_revisit_late": "2026-12-01T00:00:00+08:00"}
    scenario.advance(days=4, hours=23)  # Monday 23:00, the last day of the window: not late yet
    assert scenario.ready_ids() == ["revisit"]
    scenario.advance(hours=1, seconds=1)
    assert sorted(scenario.ready_ids()) == ["revisit", "revisit_overdue_warning"]
    assert [e["bpmn_id"] for e in scenario.events("timer_fired")] == ["wait_revisit", "timer_revisit_late"]


@on_both_databases
def test_p10_customer_care_after_closing(scenario):
    until_revisit(scenario)
    scenario.complete("revisit", "agent", {"satisfaction_score": 95, "other_opinions": "无"})
    t = scenario.task("customer_care")
    assert "P10" in t["rules"] and scenario.show()["data"].get("closed_at")
    scenario.complete("customer_care", "agent", {"care_action": "赠送季度安保巡检一次", "care_date": "2026-12-01"})
    # Q2: the agent checks N working days later that the customer is satisfied, then the case closes
    assert [t["bpmn_id"] for t in scenario.show()["timers"]] == ["wait_care_check"]
    scenario.advance(days=5)
    scenario.complete("care_check", "agent", {"care_satisfied": True})
    shown = scenario.show()
    assert shown["status"] == "completed" and shown["completed_at"]
    assert shown["timers"] == []


def test_satisfaction_score_is_bounded(scenario):
    until_revisit(scenario)
    with pytest.raises(FormValidationError) as exc:
        scenario.complete("revisit", "agent", {"satisfaction_score": 120})
    assert "satisfaction_score" in exc.value.errors


def test_t1_overdue_department_task_is_redispatched_and_supervisor_warned(scenario):
    register(scenario)
    transfer(scenario, hours=4)
    first = scenario.task("department_handle")
    fired = scenario.advance(hours=4, seconds=1)
    assert [f["timer"] for f in fired] == ["timer_department_overdue"]
    ready = {t["bpmn_id"]: t["role"] for t in scenario.ready()}
    assert ready == {"redispatch": "agent", "overdue_warning": "supervisor"}
    shown = scenario.show()
    assert [(t["state"], t["end_reason"]) for t in shown["tasks"] if t["id"] == first["id"]] == [("cancelled", "timer")]
    scenario.complete("redispatch", "agent", {"department": "maintenance", "handling_deadline": scenario.later(hours=5),
                                              "redispatch_reason": "原部门超时未处理"})
    scenario.complete("department_accept", "department", {})
    again = scenario.task("department_handle")
    assert again["id"] != first["id"] and again["candidate_group"] == "maintenance"
    assert again["due_at"] != first["due_at"]
    scenario.complete("overdue_warning", "supervisor", {"warning_note": "已约谈安保勤务部"})
    handle_by_department(scenario)
    assert scenario.ready_ids() == ["feedback"]


def test_t1_overdue_task_force_is_reformed_and_supervisor_warned(scenario):
    register(scenario, severity="major")
    scenario.complete("form_taskforce", "supervisor", {"task_force_members": ["taskforce1", "taskforce2"],
                                                       "handling_requirement": "彻查", "handling_deadline": scenario.later(hours=6)})
    scenario.complete("taskforce_investigate", "taskforce1", {"finding": "部分属实"}, assignee="taskforce1")
    scenario.advance(hours=6, seconds=1)
    assert sorted(scenario.ready_ids()) == ["form_taskforce", "overdue_warning_taskforce"]
    assert not [t for t in scenario.ready() if t["bpmn_id"] == "taskforce_investigate"]
    members = [(t["state"], t["end_reason"], t["completed_by"]) for t in scenario.show()["tasks"]
               if t["bpmn_id"] == "taskforce_investigate"]
    assert sorted(members, key=str) == sorted([("completed", None, "taskforce1"), ("cancelled", "timer", None)], key=str)


def test_p6_agent_tracks_the_department_handling_in_progress(scenario):
    register(scenario)
    transfer(scenario, department="maintenance", hours=5)
    shown = scenario.show()
    handling = [t for t in shown["tasks"] if t["bpmn_id"] == "department_handle"]
    assert [(t["state"], t["role"]) for t in handling] == [("ready", "department")]
    assert handling[0]["due_at"] and [t["bpmn_id"] for t in shown["timers"]] == ["timer_department_overdue"]
    assert shown["data"]["department"] == "maintenance" and shown["data"]["handling_requirement"] == "调查并整改"
    assert "P6" in scenario.task("department_handle")["rules"]
