"""The KPI dashboard in a real browser (Debian Chromium via Playwright; see tests/test_browser.py): the seeded
month of tests/test_kpi.py, its tiles and server-drawn charts, a figure opened onto its tickets, and the
monthly report as it prints. Screenshots go to test-artifacts/screenshots/kpi-*.png."""
from __future__ import annotations

from tests.test_browser import Desk, browser, server  # noqa: F401  (fixtures)
from tests.test_kpi import seed_month


def test_supervisor_reads_the_dashboard_opens_a_figure_and_prints_the_report(browser, server, kefu):  # noqa: F811
    t = seed_month(kefu)
    desk = Desk(browser, server, "supervisor")
    try:
        page = desk.page
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.click("nav >> text=考核指标")
        page.wait_for_selector(".kpi-grid")
        assert page.url.endswith("/kpi")  # the running month (December) at first
        page.fill("input[name=month]", "2026-11")
        page.click(".kpi-controls button")
        page.wait_for_url("**/kpi?month=2026-11*")
        tiles = page.locator(".kpi-tile")
        assert tiles.count() == 8
        k1 = page.locator(".kpi-tile", has_text="K1")
        assert "66.67%" in k1.inner_text() and "below" in k1.get_attribute("class")
        # the charts are drawn and visible: 8 trend lines and 8 bar charts, each with a real size
        charts = page.locator("svg.chart")
        assert charts.count() == 16
        box = charts.first.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 80
        assert page.locator("svg.chart polyline, svg.chart circle").count() >= 7  # November's points
        # nothing fetched from elsewhere: every request went to the app itself
        assert requests and all(u.startswith(server) for u in requests), requests
        desk.shot("kpi-dashboard")

        k1.click()
        page.wait_for_url("**/kpi/2026-11/K1")
        rows = page.locator("table.tasks").first.locator("tbody tr")
        assert rows.count() == 3 and page.locator("tr.overdue").count() == 1
        assert "部门超时" in page.locator("tr.overdue").inner_text()
        desk.shot("kpi-lineage-K1")
        page.click(f"a:text('{t['c_late'].ticket_no}')")
        page.wait_for_url(f"**/instances/{t['c_late'].ticket_no}")

        desk.goto("/kpi/2026-11/report")
        page.wait_for_selector(".kpi-report")
        # the department, five departments (K-who roll-up: customer service, finance, sales, security_ops,
        # technician), the six people who held clocks or opened tickets, the verified complaints per
        # responsible person (P13) and the scoring rules
        assert page.locator("section.card h2").count() == 14
        assert page.locator("section#p13").is_visible()
        page.emulate_media(media="print")
        assert not page.locator("header.top").is_visible() and not page.locator("button.no-print").is_visible()
        desk.shot("kpi-report-print")
    finally:
        desk.close()
