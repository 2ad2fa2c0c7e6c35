"""A day's journeys at the desk counted in page loads and clicks, by driving the real web UI in headless Chromium.

Three journeys, each walked by the people who do it in real life, each signed in with their inbox open
since the morning (signing in is not counted):

  consultation  a consultation answered on the spot: the agent registers it with the answer and records the
                customer's satisfaction; the ticket is closed.
  complaint     a major complaint as far as one day goes: the agent registers it, the supervisor names the
                task force, both members report their findings, the supervisor consolidates the result, the
                agent tells the customer and records the satisfaction. The journey ends there: the ticket
                waits for the revisit three working days later (a timer, not a person).
  repair        an emergency repair: the agent registers it and dispatches the technician at once, the
                supervisor acknowledges the emergency notice, the technician accepts the order and reports
                the repair, the agent confirms the result with the customer; the ticket waits for its revisit.

What is counted, the same way in every version:
  page loads  every full page load of any of these people (a link followed, a form posted and its
              redirect, a reload); updates a live page makes in place are not page loads;
  clicks      every click and key press that is not typing text: a link, a button, a radio button or a
              check box is one, choosing from a drop-down list two (open it, choose), F5 to reload one;
  typed       the text fields a person types into; a field the page already filled in (a default or a
              value carried over from an earlier step) that is right as it stands is not typed.
Each person takes the fewest steps the UI allows: a task is opened from the inbox; a task that is not
there yet is seen by waiting when the inbox updates itself (live pages), else by reloading it; a person on
another page goes back with 待办 first. The fields filled are the required ones, plus the answer of an
on-the-spot consultation and the scale of an emergency (which the earlier version did not require but
a real agent types all the same).

    python bench/journeys.py                        # the current checkout, on a throw-away database
    python bench/journeys.py --checkout ../wt-old   # another checkout (e.g. 789c80b), same Python
    python bench/journeys.py --base-url http://127.0.0.1:5000   # a running server with the demo users,
                                                    # started with KEFU_ENV=demo KEFU_CLOCK=2026-11-23T09:00:00+08:00

Selectors: the same set works against this version and the earlier one (789c80b): the nav links by their
address (/inbox, /new/<kind>), the customer lookup (#customer-q, #customer-results li.hit), the form fields
by id (#f-<field>) and name, the intake's and the task's submit buttons (#intake-form / form.task-form),
the inbox rows by tr[data-bpmn] inside .queue sections. The one difference, whether a page is live, is
read from the page (body[data-live-stream=on], absent before).
"""
from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]  # bench/http.py would hide the standard library's http package

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from contextlib import closing  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
PASSWORD = "kefu-demo"
NOW = "2026-11-23T09:00:00+08:00"  # a Monday, 09:00 in Shanghai: the day the journeys take place
LIVE_WAIT_MS = 15_000

# The customers the agent finds by phone (demo data of both versions).
VIP_PHONE, HOME_PHONE = "021-63210000", "13800138000"

JOURNEYS = {
    "consultation": ["agent: 新建咨询, find the customer, type the question and answer, answered on the spot",
                     "agent: the customer is satisfied (确认满意度), ticket closed"],
    "complaint": ["agent: 新建投诉, find the customer, register a major complaint",
                  "supervisor: sees it in the inbox, names the task force, requirement, deadline",
                  "taskforce1: sees the investigation, reports a finding",
                  "taskforce2: sees the investigation, reports a finding",
                  "supervisor: sees the consolidation, records the result",
                  "agent: back to the inbox, tells the customer, records satisfied; waits for the revisit"],
    "repair": ["agent: 新建报修, find the customer, register an emergency with its scale",
               "agent: emergency dispatch (technician, requirement, arrival time)",
               "supervisor: sees the emergency notice, acknowledges it",
               "technician: sees the order, accepts it with the expected arrival",
               "technician: reports the repair (no customer cooperation needed)",
               "agent: sees the confirmation, customer satisfied; waits for the revisit"],
}


class Tally:
    def __init__(self):
        self.loads = self.clicks = self.typed = 0
        self.counting = False

    def load(self):
        if self.counting:
            self.loads += 1


