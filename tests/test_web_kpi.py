"""The KPI pages (RULES.md K1–K8, K-cycle, K-score, QA): dashboard with server-drawn SVG charts, the tickets behind
each figure, the printable monthly assessment, CSV export, and who may read or change what."""
import csv
import io
import re
from datetime import timedelta

import pytest

from tests.conftest import from_snapshot
from tests.test_kpi import consultation, seed_month
from tests.webclient import Web

READERS = ("supervisor", "owner", "auditor", "qa")
OTHERS = ("agent", "agent2", "department", "technician", "taskforce1")


@pytest.fixture
def month(request, kefu):
    return kefu, from_snapshot(request, kefu, "kpi-month", seed_month)  # the clock ends on 1 December 00:10


def test_dashboard_shows_the_eight_figures_with_target_score_and_charts(month):
    kefu, t = month
    html = Web(kefu).login_as("supervisor").page("/kpi?month=2026-11")
    for key, name in (("K1", "咨询响应及时率"), ("K2", "投诉处理率"), ("K3", "客户满意度"), ("K4", "信息录入准确率"),
                      ("K5", "工单处理及时率"), ("K6", "回访率"), ("K7", "派工准确率"), ("K8", "30分钟响应率")):
        assert f'href="/kpi/2026-11/{key}"' in html and name in html
    # the figures computed by hand in tests/test_kpi.py, with target, score and colour
    assert re.search(r'kpi-tile below" href="/kpi/2026-11/K1">.*?66\.67%.*?≥ 95%.*?70\.18.*?2 / 3.*?1 张未计入',
                     html, re.S)
    assert re.search(r'kpi-tile met" href="/kpi/2026-11/K2">.*?100\.00%.*?≥ 100%.*?100\.00.*?3 / 3', html, re.S)
    # K3 83.75 < 90: no score (K-score, 002 第九条.3)
    assert re.search(r'kpi-tile zero" href="/kpi/2026-11/K3">.*?83\.75.*?≥ 90.*?0\.00.*?不得分.*?4 次回访', html, re.S)
    assert re.search(r'kpi-tile none" href="/kpi/2026-11/K4">.*?—.*?无数据', html, re.S)
    assert re.search(r'kpi-tile met" href="/kpi/2026-11/K8">.*?85\.71%.*?≥ 70%.*?100\.00', html, re.S)
    assert "整月数据（未保存）" in html and "10 张工单" in html and "考核标准 v1" in html
    # 8 trend charts + 8 per-agent charts, drawn inline: no script, nothing fetched
    assert html.count('<svg class="chart"') == 16 and "<script" not in html.split("<main")[-1].split("</main>")[0]
    assert "<title>K1 咨询响应及时率</title>" in html
    bars = html.split("各责任人对比")[1]
    assert ">agent</text>" in bars and ">agent2</text>" in bars and ">75</text>" in bars  # agent2's K3
    # the per-agent view
    html = Web(kefu).login_as("qa").page("/kpi?month=2026-11&agent=agent2")
    assert re.search(r'kpi-tile zero" href="/kpi/2026-11/K3\?agent=agent2">.*?75\.00.*?0\.00.*?不得分', html, re.S)


def test_lineage_lists_counted_and_excluded_tickets_with_reasons_and_links(month):
    kefu, t = month
    web = Web(kefu).login_as("auditor")
    html = web.page("/kpi/2026-11/K1")
    counted, excluded = html.split("未计入的工单")[0], html.split("未计入的工单")[1]
    assert "计入的工单 (3)" in counted and "未计入的工单 (1)" in html
    for name in ("c_spot", "c_ok", "c_late"):
        assert f'href="/instances/{t[name].ticket_no}"' in counted
    assert f'href="/instances/{t["c_open"].ticket_no}"' in excluded
    assert "✗ 未达成" in counted and "分子 2 ÷ 分母 3" in html and "K1, C6" in html
    assert "当场答复（C2）" in counted and "部门超时（响应超时），已改派后答复（T1）" in counted
    assert "月底仍在处理，尚未到承诺回复时间" in excluded
    html = web.page("/kpi/2026-11/K7")  # the routing story, one reason per step
    assert "finance 未接单，改派给 sales" in html and "派给 technician，已接单；technician 已接单，超时后改派给 technician2" in html
    html = web.page("/kpi/2026-11/K2")
    assert "客户退回后经 2 轮处理，客户满意（P8、P11）" in html
    html = web.page("/kpi/2026-11/K3?agent=agent")
    assert "92.50" in html and "评分合计 185 ÷ 回访 2 次" in html
    # every ticket link opens
    no = t["p_again"].ticket_no
    assert no in web.login_as("supervisor").page(f"/instances/{no}")


