"""Shared fixtures: a real SQLite database per test (PostgreSQL where a test asks, see tests/pg.py), the real
diagrams, a pinned clock, demo users."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from engine import Clock
from engine.clock import SHANGHAI
from tests.pg import pg_server, pg_url  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = ROOT / "processes"
DIAGRAMS = Path(__file__).resolve().parent / "diagrams"
MONDAY_9AM = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)


@pytest.fixture
def clock():
    return Clock(MONDAY_9AM)


@pytest.fixture
def db_url(request, tmp_path):
    """SQLite by default; ``@on_both_databases`` (tests/pg.py) runs a test on PostgreSQL too."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"sqlite:///{tmp_path / 'kefu.db'}"


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


def pytest_configure(config):  # audit (issue 6)
    config.addinivalue_line("markers", "no_replay: the test corrupts instances on purpose; skip the replay check")


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
