"""KPIs K1–K8 (RULES.md K1–K8, K-cycle, K-score) over a month of tickets driven through the real diagrams.

The seeded month (November 2026, the pinned clock starts Monday 23rd 09:00 Asia/Shanghai):

| ticket | agent  | story                                                                       |
|--------|--------|-----------------------------------------------------------------------------|
| c_spot | agent  | consultation answered on the spot                                           |
| c_ok   | agent2 | consultation transferred to finance, accepted in 10 min, answered in time   |
| c_late | agent  | transferred to finance, never accepted: response timer, re-dispatched to sales (wrong routing) |
| c_open | agent2 | consultation promised for 2 December: still open at month end               |
| p_ok   | agent  | complaint handled, revisited (95)                                            |
| p_again| agent2 | complaint sent back by the customer once (reopened), handled in round 2, revisited (80) |
| p_major| agent  | major complaint, task force, handled, not revisited: its window (T-window) ends with the month |
| p_open | agent  | complaint of 30 November, deadline 1 December: open at month end             |
| r_pause| agent  | repair, clock paused waiting for the customer past the first deadline, done in time, revisited (90) |
| r_late | agent2 | repair overdue: re-dispatched to technician2 after acceptance, revisited (70) |
| december | agent | a ticket of 1 December, not in November                                   |

QA (K4) scores the sample of November's closed tickets during December: see the last test.
"""
from datetime import timedelta

import pytest

from engine import kpi
from engine.errors import InvalidInput, NotAllowed
from tests.conftest import from_snapshot
from tests.factories import Scenario, p13_record


def new(kefu):
    return Scenario(kefu)


def consultation(kefu, actor, on_spot, promise=None):
    sc = new(kefu)
    data = {"customer_name": "李先生", "contact_phone": "13800138000", "region": "北京", "channel": "phone",
            "question": "服务费包含哪些项目？", "answered_on_spot": on_spot}
    if on_spot:
        data["answer"] = "包含监控与巡检。"
    sc.start("consultation", data, actor=actor)
    if on_spot:
        sc.complete("confirm_on_spot", actor, {"satisfied": True})
    return sc


def promise(sc, actor, promise_in, needs_department):
    data = {"promised_reply_time": sc.later(**promise_in), "needs_department": needs_department}
    if timedelta(**promise_in) > timedelta(hours=24):  # T-promise: beyond the work-order target, say why
        data["promise_reason"] = "客户要求月初答复"
    sc.complete("promise_reply", actor, data)


def c_transfer(sc, actor, hours):
    sc.complete("transfer", actor, {"department": "finance", "transfer_question": "服务费明细",
                                    "required_reply_time": sc.later(hours=hours)})


def complaint(kefu, actor, severity="general"):
    sc = new(kefu)
    sc.start("complaint", {"customer_name": "李先生", "contact_phone": "13800138000",
                           "complaint_time": sc.later(minutes=-10), "place": "徐汇营业部", "content": "保安态度恶劣",
                           "customer_demand": "书面道歉", "nature": "service_attitude", "severity": severity},
             actor=actor)
    return sc


def p_transfer(sc, actor, hours=24):
    sc.complete("transfer", actor, {"department": "security_ops", "handling_requirement": "调查并整改",
                                    "handling_deadline": sc.later(hours=hours)})


def repair(kefu, actor):
    sc = new(kefu)
    sc.start("repair", {"customer_name": "星河物业管理有限公司", "contact_phone": "0755-88886666",
                        "fault_symptom": "东门门禁无法刷卡", "location": "福华路 1 号东门", "impact_scope": "东门住户",
                        "emergency": False}, actor=actor)
    sc.complete("dispatch", actor, {"technician": "technician", "repair_requirement": "更换读卡器",
                                    "required_arrival_time": sc.later(hours=2)})
    return sc


def advance(kefu, **delta):
    kefu.clock.advance(timedelta(**delta))
    return kefu.timers.fire_due()


