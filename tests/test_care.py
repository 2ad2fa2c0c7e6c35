"""Relationship care (RULES.md Q1–Q4, P10) on the real PRC working-day calendar: periodic revisits on a cycle
per customer class, the complaint care follow-up, holiday greetings, customer events, and the period summaries."""
import json
from datetime import date, datetime, timedelta

import pytest

from engine import FormValidationError, InvalidInput, NotAllowed, NotFound
from engine.clock import SHANGHAI
from engine.services.care import add_months, holidays_between
from tests import test_complaint as complaint
from tests.pg import on_both_databases


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def care_of(k, customer_id, kind="revisit"):
    return [i for i in k.care.overview()["items"] if i["customer_id"] == customer_id and i["care_kind"] == kind]


def vip(k, name="东方证券", **extra):
    return k.customers.create({"name": name, "phone": "021-55550000", "vip": True, **extra}, actor="agent")


def ready_care(k, bpmn_id, actor="agent"):
    return [t for t in k.tasks.ready(actor=actor) if t["bpmn_id"] == bpmn_id]


# ---------------------------------------------------------------- Q1 periodic revisits
@on_both_databases
def test_q1_vip_customer_gets_a_revisit_task_a_month_after_registration(kefu, clock):
    c = vip(kefu, owner="agent")
    (item,) = care_of(kefu, c["id"])
    assert item["state"] == "waiting" and item["due_at"] == "2026-12-23T09:00:00+08:00"  # Wednesday, working
    listed = [t for t in kefu.timers.waiting() if t["instance_id"] == item["instance_id"]]
    assert [(t["bpmn_id"], t["due_at"]) for t in listed] == [("wait_cycle", "2026-12-23T09:00:00+08:00")]
    clock.set(at(2026, 12, 23, 8, 59))
    assert kefu.timers.fire_due() == [] and not ready_care(kefu, "care_revisit")
    clock.set(at(2026, 12, 23, 9, 0, 1))
    assert [f["timer"] for f in kefu.timers.fire_due()] == ["wait_cycle"]
    (task,) = ready_care(kefu, "care_revisit")
    assert task["assignee"] == "agent" and {"Q1", "K3"} <= set(task["rules"])
    assert not ready_care(kefu, "care_revisit", actor="agent2")  # the owner's task, not the pool's


def test_q1_revisit_date_skips_the_national_day_holidays_and_weekends(kefu, clock):
    clock.set(at(2026, 9, 1, 10))  # + 1 month = Thursday 10-01, National Day: the next working day is 10-08
    c = vip(kefu, owner="agent")
    assert care_of(kefu, c["id"])[0]["due_at"] == "2026-10-08T09:00:00+08:00"
    clock.set(at(2026, 4, 7, 10))  # + 1 month = Thursday 05-07? no: 2026-05-07 is a working day after 劳动节
    other = vip(kefu, name="长江物流", owner="agent2")
    due = care_of(kefu, other["id"])[0]["due_at"]
    assert due == "2026-05-07T09:00:00+08:00"
    clock.set(at(2026, 10, 3, 10))  # + 1 month = Tuesday 11-03; a Saturday start lands on a Saturday:
    sat = vip(kefu, name="周末客户", owner="agent")
    clock.set(at(2026, 10, 10, 10))
    kefu.customers.update(sat["id"], {"special_note": "x"})  # planning twice never starts a second revisit
    assert len(care_of(kefu, sat["id"])) == 1 and care_of(kefu, sat["id"])[0]["due_at"] == "2026-11-03T09:00:00+08:00"
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)


def test_q1_important_customers_quarterly_and_the_process_owner_edits_the_cycle(kefu, clock):
    assert {c["customer_class"]: c["months"] for c in kefu.care.cycles()} == {"vip": 1, "important": 3}
    with pytest.raises(NotAllowed):
        kefu.care.set_cycle("important", 2, "agent")
    with pytest.raises(InvalidInput):
        kefu.care.set_cycle("important", 99, "owner")
    with pytest.raises(InvalidInput):
        kefu.care.set_cycle("general", 1, "owner")
    c = kefu.customers.create({"name": "重要客户甲", "customer_class": "important"}, actor="agent")
    assert c["customer_class"] == "important"
    assert care_of(kefu, c["id"])[0]["due_at"] == "2027-02-23T09:00:00+08:00"  # weekday rule past 2026
    kefu.care.set_cycle("important", 2, "owner")
    d = kefu.customers.create({"name": "重要客户乙", "customer_class": "important"}, actor="agent")
    assert care_of(kefu, d["id"])[0]["due_at"] == "2027-01-25T09:00:00+08:00"  # 01-23 is a Saturday
    general = kefu.customers.create({"name": "普通客户"}, actor="agent")
    assert general["customer_class"] == "general" and care_of(kefu, general["id"]) == []
    with pytest.raises(InvalidInput):
        kefu.customers.create({"name": "x", "customer_class": "gold"})


