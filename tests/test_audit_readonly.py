"""Issue 6: the auditor reads everything and changes nothing. Every changing route (found by walking the
app's URL map, so routes added later are covered) and every changing CLI command refuses the auditor, and
the database is exactly as before."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import inspect, text

from engine import cli, clock as clock_mod
from engine.cli.common import MUTATING, READ_ONLY, _command_path
from tests.test_complaint import register, transfer
from tests.webclient import Web
from webapp.audit import READING_ENDPOINTS

CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Signing oneself in and out, and changing one's own password, touch one's own sign-in only.
SESSION_ENDPOINTS = {"auth.login", "auth.logout", "auth.password"}


def snapshot(kefu) -> dict:
    """Every row of every table: the whole database."""
    with kefu.db.engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        return {t: sorted(map(repr, conn.execute(text(f"SELECT * FROM {t}")).all())) for t in tables}


@pytest.fixture
def world(scenario, kefu):
    """A complaint waiting in the department lane, a finished one, customers, users, timers."""
    register(scenario)
    transfer(scenario)
    task = scenario.task("department_handle")
    return {"task_id": task["id"], "customer_id": scenario.show()["customer"]["id"], "kind": "complaint",
            "ref": scenario.ticket_no, "instance": scenario.ticket_no}


def url_for_rule(rule, world) -> str:
    def value(match):
        name = match[1].split(":")[-1]
        return str(world.get(name, "1"))
    return re.sub(r"<([^>]+)>", value, rule.rule)


def test_every_changing_route_refuses_the_auditor(world, kefu):
    web = Web(kefu).login_as("auditor")
    rules = [(r, m) for r in web.app.url_map.iter_rules() for m in sorted(r.methods & CHANGING)
             if r.endpoint not in SESSION_ENDPOINTS | READING_ENDPOINTS]  # reveals: tests/test_confidential.py
    assert len(rules) >= 10, rules  # the walk found the app's changing routes
    before = snapshot(kefu)
    form = {"handling_result": "x", "to_user": "agent", "reason": "x", "name": "改名", "day": "2026-12-01",
            "working": "0", "duration": "1d", "customer_name": "x", "content": "x"}
    for rule, method in rules:
        url = url_for_rule(rule, world)
        r = web.client.open(url, method=method, data={**form, "csrf_token": web.csrf()})
        assert r.status_code == 403, (method, url, r.status_code)
        r = web.client.open(url, method=method, json=form,
                            headers={"X-CSRFToken": web.csrf(), "Accept": "application/json"})
        assert r.status_code == 403, (method, url, r.status_code)
    assert snapshot(kefu) == before


def test_the_auditor_reads_everything(world, kefu):
    web = Web(kefu).login_as("auditor")
    for url in ("/audit", f"/audit/{world['ref']}", f"/audit/{world['ref']}.csv", f"/audit/{world['ref']}.json",
                "/audit/export.csv", "/audit/export.json", f"/instances/{world['ref']}",
                f"/customers/{world['customer_id']}"):
        assert web.get(url).status_code == 200, url


@pytest.mark.parametrize("who", ["agent", "department", "technician", "qa"])
def test_audit_pages_need_an_oversight_role(world, kefu, who):
    web = Web(kefu).login_as(who)
    for url in ("/audit", f"/audit/{world['ref']}", f"/audit/{world['ref']}.json", "/audit/export.csv"):
        assert web.get(url).status_code == 403, (who, url)


def test_a_user_with_another_role_besides_auditor_is_not_read_only(world, kefu):
    kefu.users.add("lead", ["supervisor", "auditor"])
    r = Web(kefu).login_as("lead").post(f"/tasks/{world['task_id']}/reassign", {"to_user": "department"})
    assert r.status_code == 302


# --------------------------------------------------------------------------------------------- the CLI
CLI_ARGS = {
    "init": [], "deploy": [], "users add": ["mallory", "--role", "agent"], "demo": [],
    "customers add": ["--data", '{"name": "x"}'], "customers update": ["{customer_id}", "--data", '{"name": "x"}'],
    "start": ["complaint"], "claim": ["{task_id}"], "unclaim": ["{task_id}"],
    "reassign": ["{task_id}", "--to", "department"], "escalate": ["{task_id}", "--reason", "x"],
    "complete": ["{task_id}", "--data", '{"handling_result": "x"}'], "timers fire-due": [],
    "incident retry": ["{instance}"], "clock advance": ["1d"], "calendar set": ["2026-12-01", "holiday"],
    "calendar unset": ["2026-12-01"], "scheduler": ["--until-idle"], "serve": ["--port", "1"],
    "web": ["--bind", "127.0.0.1:1"], "users token": ["agent"], "db upgrade": [], "db downgrade": ["base"],
    "kpi report": ["--month", "2026-10"], "qa sample": ["--month", "2026-10"], "qa sample-size": ["5"],
    "migrate": ["{instance}", "--to", "2"], "users unlock": ["agent"], "external fetch": ["--worker", "w"],
    "external complete": ["{task_id}", "--worker", "w"],
    "external fail": ["{task_id}", "--worker", "w", "--error", "x"],
    "external extend-lock": ["{task_id}", "--worker", "w", "--lock", "5m"], "message": ["paid"],
    "handover start": ["--to", "agent2"], "handover accept": ["1"],
    "shifts set": ["早班", "--start", "07:00", "--end", "15:00"], "shifts remove": ["夜班"],
    "repeats window": ["--days", "30"],
    "care plan": [], "care cycles": ["--set", "vip=2"], "events add": ["--name", "x", "--date", "2026-12-01"],
    "events invite": ["1", "--attendee", "1"], "events feedback": ["1", "--customer", "1", "--text", "x"],
    "hand-over": ["{instance}", "--to", "agent2", "--reason", "x"], "users deactivate": ["agent"],
    "users activate": ["agent"],
    "note": ["{instance}", "--text", "x"], "contact": ["{instance}", "--channel", "phone", "--outcome", "x"],
    "attach": ["{instance}", __file__],
    "users notify": ["agent", "--email", "a@example.test"], "notifications deliver": [],
    "notifications retry": ["1"],
}


def test_every_cli_command_is_classified():
    paths = {path for path, _ in _command_path(cli.build_parser())}
    assert paths == MUTATING | READ_ONLY, "classify new commands in engine/cli/common.py (MUTATING/READ_ONLY)"
    assert set(CLI_ARGS) == MUTATING


def test_every_changing_cli_command_refuses_the_auditor(world, kefu, monkeypatch, capsys):
    monkeypatch.setenv("KEFU_DATABASE_URL", kefu.config.database_url)
    monkeypatch.setenv("KEFU_ENV", "test")
    monkeypatch.setenv("KEFU_CLOCK", "2026-11-23T09:00:00+08:00")
    before = snapshot(kefu)
    for path, args in CLI_ARGS.items():
        argv = path.split() + [re.sub(r"\{(\w+)\}", lambda m: str(world[m[1]]), a) for a in args] + ["--as", "auditor"]
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 3 and "may only read" in err, (argv, code, err)
    assert snapshot(kefu) == before
    clock_mod.use(kefu.clock)  # the in-process CLI made its own clock the active one
