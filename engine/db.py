"""Tables and the unit of work.

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
from datetime import date, datetime, timezone

from sqlalchemy import (JSON, Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text, TypeDecorator,
                        UniqueConstraint, create_engine, event)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from . import clock
from .errors import Conflict, InvalidInput


log = logging.getLogger("kefu.db")


class UTCDateTime(TypeDecorator):
    """Stores UTC without an offset (SQLite keeps none; PostgreSQL: ``timestamp without time zone``, so the
    session's time zone never shifts it) and always returns aware UTC datetimes."""
    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class Definition(Base):
    """One immutable, deployed version of one process diagram."""
    __tablename__ = "definitions"
    __table_args__ = (UniqueConstraint("process_id", "version"), UniqueConstraint("process_id", "sha256"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    xml: Mapped[str] = mapped_column(Text, deferred=True)  # large; loaded only to parse a new version
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deployed_by: Mapped[str] = mapped_column(String(64))


# --- changing a procedure (designer): what a deployed version changed against the one before it
class DefinitionChange(Base):
    __tablename__ = "definition_changes"

    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"), primary_key=True)
    previous_version: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[dict] = mapped_column(JSON)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    roles: Mapped[str] = mapped_column(String(255), default="")
    groups: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def role_set(self) -> set[str]:
        return name_set(self.roles)

    @property
    def group_set(self) -> set[str]:
        return name_set(self.groups)


def name_set(text: str | None) -> set[str]:
    """The names a comma-separated column holds (a user's roles or groups)."""
    return {n for n in (text or "").split(",") if n}


class Customer(Base):
    """A customer profile (I1–I3); ``vip`` marks important/special customers."""
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    phone_digits: Mapped[str | None] = mapped_column(String(32), index=True)  # "021-6321 0000" → "02163210000"
    email: Mapped[str | None] = mapped_column(String(128))
    company: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(300))
    region: Mapped[str | None] = mapped_column(String(100))
    needs: Mapped[str | None] = mapped_column(Text)
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    special_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Instance(Base):
    """A running or finished ticket: serialized workflow (spec by reference) plus summary columns."""
    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_kind_status", "kind", "status"),
                      # audit search (issue 6): filters combined with the newest-first order
                      Index("ix_instances_kind_status_created", "kind", "status", "created_at"),
                      Index("ix_instances_status_created", "status", "created_at"),
                      Index("ix_instances_severity_created", "severity", "created_at"),
                      Index("ix_instances_customer_created", "customer_id", "created_at"),
                      Index("ix_instances_creator_created", "created_by", "created_at"),
                      Index("ix_instances_finish_due", "finish_due"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_no: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    definition_id: Mapped[int] = mapped_column(ForeignKey("definitions.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    severity: Mapped[str | None] = mapped_column(String(16))
    nature: Mapped[str | None] = mapped_column(String(32))
    vip: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    incident: Mapped[dict | None] = mapped_column(JSON)
    # The two clocks of a work order (T1) as the diagram last set them; finish may be paused (R4).
    response_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finish_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clock_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), index=True)  # escalations
    parent_task_id: Mapped[str | None] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(Text, deferred=True)  # loaded by the units of work that run it
    audit_count: Mapped[int] = mapped_column(Integer, default=0)
    audit_head: Mapped[str] = mapped_column(String(64), default="")
    lock_version: Mapped[int] = mapped_column(Integer, nullable=False)

    definition: Mapped[Definition] = relationship(lazy="joined")
    customer: Mapped[Customer | None] = relationship(lazy="joined")

    # Read-only views, eager-loaded by Kefu.complete in the statement that locks the task: the rows that mirror
    # the workflow's ready user tasks and its waiting timers (see Kefu._sync_tasks, Kefu._sync_timers).
    ready_rows: Mapped[list["HumanTask"]] = relationship(
        viewonly=True, lazy="raise",
        primaryjoin="and_(HumanTask.instance_id == Instance.id, HumanTask.state == 'ready')")
    timer_rows: Mapped[list["Timer"]] = relationship(viewonly=True, lazy="raise",
                                                     primaryjoin="Timer.instance_id == Instance.id")

    __mapper_args__ = {"version_id_col": lock_version}


class HumanTask(Base):
    """A user task as people see it: the projection of a SpiffWorkflow task into a queryable row."""
    __tablename__ = "human_tasks"
    __table_args__ = (Index("ix_human_tasks_state_role", "state", "role"),
                      # audit search (issue 6): by agent, overdue tasks
                      Index("ix_human_tasks_completed_by", "completed_by", "instance_id"),
                      Index("ix_human_tasks_assignee_instance", "assignee", "instance_id"),
                      Index("ix_human_tasks_state_due", "state", "due_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    bpmn_id: Mapped[str] = mapped_column(String(128))
    spec_name: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(32))
    candidate_group: Mapped[str | None] = mapped_column(String(64))
    assignee: Mapped[str | None] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))  # ready | completed | cancelled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_by: Mapped[str | None] = mapped_column(String(64))
    end_reason: Mapped[str | None] = mapped_column(String(64))


class Timer(Base):
    """One row per waiting timer; ``due_at`` is what the scheduler wakes for."""
    __tablename__ = "timers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the SpiffWorkflow timer task id
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    bpmn_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # boundary | intermediate
    interrupting: Mapped[bool] = mapped_column(Boolean, default=True)
    attached_task_id: Mapped[str | None] = mapped_column(String(36))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Append-only record of what happened to an instance; each event hashes its predecessor's hash."""
    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("instance_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(48))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    task_id: Mapped[str | None] = mapped_column(String(36))
    bpmn_id: Mapped[str | None] = mapped_column(String(128))
    task_name: Mapped[str | None] = mapped_column(String(200))
    rules: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))  # None is SQL NULL, not JSON null
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditLedger(Base):
    """Audit (issue 6): the global, hash-chained ledger of instance heads. Each unit of work that wrote audit
    events appends one entry per instance it touched (its ticket, last event number and chain head), chained
    over the previous entry: deleting an instance, truncating its chain or dropping entries breaks it."""
    __tablename__ = "audit_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # gapless, 1, 2, 3 …
    instance_id: Mapped[int] = mapped_column(Integer, index=True)  # no foreign key: outlives a deleted instance
    ticket_no: Mapped[str] = mapped_column(String(32))
    event_seq: Mapped[int] = mapped_column(Integer)
    head: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class CalendarDay(Base):
    """The process owner's override of one day: working or not (T2), e.g. a year chinese-calendar lacks."""
    __tablename__ = "calendar_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    working: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(String(200))
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Setting(Base):
    """Small service-wide values: the demo clock offset, the SLA and calendar revisions."""
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Counter(Base):
    __tablename__ = "counters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


# ---------------------------------------------------------------- API tokens (JSON API, issue 8)
class ApiToken(Base):
    """A bearer token of the JSON API; only its SHA-256 is stored. It acts as its user (roles, groups)."""
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- kpi (issue 7): stored monthly assessments (K-cycle) ---------------------------------------------
class KpiReport(Base):
    """One computed monthly assessment (K1–K8 with lineage); the newest row of a month is the report."""
    __tablename__ = "kpi_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), index=True)  # "2026-11", Asia/Shanghai
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    computed_by: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON)
# --- end kpi ----------------------------------------------------------------------------------------


