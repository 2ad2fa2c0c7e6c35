"""Audit events: append-only and hash-chained per instance, instance heads chained globally (P12).

Tamper model (an attacker with write access to the database, who may drop the guards first):

* Each event's hash covers the previous event's hash and the event's own canonical content (with its
  instance and sequence number), so changing, deleting or reordering a stored event breaks its instance's
  chain at that event. Per-instance chains let instances be written concurrently.
* Every unit of work that wrote events appends, at commit, one entry per instance it touched to the global
  ledger (``audit_ledger``): ticket, last event number and chain head, hashed over the previous entry.
  Entries are numbered 1, 2, 3 … without gaps. Deleting a whole instance, deleting its last events and
  rolling its head back, or deleting ledger entries is therefore caught: the ledger names what must exist.
* Triggers (SQLite and PostgreSQL, migration 0003) refuse UPDATE and DELETE on both tables; the ORM refuses too:
  nothing in the application can change the record, even by SQL.
* Limit: whoever can rewrite the whole tail of the ledger consistently can forge that tail. Record the
  ledger head (``kefu audit head``) outside the database now and then; ``kefu audit verify --anchor N:HASH``
  proves the ledger still holds that entry, so everything up to it is unaltered.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import event as sa_event, insert, select, text
from sqlalchemy.orm import Session

from engine.store import writes
from engine.store.tables import AuditEvent, AuditLedger, Instance
from engine.errors import NotAllowed


@dataclass
class PendingEvent:
    type: str
    actor: str
    at: datetime
    task_id: str | None = None
    bpmn_id: str | None = None
    task_name: str | None = None
    rules: list[str] = field(default_factory=list)
    data: dict | None = None


BUFFER = "kefu_audit_buffer"
LEDGER = "kefu_audit_ledger"  # session.info: instance id → the instance, for the ledger entries at commit
# session.info: (instance, event rows) of every append in this unit of work, for what reacts to them in the same
# transaction (the notifications outbox); CHANGED: set when the ledger moved on (live pages wake up at commit)
FEED = "kefu_audit_feed"
CHANGED = "kefu_changed"
CHANNEL = "kefu_changes"  # PostgreSQL: NOTIFY'd in the transaction that appends to the ledger


def canonical(instance_id: int, seq: int, e) -> str:
    rules = e.rules if isinstance(e.rules, str) or e.rules is None else ",".join(e.rules)
    body = {"instance_id": instance_id, "seq": seq, "type": e.type, "actor": e.actor,
            "at": e.at.isoformat(timespec="microseconds"), "task_id": e.task_id, "bpmn_id": e.bpmn_id,
            "task_name": e.task_name, "rules": rules or None, "data": e.data}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256((prev_hash + "\n" + content).encode("utf-8")).hexdigest()


# Events are written as plain rows on the session's connection (``writes.insert_rows``: one statement for all
# of them): they are never read back as objects, so the ORM's bulk insert machinery (identity, defaults,
# per-row bookkeeping) would have nothing to do but cost time. Every row has every key.
EVENTS = AuditEvent.__table__


def append(session: Session, instance: Instance, events: list[PendingEvent]) -> None:
    """Write events after the instance's last one; the caller's unit of work commits them."""
    head, seq = instance.audit_head or "", instance.audit_count or 0
    rows = []
    for e in events:
        seq += 1
        digest = chain_hash(head, canonical(instance.id, seq, e))
        rows.append({"instance_id": instance.id, "seq": seq, "type": e.type, "actor": e.actor, "at": e.at,
                     "task_id": e.task_id, "bpmn_id": e.bpmn_id, "task_name": e.task_name,
                     "rules": ",".join(e.rules) or None, "data": e.data, "prev_hash": head, "hash": digest})
        head = digest
    buffered = session.info.get(BUFFER)
    if buffered is not None:
        buffered.extend(rows)  # written by write_buffered() with the rest of a batch
    elif rows:
        # One multi-row INSERT in the caller's transaction; events are never read back as objects here.
        writes.insert_rows(session.connection(), EVENTS, rows)
    instance.audit_head, instance.audit_count = head, seq
    if rows:
        session.info.setdefault(LEDGER, {})[instance.id] = instance
        session.info.setdefault(FEED, []).append((instance, rows))


def buffer_events(session: Session) -> None:
    """Collect the events of several instances in this transaction and write them in one statement."""
    session.info[BUFFER] = []


def write_buffered(session: Session) -> None:
    rows = session.info.pop(BUFFER, None)
    if rows:
        writes.insert_rows(session.connection(), EVENTS, rows)


def events_of(session: Session, instance_id: int) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)
                                .order_by(AuditEvent.seq)))


def ledger_content(entry_id: int, instance_id: int, ticket_no: str, event_seq: int, head: str) -> str:
    return json.dumps({"id": entry_id, "instance_id": instance_id, "ticket_no": ticket_no, "event_seq": event_seq,
                       "head": head}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# PostgreSQL (migration 0006): take the ledger's advisory lock, read the newest entry and append, in one
# round trip.
# The same statement tells the live pages of every process (LISTEN kefu_changes) once the transaction commits.
_APPEND_LEDGER = text("SELECT kefu_ledger_append(CAST(:ids AS integer[]), CAST(:tickets AS text[]), "
                      "CAST(:seqs AS integer[]), CAST(:heads AS text[]), CAST(:ats AS timestamp[])), "
                      f"pg_notify('{CHANNEL}', '')")


@sa_event.listens_for(Session, "before_commit")
def _write_ledger(session: Session) -> None:
    """One ledger entry per instance whose events this unit of work wrote, chained after the newest entry."""
    touched = session.info.pop(LEDGER, None)
    if not touched:
        return
    session.info[CHANGED] = True
    session.flush()
    at = max((i.updated_at for i in touched.values() if i.updated_at is not None), default=None)
    order = sorted(touched)
    if session.get_bind().dialect.name == "postgresql":
        # The lock is held to the end of the transaction: ledger entries are appended one committer at a time
        # (briefly: this runs just before the commit), while the events of different instances are written
        # concurrently. The function hashes each entry as ledger_content/chain_hash do.
        stamps = [(touched[i].updated_at or at).astimezone(timezone.utc).replace(tzinfo=None) for i in order]
        session.connection().execute(_APPEND_LEDGER, {
            "ids": order, "tickets": [touched[i].ticket_no for i in order],
            "seqs": [touched[i].audit_count for i in order], "heads": [touched[i].audit_head for i in order],
            "ats": stamps})
        return
    # SQLite: the transaction holds the database's write lock already (BEGIN IMMEDIATE).
    last = session.connection().execute(_LEDGER_HEAD).first()
    entry_id, prev = (last[0], last[1]) if last else (0, "")
    rows = []
    for instance_id in order:
        inst = touched[instance_id]
        entry_id += 1
        digest = chain_hash(prev, ledger_content(entry_id, instance_id, inst.ticket_no, inst.audit_count,
                                                  inst.audit_head))
        rows.append({"id": entry_id, "instance_id": instance_id, "ticket_no": inst.ticket_no,
                     "event_seq": inst.audit_count, "head": inst.audit_head, "at": inst.updated_at or at,
                     "prev_hash": prev, "hash": digest})
        prev = digest
    session.connection().execute(_INSERT_LEDGER, rows)


# Core statements built once (SQLite's ledger append runs in every committing unit of work).
_LEDGER_TABLE = AuditLedger.__table__
_LEDGER_HEAD = select(_LEDGER_TABLE.c.id, _LEDGER_TABLE.c.hash).order_by(_LEDGER_TABLE.c.id.desc()).limit(1)
_INSERT_LEDGER = insert(_LEDGER_TABLE)


@sa_event.listens_for(Session, "after_rollback")
def _forget_ledger(session: Session) -> None:
    session.info.pop(LEDGER, None)
    session.info.pop(FEED, None)
    session.info.pop(CHANGED, None)


def ledger_head(session: Session) -> dict | None:
    row = session.scalar(select(AuditLedger).order_by(AuditLedger.id.desc()).limit(1))
    return None if row is None else {"entry": row.id, "hash": row.hash, "at": row.at}


def _problem(inst_id, ticket, seq, event_id, kind, message) -> dict:
    return {"instance_id": inst_id, "ticket_no": ticket, "seq": seq, "event_id": event_id, "kind": kind,
            "problem": message}


def check_chain(instance_id: int, ticket: str | None, events: list, recorded_count: int | None,
                recorded_head: str | None, ledger_seq: int = 0, ledger_heads: dict | None = None) -> dict | None:
    """The first problem in one instance's chain (events ordered by seq), or None.

    ``ledger_seq``/``ledger_heads``: the highest event number the ledger recorded for it and the heads it
    recorded (event number → hash)."""
    head = ""
    by_hash = {}
    for e in events:
        by_hash[e.hash] = e
    seqs = [e.seq for e in events]
    for expected, ev in enumerate(events, start=1):
        if ev.seq != expected:
            return _problem(instance_id, ticket, expected, None, "deleted",
                            f"event #{expected} was deleted (the chain jumps from #{expected - 1} to #{ev.seq})")
        own = chain_hash(ev.prev_hash, canonical(instance_id, ev.seq, ev))
        if own != ev.hash:
            moved = next((s for s in seqs if s != ev.seq and
                          chain_hash(ev.prev_hash, canonical(instance_id, s, ev)) == ev.hash), None)
            if moved is not None:
                return _problem(instance_id, ticket, ev.seq, ev.id, "reordered",
                                f"event #{ev.seq} ({ev.type}) was reordered: it was written as event #{moved}")
            return _problem(instance_id, ticket, ev.seq, ev.id, "altered",
                            f"event #{ev.seq} ({ev.type}) was altered: its content does not match its hash")
        if ev.prev_hash != head:
            moved = by_hash.get(ev.prev_hash)
            if moved is not None and moved.seq != expected - 1:
                return _problem(instance_id, ticket, ev.seq, ev.id, "reordered",
                                f"event #{ev.seq} ({ev.type}) was reordered: it followed event #{moved.seq} "
                                f"when written")
            return _problem(instance_id, ticket, ev.seq, ev.id, "altered",
                            f"event #{ev.seq} ({ev.type}) does not follow event #{ev.seq - 1}: an earlier event "
                            "was replaced or the chain was rebuilt")
        if ledger_heads and ev.seq in ledger_heads and ledger_heads[ev.seq] != ev.hash:
            return _problem(instance_id, ticket, ev.seq, ev.id, "altered",
                            f"event #{ev.seq} ({ev.type}) differs from the head the ledger recorded: the chain "
                            "was rewritten from here or earlier")
        head = ev.hash
    n = len(events)
    if ledger_seq > n:
        return _problem(instance_id, ticket, n + 1, None, "deleted",
                        f"event #{n + 1} was deleted: the ledger recorded events up to #{ledger_seq}, "
                        f"the chain ends at #{n}")
    if recorded_count is not None and (n != (recorded_count or 0) or head != (recorded_head or "")):
        return _problem(instance_id, ticket, min(n, recorded_count or 0) + 1, None, "deleted",
                        f"the chain ends at event #{n} but the instance recorded #{recorded_count}")
    if ledger_heads is not None and n > ledger_seq:
        return _problem(instance_id, ticket, ledger_seq + 1, None, "unrecorded",
                        f"events #{ledger_seq + 1}-#{n} are not in the ledger (written outside the application, "
                        "or ledger entries were removed)")
    return None


def verify_instance(session: Session, instance: Instance) -> str | None:
    """None when the instance's chain is whole, else a description of the first broken event."""
    heads = dict(session.execute(select(AuditLedger.event_seq, AuditLedger.head)
                                 .where(AuditLedger.instance_id == instance.id)).all())
    found = check_chain(instance.id, instance.ticket_no, events_of(session, instance.id), instance.audit_count,
                        instance.audit_head, max(heads, default=0), heads)
    return found and found["problem"]


