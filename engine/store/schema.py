"""Schema migrations (Alembic), configured in code: no alembic.ini, the scripts live in ``engine/migrations``.

``upgrade(db)`` brings any database to the newest revision: an empty one gets the whole schema, a database
made by a version of Kefu from before migrations (its tables exist, ``alembic_version`` does not) is stamped
at the baseline first and then upgraded. Concurrent callers (gunicorn workers, schedulers starting at once)
are serialized: on PostgreSQL by an advisory lock held for the migration's transaction, on SQLite by the
write lock every transaction takes (BEGIN IMMEDIATE); the second one then finds the schema up to date.

New revision after a model change: ``bash scripts/new-migration.sh "message"`` (autogenerates against a
scratch SQLite database at head; read and adjust what it wrote before committing).
"""
from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from pathlib import Path

from engine.errors import InvalidInput

log = logging.getLogger("kefu.migrate")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001_baseline"
# Any fixed 64-bit number: the PostgreSQL advisory lock that serializes migrations of one database.
ADVISORY_LOCK = 0x6B6566755F6D6967  # "kefu_mig"
_head_cache: dict[str, str | None] = {}
# SQLAlchemy is imported by what touches a database here: ``head()`` (the CLI's check that a database is current,
# engine.cli.common) reads the scripts only.


# ``revision = '…'`` and ``down_revision = '…'`` (or None) of a migration script, read without Alembic.
_REVISION = re.compile(r"^(down_)?revision\b[^=\n]*=\s*(?:['\"]([^'\"]+)['\"]|None)\s*$", re.M)


def alembic_config(url: str | None = None, connection=None):
    """Alembic is imported by what migrates or lists migrations; checking that a database is current (every
    command does) reads the scripts' revision lines and the version table itself (``head``, ``current``)."""
    from alembic.config import Config as AlembicConfig
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


def script_directory():
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(alembic_config())


def head() -> str | None:
    if "head" not in _head_cache:
        _head_cache["head"] = _scanned_head() or script_directory().get_current_head()
    return _head_cache["head"]


def _scanned_head() -> str | None:
    """The one revision no script names as its ``down_revision``, from the scripts' text; None when that is
    not clear (several heads, a merge, a line written otherwise): then Alembic decides."""
    revisions, downs = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = {bool(m[1]): m[2] for m in _REVISION.finditer(path.read_text(encoding="utf-8"))}
        if True not in found or not found.get(False):
            return None
        revisions.add(found[False])
        downs.add(found[True])
    heads = revisions - downs
    return heads.pop() if len(heads) == 1 else None


def render_item(type_, obj, autogen_context):
    """Autogenerate writes the project's column types as the plain SQLAlchemy types they store as."""
    from engine.store.types import UTCDateTime
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def include_object(obj, name, type_, reflected, compare_to):
    return not (type_ == "table" and name.startswith("sqlite_"))


@contextmanager
def _locked(db):
    """A connection in a transaction that no other migration of this database runs beside. An unknown
    revision (Alembic's CommandError) is the caller's bad input; nothing was changed."""
    from alembic.util import CommandError
    try:
        with _transaction(db) as conn:
            yield conn
    except CommandError as exc:
        raise InvalidInput(f"migration: {exc}") from None


@contextmanager
def _transaction(db):
    from sqlalchemy import text
    with db.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE (engine.store.database) — the database's write lock
        if db.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK})
        yield conn


def _current(conn) -> str | None:
    from alembic.runtime.migration import MigrationContext
    return MigrationContext.configure(conn).get_current_revision()


def _is_legacy(conn) -> bool:
    """Tables of a Kefu made before migrations, and no revision recorded."""
    from sqlalchemy import inspect
    names = set(inspect(conn).get_table_names())
    return "instances" in names and "alembic_version" not in names


def current(db) -> str | None:
    """The database's revision (None: not migrated yet), read from Alembic's version table directly (on the
    reading connections: no write lock)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    with db.read_engine.connect() as conn:
        try:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except SQLAlchemyError:
            conn.rollback()
            rows = []
        if len(rows) > 1:  # several heads: Alembic's own reading says what that means
            return _current(conn)
        return rows[0] if rows else None


def is_current(db) -> bool:
    try:
        return current(db) == head()
    except Exception:  # noqa: BLE001 - no database yet, unreadable: let upgrade() report it
        return False


def upgrade(db, revision: str = "head") -> dict:
    """Upgrade to ``revision``; returns ``{"from": rev, "to": rev, "stamped": bool}``."""
    if revision == "head" and is_current(db):
        rev = head()
        return {"from": rev, "to": rev, "stamped": False}
    from alembic import command
    with _locked(db) as conn:
        before = _current(conn)
        stamped = False
        cfg = alembic_config(db.url, conn)
        if before is None and _is_legacy(conn):
            log.warning("database has Kefu tables but no migration revision: stamping it at %s", BASELINE)
            command.stamp(cfg, BASELINE)
            stamped, before = True, BASELINE
        command.upgrade(cfg, revision)
        after = _current(conn)
    return {"from": before, "to": after, "stamped": stamped}


def downgrade(db, revision: str) -> dict:
    from alembic import command
    with _locked(db) as conn:
        before = _current(conn)
        command.downgrade(alembic_config(db.url, conn), revision)
        return {"from": before, "to": _current(conn)}


def stamp(db, revision: str) -> None:
    from alembic import command
    with _locked(db) as conn:
        command.stamp(alembic_config(db.url, conn), revision)


def history() -> list[dict]:
    """Every revision, newest first."""
    return [{"revision": s.revision, "down_revision": s.down_revision, "message": s.doc,
             "head": s.is_head} for s in script_directory().walk_revisions()]


def differences(db) -> list:
    """What Alembic's autogenerate finds between the database and the models (empty: they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from engine.store.tables import Base
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def new_revision(message: str, rev_id: str | None = None) -> list[str]:
    """Autogenerate a revision: the difference between the models and a scratch SQLite database at head.
    Returns the paths written."""
    import tempfile

    from alembic import command

    from engine.store.database import Database
    with tempfile.TemporaryDirectory(prefix="kefu-migration-") as tmp:
        db = Database(f"sqlite:///{tmp}/scratch.db")
        try:
            with _locked(db) as conn:
                cfg = alembic_config(db.url, conn)
                command.upgrade(cfg, "head")
                scripts = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        finally:
            db.dispose()
    _head_cache.clear()
    scripts = scripts if isinstance(scripts, list) else [scripts]
    return [s.path for s in scripts if s is not None]
