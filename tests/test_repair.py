"""Repair procedure (RULES.md R1–R6, T1) driven through processes/repair.bpmn."""
from datetime import datetime, timedelta

import pytest

from engine import FormValidationError, NotAllowed
from tests.pg import on_both_databases


def register(sc, emergency=False, customer_id=None, **over):
    data = {"customer_name": "星河物业管理有限公司", "contact_phone": "0755-88886666", "fault_symptom": "东门门禁无法刷卡",
            "location": "深圳市福田区福华路 1 号东门", "impact_scope": "东门全部住户", "emergency": emergency}
    if emergency:
        data["emergency_scale"] = "small"  # an emergency is recorded with its scale (R2; required_if)
    data.update(over)
    return sc.start("repair", data, customer_id=customer_id)


def dispatch(sc, technician="technician", task="dispatch", accept=True):
    """R3: the agent fills the work order; the technician accepts it (the response clock, T1)."""
    sc.complete(task, "agent", {"technician": technician, "repair_requirement": "更换读卡器",
                                "required_arrival_time": sc.later(hours=2)})
    if accept:
        sc.complete("accept_order", technician, {"expected_arrival_time": sc.later(hours=1)})


def due(sc, bpmn_id):
    return datetime.fromisoformat(sc.task(bpmn_id)["due_at"])


def test_r1_registration_records_symptom_location_and_scope(scenario):
    r = register(scenario)
    assert r["ticket_no"].startswith("BX20261123-")
    done = scenario.events("task_completed")[0]
    assert "R1" in done["rules"] and done["data"]["impact_scope"] == "东门全部住户"
    assert scenario.show()["summary"] == "东门门禁无法刷卡"


def test_r2_emergency_starts_the_emergency_response_at_once_with_priority(scenario):
    register(scenario, emergency=True, fault_symptom="机房烟感报警，疑似电路起火")
    ready = {t["bpmn_id"]: t["role"] for t in scenario.ready()}
    assert ready == {"emergency_notice": "supervisor", "emergency_dispatch": "agent"}
    assert scenario.show()["data"]["priority"] == "emergency"
    dispatch(scenario, task="emergency_dispatch")
    assert due(scenario, "repair_work") == scenario.base.clock.now() + timedelta(hours=6)


def test_r3_work_order_goes_to_the_named_technician_with_arrival_time(scenario):
    register(scenario)
    t = scenario.task("dispatch")
    assert "R3" in t["rules"]
    dispatch(scenario, technician="technician2", accept=False)
    accept = scenario.task("accept_order")
    assert accept["assignee"] == "technician2" and "R3" in accept["rules"]
    with pytest.raises(NotAllowed):
        scenario.k.tasks.complete(accept["id"], "technician", {"expected_arrival_time": scenario.later(hours=1)})
    scenario.complete("accept_order", "technician2", {"expected_arrival_time": scenario.later(hours=1)})
    work = scenario.task("repair_work")
    assert work["role"] == "technician" and work["assignee"] == "technician2"
    assert scenario.k.tasks.ready(actor="technician", instance=scenario.instance_id) == []
    with pytest.raises(NotAllowed):
        scenario.k.tasks.complete(work["id"], "technician", {"repair_result": "x", "customer_cooperation_needed": False})
    assert due(scenario, "repair_work") == scenario.base.clock.now() + timedelta(hours=24)
    assert scenario.show()["data"]["required_arrival_time"] == "2026-11-23T11:00:00+08:00"


def test_r3_only_a_technician_can_be_dispatched(scenario):
    register(scenario)
    with pytest.raises(FormValidationError) as exc:
        dispatch(scenario, technician="agent")
    assert "technician" in exc.value.errors


def test_r3_vip_customer_gets_the_shorter_finish_target(scenario):
    vip = scenario.k.customers.find("021-63210000")[0]
    assert vip["vip"]
    register(scenario, customer_id=vip["id"], customer_name=vip["name"], contact_phone=vip["phone"])
    assert scenario.show()["vip"] is True and scenario.show()["data"]["priority"] == "vip"
    dispatch(scenario)
    assert due(scenario, "repair_work") == scenario.base.clock.now() + timedelta(hours=6)


def test_r4_customer_cooperation_goes_through_the_agent_then_back_to_the_technician(scenario):
    register(scenario)
    dispatch(scenario)
    scenario.complete("repair_work", "technician", {"repair_result": "需物业开启配电房",
                                                    "customer_cooperation_needed": True})
    t = scenario.task("contact_customer")
    assert t["role"] == "agent" and "R4" in t["rules"]
    scenario.complete("contact_customer", "agent", {"cooperation_arranged": "物业 14:00 开门"})
    assert scenario.task("repair_work")["assignee"] == "technician"


def test_r5_unsatisfied_customer_gets_the_repair_redone(scenario):
    register(scenario)
    dispatch(scenario)
    scenario.complete("repair_work", "technician", {"repair_result": "已更换读卡器", "customer_cooperation_needed": False})
    scenario.complete("confirm_repair", "agent", {"satisfied": False, "customer_opinion": "仍偶尔失灵"})
    assert scenario.ready_ids() == ["repair_work"]
    assert scenario.show()["data"]["redo_count"] == 1
    scenario.complete("repair_work", "technician", {"repair_result": "更换主板", "customer_cooperation_needed": False})
    scenario.complete("confirm_repair", "agent", {"satisfied": True})
    assert scenario.ready_ids() == []


@on_both_databases
def test_r6_revisit_two_to_three_working_days_after_completion(scenario):
    register(scenario)
    dispatch(scenario)
    scenario.complete("repair_work", "technician", {"repair_result": "已修复", "customer_cooperation_needed": False})
    scenario.complete("confirm_repair", "agent", {"satisfied": True})
    timers = {t["bpmn_id"]: t["due_at"] for t in scenario.k.timers.waiting(scenario.instance_id)}
    assert timers == {"wait_revisit": "2026-11-25T00:00:00+08:00"}  # T-window: opens at the start of day 2
    scenario.advance(days=2, seconds=1)
    t = scenario.task("revisit")
    assert "R6" in t["rules"] and t["due_at"] == "2026-11-27T00:00:00+08:00"  # closes at the end of day 3
    scenario.complete("revisit", "agent", {"satisfaction_score": 92, "case_summary": "读卡器老化，已更换"})
    shown = scenario.show()
    assert shown["status"] == "completed" and shown["data"]["satisfaction_score"] == 92


@on_both_databases
def test_t1_overdue_work_order_is_redispatched_and_supervisor_warned(scenario):
    register(scenario)
    dispatch(scenario)
    first = scenario.task("repair_work")
    scenario.advance(hours=24, seconds=1)
    assert {t["bpmn_id"]: t["role"] for t in scenario.ready()} == {"redispatch": "agent",
                                                                   "overdue_warning": "supervisor"}
    scenario.complete("redispatch", "agent", {"technician": "technician2", "required_arrival_time": scenario.later(hours=1),
                                              "redispatch_reason": "原维修人员超时"})
    scenario.complete("accept_order", "technician2", {"expected_arrival_time": scenario.later(hours=1)})
    again = scenario.task("repair_work")
    assert again["id"] != first["id"] and again["assignee"] == "technician2"
    assert due(scenario, "repair_work") == scenario.base.clock.now() + timedelta(hours=24)
    cancelled = [t for t in scenario.show()["tasks"] if t["id"] == first["id"]][0]
    assert (cancelled["state"], cancelled["end_reason"]) == ("cancelled", "timer")
