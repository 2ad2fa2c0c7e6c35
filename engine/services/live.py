"""What changed, for live pages: the audit ledger is the change feed.

Every unit of work that changes a ticket appends one ledger entry per ticket it touched, in its own
transaction, and entries are numbered without gaps in commit order (SQLite's write lock; PostgreSQL's ledger
lock held to the commit). So "the newest ledger entry" is a change counter that never misses a commit, and the
entries after the one a page last saw name the tickets that changed; their audit events tell whether one of
them is an alert (a complaint registered as major, an overdue warning).

Waking up: a commit in this process wakes the waiting streams at once (``Database.change_listeners``, a
condition variable); on PostgreSQL the ledger append also sends ``NOTIFY kefu_changes``, which one listening
connection per process turns into the same wake-up, so changes made by other processes (another web worker,
the scheduler) arrive within milliseconds. On SQLite other processes are seen by a short poll of the counter.
"""
from __future__ import annotations

import logging
import threading

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from engine.services import routing
from engine.services.context import Context
from engine.store.chain import CHANNEL
from engine.store.tables import AuditEvent, AuditLedger, Instance

log = logging.getLogger("kefu.live")
MAX_ENTRIES = 500  # entries one read looks at; a page further behind just refreshes
ALERT_TYPES = ("task_created", "task_completed")


class ChangeSignal:
    """A counter with a condition variable: ``wait(seen, timeout)`` returns when it moved past ``seen``."""

    def __init__(self):
        self._cond = threading.Condition()
        self.version = 0

    def bump(self) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            if self.version == seen:
                self._cond.wait(timeout)
            return self.version


class PgListener(threading.Thread):
    """One connection per process that LISTENs on the change channel and bumps the signal on each NOTIFY."""

    def __init__(self, url: str, signal: ChangeSignal):
        super().__init__(name="kefu-live-listen", daemon=True)
        u = make_url(url)
        self.conninfo = u.set(drivername="postgresql").render_as_string(hide_password=False)
        self.signal = signal
        self.stopped = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        import psycopg
        while not self.stopped.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    self.signal.bump()  # whatever happened while not listening
                    while not self.stopped.is_set():
                        for _n in conn.notifies(timeout=1.0, stop_after=1):
                            self.signal.bump()
            except Exception as exc:  # noqa: BLE001 - reconnect after a pause; streams poll meanwhile
                self.connected.clear()
                if self.stopped.is_set():
                    return
                log.warning("live: listening for changes failed (%s); retrying", exc)
                self.stopped.wait(2.0)

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(5)


class LiveService:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.signal = ChangeSignal()
        self._listener: PgListener | None = None
        self._lock = threading.Lock()
        self._active = False

    @property
    def cross_process(self) -> bool:
        """Whether other processes' changes wake the streams (PostgreSQL), or must be polled for (SQLite)."""
        return self._listener is not None and self._listener.connected.is_set()

    def activate(self) -> None:
        """Wake on this process's commits, and on PostgreSQL start the LISTEN connection: once per process,
        when the first stream opens."""
        if self._active:
            return
        with self._lock:
            if self._active:
                return
            self.ctx.db.change_listeners.append(self.signal.bump)
            if self.ctx.db.dialect == "postgresql":
                self._listener = PgListener(self.ctx.db.url, self.signal)
                self._listener.start()
            self._active = True

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self._active = False
        if self.signal.bump in self.ctx.db.change_listeners:
            self.ctx.db.change_listeners.remove(self.signal.bump)

    def wait(self, seen: int, timeout: float) -> int:
        return self.signal.wait(seen, timeout)

    def last(self) -> int:
        """The newest ledger entry's number (0 when nothing happened yet): the change counter."""
        with self.ctx.db.reading() as s:
            return s.scalar(select(func.max(AuditLedger.id))) or 0

    def since(self, last: int, user: dict | None = None) -> dict:
        """What changed after entry ``last``: the newest entry, the tickets, and the alerts for ``user``
        (name, roles, groups): new major complaints for supervisors, overdue warnings in the user's queues."""
        with self.ctx.db.reading() as s:
            entries = s.execute(select(AuditLedger.id, AuditLedger.instance_id, AuditLedger.ticket_no,
                                       AuditLedger.event_seq).where(AuditLedger.id > last)
                                .order_by(AuditLedger.id).limit(MAX_ENTRIES)).all()
            if not entries:
                return {"last": last, "tickets": [], "alerts": [], "complete": True}
            newest = entries[-1][0]
            complete = len(entries) < MAX_ENTRIES
            alerts = []
            if user is not None:
                alerts = self._alerts(s, last, entries, user)
            return {"last": newest, "tickets": sorted({e[2] for e in entries}), "alerts": alerts,
                    "complete": complete}

    def _alerts(self, s, last: int, entries, user: dict) -> list[dict]:
        ids = {e[1] for e in entries}
        # the events each entry covers: after the instance's previous entry (at or before ``last``)
        before = dict(s.execute(select(AuditLedger.instance_id, func.max(AuditLedger.event_seq))
                                .where(AuditLedger.instance_id.in_(ids), AuditLedger.id <= last)
                                .group_by(AuditLedger.instance_id)).all())
        tickets = {e[1]: e[2] for e in entries}
        upto: dict = {}
        for e in entries:
            upto[e[1]] = max(upto.get(e[1], 0), e[3])
        events = s.execute(select(AuditEvent.instance_id, AuditEvent.seq, AuditEvent.type, AuditEvent.bpmn_id,
                                  AuditEvent.task_name, AuditEvent.data, Instance.kind)
                           .join(Instance, Instance.id == AuditEvent.instance_id)
                           .where(AuditEvent.instance_id.in_(ids), AuditEvent.type.in_(ALERT_TYPES))
                           .order_by(AuditEvent.id)).all()
        roles, groups, name = set(user.get("roles") or ()), set(user.get("groups") or ()), user.get("name")
        out = []
        for inst_id, seq, type_, bpmn_id, task_name, data, kind in events:
            if not before.get(inst_id, 0) < seq <= upto[inst_id]:
                continue
            data = data if isinstance(data, dict) else {}
            ticket = tickets[inst_id]
            if type_ == "task_completed" and data.get("severity") == "major" and kind == "complaint" \
                    and "supervisor" in roles:
                out.append({"kind": "major_complaint", "ticket_no": ticket})
            elif type_ == "task_created" and "overdue_warning" in (bpmn_id or "") and routing.may_work(
                    name, roles, groups, {k: data.get(k) for k in ("role", "assignee", "candidate_group",
                                                                   "candidates")}):
                out.append({"kind": "overdue", "ticket_no": ticket, "task": task_name})
        return out

