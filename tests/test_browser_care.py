"""The care pages in a real browser (Debian Chromium via Playwright; see tests/test_browser.py): a VIP customer's
periodic revisit (Q1) falls due a month after registration, the owning agent finds it on the care page, records
it, and the profile shows the result; the process owner edits the cycles; an event collects feedback (Q4).
Screenshots go to test-artifacts/screenshots/care-*.png."""
from __future__ import annotations

from datetime import datetime

from engine.clock import SHANGHAI
from tests.test_browser import PASSWORD, Desk, browser, server  # noqa: F401  (fixtures)


def test_q1_agent_works_the_revisit_from_the_care_page_and_the_owner_edits_the_cycle(browser, server, kefu, clock):  # noqa: F811
    c = kefu.customers.create({"name": "东方证券", "phone": "021-55550000", "vip": True, "owner": "agent"})
    clock.set(datetime(2026, 12, 23, 9, 0, 1, tzinfo=SHANGHAI))  # a month after registration, a Wednesday
    assert [f["timer"] for f in kefu.timers.fire_due()] == ["wait_cycle"]
    kefu.users.add("owner", ["process_owner"], password=PASSWORD)
    desk = Desk(browser, server, "agent")
    try:
        page = desk.page
        page.click("nav >> text=客户关怀")
        page.wait_for_selector("#care-items")
        row = page.locator('#care-items tr[data-care="revisit"]', has_text="东方证券")
        assert "待办理" in row.inner_text()
        desk.shot("care-overview")
        row.locator("a.button").click()
        page.wait_for_selector("form.task-form")
        assert "定期回访" in page.inner_text("h1")
        desk.fill(revisit_channel="phone", satisfaction_score="92", new_needs="增加周末巡检")
        desk.submit()
        desk.goto(f"/customers/{c['id']}")
        assert "92" in page.inner_text("#last-revisit")
        desk.shot("care-customer")
        desk.goto("/events")
        page.fill("#ev-name", "安全知识培训")
        page.fill("#ev-date", "2026-12-28")
        page.select_option("#ev-kind", "training")
        page.click("#event-form button[type=submit]")
        page.wait_for_selector("#attendees")
        page.fill("#find-q", "东方")
        page.click("form[method=get] button")
        page.check(f'#invite-form input[value="{c["id"]}"]')
        page.click("#invite-form button[type=submit]")
        page.wait_for_selector(f'#attendees tr[data-customer="{c["id"]}"]')
        page.fill(f'#attendees tr[data-customer="{c["id"]}"] input[name=feedback]', "内容实用")
        page.click(f'#attendees tr[data-customer="{c["id"]}"] button')
        page.wait_for_selector("#attendees >> text=内容实用")
        desk.shot("care-event")
    finally:
        desk.close()
    owner = Desk(browser, server, "owner")
    try:
        page = owner.page
        owner.goto("/care")
        page.fill("#cycle-important", "2")
        page.click("#care-cycles button[type=submit]")
        page.wait_for_selector(".flash")
        assert {x["customer_class"]: x["months"] for x in kefu.care.cycles()} == {"vip": 1, "important": 2}
        assert page.input_value("#cycle-important") == "2"
    finally:
        owner.close()
    assert kefu.customers.get(c["id"])["last_satisfaction"] == 92


def test_supervisor_reads_the_monthly_summary_with_its_charts_and_prints_it(browser, server, kefu):  # noqa: F811
    from tests import test_complaint as complaint
    from tests.factories import Scenario
    complaint.register(Scenario(kefu))
    desk = Desk(browser, server, "supervisor")
    try:
        page = desk.page
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.click("nav >> text=工作总结")
        page.wait_for_selector(".care-report")
        assert page.locator("svg.chart").count() == 2
        box = page.locator("svg.chart").first.bounding_box()
        assert box and box["width"] > 200
        assert "徐汇营业部" in page.inner_text("#report-places") and "服务态度" in page.inner_text("#report-natures")
        assert requests and all(u.startswith(server) for u in requests), requests
        page.click("text=季报")
        page.wait_for_url("**/reports?period=quarter*")
        assert "2026-Q4" in page.inner_text("h1")
        page.emulate_media(media="print")
        assert not page.locator("header.top").is_visible()
        desk.shot("care-report-print")
    finally:
        desk.close()
