"""Issue 6 from the command line, as an auditor scripts it: search and export, replay, the ledger head,
verify naming a tampered event, and bad input answered with a clear error and its exit code."""
from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from tests.tamper import GUARD_TRIGGERS
from tests.test_cli import j, kefu_cli, seeded, seeded_db  # noqa: F401 - fixtures


@pytest.fixture
def two(seeded, kefu_cli, tmp_path):  # noqa: F811
    """Two mini tickets opened by the demo agent; the first one's task completed by the department."""
    tickets = []
    for divisor in (2, 4):
        started = j(kefu_cli("start", "mini", "--as", "agent", "--json", "--data", json.dumps(
            {"customer_name": "张三", "divisor": divisor, "deadline": "2026-11-24T09:00"})))
        tickets.append(started["ticket_no"])
    task = j(kefu_cli("tasks", "--as", "department", "--json"))[0]
    kefu_cli("claim", task["id"], "--as", "department")
    kefu_cli("complete", task["id"], "--as", "department", "--data", '{"result": "已处理"}')
    return tickets, tmp_path / "cli.db"


def test_search_all_writes_every_row_however_many(two, kefu_cli):  # noqa: F811
    from datetime import datetime, timezone

    from engine.store.database import Database
    from tests.test_audit_search import bare_instances
    (first, second), path = two
    db = Database(f"sqlite:///{path}")
    try:
        bulk = bare_instances(db, 10_050, datetime(2026, 11, 1, tzinfo=timezone.utc), process_id="mini")
    finally:
        db.dispose()
    expected = [second, first] + bulk
    rows = list(csv.DictReader(io.StringIO(kefu_cli("audit", "search", "--all", "--format", "csv").stdout
                                           .lstrip("\ufeff"))))
    assert [r["ticket_no"] for r in rows] == expected
    whole = j(kefu_cli("audit", "search", "--all", "--json"))
    assert [r["ticket_no"] for r in whole["rows"]] == expected and whole["count"] == len(expected)
    lines = kefu_cli("audit", "search", "--all", "--kind", "complaint").stdout.splitlines()
    assert [line.split()[0] for line in lines] == bulk


def test_search_and_export(two, kefu_cli):  # noqa: F811
    (first, second), _db = two
    page = j(kefu_cli("audit", "search", "--json"))
    assert [r["ticket_no"] for r in page["rows"]] == [second, first] and page["next"] is None
    assert [r["ticket_no"] for r in j(kefu_cli("audit", "search", "--status", "completed", "--json"))["rows"]] \
        == [first]
    one = j(kefu_cli("audit", "search", "--agent", "agent", "--limit", "1", "--json"))
    assert [r["ticket_no"] for r in one["rows"]] == [second] and one["next"]
    rest = j(kefu_cli("audit", "search", "--agent", "agent", "--limit", "1", "--after", one["next"], "--json"))
    assert [r["ticket_no"] for r in rest["rows"]] == [first] and rest["next"] is None
    whole = j(kefu_cli("audit", "search", "--all", "--limit", "1", "--format", "json"))
    assert [r["ticket_no"] for r in whole["rows"]] == [second, first] and whole["next"] is None
    rows = list(csv.DictReader(io.StringIO(kefu_cli("audit", "search", "--agent", "department", "--format",
                                                    "csv").stdout.lstrip("\ufeff"))))
    assert [r["ticket_no"] for r in rows] == [first]
    events = list(csv.DictReader(io.StringIO(kefu_cli("audit", "export", first, "--format", "csv").stdout
                                             .lstrip("\ufeff"))))
    assert events[0]["type"] == "instance_started" and "task_completed" in [e["type"] for e in events]
    trace = json.loads(kefu_cli("audit", "export", first, "--format", "json").stdout)
    assert trace["definition"]["process_id"] == "mini" and trace["definition"]["version"] == 1


def test_replay_head_and_verify_catch_a_changed_event(two, kefu_cli):  # noqa: F811
    (first, _second), db = two
    replayed = j(kefu_cli("audit", "replay", "--all", "--json"))
    assert replayed["ok"] and replayed["replayed"] == 2
    assert j(kefu_cli("audit", "replay", first, "--json"))["results"][0]["matches"]
    head = j(kefu_cli("audit", "head", "--json"))
    anchor = f"{head['entry']}:{head['hash']}"
    assert "audit chain verified" in kefu_cli("audit", "verify", "--anchor", anchor).stdout
    with sqlite3.connect(db) as conn:  # an attacker with the database file: drop the guards, change data
        for name in GUARD_TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        seq, = conn.execute("SELECT e.seq FROM audit_events e JOIN instances i ON i.id = e.instance_id "
                            "WHERE i.ticket_no = ? AND e.type = 'task_completed'", (first,)).fetchone()
        conn.execute("UPDATE audit_events SET actor = 'forger' WHERE seq = ? AND instance_id = "
                     "(SELECT id FROM instances WHERE ticket_no = ?)", (seq, first))
    broken = kefu_cli("audit", "verify", expect=7)
    assert f"{first}: event #{seq} (task_completed) was altered" in broken.stdout
    assert kefu_cli("audit", "verify", first, expect=7).stdout.startswith(first)
    found = j(kefu_cli("audit", "verify", "--json", expect=7))
    assert not found["ok"] and found["problems"][0]["seq"] == seq


@pytest.mark.parametrize("args, code, words", [
    (("audit", "search", "--kind", "weather"), 2, "unknown kind"),
    (("audit", "search", "--date-from", "yesterday"), 2, "date_from is not a date"),
    (("audit", "search", "--after", "page-2"), 2, "not a page cursor"),
    (("audit", "search", "--limit", "0"), 2, "limit must be between"),
    (("audit", "export", "XX20261123-9999"), 4, "no instance"),
    (("audit", "replay"), 2, "--all"),
    (("audit", "replay", "999"), 4, "no instance"),
    (("audit", "verify", "--anchor", "1:short"), 2, "ENTRY:HASH"),
])
def test_bad_input_is_a_clear_error(seeded, kefu_cli, args, code, words):  # noqa: F811
    p = kefu_cli(*args, expect=code)
    assert words in p.stderr and "Traceback" not in p.stderr
