"""The database and its unit of work.

Only the unit of work commits: a service takes a session from ``Database.unit_of_work()``, changes what it
must, and leaving the block without an exception commits everything at once; an exception rolls it all back.

Two databases are supported: SQLite (the default; every writing transaction takes the write lock at once)
and PostgreSQL through psycopg 3 (``postgresql://…`` URLs; READ COMMITTED, row locks with ``FOR UPDATE``).
A PostgreSQL transaction aborted by a deadlock or a serialization failure, or a save that collides with a
concurrent save of the same instance, is a ``Conflict``: nothing was saved and the caller may try again.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine import clock
from engine.errors import Conflict, InvalidInput
from engine.store import plain, wal
from engine.store.plain import SQLITE_BUSY_SECONDS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# SQLAlchemy's ORM and the mapped classes are imported when the first session is made: a read through
# ``connection()`` or ``plain()`` needs neither (and ``kefu tasks`` reads in plain SQL without this module:
# engine.store.plain).


log = logging.getLogger("kefu.db")


# SQLSTATEs of a PostgreSQL transaction aborted because of a concurrent one: retrying is the remedy.
RETRYABLE_SQLSTATES = {"40001": "a concurrent change (serialization failure)", "40P01": "a deadlock"}
# Rows keyed by the instance's own sequence or workflow ids: a duplicate means that another unit of work
# saved the same instance meanwhile (on PostgreSQL two saves of one instance can both pass their reads;
# the second then collides on the audit sequence before its lock_version check is reached).
PER_INSTANCE_TABLES = {"audit_events", "human_tasks", "timers"}
ON_COMMIT = "kefu_on_commit"  # session.info key: callbacks to run once the unit of work has committed


def on_commit(session: Session, callback) -> None:
    """Run ``callback()`` after ``session``'s unit of work committed (never if it rolls back). A failing
    callback is logged: it never undoes the committed unit of work."""
    session.info.setdefault(ON_COMMIT, []).append(callback)


def database_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` URLs use psycopg 3 (SQLAlchemy's default would be psycopg2)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def translate_error(exc: DBAPIError) -> Exception | None:
    """The engine error for a database error that is the caller's to handle, else None."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    if sqlstate == "23505" and getattr(diag, "table_name", None) in PER_INSTANCE_TABLES:
        return Conflict("the instance was changed by someone else meanwhile; nothing was saved, "
                        "reload and try again")
    if sqlstate in RETRYABLE_SQLSTATES:
        return Conflict(f"the database aborted this change because of {RETRYABLE_SQLSTATES[sqlstate]} with "
                        "another one running at the same time; nothing was saved, try again")
    if sqlstate == "22001":  # string_data_right_truncation: SQLite keeps long text, PostgreSQL refuses it
        detail = getattr(diag, "message_primary", None) or "value too long"
        return InvalidInput(f"a value is longer than the database allows ({detail}); nothing was saved")
    return None


