"""Timers (RULES.md T1, T2, R4, P9, R6): working-day due times, SLA targets, the two clocks of a work order,
pause and resume, re-dispatch on overdue, restarts, double firing, and the scheduler's punctuality."""
import shutil
import threading
import time
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from engine import Clock, ClockError, Config, Kefu
from engine.calendar import CalendarDataMissing, WorkingCalendar
from engine.clock import SHANGHAI
from engine.store.tables import AuditEvent
from engine.services.scheduler import TimerScheduler
from tests import test_complaint as complaint
from tests import test_repair as repair
from tests.conftest import PROCESSES
from tests.factories import diagram, make_kefu

SHA = SHANGHAI


def at(*args):
    return datetime(*args, tzinfo=SHA)


def timers(sc):
    return {t["bpmn_id"]: datetime.fromisoformat(t["due_at"]) for t in sc.k.timers.waiting(sc.instance_id)}


def fired_counts(k):
    with k.db.reading() as s:
        return dict(s.execute(select(AuditEvent.task_id, func.count()).where(AuditEvent.type == "timer_fired")
                              .group_by(AuditEvent.task_id)).all())


# ---------------------------------------------------------------- T2: the working-day calendar
def test_t2_complaint_revisit_across_national_day_counts_the_make_up_saturday(scenario, clock):
    clock.set(at(2026, 9, 30, 10))
    complaint.register(scenario)
    complaint.transfer(scenario)
    complaint.handle_by_department(scenario)
    scenario.complete("feedback", "agent", {"satisfied": True})
    # 10-01..10-07 are holidays; 10-08 and 10-09 are working days, and so is Saturday 10-10 (调休).
    # T-window: the window opens at the start of the third working day, Saturday 10-10.
    assert timers(scenario) == {"wait_revisit": at(2026, 10, 10, 0)}
    basis = [e for e in scenario.events("timer_set") if e["bpmn_id"] == "wait_revisit"][0]["data"]
    assert basis["calendar"]["library"].startswith("chinese-calendar") and "weekday_rule_years" not in basis["calendar"]
    assert basis["sla_version"] == 1
    assert scenario.advance(days=9, hours=13, minutes=59) == []          # 10-09 23:59: not yet
    assert [f["timer"] for f in scenario.advance(minutes=1, seconds=1)] == ["wait_revisit"]
    assert "revisit" in scenario.ready_ids()
    # the window closes at the end of the fifth working day, Tuesday 10-13 (P9: 3–5 days)
    assert timers(scenario) == {"timer_revisit_late": at(2026, 10, 14, 0)}


def test_t2_repair_revisit_two_working_days_skips_the_holiday(scenario, clock):
    clock.set(at(2026, 9, 30, 10))
    repair.register(scenario)
    repair.dispatch(scenario)
    scenario.complete("repair_work", "technician", {"repair_result": "已修复", "customer_cooperation_needed": False})
    scenario.complete("confirm_repair", "agent", {"satisfied": True})
    assert timers(scenario) == {"wait_revisit": at(2026, 10, 9, 0)}  # the start of the second working day


def test_t2_the_installed_statutory_calendar_has_the_2026_days_the_tests_rely_on():
    """The suite's dates are in 2026 (tests/conftest.py caps the known years there); a release of
    chinese-calendar without 2026, or one that changed these days, would make the T2 tests wrong."""
    import chinese_calendar

    from engine import calendar as calendar_mod
    first, last = calendar_mod._library_years()  # the installed release's own, uncapped
    assert first <= 2025 and last >= 2026, f"chinese-calendar knows {first}-{last}; the tests need 2026"
    assert calendar_mod.LIBRARY_YEARS == (first, 2026)
    workday = chinese_calendar.is_workday
    # National Day and Mid-autumn: 10-01..10-07 off; Sunday 09-20 and Saturday 10-10 are make-up working days.
    assert [workday(date(2026, 10, d)) for d in range(1, 12)] == [False] * 7 + [True, True, True, False]
    assert workday(date(2026, 9, 20)) and not workday(date(2026, 9, 19))
    # Spring Festival: 02-15..02-23 off; Saturdays 02-14 and 02-28 are make-up working days.
    assert [workday(date(2026, 2, d)) for d in range(14, 25)] == [True] + [False] * 9 + [True]
    assert workday(date(2026, 2, 28))
    # A year no release knows: the library refuses it, so the engine never asks and uses the weekday rule.
    with pytest.raises(NotImplementedError):
        workday(date(2099, 1, 1))
    with pytest.warns(CalendarDataMissing, match="2099"):
        assert WorkingCalendar().is_working_day(date(2099, 1, 1))  # a Thursday
    assert WorkingCalendar().status([2026, 2099]) == [
        {"year": 2026, "source": "statutory", "overrides": 0, "missing": False},
        {"year": 2099, "source": "weekday-rule", "overrides": 0, "missing": True}]


