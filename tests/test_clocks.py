"""The clocks follow the rules exactly (RULES.md T-cap, T-promise, T-window, T-stop, T1; the SLA table): every
clock from the SLA table, deadlines the agent types capped, urgent, major and emergency clocks, revisit windows
of whole working days, and clocks that stop when their work is done."""
import json
import re
from datetime import datetime, timedelta

import pytest

from engine import FormValidationError
from tests import test_complaint as complaint, test_repair as repair
from tests.factories import PROCESSES
from tests.webclient import Web

SHA = "+08:00"
NON_VIP = {"customer_name": "李先生", "contact_phone": "13800138000"}


def at(sc, **delta) -> datetime:
    return sc.base.clock.now() + timedelta(**delta)


def due(sc, bpmn_id) -> datetime:
    return datetime.fromisoformat(sc.task(bpmn_id)["due_at"])


def clocks(sc) -> list[dict]:
    return sc.show()["clocks"]


def consultation(sc, channel="phone", **over):
    data = {"customer_name": "华东银行股份有限公司", "contact_phone": "021-63210000", "region": "上海",
            "channel": channel, "question": "发票怎么开？", "answered_on_spot": False, **over}
    return sc.start("consultation", data)


# ---------------------------------------------------------------- T-cap
def test_t_cap_a_vip_complaint_transferred_for_3_days_is_refused_naming_the_6_hour_cap(scenario):
    complaint.register(scenario)  # 华东银行 is a VIP customer
    with pytest.raises(FormValidationError) as exc:
        scenario.complete("transfer", "agent", {"department": "security_ops", "handling_requirement": "调查",
                                                "handling_deadline": scenario.later(days=3)})
    message = exc.value.errors["handling_deadline"]
    assert "vip target: 6 h" in message and "escalate to the supervisor" in message
    assert "2026-11-23 15:00" in message  # the cap itself: six hours after the transfer
    assert scenario.ready_ids() == ["transfer"]  # nothing changed
    complaint.transfer(scenario, hours=4)  # an earlier deadline is the agent's to choose
    assert due(scenario, "department_handle") == at(scenario, hours=4)


def test_t_cap_the_web_form_says_the_cap_in_chinese(kefu, scenario):
    complaint.register(scenario)
    web = Web(kefu).login_as("agent")
    task = scenario.task("transfer")
    page = web.post(f"/tasks/{task['id']}", {"department": "security_ops", "handling_requirement": "调查",
                                             "handling_deadline": "2026-11-26T09:00"})
    text = page.get_data(as_text=True)
    assert page.status_code == 422 and "不能晚于 2026-11-23 15:00" in text and "升级至客服主管" in text


def test_t_cap_a_work_order_finishes_within_24_hours_of_the_transfer(scenario):
    complaint.register(scenario, **NON_VIP)
    with pytest.raises(FormValidationError, match="work_order target: 24 h"):
        complaint.transfer(scenario, hours=25)
    complaint.transfer(scenario, hours=24)
    assert datetime.fromisoformat(scenario.show()["data"]["finish_due"]) == at(scenario, hours=24)


def test_t_cap_the_supervisor_extends_a_deadline_through_an_escalation(scenario):
    complaint.register(scenario)
    complaint.transfer(scenario, hours=5)
    handle = scenario.task("department_handle")
    child = scenario.k.tasks.escalate(handle["id"], "agent", "部门称需要调取三天录像")
    decision = child["tasks"][0]
    new = scenario.later(days=2)
    with pytest.raises(FormValidationError) as exc:  # extend without the new deadline: nothing happens
        scenario.k.tasks.complete(decision["id"], "supervisor", {"decision": "extend", "instruction": "同意"})
    assert "new_deadline" in exc.value.errors
    scenario.k.tasks.complete(decision["id"], "supervisor", {"decision": "extend", "new_deadline": new,
                                                            "instruction": "与客户协商同意延长"})
    assert due(scenario, "department_handle") == datetime.fromisoformat(new)
    [extended] = scenario.events("deadline_extended")
    assert extended["actor"] == "supervisor" and extended["data"]["escalation"] == child["ticket_no"]
    waiting = {t["bpmn_id"]: t["due_at"] for t in scenario.k.timers.waiting(scenario.instance_id)}
    assert datetime.fromisoformat(waiting["timer_department_overdue"]) == datetime.fromisoformat(new)
    assert scenario.advance(hours=5, seconds=1) == []  # the old deadline no longer fires


