"""Live pages in Chromium (issue 20): the supervisor with the inbox open sees (and, with the sound on, hears)
a major complaint the agent registers elsewhere within a few seconds, without reloading; the 待办 badge counts;
countdowns tick in the browser; the inbox works from the keyboard; screenshots in both languages at 1366 and
1100 px (test-artifacts/screenshots/live-*.png)."""
from __future__ import annotations

import threading
import time

import pytest
from werkzeug.serving import make_server

from webapp import create_app
from webapp.live import stop_streams

from tests.test_browser import PASSWORD, SHOTS, browser  # noqa: F401 - the browser fixture
from tests.test_complaint import register


@pytest.fixture
def server(kefu):
    for name in ("agent", "supervisor"):
        kefu.users.add(name, kefu.users.get(name)["roles"], password=PASSWORD)
    app = create_app({"SECRET_KEY": "browser-tests"}, kefu=kefu)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    stop_streams(app)
    srv.shutdown()
    thread.join(5)
    kefu.live.stop()


def desk(browser, base, name, width=1366, locale="zh-CN"):
    context = browser.new_context(locale=locale, timezone_id="Asia/Shanghai", viewport={"width": width, "height": 800})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/inbox")
    page.wait_for_selector("body[data-live-stream=on]")
    return context, page


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_supervisor_sees_and_hears_a_new_major_complaint_without_reloading(browser, server, scenario):
    context, page = desk(browser, server, "supervisor")
    try:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.click("#sound-toggle")  # off by default; the choice is kept in this browser
        assert page.locator("#sound-toggle").get_attribute("aria-pressed") == "true"
        sounded_before = int(page.locator("body").get_attribute("data-sounded") or 0)
        assert page.locator("#todo-badge").is_hidden()  # nothing waits yet
        page.evaluate("window.kefuMarker = 'same page'")
        began = time.monotonic()
        r = register(scenario, severity="major")  # the agent, elsewhere (the engine, not this browser)
        alert = page.locator(f'.live-alert.major_complaint[data-ticket="{r["ticket_no"]}"]')
        alert.wait_for(timeout=8000)
        assert time.monotonic() - began < 8
        assert "新的重大投诉" in alert.inner_text()
        row = page.locator(f'#q-supervisor tr[data-bpmn="form_taskforce"]', has_text=r["ticket_no"])
        row.wait_for(timeout=8000)
        page.wait_for_function("() => document.getElementById('todo-badge').textContent === '1'")
        assert page.locator("#todo-badge").is_visible()
        page.wait_for_function(f"() => (+document.body.getAttribute('data-sounded') || 0) > {sounded_before}")
        assert page.evaluate("window.kefuMarker") == "same page"  # updated in place, not reloaded
        for width in (1366, 1100):
            page.set_viewport_size({"width": width, "height": 800})
            shot(page, f"live-inbox-zh-{width}")
        # the preference survives a reload; other pages carry the badge and the alert until it is dismissed
        page.goto(server + "/customers")
        assert page.locator("#sound-toggle").get_attribute("aria-pressed") == "true"
        page.wait_for_function("() => document.getElementById('todo-badge').textContent === '1'")
        alert.wait_for()
        alert.locator("button").click()
        page.goto(server + "/inbox")
        page.wait_for_selector("body[data-live-stream=on]")
        assert page.locator(".live-alert").count() == 0
        assert errors == []
    finally:
        context.close()


def test_overdue_warning_alert_and_english_inbox(browser, server, scenario):
    from tests.test_complaint import transfer
    register(scenario)
    transfer(scenario, hours=6)
    context, page = desk(browser, server, "supervisor", locale="en-US")
    try:
        page.goto(server + "/lang/en?next=/inbox")
        page.wait_for_selector("body[data-live-stream=on]")
        scenario.advance(hours=6, seconds=1)  # the department's clock runs out: T1 warns the supervisor
        alert = page.locator(".live-alert.overdue")
        alert.wait_for(timeout=8000)
        assert "Overdue warning" in alert.inner_text() and scenario.ticket_no in alert.inner_text()
        page.locator('tr[data-bpmn="overdue_warning"]').first.wait_for(timeout=8000)
        for width in (1366, 1100):
            page.set_viewport_size({"width": width, "height": 800})
            shot(page, f"live-inbox-en-{width}")
        assert "待办" not in page.locator("header nav").inner_text()
    finally:
        context.close()