def verify(session: Session, instance_id: int | None = None, anchor: tuple[int, str] | None = None) -> list[dict]:
    """Every problem found: the ledger's own chain first, then each instance's chain against the ledger.
    One problem per instance (its first broken event)."""
    problems = []
    q = select(AuditLedger).order_by(AuditLedger.id)
    if instance_id is not None:
        q = q.where(AuditLedger.instance_id == instance_id)
    entries = list(session.scalars(q))
    if instance_id is None:
        prev = ""
        for expected, e in enumerate(entries, start=1):
            if e.id != expected:
                problems.append(_problem(None, None, None, None, "ledger",
                                         f"ledger entry {expected} was deleted (entries jump to {e.id})"))
                break
            content = ledger_content(e.id, e.instance_id, e.ticket_no, e.event_seq, e.head)
            if e.prev_hash != prev or chain_hash(e.prev_hash, content) != e.hash:
                problems.append(_problem(e.instance_id, e.ticket_no, e.event_seq, None, "ledger",
                                         f"ledger entry {e.id} ({e.ticket_no} up to event #{e.event_seq}) "
                                         "was altered"))
                break
            prev = e.hash
        if anchor is not None:
            entry = next((e for e in entries if e.id == anchor[0]), None)
            if entry is None or entry.hash != anchor[1]:
                problems.append(_problem(None, None, None, None, "anchor",
                                         f"the ledger no longer holds entry {anchor[0]} with the recorded hash "
                                         f"{anchor[1][:16]}…: the ledger was rewritten up to there"))
    ledger: dict[int, dict] = {}
    for e in entries:
        led = ledger.setdefault(e.instance_id, {"ticket": e.ticket_no, "heads": {}})
        led["heads"][e.event_seq] = e.head
    iq = select(Instance.id, Instance.ticket_no, Instance.audit_count, Instance.audit_head).order_by(Instance.id)
    eq = select(AuditEvent).order_by(AuditEvent.instance_id, AuditEvent.seq)
    if instance_id is not None:
        iq, eq = iq.where(Instance.id == instance_id), eq.where(AuditEvent.instance_id == instance_id)
    instances = {r.id: r for r in session.execute(iq)}
    events: dict[int, list] = {}
    for ev in session.scalars(eq):
        events.setdefault(ev.instance_id, []).append(ev)
    for iid in sorted(set(instances) | set(ledger) | set(events)):
        inst, led = instances.get(iid), ledger.get(iid)
        if inst is None:
            ticket = led["ticket"] if led else None
            last = max(led["heads"]) if led else len(events.get(iid, []))
            problems.append(_problem(iid, ticket, 1, None, "instance_deleted",
                                     f"instance {iid} ({ticket or 'unknown ticket'}) was deleted: the ledger "
                                     f"recorded its events up to #{last}"))
            continue
        heads = led["heads"] if led else {}
        found = check_chain(iid, inst.ticket_no, events.get(iid, []), inst.audit_count, inst.audit_head,
                            max(heads, default=0), heads)
        if found:
            problems.append(found)
    return problems


# ---- guards: nothing in the application, not even SQL, changes or deletes the record


def _refuse(what: str, verb: str):
    def listener(_mapper, _connection, _target):
        raise NotAllowed(f"{what} append-only and cannot be {verb}")
    return listener


for _model, _what in ((AuditEvent, "audit events are"), (AuditLedger, "the audit ledger is")):
    sa_event.listen(_model, "before_update", _refuse(_what, "changed"))
    sa_event.listen(_model, "before_delete", _refuse(_what, "deleted"))
