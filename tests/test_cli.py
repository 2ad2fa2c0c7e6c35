"""The ``kefu`` command as operators and integrations use it: JSON out, errors on stderr, exit codes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.factories import diagram

PINNED = "2026-11-23T09:00:00+08:00"


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory):
    """A database with the mini diagram deployed and the demo users, made once and copied per test."""
    path = tmp_path_factory.mktemp("cli") / "seed.db"
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{path}", "KEFU_ENV": "test", "KEFU_CLOCK": PINNED}
    for args in (("deploy", diagram("mini.bpmn")), ("demo",)):
        subprocess.run([sys.executable, "-m", "engine.cli", *args], check=True, env=env, cwd=ROOT,
                       capture_output=True, timeout=60)
    return path


@pytest.fixture
def seeded(seeded_db, tmp_path):
    import shutil
    shutil.copy(seeded_db, tmp_path / "cli.db")


@pytest.fixture
def kefu_cli(tmp_path):
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "KEFU_ENV": "test",
           "KEFU_CLOCK": PINNED}

    def run(*args, clock=None, expect=0, env_over=None):
        e = {**env, **({"KEFU_CLOCK": clock} if clock else {}), **(env_over or {})}
        p = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, env=e,
                           cwd=ROOT, timeout=60)
        assert p.returncode == expect, (args, p.returncode, p.stdout, p.stderr)
        return p
    return run


def j(p):
    return json.loads(p.stdout)


def test_the_kefu_console_command_is_installed():
    import shutil
    exe = shutil.which("kefu") or shutil.which("kefu", path=str(Path(sys.executable).parent))
    assert exe, "the package's console script 'kefu' is on PATH after pip install -e ."
    p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "deploy" in p.stdout


def test_operator_session_end_to_end(kefu_cli):
    kefu_cli("init")
    deployed = j(kefu_cli("deploy", diagram("mini.bpmn"), "--json"))
    assert deployed[0]["process_id"] == "mini" and deployed[0]["version"] == 1
    kefu_cli("users", "add", "dept1", "--role", "department", "--json")
    kefu_cli("users", "add", "ann", "--role", "agent")
    started = j(kefu_cli("start", "mini", "--as", "ann", "--json", "--data", json.dumps(
        {"customer_name": "张三", "contact_phone": "139", "divisor": 2, "deadline": "2026-11-24T09:00"})))
    assert started["ticket_no"].startswith("MI20261123-") and started["instance_id"] == 1
    tasks = j(kefu_cli("tasks", "--as", "dept1", "--json"))
    assert len(tasks) == 1
    t = tasks[0]
    assert {"id", "instance", "instance_id", "name", "role", "assignee", "due_at", "form"} <= set(t)
    assert t["role"] == "department" and t["due_at"] == "2026-11-24T09:00:00+08:00"
    assert t["form"] == [{"id": "result", "type": "string", "label": "结果", "label_en": None, "required": True}]
    assert j(kefu_cli("tasks", "--as", "ann", "--json")) == []
    assert j(kefu_cli("claim", t["id"], "--as", "dept1", "--json"))["assignee"] == "dept1"
    kefu_cli("complete", t["id"], "--as", "dept1", "--data", '{"result": "已处理"}')
    shown = j(kefu_cli("show", "1", "--json"))
    assert shown["status"] == "completed" and shown["kind"] == "mini" and shown["ticket_no"] == started["ticket_no"]
    assert "task_completed" in [e["type"] for e in shown["events"]]
    assert j(kefu_cli("show", started["ticket_no"], "--json"))["instance_id"] == 1
    assert "audit chain verified" in kefu_cli("audit", "verify").stdout


def test_timers_fire_when_the_pinned_clock_passes_them(seeded, kefu_cli):
    kefu_cli("start", "mini", "--as", "agent", "--data",
             '{"customer_name": "李四", "divisor": 1, "deadline": "2026-11-23T12:00"}')
    assert j(kefu_cli("timers", "fire-due", "--json"))["count"] == 0
    fired = j(kefu_cli("timers", "fire-due", "--json", clock="2026-11-23T12:00:01+08:00"))
    assert fired["count"] == 1 and fired["fired"][0]["timer"] == "timer_handle"
    assert j(kefu_cli("show", "1", "--json"))["status"] == "completed"


@pytest.mark.parametrize("args, code, words", [
    (("start", "mini", "--as", "agent", "--data", "{not json"), 2, "not valid JSON"),
    (("start", "mini", "--as", "agent", "--data", '{"bogus": 1}'), 2, "  bogus: unknown field"),
    (("start", "nosuch", "--as", "agent"), 4, "no deployed process"),
    (("start", "mini", "--as", "auditor"), 3, "auditor may only read"),  # audit (issue 6): read-only guard
    (("complete", "00000000-0000-0000-0000-000000000000", "--as", "agent"), 4, "no task"),
    (("users", "add", "x", "--role", "janitor"), 2, "unknown role"),
    (("show", "999"), 4, "no instance"),
])
def test_errors_go_to_stderr_with_a_nonzero_exit(seeded, kefu_cli, args, code, words):
    p = kefu_cli(*args, expect=code)
    assert words in p.stderr and p.stdout == ""


def test_json_errors_are_machine_readable(seeded, kefu_cli):
    p = kefu_cli("start", "mini", "--as", "agent", "--json", "--data", '{"divisor": "x"}', expect=2)
    err = json.loads(p.stderr)["error"]
    assert err["code"] == "form_invalid" and set(err["errors"]) == {"customer_name", "divisor", "deadline"}


def test_commands_before_init_say_what_to_do(kefu_cli):
    p = kefu_cli("tasks", expect=1)
    assert "kefu init" in p.stderr


def test_a_broken_diagram_fails_deploy_naming_file_and_element(kefu_cli, tmp_path):
    bad = tmp_path / "bad.bpmn"
    bad.write_text(Path(diagram("mini.bpmn")).read_text(encoding="utf-8").replace(
        "ratio = 100 // divisor", "ratio = ().__class__"), encoding="utf-8")
    p = kefu_cli("deploy", str(bad), expect=2)
    assert "bad.bpmn" in p.stderr and "compute" in p.stderr


def test_clock_advance_makes_a_timer_fall_due_and_fires_it(seeded, kefu_cli):
    kefu_cli("start", "mini", "--as", "agent", "--data",
             '{"customer_name": "李四", "divisor": 1, "deadline": "2026-11-24T09:00"}')
    assert j(kefu_cli("clock", "show", "--json"))["now"] == PINNED
    r = j(kefu_cli("clock", "advance", "1d1s", "--json"))
    assert r["now"] == "2026-11-24T09:00:01+08:00" and len(r["fired"]) == 1
    # Every later command sees the advanced time (the offset lives in the database).
    assert j(kefu_cli("clock", "show", "--json"))["offset_seconds"] == 86401
    assert j(kefu_cli("show", "1", "--json"))["status"] == "completed"
    p = kefu_cli("clock", "advance", "soon", expect=2)
    assert "not a duration" in p.stderr


def test_clock_controls_refuse_in_production(seeded, kefu_cli):
    p = kefu_cli("clock", "advance", "3d", expect=3, env_over={"KEFU_ENV": "production"})
    assert "only in 'demo' and 'test'" in p.stderr


def test_calendar_overrides_from_the_command_line(seeded, kefu_cli):
    # 2099: a year no chinese-calendar release knows (the kefu process sees the installed release uncapped).
    st = j(kefu_cli("calendar", "status", "--year", "2099", "--json"))
    assert st["years"] == [{"year": 2099, "source": "weekday-rule", "overrides": 0, "missing": True}]
    p = kefu_cli("calendar", "set", "2099-01-01", "holiday", "--note", "元旦", "--as", "agent", expect=3)
    assert "process_owner" in p.stderr
    kefu_cli("calendar", "set", "2099-01-01", "holiday", "--note", "元旦", "--as", "owner")
    # Thursday 2099-01-01 is a day off now: one working day after 2098-12-31 is Friday 01-02, not 01-01.
    assert j(kefu_cli("calendar", "add", "2098-12-31", "1", "--json"))["due_at"] == "2099-01-02T09:00:00+08:00"
    kefu_cli("calendar", "set", "2099-13-01", "holiday", "--as", "owner", expect=2)


def test_a_scheduler_process_fires_due_timers_and_stops_cleanly(seeded, kefu_cli, tmp_path):
    import signal
    import time
    kefu_cli("start", "mini", "--as", "agent", "--data",
             '{"customer_name": "李四", "divisor": 1, "deadline": "2026-11-23T12:00"}')
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "KEFU_ENV": "test",
           "KEFU_CLOCK": "2026-11-23T13:00:00+08:00"}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "scheduler", "--sweep", "0.5"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if j(kefu_cli("show", "1", "--json", clock="2026-11-23T13:00:00+08:00"))["status"] == "completed":
                break
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert j(kefu_cli("show", "1", "--json"))["status"] == "completed"
    assert "fired 1 timer(s)" in err
    # SpiffWorkflow's task steps, alembic's and APScheduler's INFO stay out of the scheduler's stderr.
    assert not [line for line in err.splitlines() if " INFO " in line and " kefu." not in line], err


def test_long_running_processes_log_kefu_info_and_library_warnings_to_stderr():
    code = ("import logging\n"
            "from engine.logs import configure_logging\n"
            "configure_logging()\n"
            "for name in ('kefu.scheduler', 'spiff.task', 'apscheduler.scheduler', 'alembic.runtime.migration'):\n"
            "    logging.getLogger(name).info('info from %s', name)\n"
            "    logging.getLogger(name).warning('warning from %s', name)\n"
            "logging.getLogger('kefu.engine').error('error from kefu.engine')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0 and p.stdout == "", p.stderr
    said = [line.split(" ", 2)[2] for line in p.stderr.splitlines()]  # without the time stamp
    assert said == ["kefu.scheduler INFO info from kefu.scheduler",
                    "kefu.scheduler WARNING warning from kefu.scheduler",
                    "spiff.task WARNING warning from spiff.task",
                    "apscheduler.scheduler WARNING warning from apscheduler.scheduler",
                    "alembic.runtime.migration WARNING warning from alembic.runtime.migration",
                    "kefu.engine ERROR error from kefu.engine"]


def test_a_supervisor_reassigns_from_the_command_line(seeded, kefu_cli):
    kefu_cli("start", "mini", "--as", "agent", "--data",
             '{"customer_name": "李四", "divisor": 1, "deadline": "2026-11-24T09:00"}')
    kefu_cli("users", "add", "dept2", "--role", "department")
    task = j(kefu_cli("tasks", "--json"))[0]["id"]
    p = kefu_cli("reassign", task, "--as", "agent", "--to", "dept2", expect=3)
    assert "only a supervisor" in p.stderr
    assert j(kefu_cli("reassign", task, "--as", "supervisor", "--to", "dept2", "--json"))["assignee"] == "dept2"


def test_a_reader_that_stops_early_gets_no_traceback_and_the_work_stays_done(seeded, tmp_path):
    """``kefu users add … --json | true``: the pipe's reader is gone before the answer is written."""
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "KEFU_ENV": "test",
           "KEFU_CLOCK": PINNED}
    p = subprocess.Popen([sys.executable, "-m", "engine.cli", "users", "add", "late_reader", "--role", "agent",
                          "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    p.stdout.close()  # nobody reads the answer
    with p.stderr:
        err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    listed = subprocess.run([sys.executable, "-m", "engine.cli", "users", "list", "--json"],
                            capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=60)
    assert "late_reader" in listed.stdout  # what was asked for was done