def test_q1_revisit_result_feeds_the_profile_k3_and_plans_the_next_cycle(kefu, clock):
    # no owner in the profile: the agent of the customer's most recent ticket owns it
    complaint.register(_Sc(kefu))
    (c,) = [x for x in kefu.customers.find("021-63210000")]
    kefu.customers.update(c["id"], {"vip": True}, actor="agent")
    (item,) = care_of(kefu, c["id"])
    clock.set(at(2026, 12, 23, 9, 1))
    kefu.timers.fire_due()
    (task,) = ready_care(kefu, "care_revisit")
    assert task["assignee"] == "agent"
    with pytest.raises(FormValidationError):
        kefu.tasks.complete(task["id"], "agent", {"revisit_channel": "fax", "satisfaction_score": 90})
    done = kefu.tasks.complete(task["id"], "agent", {"revisit_channel": "phone", "satisfaction_score": 86,
                                                     "new_needs": "增加夜间巡逻", "opinions": "响应快"})
    assert done["next_revisit"]["due_at"] == "2027-01-25T09:00:00+08:00"  # weekday rule: 01-23 is a Saturday
    profile = kefu.customers.get(c["id"])
    assert profile["last_satisfaction"] == 86 and profile["last_revisit_at"].startswith("2026-12-23")
    assert "增加夜间巡逻" in profile["needs"] and "营业网点" in profile["needs"]  # kept, appended
    shown = kefu.instances.show(item["ticket_no"])
    revisited = [e for e in shown["events"] if e["type"] == "customer_revisited"]
    assert revisited and revisited[0]["rules"] == ["Q1", "K3"] and revisited[0]["data"]["channel"] == "phone"
    report = kefu.kpi.report("2026-12")
    assert _k3_rows(report, item["ticket_no"]) == [86.0]


def _k3_rows(report, ticket_no):
    from engine import kpi
    rows = [dict(zip(kpi.LINEAGE_COLUMNS, row)) for row in kpi.lineage_rows(report)]
    return [r["outcome"] for r in rows if r["kpi"] == "K3" and r["ticket_no"] == ticket_no and r["counted"]]


class _Sc:
    """A scenario-like driver for complaint.register over an existing engine."""

    def __init__(self, k):
        from tests.factories import Scenario
        self._s = Scenario(k)

    def __getattr__(self, name):
        return getattr(self._s, name)


# ---------------------------------------------------------------- Q2 / P10 complaint care follow-up
def _until_care(sc):
    complaint.until_revisit(sc)
    sc.complete("revisit", "agent", {"satisfaction_score": 70, "other_opinions": "一般"})
    sc.complete("customer_care", "agent", {"care_action": "主管上门致歉", "care_date": "2026-12-01"})


@on_both_databases
def test_q2_care_follow_up_n_working_days_later_closes_a_satisfied_complaint(scenario):
    _until_care(scenario)
    (t,) = [t for t in scenario.k.timers.waiting(scenario.instance_id) if t["bpmn_id"] == "wait_care_check"]
    # care taken Thursday 11-26: the third working day after is Tuesday 12-01 (the SLA table's complaint_care)
    assert t["due_at"] == "2026-12-01T09:00:00+08:00"
    assert scenario.show()["status"] == "active"
    scenario.advance(days=5)
    task = scenario.task("care_check")
    assert {"Q2", "P10"} <= set(task["rules"])
    scenario.complete("care_check", "agent", {"care_satisfied": True})
    assert scenario.show()["status"] == "completed"


