"""The English interface is complete (issue 20): process names on 总览, 升级主管, the K5 reason's timer, the
404 page, notifications; CSV files downloaded from the pages carry headers in the reader's language (the
CLI's keep the column names; ``?columns=names`` gives them on the web)."""
from __future__ import annotations

import csv
import io
import re

from flask_babel import force_locale

from tests.test_complaint import register, transfer
from tests.webclient import Web

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def visible_text(html: str) -> str:
    html = re.sub(r"<script.*?</script>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", "\n", html)


def header(web, url) -> list[str]:
    r = web.get(url)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    return next(csv.reader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff"))))


def test_csv_headers_follow_the_pages_language(scenario, kefu):
    register(scenario)
    web = Web(kefu).login_as("auditor")
    assert header(web, "/audit/export.csv")[:3] == ["实例编号", "工单号", "类型"]
    assert header(web, f"/audit/{scenario.ticket_no}.csv")[:4] == ["工单号", "序号", "时间", "事件"]
    assert header(web, "/kpi/2026-11.csv")[:3] == ["月份", "范围", "指标"]
    assert header(web, "/audit/export.csv?columns=names")[:3] == ["instance_id", "ticket_no", "kind"]
    web.get("/lang/en")
    assert header(web, "/audit/export.csv")[:3] == ["Instance ID", "Ticket no.", "Kind"]
    assert header(web, f"/audit/{scenario.ticket_no}.csv")[1:4] == ["Seq.", "Time", "Event"]
    assert header(web, "/kpi/2026-11/lineage.csv")[:2] == ["Month", "KPI"]


def test_english_pages_leave_no_chinese_of_their_own(scenario, kefu):
    register(scenario, severity="major")
    major = scenario.ticket_no
    register(scenario)
    transfer(scenario, hours=6)
    scenario.advance(hours=6, seconds=1)
    web = Web(kefu).login_as("supervisor")
    web.get("/lang/en")
    data = {"华东银行", "保安值班时态度恶劣", "徐汇营业部", "书面道歉", "上海", "调查并整改", "张伟", "王敏", "孙丽",
            "周杰", "刘强", "郑洁", "何平", "陈刚", "赵磊", "吴芳", "李娜", "中文", "重点客户"}  # customers' and people's words
    for url in ("/inbox", "/overview", f"/instances/{major}", f"/instances/{scenario.ticket_no}", "/audit",
                f"/audit/{major}", "/notifications", "/notifications/outbox", "/deadlines", "/nothing-here"):
        r = web.get(url)
        left = [line.strip() for line in visible_text(r.get_data(as_text=True)).splitlines()
                if CHINESE.search(line) and not any(d in line for d in data)]
        assert left == [], (url, left)
    overview = web.page("/overview")
    assert "Escalation to the supervisor" in overview and "升级主管" not in overview


def test_the_404_page_speaks_the_readers_language_only(kefu):
    web = Web(kefu).login_as("agent")
    zh = web.get("/no-such-page").get_data(as_text=True)
    assert "找不到" in zh and "The requested URL" not in zh
    web.get("/lang/en")
    en = web.get("/no-such-page").get_data(as_text=True)
    main = visible_text(en.split("<main>")[1])
    assert "The requested URL" not in en and "does not exist" in main and not CHINESE.search(main), main


def test_k5_reasons_name_the_timer_not_its_id(kefu):
    from webapp.kpi import reason_text
    app = Web(kefu).app
    reason = "department deadline overran (timer_response_overdue), answer re-dispatched (T1)"
    with app.test_request_context():
        with force_locale("zh"):
            assert reason_text(reason) == "部门超时（响应超时），已改派后答复（T1）"
        with force_locale("en"):
            text = reason_text(reason)
    assert "timer_response_overdue" not in text and "Response overdue" in text, text
