"""Real browser tests: Debian's Chromium driven by Playwright against the app served in-process (a test
engine on a temporary SQLite database, the real diagrams, the pinned test clock).

Screenshots of every page go to test-artifacts/screenshots/. Without Chromium the tests are skipped with
the reason, except under CI (tests/ci.py), where they fail: CI must run them (scripts/install-browser.sh)."""
from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from webapp import create_app

from tests.ci import under_ci
from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "browser-test-pw"


def _no_browser(reason: str):
    if under_ci():
        pytest.fail(f"browser tests cannot run under CI: {reason} (scripts/install-browser.sh installs it)")
    pytest.skip(f"browser tests skipped: {reason}; run 'bash scripts/install-browser.sh' as root")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _no_browser(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a test dependency
        _no_browser("the playwright package is not installed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def server(kefu):
    """The app on 127.0.0.1 in a background thread, over the test engine; yields its base URL."""
    for name in ("agent", "supervisor", "taskforce1", "taskforce2"):
        user = kefu.users.get(name)
        kefu.users.add(name, user["roles"], password=PASSWORD)
    app = create_app({"SECRET_KEY": "browser-tests"}, kefu=kefu)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    thread.join(5)


class Desk:
    """One signed-in person in their own browser context."""

    def __init__(self, browser, base: str, name: str, login_shot: str | None = None):
        self.base, self.name = base, name
        self.context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai",
                                           viewport={"width": 1366, "height": 860})
        self.context.set_default_timeout(10_000)
        self.page = self.context.new_page()
        self.page.goto(base + "/login")
        self.page.fill("#username", name)
        self.page.fill("#password", PASSWORD)
        if login_shot:
            self.shot(login_shot)
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/inbox")

    def goto(self, path: str):
        self.page.goto(self.base + path)

    def shot(self, name: str):
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def open_task(self, bpmn_id: str):
        self.goto("/inbox")
        self.page.locator(f'.queue:not(#q-all) tr[data-bpmn="{bpmn_id}"] a[href^="/tasks/"]').first.click()
        self.page.wait_for_selector("form.task-form")

    def fill(self, **values):
        """Type into the form's fields by id; options of a select are chosen by their id."""
        for fid, value in values.items():
            target = f"#f-{fid}"
            if self.page.locator(f"select{target}").count():
                self.page.select_option(target, value)
            else:
                self.page.fill(target, value)

    def submit(self):
        self.page.click("form.task-form button[type=submit]")
        self.page.wait_for_load_state()

    def close(self):
        self.context.close()


def test_major_vip_complaint_from_intake_to_revisit(browser, server, kefu):
    """(a) P1–P9 in the browser: the agent registers a major complaint for a VIP customer found by phone;
    the supervisor names a task force; both members report; the supervisor consolidates; the agent records
    the customer's satisfaction; three working days later the revisit is in the agent's inbox."""
    agent = Desk(browser, server, "agent", login_shot="00-login")
    page = agent.page
    page.click("header nav >> text=新建投诉")
    page.wait_for_url("**/new/complaint")
    page.fill("#customer-q", "6321 0000")
    hit = page.locator("#customer-results li.hit", has_text="华东银行股份有限公司")
    hit.wait_for()
    assert hit.locator(".vip").is_visible()
    agent.shot("01-intake-lookup")
    hit.click()
    assert page.input_value("#f-customer_name") == "华东银行股份有限公司"
    assert page.input_value("#f-contact_phone") == "021*****0000"  # I4: no case of this customer yet
    assert page.locator("#chosen-vip .vip").is_visible()
    agent.fill(complaint_time="2026-11-23T08:50", place="徐汇营业部", content="夜班保安对来访客户态度恶劣，并拒绝登记。",
               customer_demand="书面道歉并说明整改措施", nature="service_attitude", severity="major")
    agent.shot("02-intake-filled")
    page.click("#intake-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/instances/TS20261123-\d{4}$"))
    ticket = page.url.rsplit("/", 1)[1]
    assert page.locator(".flash.success", has_text=ticket).is_visible()
    page.wait_for_selector('#diagram[data-rendered="true"]')
    assert page.locator('.djs-element.current[data-element-id="form_taskforce"]').count() == 1
    assert page.locator('.djs-element.done[data-element-id="register"]').count() == 1
    agent.shot("03-instance-after-intake")
    shown = kefu.instances.show(ticket)
    assert shown["vip"] and shown["severity"] == "major" and shown["customer"]["phone"] == "021-63210000"

    sup = Desk(browser, server, "supervisor")
    row = sup.page.locator('#q-supervisor tr[data-bpmn="form_taskforce"]')
    assert row.locator(".vip").is_visible() and row.locator(".sev.major").is_visible()
    sup.shot("04-supervisor-inbox")
    sup.open_task("form_taskforce")
    sup.page.check('input[name="task_force_members"][value="taskforce1"]')
    sup.page.check('input[name="task_force_members"][value="taskforce2"]')
    sup.page.fill("#f-handling_requirement", "调取监控，约谈当班保安，两天内提交调查结论。")
    sup.page.fill("#f-handling_deadline", "2026-11-25T18:00")
    sup.shot("05-form-taskforce")
    sup.submit()
    sup.page.wait_for_url("**/inbox")

    for member, finding in (("taskforce1", "监控显示保安言语不当"), ("taskforce2", "排班过长导致情绪失控")):
        tf = Desk(browser, server, member)
        tf.open_task("taskforce_investigate")
        tf.page.fill("#f-finding", finding)
        if member == "taskforce1":
            tf.shot("06-taskforce-investigate")
        tf.submit()
        tf.close()
    assert sorted(kefu.instances.show(ticket)["data"]["findings"]) == sorted(["监控显示保安言语不当", "排班过长导致情绪失控"])

    sup.open_task("consolidate")
    assert sup.page.locator("text=监控显示保安言语不当").count() >= 1  # earlier steps beside the form
    # P13: the accountability record
    sup.page.select_option("#f-acceptance", "accepted")
    sup.page.fill("#f-cause", "排班过长，当班保安情绪失控、言语不当")
    sup.page.select_option("#f-responsible_department", "security_ops")
    sup.page.select_option("#f-responsible_person", "department")
    sup.page.fill("#f-handling_result", "调整排班，当班保安停岗培训，主管上门致歉。")
    sup.page.fill("#f-corrective_action", "修订排班制度，每月服务规范培训")
    sup.submit()

    agent.goto("/inbox")  # X1: the agent who registered the complaint finds its feedback task in 我的工单
    mine = agent.page.locator(f'#q-cases tr[data-ticket="{ticket}"] .case-task[data-bpmn="feedback"]')
    assert mine.count() == 1 and "待认领" in mine.inner_text()
    mine.locator("a").click()
    agent.page.wait_for_selector("#f-customer_opinion")
    agent.page.check('input[name="satisfied"][value="true"]')
    agent.page.fill("#f-customer_opinion", "客户接受处理结果")
    agent.shot("07-feedback")
    agent.submit()
    agent.goto("/inbox")
    assert agent.page.locator('tr[data-bpmn="revisit"]').count() == 0

    kefu.clock.advance(timedelta(days=3, seconds=1))  # handled Monday → third working day, Thursday 09:00
    fired = kefu.timers.fire_due()
    assert [f["timer"] for f in fired] == ["wait_revisit"]
    agent.goto("/inbox")
    revisit = agent.page.locator('#q-mine tr[data-bpmn="revisit"]')  # X1: offered to the registering agent
    assert revisit.count() == 1 and ticket in revisit.inner_text()
    assert revisit.locator(".vip").is_visible()
    agent.shot("08-agent-inbox-revisit")
    agent.open_task("revisit")
    agent.shot("09-revisit-task")
    agent.goto(f"/instances/{ticket}")
    agent.page.wait_for_selector('#diagram[data-rendered="true"]')
    assert agent.page.locator('.djs-element.current[data-element-id="revisit"]').count() == 1
    agent.shot("10-instance-at-revisit")
    agent.page.click("header >> text=English")
    agent.page.wait_for_selector('html[lang="en"]')
    assert agent.page.locator("h2", has_text="Timeline").is_visible()
    agent.page.wait_for_selector('#diagram[data-rendered="true"]')
    agent.shot("11-instance-english")
    sup.close()
    agent.close()