def test_t2_a_year_without_official_calendar_uses_overrides_then_weekdays_and_says_so(kefu, clock):
    clock.set(at(2026, 12, 30, 10))
    with pytest.warns(CalendarDataMissing, match="2027"):
        r = kefu.time.add_working_days("2026-12-30T10:00", 3)
    assert r["due_at"] == "2027-01-04T09:00:00+08:00" and r["calendar"]["weekday_rule_years"] == [2027]
    assert kefu.time.calendar_status([2026, 2027])["years"][1]["missing"] is True
    with pytest.raises(Exception, match="process_owner"):
        kefu.time.set_calendar_day("2027-01-01", False, "agent", note="元旦")
    kefu.time.set_calendar_day("2027-01-01", False, "owner", note="元旦")
    r = kefu.time.add_working_days("2026-12-30T10:00", 3)
    assert r["due_at"] == "2027-01-05T09:00:00+08:00" and "weekday_rule_years" not in r["calendar"]
    assert kefu.time.calendar_status([2027])["years"][0] == {"year": 2027, "source": "overrides", "overrides": 1,
                                                        "missing": False}
    # A company-specific day off inside a known year wins over the statutory calendar.
    kefu.time.set_calendar_day("2026-12-31", False, "owner", note="公司年会")
    assert kefu.time.add_working_days("2026-12-30T10:00", 1)["due_at"] == "2027-01-04T09:00:00+08:00"
    kefu.time.set_calendar_day("2026-12-31", None, "owner")
    assert kefu.time.add_working_days("2026-12-30T10:00", 1)["due_at"] == "2026-12-31T09:00:00+08:00"


def test_t2_overrides_reach_another_process_and_running_timers_use_them(kefu, clock):
    clock.set(at(2026, 12, 29, 10))
    other = Kefu(kefu.config, database=kefu.db, clock=kefu.clock)    # e.g. the scheduler process
    assert other.time.add_working_days("2026-12-29", 2)["due_at"] == "2026-12-31T09:00:00+08:00"
    kefu.time.set_calendar_day("2026-12-31", False, "owner", note="公司年会")
    with pytest.warns(CalendarDataMissing):
        # 12-30, then (12-31 off) Friday 2027-01-01 by the weekday rule: 2027's calendar is not known yet.
        assert other.time.add_working_days("2026-12-29", 2)["due_at"].startswith("2027-01-01")


def test_t2_a_process_crossing_into_2027_does_not_stop(scenario, clock):
    clock.set(at(2026, 12, 30, 10))
    with pytest.warns(CalendarDataMissing):
        complaint.register(scenario)
        complaint.transfer(scenario)
        complaint.handle_by_department(scenario)
        scenario.complete("feedback", "agent", {"satisfied": True})
    assert timers(scenario)["wait_revisit"] == at(2027, 1, 4, 0)
    basis = [e for e in scenario.events("timer_set") if e["bpmn_id"] == "wait_revisit"][0]["data"]
    assert basis["calendar"]["weekday_rule_years"] == [2027]
    assert scenario.show()["status"] == "active"


# ---------------------------------------------------------------- SLA targets and the two clocks
@pytest.mark.parametrize("case,respond,finish", [("work_order", 30, 24), ("vip", 20, 6), ("emergency", 10, 6),
                                                 ("emergency_large", 10, 8)])
