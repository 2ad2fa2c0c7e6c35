"""The relationship care pages (RULES.md Q1–Q4) and the period summaries (004): who may open and change what,
the cycles the process owner edits, customer events with attendees and feedback, the summary with its charts
and CSV, in both languages; bad input is a clear 4xx."""
import csv
import io
import re

import pytest

from tests import test_complaint as complaint
from tests.factories import Scenario
from tests.webclient import Web


def test_q1_care_page_lists_the_waiting_revisit_and_the_owner_edits_the_cycles(kefu):
    c = kefu.customers.create({"name": "东方证券", "vip": True, "owner": "agent"})
    html = Web(kefu).login_as("agent").page("/care")
    assert "东方证券" in html and "定期回访" in html and 'href="/care"' in html
    assert 'name="vip"' not in html  # only the process owner edits the cycles
    owner = Web(kefu).login_as("owner")
    assert 'name="important"' in owner.page("/care")
    r = owner.post("/care/cycles", {"vip": "2", "important": "4"})
    assert r.status_code == 302
    assert {x["customer_class"]: x["months"] for x in kefu.care.cycles()} == {"vip": 2, "important": 4}
    r = owner.post("/care/cycles", {"vip": "99"})
    assert r.status_code == 303 and kefu.care.cycles()[0]["months"] == 2
    assert Web(kefu).login_as("agent").post("/care/cycles", {"vip": "1"}).status_code == 403
    assert Web(kefu).login_as("supervisor").post("/care/plan").status_code == 302
    assert c["id"]


def test_q1_customer_profile_edits_class_owner_consent_and_anniversary(kefu):
    c = kefu.customers.create({"name": "普通客户丙"})
    web = Web(kefu).login_as("agent")
    r = web.post(f"/customers/{c['id']}", {"name": "普通客户丙", "customer_class": "important", "owner": "agent2",
                                         "anniversary": "2020-06-18", "greeting_channel": "sms",
                                         "greeting_consent": "on"})
    assert r.status_code == 302
    got = kefu.customers.get(c["id"])
    assert (got["customer_class"], got["owner"], got["anniversary"], got["greeting_consent"]) == \
        ("important", "agent2", "2020-06-18", True)
    assert [i["owner"] for i in kefu.care.overview()["items"] if i["customer_id"] == c["id"]] == ["agent2"]
    r = web.post(f"/customers/{c['id']}", {"name": "普通客户丙", "anniversary": "2020-02-31"})
    assert r.status_code == 422 and "Traceback" not in r.get_data(as_text=True)


def test_q4_events_pages_add_invite_and_collect_feedback(kefu):
    a = kefu.customers.create({"name": "参会客户甲", "phone": "13812345678"})
    web = Web(kefu).login_as("agent")
    r = web.post("/events", {"name": "安全知识培训", "date": "2026-12-10", "place": "徐汇会议中心", "kind": "training"})
    assert r.status_code == 302
    ev_id = kefu.events.list()[0]["id"]
    html = web.page(f"/events/{ev_id}?q=参会")
    assert "参会客户甲" in html
    assert web.post(f"/events/{ev_id}/attendees", {"customer": str(a["id"])}).status_code == 302
    assert web.post(f"/events/{ev_id}/feedback", {"customer": str(a["id"]), "feedback": "很实用",
                                                  "score": "90"}).status_code == 302
    e = kefu.events.get(ev_id)
    assert e["attendees"][0]["feedback"] == "很实用" and e["mean_score"] == 90
    assert "很实用" in web.page(f"/events/{ev_id}") and "安全知识培训" in web.page("/events")
    bad = web.post("/events", {"name": "", "date": "x"})
    assert bad.status_code == 422
    assert web.post(f"/events/{ev_id}/feedback", {"customer": "abc"}).status_code == 400
    assert web.post(f"/events/{ev_id}/attendees", {"customer": "999999"}).status_code == 404
    assert web.get("/events/424242").status_code == 404
    assert Web(kefu).login_as("qa").post("/events", {"name": "x", "date": "2026-12-01"}).status_code == 403


def test_reports_page_charts_csv_and_access(kefu):
    Scenario(kefu).start("complaint", {"customer_name": "华东银行股份有限公司", "contact_phone": "021-63210000",
                                       "complaint_time": "2026-11-23T08:00:00+08:00", "place": "徐汇营业部",
                                       "content": "态度差", "nature": "service_attitude", "severity": "general"})
    web = Web(kefu).login_as("supervisor")
    html = web.page("/reports?period=month&at=2026-11-24")
    assert "2026-11" in html and html.count("<svg") == 2 and "徐汇营业部" in html and "服务态度" in html
    rows = list(csv.reader(io.StringIO(web.get("/reports.csv?period=quarter&at=2026-11-24").get_data(as_text=True)
                                       .lstrip("\ufeff"))))
    assert rows[0] == ["period", "section", "key", "value"] and ["2026-Q4", "by_kind", "complaint", "1"] in rows
    for url in ("/reports?period=week", "/reports?period=year"):
        assert web.get(url).status_code == 200
    assert web.get("/reports?period=decade").status_code == 400
    assert web.get("/reports?at=2026-13-01").status_code == 400
    assert Web(kefu).login_as("agent").get("/reports").status_code == 403
    web.get("/lang/en")
    html = web.page("/reports?period=month&at=2026-11-24")
    assert "Service summary" in html and not re.search(r"[\u4e00-\u9fff]", html.split("<main>")[1].replace("徐汇营业部", ""))


@pytest.mark.parametrize("url", ["/care", "/events"])
def test_care_pages_read_in_english(kefu, url):
    kefu.customers.create({"name": "Acme", "vip": True, "owner": "agent"})
    web = Web(kefu).login_as("owner")
    web.get("/lang/en")
    html = web.page(url)
    assert not re.search(r"[\u4e00-\u9fff]", html.split("<main>")[1]), url