class WriterQueue:
    """First come, first served among the threads of one process that want SQLite's write lock.

    SQLite's own wait for a busy database (``sqlite3_busy_timeout``) polls with growing sleeps, so a thread that
    commits one short transaction after another can take the lock again and again while another thread sleeps
    through every window: in the embedded service a stream of web requests held the scheduler's timer firings
    back by seconds. Queued here, a writer waits for the writers ahead of it, never longer. Reentrant: a unit
    of work opened inside another on the same thread does not wait for itself.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        self._waiting: deque = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            if self._owner is None and not self._waiting:
                self._owner, self._depth = me, 1
                return
            token = object()
            self._waiting.append(token)
            give_up = time.monotonic() + self.timeout
            while self._owner is not None or self._waiting[0] is not token:
                left = give_up - time.monotonic()
                if left <= 0:
                    self._waiting.remove(token)
                    self._cond.notify_all()  # the next in line may be free to go now
                    raise Conflict(f"the database stayed busy with other changes for {self.timeout:g} s; "
                                   "nothing was saved, try again")
                self._cond.wait(left)
            self._waiting.popleft()
            self._owner, self._depth = me, 1

    def release(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()



class Database:
    def __init__(self, url: str):
        url = database_url(url)
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        kwargs = {}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_SECONDS}
        elif self.dialect == "postgresql":
            # The units of work rely on it: a statement after a row lock sees the lock holder's commit.
            kwargs["isolation_level"] = "READ COMMITTED"
        self.engine = create_engine(url, **kwargs)
        if self.dialect == "postgresql":
            # An executemany (the audit events of a unit of work) as one INSERT … VALUES (…), (…) statement
            # rather than psycopg's pipelined one-statement-per-row.
            self.engine.dialect.use_insertmanyvalues_wo_returning = True
        self.checkpointer = None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
            path = wal.database_file(self.engine.url)
            if path is not None:  # the log is checkpointed off the write path (engine.store.wal)
                self.checkpointer = wal.Checkpointer(path)
                event.listen(self.engine, "connect", _no_auto_checkpoint)
                event.listen(self.engine, "commit", lambda _conn: self.checkpointer.committed())
        # SQLite: this process's writers take turns (see WriterQueue); other processes still meet SQLite's wait.
        self.writers = WriterQueue(SQLITE_BUSY_SECONDS) if self.dialect == "sqlite" else None
        # Called with the earliest due time of the timers a committed unit of work wrote (scheduler wake-up).
        self.timer_listeners: list = []
        # Called without arguments after a unit of work that appended to the audit ledger committed (live pages).
        self.change_listeners: list = []
        # The workflows saved last through this database (engine.services.warm.WarmInstances, set by the first
        # Context made on it): every Kefu sharing the database shares them; forgotten with the connections.
        self.warm = None
        # Reads need no write lock: on SQLite they get their own engine without BEGIN IMMEDIATE.
        if self.dialect == "sqlite":
            self.read_engine = create_engine(url, **kwargs)
            event.listen(self.read_engine, "connect", _sqlite_read_pragmas)
        else:
            # PostgreSQL: reads run in autocommit. Under READ COMMITTED every statement sees what was committed
            # before it began, in a transaction or not; without one a read is one round trip, not three
            # (BEGIN, the query, ROLLBACK). Their own pool of autocommit connections: none is switched back and
            # forth on every checkout (a web worker with two threads holds at most two of each kind).
            self.read_engine = create_engine(url, isolation_level="AUTOCOMMIT")
        self._raw_statements: dict = {}  # statement → compiled for this database (read_one)

    @cached_property
    def sessions(self):
        """The sessions of the units of work (made on first use, with the ORM's import)."""
        from sqlalchemy.orm import sessionmaker
        sessions = sessionmaker(self.engine, expire_on_commit=False)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", _drop_on_commit)
        return sessions

    @cached_property
    def read_sessions(self):
        """The sessions of the reads (made on first use)."""
        from sqlalchemy.orm import sessionmaker
        sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # A reading session never writes: on PostgreSQL it has no transaction to roll a write back.
        event.listen(sessions, "before_flush", _refuse_writes)
        return sessions

    def _after_commit(self, session) -> None:
        for callback in session.info.pop(ON_COMMIT, ()):
            try:
                callback()
            except Exception:  # noqa: BLE001 - a callback never undoes a committed unit of work
                log.exception("on-commit callback failed")
        if session.info.pop("kefu_changed", None):
            for listener in list(self.change_listeners):
                try:
                    listener()
                except Exception:  # noqa: BLE001 - a listener never undoes a committed unit of work
                    log.exception("change listener failed")
        session.info.pop("kefu_audit_feed", None)
        due = session.info.pop("kefu_timers_due", None)
        if not due:
            return
        for listener in list(self.timer_listeners):
            try:
                listener(min(due))
            except Exception:  # noqa: BLE001 - a listener never undoes a committed unit of work
                log.exception("timer listener failed")

    def create_all(self) -> None:
        from engine.store.tables import Base
        Base.metadata.create_all(self.engine)

    def has_schema(self) -> bool:
        """Whether Kefu's tables exist; asked on the reading connections (on SQLite: without the write lock,
        so a command that only reads never waits for a writer to ask it)."""
        from sqlalchemy import inspect
        return inspect(self.read_engine).has_table("instances")

    @contextmanager
    def unit_of_work(self):
        with clock.one_instant():  # one "now" for everything the unit of work records
            with self._unit_of_work() as session:
                yield session

    @contextmanager
    def _unit_of_work(self):
        if self.writers is not None:
            self.writers.acquire()
        try:
            session: Session = self.sessions()
            try:
                yield session
                session.commit()
            except DBAPIError as exc:
                session.rollback()
                translated = translate_error(exc)
                if translated is None:
                    raise
                raise translated from exc
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        finally:
            if self.writers is not None:
                self.writers.release()

    @contextmanager
    def reading(self):
        session: Session = self.read_sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def connection(self):
        """A reading connection without a session (SQLAlchemy Core, no ORM): for reads of plain rows."""
        with self.read_engine.connect() as conn:
            yield conn

    @contextmanager
    def plain(self):
        """A connection of the reading pool as a DB-API connection (``engine.store.plain``): the reads written
        in plain SQL for the CLI, which opens its own connection, run here on the pooled ones."""
        conn = self.read_engine.raw_connection()
        try:
            yield plain.Connection(conn.dbapi_connection, self.dialect)
        finally:
            conn.close()

    def read_one(self, statement, params: dict):
        """The first row (a plain tuple) of a small read asked on every request, or None: on a pooled DBAPI
        connection, without SQLAlchemy's execution layer (which costs several times the query itself here).
        On PostgreSQL the read runs in autocommit, like every read (see ``read_engine``); on SQLite a plain
        SELECT opens no transaction."""
        compiled = self._raw_statements.get(statement)
        if compiled is None:
            compiled = self._raw_statements[statement] = statement.compile(dialect=self.engine.dialect)
        values = compiled.construct_params(params)
        if compiled.positional:
            values = tuple(values[k] for k in compiled.positiontup)
        conn = self.read_engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(compiled.string, values)
            row = cursor.fetchone()
            cursor.close()
        finally:
            conn.close()
        return row

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()
        self.read_engine.dispose()
        if self.warm is not None:
            self.warm.clear()


def _drop_on_commit(session) -> None:
    session.info.pop(ON_COMMIT, None)


def _refuse_writes(session, _flush_context, _instances) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a reading session (Database.reading) may not write; use Database.unit_of_work")


def _sqlite_pragmas(dbapi_connection, _record):
    # Let SQLAlchemy issue BEGIN itself (see _sqlite_begin_immediate) instead of pysqlite's implicit one.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _no_auto_checkpoint(dbapi_connection, _record):
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.close()


def _sqlite_read_pragmas(dbapi_connection, _record):
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin_immediate(conn):
    # Take the write lock at the start of every transaction: two processes never both read a version
    # and then fail to upgrade their lock half-way; the loser waits, then sees the newer version.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
