"""X2 shift handover in a real browser (Debian Chromium via Playwright; see tests/test_browser.py): at the end of
the day shift the day agent hands two open cases to the night agent, who takes them over from the inbox and
finds both among their own tasks; the supervisor sees the day's handover. Screenshots go to
test-artifacts/screenshots/handover-*.png."""
from __future__ import annotations

from tests.test_browser import PASSWORD, Desk, browser, server  # noqa: F401  (fixtures)
from tests.test_handover import two_open_cases


def test_x2_day_agent_hands_over_and_the_night_agent_takes_over(browser, server, kefu):  # noqa: F811
    a, b = two_open_cases(kefu)
    kefu.users.add("agent2", kefu.users.get("agent2")["roles"], password=PASSWORD)
    day = Desk(browser, server, "agent")
    try:
        page = day.page
        page.click("nav >> text=交接班")
        page.wait_for_url("**/handovers")
        page.click("#start-handover")
        page.wait_for_selector("form.handover-form")
        assert page.locator("form.handover-form tr[data-ticket]").count() == 2
        page.select_option("select[name=incoming]", "agent2")
        page.fill(f"textarea[name='note_{a.ticket_no}']", "客户要求书面道歉，已安抚")
        page.fill("textarea[name=note]", "夜间留意华东银行来电")
        day.shot("handover-start")
        page.click("#submit-handover")
        page.wait_for_url("**/handovers/*")
        assert "尚未接班" in page.locator(".signature.incoming").inner_text()
        assert page.locator("tr.item.case").count() == 2
        day.shot("handover-open")
    finally:
        day.close()

    night = Desk(browser, server, "agent2")
    try:
        page = night.page
        page.click(".handover-flag a")
        page.wait_for_selector("#accept-handover")
        assert "客户要求书面道歉，已安抚" in page.locator(f"tr.item.case[data-ticket='{a.ticket_no}']").inner_text()
        page.click("#accept-handover")
        page.wait_for_selector(".flash.success")
        assert page.locator("td.outcome", has_text="已接手").count() >= 4  # two cases and their two tasks
        assert "agent2" in page.locator(".signature.incoming").inner_text()
        night.shot("handover-accepted")
        night.goto("/inbox")
        mine = page.locator("#q-mine tbody tr")
        assert mine.count() == 2
        assert {a.ticket_no, b.ticket_no} <= set(page.locator("#q-mine").inner_text().split())
    finally:
        night.close()

    sup = Desk(browser, server, "supervisor")
    try:
        page = sup.page
        page.click("nav >> text=交接班")
        row = page.locator("tr.handover-row.accepted")
        assert row.count() == 1 and "agent2" in row.inner_text()
        page.click("text=English")
        page.wait_for_selector("text=All handovers of the day")
        sup.shot("handover-day-en")
    finally:
        sup.close()
    assert kefu.instances.show(a.ticket_no)["owner"] == kefu.instances.show(b.ticket_no)["owner"] == "agent2"