def test_q2_customer_still_unhappy_opens_a_new_complaint_linked_to_the_first(scenario):
    _until_care(scenario)
    scenario.advance(days=5)
    first = scenario.ticket_no
    r = scenario.complete("care_check", "agent", {"care_satisfied": False, "care_opinion": "巡逻仍不到位"})
    new_no = r["repeat_complaint"]
    assert new_no != first and new_no.startswith("TS")
    new = scenario.k.instances.show(new_no)
    assert new["data"]["repeat_of"] == [first] and new["customer"]["id"] == scenario.show()["customer"]["id"]
    assert [t["bpmn_id"] for t in new["tasks"]] == ["register"] and new["tasks"][0]["assignee"] == "agent"
    assert any(e["type"] == "repeat_complaint_opened" and e["rules"] == ["Q2", "X3"] for e in new["events"])
    old = scenario.show()
    assert old["status"] == "completed"
    assert any(e["type"] == "repeat_complaint_opened" and e["data"] == {"repeat": new_no} for e in old["events"])
    summary = scenario.k.reports.summary("month", "2026-12-02")
    assert summary["repeat_complaints"]["count"] == 1 and summary["repeat_complaints"]["tickets"] == [new_no]


# ---------------------------------------------------------------- Q3 holiday greetings
def test_q3_statutory_holidays_come_from_the_prc_calendar():
    found = holidays_between(date(2026, 9, 20), date(2026, 10, 10))
    assert found == [(date(2026, 9, 25), "中秋"), (date(2026, 10, 1), "国庆节")]


@on_both_databases
def test_q3_greeting_list_before_national_day_vip_and_recent_complainants_with_consent(kefu, clock):
    clock.set(at(2026, 9, 21, 10))  # Monday; Mid-autumn (Fri 09-25) and National Day (Thu 10-01) ahead
    a = vip(kefu, name="VIP同意", owner="agent", greeting_consent=True, greeting_channel="sms")
    b = vip(kefu, name="VIP未同意", owner="agent2")
    sc = _Sc(kefu)
    complaint.register(sc, customer_name="投诉客户", contact_phone="13911112222")
    plain = kefu.customers.create({"name": "普通客户", "phone": "13000000000"})
    planned = kefu.care.plan()
    greeted = {(g["customer"], g["occasion"], g["due_at"]) for g in planned["greetings"]}
    assert ("VIP同意", "国庆节", "2026-09-30T09:00:00+08:00") in greeted   # the last working day before
    assert ("VIP同意", "中秋", "2026-09-24T09:00:00+08:00") in greeted
    # the demo data's VIP customer is on the list too; a customer neither VIP nor complaining is not
    assert {g[0] for g in greeted} == {"VIP同意", "VIP未同意", "投诉客户", "华东银行股份有限公司"}
    assert plain["name"] not in {g[0] for g in greeted}
    assert kefu.care.plan()["greetings"] == []  # idempotent
    clock.set(at(2026, 9, 30, 9, 0, 1))
    kefu.timers.fire_due()
    tasks = [t for t in kefu.tasks.ready() if t["bpmn_id"] == "send_greeting"]
    assert len(tasks) == 8  # two occasions × four customers
    mine = [t for t in tasks if t["assignee"] == "agent"]
    sent = [kefu.tasks.complete(t["id"], "agent", {"greeting_channel": "sms", "greeting_text": "节日快乐"})
            for t in mine]
    assert sent and all("greeting_sent" in r or "greeting_withheld" in r for r in sent)
    theirs = [t for t in tasks if t["assignee"] == "agent2"]
    r = kefu.tasks.complete(theirs[0]["id"], "agent2", {"greeting_channel": "sms", "greeting_text": "节日快乐"})
    assert r == {**r, "greeting_withheld": b["id"]}  # no consent: nothing is sent (I4)
    shown = kefu.instances.show(r["ticket_no"])
    withheld = [e for e in shown["events"] if e["type"] == "greeting_withheld"]
    assert withheld and withheld[0]["rules"] == ["Q3", "I4"]
    ok = [x for x in sent if x.get("greeting_sent") == a["id"]]
    assert ok
    ev = [e for e in kefu.instances.show(ok[0]["ticket_no"])["events"] if e["type"] == "greeting_sent"][0]
    assert ev["data"]["channel"] == "sms" and ev["data"]["consent"] is True