def seed_month(kefu):
    """Drive the month described in the module docstring; returns the scenarios by name."""
    t = {}
    # Monday 23 November, 09:00
    t["c_spot"] = consultation(kefu, "agent", True)
    t["c_ok"] = sc = consultation(kefu, "agent2", False)
    promise(sc, "agent2", {"days": 1}, True)
    c_transfer(sc, "agent2", 8)
    t["c_late"] = sc = consultation(kefu, "agent", False)
    promise(sc, "agent", {"hours": 4}, True)
    c_transfer(sc, "agent", 2)
    t["p_ok"] = sc = complaint(kefu, "agent")
    p_transfer(sc, "agent")
    t["p_again"] = sc = complaint(kefu, "agent2")
    p_transfer(sc, "agent2")
    t["p_major"] = sc = complaint(kefu, "agent", severity="major")
    t["r_pause"] = repair(kefu, "agent")
    t["r_late"] = repair(kefu, "agent2")

    advance(kefu, minutes=10)  # 09:10: the handlers accept (10 min ≤ 30)
    for name in ("c_ok", "p_ok", "p_again"):
        t[name].complete("department_accept", "department", {})
    for name in ("r_pause", "r_late"):
        t[name].complete("accept_order", "technician", {"expected_arrival_time": t[name].later(hours=1)})
    t["c_ok"].complete("department_answer", "department", {"department_reply": "含监控与巡检"})
    t["c_ok"].complete("relay_answer", "agent2", {"answer": "含监控与巡检", "satisfied": True})
    sc = t["p_ok"]
    sc.handle(handling="已整改")
    sc.complete("feedback", "agent", {"satisfied": True})
    sc = t["p_again"]
    sc.handle(handling="已批评教育")
    sc.complete("feedback", "agent2", {"satisfied": False, "customer_opinion": "要求书面道歉"})
    p_transfer(sc, "agent2")
    sc.complete("department_accept", "department", {})
    sc.handle(handling="已书面道歉")
    sc.complete("feedback", "agent2", {"satisfied": True})
    sc = t["p_major"]
    sc.complete("form_taskforce", "supervisor", {"task_force_members": ["taskforce1"],
                                                 "handling_requirement": "彻查", "handling_deadline": sc.later(days=2)})
    sc.complete("taskforce_investigate", "taskforce1", {"finding": "属实"})
    sc.complete("consolidate", "supervisor", p13_record("当面致歉"))
    sc.complete("feedback", "agent", {"satisfied": True})
    t["r_pause"].complete("repair_work", "technician", {"repair_result": "需物业开门",
                                                        "customer_cooperation_needed": True})  # clock paused

    advance(kefu, minutes=21)  # 09:31: c_late's response timer (30 min) fired: re-dispatch to sales
    sc = t["c_late"]
    sc.complete("redispatch", "agent", {"department": "sales", "required_reply_time": sc.later(hours=4),
                                        "redispatch_reason": "财务部未接单"})
    sc.complete("department_accept", "department", {})
    sc.complete("department_answer", "department", {"department_reply": "可开发票"})
    sc.complete("relay_answer", "agent", {"answer": "可开发票", "satisfied": True})

    advance(kefu, hours=24, minutes=29)  # Tuesday 10:00: r_late's finish deadline (Tue 09:10) overran
    sc = t["r_pause"]  # its own first deadline (Tue 09:10) moved while paused
    sc.complete("contact_customer", "agent", {"cooperation_arranged": "物业已开门"})
    sc.complete("repair_work", "technician", {"repair_result": "已更换", "customer_cooperation_needed": False})
    sc.complete("confirm_repair", "agent", {"satisfied": True})
    sc = t["r_late"]
    sc.complete("redispatch", "agent2", {"technician": "technician2", "required_arrival_time": sc.later(hours=1),
                                         "redispatch_reason": "原维修人员超时"})
    sc.complete("accept_order", "technician2", {"expected_arrival_time": sc.later(hours=1)})
    sc.complete("repair_work", "technician2", {"repair_result": "已更换", "customer_cooperation_needed": False})
    sc.complete("confirm_repair", "agent2", {"satisfied": True})

    advance(kefu, days=1, hours=23, seconds=1)  # Thursday 26th 09:00:01: revisits fall due
    t["p_ok"].complete("revisit", "agent", {"satisfaction_score": 95})
    t["p_again"].complete("revisit", "agent2", {"satisfaction_score": 80})
    t["r_pause"].complete("revisit", "agent", {"satisfaction_score": 90, "case_summary": "读卡器老化"})
    t["r_late"].complete("revisit", "agent2", {"satisfaction_score": 70, "case_summary": "超时改派"})

    advance(kefu, days=4, hours=1)  # Monday 30th 10:00: p_major's revisit window is open until the day ends
    t["c_open"] = sc = consultation(kefu, "agent2", False)
    promise(sc, "agent2", {"days": 2}, False)
    t["p_open"] = sc = complaint(kefu, "agent")
    p_transfer(sc, "agent", hours=24)  # T-cap: a work order's deadline is at most 24 h away
    advance(kefu, minutes=5)
    sc.complete("department_accept", "department", {})

    advance(kefu, hours=14, minutes=5)  # Tuesday 1 December 00:10
    t["december"] = consultation(kefu, "agent", True)
    return t