def test_t_cap_the_supervisor_reassigns_through_an_escalation(scenario):
    scenario.base.users.add("dept2", ["department"], groups=["security_ops"])
    complaint.register(scenario)
    complaint.transfer(scenario, hours=5)
    handle = scenario.task("department_handle")
    child = scenario.k.tasks.escalate(handle["id"], "agent", "经办人休假")
    scenario.k.tasks.complete(child["tasks"][0]["id"], "supervisor", {
        "decision": "reassign", "new_assignee": "dept2", "instruction": "改由 dept2 处理"})
    assert scenario.task("department_handle")["assignee"] == "dept2"
    assert scenario.events("task_reassigned")[-1]["data"]["escalation"] == child["ticket_no"]


# ---------------------------------------------------------------- urgent and major
def test_t1_an_urgent_complaint_gives_its_handler_a_10_minute_response_clock(scenario):
    complaint.register(scenario, severity="urgent", **NON_VIP)
    complaint.transfer(scenario, hours=8, accept=False)
    assert due(scenario, "department_accept") == at(scenario, minutes=10)
    scenario.advance(minutes=10, seconds=1)
    assert "redispatch" in scenario.ready_ids()
    [missed] = [c for c in clocks(scenario) if c["name"] == "response"]
    assert missed["state"] == "missed" and missed["task"] == "department_accept"


def test_p5_a_major_complaint_gives_the_supervisor_a_10_minute_clock_to_form_the_task_force(scenario):
    complaint.register(scenario, severity="major")
    assert due(scenario, "form_taskforce") == at(scenario, minutes=10)
    scenario.advance(minutes=12)
    scenario.complete("form_taskforce", "supervisor", {"task_force_members": ["taskforce1"],
                                                       "handling_requirement": "彻查",
                                                       "handling_deadline": scenario.later(days=1)})
    formation = [c for c in clocks(scenario) if c["name"] == "formation"]
    assert [(c["state"], c["responsible"]) for c in formation] == [("missed", "supervisor")]
    stopped = [e for e in scenario.events("clock_stopped") if e["data"]["clock"] == "formation"]
    assert stopped[0]["data"]["responsible"] == "supervisor"


# ---------------------------------------------------------------- T-promise and the consultation rows
def test_t_promise_the_promised_reply_time_is_a_deadline_on_the_relay_task(scenario):
    consultation(scenario, **NON_VIP)
    scenario.complete("promise_reply", "agent", {"promised_reply_time": scenario.later(hours=3),
                                                 "needs_department": False})
    assert due(scenario, "relay_answer") == at(scenario, hours=3)
    scenario.advance(hours=3, seconds=1)
    assert scenario.ready_ids() == ["overdue_warning", "relay_answer"]  # T1: the supervisor is warned
    scenario.complete("relay_answer", "agent", {"answer": "可开具增值税发票", "satisfied": True})
    promise = [c for c in clocks(scenario) if c["name"] == "promise"][0]
    assert promise["state"] == "missed" and promise["responsible"] == "agent"


def test_t_promise_a_promise_beyond_the_target_needs_a_recorded_reason(scenario):
    consultation(scenario)  # VIP: 6 hours
    with pytest.raises(FormValidationError) as exc:
        scenario.complete("promise_reply", "agent", {"promised_reply_time": scenario.later(days=1),
                                                     "needs_department": False})
    assert "give the reason" in exc.value.errors["promise_reason"]
    scenario.complete("promise_reply", "agent", {"promised_reply_time": scenario.later(days=1),
                                                 "promise_reason": "客户要求明天上午回电", "needs_department": False})
    assert scenario.show()["data"]["promise_reason"] == "客户要求明天上午回电"


