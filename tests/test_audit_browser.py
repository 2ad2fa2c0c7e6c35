"""Issue 6 in a real browser: an auditor finds an overdue ticket and reads its trace — the diagram shows the
path taken with completed, active, cancelled and timer-fired elements."""
from tests.test_browser import PASSWORD, SHOTS, Desk, browser, server  # noqa: F401 - fixtures
from tests.test_complaint import register, transfer


def test_auditor_searches_and_reads_a_trace(browser, server, kefu, scenario):  # noqa: F811
    register(scenario)
    transfer(scenario, hours=1)
    assert scenario.advance(hours=30)  # the department missed its deadline: redispatched, supervisor warned
    kefu.users.add("auditor", ["auditor"], password=PASSWORD)
    desk = Desk(browser, server, "auditor")
    try:
        desk.goto("/audit?overdue=1")
        assert desk.page.locator(".audit-results tbody tr").count() == 1
        desk.shot("audit-search")
        desk.page.click(f"text={scenario.ticket_no}")
        desk.page.wait_for_selector("#trace-diagram[data-rendered=true]")
        for marker, element in (("m-completed", "register"), ("m-active", "redispatch"),
                                ("m-cancelled", "department_handle"), ("m-timer", "timer_department_overdue")):
            assert desk.page.locator(f'g.djs-element.{marker}[data-element-id="{element}"]').count() == 1, marker
        text = desk.page.inner_text("main")
        assert "记录完整" in text and "P4" in text and "超时" in text and "complaint v1" in text
        desk.shot("audit-trace")
    finally:
        desk.close()