@pytest.fixture
def month(request, kefu):
    return kefu, from_snapshot(request, kefu, "kpi-month", seed_month)


def lineage(fig):
    counted = {r["ticket_no"]: r["outcome"] for r in fig["counted"]}
    excluded = {r["ticket_no"] for r in fig["excluded"]}
    return counted, excluded


def test_seeded_month_figures_computed_by_hand(month):
    kefu, t = month
    no = {name: sc.ticket_no for name, sc in t.items()}
    r = kefu.kpi.store("2026-11", "supervisor")
    d = r["department"]
    assert r["tickets"] == 10 and r["final"] is True  # the December ticket is not November's

    # K1: c_spot (on the spot) ✓, c_ok ✓, c_late ✗ (overdue, re-dispatched); c_open excluded → 2/3
    assert (d["K1"]["numerator"], d["K1"]["denominator"], d["K1"]["value"]) == (2, 3, 66.67)
    assert d["K1"]["score"] == 70.18  # 66.67 / 95 × 100
    counted, excluded = lineage(d["K1"])
    assert counted == {no["c_spot"]: True, no["c_ok"]: True, no["c_late"]: False}
    assert excluded == {no["c_open"]}

    # K2: p_ok, p_again (reopened once, handled in round 2), p_major handled; p_open not yet due → 3/3
    assert (d["K2"]["numerator"], d["K2"]["denominator"], d["K2"]["value"], d["K2"]["score"]) == (3, 3, 100.0, 100.0)
    reasons = {x["ticket_no"]: x["reason"] for x in d["K2"]["counted"]}
    assert "2 rounds" in reasons[no["p_again"]]
    assert lineage(d["K2"])[1] == {no["p_open"]}

    # K3: (95 + 80 + 90 + 70) / 4 = 83.75 < 90: no score (K-score, 002 第九条.3)
    assert (d["K3"]["numerator"], d["K3"]["denominator"], d["K3"]["value"], d["K3"]["score"]) == (335, 4, 83.75, 0.0)
    assert lineage(d["K3"])[1] == {no["p_major"], no["p_open"]}

    # K5 work orders: c_ok ✓, c_late ✗, p_ok ✓, p_again ✓, p_major ✓, r_pause ✓ (paused), r_late ✗; p_open open
    # → 5/7 = 71.43 ≤ 99: 2 points off per percentage point below 99 → 100 − 2 × 27.57 = 44.86
    assert (d["K5"]["numerator"], d["K5"]["denominator"], d["K5"]["value"], d["K5"]["score"]) == (5, 7, 71.43, 44.86)
    assert d["K5"]["self_assessed"] is False
    counted, excluded = lineage(d["K5"])
    assert counted[no["r_pause"]] is True and counted[no["r_late"]] is False and excluded == {no["p_open"]}

    # K6: p_ok, p_again, r_pause, r_late revisited → 4/4; p_major's window closes at the end of Monday 30th, the
    # end of the month itself, so at month end it is not late yet (T-window): excluded
    assert (d["K6"]["numerator"], d["K6"]["denominator"], d["K6"]["value"], d["K6"]["score"]) == (4, 4, 100.0, 100.0)
    assert no["p_major"] in lineage(d["K6"])[1]

    # K7: 8 dispatched; only c_late went to a department that never accepted → 7/8 = 87.5 → 87.5/98×100 = 89.29
    assert (d["K7"]["numerator"], d["K7"]["denominator"], d["K7"]["value"], d["K7"]["score"]) == (7, 8, 87.5, 89.29)
    assert lineage(d["K7"])[0][no["c_late"]] is False and lineage(d["K7"])[0][no["r_late"]] is True

    # K8: accepted in 10 min: c_ok, p_ok, p_again, r_pause, r_late; p_open in 5; c_late after 31 → 6/7 = 85.71
    # ≥ 70: nothing off → 100; p_major (task force) has no response clock
    assert (d["K8"]["numerator"], d["K8"]["denominator"], d["K8"]["value"], d["K8"]["score"]) == (6, 7, 85.71, 100.0)
    assert lineage(d["K8"])[1] == {no["p_major"]}

    # K4 without a QA sample: no figure
    assert (d["K4"]["denominator"], d["K4"]["value"], d["K4"]["score"]) == (0, None, None)

    # Per agent: without clock records every ticket stays with the agent who opened it (K-who, X1)
    a1, a2 = r["agents"]["agent"], r["agents"]["agent2"]
    # K-who: c_late's miss is finance's (its response clock ran out); the agent's own clock on it was met
    assert (a1["K1"]["numerator"], a1["K1"]["denominator"]) == (2, 2)      # c_spot ✓, c_late ✓ (for the agent)
    assert (a2["K1"]["numerator"], a2["K1"]["denominator"]) == (1, 1)      # c_ok ✓ (c_open excluded)
    assert (a1["K3"]["value"], a2["K3"]["value"]) == (92.5, 75.0)          # (95+90)/2, (80+70)/2
    assert (a1["K3"]["score"], a2["K3"]["score"]) == (94.39, 0.0)          # 92.5 / 98; 75 < floor 90
    assert (a1["K6"]["numerator"], a1["K6"]["denominator"]) == (2, 2)      # p_ok, r_pause ✓; p_major excluded
    assert (a2["K5"]["numerator"], a2["K5"]["denominator"]) == (0, 0)      # K-who: the handlers hold K5's clocks


