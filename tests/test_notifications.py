"""Notifications (issue 20): users' channels and events, the outbox written in the unit of work's own
transaction, delivery over SMTP and webhooks (to local servers started here) with retries, and the CLI."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine import InvalidInput, NotAllowed
from engine.cli import main
from engine.services import notifications
from engine.store.tables import OutboxMessage
from tests.mailserver import SMTPServer, WebhookServer
from tests.pg import on_both_databases
from tests.test_complaint import register


@pytest.fixture
def smtp(monkeypatch):
    server = SMTPServer()
    monkeypatch.setenv("KEFU_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KEFU_SMTP_PORT", str(server.port))
    monkeypatch.setenv("KEFU_SMTP_FROM", "kefu@example.test")
    yield server
    server.stop()


@pytest.fixture
def hook():
    server = WebhookServer()
    yield server
    server.stop()


def outbox(kefu, **where):
    with kefu.db.reading() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        for k, v in where.items():
            q = q.where(getattr(OutboxMessage, k) == v)
        rows = list(s.scalars(q))
        s.expunge_all()  # keep the loaded values after the reading session ends
        return rows


@on_both_databases
def test_the_supervisors_mailbox_receives_the_major_complaint_mail(scenario, smtp):
    k = scenario.base
    k.notifications.set_prefs("supervisor", "supervisor", email="zhang.wei@example.test")
    r = register(scenario, severity="major")
    # written with the registration, sent by the scheduler's job: nothing is in the mailbox before delivery
    queued = outbox(k, user_name="supervisor")
    assert {m.event for m in queued} == {"major_complaint"} and queued[0].state == "pending"
    assert smtp.mailbox("zhang.wei@example.test") == []
    assert k.notifications.deliver() == {"sent": 1, "retrying": 0, "failed": 0}
    [mail] = smtp.mailbox("zhang.wei@example.test")
    assert r["ticket_no"] in mail["Subject"] and "Major complaint" in mail["Subject"]
    assert mail["From"] == "kefu@example.test"
    assert "保安值班时态度恶劣" in mail.get_content() and f"/instances/{r['ticket_no']}" in mail.get_content()
    assert outbox(k)[0].state == "sent" and outbox(k)[0].sent_at is not None
    # a general complaint tells no supervisor anything (the supervisor did not ask for queue tasks)
    register(scenario, severity="general")
    assert len(outbox(k)) == 1


def test_a_mail_server_that_is_down_never_fails_the_unit_of_work_and_the_message_is_retried(scenario, smtp):
    k = scenario.base
    k.notifications.set_prefs("supervisor", "system", email="zhang.wei@example.test")
    smtp.refuse = True
    register(scenario, severity="major")  # the registration itself is untouched by the mail server
    assert k.notifications.deliver() == {"sent": 0, "retrying": 1, "failed": 0}
    [m] = outbox(k)
    assert m.state == "pending" and m.attempts == 1 and "451" in m.last_error
    assert m.next_attempt_at == k.now() + notifications.FIRST_RETRY
    assert k.notifications.deliver() == {"sent": 0, "retrying": 0, "failed": 0}  # not yet: backoff
    smtp.refuse = False
    assert k.notifications.deliver(now=k.now() + timedelta(seconds=31))["sent"] == 1
    assert len(smtp.mailbox("zhang.wei@example.test")) == 1


def test_after_the_last_attempt_a_message_is_failed_listed_and_can_be_retried(scenario, monkeypatch, hook):
    k = scenario.base
    monkeypatch.delenv("KEFU_SMTP_HOST", raising=False)
    k.notifications.set_prefs("supervisor", "system", email="zhang.wei@example.test")
    register(scenario, severity="major")
    now = k.now()
    for attempt in range(notifications.MAX_ATTEMPTS):
        k.notifications.deliver(now=now)
        now += notifications.LAST_RETRY
    [m] = outbox(k)
    assert m.state == "failed" and m.attempts == notifications.MAX_ATTEMPTS
    assert "KEFU_SMTP_HOST" in m.last_error
    listed = k.notifications.outbox(("failed",))
    assert [x["id"] for x in listed] == [m.id] and listed[0]["user"] == "supervisor"
    with pytest.raises(NotAllowed):
        k.notifications.retry(m.id, "agent")
    assert k.notifications.retry(m.id, "supervisor")["state"] == "pending"


def test_webhook_gets_the_new_task_of_its_user_with_retries(scenario, hook):
    k = scenario.base
    k.notifications.set_prefs("department", "system", webhook=hook.url("/wecom"), events="task,queue")
    register(scenario)
    assert outbox(k) == []  # the transfer task is the agent's own, the department has nothing yet
    hook.failures = 1
    scenario.complete("transfer", "agent", {"department": "security_ops", "handling_requirement": "调查并整改",
                                            "handling_deadline": scenario.later(hours=6)})
    [m] = outbox(k)
    assert (m.event, m.channel, m.target) == ("queue", "webhook", hook.url("/wecom"))
    assert k.notifications.deliver()["retrying"] == 1 and "503" in outbox(k)[0].last_error
    assert k.notifications.deliver(now=k.now() + timedelta(minutes=1))["sent"] == 1
    [post] = hook.posts
    assert post["path"] == "/wecom" and post["content_type"].startswith("application/json")
    assert post["json"]["event"] == "queue" and post["json"]["ticket_no"] == scenario.ticket_no
    assert post["json"]["task"]["name"] == "部门接单"


def test_clock_about_to_run_out_and_overdue_warning(scenario, smtp):
    from engine.clock import aware
    from tests.test_complaint import transfer
    k = scenario.base
    k.notifications.set_prefs("department", "system", email="liu.qiang@example.test", events="due_soon")
    k.notifications.set_prefs("supervisor", "system", email="zhang.wei@example.test", events="overdue")
    register(scenario)
    transfer(scenario, hours=6)
    due = aware(scenario.task("department_handle")["due_at"])
    assert k.notifications.enqueue_due_soon() == 0  # six hours left
    soon = due - timedelta(minutes=10)
    assert k.notifications.enqueue_due_soon(now=soon) == 1
    assert k.notifications.enqueue_due_soon(now=soon + timedelta(minutes=1)) == 0  # once per task and user
    [m] = outbox(k)
    assert (m.event, m.user_name, m.target) == ("due_soon", "department", "liu.qiang@example.test")
    # the clock runs out: the supervisor's overdue warning (T1) is announced with the timer's unit of work
    scenario.advance(hours=6, seconds=1)
    assert "overdue_warning" in scenario.ready_ids()
    [warned] = outbox(k, user_name="supervisor")
    assert warned.event == "overdue" and warned.ticket_no == scenario.ticket_no
    assert k.notifications.deliver()["sent"] == 2
    assert "Overdue warning" in smtp.mailbox("zhang.wei@example.test")[0]["Subject"]


def test_preferences_are_checked_and_shown_by_the_cli(kefu, capsys, monkeypatch):
    monkeypatch.setenv("KEFU_DATABASE_URL", kefu.config.database_url)
    with pytest.raises(InvalidInput):
        kefu.notifications.set_prefs("agent", "agent", email="not-an-address")
    with pytest.raises(InvalidInput):
        kefu.notifications.set_prefs("agent", "agent", webhook="ftp://x")
    with pytest.raises(InvalidInput):
        kefu.notifications.set_prefs("agent", "agent", events="everything")
    with pytest.raises(NotAllowed):
        kefu.notifications.set_prefs("agent", "agent2", email="a@example.test")
    assert main(["users", "notify", "agent", "--email", "wang.min@example.test", "--events",
                 "task,major_complaint", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["email"] == "wang.min@example.test" and shown["events"] == ["task", "major_complaint"]
    assert main(["users", "notify", "agent", "--events", "bogus"]) == 2
    assert "unknown notification event" in capsys.readouterr().err
    assert main(["users", "list", "--json"]) == 0
    users = {u["name"]: u for u in json.loads(capsys.readouterr().out)}
    assert users["agent"]["notify"]["email"] == "wang.min@example.test"
    assert users["agent2"]["notify"]["events"] == []
    assert main(["notifications", "deliver", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"queued": 0, "sent": 0, "retrying": 0, "failed": 0}
    assert main(["notifications", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_rolled_back_unit_of_work_leaves_no_message(scenario, smtp):
    k = scenario.base
    k.notifications.set_prefs("supervisor", "system", email="zhang.wei@example.test")
    with pytest.raises(Exception):
        register(scenario, severity="major", complaint_time="not a time")
    with k.db.reading() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_the_scheduler_delivers_the_outbox_by_itself(scenario, smtp):
    """The embedded scheduler (``kefu serve``, ``kefu scheduler``) runs the delivery job every few seconds."""
    import time

    from engine.services.scheduler import NOTIFY_SECONDS, TimerScheduler
    k = scenario.base
    k.notifications.set_prefs("supervisor", "system", email="zhang.wei@example.test", events="major_complaint")
    sched = TimerScheduler(k).start()
    try:
        r = register(scenario, severity="major")
        deadline = time.monotonic() + NOTIFY_SECONDS + 10
        while not smtp.mailbox("zhang.wei@example.test") and time.monotonic() < deadline:
            time.sleep(0.1)
        [mail] = smtp.mailbox("zhang.wei@example.test")
        assert r["ticket_no"] in mail["Subject"]
    finally:
        sched.shutdown(wait=True)


def test_the_preferences_page_and_the_supervisors_outbox_page(scenario, monkeypatch):
    from tests.webclient import Web
    k = scenario.base
    monkeypatch.delenv("KEFU_SMTP_HOST", raising=False)
    web = Web(k).login_as("supervisor")
    page = web.page("/notifications")
    assert "通知设置" in page and 'value="major_complaint"' in page
    bad = web.post("/notifications", {"email": "not-an-address", "events": ["major_complaint"]})
    assert bad.status_code == 400 and "请填写有效的邮件地址" in bad.get_data(as_text=True)
    assert 'value="not-an-address"' in bad.get_data(as_text=True)  # kept as typed
    assert k.notifications.prefs("supervisor")["email"] is None
    ok = web.post("/notifications", {"email": "zhang.wei@example.test", "webhook": "",
                                     "events": ["major_complaint", "overdue"]})
    assert ok.status_code == 302
    assert k.notifications.prefs("supervisor") | {"updated_at": None} == {
        "user": "supervisor", "email": "zhang.wei@example.test", "webhook": None,
        "events": ["major_complaint", "overdue"], "updated_at": None}
    register(scenario, severity="major")
    now = k.now()
    for _ in range(notifications.MAX_ATTEMPTS):  # no mail server: every attempt fails
        k.notifications.deliver(now=now)
        now += notifications.LAST_RETRY
    outbox_page = web.page("/notifications/outbox")
    assert "发送失败" in outbox_page and "KEFU_SMTP_HOST" in outbox_page and scenario.ticket_no in outbox_page
    [m] = outbox(k)
    assert web.post(f"/notifications/outbox/{m.id}/retry").status_code == 302
    assert outbox(k)[0].state == "pending"
    assert web.post("/notifications/outbox/abc/retry").status_code == 404
    agent = Web(k).login_as("agent")
    assert agent.get("/notifications/outbox").status_code == 403
    assert agent.get("/notifications").status_code == 200