@pytest.mark.parametrize("channel,seconds", [("online", 30), ("phone", 30 * 60)])
def test_c3_a_question_not_answered_on_the_spot_is_replied_to_within_the_channel_target(scenario, channel,
                                                                                         seconds):
    consultation(scenario, channel=channel)
    assert due(scenario, "promise_reply") == at(scenario, seconds=seconds)


# ---------------------------------------------------------------- emergency repairs
def test_r2_an_emergency_repair_is_urgent_everywhere_with_10_minute_clocks(kefu, scenario):
    repair.register(scenario, emergency=True, emergency_scale="large")
    shown = scenario.show()
    assert shown["severity"] == "urgent"
    assert {t["bpmn_id"]: datetime.fromisoformat(t["due_at"]) for t in scenario.ready()} == {
        "emergency_notice": at(scenario, minutes=10), "emergency_dispatch": at(scenario, minutes=10)}
    inbox = Web(kefu).login_as("agent").get("/inbox?severity=urgent").get_data(as_text=True)
    assert scenario.ticket_no in inbox and '<span class="sev urgent">紧急</span>' in inbox
    page = Web(kefu).login_as("agent").get(f"/instances/{scenario.ticket_no}").get_data(as_text=True)
    assert '<span class="sev urgent">紧急</span>' in page


def test_r3_the_technician_arrives_by_the_earlier_of_the_required_time_and_the_sla(scenario):
    repair.register(scenario)
    scenario.complete("dispatch", "agent", {"technician": "technician", "repair_requirement": "更换读卡器",
                                            "required_arrival_time": scenario.later(hours=3)})
    scenario.complete("accept_order", "technician", {"expected_arrival_time": scenario.later(hours=1)})
    timers = {t["bpmn_id"]: t["due_at"] for t in scenario.k.timers.waiting(scenario.instance_id)}
    assert datetime.fromisoformat(timers["timer_arrival_late"]) == at(scenario, hours=3)
    scenario.advance(hours=2)
    scenario.complete("repair_work", "technician", {"arrived_at": scenario.later(minutes=-30),
                                                    "repair_result": "已更换", "customer_cooperation_needed": False})
    arrival = [c for c in clocks(scenario) if c["name"] == "arrival"][0]
    assert arrival["state"] == "met"
    assert datetime.fromisoformat(arrival["stopped_at"]) == at(scenario, minutes=-30)  # as the technician reported


def test_r3_an_arrival_later_than_the_finish_target_is_refused(scenario):
    repair.register(scenario, emergency=True)
    with pytest.raises(FormValidationError, match="emergency target: 6 h"):
        scenario.complete("emergency_dispatch", "agent", {
            "technician": "technician", "repair_requirement": "排查", "notified_departments": "物业",
            "required_arrival_time": scenario.later(hours=7)})


# ---------------------------------------------------------------- T-window
def test_t_window_a_repair_revisit_is_open_for_whole_working_days(scenario, clock):
    clock.set(datetime.fromisoformat("2026-09-29T15:00:00+08:00"))  # Tuesday before National Day
    repair.register(scenario)
    repair.dispatch(scenario)
    scenario.complete("repair_work", "technician", {"repair_result": "已修复", "customer_cooperation_needed": False})
    scenario.complete("confirm_repair", "agent", {"satisfied": True})
    # working days after 09-29: 09-30 (1), then 10-08 (2) and 10-09 (3) after the holiday
    waiting = {t["bpmn_id"]: t["due_at"] for t in scenario.k.timers.waiting(scenario.instance_id)}
    assert waiting == {"wait_revisit": "2026-10-08T00:00:00+08:00"}
    clock.set(datetime.fromisoformat("2026-10-08T00:00:01+08:00"))
    scenario.k.timers.fire_due()
    assert scenario.task("revisit")["due_at"] == "2026-10-10T00:00:00+08:00"
    clock.set(datetime.fromisoformat("2026-10-09T23:59:00+08:00"))  # the last day of the window: not late
    assert scenario.k.timers.fire_due() == []
    clock.set(datetime.fromisoformat("2026-10-10T00:00:01+08:00"))
    assert [f["timer"] for f in scenario.k.timers.fire_due()] == ["timer_revisit_late"]