class Person:
    """One signed-in person in their own browser context, every action counted."""

    def __init__(self, browser, base: str, name: str, tally: Tally):
        self.base, self.name, self.tally = base, name, tally
        self.context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai",
                                           viewport={"width": 1366, "height": 860})
        self.context.set_default_timeout(20_000)
        self.page = self.context.new_page()
        self.page.on("load", lambda _page: tally.load())
        self.page.goto(base + "/login")
        self.page.fill("#username", name)
        self.page.fill("#password", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/inbox")
        self.page.wait_for_load_state("load")

    # ---- counted actions
    def click(self, selector_or_locator, navigates: bool = False):
        target = self.page.locator(selector_or_locator) if isinstance(selector_or_locator, str) \
            else selector_or_locator
        self.tally.clicks += 1
        if navigates:
            with self.page.expect_navigation(wait_until="load"):
                target.first.click()
        else:
            target.first.click()

    def reload(self):
        self.tally.clicks += 1  # F5
        self.page.reload(wait_until="load")

    def fill(self, **values):
        """Fill the form's fields that exist in this version; a text field already holding a value is kept."""
        page = self.page
        for fid, value in values.items():
            if isinstance(value, (list, tuple)):  # check boxes (users)
                for v in value:
                    box = page.locator(f'input[name="{fid}"][value="{v}"]')
                    if box.count() and not box.is_checked():
                        self.tally.clicks += 1
                        box.check()
                continue
            if page.locator(f"select#f-{fid}").count():
                if page.input_value(f"#f-{fid}") != value:
                    self.tally.clicks += 2
                    page.select_option(f"#f-{fid}", value)
                continue
            radio = page.locator(f'input[type=radio][name="{fid}"][value="{value}"]')
            if radio.count():
                if not radio.is_checked():
                    self.tally.clicks += 1
                    radio.check()
                continue
            field = page.locator(f"#f-{fid}")
            if field.count() and not page.input_value(f"#f-{fid}"):
                self.tally.typed += 1
                page.fill(f"#f-{fid}", value)

    # ---- steps made of counted actions
    def go_inbox(self):
        if not self.page.url.split("?")[0].endswith("/inbox"):
            self.click('header nav a[href="/inbox"]', navigates=True)

    def open_task(self, bpmn_id: str, ticket: str):
        """From wherever this person is: to the inbox, wait for the task (live) or reload, open it."""
        self.go_inbox()
        row = self.page.locator(f'.queue:not(#q-all) tr[data-bpmn="{bpmn_id}"]', has_text=ticket)
        if not row.count():
            if self.page.locator("body[data-live-stream=on]").count():
                row.first.wait_for(timeout=LIVE_WAIT_MS)
            else:
                self.reload()
        self.click(row.first.locator('a[href^="/tasks/"]'), navigates=True)
        self.page.wait_for_selector("form.task-form")

    def submit_task(self):
        self.click("form.task-form button[type=submit]", navigates=True)
        if self.page.locator(".field.invalid, .flash.error").count():
            raise SystemExit(f"{self.name}: the form was refused: {self.page.locator('main').inner_text()[:800]}")

    def intake(self, kind: str, phone: str, **values) -> str:
        self.go_inbox()
        self.click(f'header nav a[href="/new/{kind}"]', navigates=True)
        self.tally.typed += 1
        self.page.fill("#customer-q", phone)
        hit = self.page.locator("#customer-results li.hit").first
        hit.wait_for()
        self.click(hit)
        self.fill(**values)
        self.click("#intake-form button[type=submit]", navigates=True)
        if self.page.locator(".field.invalid").count():
            raise SystemExit(f"{kind}: the intake was refused")
        return ticket_of(self.page)

    def close(self):
        self.context.close()


def at(days: int, hour: int) -> str:
    """A date-time field's value ``days`` after the journeys' day, at ``hour`` o'clock."""
    from datetime import date, timedelta
    d = date.fromisoformat(NOW[:10]) + timedelta(days=days)
    return f"{d.isoformat()}T{hour:02d}:00"


def ticket_of(page) -> str:
    import re
    m = re.search(r"\b([A-Z]{2}\d{8}-\d{4})\b", page.locator("body").inner_text())
    return m[1]


def consultation(people):
    agent = people["agent"]
    agent.intake("consultation", HOME_PHONE, channel="phone", question="报警主机显示电池故障是什么意思？",
                 answered_on_spot="true", answer="主机备用电池电量不足，已指导客户更换同型号电池。")
    ticket = ticket_of(agent.page)
    agent.fill(satisfied="true")
    agent.submit_task()
    return ticket


def complaint(people):
    agent, sup = people["agent"], people["supervisor"]
    agent.intake("complaint", VIP_PHONE, complaint_time=at(0, 8), content="夜班保安对来访客户态度恶劣，并拒绝登记。",
                 nature="service_attitude", severity="major")
    ticket = ticket_of(agent.page)
    sup.open_task("form_taskforce", ticket)
    sup.fill(task_force_members=["taskforce1", "taskforce2"], handling_requirement="调取监控，约谈当班保安，两天内提交调查结论。",
             handling_deadline=at(2, 18))
    sup.submit_task()
    for member, finding in (("taskforce1", "监控显示保安言语不当"), ("taskforce2", "排班过长导致情绪失控")):
        people[member].open_task("taskforce_investigate", ticket)
        people[member].fill(finding=finding)
        people[member].submit_task()
    sup.open_task("consolidate", ticket)
    sup.fill(acceptance="accepted", cause="保安言语不当，排班过长", responsible_department="security_ops",
             responsible_person="department", handling_result="调整排班，当班保安停岗培训，主管上门致歉。",
             corrective_action="夜班不超过十小时，服务用语培训")
    sup.submit_task()
    agent.open_task("feedback", ticket)
    agent.fill(satisfied="true")
    agent.submit_task()
    return ticket


def repair(people):
    agent, sup, tech = people["agent"], people["supervisor"], people["technician"]
    agent.intake("repair", VIP_PHONE, fault_symptom="金库门禁无法开启，报警主机持续鸣响", location="徐汇营业部金库",
                 emergency="true", emergency_scale="large")
    ticket = ticket_of(agent.page)
    if not agent.page.locator("form.task-form").count():  # not taken straight to the dispatch
        agent.open_task("emergency_dispatch", ticket)
    agent.fill(technician="technician", repair_requirement="立即到场排查门禁与报警主机", required_arrival_time=at(0, 11))
    agent.submit_task()
    sup.open_task("emergency_notice", ticket)
    sup.submit_task()
    tech.open_task("accept_order", ticket)
    tech.fill(expected_arrival_time=at(0, 10))
    tech.submit_task()
    if not tech.page.locator("form.task-form").count():
        tech.open_task("repair_work", ticket)
    tech.fill(repair_result="更换门禁控制板，报警复位", customer_cooperation_needed="false")
    tech.submit_task()
    agent.open_task("confirm_repair", ticket)
    agent.fill(satisfied="true")
    agent.submit_task()
    return ticket


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkout: Path, workdir: Path):
    port = free_port()
    env = dict(os.environ, KEFU_ENV="demo", KEFU_CLOCK=NOW, PYTHONPATH=str(checkout),
               KEFU_DATABASE_URL=f"sqlite:///{workdir}/kefu.db", KEFU_SECRET_KEY="journeys")
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port)], cwd=workdir,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        if proc.poll() is not None:
            raise SystemExit(f"the server stopped; see {workdir / 'server.log'}")
        try:
            urllib.request.urlopen(base + "/login", timeout=2)
            return proc, base
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("the server did not start within 2 minutes")


