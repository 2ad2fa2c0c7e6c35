"""In Chromium: the pages, the diagram viewer and the modeler work under the Content-Security-Policy (no
violation reported anywhere), and intake drafts are kept per user and gone after logout."""
from __future__ import annotations

from tests.test_browser import PASSWORD, Desk, browser, server  # noqa: F401 - fixtures
from tests.test_complaint import register

WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  e => window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " " + e.sourceFile));
"""
DRAFT_KEYS = "Object.keys(localStorage).filter(k => k.startsWith('kefu-draft:'))"


def signed_in(browser, server, name: str) -> tuple[Desk, list]:
    desk = Desk.__new__(Desk)  # Desk signs in at once; the watcher must be in place before the first page
    desk.base, desk.name = server, name
    desk.context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
    desk.context.set_default_timeout(15_000)
    desk.context.add_init_script(WATCH_CSP)
    desk.page = desk.context.new_page()
    errors: list = []
    # Script errors and failed loads (by URL; the browser's own favicon request aside).
    desk.page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
                 and errors.append(m.text))
    desk.page.on("pageerror", lambda e: errors.append(str(e)))
    desk.page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")
                 and errors.append(f"{r.status} {r.url}"))
    desk.goto("/login")
    desk.page.fill("#username", name)
    desk.page.fill("#password", PASSWORD)
    desk.page.click("button[type=submit]")
    desk.page.wait_for_url("**/inbox")
    return desk, errors


def violations(desk) -> list:
    return desk.page.evaluate("window.__csp")


def test_pages_viewer_and_modeler_work_under_the_csp_and_drafts_end_at_logout(browser, server, kefu, scenario):
    register(scenario)
    for name, roles in (("agent2", ["agent"]), ("owner", ["process_owner"])):
        kefu.users.add(name, roles, password=PASSWORD)
    agent, errors = signed_in(browser, server, "agent")
    try:
        agent.goto("/new/complaint")
        agent.page.fill("#f-customer_name", "李先生")
        agent.page.fill("#f-contact_phone", "13800138000")
        assert agent.page.evaluate(DRAFT_KEYS) == ["kefu-draft:agent:intake-complaint"]
        assert not violations(agent)
        agent.goto(f"/instances/{scenario.ticket_no}")  # the bpmn-js viewer
        agent.page.wait_for_selector("#diagram[data-rendered=true]")
        assert not violations(agent)
        agent.page.click("#logout-form button")
        agent.page.wait_for_url("**/login")
        assert agent.page.evaluate(DRAFT_KEYS) == []
        agent.page.fill("#username", "agent2")  # the next person on this browser
        agent.page.fill("#password", PASSWORD)
        agent.page.click("button[type=submit]")
        agent.page.wait_for_url("**/inbox")
        agent.goto("/new/complaint")
        assert agent.page.input_value("#f-customer_name") == "" and agent.page.input_value("#f-contact_phone") == ""
        assert not violations(agent) and not errors, (violations(agent), errors)
    finally:
        agent.close()

    owner, errors = signed_in(browser, server, "owner")
    try:
        owner.goto("/designer/complaint")  # the modeler with its properties panel
        owner.page.wait_for_selector("#designer.ready")
        owner.page.click('#canvas [data-element-id="register"]')
        owner.page.wait_for_selector("#properties .bio-properties-panel-group-header")
        owner.goto("/definitions")
        assert not violations(owner) and not errors, (violations(owner), errors)
    finally:
        owner.close()

    supervisor, errors = signed_in(browser, server, "supervisor")
    try:
        for path in ("/kpi", "/kpi/2026-11/report", "/audit", f"/audit/{scenario.ticket_no}", "/security",
                     "/deadlines", "/overview"):
            supervisor.goto(path)
            supervisor.page.wait_for_load_state("networkidle")
        supervisor.page.wait_for_selector("#trace-diagram[data-rendered=true]", state="attached") \
            if supervisor.page.url.endswith(scenario.ticket_no) else None
        assert not violations(supervisor) and not errors, (violations(supervisor), errors)
    finally:
        supervisor.close()
