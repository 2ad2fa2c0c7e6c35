"""``kefu care``, ``kefu events`` and ``kefu report`` as operators use them (RULES.md Q1, Q3, Q4; 004 summaries):
the revisit timer is a row of ``kefu timers`` that ``kefu clock advance`` and ``kefu timers fire-due`` fire,
JSON and CSV out, exit code 2 on bad input."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SEPT = "2026-09-21T10:00:00+08:00"  # Monday: Mid-autumn (09-25) and National Day (10-01) ahead


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("care-cli") / "seed.db"
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{path}", "KEFU_ENV": "demo", "KEFU_CLOCK": SEPT}
    for args in (("deploy", str(ROOT / "processes")), ("demo",)):
        subprocess.run([sys.executable, "-m", "engine.cli", *args], check=True, env=env, cwd=ROOT,
                       capture_output=True, timeout=120)
    return path


@pytest.fixture
def kefu_cli(seeded_db, tmp_path):
    import shutil
    shutil.copy(seeded_db, tmp_path / "cli.db")
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "KEFU_ENV": "demo",
           "KEFU_CLOCK": SEPT}

    def run(*args, expect=0):
        p = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=120)
        assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
        return p
    return run


def j(p):
    return json.loads(p.stdout)


def test_q1_q3_care_plan_timers_and_clock_advance_fire_the_revisit_and_greetings(kefu_cli):
    planned = j(kefu_cli("care", "plan", "--json"))
    # the demo VIP customer: a revisit a month after registration (10-21, a Wednesday) and two holiday greetings
    assert [r["due_at"] for r in planned["revisits"]] == ["2026-10-21T09:00:00+08:00"]
    assert sorted((g["occasion"], g["due_at"]) for g in planned["greetings"]) == [
        ("中秋", "2026-09-24T09:00:00+08:00"), ("国庆节", "2026-09-30T09:00:00+08:00")]
    timers = j(kefu_cli("timers", "list", "--json"))
    assert sorted(t["bpmn_id"] for t in timers) == ["wait_cycle", "wait_greeting", "wait_greeting"]
    assert j(kefu_cli("care", "plan", "--json")) == {"revisits": [], "greetings": []}
    fired = j(kefu_cli("clock", "advance", "3d", "--json"))["fired"]
    assert [f["timer"] for f in fired] == ["wait_greeting"]
    fired = j(kefu_cli("clock", "advance", "30d", "--no-fire", "--json"))
    assert "fired" not in fired
    fired = j(kefu_cli("timers", "fire-due", "--as", "supervisor", "--json"))
    assert sorted(f["timer"] for f in fired["fired"]) == ["wait_cycle", "wait_greeting"] and "care_planned" in fired
    tasks = j(kefu_cli("tasks", "--json"))
    assert sorted(t["bpmn_id"] for t in tasks if t["bpmn_id"] in ("care_revisit", "send_greeting")) == [
        "care_revisit", "send_greeting", "send_greeting"]
    listed = kefu_cli("care", "list").stdout
    assert "revisit" in listed and "vip every 1 month(s)" in listed


def test_q1_cycles_edited_by_the_process_owner_only(kefu_cli):
    assert j(kefu_cli("care", "cycles", "--json"))[1]["months"] == 3
    r = j(kefu_cli("care", "cycles", "--set", "important=6", "--as", "owner", "--json"))
    assert [c["months"] for c in r] == [1, 6]
    kefu_cli("care", "cycles", "--set", "important=6", "--as", "agent", expect=3)
    kefu_cli("care", "cycles", "--set", "important", "--as", "owner", expect=2)
    kefu_cli("care", "cycles", "--set", "platinum=1", "--as", "owner", expect=2)


def test_q4_events_add_show_list_with_feedback(kefu_cli):
    ev = j(kefu_cli("events", "add", "--name", "客户座谈会", "--date", "2026-10-15", "--place", "上海总部",
                    "--attendee", "1", "--attendee", "2", "--as", "agent", "--json"))
    assert [a["customer_id"] for a in ev["attendees"]] == [1, 2] or sorted(a["customer_id"] for a in ev["attendees"]) == [1, 2]
    kefu_cli("events", "feedback", str(ev["id"]), "--customer", "1", "--text", "希望多办", "--score", "92",
             "--as", "agent")
    shown = j(kefu_cli("events", "show", str(ev["id"]), "--json"))
    assert shown["feedback_count"] == 1 and shown["mean_score"] == 92
    assert j(kefu_cli("events", "list", "--json"))[0]["attendees"] == 2
    assert "客户座谈会" in kefu_cli("events", "list").stdout
    kefu_cli("events", "add", "--name", "x", "--date", "soon", "--as", "agent", expect=2)
    kefu_cli("events", "show", "9999", expect=4)
    kefu_cli("events", "add", "--name", "x", "--date", "2026-10-01", "--attendee", "777", "--as", "agent", expect=4)


def test_report_json_csv_and_bad_input(kefu_cli):
    r = j(kefu_cli("report", "--period", "quarter", "--at", "2026-08-01", "--json"))
    assert (r["label"], r["start"], r["end"], r["tickets"]) == ("2026-Q3", "2026-07-01", "2026-09-30", 0)
    rows = list(csv.reader(io.StringIO(kefu_cli("report", "--period", "week", "--csv").stdout)))
    assert rows[0] == ["period", "section", "key", "value"] and rows[1] == ["2026-W39", "tickets", "total", "0"]
    assert "summary 2026" in kefu_cli("report", "--period", "year").stdout
    kefu_cli("report", "--at", "2026-02-30", expect=2)
    kefu_cli("report", "--as", "agent", expect=3)
    assert kefu_cli("kpi", "--json").returncode == 0  # the monthly KPIs stay where they were
