"""Shared fixtures: a real SQLite database per test (PostgreSQL where a test asks, see tests/pg.py), the real
diagrams, a pinned clock, demo users."""
from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from engine import Clock
from engine.clock import SHANGHAI
from tests.pg import pg_server, pg_template, pg_url, pg_url_at_head, pg_deployed_template, pg_url_deployed  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ROOT / "processes"
DIAGRAMS = Path(__file__).resolve().parent / "diagrams"
MONDAY_9AM = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)
# The database every ``db_url`` test runs on: ``sqlite`` (default) or ``postgresql`` (scripts/test.sh runs both).
TEST_DATABASE_ENV = "KEFU_TEST_DATABASE"
TEST_DATABASE = os.environ.get(TEST_DATABASE_ENV, "sqlite").strip().lower() or "sqlite"
if TEST_DATABASE not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"{TEST_DATABASE_ENV} must be 'sqlite' or 'postgresql', not {TEST_DATABASE!r}")
on_postgresql = TEST_DATABASE == "postgresql"


def sqlite_only(reason: str):
    """Mark a test that is about SQLite itself: skipped on the PostgreSQL pass, with the reason."""
    return pytest.mark.skipif(on_postgresql, reason=f"SQLite-specific: {reason}")


# Set by scripts/test.sh on its SQLite pass: the PostgreSQL pass follows and runs the PostgreSQL-only tests.
PG_PASS_FOLLOWS = os.environ.get("KEFU_TEST_POSTGRESQL_PASS_FOLLOWS") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "postgresql_only: runs on its own PostgreSQL database whatever "
                                       "KEFU_TEST_DATABASE says (scripts/test.sh runs it in the PostgreSQL pass)")
    config.addinivalue_line("markers", "no_replay: the test corrupts instances on purpose; skip the replay check")


def pytest_collection_modifyitems(config, items):
    """On the PostgreSQL pass the SQLite half of ``@on_both_databases`` already ran in the SQLite pass; on a
    SQLite pass followed by a PostgreSQL one, the ``postgresql_only`` tests wait for that pass."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if on_postgresql:
            (drop if params.get("db_url") == "sqlite" else keep).append(item)
        else:
            (drop if PG_PASS_FOLLOWS and item.get_closest_marker("postgresql_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A SQLite file migrated to head once per session; each test's database starts as a copy of it."""
    from engine.store import schema as migrate
    from engine.store.database import Database
    path = tmp_path_factory.mktemp("template") / "kefu.db"
    db = Database(f"sqlite:///{path}")
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()  # folds the write-ahead log back into the file
    return path


@pytest.fixture(scope="session")
def sqlite_deployed_template(sqlite_template, tmp_path_factory):
    """``sqlite_template`` with the real diagrams deployed and the demo users added (at ``MONDAY_9AM``), as
    the ``kefu`` fixture sets up every test's database: copied, not redone, per test."""
    from tests.factories import make_kefu
    path = tmp_path_factory.mktemp("deployed") / "kefu.db"
    shutil.copyfile(sqlite_template, path)
    make_kefu(f"sqlite:///{path}", Clock(MONDAY_9AM)).db.dispose()
    return path


@pytest.fixture(scope="session")
def snapshots(request):
    """Databases an expensive seeding left, kept for the session (see ``from_snapshot``)."""
    kept: dict = {}
    yield kept
    for snap in kept.values():
        if snap["kind"] == "postgresql":
            request.getfixturevalue("pg_server").drop_database(snap["source"])