def test_invalid_intake_loses_nothing(browser, server, kefu):
    """(b) A refused form keeps every typed value, shows the error beside its field and changes nothing."""
    agent = Desk(browser, server, "agent")
    page = agent.page
    agent.goto("/new/complaint")
    typed = {"customer_name": "周先生", "contact_phone": "136 0000 1234", "complaint_time": "2026-11-23T08:30",
             "place": "南京西路写字楼大堂", "customer_demand": "希望尽快回电", "severity": "urgent"}
    agent.fill(**typed)  # content (required) and nature (required) left empty
    page.reload()        # a reload (or a lost connection) keeps the draft in the browser
    assert {fid: page.input_value(f"#f-{fid}") for fid in typed} == typed
    page.click("#intake-form button[type=submit]")
    page.wait_for_selector(".field.invalid")
    assert page.locator('[data-field="content"] .err').inner_text() == "必填"
    assert page.locator('[data-field="nature"] .err').inner_text() == "必填"
    assert page.locator('[data-field="place"] .err').count() == 0
    assert {fid: page.input_value(f"#f-{fid}") for fid in typed} == typed
    agent.shot("12-intake-invalid")
    assert kefu.instances.recent() == [] and kefu.customers.find("周先生") == []
    # Fixing only the two fields is enough: everything else was kept.
    agent.fill(content="门禁卡无法刷开", nature="product")
    page.click("#intake-form button[type=submit]")
    page.wait_for_selector(".flash.success")
    [inst] = kefu.instances.recent()
    registered = kefu.instances.show(inst["instance_id"])["events"]
    data = next(e["data"] for e in registered if e["type"] == "task_completed")
    assert data["place"] == "南京西路写字楼大堂" and data["customer_demand"] == "希望尽快回电"
    agent.goto("/new/complaint")  # once accepted, the draft is gone: the next intake starts empty
    assert page.input_value("#f-customer_name") == "" and page.input_value("#f-place") == ""
    agent.close()