# ---------------------------------------------------------------- T-stop
def test_t_stop_a_closed_repair_reads_met_or_missed_and_never_runs(kefu, scenario, kefu_cli_json):
    repair.register(scenario)
    repair.dispatch(scenario)
    scenario.advance(hours=25)  # the finish clock runs out: re-dispatch
    scenario.complete("redispatch", "agent", {"technician": "technician2", "required_arrival_time": scenario.later(hours=1),
                                              "redispatch_reason": "超时"})
    scenario.complete("accept_order", "technician2", {"expected_arrival_time": scenario.later(hours=1)})
    scenario.complete("repair_work", "technician2", {"repair_result": "已更换", "customer_cooperation_needed": False})
    scenario.complete("confirm_repair", "agent", {"satisfied": True})
    scenario.advance(days=3)
    scenario.complete("revisit", "agent", {"satisfaction_score": 90, "case_summary": "改派后完成"})
    scenario.complete("overdue_warning", "supervisor", {"warning_note": "已约谈"})
    shown = kefu_cli_json("show", scenario.ticket_no)
    assert shown["status"] == "completed"
    states = [(c["name"], c["state"]) for c in shown["clocks"]]
    assert {s for _n, s in states} <= {"met", "missed"} and all(c["stopped_at"] for c in shown["clocks"])
    assert ("finish", "missed") in states and ("finish", "met") in states and ("revisit", "met") in states
    assert set(shown["clocks"][0]) >= {"name", "due_at", "stopped_at", "state"}
    assert shown["clocks"][0]["due_at"]
    page = Web(kefu).login_as("supervisor").get(f"/instances/{scenario.ticket_no}").get_data(as_text=True)
    assert "按时完成" in page and "剩余" not in page.split("时限")[1].split("</ul>")[0]
    assert re.search(r"超时 (\d+天)?\d+小时(\d+分)? 完成|超时未完成", page)


def test_t_stop_a_clock_paused_for_the_customer_reads_paused_while_waiting(scenario):
    repair.register(scenario)
    repair.dispatch(scenario)
    scenario.complete("repair_work", "technician", {"repair_result": "需物业开门", "customer_cooperation_needed": True})
    finish = [c for c in clocks(scenario) if c["name"] == "finish"]
    assert [c["state"] for c in finish] == ["paused"]
    scenario.advance(hours=30)  # waiting for the customer is never late
    scenario.complete("contact_customer", "agent", {"cooperation_arranged": "物业已开门"})
    assert [c["state"] for c in clocks(scenario) if c["name"] == "finish"] == ["running"]


# ---------------------------------------------------------------- the SLA table drives every clock
def _edited_table(tmp_path, case, column, value):
    text = (PROCESSES / "sla.dmn").read_text(encoding="utf-8")
    key = {"respond_minutes": "respond", "finish_hours": "finish", "revisit_min_working_days": "revisit_min",
           "revisit_max_working_days": "revisit_max"}[column]
    edited, n = re.subn(rf'(<outputEntry id="Out_{case}_{key}"><text>)[^<]*(</text>)', rf"\g<1>{value}\g<2>", text)
    assert n == 1, (case, column)
    (tmp_path / "sla.dmn").write_text(edited, encoding="utf-8")
    return tmp_path / "sla.dmn"


def _complaint_transfer(sc, **register):
    complaint.register(sc, **register)
    complaint.transfer(sc, hours=1, accept=False)