def test_stored_report_is_the_one_read_and_does_not_change(month):
    kefu, t = month
    assert kefu.kpi.stored("2026-11") is None
    first = kefu.kpi.store("2026-11", "supervisor")
    t["p_open"].handle(handling="已整改")
    again = kefu.kpi.report("2026-11")
    assert again["computed_at"] == first["computed_at"] and again["department"] == first["department"]
    # computed live as of the month end, later events do not move November's figures either
    assert kefu.kpi.live("2026-11")["department"]["K5"]["value"] == first["department"]["K5"]["value"]


def test_k_cycle_stores_the_previous_month_once(month):
    kefu, _t = month
    stored = kefu.kpi.k_cycle()
    assert stored["month"] == "2026-11" and stored["computed_by"] == "system"
    assert kefu.kpi.k_cycle() is None  # already there


def test_running_month_cannot_be_stored_and_bad_months_are_refused(kefu):
    with pytest.raises(InvalidInput, match="not over"):
        kefu.kpi.store("2026-11")
    for bad in ("2026-13", "nov", "", "2026-1-1", "0000-01"):
        with pytest.raises(InvalidInput):
            kefu.kpi.live(bad)


def test_only_supervisor_stores_and_readers_read(kefu):
    with pytest.raises(NotAllowed):
        kefu.kpi.live("2026-11", "agent")
    with pytest.raises(NotAllowed):
        kefu.kpi.live("2026-11", "nobody")
    for reader in ("supervisor", "qa", "auditor", "owner"):
        assert kefu.kpi.live("2026-11", reader)["tickets"] == 0
    kefu.clock.advance(timedelta(days=8))
    with pytest.raises(NotAllowed):
        kefu.kpi.store("2026-11", "qa")


