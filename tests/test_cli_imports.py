"""``kefu tasks`` answers without the heavy imports (issue 23): listing tasks needs the database and the
stored diagrams' task forms, not SpiffWorkflow, the web stack, Alembic or lxml. These tests check the property
(what a command imports) and that the light way gives the same answers as the parse it replaces, not speed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.bpmn import catalogue
from engine.bpmn.diagram import parse_diagram
from engine.errors import DefinitionError
from tests.conftest import ROOT

HEAVY = ("SpiffWorkflow", "flask", "werkzeug", "jinja2", "alembic", "lxml", "pygments", "apscheduler",
         # ``kefu tasks`` and ``kefu task`` read in plain SQL on a DB-API connection (engine.store.plain)
         "sqlalchemy")
# What ``kefu tasks`` reads without (engine.services.queue over engine.store.light): SQLAlchemy (above) and so
# its ORM, the mapped classes, and the services that change instances.
NOT_FOR_A_LIST = ("sqlalchemy.orm", "engine.store.tables", "engine.services.tasks", "engine.services.runner",
                  "engine.services.projections", "engine.services.casefile", "engine.store.chain",
                  "engine.store.versions", "engine.records")
DIAGRAMS = sorted([*(ROOT / "processes").glob("*.bpmn"), *(ROOT / "tests" / "diagrams").rglob("*.bpmn")])


def _loaded_after(code: str, env: dict) -> dict:
    """Run ``code`` in a fresh interpreter; the heavy top-level packages it loaded and what it printed."""
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({NOT_FOR_A_LIST!r}))))")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    *out, loaded, modules = p.stdout.strip().splitlines()
    return {"loaded": json.loads(loaded), "modules": json.loads(modules), "out": "\n".join(out)}


@pytest.fixture
def cli_db(kefu, db_url, scenario):
    """The deployed diagrams and demo users, with tickets of every kind waiting for the agent."""
    for kind in ("complaint", "repair", "consultation"):
        scenario.start(kind)
    return {**os.environ, "KEFU_DATABASE_URL": db_url, "KEFU_ENV": "test"}


def test_kefu_tasks_imports_no_spiffworkflow_web_stack_or_alembic(kefu, cli_db):
    expected = kefu.tasks.ready(actor="agent")
    assert len(expected) == 3
    r = _loaded_after("from engine.cli import main\nrc = main(['tasks', '--as', 'agent', '--json'])\n"
                      "assert rc == 0, rc", cli_db)
    assert r["loaded"] == [], f"kefu tasks imported {r['loaded']}"
    assert r["modules"] == [], f"kefu tasks imported {r['modules']}"
    assert json.loads(r["out"]) == json.loads(json.dumps(expected, ensure_ascii=False, default=str))
    # the text form too, and one task in full (its form read from the stored diagram)
    r = _loaded_after("from engine.cli import main\nassert main(['tasks', '--as', 'agent']) == 0\n"
                      f"assert main(['task', {expected[0]['id']!r}, '--json']) == 0", cli_db)
    assert r["loaded"] == []
    assert expected[0]["ticket_no"] in r["out"] and expected[0]["form"], r["out"]


def test_kefu_tasks_maps_no_table_whatever_it_is_asked(kefu, cli_db):
    """The filters, the text form and the refusals (unknown user, unknown ticket) of the light way."""
    ticket = kefu.tasks.ready(actor="agent")[1]["ticket_no"]
    r = _loaded_after("from engine.cli import main\n"
                      f"assert main(['tasks', '--as', 'agent', '--instance', {ticket!r}]) == 0\n"
                      "assert main(['tasks', '--role', 'agent', '--json']) == 0\n"
                      "assert main(['tasks', '--as', 'nobody']) == 3\n"
                      "assert main(['tasks', '--as', 'agent', '--instance', 'TS99']) == 4\n"
                      "assert main(['tasks', '--instance', str(2**40)]) == 4\n", cli_db)
    assert r["loaded"] == [] and r["modules"] == [], r
    assert ticket in r["out"] and len(r["out"].splitlines()) > 1


def _kinds():
    from sqlalchemy import Boolean, Integer, String, Text
    from engine.store import light
    from engine.store.types import UTCDateTime
    return {light.TEXT: (String, Text), light.INTEGER: (Integer,), light.BOOLEAN: (Boolean,),
            light.INSTANT: (UTCDateTime,)}


def test_the_light_columns_are_the_mapped_ones():
    """engine.store.light names columns of the mapped tables, with the kind of their types: one schema."""
    from engine.store import light
    from engine.store.tables import Base
    kinds = _kinds()
    for table in light.ALL:
        mapped = Base.metadata.tables[table.name]
        for name, kind in table.columns.items():
            assert name in mapped.c, f"{table.name}.{name}"
            assert isinstance(mapped.c[name].type, kinds[kind]), f"{table.name}.{name}: {mapped.c[name].type!r}"
            # a type that stores as one of the kinds, not a subclass storing otherwise
            assert type(mapped.c[name].type) in kinds[kind], f"{table.name}.{name}"


@pytest.fixture
def statements(monkeypatch):
    """Every statement the plain reads run (engine.store.plain), as written (``:name`` parameters)."""
    from engine.store import plain
    seen = []
    run = plain.Connection.execute

    def recording(self, sql, params=None):
        seen.append(sql)
        return run(self, sql, params)
    monkeypatch.setattr(plain.Connection, "execute", recording)
    return seen


def _check_names(statements):
    """Every identifier the statements name (they quote them all) is the table they read or one of its mapped
    columns."""
    import re
    from engine.store.tables import Base
    assert statements
    for sql in statements:
        table = re.search(r'FROM "(\w+)"', sql)[1]
        mapped = Base.metadata.tables[table]
        for name in re.findall(r'"(\w+)"', sql):
            assert name == table or name in mapped.c, f"{name} is not a column of {table}: {sql}"
        # and nothing is named without quotes where a column could be
        bare = re.sub(r'"\w+"|:\w+|\'[^\']*\'', "", sql)
        assert not {w.lower() for w in re.findall(r"[A-Za-z_]\w*", bare)} - SQL_WORDS, sql


SQL_WORDS = {"select", "from", "where", "and", "or", "in", "is", "not", "null", "order", "by"}


def test_the_light_list_shows_what_the_mapped_rows_show(kefu, scenario, statements):
    """A task of the list (and one task: ``TaskService.get``) is the task the ORM's rows give (types too: aware
    datetimes, booleans), for every user, with lanes, candidates, claims, deadlines and a completed task; the
    plain SQL names only mapped columns."""
    from engine.services import shapes
    from engine.store.tables import HumanTask, Instance
    from tests import test_complaint as complaint
    for kind in ("complaint", "repair", "consultation", "complaint"):
        scenario.start(kind)
    first = kefu.tasks.ready(actor="agent")[0]
    kefu.tasks.unclaim(first["id"], "agent")
    kefu.tasks.claim(next(t["id"] for t in kefu.tasks.ready(actor="agent") if not t["assignee"]), "agent2")
    complaint.register(scenario)
    transfer = scenario.task("transfer")
    complaint.transfer(scenario, accept=False)  # a deadline, a department's task, a completed task
    seen = 0
    for actor in (None, "agent", "agent2", "supervisor", "department", "technician"):
        listed = kefu.tasks.ready(actor=actor)
        with kefu.db.reading() as s:
            for t in listed + [kefu.tasks.get(transfer["id"])]:
                row = s.get(HumanTask, t["id"])
                assert t == shapes.task_dict(kefu.ctx, row, s.get(Instance, row.instance_id))
                assert kefu.tasks.get(t["id"], actor="supervisor") == t
                assert isinstance(t["vip"], bool) and t["created_at"].endswith("+08:00")
                seen += 1
    assert seen >= 16
    done = kefu.tasks.get(transfer["id"], actor="agent")
    assert done["completed_by"] == "agent" and done["ended_at"] and done["state"] != "ready"
    assert [t["due_at"] is not None for t in kefu.tasks.ready(actor="department")] == [True]
    _check_names(statements)


def test_kefu_tasks_and_task_answer_as_the_service_for_every_user(kefu, cli_db, scenario):
    """``kefu tasks`` and ``kefu task`` (their own DB-API connection, no SQLAlchemy) give what the service
    gives (a pooled connection) for each user: a role's queue, a claim, another agent's claim, a department's
    transferred task, a user who may not see a task, an unknown and an inactive user."""
    from engine.errors import KefuError
    from tests import test_complaint as complaint
    complaint.register(scenario)
    complaint.transfer(scenario, accept=False)
    claimed = kefu.tasks.ready(actor="agent")[0]["id"]
    kefu.tasks.claim(claimed, "agent")
    kefu.users.set_active("technician2", False)
    calls, expected = [], []
    for actor in ("agent", "agent2", "supervisor", "department", "technician", "nobody", "technician2"):
        calls.append(["tasks", "--as", actor, "--json"])
        calls.append(["task", claimed, "--as", actor, "--json"])
    calls += [["tasks", "--json"], ["tasks", "--role", "department", "--json"],
              ["tasks", "--instance", scenario.ticket_no, "--as", "department", "--json"],
              ["task", "0f2c3a52-0000-4000-8000-000000000000", "--json"], ["task", "nonsense", "--json"]]

    def service(argv):
        name, *rest = argv
        options = dict(zip(rest[1 if name == "task" else 0::2], rest[2 if name == "task" else 1::2]))
        try:
            if name == "task":
                value = kefu.tasks.get(rest[0], actor=options.get("--as"))
            else:
                value = kefu.tasks.ready(actor=options.get("--as"), instance=options.get("--instance"),
                                         role=options.get("--role"))
        except KefuError as exc:
            return exc.exit_code, {"error": exc.to_dict()}
        return 0, json.loads(json.dumps(value, ensure_ascii=False, default=str))
    expected = [service(argv) for argv in calls]
    assert {rc for rc, _ in expected} == {0, 3, 4}
    assert sum(1 for rc, v in expected if rc == 0 and v) >= 8
    r = _loaded_after("import contextlib, io\nfrom engine.cli import main\nanswers = []\n"
                      f"for argv in {calls!r}:\n"
                      "    out, err = io.StringIO(), io.StringIO()\n"
                      "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
                      "        rc = main(argv)\n"
                      "    answers.append([rc, json.loads(out.getvalue() or err.getvalue())])\n"
                      "print(json.dumps(answers))", cli_db)
    assert r["loaded"] == [] and r["modules"] == [], r
    for argv, (rc, value), want in zip(calls, json.loads(r["out"]), expected):
        assert (rc, value) == want, argv


def test_the_facade_and_the_cli_import_nothing_heavy_until_used(cli_db):
    r = _loaded_after("import engine, engine.cli\nfrom engine import Kefu\nk = Kefu()\nk.users, k.customers\n"
                      "engine.cli.build_parser()", cli_db)
    assert r["loaded"] == ["sqlalchemy"]
    # a command that runs a workflow still gets SpiffWorkflow, and its timers read Kefu's clock
    r = _loaded_after("from engine import Kefu, clock\nk = Kefu()\nk.runner\n"
                      "import SpiffWorkflow.bpmn.specs.event_definitions.timer as t\n"
                      "assert t.datetime.now is not None and t.datetime.__name__ == '_SpiffDatetime'", cli_db)
    assert "SpiffWorkflow" in r["loaded"]


def test_a_changing_command_and_init_still_work_from_the_lazy_facade(tmp_path):
    env = {**os.environ, "KEFU_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}", "KEFU_ENV": "test"}

    def kefu_cli(*args):
        p = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout
    kefu_cli("init")
    kefu_cli("deploy", str(ROOT / "processes"), "--as", "system")
    kefu_cli("demo")
    started = json.loads(kefu_cli("start", "consultation", "--as", "agent", "--json"))
    listed = json.loads(kefu_cli("tasks", "--as", "agent", "--json"))
    assert [t["id"] for t in listed] == [t["id"] for t in started["tasks"]]
    assert listed[0]["form"] and listed[0]["ticket_no"] == started["ticket_no"]


@pytest.mark.parametrize("path", DIAGRAMS, ids=lambda p: p.name)
def test_the_catalogue_reads_what_the_parser_puts_in_the_task_specs(path):
    """Every task a task row can name (SpiffWorkflow's manual tasks of the process itself): the same form,
    English name, documentation and rule IDs from the stored XML as from the parsed spec."""
    import hashlib
    data = path.read_bytes()

    def resolver(pid):  # a called process: a diagram of the same folder
        for other in path.parent.glob("*.bpmn"):
            if f'process id="{pid}"' in other.read_text(encoding="utf-8"):
                return other.read_bytes(), other.name, hashlib.sha256(other.read_bytes()).hexdigest()
        return None
    try:
        parsed = parse_diagram(data, path.name, resolver=resolver)
    except DefinitionError:
        pytest.skip("a diagram the tests keep to be refused")
    for pid, (spec, _subs) in parsed.specs.items():
        tasks = catalogue.read(data.decode("utf-8"), pid)
        for name, tspec in spec.task_specs.items():
            if not getattr(tspec, "manual", False):
                continue
            assert catalogue.task_info(*tasks.get(name, (None, None, None))) == catalogue.spec_info(tspec), \
                f"{path.name} {pid} {name}"
        assert catalogue.spec_info(None) == catalogue.task_info(None, None, None)


def test_the_schema_check_reads_the_head_revision_without_alembic():
    from engine.store import schema
    assert schema._scanned_head() == schema.script_directory().get_current_head()


def _parsed(parser, argv):
    """What the parser makes of ``argv``: its namespace (without the functions), or its exit code with what it
    printed."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code, out.getvalue(), err.getvalue()
    return {k: v for k, v in vars(args).items() if k != "func"} | {"func": args.func.__qualname__}


@pytest.mark.parametrize("argv", [
    ["tasks", "--as", "agent", "--json"], ["tasks", "--help"], ["tasks", "--bogus"], ["tasks", "--role"],
    ["task", "x", "--json"], ["start", "complaint", "--as", "agent"], ["start", "--help"], ["start"],
    ["users", "list"], ["users", "--help"], ["users", "add", "x", "--role", "agent", "--as", "system"],
    ["users", "notify", "--help"], ["handover", "start", "--help"], ["kpi", "--help"], ["kpi", "report", "--help"],
    ["audit", "search", "--overdue"], ["audit"], ["init", "--json"], ["db", "--help"], ["hand-over", "--help"],
])
def test_the_parser_of_one_command_parses_it_as_the_whole_parser(argv):
    from engine.cli import build_parser
    assert _parsed(build_parser(only=argv[0]), argv) == _parsed(build_parser(), argv)


def test_the_parser_of_each_command_helps_as_the_whole_parser():
    from engine.cli import COMMANDS, build_parser
    whole = build_parser()
    for name in COMMANDS:
        assert _parsed(build_parser(only=name), [name, "--help"]) == _parsed(whole, [name, "--help"]), name


def test_kefu_tasks_refuses_a_missing_or_old_database_clearly_and_creates_nothing(tmp_path, db_url):
    """No database file (none is made), a database at an older revision, an unreachable server, a URL only
    SQLAlchemy reads: a message and exit code 1, as the commands through SQLAlchemy give, never a traceback."""
    missing = tmp_path / "missing.db"
    env = {**os.environ, "KEFU_ENV": "test"}
    probe = ("import contextlib, io\nfrom engine.cli import main\nanswers = []\n"
             "for url in {urls!r}:\n"
             "    os.environ['KEFU_DATABASE_URL'] = url\n"
             "    err = io.StringIO()\n"
             "    with contextlib.redirect_stderr(err):\n"
             "        answers.append([main(['tasks', '--as', 'agent']), err.getvalue()])\n"
             "print(json.dumps(answers))")
    from engine.store import plain
    conn = plain.connect(db_url)  # this test's own database (SQLite or PostgreSQL), put back a revision
    conn.dbapi.execute("UPDATE alembic_version SET version_num = '0001_baseline'")
    conn.close()
    urls = [f"sqlite:///{missing}", "postgresql://kefu@127.0.0.1:1/kefu", db_url]
    r = _loaded_after("import os\n" + probe.format(urls=urls), env)
    assert r["loaded"] == [] and not missing.exists()
    answers = json.loads(r["out"])
    assert answers[0] == [1, f"kefu: error: the database sqlite:///{missing} has no Kefu schema yet; run 'kefu init'\n"]
    assert answers[1][0] == 1 and answers[1][1].startswith("kefu: error: database error: connection") \
        and "Traceback" not in answers[1][1], answers[1]
    assert answers[2][0] == 1 and "is at schema revision 0001_baseline, this Kefu needs" in answers[2][1]
    # a URL this module leaves to SQLAlchemy: its own message, as before
    r = _loaded_after("import os, contextlib, io\nfrom engine.cli import main\nerr = io.StringIO()\n"
                      "with contextlib.redirect_stderr(err):\n    rc = main(['tasks'])\n"
                      "print(json.dumps([rc, err.getvalue()]))", {**env, "KEFU_DATABASE_URL": "bogus"})
    assert json.loads(r["out"]) == [1, "kefu: error: database error: Could not parse SQLAlchemy URL from given "
                                       "URL string\n"]


def test_the_plain_statements_take_psycopg_parameters_on_postgresql():
    from engine.store import plain
    pg, lite = plain.Connection(None, "postgresql"), plain.Connection(None, "sqlite")
    sql = "SELECT \"id\" FROM \"t\" WHERE \"a\" = :a AND \"b\"::text LIKE '5%' AND \"c\" IN (:c_0, :c_1)"
    assert pg.statement(sql) == ("SELECT \"id\" FROM \"t\" WHERE \"a\" = %(a)s AND \"b\"::text LIKE '5%%' "
                                 "AND \"c\" IN (%(c_0)s, %(c_1)s)")
    assert lite.statement(sql) == sql
    assert plain.in_list("c", ["x", "y"]) == ("(:c_0, :c_1)", {"c_0": "x", "c_1": "y"})
    assert plain.in_list("c", []) == ("(NULL)", {})