def test_q3_anniversary_in_the_profile_gets_a_greeting(kefu, clock):
    c = kefu.customers.create({"name": "周年客户", "anniversary": "2019-12-02", "owner": "agent2"}, actor="agent")
    assert c["anniversary"] == "2019-12-02"
    planned = kefu.care.plan()
    (g,) = [g for g in planned["greetings"] if g["customer_id"] == c["id"]]
    assert g["occasion"] == "客户纪念日" and g["occasion_date"] == "2026-12-02" and g["owner"] == "agent2"
    assert g["due_at"] == "2026-12-01T09:00:00+08:00"
    with pytest.raises(InvalidInput):
        kefu.customers.update(c["id"], {"anniversary": "02-30"})


# ---------------------------------------------------------------- Q4 customer events
def test_q4_customer_event_with_attendees_and_feedback(kefu):
    a = vip(kefu, name="参会客户甲")
    b = kefu.customers.create({"name": "参会客户乙"})
    ev = kefu.events.add("安全知识培训", "2026-12-10", place="徐汇会议中心", kind="training",
                         attendees=[a["id"], b["id"]], actor="agent")
    assert [x["name"] for x in ev["attendees"]] == sorted(["参会客户甲", "参会客户乙"])
    ev = kefu.events.feedback(ev["id"], a["id"], "内容实用", score=95, actor="agent")
    assert ev["feedback_count"] == 1 and ev["mean_score"] == 95
    assert kefu.events.list()[0] == {"id": ev["id"], "name": "安全知识培训", "kind": "training",
                                     "date": "2026-12-10", "place": "徐汇会议中心", "attendees": 2, "feedback": 1}
    with pytest.raises(NotFound):
        kefu.events.add("座谈会", "2026-12-11", attendees=[999999])
    with pytest.raises(InvalidInput):
        kefu.events.add("座谈会", "12/11/2026")
    with pytest.raises(NotFound):
        kefu.events.feedback(ev["id"], 424242, "x")
    with pytest.raises(NotAllowed):
        kefu.events.add("座谈会", "2026-12-11", actor="technician")


# ---------------------------------------------------------------- summaries (004)
def test_reports_periods_and_contents(kefu, clock):
    sc = _Sc(kefu)
    complaint.register(sc)
    week = kefu.reports.summary("week")
    assert (week["label"], week["start"], week["end"]) == ("2026-W48", "2026-11-23", "2026-11-29")
    month = kefu.reports.summary("month", "2026-11-05")
    assert month["by_kind"]["complaint"] == 1 and month["top_natures"] == [{"nature": "service_attitude", "count": 1}]
    assert month["top_places"] == [{"place": "徐汇营业部", "count": 1}] and not month["final"]
    q = kefu.reports.summary("quarter", "2026-11-05")
    assert (q["label"], q["start"], q["end"]) == ("2026-Q4", "2026-10-01", "2026-12-31")
    y = kefu.reports.summary("year", "2026-03-01")
    assert y["label"] == "2026" and y["tickets"] == 1
    rows = list(kefu.reports.csv_rows(month))
    assert rows[0] == ["period", "section", "key", "value"] and ["2026-11", "by_kind", "complaint", 1] in rows
    with pytest.raises(InvalidInput):
        kefu.reports.summary("decade")
    with pytest.raises(InvalidInput):
        kefu.reports.summary("month", "not-a-date")
    with pytest.raises(NotAllowed):
        kefu.reports.summary("month", actor="agent")


def test_q3_holidays_of_a_year_the_calendar_does_not_know_yet():
    """Q3 beyond the installed calendar: the holidays fixed by date, and the days off the process owner entered."""
    from engine import calendar as calendar_mod
    year = calendar_mod.LIBRARY_YEARS[1] + 1
    assert holidays_between(date(year, 1, 1), date(year, 1, 3)) == [(date(year, 1, 1), "元旦")]
    assert (date(year, 10, 1), "国庆节") in holidays_between(date(year, 9, 25), date(year, 10, 5))
    saved = calendar_mod.active()
    # a spring festival entered by hand: a weekday run of days off
    first = next(date(year, 2, d) for d in range(10, 17) if date(year, 2, d).weekday() == 0)
    calendar_mod.use(calendar_mod.WorkingCalendar(overrides={first + timedelta(days=i): False for i in range(5)}))
    try:
        found = holidays_between(date(year, 2, 1), date(year, 2, 28))
        assert found == [(first, "节假日")]
    finally:
        calendar_mod.use(saved)