def test_month_bounds_are_shanghai_calendar_months():
    start, end = kpi.month_bounds("2026-12")
    assert start.isoformat() == "2026-11-30T16:00:00+00:00" and end.isoformat() == "2026-12-31T16:00:00+00:00"


def test_scheduler_runs_the_k_cycle_catch_up_at_start(month):
    import time as _time
    from engine.services.scheduler import TimerScheduler
    kefu, _t = month  # the clock is on 1 December: November has no stored assessment yet
    sched = TimerScheduler(kefu, sweep_seconds=60).start()
    try:
        job = sched.scheduler.get_job("k_cycle")
        assert str(job.trigger) == "cron[day='1', hour='0', minute='5']"
        assert str(job.trigger.timezone) == "Asia/Shanghai"
        deadline = _time.monotonic() + 20
        while kefu.kpi.stored("2026-11") is None and _time.monotonic() < deadline:
            _time.sleep(0.1)
        assert kefu.kpi.stored("2026-11")["computed_by"] == "system"
        while kefu.kpi.qa_sample_of("2026-11") is None and _time.monotonic() < deadline:
            _time.sleep(0.1)
        assert kefu.kpi.qa_sample_of("2026-11") is not None  # November has closed tickets to sample
    finally:
        sched.shutdown()


def test_k_cycle_job_on_an_empty_month_stores_the_report_but_draws_no_sample(kefu):
    kefu.clock.advance(timedelta(days=8))
    assert kefu.kpi.k_cycle_job() == {"report": "2026-11", "qa_sample": None}
    assert kefu.kpi.k_cycle_job() == {"report": None, "qa_sample": None}


def test_qa_scores_of_the_seeded_month_feed_the_next_months_k4(month):
    """K4 (QA): November's closed tickets are sampled on 1 December and scored in December, so December's
    report counts them, each for the agent who opened it."""
    kefu, t = month
    no = {name: sc.ticket_no for name, sc in t.items()}
    kefu.kpi.set_sample_size(kpi.QA_MAX_SIZE, "owner")  # larger than the month: every closed ticket
    started = kefu.kpi.start_qa_sampling("2026-11", "supervisor", seed=3)
    # closed (instance completed) in November: c_spot, c_ok, r_pause. Not closed yet: the complaints wait for
    # customer care (P10), c_late and r_late for the supervisor to read the overdue warning, c_open and p_open
    # are open; December's ticket is not November's.
    assert started["sample"] == sorted(no[n] for n in ("c_spot", "c_ok", "r_pause"))
    inaccurate = {no["r_pause"]}
    while (task := next((x for x in kefu.tasks.ready(actor="qa") if x["bpmn_id"] == "qa_review"), None)):
        ticket = kefu.instances.show(started["instance_id"])["data"]["sampled_ticket"]
        kefu.tasks.complete(task["id"], "qa", {"entry_accurate": ticket not in inaccurate, "service_quality": 80})
    dec = kefu.kpi.live("2026-12")
    # 2 accurate of 3 = 66.67 % → 66.67 / 98 × 100 = 68.03
    k4 = dec["department"]["K4"]
    assert (k4["numerator"], k4["denominator"], k4["value"], k4["score"]) == (2, 3, 66.67, 68.03)
    assert lineage(k4)[0] == {no["c_spot"]: True, no["c_ok"]: True, no["r_pause"]: False}
    # agent opened c_spot ✓ and r_pause ✗ → 1/2 = 50 %; agent2 opened c_ok ✓ → 1/1 = 100 %
    a1, a2 = dec["agents"]["agent"]["K4"], dec["agents"]["agent2"]["K4"]
    assert (a1["numerator"], a1["denominator"], a1["value"]) == (1, 2, 50.0)
    assert (a2["numerator"], a2["denominator"], a2["value"], a2["score"]) == (1, 1, 100.0, 100.0)
    assert dec["tickets"] == 1 and dec["agents"]["agent2"]["K1"]["denominator"] == 0  # agent2 opened none
    assert kefu.kpi.live("2026-11")["department"]["K4"]["denominator"] == 0  # November itself: none yet