def run(base: str, names: list[str]) -> list[dict]:
    from playwright.sync_api import sync_playwright
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tally = Tally()  # one day: everyone signs in once and keeps their tab (one live stream each)
        people = {n: Person(browser, base, n, tally)
                  for n in ("agent", "supervisor", "taskforce1", "taskforce2", "technician")}
        for name in names:
            for person in people.values():  # each journey starts with everyone on their inbox (not counted)
                if not person.page.url.split("?")[0].endswith("/inbox"):
                    person.page.goto(base + "/inbox", wait_until="load")
            before = (tally.loads, tally.clicks, tally.typed)
            tally.counting = True
            ticket = globals()[name](people)
            tally.counting = False
            loads, clicks, typed = (a - b for a, b in zip((tally.loads, tally.clicks, tally.typed), before))
            rows.append({"journey": name, "ticket": ticket, "steps": JOURNEYS[name], "page_loads": loads,
                         "clicks": clicks, "typed": typed})
        for person in people.values():
            person.close()
        browser.close()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-url", help="a running server (demo users, KEFU_CLOCK=%s)" % NOW)
    ap.add_argument("--checkout", type=Path, default=ROOT, help="the source tree whose server is started")
    ap.add_argument("--journey", action="append", choices=list(JOURNEYS), help="only these journeys")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = args.journey or list(JOURNEYS)
    proc = None
    with tempfile.TemporaryDirectory(prefix="kefu-journeys-") as tmp:
        try:
            if args.base_url:
                base = args.base_url.rstrip("/")
            else:
                proc, base = start_server(args.checkout.resolve(), Path(tmp))
            rows = run(base, names)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{'journey':<13} {'page loads':>10} {'clicks':>7} {'typed':>6}  steps")
    for r in rows:
        print(f"{r['journey']:<13} {r['page_loads']:>10} {r['clicks']:>7} {r['typed']:>6}  {r['steps'][0]}")
        for s in r["steps"][1:]:
            print(f"{'':<40}{s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
