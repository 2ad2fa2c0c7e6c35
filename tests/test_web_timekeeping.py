"""The deadlines page: the SLA table in force, the working-day calendar the process owner edits (T2), and the
demo/test clock a supervisor moves forward to watch timers fall due."""
import pytest

from engine.calendar import CalendarDataMissing
from tests import test_repair as repair
from tests.webclient import Web


def test_everyone_reads_the_sla_table_and_the_calendar(kefu):
    html = Web(kefu).login_as("technician").page("/deadlines")
    assert "时限标准" in html and "v1" in html and "VIP 客户故障" in html and "20 分钟" in html
    assert "国家法定节假日与调休" in html and "缺少官方日历" in html   # 2026 known, 2027 not yet
    assert 'action="/calendar"' not in html and 'action="/clock/advance"' not in html


def test_the_process_owner_overrides_a_day_and_nobody_else_can(kefu):
    web = Web(kefu)
    r = web.login_as("supervisor").post("/calendar", {"day": "2027-01-01", "kind": "off", "note": "元旦"})
    assert r.status_code == 403 and kefu.time.calendar_days() == []
    web.login_as("owner")
    r = web.post("/calendar", {"day": "2027-01-01", "kind": "off", "note": "元旦"}, follow_redirects=True)
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "2027-01-01 现在是休息日" in html and "流程负责人录入的日历" in html
    assert [(d["day"], d["working"], d["updated_by"]) for d in kefu.time.calendar_days()] == [("2027-01-01", False, "owner")]
    assert kefu.time.add_working_days("2026-12-31", 1)["due_at"] == "2027-01-04T09:00:00+08:00"
    r = web.post("/calendar", {"day": "2027-02-30", "kind": "off"}, follow_redirects=True)
    assert "日历未修改" in r.get_data(as_text=True) and len(kefu.time.calendar_days()) == 1
    with pytest.warns(CalendarDataMissing):   # 2027 is back to the weekday rule, and says so
        web.post("/calendar", {"day": "2027-01-01", "kind": "clear"})
    assert kefu.time.calendar_days() == []


def test_the_supervisor_moves_the_demo_clock_and_overdue_work_orders_fire(scenario, kefu):
    repair.register(scenario)
    repair.dispatch(scenario, accept=False)
    web = Web(kefu).login_as("supervisor")
    assert "演示时间 2026-11-23 09:00" in web.page("/inbox")
    assert web.login_as("technician").post("/clock/advance", {"step": "1h"}).status_code == 403
    r = web.login_as("supervisor").post("/clock/advance", {"step": "1h"}, follow_redirects=True)
    assert "触发了 1 个定时器" in r.get_data(as_text=True)
    assert {t["bpmn_id"] for t in scenario.ready()} == {"redispatch", "overdue_warning"}
    assert web.post("/clock/advance", {"step": "100y"}).status_code == 302
    assert kefu.time.clock_status()["offset_seconds"] == 3600


def test_production_has_no_clock_controls(kefu):
    from engine import Config, Kefu
    prod = Kefu(Config(database_url=kefu.config.database_url, env="production"), database=kefu.db)
    web = Web(prod).login_as("supervisor")
    html = web.page("/deadlines")
    assert "演示时钟" not in html and "演示时间" not in html
    r = web.post("/clock/advance", {"step": "1d"}, follow_redirects=True)
    assert "时钟只能在演示和测试环境中调整" in r.get_data(as_text=True)


def test_the_sla_table_reads_in_english_too(kefu):
    web = Web(kefu).login_as("supervisor")
    web.get("/lang/en")
    html = web.page("/deadlines")
    assert "SLA targets" in html and "VIP customer fault (002 art. 19)" in html and "Demo clock" in html


def test_the_timeline_names_each_clock_and_its_deadline(scenario, kefu):
    repair.register(scenario)
    repair.dispatch(scenario, accept=False)
    html = Web(kefu).login_as("supervisor").page(f"/instances/{scenario.ticket_no}?trail=audit")  # the full trail
    assert "响应时限 → 2026-11-23 09:30" in html and "完成时限 → 2026-11-24 09:00" in html