ROWS = [  # case, column, new value, how a ticket shows it: (start, task whose due moves, expected delta)
    ("work_order", "respond_minutes", 15, lambda sc: _complaint_transfer(sc, **NON_VIP), "department_accept",
     timedelta(minutes=15)),
    ("vip", "respond_minutes", 5, lambda sc: _complaint_transfer(sc), "department_accept", timedelta(minutes=5)),
    ("urgent", "respond_minutes", 3, lambda sc: _complaint_transfer(sc, severity="urgent"), "department_accept",
     timedelta(minutes=3)),
    ("major", "respond_minutes", 7, lambda sc: complaint.register(sc, severity="major"), "form_taskforce",
     timedelta(minutes=7)),
    ("emergency", "respond_minutes", 4, lambda sc: repair.register(sc, emergency=True), "emergency_notice",
     timedelta(minutes=4)),
    ("emergency_large", "respond_minutes", 6,
     lambda sc: repair.register(sc, emergency=True, emergency_scale="large"), "emergency_dispatch",
     timedelta(minutes=6)),
    ("online_consultation", "respond_minutes", 2, lambda sc: consultation(sc, channel="online"), "promise_reply",
     timedelta(minutes=2)),
    ("consultation", "respond_minutes", 45, lambda sc: consultation(sc), "promise_reply", timedelta(minutes=45)),
]


@pytest.mark.parametrize("case,column,value,start,task,delta", ROWS, ids=[r[0] for r in ROWS])
def test_sla_every_row_drives_a_clock(scenario, tmp_path, case, column, value, start, task, delta):
    scenario.k.definitions.deploy([_edited_table(tmp_path, case, column, value)], actor="owner")
    start(scenario)
    assert due(scenario, task) == at(scenario) + delta


def test_sla_the_work_order_finish_row_caps_the_transfer(scenario, tmp_path):
    scenario.k.definitions.deploy([_edited_table(tmp_path, "work_order", "finish_hours", 2)], actor="owner")
    complaint.register(scenario, **NON_VIP)
    with pytest.raises(FormValidationError, match="work_order target: 2 h"):
        complaint.transfer(scenario, hours=3)


def test_sla_the_complaint_feedback_row_times_the_feedback(scenario, tmp_path):
    scenario.k.definitions.deploy([_edited_table(tmp_path, "complaint_feedback", "finish_hours", 3)],
                                  actor="owner")
    complaint.register(scenario)
    complaint.transfer(scenario, hours=1)
    complaint.handle_by_department(scenario)
    assert due(scenario, "feedback") == at(scenario, hours=3)


@pytest.mark.parametrize("case,low,high,opens,closes", [
    ("complaint_revisit", 1, 2, "2026-11-24T00:00:00+08:00", "2026-11-26T00:00:00+08:00"),
    ("repair_revisit", 3, 4, "2026-11-26T00:00:00+08:00", "2026-11-28T00:00:00+08:00"),
])
def test_sla_the_revisit_rows_set_the_window(scenario, tmp_path, case, low, high, opens, closes):
    path = _edited_table(tmp_path, case, "revisit_min_working_days", low)
    path.write_text(re.sub(rf'(<outputEntry id="Out_{case}_revisit_max"><text>)[^<]*', rf"\g<1>{high}",
                           path.read_text(encoding="utf-8")), encoding="utf-8")
    scenario.k.definitions.deploy([path], actor="owner")
    if case == "complaint_revisit":
        complaint.register(scenario)
        complaint.transfer(scenario, hours=1)
        complaint.handle_by_department(scenario)
        scenario.complete("feedback", "agent", {"satisfied": True})
    else:
        repair.register(scenario)
        repair.dispatch(scenario)
        scenario.complete("repair_work", "technician", {"repair_result": "已修复", "customer_cooperation_needed": False})
        scenario.complete("confirm_repair", "agent", {"satisfied": True})
    waiting = {t["bpmn_id"]: t["due_at"] for t in scenario.k.timers.waiting(scenario.instance_id)}
    assert waiting == {"wait_revisit": opens}
    scenario.base.clock.set(datetime.fromisoformat(opens) + timedelta(seconds=1))
    scenario.k.timers.fire_due()
    assert scenario.task("revisit")["due_at"] == closes


@pytest.fixture
def kefu_cli_json(kefu):
    """``kefu <args> --json`` in a process of its own, on the test's database and clock."""
    import os
    import subprocess
    import sys

    def run(*args):
        env = {**os.environ, "KEFU_DATABASE_URL": kefu.config.database_url, "KEFU_ENV": "test",
               "KEFU_CLOCK": kefu.now().isoformat()}
        done = subprocess.run([sys.executable, "-m", "engine.cli", *args, "--json"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    return run