def next_counter(session: Session, key: str) -> int:
    """Add one to the counter ``key`` (created at 1) and return it; concurrent callers never share a value."""
    if session.get_bind().dialect.name == "postgresql":
        # Two transactions creating the same new row would race on its primary key; an upsert cannot:
        # the second waits for the first and then increments the committed row.
        stmt = (pg_insert(Counter).values(key=key, value=1)
                .on_conflict_do_update(index_elements=[Counter.key], set_={"value": Counter.value + 1})
                .returning(Counter.value))
        return session.execute(stmt).scalar_one()
    # SQLite: the transaction already holds the database's write lock (BEGIN IMMEDIATE).
    row = session.get(Counter, key, with_for_update=True)
    if row is None:
        row = Counter(key=key, value=0)
        session.add(row)
    row.value += 1
    session.flush()
    return row.value


# SQLSTATEs of a PostgreSQL transaction aborted because of a concurrent one: retrying is the remedy.
RETRYABLE_SQLSTATES = {"40001": "a concurrent change (serialization failure)", "40P01": "a deadlock"}
# Rows keyed by the instance's own sequence or workflow ids: a duplicate means that another unit of work
# saved the same instance meanwhile (on PostgreSQL two saves of one instance can both pass their reads;
# the second then collides on the audit sequence before its lock_version check is reached).
PER_INSTANCE_TABLES = {"audit_events", "human_tasks", "timers"}


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


SQLITE_BUSY_SECONDS = 30


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
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite: this process's writers take turns (see WriterQueue); other processes still meet SQLite's wait.
        self.writers = WriterQueue(SQLITE_BUSY_SECONDS) if self.dialect == "sqlite" else None
        # Called with the earliest due time of the timers a committed unit of work wrote (scheduler wake-up).
        self.timer_listeners: list = []
        event.listen(self.sessions, "after_commit", self._after_commit)
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
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self._raw_statements: dict = {}  # statement → compiled for this database (read_one)
        # A reading session never writes: on PostgreSQL it has no transaction to roll a write back.
        event.listen(self.read_sessions, "before_flush", _refuse_writes)

    def _after_commit(self, session) -> None:
        due = session.info.pop("kefu_timers_due", None)
        if not due:
            return
        for listener in list(self.timer_listeners):
            try:
                listener(min(due))
            except Exception:  # noqa: BLE001 - a listener never undoes a committed unit of work
                log.exception("timer listener failed")

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)

    def has_schema(self) -> bool:
        from sqlalchemy import inspect
        return inspect(self.engine).has_table("instances")

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
        self.engine.dispose()
        self.read_engine.dispose()


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


def _sqlite_read_pragmas(dbapi_connection, _record):
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin_immediate(conn):
    # Take the write lock at the start of every transaction: two processes never both read a version
    # and then fail to upgrade their lock half-way; the loser waits, then sees the newer version.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