def test_the_printable_report_and_the_csv_agree_with_the_figures(month):
    kefu, t = month
    web = Web(kefu).login_as("owner")
    html = web.page("/kpi/2026-11/report")
    assert "客服部月度考核 · 2026-11" in html and "data-print" in html and 'class="no-print"' in html
    assert "责任人 agent" in html and "责任人 agent2" in html and "66.67%" in html and "2 / 3" in html
    assert "部门 客服部" in html and "考核标准 v1" in html
    r = web.get("/kpi/2026-11.csv?columns=names")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment; filename=kpi-2026-11.csv" == r.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff"))))
    # the department, six people who held clocks or opened tickets, five departments (K-who roll-up)
    assert len(rows) == 8 * 12
    k1 = next(x for x in rows if x["scope"] == "department" and x["kpi"] == "K1")
    assert (k1["numerator"], k1["denominator"], k1["value"], k1["target"], k1["score"]) == \
        ("2", "3", "66.67", "95.0", "70.18")
    k4 = next(x for x in rows if x["scope"] == "department" and x["kpi"] == "K4")
    assert (k4["value"], k4["score"]) == ("", "")
    # the tickets behind every figure
    r = web.get("/kpi/2026-11/lineage.csv?columns=names")
    assert r.status_code == 200 and r.headers["Content-Disposition"] == "attachment; filename=kpi-2026-11-lineage.csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True).lstrip("\ufeff"))))
    k1 = {(x["ticket_no"], x["counted"], x["outcome"]) for x in rows if x["kpi"] == "K1"}
    assert k1 == {(t["c_spot"].ticket_no, "yes", "met"), (t["c_ok"].ticket_no, "yes", "met"),
                  (t["c_late"].ticket_no, "yes", "missed"), (t["c_open"].ticket_no, "no", "")}
    k3 = {x["ticket_no"]: x["outcome"] for x in rows if x["kpi"] == "K3" and x["counted"] == "yes"}
    assert k3 == {t["p_ok"].ticket_no: "95.0", t["p_again"].ticket_no: "80.0", t["r_pause"].ticket_no: "90.0",
                  t["r_late"].ticket_no: "70.0"}
    assert next(x for x in rows if x["ticket_no"] == t["c_open"].ticket_no)["reason"].startswith("still open")


def test_supervisor_stores_the_month_and_the_dashboard_says_so(month):
    kefu, _t = month
    web = Web(kefu).login_as("qa")
    assert web.post("/kpi/2026-11/store").status_code == 403 and kefu.kpi.stored("2026-11") is None
    web.login_as("supervisor")
    r = web.post("/kpi/2026-11/store", follow_redirects=True)
    html = r.get_data(as_text=True)
    assert "2026-11 月度考核已计算并保存" in html and "已保存的月度考核" in html
    assert kefu.kpi.stored("2026-11")["computed_by"] == "supervisor"
    r = web.post("/kpi/2026-12/store", follow_redirects=True)  # December is not over
    assert "考核未保存" in r.get_data(as_text=True) and kefu.kpi.stored("2026-12") is None