def from_snapshot(request, kefu, name: str, seed):
    """``seed(kefu)`` runs once per session and database kind; later tests get a copy of the database it left,
    with the clock where it stopped and the scenarios it returned bound to their own ``kefu``. Use it only for a
    seed that depends on nothing but the deployed diagrams, the demo users and the pinned clock."""
    import copy

    from sqlalchemy.engine import make_url
    kept = request.getfixturevalue("snapshots")
    url = make_url(kefu.config.database_url)
    kind = url.get_backend_name()
    snap = kept.get((name, kind))
    if snap is None:
        result = seed(kefu)
        kefu.db.dispose()  # SQLite folds its write-ahead log back; PostgreSQL copies only an idle database
        if kind == "sqlite":
            source = Path(url.database).with_name(f"snapshot-{name}.db")
            shutil.copyfile(url.database, source)
        else:
            source = request.getfixturevalue("pg_server").create_database(template=url.database)
        kept[(name, kind)] = {"kind": kind, "source": source, "result": result, "now": kefu.clock.now()}
        return result
    kefu.db.dispose()
    if kind == "sqlite":
        for suffix in ("-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
        shutil.copyfile(snap["source"], url.database)
    else:
        server = request.getfixturevalue("pg_server")
        with server.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{url.database}" TEMPLATE "{snap["source"]}"')
    kefu.clock.set(snap["now"])

    def rebind(value):
        if isinstance(value, dict):
            return {k: rebind(v) for k, v in value.items()}
        if hasattr(value, "base") and hasattr(value, "instance_id"):  # a tests.factories.Scenario
            value = copy.copy(value)
            value.base = kefu
        return value
    return rebind(snap["result"])


@pytest.fixture
def clock():
    return Clock(MONDAY_9AM)


# The statutory working-day calendar (chinese-calendar) the tests in this process see ends with 2026. The
# suite's clock lives in November 2026 and its T2 tests rely on "next year's official calendar is not known
# yet" (2027), while a release of chinese-calendar adds each new year: capping the known years keeps those
# tests true whatever the installed release knows beyond 2026. Tests that run ``kefu`` in a subprocess cannot
# be capped and use a year no release knows (2099). tests/test_timers.py checks that the installed release
# has the 2026 facts the suite relies on (pyproject.toml asks for a release that has them).
LAST_STATUTORY_YEAR = 2026


@pytest.fixture(autouse=True)
def statutory_calendar_ends_2026(monkeypatch):
    from engine import calendar
    first, last = calendar.LIBRARY_YEARS
    monkeypatch.setattr(calendar, "LIBRARY_YEARS", (first, min(last, LAST_STATUTORY_YEAR)))


@pytest.fixture
def db_url(request, tmp_path):
    """A fresh database with the schema at the newest migration: SQLite by default, PostgreSQL when
    ``KEFU_TEST_DATABASE=postgresql``; ``@on_both_databases`` (tests/pg.py) runs a test on both.

    A test that uses ``kefu`` gets the database that fixture would make (diagrams deployed, demo users) as a
    copy of a per-session template."""
    deployed = "kefu" in request.fixturenames
    if getattr(request, "param", TEST_DATABASE) == "postgresql":
        return request.getfixturevalue("pg_url_deployed" if deployed else "pg_url_at_head")
    path = tmp_path / "kefu.db"
    shutil.copyfile(request.getfixturevalue("sqlite_deployed_template" if deployed else "sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture
def kefu(request, db_url, clock):
    """The engine on a fresh database with the real diagrams deployed and the demo users (see ``db_url``)."""
    from engine import Config, Kefu
    k = Kefu(Config(database_url=db_url, env="test"), clock=clock)
    k.init()
    yield k
    # audit (issue 6): every instance a test created must rebuild from its record (kefu audit replay)
    try:
        if request.node.get_closest_marker("no_replay") is None and not getattr(request.node, "kefu_failed", 0):
            mismatches = [r for r in k.audit.replay() if not r["matches"]]
            assert not mismatches, f"replay of the recorded events does not match the stored state: {mismatches}"
    finally:
        k.live.stop()  # live pages (issue 20): a stream's LISTEN connection on PostgreSQL
        k.db.dispose()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):  # audit (issue 6): no replay check after a failed test
    report = yield
    if report.when == "call" and report.failed:
        item.kefu_failed = True
    return report


@pytest.fixture
def scenario(kefu):
    from tests.factories import Scenario
    return Scenario(kefu)


@pytest.fixture
def web(kefu):
    from tests.webclient import Web
    return Web(kefu)
