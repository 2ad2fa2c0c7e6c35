"""What only PostgreSQL can show: concurrent transactions on row locks. (The scenario and unit-of-work tests
marked ``@on_both_databases`` run the procedures themselves on PostgreSQL as well.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from engine import Conflict, InvalidInput
from engine.store.tables import Customer
from engine.store.database import Database, database_url
from tests.conftest import ROOT
from tests.factories import make_kefu

REPAIR = {"customer_name": "星河物业", "contact_phone": "0755-88886666", "fault_symptom": "东门门禁无法刷卡",
          "location": "福华路 1 号东门", "impact_scope": "东门全部住户", "emergency": False}


@pytest.fixture
def k(pg_url, clock):
    k = make_kefu(pg_url, clock)
    yield k
    k.db.dispose()


def together(n, fn):
    """Run ``fn(i)`` in ``n`` threads released at the same moment; each one's result or exception."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def kefu_cli(url, *args):
    env = {**os.environ, "KEFU_DATABASE_URL": url, "KEFU_ENV": "test"}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)


def test_tickets_opened_at_once_get_distinct_consecutive_numbers(k, pg_url):
    # The day's counter row does not exist yet: every transaction races to create it.
    threads, each = 6, 4
    results = together(threads, lambda _i: [k.instances.start("repair", "agent", data=REPAIR)["ticket_no"]
                                            for _ in range(each)])
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    numbers = sorted(n for r in results for n in r)
    assert numbers == [f"BX20261123-{i:04d}" for i in range(1, threads * each + 1)]
    # Another kind, another day: counters are per prefix and date.
    k.clock.advance(timedelta(days=1))
    assert k.instances.start("consultation", "agent")["ticket_no"] == "ZX20261124-0001"
    assert k.instances.start("repair", "agent", data=REPAIR)["ticket_no"] == "BX20261124-0001"
    # The audit chains of all of them verify, through the command line as an operator would run it.
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")  # what an operator would type
    done = kefu_cli(plain, "audit", "verify", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": True, "problems": []}


def test_a_deadlock_is_a_conflict_and_saves_nothing(k):
    a = k.customers.create({"name": "甲公司"})["id"]
    b = k.customers.create({"name": "乙公司"})["id"]
    locked = threading.Barrier(2)

    def cross(i):
        first, second = (a, b) if i == 0 else (b, a)
        with k.db.unit_of_work() as s:
            s.get(Customer, first).needs = f"writer {i}"
            s.flush()  # row lock on the first customer
            locked.wait(10)
            s.get(Customer, second).needs = f"writer {i}"
            s.flush()  # each waits for the other: PostgreSQL aborts one of them
        return i
    outcomes = together(2, cross)
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "int"], outcomes
    loser = next(o for o in outcomes if isinstance(o, Conflict))
    assert "deadlock" in loser.message and "try again" in loser.message
    winner = next(o for o in outcomes if isinstance(o, int))
    assert {k.customers.get(a)["needs"], k.customers.get(b)["needs"]} == {f"writer {winner}"}


def test_a_timer_and_a_completion_racing_on_one_instance_never_both_apply(k, clock):
    # Completing locks the task row and then saves the instance; firing locks the instance and then
    # cancels the task: on PostgreSQL that can deadlock, and the aborted side is a Conflict.
    opened = []
    for _ in range(6):
        r = k.instances.start("repair", "agent", data=REPAIR)
        dispatch = next(t for t in r["tasks"] if t["bpmn_id"] == "dispatch")
        work = k.tasks.complete(dispatch["id"], "agent", {"technician": "technician", "repair_requirement": "换读卡器",
                                                    "required_arrival_time": (k.now() + timedelta(hours=2)).isoformat()})
        opened.append((r["instance_id"], next(t for t in work["tasks"] if t["bpmn_id"] == "accept_order")["id"]))
    clock.advance(timedelta(minutes=30, seconds=1))  # the response deadline

    def act(i):
        if i == 0:
            return k.timers.fire_due()
        return [_complete_or_conflict(k, task_id) for _iid, task_id in opened]
    fired, completed = together(2, act)
    assert not isinstance(fired, Exception) and not isinstance(completed, Exception), (fired, completed)
    for (iid, task_id), outcome in zip(opened, completed):
        events = k.instances.show(iid)["events"]
        by_timer = [e for e in events if e["type"] == "timer_fired"]
        by_hand = [e for e in events if e["type"] == "task_completed" and e["task_id"] == task_id]
        assert len(by_timer) + len(by_hand) == 1, (iid, outcome)
        assert (outcome == "conflict") == bool(by_timer)
    assert k.timers.fire_due() == []
    assert k.audit.verify() == []


