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
from tests.pg import pg_server, pg_template, pg_url, pg_url_at_head  # noqa: F401 - fixtures

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
    from engine import migrate
    from engine.db import Database
    path = tmp_path_factory.mktemp("template") / "kefu.db"
    db = Database(f"sqlite:///{path}")
    try:
        migrate.upgrade(db)
    finally:
        db.dispose()  # folds the write-ahead log back into the file
    return path


@pytest.fixture
def clock():
    return Clock(MONDAY_9AM)


@pytest.fixture
def db_url(request, tmp_path):
    """A fresh database with the schema at the newest migration: SQLite by default, PostgreSQL when
    ``KEFU_TEST_DATABASE=postgresql``; ``@on_both_databases`` (tests/pg.py) runs a test on both."""
    if getattr(request, "param", TEST_DATABASE) == "postgresql":
        return request.getfixturevalue("pg_url_at_head")
    path = tmp_path / "kefu.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture
def kefu(request, db_url, clock):
    from tests.factories import make_kefu
    k = make_kefu(db_url, clock)
    yield k
    # audit (issue 6): every instance a test created must rebuild from its record (kefu audit replay)
    try:
        if request.node.get_closest_marker("no_replay") is None and not getattr(request.node, "kefu_failed", 0):
            from engine.replay import replay_all
            mismatches = [r for r in replay_all(k) if not r["matches"]]
            assert not mismatches, f"replay of the recorded events does not match the stored state: {mismatches}"
    finally:
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