def test_t1_work_order_targets_from_the_sla_table(scenario, case, respond, finish):
    now = scenario.base.clock.now()
    if case == "vip":
        vip = scenario.k.customers.find("021-63210000")[0]
        repair.register(scenario, customer_id=vip["id"], customer_name=vip["name"], contact_phone=vip["phone"])
    else:
        repair.register(scenario, emergency=case.startswith("emergency"),
                        emergency_scale="large" if case == "emergency_large" else "small")
    repair.dispatch(scenario, task="emergency_dispatch" if case.startswith("emergency") else "dispatch",
                    accept=False)
    accept = scenario.task("accept_order")
    assert datetime.fromisoformat(accept["due_at"]) == now + timedelta(minutes=respond)
    assert datetime.fromisoformat(accept["response_due"]) == now + timedelta(minutes=respond)
    assert datetime.fromisoformat(accept["finish_due"]) == now + timedelta(hours=finish)
    shown = scenario.show()
    assert shown["sla"]["case"] == case and shown["sla"]["version"] == 1
    assert set(shown["deadlines"]) == {"response", "finish"}
    basis = [e for e in scenario.events("timer_set") if e["bpmn_id"] == "timer_response_overdue"][0]["data"]
    assert basis["sla_case"] == case and basis["sla_target"]["respond_minutes"] == respond
    scenario.complete("accept_order", "technician", {"expected_arrival_time": scenario.later(hours=1)})
    assert datetime.fromisoformat(scenario.task("repair_work")["due_at"]) == now + timedelta(hours=finish)


def test_t1_response_overdue_is_redispatched_with_a_new_deadline_and_the_supervisor_warned(scenario):
    repair.register(scenario)
    repair.dispatch(scenario, accept=False)
    first = scenario.task("accept_order")
    fired = scenario.advance(minutes=30, seconds=1)
    assert [f["timer"] for f in fired] == ["timer_response_overdue"]
    assert {t["bpmn_id"]: t["role"] for t in scenario.ready()} == {"redispatch": "agent",
                                                                   "overdue_warning": "supervisor"}
    scenario.complete("redispatch", "agent", {"technician": "technician2",
                                              "required_arrival_time": scenario.later(hours=1),
                                              "redispatch_reason": "原维修人员未接单"})
    again = scenario.task("accept_order")
    assert again["id"] != first["id"] and again["assignee"] == "technician2"
    assert datetime.fromisoformat(again["due_at"]) == scenario.base.clock.now() + timedelta(minutes=30)
    ended = {t["id"]: t for t in scenario.show()["tasks"]}[first["id"]]
    assert (ended["state"], ended["end_reason"]) == ("cancelled", "timer")
    types = [e["type"] for e in scenario.events()]
    assert types.count("deadline_set") >= 4   # response + finish, twice: the re-dispatch is recorded as such


def test_r4_waiting_for_the_customer_pauses_the_finish_clock(scenario):
    repair.register(scenario)
    repair.dispatch(scenario)
    start = scenario.base.clock.now()
    assert datetime.fromisoformat(scenario.task("repair_work")["due_at"]) == start + timedelta(hours=24)
    scenario.advance(hours=4)
    scenario.complete("repair_work", "technician", {"repair_result": "需物业开启配电房",
                                                    "customer_cooperation_needed": True})
    assert scenario.show()["deadlines"]["finish"]["paused_at"] is not None
    assert scenario.task("contact_customer")["clock_paused_at"] is not None
    assert scenario.advance(days=3) == []                  # paused: no overdue while the customer is away
    scenario.complete("contact_customer", "agent", {"cooperation_arranged": "物业今天开门"})
    resumed_due = datetime.fromisoformat(scenario.task("repair_work")["due_at"])
    assert resumed_due == scenario.base.clock.now() + timedelta(hours=20)   # what was left of 24 h
    paused = scenario.events("clock_paused")[0]["data"]
    assert paused["clock"] == "finish" and paused["remaining_seconds"] == 20 * 3600
    resumed = scenario.events("clock_resumed")[0]["data"]
    assert resumed["clock"] == "finish" and datetime.fromisoformat(resumed["due_at"]) == resumed_due
    assert scenario.show()["deadlines"]["finish"]["paused_at"] is None
    # the finish clock runs out (the arrival clock, the earlier of 11:00 and the finish target, ran out before)
    assert [f["timer"] for f in scenario.advance(hours=20, seconds=1)] == ["timer_arrival_late", "timer_repair_overdue"]