def test_the_owner_sets_the_sample_size_and_qa_draws_the_sample(kefu):
    for _ in range(3):
        consultation(kefu, "agent", True)
    kefu.clock.advance(timedelta(days=8))  # 1 December
    web = Web(kefu).login_as("supervisor")
    assert web.post("/kpi/qa-sample-size", {"size": "2"}).status_code == 403 and kefu.kpi.sample_size() == 10
    web.login_as("owner")
    for bad in ("", "0", "abc", "100000", "2.5"):
        r = web.post("/kpi/qa-sample-size", {"size": bad, "month": "2026-11"}, follow_redirects=True)
        assert r.status_code == 200 and "抽样数量未修改" in r.get_data(as_text=True) and kefu.kpi.sample_size() == 10
    r = web.post("/kpi/qa-sample-size", {"size": "2", "month": "2026-11"}, follow_redirects=True)
    assert "每月质检抽样数量设为 2" in r.get_data(as_text=True) and kefu.kpi.sample_size() == 2
    assert web.login_as("auditor").post("/kpi/2026-11/qa-sample").status_code == 403
    r = web.login_as("qa").post("/kpi/2026-11/qa-sample", follow_redirects=True)
    html = r.get_data(as_text=True)
    sample = kefu.kpi.qa_sample_of("2026-11")
    assert "已抽取 2 张工单交质检" in html and sample["ticket_no"] in html
    r = web.post("/kpi/2026-11/qa-sample", follow_redirects=True)  # only once a month
    assert "未抽样" in r.get_data(as_text=True)
    # QA scores each sampled ticket on its task page, which names the ticket
    for expected in kefu.instances.show(sample["instance_id"])["data"]["sample"]:
        task = next(x for x in kefu.tasks.ready(actor="qa") if x["bpmn_id"] == "qa_review")
        html = web.page(f"/tasks/{task['id']}")
        assert re.search(r'id="f-sampled_ticket" value="%s" disabled' % expected, html)
        r = web.post(f"/tasks/{task['id']}", {"entry_accurate": "true", "service_quality": "88", "qa_notes": ""})
        assert r.status_code == 302
    assert kefu.instances.show(sample["instance_id"])["status"] == "completed"
    assert kefu.kpi.live("2026-12")["department"]["K4"]["value"] == 100.0


@pytest.mark.parametrize("who", READERS)
def test_readers_open_every_page(kefu, who):
    web = Web(kefu).login_as(who)
    for url in ("/kpi", "/kpi?month=2026-10", "/kpi?month=1900-01", "/kpi?month=9998-12&agent=", "/kpi/2026-11/K5",
                "/kpi/2026-11/report", "/kpi/2026-11.csv", "/kpi/2026-11/lineage.csv"):
        assert web.get(url).status_code == 200, url
    assert 'href="/kpi"' in web.page("/deadlines")  # the nav link


@pytest.mark.parametrize("who", OTHERS)
def test_other_roles_are_refused_everywhere(kefu, who):
    web = Web(kefu).login_as(who)
    for url in ("/kpi", "/kpi/2026-11/K5", "/kpi/2026-11/report", "/kpi/2026-11.csv", "/kpi/2026-11/lineage.csv"):
        assert web.get(url).status_code == 403, url
    for url in ("/kpi/2026-10/store", "/kpi/2026-10/qa-sample", "/kpi/qa-sample-size"):
        assert web.post(url, {"size": "3"}).status_code == 403, url
    assert 'href="/kpi"' not in web.page("/deadlines")
    assert kefu.kpi.stored("2026-10") is None and kefu.kpi.sample_size() == 10


def test_signed_out_visitors_are_sent_to_login(kefu):
    r = Web(kefu).get("/kpi")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


@pytest.mark.parametrize("url, status", [
    ("/kpi?month=2026-13", 400), ("/kpi?month=abc", 400), ("/kpi?month=" + "9" * 5000, 400),
    ("/kpi/2026-11/K9", 404), ("/kpi/2026-11/" + "K" * 300, 404), ("/kpi/nonsense/K1", 400),
    ("/kpi/0000-01/report", 400), ("/kpi/2026-00.csv", 400), ("/kpi?month=2026-11&agent=nobody", 404),
    ("/kpi/2026-11/K1?agent=nobody", 404),
])
def test_bad_input_gets_a_clear_error(kefu, url, status):
    r = Web(kefu).login_as("supervisor").get(url)
    assert r.status_code == status and "Traceback" not in r.get_data(as_text=True)


def test_the_dashboard_reads_in_english(month):
    kefu, _t = month
    web = Web(kefu).login_as("supervisor")
    web.get("/lang/en")
    html = web.page("/kpi?month=2026-11")
    assert "Consultation response timeliness" in html and "Monthly trend" in html and "Export CSV" in html
    assert "咨询响应及时率" not in html
    html = web.page("/kpi/2026-11/K7")  # the reasons too
    assert "routed to technician, accepted; technician accepted, re-dispatched to technician2 when overdue" in html
    assert "Counted tickets (8)" in html and not re.search(r"[\u4e00-\u9fff]", html.split("<main>")[1])
