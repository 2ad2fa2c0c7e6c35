"""Live pages (issue 20): the event stream tells a page what changed, as the audit ledger moves on, within a
process (a condition variable) and across processes (PostgreSQL LISTEN/NOTIFY; SQLite: a short poll); it
carries the user's alerts and ready-task count, is bounded per process, beats and ends so the browser
reconnects, and resumes from Last-Event-ID."""
from __future__ import annotations

import json
import re
import queue
import threading
import time

import pytest

from engine import Config, Kefu
from tests.pg import on_both_databases
from tests.test_complaint import register
from tests.webclient import Web
from webapp.live import stop_streams


class Stream:
    """An open /live/events response read in a thread: its events land in a queue."""

    def __init__(self, web, headers=None):
        self.web = web
        self.stopped = threading.Event()
        self.response = web.client.get("/live/events", buffered=False, headers=headers or {})
        assert self.response.status_code == 200
        assert self.response.mimetype == "text/event-stream"
        self.events: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buffer = ""
        for chunk in self.response.response:
            if self.stopped.is_set():
                self.response.close()  # from this thread: the generator is not running now
                return
            buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                fields = {}
                for line in block.split("\n"):
                    if line.startswith(":"):
                        fields.setdefault("comment", line)
                    elif ": " in line:
                        k, v = line.split(": ", 1)
                        fields[k] = v
                if "event" in fields:
                    self.events.put((fields["event"], json.loads(fields["data"]), fields.get("id")))
                elif "comment" in fields:
                    self.events.put(("comment", fields["comment"], None))
        self.events.put(("closed", None, None))

    def next(self, name, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {name} event within {timeout} s"
            event = self.events.get(timeout=left)
            if event[0] == name:
                return event

    def close(self):
        self.stopped.set()
        self.web.kefu.live.signal.bump()  # wake the generator: it yields (at its next heartbeat), and the
        self.thread.join(15)  # reader closes it before the test's database goes


@pytest.fixture
def live_web(kefu):
    yield Web(kefu, LIVE_STREAM_SECONDS=30, LIVE_HEARTBEAT=1)
    kefu.live.stop()


def test_supervisor_stream_carries_the_major_complaint_alert_and_the_count(live_web, scenario):
    web = live_web.login_as("supervisor")
    stream = Stream(web)
    try:
        _, hello, first = stream.next("hello")
        assert hello["count"] == 0 and int(first) == hello["last"]
        began = time.monotonic()
        r = register(scenario, severity="major")
        _, change, event_id = stream.next("change", timeout=5)
        assert time.monotonic() - began < 5
        assert r["ticket_no"] in change["tickets"] and int(event_id) == change["last"] > hello["last"]
        assert change["alerts"] == [{"kind": "major_complaint", "ticket_no": r["ticket_no"]}]
        assert change["count"] == 1  # 组建专项处理小组 waits in the supervisor's queue
        stream.next("comment", timeout=5)  # a heartbeat while nothing happens
    finally:
        stream.close()


def test_an_agent_is_told_of_the_change_without_the_supervisors_alert(live_web, scenario):
    stream = Stream(live_web.login_as("agent2"))
    try:
        stream.next("hello")
        register(scenario, severity="major")
        _, change, _ = stream.next("change")
        assert change["alerts"] == [] and change["tickets"] == [scenario.ticket_no]
    finally:
        stream.close()


def test_a_reconnecting_page_gets_what_it_missed_from_last_event_id(live_web, scenario):
    web = live_web.login_as("supervisor")
    before = web.kefu.live.last()
    register(scenario, severity="major")
    stream = Stream(web, headers={"Last-Event-ID": str(before)})
    try:
        _, hello, _ = stream.next("hello")
        assert hello["tickets"] == [scenario.ticket_no] and hello["alerts"][0]["kind"] == "major_complaint"
    finally:
        stream.close()


def test_streams_are_bounded_per_process_and_end_so_the_browser_reconnects(kefu):
    web = Web(kefu, LIVE_STREAMS=1, LIVE_STREAM_SECONDS=1.5, LIVE_HEARTBEAT=1).login_as("agent")
    stream = Stream(web)
    try:
        stream.next("hello")
        busy = web.client.get("/live/events")
        text = busy.get_data(as_text=True)
        assert busy.status_code == 200 and "event: busy" in text and "retry: 30000" in text
        assert web.client.get("/live/state").get_json()["streams"] == 1
        stream.next("bye", timeout=5)  # the stream ends by itself …
        assert stream.next("closed", timeout=5)[0] == "closed"
        deadline = time.monotonic() + 5
        while web.client.get("/live/state").get_json()["streams"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert web.client.get("/live/state").get_json()["streams"] == 0  # … and gives its place back
        again = Stream(web)
        again.next("hello")
        again.close()
    finally:
        stream.close()


def test_the_stream_needs_a_signed_in_user(kefu):
    r = Web(kefu).client.get("/live/events")
    assert r.status_code in (302, 401)


@on_both_databases
def test_a_change_made_by_another_process_wakes_the_stream(kefu, scenario):
    """Another engine on its own connections (another web worker, the scheduler) registers the complaint:
    PostgreSQL wakes the stream by NOTIFY at once, SQLite by the stream's short poll."""
    # heartbeat 10 s: on PostgreSQL the stream waits that long between looks unless a NOTIFY wakes it
    web = Web(kefu, LIVE_STREAM_SECONDS=30, LIVE_HEARTBEAT=10).login_as("supervisor")
    stream = Stream(web)
    other = Kefu(Config(database_url=kefu.config.database_url, env="test"), clock=kefu.clock)
    try:
        stream.next("hello")
        if kefu.db.dialect == "postgresql":
            deadline = time.monotonic() + 10
            while not kefu.live.cross_process and time.monotonic() < deadline:
                time.sleep(0.05)
            assert kefu.live.cross_process
        time.sleep(0.3)
        began = time.monotonic()
        r = other.instances.start("complaint", "agent", data={
            "customer_name": "华东银行股份有限公司", "contact_phone": "021-63210000",
            "complaint_time": scenario.later(minutes=-10), "place": "徐汇营业部", "content": "保安值班时态度恶劣",
            "customer_demand": "书面道歉", "nature": "service_attitude", "severity": "major"})
        _, change, _ = stream.next("change", timeout=10)
        took = time.monotonic() - began
        assert r["ticket_no"] in change["tickets"] and change["alerts"][0]["kind"] == "major_complaint"
        assert took < 4.0, took  # PostgreSQL: NOTIFY (well before the 10 s look); SQLite: the 2 s poll
    finally:
        stream.close()
        kefu.live.stop()
        other.db.dispose()


def test_pages_mark_their_live_parts_and_carry_the_scripts_words(kefu, scenario):
    r = register(scenario, severity="major")
    web = Web(kefu).login_as("supervisor")
    inbox = web.page("/inbox")
    assert 'data-live-page="inbox"' in inbox and 'data-live="inbox"' in inbox and "/static/inbox.js" in inbox
    assert "/static/live.js" in inbox and 'id="todo-badge"' in inbox and 'id="sound-toggle"' in inbox
    config = json.loads(re.search(r'<script type="application/json" id="live-config">(.*?)</script>', inbox,
                                  re.S)[1])
    assert config["events_url"] == "/live/events" and config["text"]["left"] == "剩余 {t}"
    assert config["text"]["m"] == "{m}分钟" and config["now"] == int(kefu.now().timestamp() * 1000)
    assert re.search(r'data-due="2026-11-23T\d\d:\d\d:00\+08:00">[^<]+<span class="left">剩余', inbox)
    ticket = web.page(f"/instances/{r['ticket_no']}")
    assert f'data-live-ticket="{r["ticket_no"]}"' in ticket and 'data-live="tasks"' in ticket
    task = kefu.tasks.ready(actor="supervisor")[0]
    page = web.page(f"/tasks/{task['id']}")
    assert 'data-live="side"' in page and f'data-live-state="ready:"' in page
    agent = Web(kefu).login_as("agent").page("/inbox")
    assert 'id="sound-toggle"' not in agent  # the sound goes with the supervisor's alerts
    web.get("/lang/en")
    english = json.loads(re.search(r'id="live-config">(.*?)</script>', web.page("/inbox"), re.S)[1])["text"]
    assert english["major_complaint"] == "New major complaint" and english["left"] != "剩余 {t}"


def test_the_embedded_server_streams_events_as_they_happen(kefu, scenario):
    """``kefu serve`` runs waitress: the stream's events leave at once, not when a buffer fills."""
    import http.client

    from waitress.server import create_server
    web = Web(kefu, LIVE_STREAM_SECONDS=30, LIVE_HEARTBEAT=1).login_as("supervisor")
    cookie = web.client.get_cookie("session").value
    server = create_server(web.app, host="127.0.0.1", port=0, threads=4)
    closing = threading.Event()

    def serve():
        try:
            server.run()
        except (OSError, ValueError):  # its sockets closed under its select() by the close() below
            if not closing.is_set():
                raise
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    try:
        conn.request("GET", "/live/events", headers={"Cookie": f"session={cookie}"})
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")

        def until(word):
            text = ""
            while word not in text:
                line = r.readline().decode()
                assert line, text
                text += line
            return text
        assert "event: hello" in until("event: hello")
        began = time.monotonic()
        register(scenario, severity="major")
        assert scenario.ticket_no in until(scenario.ticket_no) and time.monotonic() - began < 5
    finally:
        conn.close()
        stop_streams(web.app)
        closing.set()
        server.close()  # (from this thread: waitress's loop may be in select() on the sockets it closes)
        thread.join(timeout=10)
        kefu.live.stop()