def test_a_changed_sla_table_applies_to_new_tickets_and_running_ones_keep_theirs(scenario, tmp_path):
    vip = scenario.k.customers.find("021-63210000")[0]
    repair.register(scenario, customer_id=vip["id"], customer_name=vip["name"], contact_phone=vip["phone"])
    old = scenario.instance_id
    text = (PROCESSES / "sla.dmn").read_text(encoding="utf-8")
    edited = text.replace('<outputEntry id="Out_vip_finish"><text>6</text>', '<outputEntry id="Out_vip_finish"><text>4</text>')
    assert edited != text
    (tmp_path / "sla.dmn").write_text(edited, encoding="utf-8")
    deployed = scenario.k.definitions.deploy([tmp_path / "sla.dmn"], actor="owner")
    assert [(d["process_id"], d["version"]) for d in deployed] == [("sla", 2)]
    repair.dispatch(scenario)
    assert datetime.fromisoformat(scenario.task("repair_work")["due_at"]) == scenario.base.clock.now() + timedelta(hours=6)
    repair.register(scenario, customer_id=vip["id"], customer_name=vip["name"], contact_phone=vip["phone"])
    assert scenario.instance_id != old
    repair.dispatch(scenario)
    assert datetime.fromisoformat(scenario.task("repair_work")["due_at"]) == scenario.base.clock.now() + timedelta(hours=4)
    assert scenario.show()["sla"]["version"] == 2
    assert scenario.events("instance_started")[0]["data"]["sla"]["version"] == 2


@pytest.mark.parametrize("change,message", [
    ('<text>"vip"</text>', '<text>vip</text>'),
    ('<outputEntry id="Out_vip_finish"><text>6</text>', '<outputEntry id="Out_vip_finish"><text>six</text>'),
    ('<rule id="Rule_vip">', '<rule id="Rule_vip_dup"><description/><inputEntry><text>"work_order"</text></inputEntry>'
     '<outputEntry><text/></outputEntry><outputEntry><text/></outputEntry><outputEntry><text/></outputEntry>'
     '<outputEntry><text/></outputEntry></rule><rule id="Rule_vip">'),
])
def test_a_broken_sla_table_is_refused_and_names_the_cell(kefu, tmp_path, change, message):
    from engine import DefinitionError
    text = (PROCESSES / "sla.dmn").read_text(encoding="utf-8").replace(*((change, message)), 1)
    (tmp_path / "sla.dmn").write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError) as exc:
        kefu.definitions.deploy([tmp_path / "sla.dmn"])
    assert exc.value.details.get("file") == "sla.dmn" or "sla.dmn" in str(exc.value)
    assert [d["version"] for d in kefu.definitions.all() if d["process_id"] == "sla"] == [1]


# ---------------------------------------------------------------- firing: restarts, races, punctuality
@pytest.fixture
def mini(db_url, clock):
    k = make_kefu(db_url, clock, deploy=(diagram("mini.bpmn"),))
    yield k
    k.db.dispose()


def test_timers_missed_while_nothing_ran_fire_at_the_next_start(mini, clock, db_url):
    from tests.test_engine import register
    kefu = mini
    r = register(kefu)
    clock.advance(timedelta(days=3))                         # the service was down when it fell due
    restarted = Kefu(Config(database_url=db_url, env="test"), clock=clock)
    sched = TimerScheduler(restarted, sweep_seconds=60).start()
    try:
        deadline = time.monotonic() + 5
        while restarted.timers.waiting(r["instance_id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sched.shutdown()
    assert restarted.timers.waiting(r["instance_id"]) == []
    assert list(fired_counts(restarted).values()) == [1]


def test_concurrent_firing_attempts_fire_each_timer_once(mini, clock):
    from tests.test_engine import register
    kefu = mini
    made = [register(kefu) for _ in range(12)]
    clock.advance(timedelta(days=2))
    results, errors = [], []

    def fire():
        try:
            results.append(Kefu(kefu.config, database=kefu.db, clock=clock).timers.fire_due())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(len(r) for r in results) == len(made)
    assert sorted(fired_counts(kefu).values()) == [1] * len(made)
    assert kefu.timers.fire_due() == [] and kefu.audit.verify() == []


def test_the_scheduler_fires_within_a_second_of_the_due_time_while_others_keep_writing(tmp_path):
    """T-timers: within 1 s of the due time, on the wake-up alone (the sweep is a minute away), while another
    thread of the same process writes one unit of work after another, as web requests do in the embedded
    service. SQLite's own busy wait let such a stream hold the firings back by 1–2 s; its writers now queue."""
    import gc
    k = make_kefu(f"sqlite:///{tmp_path / 'rt.db'}", Clock(), deploy=(diagram("mini.bpmn"),))
    # What the tests before this one left in this worker process is not the scheduler's to traverse: a full
    # garbage collection over it stops every thread for seconds late in a run (as a long-running service
    # does once, after it has started). Collections of what this test makes still run; their pauses are shown.
    gc.collect()
    gc.freeze()
    pauses, started = [], {}

    def timed(phase, info):
        if phase == "start":
            started["at"] = time.perf_counter()
        elif info["generation"] == 2:
            pauses.append(round(time.perf_counter() - started["at"], 3))

    gc.callbacks.append(timed)
    sched = TimerScheduler(k, sweep_seconds=60).start()
    data = {"customer_name": "张三", "contact_phone": "13900000000", "divisor": 2}
    far = (datetime.now(SHANGHAI) + timedelta(days=1)).isoformat()
    stop, written, errors = threading.Event(), [], []

    def keep_writing():
        try:
            while not stop.is_set():
                written.append(k.instances.start("mini", "agent", data={**data, "deadline": far}))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        for i in range(6):  # each due time counted from its own start: a slow machine cannot start late
            due = datetime.now(SHANGHAI) + timedelta(seconds=1.2 + 0.3 * i)
            k.instances.start("mini", "agent", data={**data, "deadline": due.isoformat()})
        deadline = time.monotonic() + 15
        while fired_total(k) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join()
        sched.shutdown()
        gc.callbacks.remove(timed)
        gc.unfreeze()
    assert errors == [] and len(written) > 6  # the other writer really kept writing meanwhile
    with k.db.reading() as s:
        late = [(e.at - datetime.fromisoformat(e.data["due_at"])).total_seconds()
                for e in s.scalars(select(AuditEvent).where(AuditEvent.type == "timer_fired"))]
    assert len(late) == 6
    assert all(0 <= x < 1.0 for x in late), (late, {"full collections (s)": pauses, "threads": sorted(
        t.name for t in threading.enumerate())})
    k.db.dispose()


def fired_total(k) -> int:
    with k.db.reading() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.type == "timer_fired"))


