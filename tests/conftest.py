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
def kefu(db_url, clock):
    from tests.factories import make_kefu
    k = make_kefu(db_url, clock)
    yield k
    k.db.dispose()


@pytest.fixture
def scenario(kefu):
    from tests.factories import Scenario
    return Scenario(kefu)


@pytest.fixture
def web(kefu):
    from tests.webclient import Web
    return Web(kefu)
