"""Audit events: append-only and hash-chained per instance (P12).

Each event's hash covers the previous event's hash and the event's own canonical content, so changing,
deleting or reordering a stored event breaks the chain from that event on.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import event as sa_event, insert, select
from sqlalchemy.orm import Session

from .db import AuditEvent, Instance
from .errors import NotAllowed


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


def canonical(instance_id: int, seq: int, e) -> str:
    rules = e.rules if isinstance(e.rules, str) or e.rules is None else ",".join(e.rules)
    body = {"instance_id": instance_id, "seq": seq, "type": e.type, "actor": e.actor,
            "at": e.at.isoformat(timespec="microseconds"), "task_id": e.task_id, "bpmn_id": e.bpmn_id,
            "task_name": e.task_name, "rules": rules or None, "data": e.data}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256((prev_hash + "\n" + content).encode("utf-8")).hexdigest()


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
        session.execute(insert(AuditEvent), rows)
    instance.audit_head, instance.audit_count = head, seq


def buffer_events(session: Session) -> None:
    """Collect the events of several instances in this transaction and write them in one statement."""
    session.info[BUFFER] = []


def write_buffered(session: Session) -> None:
    rows = session.info.pop(BUFFER, None)
    if rows:
        session.execute(insert(AuditEvent), rows)


def events_of(session: Session, instance_id: int) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.instance_id == instance_id)
                                .order_by(AuditEvent.seq)))


def verify_instance(session: Session, instance: Instance) -> str | None:
    """None when the instance's chain is whole, else a description of the first broken event."""
    head = ""
    events = events_of(session, instance.id)
    for expected_seq, ev in enumerate(events, start=1):
        if ev.seq != expected_seq:
            return f"event #{expected_seq} is missing (found #{ev.seq})"
        if ev.prev_hash != head or chain_hash(head, canonical(instance.id, ev.seq, ev)) != ev.hash:
            return f"event #{ev.seq} ({ev.type}) was altered"
        head = ev.hash
    if len(events) != (instance.audit_count or 0) or head != (instance.audit_head or ""):
        return f"the chain ends at event #{len(events)} but the instance recorded #{instance.audit_count}"
    return None


@sa_event.listens_for(AuditEvent, "before_update")
def _refuse_update(_mapper, _connection, _target):
    raise NotAllowed("audit events are append-only and cannot be changed")


@sa_event.listens_for(AuditEvent, "before_delete")
def _refuse_delete(_mapper, _connection, _target):
    raise NotAllowed("audit events are append-only and cannot be deleted")