def test_countdowns_tick_in_the_browser(browser, server, scenario):
    from tests.test_complaint import transfer
    register(scenario)
    transfer(scenario, hours=6)
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1366, "height": 800})
    page = context.new_page()
    try:
        page.clock.install()
        page.goto(server + "/login")
        page.fill("#username", "supervisor")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/inbox")
        left = page.locator('#q-all tr[data-bpmn="department_handle"] .due .left')
        # the test's service clock stands still while this browser's runs: a second may have passed already
        assert left.inner_text() in ("剩余 6小时0分", "剩余 5小时59分")
        page.clock.run_for(5 * 60 * 1000)  # five minutes of this browser's time, the page untouched
        page.wait_for_function(  # (functions, not expressions: polling an expression needs eval, which the CSP forbids)
            "() => ['剩余 5小时55分', '剩余 5小时54分'].includes(document.querySelector("
            "'#q-all tr[data-bpmn=\"department_handle\"] .due .left').textContent)")
        page.clock.run_for(6 * 3600 * 1000)
        page.wait_for_function(
            "() => document.querySelector('#q-all tr[data-bpmn=\"department_handle\"] .due').classList.contains('overdue')")
        assert left.inner_text().startswith("已超时")
    finally:
        context.close()


def test_the_inbox_from_the_keyboard(browser, server, scenario, kefu):
    register(scenario)
    register(scenario, content="第二张投诉")
    for t in kefu.tasks.ready(actor="agent"):
        if t["assignee"] == "agent":
            kefu.tasks.unclaim(t["id"], "agent")
    context, page = desk(browser, server, "agent")
    try:
        rows = page.locator("#q-agent tr.task-row")
        assert rows.count() == 2
        page.keyboard.press("j")
        assert page.locator("tr.task-row.selected").count() == 1
        first = page.locator("tr.task-row.selected").get_attribute("data-task")
        page.keyboard.press("ArrowDown")
        second = page.locator("tr.task-row.selected").get_attribute("data-task")
        assert second != first
        page.keyboard.press("k")
        assert page.locator("tr.task-row.selected").get_attribute("data-task") == first
        page.keyboard.press("c")  # claim the selected task
        page.wait_for_load_state()
        page.locator(f'#q-mine tr[data-task="{first}"]').wait_for()
        assert kefu.tasks.get(first, actor="agent")["assignee"] == "agent"
        # after the claim the page came back: once its script listens again, j selects and Enter opens
        for _ in range(50):
            page.keyboard.press("j")
            if page.locator("tr.task-row.selected").count() == 1:
                break
            page.wait_for_timeout(100)
        page.keyboard.press("Enter")
        page.wait_for_url("**/tasks/*", timeout=20000)
    finally:
        context.close()


def test_a_task_page_says_when_its_task_changed_and_keeps_what_is_typed(browser, server, scenario, kefu):
    register(scenario)
    task = scenario.task("transfer")
    context, page = desk(browser, server, "agent")
    try:
        page.goto(server + f"/tasks/{task['id']}")
        page.wait_for_selector("body[data-live-stream=on]")
        page.fill("#f-handling_requirement", "调查并整改，三日内书面答复")
        kefu.tasks.reassign(task["id"], "supervisor", "agent2")  # the supervisor gives it to a colleague
        page.locator("#live-updated").wait_for(timeout=8000)
        assert "此页内容已有变化" in page.locator("#live-updated").inner_text()
        assert page.input_value("#f-handling_requirement") == "调查并整改，三日内书面答复"  # nothing lost
        history = page.locator('aside[data-live="side"]').inner_text()
        assert "改派任务" in history  # the side column (the ticket's history) was brought up to date
    finally:
        context.close()