def test_two_tasks_of_one_instance_completed_at_once_never_lose_an_update(k, clock):
    # After the overdue timer, the agent's re-dispatch and the supervisor's warning are both ready. Each
    # completion locks only its own task row, so both may load the same instance version; the second
    # save must then be a Conflict (never a raw duplicate-key error, never an overwrite).
    instances = []
    for _ in range(6):
        r = k.instances.start("repair", "agent", data=REPAIR)
        dispatch = next(t for t in r["tasks"] if t["bpmn_id"] == "dispatch")
        k.tasks.complete(dispatch["id"], "agent", {"technician": "technician", "repair_requirement": "换读卡器",
                                             "required_arrival_time": (k.now() + timedelta(hours=2)).isoformat()})
        instances.append(r["instance_id"])
    clock.advance(timedelta(hours=24, seconds=1))
    assert len(k.timers.fire_due()) == len(instances)
    for iid in instances:
        ready = {t["bpmn_id"]: t["id"] for t in k.tasks.ready(instance=iid)}
        outcomes = together(2, lambda i, ready=ready: k.tasks.complete(*(
            (ready["redispatch"], "agent", {"technician": "technician2", "redispatch_reason": "超时",
                                            "required_arrival_time": (k.now() + timedelta(hours=1)).isoformat()}),
            (ready["overdue_warning"], "supervisor", {"warning_note": "已提醒"}))[i]))
        assert all(isinstance(o, (dict, Conflict)) for o in outcomes), outcomes
        done = {e["bpmn_id"] for e in k.instances.show(iid)["events"] if e["type"] == "task_completed"}
        still = {t["bpmn_id"] for t in k.tasks.ready(instance=iid)}
        for bpmn_id, o in zip(("redispatch", "overdue_warning"), outcomes):
            assert (bpmn_id in done) == isinstance(o, dict) and (bpmn_id in still) == isinstance(o, Conflict)
    assert k.audit.verify() == []


def _complete_or_conflict(k, task_id):
    try:
        k.tasks.complete(task_id, "technician", {"expected_arrival_time": (k.now() + timedelta(hours=1)).isoformat()})
        return "completed"
    except Conflict:
        return "conflict"


def test_text_longer_than_its_column_is_invalid_input_not_a_database_error(k):
    before = len(k.customers.find("长"))
    with pytest.raises(InvalidInput, match="customer name is longer than 128 characters"):
        k.customers.create({"name": "长" * 200})  # the name column holds 128 characters
    assert len(k.customers.find("长")) == before


def test_postgresql_urls_use_psycopg_3(pg_url):
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("sqlite:///kefu.db") == "sqlite:///kefu.db"
    db = Database(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        db.create_all()
        with db.reading() as s:
            assert s.get_bind().dialect.driver == "psycopg"
            assert s.execute(text("SHOW transaction_isolation")).scalar() == "read committed"
            assert s.scalar(select(func.count()).select_from(Customer)) == 0
    finally:
        db.dispose()


# ------------------------------------------------------------------ the throw-away server itself


def test_without_postgresql_tests_skip_locally_but_fail_under_ci(monkeypatch):
    from tests import pg
    monkeypatch.setattr(pg.glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(pg.shutil, "which", lambda _name: None)
    with pytest.raises(pg.PgUnavailable, match="install-postgres.sh"):
        pg.server_bindir()
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL not available: no server"):
        pg.unavailable("no server")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true: no server"):
        pg.unavailable("no server")


def test_the_newest_installed_server_is_used(monkeypatch):
    from tests import pg
    monkeypatch.setattr(pg.glob, "glob", lambda _pattern: ["/usr/lib/postgresql/9/bin/initdb",
                                                           "/usr/lib/postgresql/16/bin/initdb",
                                                           "/usr/lib/postgresql/15/bin/initdb"])
    assert str(pg.server_bindir()) == "/usr/lib/postgresql/16/bin"


def test_the_ledger_function_hashes_entries_exactly_as_python_does(k):
    """Migration 0006 appends ledger entries in SQL; verification recomputes them in Python. Texts that JSON
    must escape (quotes, backslashes, control characters) and non-ASCII ones hash alike on both sides."""
    from datetime import datetime

    from engine.store.chain import _APPEND_LEDGER, chain_hash, ledger_content
    tickets = ['Q"1\\x', "报修-\n\t\x01\x1f\u2028", "plain", ""]
    heads = ["a" * 64, "", 'h"\\', "端"]
    with k.db.engine.connect() as conn:  # rolled back: the ledger itself refuses to forget an entry
        last = conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_ledger")).scalar()
        conn.execute(_APPEND_LEDGER, {"ids": [7, 8, 9, 10], "tickets": tickets, "seqs": [1, 22, 333, 0],
                                      "heads": heads, "ats": [datetime(2026, 11, 23, 8, 0)] * 4})
        rows = conn.execute(text("SELECT id, instance_id, ticket_no, event_seq, head, prev_hash, hash "
                                 "FROM audit_ledger WHERE id > :last ORDER BY id"), {"last": last}).all()
        conn.rollback()
    assert [r.ticket_no for r in rows] == tickets and [r.id for r in rows] == [last + 1, last + 2, last + 3,
                                                                                last + 4]
    prev = rows[0].prev_hash
    for r in rows:
        assert r.prev_hash == prev
        assert r.hash == chain_hash(prev, ledger_content(r.id, r.instance_id, r.ticket_no, r.event_seq, r.head))
        prev = r.hash