# ---------------------------------------------------------------- demo and test time
def test_clock_controls_move_every_process_and_refuse_in_production(kefu, clock, db_url):
    before = kefu.now()
    kefu.time.advance_clock(timedelta(days=3))
    other = Kefu(Config(database_url=db_url, env="test"), database=kefu.db, clock=clock)
    assert other.time.clock_status()["now"] == (before + timedelta(days=3)).astimezone(SHA).isoformat()
    prod = Kefu(Config(database_url=db_url, env="production"), database=kefu.db, clock=Clock())
    with pytest.raises(ClockError):
        prod.time.advance_clock(timedelta(days=1))
    assert abs((prod.now() - datetime.now(SHA)).total_seconds()) < 5   # production ignores the offset


@pytest.mark.parametrize("kind,minutes", [("consultation", 30), ("complaint", 20)])  # the complainant is a VIP
def test_t1_a_transfer_not_accepted_in_time_is_redispatched(scenario, kind, minutes):
    from tests import test_consultation as consultation
    if kind == "consultation":
        consultation.to_department(scenario, accept=False)
    else:
        complaint.register(scenario)
        complaint.transfer(scenario, accept=False)
    accept = scenario.task("department_accept")
    assert datetime.fromisoformat(accept["response_due"]) == scenario.base.clock.now() + timedelta(minutes=minutes)
    assert scenario.advance(minutes=minutes) == []
    assert [f["timer"] for f in scenario.advance(seconds=1)] == ["timer_response_overdue"]
    assert {t["bpmn_id"] for t in scenario.ready()} == {"redispatch", "overdue_warning"}


def test_one_broken_instance_does_not_hold_up_a_batch(mini, clock, caplog):
    from sqlalchemy import text
    from tests.test_engine import register
    made = [register(mini) for _ in range(5)]
    broken = made[2]["instance_id"]
    with mini.db.unit_of_work() as s:   # a state nobody can load (say, written by a faulty tool)
        # Like every writer of an instance, it moves the lock version on (a workflow kept warm by version
        # would otherwise still be taken for the stored one: engine.services.warm).
        s.execute(text("UPDATE instances SET state = '{not json', lock_version = lock_version + 1 "
                       "WHERE id = :i"), {"i": broken})
    clock.advance(timedelta(days=2))
    fired = Kefu(mini.config, database=mini.db, clock=clock).timers.fire_due()
    assert sorted(f["instance_id"] for f in fired) == sorted(r["instance_id"] for r in made if r["instance_id"] != broken)
    assert [t["instance_id"] for t in mini.timers.waiting()] == [broken]          # kept, tried again next sweep
    assert "firing the timers of instance" in caplog.text
    assert sorted(fired_counts(mini).values()) == [1] * 4
