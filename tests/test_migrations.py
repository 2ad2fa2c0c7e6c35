"""Schema migrations (engine/store/schema.py) on SQLite and PostgreSQL: empty → head gives exactly the models'
schema, a database from before migrations is stamped and upgraded with its data kept, concurrent starts
migrate once, downgrade to base and back works, and ``kefu db`` reports it all."""
from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import inspect, text

from engine import Config, Kefu
from engine.store import schema as migrate
from engine.cli import main
from engine.store.tables import Base
from engine.store.database import Database

DRIFT_HELP = ("the models in engine/store/tables.py and the migrations in engine/store/migrations/versions disagree; "
              "write a revision with: bash scripts/new-migration.sh \"what changed\" (then read and commit it)")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path):
    """A Database with no tables at all."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    db = Database(url)
    yield db
    db.dispose()


def tables(db) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def test_upgrade_from_empty_gives_exactly_the_models_schema(empty_db):
    assert tables(empty_db) == set()
    r = migrate.upgrade(empty_db)
    assert r == {"from": None, "to": migrate.head(), "stamped": False}
    assert migrate.current(empty_db) == migrate.head()
    diffs = migrate.differences(empty_db)
    assert diffs == [], f"{DRIFT_HELP}\ndifferences: {diffs}"
    assert tables(empty_db) == set(Base.metadata.tables) | {"alembic_version"}
    # A second upgrade is a no-op.
    assert migrate.upgrade(empty_db) == {"from": migrate.head(), "to": migrate.head(), "stamped": False}


def test_a_database_from_before_migrations_is_stamped_and_upgraded_keeping_its_data(empty_db, clock):
    # What an earlier Kefu left behind: the baseline tables, no alembic_version.
    migrate.upgrade(empty_db, migrate.BASELINE)
    with empty_db.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("INSERT INTO customers (name, phone, phone_digits, vip, created_at, updated_at) "
                          "VALUES ('老客户', '021-1234 5678', '02112345678', :t, :now, :now)"),
                     {"t": True, "now": "2026-11-20 01:00:00"})
        conn.execute(text("INSERT INTO users (name, roles, groups, active, created_at) "
                          "VALUES ('agent', 'agent', '', :t, :now)"), {"t": True, "now": "2026-11-20 01:00:00"})
    assert migrate.current(empty_db) is None

    k = Kefu(Config(database_url=empty_db.url, env="test"), database=empty_db, clock=clock)
    r = k.init()
    assert r["stamped"] is True and r["from"] == migrate.BASELINE and r["to"] == migrate.head()
    assert migrate.current(empty_db) == migrate.head()
    assert migrate.differences(empty_db) == [], DRIFT_HELP

    # The data is still there and the service works on it.
    found = k.customers.find("021-1234")
    assert [c["name"] for c in found] == ["老客户"] and found[0]["vip"] is True
    k.definitions.deploy()
    started = k.instances.start("consultation", "agent", customer_id=found[0]["id"])
    assert started["customer_id"] == found[0]["id"] and started["tasks"]


def test_concurrent_starts_migrate_the_database_once(empty_db):
    results, errors = [], []

    def start():
        db = Database(empty_db.url)
        try:
            results.append(migrate.upgrade(db))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r["from"] is None for r in results) == [False, False, False, True], results
    assert migrate.current(empty_db) == migrate.head()
    with empty_db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_downgrade_to_base_and_upgrade_again(empty_db):
    migrate.upgrade(empty_db)
    assert migrate.downgrade(empty_db, "base") == {"from": migrate.head(), "to": None}
    assert tables(empty_db) <= {"alembic_version"}
    migrate.upgrade(empty_db)
    assert migrate.differences(empty_db) == [], DRIFT_HELP


def test_the_revisions_form_one_line_from_the_baseline():
    revs = migrate.history()
    assert revs[-1]["revision"] == migrate.BASELINE and revs[-1]["down_revision"] is None
    assert [r["revision"] for r in revs if r["head"]] == [migrate.head()], "more than one head: merge them"


def test_kefu_db_commands(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("KEFU_DATABASE_URL", url)

    def run(*argv):
        rc = main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err

    rc, out, _ = run("db", "current", "--json")
    assert rc == 0 and json.loads(out) == {"current": None, "head": migrate.head(), "up_to_date": False,
                                           "needs_stamp": False}
    rc, out, _ = run("db", "upgrade")
    assert rc == 0 and f"(empty) -> {migrate.head()}" in out
    rc, out, _ = run("db", "current")
    assert rc == 0 and "(up to date)" in out
    rc, out, _ = run("db", "history")
    assert rc == 0 and f"(base) -> {migrate.BASELINE}" in out
    rc, _, err = run("db", "upgrade", "no_such_revision")
    assert rc != 0 and "no_such_revision" in err and "Traceback" not in err


def test_commands_on_an_outdated_database_ask_for_an_upgrade(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    migrate.upgrade(db, migrate.BASELINE)
    db.dispose()
    monkeypatch.setenv("KEFU_DATABASE_URL", url)
    if migrate.head() == migrate.BASELINE:
        pytest.skip("only one revision: nothing to be behind")
    assert main(["users", "list"]) == 1
    assert "run 'kefu db upgrade'" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["users", "list"]) == 0


def test_upgrading_to_the_ledger_backfills_it_so_older_records_verify(empty_db, clock):
    """Revision 0003 adds the global audit ledger: instances recorded before it get one entry for their
    current head, so verify passes on them and still catches a later change."""
    from engine.services.demo import seed_demo
    k = Kefu(Config(database_url=empty_db.url, env="test"), database=empty_db, clock=clock)
    k.init()
    k.definitions.deploy()
    seed_demo(k, password=None)
    tickets = [k.instances.start("consultation", "agent")["ticket_no"] for _ in range(3)]
    migrate.downgrade(empty_db, "0002_api_tokens")
    assert "audit_ledger" not in tables(empty_db)
    migrate.upgrade(empty_db)
    assert k.audit.verify() == []
    with empty_db.engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_ledger")).scalar() == 3
        # the append-only triggers came back with the revision
        with pytest.raises(Exception, match="append-only"):
            with conn.begin_nested():
                conn.execute(text("DELETE FROM audit_ledger"))
    k.instances.start("consultation", "agent")
    assert k.audit.verify() == [] and len(tickets) == 3
