"""X2 shift handover (交接班, 002 第三章) on the real diagrams and the real calendar: what a handover lists, the
incoming agent's acceptance (both signatures), what a task taken meanwhile does, the shifts, the errors, the
KPI charge of a case left out (漏交) or not taken over (漏接), and the CLI as a new user would use it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from engine import Conflict, InvalidInput, NotAllowed, NotFound
from engine.clock import SHANGHAI
from engine.kpi_who import ClockStop, HandoverMark, charges
from tests.conftest import ROOT
from tests.factories import Scenario
from tests.test_complaint import register, transfer
from tests.test_consultation import register as register_consultation

END_OF_DAY_SHIFT = datetime(2026, 11, 23, 19, 40, tzinfo=SHANGHAI)  # a Monday, a working day


def two_open_cases(kefu):
    """At the end of the day shift the day agent holds two open complaints (their transfer steps ready)."""
    kefu.clock.set(END_OF_DAY_SHIFT)
    a, b = Scenario(kefu), Scenario(kefu)
    register(a)
    register(b, customer_name="李先生", contact_phone="13800138000", nature="product", content="报警器误报")
    return a, b


def test_x2_day_agent_hands_two_cases_to_the_night_agent_who_accepts_them(kefu):
    a, b = two_open_cases(kefu)
    preview = kefu.handovers.preview("agent")
    assert preview["shift"] == "夜班"
    assert (preview["window_start"], preview["window_end"]) == ("2026-11-23T20:00:00+08:00",
                                                               "2026-11-24T08:00:00+08:00")
    h = kefu.handovers.start("agent", "agent2", note="夜间注意华东银行来电",
                             case_notes={a.ticket_no: "客户要求书面道歉，已安抚"})
    cases = [i for i in h["items"] if i["kind"] == "case"]
    tasks = [i for i in h["items"] if i["kind"] == "task"]
    assert sorted(i["ticket_no"] for i in cases) == sorted([a.ticket_no, b.ticket_no])
    assert sorted(i["ticket_no"] for i in tasks) == sorted([a.ticket_no, b.ticket_no])
    assert {i["label"] for i in tasks} == {"填写投诉转办单"}
    assert next(i for i in cases if i["ticket_no"] == a.ticket_no)["note"] == "客户要求书面道歉，已安抚"
    assert h["state"] == "open" and h["signatures"]["outgoing"] == {"name": "agent",
                                                                    "at": "2026-11-23T19:40:00+08:00"}
    assert h["signatures"]["incoming"] is None
    # until the incoming agent accepts, everything stays with the outgoing one
    assert kefu.instances.show(a.ticket_no)["owner"] == "agent"
    listed = a.events("handover_listed")[-1]
    assert listed["rules"] == ["X2"] and listed["data"]["to"] == "agent2" and listed["data"]["included"] is True

    kefu.clock.advance(timedelta(minutes=25))  # 20:05: the night agent arrived and signs
    done = kefu.handovers.accept(h["id"], "agent2")
    assert done["state"] == "accepted" and done["accepted_at"] == "2026-11-23T20:05:00+08:00"
    assert done["signatures"]["incoming"] == {"name": "agent2", "at": "2026-11-23T20:05:00+08:00"}
    assert {i["outcome"] for i in done["items"] if i["kind"] in ("case", "task")} == {"taken"}
    assert done["skipped"] == []
    for sc in (a, b):
        shown = kefu.instances.show(sc.ticket_no)
        assert shown["owner"] == "agent2"
        assert [t["assignee"] for t in shown["tasks"] if t["state"] == "ready"] == ["agent2"]
        moved = [e for e in shown["events"] if e["type"] == "owner_changed"][-1]
        assert moved["actor"] == "agent2" and moved["rules"] == ["X1", "X2"]
        assert moved["data"]["reason"] == f"交接班 #{h['id']}" and moved["data"]["from"] == "agent"
        reassigned = [e for e in shown["events"] if e["type"] == "task_reassigned"][-1]
        assert reassigned["rules"] == ["X2"] and reassigned["data"]["assignee"] == "agent2"
    # the night agent finds both in their own tasks; the day agent no longer holds them
    mine = [t for t in kefu.tasks.ready(actor="agent2") if t["assignee"] == "agent2"]
    assert sorted(t["ticket_no"] for t in mine) == sorted([a.ticket_no, b.ticket_no])
    assert not [t for t in kefu.tasks.ready(actor="agent") if t["ticket_no"] in (a.ticket_no, b.ticket_no)]
    assert kefu.audit.verify() == []
    # the supervisor sees the day's handovers, open and accepted
    day = kefu.handovers.day(actor="supervisor")
    assert [x["id"] for x in day] == [h["id"]] and day[0]["state"] == "accepted"
    assert kefu.handovers.day(actor="department") == []  # not theirs
    assert [e["type"] for e in kefu.security.events() if e["type"].startswith("handover")] == [
        "handover_accepted", "handover_started"]


def test_x2_a_task_taken_during_the_handover_stays_with_whoever_took_it(kefu):
    a, b = two_open_cases(kefu)
    h = kefu.handovers.start("agent", "agent2")
    # during the handover the outgoing agent finishes one step and claims the other (002 第三章.4)
    transfer(a, accept=False)
    kefu.tasks.claim(b.task("transfer")["id"], "agent")
    done = kefu.handovers.accept(h["id"], "agent2")
    skipped = {i["ticket_no"]: i["outcome_note"] for i in done["skipped"]}
    assert skipped == {a.ticket_no: "done during the handover by agent",
                       b.ticket_no: "taken by agent during the handover; stays with them until done"}
    assert b.task("transfer")["assignee"] == "agent"  # stays with who took it until it is done
    # the cases themselves pass: both still open and the day agent's when the night agent signed
    assert kefu.instances.show(a.ticket_no)["owner"] == kefu.instances.show(b.ticket_no)["owner"] == "agent2"


def test_x2_a_case_left_out_stays_with_the_outgoing_agent(kefu):
    a, b = two_open_cases(kefu)
    h = kefu.handovers.start("agent", "agent2", leave=[b.ticket_no])
    assert h["left_out"] == [b.ticket_no] and h["cases"] == 1
    done = kefu.handovers.accept(h["id"], "agent2")
    outcomes = {(i["kind"], i["ticket_no"]): i["outcome"] for i in done["items"]}
    assert outcomes[("case", b.ticket_no)] == outcomes[("task", b.ticket_no)] == "left_out"
    assert kefu.instances.show(b.ticket_no)["owner"] == "agent"
    assert kefu.instances.show(a.ticket_no)["owner"] == "agent2"


def test_x2_promises_due_in_the_next_shift_and_open_escalations_are_listed(kefu):
    kefu.clock.set(END_OF_DAY_SHIFT)
    sc = Scenario(kefu)
    register(sc)
    transfer(sc, hours=4)  # the department must finish by 23:40, inside the night shift
    kefu.tasks.escalate(sc.task("department_handle")["id"], "agent", "部门迟迟未处理")
    h = kefu.handovers.start("agent", "agent2")
    promises = [i for i in h["items"] if i["kind"] == "promise"]
    assert promises and all(i["ticket_no"] == sc.ticket_no for i in promises)
    assert "2026-11-23T23:40:00+08:00" in {i["due_at"] for i in promises}
    escalations = [i for i in h["items"] if i["kind"] == "escalation"]
    assert len(escalations) == 1 and escalations[0]["ticket_no"] != sc.ticket_no


def test_x2_errors_are_refused_clearly(kefu):
    a, _b = two_open_cases(kefu)
    with pytest.raises(InvalidInput, match="oneself"):
        kefu.handovers.start("agent", "agent")
    with pytest.raises(InvalidInput, match="no active user"):
        kefu.handovers.start("agent", "nosuch")
    with pytest.raises(InvalidInput, match="not an agent"):
        kefu.handovers.start("agent", "department")
    with pytest.raises(NotAllowed, match="not an agent"):
        kefu.handovers.start("supervisor", "agent2")
    with pytest.raises(NotAllowed):
        kefu.handovers.start("nosuch", "agent2")
    with pytest.raises(InvalidInput, match="not among"):
        kefu.handovers.start("agent", "agent2", leave=["TS19990101-0001"])
    h = kefu.handovers.start("agent", "agent2")
    with pytest.raises(Conflict, match="already has an open handover"):
        kefu.handovers.start("agent", "agent2")
    with pytest.raises(NotAllowed, match="only agent2 may accept"):
        kefu.handovers.accept(h["id"], "agent")
    with pytest.raises(NotAllowed):
        kefu.handovers.show(h["id"], actor="department")
    with pytest.raises(NotFound):
        kefu.handovers.accept(9999, "agent2")
    with pytest.raises(NotFound):
        kefu.handovers.show("abc")
    kefu.handovers.accept(h["id"], "agent2")
    with pytest.raises(InvalidInput, match="already accepted"):
        kefu.handovers.accept(h["id"], "agent2")
    assert kefu.instances.show(a.ticket_no)["owner"] == "agent2"


def test_x2_shifts_are_configured_and_a_supervisor_changes_them(kefu):
    assert kefu.shifts.all() == [{"name": "白班", "start": "08:00", "end": "20:00"},
                                 {"name": "夜班", "start": "20:00", "end": "08:00"}]
    kefu.clock.set(datetime(2026, 11, 23, 7, 50, tzinfo=SHANGHAI))
    assert kefu.shifts.next() == {"name": "白班", "start": "2026-11-23T08:00:00+08:00",
                                  "end": "2026-11-23T20:00:00+08:00"}
    with pytest.raises(NotAllowed):
        kefu.shifts.set("早副", "07:30", "14:00", "agent")
    with pytest.raises(InvalidInput):
        kefu.shifts.set("早副", "7:30am", "14:00", "supervisor")
    shifts = kefu.shifts.set("早副", "07:30", "14:00", "supervisor")  # 002: the early relief shift
    assert [s["name"] for s in shifts] == ["早副", "白班", "夜班"]
    kefu.clock.set(datetime(2026, 11, 23, 7, 20, tzinfo=SHANGHAI))
    assert kefu.shifts.next()["name"] == "早副"
    kefu.shifts.remove("早副", "supervisor")
    with pytest.raises(NotFound):
        kefu.shifts.remove("早副", "supervisor")
    assert [e["type"] for e in kefu.security.events()][:2] == ["shift_changed", "shift_changed"]


def _stop(clock, responsible, stopped, role="agent"):
    return ClockStop(clock, "promise_reply", "承诺答复", role, None, responsible, "2026-11-23T20:15:00+08:00",
                     stopped, "missed")


def test_x2_kwho_a_listed_case_not_taken_over_is_charged_to_the_incoming_agent():
    at = lambda h, m: datetime(2026, 11, 23, h, m, tzinfo=SHANGHAI)  # noqa: E731
    listed = HandoverMark(7, "agent", "agent2", True, at(19, 50), at(20, 0), None)
    shares = charges("K1", "responsible", "agent", [_stop("reply", "agent", "2026-11-23T20:30:00+08:00")], False,
                     [listed])
    assert [(s["person"], s["basis"]) for s in shares] == [("agent2", "handover")]
    assert "漏接" in shares[0]["why"] and "#7" in shares[0]["why"]
    # before the next shift began the outgoing agent still answers for it
    early = charges("K1", "responsible", "agent", [_stop("reply", "agent", "2026-11-23T19:55:00+08:00")], False,
                    [listed])
    assert [s["person"] for s in early] == ["agent"] and early[0]["basis"] == "clock"
    # taken over before the miss: the normal rule (the holder)
    taken = HandoverMark(7, "agent", "agent2", True, at(19, 50), at(20, 0), at(20, 5))
    assert [s["person"] for s in charges("K1", "responsible", "agent2", [
        _stop("reply", "agent2", "2026-11-23T20:30:00+08:00")], False, [taken])] == ["agent2"]
    # left out: charged to the outgoing agent, said so
    left = HandoverMark(8, "agent", "agent2", False, at(19, 50), at(20, 0), at(20, 5))
    shares = charges("K1", "responsible", "agent", [_stop("reply", None, "2026-11-23T21:00:00+08:00")], False,
                     [left])
    assert [(s["person"], s["basis"]) for s in shares] == [("agent", "handover")] and "漏交" in shares[0]["why"]


def test_x2_kpi_lineage_charges_the_incoming_agent_for_a_case_listed_but_not_taken_over(kefu):
    kefu.users.add("agent3", ["agent"], display_name="客服专员 赵云")
    kefu.clock.set(datetime(2026, 11, 23, 19, 45, tzinfo=SHANGHAI))
    listed, left = Scenario(kefu), Scenario(kefu)
    register_consultation(listed, on_spot=False)
    listed_no = listed.show()["ticket_no"]
    left.start("consultation", {"customer_name": "王女士", "contact_phone": "13900139000", "region": "上海",
                                "channel": "phone", "question": "门禁卡如何补办？", "answered_on_spot": False},
               actor="agent3")
    kefu.clock.advance(timedelta(minutes=5))
    h1 = kefu.handovers.start("agent", "agent2")  # listed; agent2 never signs
    h3 = kefu.handovers.start("agent3", "agent2", leave=[left.ticket_no])
    kefu.handovers.accept(h3["id"], "agent2")
    listed.advance(minutes=35)  # 20:25: the reply clocks (30 min) ran out in the night shift
    for sc, who in ((listed, "agent"), (left, "agent3")):
        sc.complete("promise_reply", who, {"promised_reply_time": sc.later(minutes=5), "needs_department": False})
    listed.advance(minutes=20)
    for sc, who in ((listed, "agent"), (left, "agent3")):
        sc.complete("relay_answer", who, {"answer": "已答复", "satisfied": True})
    report = kefu.kpi.report("2026-11")
    rows = {r["ticket_no"]: r for r in report["department"]["K1"]["counted"]}
    assert rows[listed_no]["outcome"] is False
    assert {c["person"] for c in rows[listed_no]["charges"]} == {"agent2"}
    assert any("漏接" in c["why"] and f"#{h1['id']}" in c["why"] for c in rows[listed_no]["charges"])
    assert {c["person"] for c in rows[left.ticket_no]["charges"]} == {"agent3"}
    assert any("漏交" in c["why"] for c in rows[left.ticket_no]["charges"])
    assert report["agents"]["agent2"]["K1"]["denominator"] >= 1


def test_x2_new_user_hands_over_by_the_command_line(kefu):
    """Tried as a new user would: the day agent hands two open cases to the night agent, who accepts and finds
    both, with their tasks, as theirs."""
    a, b = two_open_cases(kefu)
    env = {**os.environ, "KEFU_DATABASE_URL": kefu.config.database_url, "KEFU_ENV": "test",
           "KEFU_CLOCK": "2026-11-23T19:45:00+08:00"}
    kefu.db.dispose()

    def run(*args, expect=0):
        p = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=60)
        assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
        return p

    assert "no active user" in run("handover", "start", "--as", "agent", "--to", "nobody", expect=2).stderr
    assert "oneself" in run("handover", "start", "--as", "agent", "--to", "agent", expect=2).stderr
    assert "not an agent" in run("handover", "start", "--as", "supervisor", "--to", "agent2", expect=3).stderr
    h = json.loads(run("handover", "start", "--as", "agent", "--to", "agent2", "--note", "夜班注意",
                       "--case-note", f"{a.ticket_no}=客户很着急", "--json").stdout)
    assert isinstance(h["id"], int)
    assert sorted(i["ticket_no"] for i in h["items"] if i["kind"] == "case") == sorted([a.ticket_no, b.ticket_no])
    assert "only agent2 may accept" in run("handover", "accept", str(h["id"]), "--as", "agent", expect=3).stderr
    text = run("handover", "show", str(h["id"])).stdout
    assert f"handover #{h['id']}  agent → agent2" in text and "客户很着急" in text
    accepted = json.loads(run("handover", "accept", str(h["id"]), "--as", "agent2", "--json").stdout)
    assert accepted["state"] == "accepted"
    assert "already accepted" in run("handover", "accept", str(h["id"]), "--as", "agent2", expect=2).stderr
    for sc in (a, b):
        shown = json.loads(run("show", sc.ticket_no, "--json").stdout)
        assert shown["owner"] == "agent2"
    mine = json.loads(run("tasks", "--as", "agent2", "--json").stdout)
    assert sorted(t["ticket_no"] for t in mine if t["assignee"] == "agent2") == sorted([a.ticket_no, b.ticket_no])
    assert run("handover", "show", "999", expect=4).returncode == 4
    listed = json.loads(run("handover", "list", "--as", "supervisor", "--json").stdout)
    assert [(x["id"], x["state"], x["accepted_at"]) for x in listed] == [(h["id"], "accepted",
                                                                         "2026-11-23T19:45:00+08:00")]
    assert "夜班" in run("shifts", "list").stdout
