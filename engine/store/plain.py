"""Reads of plain rows on a DB-API connection, without SQLAlchemy (whose import alone costs more than all
``kefu tasks`` does otherwise).

The SQL is written once for both databases, with ``:name`` parameters (sqlite3's own style; psycopg's
``%(name)s`` for PostgreSQL is derived from it), over the tables and columns of ``engine.store.light``.
A ``Connection`` wraps either a connection of SQLAlchemy's reading pool (``Database.plain``: the web's and the
API's task lists) or one opened here from the database URL (``connect``: the CLI). Either way a read never
writes and never waits for the write lock: on SQLite a plain SELECT in autocommit (the reading engine's way),
on PostgreSQL autocommit (every statement sees what was committed before it began, as under READ COMMITTED).
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from urllib.parse import quote

SQLITE_BUSY_SECONDS = 30  # how long a connection waits for SQLite's lock (engine.store.database uses it too)

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Connection:
    """One DB-API connection of ``dialect`` ("sqlite" or "postgresql") and the reads on it."""

    def __init__(self, dbapi_connection, dialect: str):
        self.dbapi, self.dialect = dbapi_connection, dialect

    def statement(self, sql: str) -> str:
        """``sql`` in the connection's parameter style."""
        return _pyformat(sql) if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: dict | None = None) -> list[tuple]:
        """Every row (plain tuples) of ``sql`` with ``params``."""
        cursor = self.dbapi.cursor()
        try:
            cursor.execute(self.statement(sql), params or {})
            return cursor.fetchall()
        finally:
            cursor.close()

    def select(self, table, where: str = "", params: dict | None = None) -> list:
        """The rows (``table.Row``) of ``table`` (an ``engine.store.light.Table``) that ``where`` (the rest of
        the statement: conditions, order) selects."""
        return [table.row(r) for r in self.execute(f"{table.select} {where}", params)]

    def first(self, table, where: str = "", params: dict | None = None):
        rows = self.select(table, where, params)
        return rows[0] if rows else None

    def has_table(self, name: str) -> bool:
        """Whether the table exists (where SQLAlchemy's ``inspect(...).has_table`` looks)."""
        if self.dialect == "postgresql":
            sql = "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = :name AND schemaname = current_schema()"
        else:
            sql = "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = :name"
        return bool(self.execute(sql, {"name": name}))

    def close(self) -> None:
        self.dbapi.close()


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (a literal ``%`` doubled)."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def in_list(name: str, values) -> tuple[str, dict]:
    """``(:name_0, :name_1, …)`` for an ``IN`` of ``values`` and its parameters (no value: ``(NULL)``, which
    matches nothing)."""
    params = {f"{name}_{i}": v for i, v in enumerate(values)}
    return "(" + (", ".join(f":{k}" for k in params) or "NULL") + ")", params


def connect(url: str) -> Connection | None:
    """A reading connection of its own to the database of ``url``; None for a URL this module does not read
    the way SQLAlchemy would (another database or driver, options in the URL, an in-memory database): those
    go through ``engine.store.database``. ``NoDatabase`` when the SQLite file does not exist: a read creates
    no file."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return _sqlite(rest)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        import psycopg
        return Connection(psycopg.connect("postgresql://" + rest, autocommit=True), "postgresql")
    return None


class NoDatabase(Exception):
    """The SQLite file of the URL does not exist."""


def _sqlite(rest: str) -> Connection | None:
    if not rest.startswith("/") or "?" in rest:
        return None
    path = rest[1:]  # sqlite:///relative.db, sqlite:////absolute.db (SQLAlchemy's reading)
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    if not os.path.exists(path):
        raise NoDatabase(path)
    import sqlite3
    # mode=rw: open the file that exists, never make one; autocommit: a SELECT is its own read transaction
    conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=rw", uri=True,
                           timeout=SQLITE_BUSY_SECONDS, isolation_level=None)
    return Connection(conn, "sqlite")
