"""``kefu serve``, the command ``scripts/run.sh`` runs: on a fresh SQLite database it creates the schema,
deploys the diagrams, seeds the demo users, and serves the web UI (waitress) with the timer scheduler inside.

A demo user signs in through the login form and opens a repair ticket through the intake and dispatch forms;
a second process moves the shared demo clock past the work order's response deadline without firing, and
the server's own scheduler fires the timer."""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from tests.conftest import ROOT
from tests.test_web_server import free_port

PINNED = "2026-11-23T09:00:00+08:00"
DEMO_PASSWORD = "kefu-demo"  # the README's password of every demo user
CSRF = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')
START_SECONDS = 120  # schema, diagrams and eleven demo users' password hashes on a busy 2-core machine
FIRE_SECONDS = 120   # the scheduler sweeps every second; each poll is a kefu process of its own


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 302 comes back as it is, so the test sees where the form sends the user


class Browser:
    """Cookies and form posts as a browser sends them, against the server on ``base``."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  NoRedirect())

    def open(self, path, form=None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(urllib.request.Request(self.base + path, data=data), timeout=60) as r:
                return r.status, r.headers, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read().decode()

    def submit(self, path, fields):
        """GET the page with the form, then POST ``fields`` with the form's CSRF token."""
        status, _, page = self.open(path)
        assert status == 200, (path, status, page[:500])
        return self.open(path, {"csrf_token": CSRF.search(page)[1], **fields})


def kefu(env, *args):
    done = subprocess.run([sys.executable, "-m", "engine.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (args, done.returncode, done.stderr[-2000:])
    return json.loads(done.stdout) if "--json" in args else done.stdout


def test_kefu_serve_seeds_serves_and_its_scheduler_fires_a_due_timer(tmp_path):
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'kefu.db'}", "KEFU_ENV": "demo",
           "KEFU_CLOCK": PINNED, "PYTHONUNBUFFERED": "1"}
    env.pop("KEFU_SECRET_KEY", None)
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port)], env=env,
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def server_log():
        return log_path.read_text(errors="replace")[-3000:]

    browser = Browser(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                status, _, body = browser.open("/healthz")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, f"kefu serve exited {proc.returncode}:\n{server_log()}"
                assert time.monotonic() < deadline, f"kefu serve did not answer in {START_SECONDS} s:\n{server_log()}"
                time.sleep(0.2)
        assert status == 200 and json.loads(body)["status"] == "ok", body

        # Sign in through the login form (a wrong password first: the form refuses it).
        status, _, page = browser.submit("/login", {"username": "agent", "password": "wrong"})
        assert status == 401, (status, page[:500])
        status, headers, _ = browser.submit("/login", {"username": "agent", "password": DEMO_PASSWORD})
        assert status == 302 and headers["Location"].endswith("/inbox"), (status, dict(headers))
        status, _, inbox = browser.open("/inbox")
        assert status == 200 and "王敏" in inbox  # the demo agent's display name

        # Intake of a repair ticket leads to the agent's dispatch form; the work order goes to the technician.
        status, headers, page = browser.submit("/new/repair", {
            "kefu_customer_id": "", "customer_name": "星河物业管理有限公司", "contact_phone": "0755-88886666",
            "fault_symptom": "东门门禁无法刷卡", "location": "深圳市福田区福华路 1 号东门", "impact_scope": "东门全部住户",
            "emergency": "false"})
        assert status == 302 and "/tasks/" in headers["Location"], (status, page[:1000])
        dispatch = urllib.parse.urlsplit(headers["Location"]).path
        status, headers, page = browser.submit(dispatch, {"technician": "technician", "repair_requirement": "更换读卡器",
                                                          "required_arrival_time": "2026-11-23T11:00"})
        assert status == 302, (status, page[:1000])

        # The technician has 30 minutes to accept the work order (T1): one timer, due 09:30 on the demo clock.
        [timer] = kefu(env, "timers", "list", "--json")
        assert timer["bpmn_id"] == "timer_response_overdue" and timer["due_at"] == "2026-11-23T09:30:00+08:00"
        ticket = kefu(env, "show", str(timer["instance_id"]), "--json")
        assert ticket["kind"] == "repair" and {t["bpmn_id"] for t in ticket["tasks"] if t["state"] == "ready"} \
            == {"accept_order"}

        # Another process moves the shared clock past the deadline and fires nothing itself.
        moved = kefu(env, "clock", "advance", "31m", "--no-fire", "--json")
        assert moved["now"] == "2026-11-23T09:31:00+08:00" and "fired" not in moved

        # The server's scheduler picks up the moved clock and fires the timer.
        deadline = time.monotonic() + FIRE_SECONDS
        while kefu(env, "timers", "list", "--json"):
            assert proc.poll() is None, f"kefu serve exited {proc.returncode}:\n{server_log()}"
            assert time.monotonic() < deadline, f"the timer did not fire within {FIRE_SECONDS} s:\n{server_log()}"
            time.sleep(0.5)
        shown = kefu(env, "show", ticket["ticket_no"], "--json")
        fired = [e for e in shown["events"] if e["type"] == "timer_fired"]
        assert [e["bpmn_id"] for e in fired] == ["timer_response_overdue"], shown["events"]
        ready = {t["bpmn_id"] for t in shown["tasks"] if t["state"] == "ready"}
        assert ready == {"redispatch", "overdue_warning"}, shown["tasks"]

        # The agent sees the re-dispatch in the inbox the server shows.
        status, _, inbox = browser.open("/inbox")
        assert status == 200 and ticket["ticket_no"] in inbox
        assert proc.poll() is None, server_log()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
    text = log_path.read_text(errors="replace")
    assert "fired 1 timer(s)" in text and "Traceback" not in text, text[-3000:]
    # SpiffWorkflow's task steps, alembic's and APScheduler's INFO stay out of the server's log.
    assert not [line for line in text.splitlines() if " INFO " in line and " kefu." not in line], text[-3000:]
